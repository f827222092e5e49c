"""Patch sampling for training and blended block-wise inference.

Inference walks the mask's bounding box in cores of ``block`` voxels; each core is predicted
from an input grown by the network's receptive radius (the U-Net's measured halo), so the
result does not depend on the block size (exactly for the MU-Net, up to the halo's seam error
for the U-Net), and neighbouring cores overlap by ``overlap`` voxels blended with linear ramps.
Peak memory is set by the block, not by the volume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from ..arrays.masking import bounding_box

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs, targets, loss weights: (B, C, P, P, P)


class PatchSampler:
    """Random training patches from fixed (input, target) pairs, centred inside the mask.

    Parameters
    ----------
    inputs, targets
        Per-pair arrays of shape (C, X, Y, Z) (normalized input, residual target).
    mask
        Boolean (X, Y, Z); the loss is restricted to it.
    patch, batch
        Patch edge in voxels and patches per step.
    flip_axes
        Spatial axes (0-2) each flipped with probability 1/2 (left-right augmentation: the
        left-right axis only).
    centres
        Candidate patch centres (M, 3); default: every mask voxel.
    """

    def __init__(self, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                 mask: np.ndarray, patch: int = 32, batch: int = 1,
                 flip_axes: Sequence[int] = (0,), centres: np.ndarray | None = None) -> None:
        if len(inputs) != len(targets) or not inputs:
            raise ValueError("need as many targets as inputs, at least one")
        self.patch, self.batch, self.flip_axes = patch, batch, tuple(flip_axes)
        h = patch // 2
        pad = ((0, 0), (h, patch - h), (h, patch - h), (h, patch - h))
        # padded once so every centre inside the mask yields a full patch
        self.inputs = [np.pad(a, pad, mode="reflect") for a in inputs]
        self.targets = [np.pad(a, pad) for a in targets]
        self.weight = np.pad(mask, pad[1:]).astype(np.float32)[None]
        self.centres = np.argwhere(mask) if centres is None else np.asarray(centres)

    def __call__(self, rng: np.random.Generator) -> Batch:
        xs, ys, ws = [], [], []
        p = self.patch
        for _ in range(self.batch):
            k = int(rng.integers(len(self.inputs)))
            c = self.centres[int(rng.integers(len(self.centres)))]
            sl = (slice(None),) + tuple(slice(int(i), int(i) + p) for i in c)
            x, y, w = self.inputs[k][sl], self.targets[k][sl], self.weight[sl]
            for ax in self.flip_axes:
                if rng.random() < 0.5:
                    x, y, w = np.flip(x, ax + 1), np.flip(y, ax + 1), np.flip(w, ax + 1)
            xs.append(x), ys.append(y), ws.append(w)
        return (np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys)),
                np.ascontiguousarray(np.stack(ws)))


class SurePatchSampler:
    """Batches for :func:`~noise2average.nn.losses.sure_loss`: patches of one normalized
    image, each stacked with itself plus ``eps`` times a noise probe.

    The probe patch is cut from ``probe`` (a draw of the image's noise,
    :func:`~noise2average.arrays.noise.difference_probe`) at another random place of the
    mask, so that it is independent of the patch's own noise, rescaled by the ratio of the
    local noise SD ``sd`` there and here, and given a random sign. ``bias``, when given, is
    the noise's mean in the image (same shape), cut at the patch's own place. Flips along
    ``flip_axes``. Returns (inputs (2B, C, P, P, P), probes (B, C, P, P, P) or probes stacked
    over the bias patches (2B, C, P, P, P), weights (B, 1, P, P, P)).
    """

    def __init__(self, image: np.ndarray, probe: np.ndarray, sd: np.ndarray, mask: np.ndarray,
                 patch: int = 32, batch: int = 1, eps: float = 1e-2,
                 flip_axes: Sequence[int] = (0, 1, 2), bias: np.ndarray | None = None) -> None:
        self.patch, self.batch, self.eps, self.flip_axes = patch, batch, eps, tuple(flip_axes)
        h = patch // 2
        pad = ((0, 0), (h, patch - h), (h, patch - h), (h, patch - h))
        self.image = np.pad(image, pad, mode="reflect")
        self.probe = np.pad(probe, pad, mode="reflect")
        self.bias = None if bias is None else np.pad(bias, pad, mode="reflect")
        self.sd = np.pad(np.maximum(sd, 1e-3 * float(sd.max()) + 1e-12), pad[1:],
                         mode="reflect")[None]
        self.weight = np.pad(mask, pad[1:]).astype(np.float32)[None]
        self.centres = np.argwhere(mask)

    def _window(self, rng: np.random.Generator) -> tuple[slice, ...]:
        c = self.centres[int(rng.integers(len(self.centres)))]
        return (slice(None),) + tuple(slice(int(i), int(i) + self.patch) for i in c)

    def __call__(self, rng: np.random.Generator) -> Batch:
        xs, ps, ws, bs = [], [], [], []
        for _ in range(self.batch):
            here, there = self._window(rng), self._window(rng)
            x, w = self.image[here], self.weight[here]
            b = self.bias[here] if self.bias is not None else x
            p = (self.probe[there] * self.sd[here] / self.sd[there]
                 * (1.0 if rng.random() < 0.5 else -1.0))
            for ax in self.flip_axes:
                if rng.random() < 0.5:
                    x, p, w, b = (np.flip(a, ax + 1) for a in (x, p, w, b))
            xs.append(x), ps.append(p), ws.append(w), bs.append(b)
        x, p = np.stack(xs), np.stack(ps)
        target = p if self.bias is None else np.concatenate([p, np.stack(bs)])
        return (np.ascontiguousarray(np.concatenate([x, x + self.eps * p]), dtype=np.float32),
                np.ascontiguousarray(target, dtype=np.float32),
                np.ascontiguousarray(np.stack(ws)))


class RecorruptedPatchSampler(SurePatchSampler):
    """Recorrupted pairs of one normalized image (Pang et al.'s Recorrupted-to-Recorrupted):
    input x + ``alpha`` p, residual target -(bias + (``alpha`` + 1 / ``alpha``) p), which
    is the residual to x - bias - p / ``alpha``, for a probe patch p cut and rescaled as
    :class:`SurePatchSampler` does.

    For Gaussian noise n and a draw p of the same covariance independent of it, the input's
    noise n + alpha p and the target's n - p / alpha are uncorrelated, so the masked MSE on
    these pairs estimates the denoiser's error against the truth at (1 + alpha^2) times the
    image's noise variance, up to a constant. Unlike SURE it needs one forward pass and no
    small finite difference, so it trains in bf16 where the CPU has it. Returns (inputs,
    residual targets, weights), each (B, C, P, P, P) but weights (B, 1, P, P, P).
    """

    def __init__(self, image: np.ndarray, probe: np.ndarray, sd: np.ndarray, mask: np.ndarray,
                 patch: int = 32, batch: int = 1, alpha: float = 0.5,
                 flip_axes: Sequence[int] = (0, 1, 2), bias: np.ndarray | None = None) -> None:
        super().__init__(image, probe, sd, mask, patch, batch, flip_axes=flip_axes, bias=bias)
        self.alpha = alpha

    def __call__(self, rng: np.random.Generator) -> Batch:
        pairs, probes, weights = super().__call__(rng)
        b, a = weights.shape[0], self.alpha
        x = pairs[:b]
        p = probes[:b]
        bias = probes[b:] if probes.shape[0] > b else np.zeros_like(p)
        return (np.ascontiguousarray(x + a * p, dtype=np.float32),
                np.ascontiguousarray(-(bias + (a + 1.0 / a) * p), dtype=np.float32),
                weights)


class MixedSampler:
    """Each batch from one of several samplers, chosen at random (the volumes of a diffusion
    shell, each an image of its own with its own normalization, noise probe and bias)."""

    def __init__(self, samplers: Sequence[Callable[[np.random.Generator], Batch]]) -> None:
        if not samplers:
            raise ValueError("MixedSampler needs at least one sampler")
        self.samplers = list(samplers)

    def __call__(self, rng: np.random.Generator) -> Batch:
        return self.samplers[int(rng.integers(len(self.samplers)))](rng)


def block_grid(box: Sequence[slice], block: int, overlap: int) -> Iterator[tuple[slice, ...]]:
    """Cores tiling ``box``: per axis the fewest cores of at most ``block`` voxels that overlap
    by at least ``overlap``, all of one balanced length (less padding work than fixed cubes)."""
    axes = []
    for s in box:
        n = s.stop - s.start
        if n <= block:
            axes.append([slice(s.start, s.stop)])
            continue
        k = int(np.ceil((n - overlap) / (block - overlap)))
        length = int(np.ceil((n + overlap * (k - 1)) / k))
        starts = np.linspace(s.start, s.stop - length, k).round().astype(int)
        axes.append([slice(int(a), int(a) + length) for a in starts])
    for i in axes[0]:
        for j in axes[1]:
            for k in axes[2]:
                yield (i, j, k)


def _ramp(n: int, overlap: int) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap > 0 and n > 2 * overlap:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        w[:overlap], w[-overlap:] = r, r[::-1]
    return w


def predict_volume(forward: Callable[[torch.Tensor], torch.Tensor], volume: np.ndarray,
                   mask: np.ndarray, radius: int, to_tensor: Callable[[np.ndarray], torch.Tensor],
                   block: int = 64, overlap: int = 8, out_channels: int | None = None,
                   progress: Callable[[int], None] | None = None, align: int = 1) -> np.ndarray:
    """Apply ``forward`` block by block to ``volume`` (C, X, Y, Z) over the mask's bounding box.

    ``align`` > 1 is for networks that are shift-equivariant only by multiples of ``align``
    voxels (a U-Net with stride-2 down-sampling: 2^(levels - 1)): every block's input starts
    on one lattice of that step, and its length is a multiple of it, so each block is computed
    in the same sampling phase as a whole-volume pass (measured with the unaligned grid: block
    and whole-volume outputs differed by 6 % of the noise SD whatever the halo).

    Returns (C_out, X, Y, Z) float32, zero outside the bounding box; cores without any mask voxel
    are skipped.
    """
    c_out = out_channels or volume.shape[0]
    shape = volume.shape[1:]
    out = np.zeros((c_out,) + shape, np.float32)
    wsum = np.zeros(shape, np.float32)
    # the extra ``align`` at the end leaves room to round every input up to the lattice
    padded = np.pad(volume, ((0, 0),) + ((radius, radius + align),) * 3, mode="reflect")
    box = bounding_box(mask)
    for core in block_grid(box, block, overlap):
        if not mask[core].any():
            if progress:
                progress(1)
            continue
        # the core in padded coordinates, grown by the radius on each side, moved back onto the
        # lattice and rounded up to whole steps. The lattice is the volume's own (anchored at
        # voxel 0, not at the mask's box), so that passes over different regions of one volume
        # (the held-out slab, the whole mask, the mask and its blending rim) agree voxel by voxel
        shift = [c.start % align for c in core]
        src = [slice(None)]
        for c, d in zip(core, shift):
            n = c.stop - c.start + 2 * radius + d
            src.append(slice(c.start - d, c.start - d + n + (-n) % align))
        with torch.no_grad():
            pred = forward(to_tensor(np.ascontiguousarray(padded[tuple(src)][None])))
        pred = pred.float().cpu().numpy()[0]
        pred = pred[(slice(None),) + tuple(slice(radius + d, radius + d + c.stop - c.start)
                                           for c, d in zip(core, shift))]
        w = (_ramp(pred.shape[1], overlap)[:, None, None] * _ramp(pred.shape[2], overlap)[None, :, None]
             * _ramp(pred.shape[3], overlap)[None, None, :])
        out[(slice(None),) + core] += pred * w
        wsum[core] += w
        if progress:
            progress(1)
    nz = wsum > 0
    out[:, nz] /= wsum[nz]
    return out


def count_blocks(mask: np.ndarray, block: int, overlap: int) -> int:
    return sum(1 for _ in block_grid(bounding_box(mask), block, overlap))


def block_centres(mask: np.ndarray, patch: int) -> np.ndarray:
    """Centres of the reference code's overlapping training blocks: a grid with a stride of half
    a patch over the mask's bounding box, keeping blocks that contain mask voxels."""
    box = bounding_box(mask)
    h = patch // 2
    axes = [np.arange(s.start + h, max(s.start + h, s.stop - h) + 1, max(1, h)) for s in box]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    keep = [mask[tuple(slice(max(0, c - h), c + h) for c in g)].any() for g in grid]
    return grid[np.asarray(keep, bool)]
