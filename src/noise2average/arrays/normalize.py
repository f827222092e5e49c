"""Per-repetition normalization inside the brain mask (method.md: z_k = (I_k - m_k) / s_k)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Norm:
    """Mean and standard deviation of one repetition's voxels inside the mask."""

    mean: float
    std: float

    @classmethod
    def fit(cls, image: np.ndarray, mask: np.ndarray) -> "Norm":
        vals = image[mask].astype(np.float64)
        std = float(vals.std())
        if not np.isfinite(std) or std <= 0:
            std = 1.0
        return cls(float(vals.mean()), std)

    def forward(self, image: np.ndarray) -> np.ndarray:
        return ((image - self.mean) / self.std).astype(np.float32)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return (z * self.std + self.mean).astype(np.float32)
