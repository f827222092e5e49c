"""How sharp a denoised image is next to the anatomy that the repetitions show, estimated
without the truth (arrays in, arrays out).

The benchmark's sharpness ratio (:func:`noise2average.arrays.metrics.sharpness_ratio`) needs
the noise-free image. Without it, the anatomy's gradient energy is what the registered
average's gradient energy has beyond its noise's, and a noise probe (a draw of the average's
noise, :func:`noise2average.arrays.noise.difference_probe`) gives the noise's: the two are
independent, so their energies add. The estimate is a ratio of root-mean-square gradients
(the benchmark's ratio is one of mean gradient magnitudes), on the same Gaussian derivative
of 0.5 voxels, inside the region's interior, where the edge of the region adds no gradient
of its own.

The two ratios weigh different things. A mean of magnitudes counts every voxel alike, so the
fine texture that lies below the noise weighs in it; a root mean square is ruled by the
edges. On protocol v1 at sigma 0.08 the default's result keeps 0.95-0.97 of the truth's
root-mean-square gradient and 0.92-0.95 of its mean magnitude in the mask's interior
(docs/benchmarks.md, "Sharpness at sigma 0.08"). The registration's interpolation smooths
the average a little, so the noise-free image itself reads 1.01-1.03.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .metrics import gradient_magnitude

#: voxels taken off the region's edge before gradients are averaged
INTERIOR_EROSION = 2


def interior(region: np.ndarray, erosion: int = INTERIOR_EROSION) -> np.ndarray:
    """``region`` eroded by ``erosion`` voxels; the region itself where nothing would be left."""
    inner = ndimage.binary_erosion(region, iterations=erosion)
    return inner if inner.any() else region.astype(bool)


def gradient_energy(image: np.ndarray, inner: np.ndarray) -> float:
    """The mean squared gradient magnitude of ``image`` over the voxels ``inner``, on the
    benchmark's Gaussian derivative (:func:`~noise2average.arrays.metrics.gradient_magnitude`)."""
    return float(np.mean(np.square(gradient_magnitude(image)[inner], dtype=np.float64)))


def anatomy_gradient_energy(average: np.ndarray, probe: np.ndarray, inner: np.ndarray) -> float:
    """The gradient energy of the anatomy in ``average``: its own minus its noise's
    (``probe``), at least a hundredth of its own (a probe of larger energy than the image is
    noise without anatomy to speak of)."""
    own = gradient_energy(average, inner)
    return max(own - gradient_energy(probe, inner), 0.01 * own)


def sharpness_estimate(image: np.ndarray, average: np.ndarray, probe: np.ndarray,
                       region: np.ndarray) -> float:
    """Root-mean-square gradient of ``image`` over the anatomy's (``average`` less its noise,
    ``probe``), in the interior of ``region``: 1 as sharp as the anatomy, below 1 smoother."""
    inner = interior(region)
    return float(np.sqrt(gradient_energy(image, inner)
                         / max(anatomy_gradient_energy(average, probe, inner), 1e-30)))
