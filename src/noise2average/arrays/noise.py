"""Noise models (Rician magnitude, g-factor maps) and noise estimation from repetitions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage, stats


def rician(clean: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator,
           correlation: float = 0.0, coils: int = 1) -> np.ndarray:
    """Magnitude of ``clean + n_re + i n_im`` with n ~ N(0, sigma^2).

    ``correlation`` > 0 smooths every noise channel with a Gaussian of that width (voxels) and
    rescales it back to unit variance: the spatial correlation that interpolation and
    parallel-imaging reconstruction leave in real data. ``coils`` > 1 gives the root sum of
    squares of that many complex receive channels with the signal in one of them: the
    non-central chi noise of multi-coil magnitude images (1 is Rician).
    """
    shape = clean.shape
    sig = np.asarray(sigma, dtype=np.float32)

    def channel() -> np.ndarray:
        ch = rng.standard_normal(shape, dtype=np.float32)
        if correlation > 0:
            ndimage.gaussian_filter(ch, correlation, output=ch, mode="wrap")
            ch /= ch.std() + 1e-12
        return sig * ch

    power = (clean + channel()) ** 2 + channel() ** 2
    for _ in range(coils - 1):
        power += channel() ** 2 + channel() ** 2
    return np.sqrt(power).astype(np.float32)


def smooth_field(shape: tuple[int, ...], rng: np.random.Generator, low: float, high: float,
                 scale: float = 0.25) -> np.ndarray:
    """Random smooth positive field with values spanning about [low, high].

    Made from Gaussian noise on a coarse grid (``scale`` of the size), cubic-upsampled; used for
    g-factor maps and bias fields.
    """
    coarse = [max(2, int(round(s * scale / 4))) for s in shape]
    field = rng.standard_normal(coarse)
    field = ndimage.zoom(field, [s / c for s, c in zip(shape, coarse)], order=3)
    field = field[tuple(slice(0, s) for s in shape)]
    lo, hi = np.percentile(field, [1, 99])
    field = (field - lo) / max(hi - lo, 1e-6)
    return (low + (high - low) * np.clip(field, 0, 1)).astype(np.float32)


def gfactor_map(shape: tuple[int, ...], rng: np.random.Generator,
                low: float = 1.0, high: float = 1.8) -> np.ndarray:
    """Smooth parallel-imaging noise amplification map (mean about 1.3 for 1.0-1.8)."""
    return smooth_field(shape, rng, low, high)


def noise_map(reps: list[np.ndarray], mask: np.ndarray | None = None,
              radius: float = 2.0) -> np.ndarray:
    """Local noise standard deviation of ONE repetition, from the spread between repetitions.

    Each repetition's deviation from the mean, scaled by N / (N - 1) to make its variance unbiased,
    is smoothed as a local variance (Gaussian of ``radius`` voxels). Anatomy cancels; residual
    misalignment shows up as extra "noise" at edges, which is what a user should see.
    """
    stack = np.stack(reps).astype(np.float32)
    n = stack.shape[0]
    dev2 = ((stack - stack.mean(0)) ** 2).sum(0) / (n - 1)
    var = ndimage.gaussian_filter(dev2, radius)
    out = np.sqrt(np.maximum(var, 0)).astype(np.float32)
    if mask is not None:
        out[~mask] = 0
    return out


def resampling_variance(resample: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...],
                        radius: float = 6.0, seed: int = 0) -> np.ndarray:
    """The local fraction of white noise's variance that ``resample`` keeps.

    Interpolating a noisy image onto a shifted or rotated grid averages neighbouring voxels,
    and the noise shrinks with it (cubic splines keep 0.63 of the variance at a half-voxel
    shift, 0.75 on average under a small rotation); a noise map estimated from resampled
    repetitions reads low by that much. Measured by resampling unit white noise with the
    same ``resample`` and smoothing its square (Gaussian of ``radius`` voxels: the factor
    varies slowly, and a wide window keeps the estimate's own noise near 1 %).
    """
    white = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    kept = ndimage.gaussian_filter(np.asarray(resample(white), np.float32) ** 2, radius)
    return np.clip(kept, 0.05, None).astype(np.float32)


def registered_noise_maps(reps: list[np.ndarray], frames) -> tuple[list[np.ndarray], np.ndarray]:
    """Local noise SD maps of N repetitions registered by ``frames`` (an
    :class:`~noise2average.arrays.frames.Frames`): one per repetition in its own frame, and
    one for their registered average in repetition 1's frame (unmasked).

    The spread about the mean of the registered repetitions estimates the mean of their
    variances, which is what their average holds (divided by N). A repetition in its own frame
    is not resampled, and resampling shrinks noise, so its map's variance is divided by the
    mean fraction the resampled ones keep (:func:`resampling_variance`).
    """
    n, shape = len(reps), reps[0].shape
    aligned = [frames.to_frame(r, j, 0) for j, r in enumerate(reps)]
    kept = np.mean([np.ones(shape, np.float32) if a is r else resampling_variance(
        lambda w, j=j: frames.to_frame(w, j, 0), shape)
        for j, (a, r) in enumerate(zip(aligned, reps))], axis=0)
    spread = noise_map(aligned)
    own = (spread / np.sqrt(kept)).astype(np.float32)
    per_rep = [own if j == 0 else frames.to_frame(own, 0, j).astype(np.float32)
               for j in range(n)]
    return per_rep, (spread / np.sqrt(n)).astype(np.float32)


def difference_probe(aligned: list[np.ndarray]) -> np.ndarray:
    """A draw of the noise of the average of N registered repetitions, anatomy removed.

    The repetitions are summed with alternating signs (an odd one out gets weight 0) and
    divided by N: the anatomy cancels, up to the residual misalignment, and the noise keeps
    the covariance of the average's own noise (every repetition's g-factor map and
    resampling), since independent noises add their covariances whatever their signs. With an
    odd N the missing repetition's share is made up by scaling, assuming equal variances.
    """
    n = len(aligned)
    if n < 2:
        raise ValueError("a difference probe needs at least two repetitions")
    m = n - n % 2
    signed = sum((1.0 if k % 2 == 0 else -1.0) * aligned[k].astype(np.float64) for k in range(m))
    return (signed / n * np.sqrt(n / m)).astype(np.float32)


def remove_anatomy(probe: np.ndarray, average: np.ndarray, radius: float = 3.0,
                   bins: int = 32) -> np.ndarray:
    """``probe`` without the part that the contrast of ``average`` explains.

    Repetitions that differ in contrast, such as two echoes (the later one darker by T2*,
    tissue by tissue), leave that difference in their signed difference: "noise" that is
    anatomy, which would make SURE overestimate the noise and the Rician bias. Two
    least-squares fits take it out: a ratio to the average that depends on its intensity
    (``bins`` quantile bins: tissues differ in both), then a slowly varying multiple of the
    average (Gaussian windows of ``radius`` voxels). Repetitions of one contrast give fits
    near zero, and each fit pools thousands of voxels, so it takes a negligible share of
    the noise."""
    a = np.asarray(average, np.float32)
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.digitize(a, edges)
    num = np.bincount(which.ravel(), (probe * a).ravel(), minlength=len(edges) + 1)
    den = np.bincount(which.ravel(), (a * a).ravel(), minlength=len(edges) + 1)
    ratio = num / np.maximum(den, 1e-12)
    rest = probe - (ratio[which] * a).astype(np.float32)
    num = ndimage.gaussian_filter(rest * a, radius)
    den = ndimage.gaussian_filter(a * a, radius)
    beta = num / np.maximum(den, 1e-6 * float(den.max()) + 1e-12)
    return (rest - beta * a).astype(np.float32)


def contrast_explained(deviation: np.ndarray, estimate: np.ndarray, mask: np.ndarray
                       ) -> tuple[np.ndarray, float]:
    """The part of ``deviation`` (one repetition minus the average of all) that the contrast
    of ``estimate`` (the denoised average) explains, by the two fits of
    :func:`remove_anatomy`, and its RMS over the deviation's inside ``mask``: near 0 for
    repetitions of one contrast, whose deviations are noise; large for echoes, whose
    deviations hold each echo's own brightness, tissue by tissue."""
    explained = (deviation - remove_anatomy(deviation, estimate)).astype(np.float32)
    inside = deviation[mask].astype(np.float64)
    share = float(np.sqrt(np.mean(explained[mask].astype(np.float64) ** 2)
                          / max(np.mean(inside ** 2), 1e-24)))
    return explained, share


