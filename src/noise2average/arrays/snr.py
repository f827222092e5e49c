"""Signal-to-noise estimates before and after denoising, from the repetitions themselves (no
clean reference): what the QC report prints.

Before: the noise SD of one repetition comes from the differences between repetitions
(:func:`~noise2average.arrays.noise.estimate_sigma`); the plain average of N repetitions has
that SD divided by sqrt(N).

After: the same estimator applied to the *denoised* repetitions measures the noise that survived
denoising, from their disagreement (for two, the robust SD of ``(d1 - d2) / sqrt(2)``); their
mean, the result, has that SD divided by sqrt(N) if the residual errors are independent. Errors
that the denoised repetitions share (blurring, a bias, noise that reaches every repetition
through the common training target) cancel in the differences, so this is an estimate of the
remaining *random* noise only: it can only overstate the true SNR, never prove a sharp result.
A method that denoises the average alone has no independent outputs to compare: no estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .noise import estimate_sigma


def snr_summary(reps: Sequence[np.ndarray], mask: np.ndarray, sigma: float | None = None,
                denoised: Sequence[np.ndarray] | None = None,
                result: np.ndarray | None = None) -> dict:
    """SNR of one repetition, of the plain average and (where measurable) of the result.

    Parameters
    ----------
    reps
        The N >= 2 noisy repetitions.
    mask
        Boolean brain mask; the signal is the mean of the plain average inside it.
    sigma
        Noise SD of one repetition (default: estimated from ``reps``).
    denoised
        The independently denoised repetitions whose mean is the result; ``None`` for methods
        that denoise the average only (the "after" entries are then ``None``).
    result
        The denoised image, for the SD of the residual ``reps[0] - result`` in the mask (about
        ``sigma`` when only noise was removed, more when anatomy or misalignment was removed).

    Returns
    -------
    dict
        ``n``, ``signal``, ``sigma_rep``, ``snr_rep``, ``sigma_average``, ``snr_average``,
        ``sigma_result``, ``snr_result`` (``None`` when not measurable), ``residual_sd``.
    """
    mask = np.asarray(mask, bool)
    n = len(reps)
    signal = float(np.mean(np.mean([r[mask] for r in reps], axis=0, dtype=np.float64)))
    if sigma is None:
        sigma = estimate_sigma(list(reps), mask)
    sigma = float(sigma)
    sigma_avg = sigma / math.sqrt(n)
    out = {"n": n, "signal": signal, "sigma_rep": sigma, "snr_rep": _ratio(signal, sigma),
           "sigma_average": sigma_avg, "snr_average": _ratio(signal, sigma_avg),
           "sigma_result": None, "snr_result": None, "residual_sd": None}
    if denoised is not None and len(denoised) >= 2:
        s = estimate_sigma([np.asarray(d, np.float32) for d in denoised], mask)
        out["sigma_result"] = s / math.sqrt(len(denoised))
        out["snr_result"] = _ratio(signal, out["sigma_result"])
    if result is not None:
        out["residual_sd"] = float(np.std((reps[0] - result)[mask], dtype=np.float64))
    return out


def _ratio(signal: float, noise: float) -> float | None:
    return signal / noise if noise > 0 else None
