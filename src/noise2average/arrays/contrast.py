"""The contrast between diffusion directions: what FA and the principal direction are made of.

Per voxel and DWI, the contrast is the attenuation S/S0 minus the voxel's mean attenuation.
:func:`contrast_kept` measures, from N >= 2 repetitions and without the truth, the fraction of
it a denoiser kept; :func:`restore_contrast` undoes a uniform shrinkage of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def directional_contrast(series: np.ndarray, b0: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(mask voxels, DWIs): attenuation S/S0 minus the voxel's mean attenuation."""
    s = series[mask].astype(np.float64)
    att = s[:, ~b0] / np.maximum(s[:, b0].mean(1, keepdims=True), 1e-6)
    return att - att.mean(1, keepdims=True)


def contrast_kept(denoised: Sequence[np.ndarray], reps: Sequence[np.ndarray], b0: np.ndarray,
                  mask: np.ndarray) -> float | None:
    """How much of the contrast between diffusion directions the denoising kept, from the data.

    The contrast of a series is, per voxel and DWI, its attenuation S/S0 minus the voxel's mean
    attenuation: what FA and the principal direction are made of. A denoiser that pulls the
    directions towards each other keeps a fraction ``g < 1`` of it, and FA comes out biased low.
    With N >= 2 repetitions ``g`` is measured without the truth: the noise of repetition j is
    independent of repetition k, so in

        g = sum_{k != j} <c(denoised_k), c(rep_j)> / sum_{k != j} <c(rep_k), c(rep_j)>

    both sums estimate products with the underlying contrast and the noise cancels (mask
    voxels, all DWIs). 1 = the repetitions' own contrast kept. Measured relative to the noisy
    data, whose Rician floor itself compresses the contrast slightly (about 1 % at a b0 SNR of
    20): on the diffusion benchmark the shipped diffusion (groups) network keeps 0.967 of the
    truth's contrast and this estimate reads 0.977 (``benchmarks/dwi_diagnosis.py``). None
    when the series has no DWI, the mask is empty or the repetitions share no contrast (pure
    noise).
    """
    b0 = np.asarray(b0, bool)
    mask = np.asarray(mask, bool)
    if len(reps) < 2 or b0.all() or not b0.any() or not mask.any():
        return None
    num = den = 0.0
    for x0 in range(0, mask.shape[0], 8):  # slabs of 8 slices bound the memory of a big series
        sl = slice(x0, x0 + 8)
        m = mask[sl]
        if not m.any():
            continue
        noisy = [directional_contrast(r[sl], b0, m) for r in reps]
        for k, d in enumerate(denoised):
            ck = directional_contrast(d[sl], b0, m)
            for j, cj in enumerate(noisy):
                if j != k:
                    num += float(np.vdot(ck, cj))
                    den += float(np.vdot(noisy[k], cj))
    return num / den if den > 0 else None


def restore_contrast(series: np.ndarray, b0: np.ndarray, mask: np.ndarray,
                     kept: float | None) -> np.ndarray:
    """Undo a uniform shrinkage of the contrast between diffusion directions.

    ``kept`` is the fraction of the directional contrast a denoiser kept
    (:func:`noise2average.diffusion.contrast_kept`, measured from the repetitions). Each mask
    voxel's attenuations S/S0 are spread about their mean by ``1 / kept``; the mean
    attenuation and the b=0 volumes are unchanged, and so, to first order, is MD. Nothing
    changes when ``kept`` is None, not positive, or the series has no b=0 or no DWI volume.
    """
    b0 = np.asarray(b0, bool)
    if kept is None or kept <= 0 or b0.all() or not b0.any():
        return series
    out = series.astype(np.float32).copy()
    s = out[mask]
    s0 = np.maximum(s[:, b0].mean(1, keepdims=True), 1e-6)
    att = s[:, ~b0] / s0
    mean = att.mean(1, keepdims=True)
    s[:, ~b0] = (mean + (att - mean) / kept) * s0
    out[mask] = s
    return out
