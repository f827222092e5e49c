"""The detail step of the output: a multiple of the denoised image's own fine detail added back
(arrays in, arrays out), the multiple chosen by Stein's unbiased risk estimate or by the
gradient that the data show.

A denoiser trained for the least squared error smooths where it is unsure, and one tuned on
recorrupted pairs is tuned at a higher noise level than the image it is applied to: its output
can be smoother than the estimate with the least error. Adding ``a`` times the output's high
frequencies (the output minus its Gaussian blur, an unsharp mask) moves along that direction.

- SURE, which estimates the squared error from the noisy image alone, is a quadratic in ``a``
  (the high-pass is linear), so its minimum has a closed form. Two forward passes give it:
  the network's output and its output with the input moved by a small multiple of a noise
  probe (:func:`sure_detail_amount`).
- The least-error estimate is smoother than the anatomy even at its best: it averages over
  what the noise leaves uncertain. The gradient match (:func:`matched_detail_amount`) asks
  instead for a result that the data could have come from: with a fresh draw of the
  average's noise added (a noise probe), its mean gradient magnitude is the registered
  average's. The ratio of the two (the gradient discrepancy) is 0.998-1.015 for the
  noise-free image on four protocol-v1 cases (the registration's interpolation smooths the
  average a little) and 0.968-0.986 for the least-error outputs of the network and of BM4D,
  which are smoother than the data.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from .metrics import gradient_components, gradient_magnitude
from .sharpness import interior

#: the Gaussian blur (voxels) whose difference from the image is the detail that is added
DETAIL_WIDTH = 0.7
#: the range a chosen amount (SURE's or the gradient match's) is kept in: a negative one would
#: smooth further
DETAIL_BOUNDS = (0.0, 1.0)


def high_pass(image: np.ndarray, region: np.ndarray, width: float = DETAIL_WIDTH) -> np.ndarray:
    """``image`` minus its Gaussian blur of ``width`` voxels inside ``region`` (0 outside).

    The blur is normalized within the region, so that nothing outside it (the background, or
    the noisy input where the network did not run) enters: the brain's own border is not
    taken for detail."""
    inside = region.astype(np.float32)
    weight = ndimage.gaussian_filter(inside, width)
    blur = ndimage.gaussian_filter(image * inside, width) / np.maximum(weight, 1e-6)
    return np.where(region, image - blur, 0).astype(np.float32)


def add_detail(image: np.ndarray, region: np.ndarray, amount: float,
               width: float = DETAIL_WIDTH) -> np.ndarray:
    """``image`` plus ``amount`` times its detail (:func:`high_pass`) inside ``region``."""
    if amount == 0:
        return image
    return (image + amount * high_pass(image, region, width)).astype(np.float32)


def sure_detail_amount(residual: np.ndarray, detail: np.ndarray, detail_divergence: np.ndarray,
                       bias: np.ndarray, scored: np.ndarray,
                       bounds: tuple[float, float] = DETAIL_BOUNDS) -> tuple[float, dict]:
    """The amount ``a`` of detail that minimizes SURE of ``output + a * detail`` on ``scored``.

    Parameters
    ----------
    residual
        The output minus the noisy input.
    detail, detail_divergence
        The output's detail, and ``probe * (detail(x + eps probe) - detail(x)) / eps``: a
        one-draw estimate of the detail's divergence weighted by the noise covariance (the
        probe, a draw of the noise, carries it).
    bias
        The noise's mean (Rician bias) at each voxel, taken off the data term.

    SURE(a), up to the noise variance, is the mean of
    ``(residual + bias + a detail)^2 + 2 (divergence + a detail_divergence)``, where the
    output's own divergence does not depend on ``a``: a quadratic ``A a^2 + B a + C``.
    Returns the clipped minimizer, and ``A``, ``B`` and the estimated change of the squared
    error from ``a = 0`` (negative: better).
    """
    r, u = (residual + bias)[scored].astype(np.float64), detail[scored].astype(np.float64)
    quad = float(np.mean(u * u))
    lin = float(np.mean(2 * r * u + 2 * detail_divergence[scored]))
    amount = float(np.clip(-lin / (2 * quad), *bounds)) if quad > 0 else 0.0
    return amount, {"quadratic": quad, "linear": lin,
                    "sure_change": quad * amount ** 2 + lin * amount}


def _mean_length(components: list[np.ndarray], step: list[np.ndarray], amount: float) -> float:
    """The mean length of the vectors ``components + amount * step``, each component a flat
    array over the same voxels."""
    total = sum(np.square(c + amount * d, dtype=np.float64) for c, d in zip(components, step))
    return float(np.mean(np.sqrt(total)))


def matched_detail_amount(output: np.ndarray, average: np.ndarray, probe: np.ndarray,
                          region: np.ndarray, compared: np.ndarray | None = None,
                          bounds: tuple[float, float] = DETAIL_BOUNDS,
                          width: float = DETAIL_WIDTH) -> tuple[float, dict]:
    """The amount ``a`` of detail at which ``output + a * detail``, with the noise ``probe``
    added, has the mean gradient magnitude of ``average`` in the interior of ``region``.

    Parameters
    ----------
    output
        The denoised registered average.
    average, probe
        The registered average and a draw of its noise (anatomy removed,
        :func:`~noise2average.arrays.noise.difference_probe`).
    region
        Where the detail is added (:func:`add_detail`).
    compared
        Where the gradients are compared; by default the interior of ``region``
        (:func:`~noise2average.arrays.sharpness.interior`), where its border adds none.

    The ratio of the two means (the gradient discrepancy, 1 where they match) grows with
    ``a``: an ``output`` already as sharp as the data gets 0, one that no amount in
    ``bounds`` makes as sharp gets the upper bound. Returns the amount and a record of the
    discrepancy before and after.
    """
    inner = interior(region) if compared is None else compared
    goal = float(np.mean(gradient_magnitude(average)[inner], dtype=np.float64))
    noisy = [c[inner] for c in gradient_components(output + probe)]
    step = [c[inner] for c in gradient_components(high_pass(output, region, width))]

    def discrepancy(amount: float) -> float:
        return _mean_length(noisy, step, amount) / max(goal, 1e-30)

    low, high = bounds
    before = discrepancy(low)
    if before >= 1:
        amount = low
    elif discrepancy(high) <= 1:
        amount = high
    else:
        amount = float(optimize.brentq(lambda a: discrepancy(a) - 1, low, high, xtol=1e-3))
    return amount, {"gradient_discrepancy": round(before, 4),
                    "gradient_discrepancy_after": round(discrepancy(amount), 4)}


def budget_amount(quadratic: float, linear: float, error: float, budget_db: float) -> float:
    """The largest amount of detail whose estimated growth of the squared error,
    ``quadratic * a^2 + linear * a`` (:func:`sure_detail_amount`'s terms), stays within
    ``budget_db`` decibels of PSNR of the estimated ``error`` itself; infinite where the
    estimates give no bound (a non-positive error or quadratic)."""
    if quadratic <= 0 or error <= 0:
        return float("inf")
    allowed = error * (10 ** (budget_db / 10) - 1)
    return float((-linear + np.sqrt(linear ** 2 + 4 * quadratic * allowed)) / (2 * quadratic))
