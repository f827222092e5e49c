"""What the repetitions say about the result, without a clean reference.

After an iteration every repetition k has a noisy input y_k and a denoised version d_k, all on
rep 1's grid (after the sub-voxel re-registration when it is on). Three quantities follow:

- the *uncertainty map*: the local standard error of the mean of the d_k - where the denoised
  repetitions disagree, the result rests on the network more than on the data;
- the *cross error* of an iteration: how well the denoised OTHER repetitions predict each noisy
  y_j, mean_j mean_mask (mean_{k != j} d_k - y_j)^2. Its expectation is the error of the
  estimate plus the noise variance of y_j (a constant), as long as d_k does not depend on the
  noise of y_j; it is the stopping statistic that ``stopping='cross'`` minimizes. Noise2Average
  trains d_k towards a target that contains y_j, so the independence is only approximate; the
  benchmark (docs/benchmarks.md) measures how well it tracks the true error. Scored on a
  region left out of the fine-tuning loss (``DenoiseConfig.holdout``) the network was never
  asked to reproduce the noise there, so that bias is gone. One remains: the score measures the
  distance to the noisy data's mean, so a network fine-tuned on noisy targets can score better
  than a pre-trained one that is closer to the truth (measured in docs/benchmarks.md;
  our reading: the Rician bias of dark tissue). The pipeline's stopping scores match each
  repetition's brightness first (``match_gain``): echoes of one scan differ by their T2*
  decay, and that difference is no error of the denoiser;
- the *residual correlation*: the correlation between the residuals y_k - d_k of different
  repetitions. Noise is independent between repetitions, anatomy is not: a positive value means
  the denoiser removed anatomy (blur) from every repetition alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def uncertainty_map(denoised: Sequence[np.ndarray], mask: np.ndarray,
                    radius: float = 1.0) -> np.ndarray:
    """Local standard error of the mean of the denoised repetitions (0 outside the mask).

    The per-voxel sample variance across repetitions is smoothed by a Gaussian of ``radius``
    voxels (with N = 2 a single voxel's variance has one degree of freedom) and divided by N.
    """
    stack = np.stack([np.asarray(d, np.float32) for d in denoised])
    n = stack.shape[0]
    var = stack.var(axis=0, ddof=1)
    if radius > 0:
        var = ndimage.gaussian_filter(var, radius)
    out = np.sqrt(np.maximum(var, 0) / n).astype(np.float32)
    out[~mask] = 0
    return out


def iteration_diagnostics(noisy: Sequence[np.ndarray], others: Sequence[np.ndarray],
                          residuals: Sequence[np.ndarray], denoised: Sequence[np.ndarray],
                          mask: np.ndarray, *, match_gain: bool = False) -> dict[str, float]:
    """Cross error, residual correlation and disagreement of one iteration (see module text).

    Parameters
    ----------
    noisy, others
        Each noisy repetition y_j and the mean of the other denoised repetitions resampled onto
        y_j's own frame (no resampling of noisy data, which would change its variance).
    residuals, denoised
        y_k - d_k and d_k of every repetition, all resampled onto one common frame.
    mask
        Voxels scored.
    match_gain
        Passed to :func:`cross_error`.
    """
    cross = cross_error(noisy, others, mask, match_gain=match_gain)
    res = np.stack([np.asarray(r, np.float64)[mask].ravel() for r in residuals])  # 4D: flat
    res -= res.mean(axis=1, keepdims=True)
    norms = np.sqrt((res ** 2).sum(axis=1)) + 1e-12
    n = len(res)
    corr = [float((res[a] * res[b]).sum() / (norms[a] * norms[b]))
            for a in range(n) for b in range(a + 1, n)]
    d = np.stack([np.asarray(a, np.float64)[mask].ravel() for a in denoised])
    return {"cross_mse": cross,
            "residual_corr": float(np.mean(corr)),
            "disagreement": float(np.sqrt(np.mean(d.var(axis=0, ddof=1))))}


def cross_error(noisy: Sequence[np.ndarray], others: Sequence[np.ndarray],
                mask: np.ndarray, *, match_gain: bool = False) -> float:
    """mean_j mean_mask (g_j o_j - y_j)^2: the cross error of :func:`iteration_diagnostics` on
    ``mask`` alone (a held-out region gives it without the training bias).

    ``match_gain``: g_j is the least-squares gain of o_j onto y_j on ``mask``
    (:func:`matched_gains`), else 1. Repetitions that differ in brightness - two echoes, or
    scans rescaled differently by the scanner - then do not score their brightness difference,
    which the pre-trained network (each repetition at its own brightness) and a fine-tuned one
    (each repetition towards a common average) keep to different degrees.
    """
    gains = matched_gains(noisy, others, mask) if match_gain else [1.0] * len(noisy)
    return float(np.mean([np.mean((g * np.asarray(o, np.float64)[mask] - y[mask]) ** 2)
                          for y, o, g in zip(noisy, others, gains)]))


def matched_gains(noisy: Sequence[np.ndarray], others: Sequence[np.ndarray],
                  mask: np.ndarray) -> list[float]:
    """Per repetition j, the gain g minimizing sum_mask (g o_j - y_j)^2. The noise of y_j is
    independent of o_j (a held-out region), so it does not bias g."""
    gains = []
    for y, o in zip(noisy, others):
        o = np.asarray(o, np.float64)[mask].ravel()  # 4D (channels last): one gain for all
        den = float(np.dot(o, o))
        gains.append(float(np.dot(o, np.asarray(y, np.float64)[mask].ravel()) / den)
                     if den > 0 else 1.0)
    return gains


def bright_region(average: np.ndarray, noise_sd: np.ndarray, min_snr: float) -> np.ndarray:
    """Voxels whose whole 3x3x3 neighbourhood in ``average`` exceeds ``min_snr`` local noise
    SDs (in every channel of a channels-last 4D stack). The neighbourhood minimum keeps out
    dark voxels that are bright by chance and the partial-volume edges of dark tissue, where
    the Rician bias is largest."""
    from scipy import ndimage

    low = ndimage.minimum_filter(np.asarray(average, np.float32),
                                 size=(3, 3, 3, 1) if average.ndim == 4 else 3)
    bright = low > min_snr * noise_sd
    return bright.all(axis=-1) if bright.ndim == 4 else bright


def best_iteration(history: Sequence[dict], key: str = "cross_mse") -> int:
    """1-based iteration with the smallest ``key`` (the first one on ties)."""
    values = [h[key] for h in history]
    return int(np.argmin(values)) + 1
