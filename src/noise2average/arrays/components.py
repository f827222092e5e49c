"""The principal components of a diffusion shell: an orthonormal change of basis across its DWIs.

A shell's DWIs share their anatomy and differ by the diffusion contrast, which a tensor
describes with a handful of numbers per voxel. Rotated onto the principal axes of the shell's
voxels, the first component is, up to a factor sqrt(n), the shell's mean image, with every
tissue boundary and sqrt(n) times a single DWI's signal; a few more carry the contrast between
directions; the rest hold little but noise. The rotation is orthonormal, so noise that is
independent between the DWIs and of equal variance stays so between the components, with the
same variance and the same spatial pattern (g-factor maps, correlation): a single-channel
denoiser sees the same noise in every component, and the mean's boundaries, at a high
signal-to-noise ratio, are not in the components that carry the contrast between directions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .noise import difference_probe


def principal_basis(series: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The (n, n) orthonormal matrix whose columns are the principal axes of the mask voxels of
    ``series`` (X, Y, Z, n), by decreasing uncentred second moment (no mean taken off: the
    first column is then close to the direction of the mean image)."""
    voxels = series[mask].astype(np.float64)
    moment = voxels.T @ voxels / max(len(voxels), 1)
    values, vectors = np.linalg.eigh(moment)
    vectors = vectors[:, np.argsort(values)[::-1]]
    # a sign convention, so that the basis does not depend on the eigen solver: each column's
    # largest entry positive (the first column, the mean's direction, then has all entries > 0)
    signs = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])])
    return (vectors * np.where(signs == 0, 1, signs)).astype(np.float32)


def to_components(series: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``series`` (..., n) in the basis' components (..., n)."""
    return (series @ basis).astype(np.float32)


def from_components(components: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_components` (the basis is orthonormal)."""
    return (components @ basis.T).astype(np.float32)


def component_snr(reps: Sequence[np.ndarray], basis: np.ndarray, mask: np.ndarray
                  ) -> np.ndarray:
    """Per component of ``basis``, the variance of the repetitions' average over the mask
    voxels, less its noise's, over its noise's: the noise variance from the repetitions'
    signed difference (:func:`~noise2average.arrays.noise.difference_probe`), which has the
    average's."""
    average = np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
    noise = (to_components(difference_probe(list(reps)), basis)[mask].astype(np.float64) ** 2
             ).mean(0)
    signal = to_components(average, basis)[mask].astype(np.float64).var(0) - noise
    return signal / np.maximum(noise, 1e-24)