def local_sd(image: np.ndarray, radius: float = 2.0) -> np.ndarray:
    """The local root mean square of a zero-mean noise image (Gaussian window of ``radius``)."""
    return np.sqrt(ndimage.gaussian_filter(np.square(image, dtype=np.float32), radius))


def probe_moved(probe: np.ndarray, sd: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """A noise ``probe`` (X, Y, Z, or C, X, Y, Z) moved by ``shift`` voxels along the spatial
    ``axis`` (wrapping round the volume) and rescaled to the local noise SD ``sd`` (X, Y, Z)
    where it lands: a draw of the noise that is independent of the noise where it is used."""
    sd = np.maximum(sd, 1e-3 * float(sd.max()) + 1e-12)
    lead = probe.ndim - sd.ndim
    moved = np.roll(probe, shift, axis=axis + lead)
    return (moved * (sd / np.roll(sd, shift, axis=axis))).astype(np.float32)


def rician_mean(signal: np.ndarray, sd: float | np.ndarray, coils: int = 1) -> np.ndarray:
    """The mean of a magnitude with true ``signal`` (>= 0) and Gaussian SD ``sd`` per part:
    Rician for one channel, sd sqrt(pi/2) L_1/2(-signal^2 / (2 sd^2)), written with
    exponentially scaled Bessel functions, which keeps it finite at any SNR. With ``coils``
    > 1, the root sum of squares of that many complex channels with the signal in one of
    them (non-central chi with 2 ``coils`` degrees of freedom, :func:`rician`): the
    generalized Laguerre function, as a confluent hypergeometric one."""
    from scipy import special

    sd = np.maximum(np.asarray(sd, np.float64), 1e-12)
    if coils > 1:
        x = np.asarray(signal, np.float64) ** 2 / (2 * sd ** 2)
        scale = np.exp(special.gammaln(coils + 0.5) - special.gammaln(coils)
                       - special.gammaln(1.5))
        return (sd * np.sqrt(np.pi / 2) * scale * special.hyp1f1(-0.5, coils, -x)
                ).astype(np.float32)
    t = np.asarray(signal, np.float64) ** 2 / (4 * sd ** 2)
    laguerre = (1 + 2 * t) * special.i0e(t) + 2 * t * special.i1e(t)
    return (sd * np.sqrt(np.pi / 2) * laguerre).astype(np.float32)


def rician_bias(estimate: np.ndarray, sd: float | np.ndarray, coils: int = 1) -> np.ndarray:
    """How far a magnitude of noise SD ``sd`` (``coils`` channels, :func:`rician_mean`) sits
    above the signal ``estimate`` on average (for one channel about sd^2 / (2 signal) in bright
    tissue, sd sqrt(pi/2) where there is no signal; about 2 ``coils`` - 1 times that in
    bright tissue). Averaging repetitions lowers the noise's SD, not this bias."""
    clean = np.clip(np.asarray(estimate, np.float32), 0, None)
    return rician_mean(clean, sd, coils) - clean


def estimate_sigma(reps: list[np.ndarray], mask: np.ndarray) -> float:
    """Global noise standard deviation of one repetition from the differences between them."""
    stack = np.stack([r[mask] for r in reps]).astype(np.float64)
    n = stack.shape[0]
    dev2 = ((stack - stack.mean(0)) ** 2).sum(0) / (n - 1)
    # dev2 ~ sigma^2 chi2(n - 1) / (n - 1): divide by that law's median for a robust estimate
    return float(np.sqrt(np.median(dev2) / (stats.chi2.median(n - 1) / (n - 1))))
