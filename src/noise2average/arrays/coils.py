"""How many receive channels a magnitude image's noise floor comes from, read off its background.

A root-sum-of-squares image of ``L`` coil channels carries non-central chi noise: its mean
sits above the signal by roughly 2 L - 1 times a Rician (one-channel) image's bias, which
averaging repetitions does not lower (:func:`noise2average.arrays.noise.rician_bias`). Where
there is no signal (the air around the head) the magnitude is pure noise, and the ratio of
its mean to its SD depends on L alone (1.91 for one channel, 5.61 for eight). One
repetition in its own frame gives both locally, wherever the noise level varies: the mean
and the spatial SD of its air over a small window. Not the registered average: resampling a
moved repetition into the first one's frame smooths its noise, which lowers the SD and
keeps the mean, and the ratio would read more channels than there are (a protocol-v1 pair
of Rician 1 mm brains read two).

Air is told from dark tissue (skull, scalp) by what noise lacks: structure. In air the
average's spatial variance over a small window is its noise variance (the repetitions'
difference gives it); tissue adds its own.
Volumes without enough air (crops of the brain, skull-stripped or zero-filled backgrounds)
keep one channel, the Rician model. Flat tissue outside the mask looks like air by these two
moments; its mean-to-SD ratio is its SNR, so a ratio above that of ``MAX_COILS`` channels
keeps one channel too, and a flat region of low SNR is the case this reading gets wrong.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special

#: the largest channel count considered (an effective count: correlated channels count less);
#: a larger ratio is flat tissue rather than air, and keeps one channel
MAX_COILS = 32
#: the Gaussian window (voxels) of the local means and variances
WINDOW = 3.0
#: air: spatial variance of the average at most this multiple of its noise variance
AIR_VARIANCE_RATIO = 1.2
#: voxels far from the mask, and the fewest air voxels (and share of the volume) to read
MARGIN = 4
MIN_AIR_VOXELS = 10000
MIN_AIR_SHARE = 0.02


def noise_mean_to_sd(coils: np.ndarray | int) -> np.ndarray:
    """Mean over SD of the magnitude of pure noise from ``coils`` complex channels (a chi
    law with 2 ``coils`` degrees of freedom)."""
    coils = np.asarray(coils, np.float64)
    mean = np.sqrt(2) * np.exp(special.gammaln(coils + 0.5) - special.gammaln(coils))
    return mean / np.sqrt(2 * coils - mean ** 2)


def _local_moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the spatial variance of ``image`` over the Gaussian window."""
    mean = ndimage.gaussian_filter(image, WINDOW)
    return mean, ndimage.gaussian_filter(np.square(image), WINDOW) - mean ** 2


def background_coils(average: np.ndarray, probe: np.ndarray, mask: np.ndarray,
                     first: np.ndarray) -> tuple[int, int]:
    """(channel count, air voxels read) of the noise floor of ``average``, the mean of
    registered magnitude repetitions whose first, ``first``, is in its own frame (never
    resampled); ``probe`` is a draw of the average's noise
    (:func:`~noise2average.arrays.noise.difference_probe`). One channel where fewer than
    ``MIN_AIR_VOXELS`` (or ``MIN_AIR_SHARE`` of the volume) air voxels lie outside
    ``mask``."""
    average = np.asarray(average, np.float32)
    noise_var = ndimage.gaussian_filter(np.square(probe, dtype=np.float32), WINDOW)
    spatial_var = _local_moments(average)[1]
    candidates = ~ndimage.binary_dilation(mask, iterations=MARGIN) & (average > 0)
    candidates &= noise_var > 1e-12 * float(noise_var.max() or 1.0)
    air = candidates & (spatial_var < AIR_VARIANCE_RATIO * noise_var)
    found = int(air.sum())
    if found < max(MIN_AIR_VOXELS, MIN_AIR_SHARE * average.size):
        return 1, found
    mean, variance = _local_moments(np.asarray(first, np.float32))
    ratio = float(np.median(mean[air] / np.sqrt(np.maximum(variance[air], 1e-30))))
    table = noise_mean_to_sd(np.arange(1, MAX_COILS + 1))
    if ratio > 1.1 * table[-1]:
        return 1, found
    return int(np.argmin(np.abs(np.log(table / ratio)))) + 1, found
