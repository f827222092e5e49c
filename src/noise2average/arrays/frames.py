"""The residual sub-voxel misalignment between repetitions, as a set of rigid frames.

Repetitions arrive co-registered on rep 1's grid, but a registration of noisy images leaves a
residual error of a few tenths of a voxel; averaging misaligned images blurs them. Once the
repetitions are denoised they can be registered to each other far more precisely. ``Frames``
keeps, for every repetition k, the pull matrix M_k that maps a voxel position of rep 1 to the
same anatomy in rep k (M_1 = identity), in homogeneous voxel coordinates. An image of rep k is
brought into rep j's frame by sampling it at M_k M_j^-1 x.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .registration import apply_rigid, refine_rigid


class Frames:
    """Pull matrices of N repetitions relative to rep 1 (see module text)."""

    def __init__(self, n: int, matrices: Sequence[np.ndarray] | None = None,
                 zooms: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        self.zooms = tuple(float(z) for z in zooms)
        self.matrices = [np.eye(4) for _ in range(n)] if matrices is None else [
            np.asarray(m, np.float64) for m in matrices]

    def pull(self, k: int, j: int) -> np.ndarray:
        """Matrix that samples an image of rep k at the positions of rep j's grid."""
        return self.matrices[k] @ np.linalg.inv(self.matrices[j])

    def to_frame(self, image: np.ndarray, k: int, j: int) -> np.ndarray:
        """Image of rep k resampled into rep j's frame (channels-last 4D: every channel)."""
        if k == j or np.allclose(self.pull(k, j), np.eye(4), rtol=0, atol=1e-12):
            return image  # unregistered repetitions: no resampling (a spline pass blurs edges)
        if image.ndim == 4:  # a diffusion group: one motion for all its channels
            return np.stack([apply_rigid(image[..., c], self.pull(k, j))
                             for c in range(image.shape[3])], axis=3)
        return apply_rigid(image, self.pull(k, j))

    def update(self, denoised: Sequence[np.ndarray], mask: np.ndarray) -> None:
        """Re-estimate every M_k (k >= 2) by registering rep k to rep 1 (denoised ones are
        best; noisy ones work with a whole brain's worth of voxels). A diffusion group
        registers on its first channel, the b0 with the most signal."""
        first = [d[..., 0] if d.ndim == 4 else d for d in denoised]
        for k in range(1, len(first)):
            self.matrices[k] = refine_rigid(first[0], first[k], mask=mask,
                                            zooms=self.zooms, init=self.matrices[k]).matrix

    def shifts(self, mask: np.ndarray) -> list[float]:
        """Largest displacement (voxels) of each frame over the mask's bounding-box corners."""
        idx = np.argwhere(mask)
        lo, hi = idx.min(0), idx.max(0)
        corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                            for z in (lo[2], hi[2])]).T
        return [float(np.abs((m - np.eye(4)) @ corners)[:3].max()) for m in self.matrices]

    def to_list(self) -> list[list[list[float]]]:
        # full precision: a resumed run must rebuild the same targets (JSON keeps float64 exact)
        return [np.asarray(m, np.float64).tolist() for m in self.matrices]
