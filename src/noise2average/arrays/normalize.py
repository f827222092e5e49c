"""Per-repetition normalization inside the brain mask (method.md: z_k = (I_k - m_k) / s_k).

A multi-channel repetition (X, Y, Z, C) - a diffusion group: mean b0 and DWIs - is normalized
per channel: every channel c of repetition k gets its own m_kc and s_kc inside the mask. The
b0 is several times brighter than the DWIs and each direction attenuates differently; with one
statistic per repetition the b0 would dominate the loss and the DWIs would sit in a narrow band
of the input range. The inverse is per channel too, so the ratio S/S0 that the tensor fit reads
is restored exactly up to what the network changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Norm:
    """Mean and standard deviation of one repetition's voxels inside the mask."""

    mean: float | tuple[float, ...]
    std: float | tuple[float, ...]

    @classmethod
    def fit(cls, image: np.ndarray, mask: np.ndarray) -> "Norm":
        """Statistics of ``image`` (X, Y, Z) or, per channel, (X, Y, Z, C) in the 3D mask."""
        if image.ndim == mask.ndim + 1:
            per = [cls.fit(image[..., c], mask) for c in range(image.shape[-1])]
            return cls(tuple(n.mean for n in per), tuple(n.std for n in per))
        vals = image[mask].astype(np.float64)
        std = float(vals.std())
        if not np.isfinite(std) or std <= 0:
            std = 1.0
        return cls(float(vals.mean()), std)

    def _params(self):
        if isinstance(self.mean, tuple):  # per channel, broadcast along the last axis
            return np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return self.mean, self.std

    def forward(self, image: np.ndarray) -> np.ndarray:
        mean, std = self._params()
        return ((image - mean) / std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """``z`` in the layout of the fitted image (channels last for several channels)."""
        mean, std = self._params()
        return (z * std + mean).astype(np.float32)
