"""Image-quality metrics of benchmark protocol v1, inside a mask, against a reference."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .masking import bounding_box


def psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray,
         data_range: float = 1.0) -> float:
    mse = float(np.mean((image[mask].astype(np.float64) - reference[mask]) ** 2))
    return float(10 * np.log10(data_range**2 / max(mse, 1e-20)))


def nmae(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute error over the mean absolute reference, inside the mask."""
    ref = reference[mask].astype(np.float64)
    return float(np.mean(np.abs(image[mask] - ref)) / max(np.mean(np.abs(ref)), 1e-20))


def ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray,
         data_range: float = 1.0) -> float:
    """scikit-image SSIM map on the mask's bounding box, averaged over the mask."""
    from skimage.metrics import structural_similarity

    box = bounding_box(mask)
    _, smap = structural_similarity(reference[box].astype(np.float64),
                                    image[box].astype(np.float64),
                                    data_range=data_range, full=True)
    return float(smap[mask[box]].mean())


#: the SD (voxels) of the Gaussian whose derivatives are the sharpness ratio's gradient
GRADIENT_SIGMA = 0.5


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """The gradient's length at every voxel, on Gaussian derivatives of ``GRADIENT_SIGMA``."""
    return ndimage.gaussian_gradient_magnitude(image.astype(np.float32), GRADIENT_SIGMA)


def gradient_components(image: np.ndarray) -> list[np.ndarray]:
    """The derivatives along each axis whose root sum of squares is
    :func:`gradient_magnitude` (kept apart, the gradient of a sum is the sum of these)."""
    image = image.astype(np.float32)
    return [ndimage.gaussian_filter(image, GRADIENT_SIGMA,
                                    order=[int(a == b) for b in range(image.ndim)])
            for a in range(image.ndim)]


def sharpness_ratio(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude of ``image`` over that of ``reference`` in the mask (ideal 1.0;
    residual noise pushes it above, blur below)."""
    g = gradient_magnitude(image)[mask].mean()
    return float(g / max(gradient_magnitude(reference)[mask].mean(), 1e-20))


def score(image: np.ndarray, reference: np.ndarray, mask: np.ndarray,
          data_range: float = 1.0) -> dict[str, float]:
    """All protocol-v1 metrics as a dict."""
    return {
        "psnr": psnr(image, reference, mask, data_range),
        "ssim": ssim(image, reference, mask, data_range),
        "nmae": nmae(image, reference, mask),
        "sharpness": sharpness_ratio(image, reference, mask),
    }
