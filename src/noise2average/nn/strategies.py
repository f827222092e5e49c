"""How each learning strategy forms its training targets - the only place they differ.

Every strategy trains the same network on pairs (z_k, residual_k) where z_k is repetition k in
its own mask normalization and residual_k = norm_k(T_k) - z_k for an image-space target T_k:

- ``n2a`` (Noise2Average): T_k = the current target (the plain average at iteration 1, the
  previous iteration's result after that) for every k, or one target per repetition when the
  pipeline forms them in each repetition's own frame (``align='register'``, ``target='others'``);
- ``n2n`` (Noise2Noise): T_k = the average of the other repetitions (I_2 for I_1 when N = 2);
- ``supervised``: T_k = the clean reference.

With ``frames`` (``align='register'``) the Noise2Noise and supervised targets are resampled
into repetition k's own frame, as Noise2Average's are, so that no strategy is trained towards
a copy of the anatomy shifted by the motion between repetitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..arrays.channels import channels_first
from ..arrays.normalize import Norm


def image_targets(method: str, reps: Sequence[np.ndarray],
                  current: np.ndarray | Sequence[np.ndarray],
                  reference: np.ndarray | None = None, frames=None) -> list[np.ndarray]:
    """Image-space target T_k of each repetition (``current``: one array or one per rep;
    ``frames``: an :class:`~noise2average.arrays.frames.Frames` of the repetitions)."""
    n = len(reps)
    if frames is not None and method in ("n2n", "supervised"):
        if method == "supervised" and reference is None:
            raise ValueError("the supervised strategy needs a clean reference")
        if method == "supervised":  # the reference is in rep 1's frame
            return [frames.to_frame(reference, 0, k).astype(np.float32) for k in range(n)]
        return [(np.sum([frames.to_frame(reps[m], m, k) for m in range(n) if m != k], axis=0)
                 / (n - 1)).astype(np.float32) for k in range(n)]
    if method == "n2a":
        return list(current) if isinstance(current, (list, tuple)) else [current] * n
    if method == "n2n":
        total = np.sum(reps, axis=0)
        return [((total - r) / (n - 1)).astype(np.float32) for r in reps]
    if method == "supervised":
        if reference is None:
            raise ValueError("the supervised strategy needs a clean reference")
        return [reference] * n
    raise ValueError(f"no training targets for method {method!r}")


def residual_pairs(method: str, reps: Sequence[np.ndarray], norms: Sequence[Norm],
                   current: np.ndarray | Sequence[np.ndarray], reference: np.ndarray | None = None,
                   frames=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalized inputs z_k and residual targets, each channels first: (1, X, Y, Z) for 3D
    repetitions, (C, X, Y, Z) for channels-last (X, Y, Z, C) ones."""
    inputs, targets = [], []
    for rep, norm, tgt in zip(reps, norms, image_targets(method, reps, current, reference,
                                                          frames)):
        z = norm.forward(rep)
        inputs.append(channels_first(z))
        targets.append(channels_first(norm.forward(tgt) - z))
    return inputs, targets
