"""Brain or head masks when the user gives none, the bounding box of a mask, and the weights
that blend a result inside a mask into the plain average outside it."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def auto_mask(image: np.ndarray) -> np.ndarray:
    """Foreground mask of a magnitude image: the smoothed image above 0.4 x its Otsu threshold
    (dark CSF and skull sit below Otsu in T1w) and above twice the median of the voxels below
    Otsu (the background noise floor; capped at Otsu for images without background),
    connected components of at least 5 % of the largest one, holes filled. It keeps the head, not only the brain: pass a brain mask
    (e.g. from BET or SynthStrip) for statistics restricted to the brain."""
    sm = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    vals = sm[sm > np.percentile(sm, 2)]
    otsu = _otsu(vals)
    thr = max(0.4 * otsu, min(otsu, 2.0 * float(np.median(vals[vals < otsu]))))
    fg = sm > thr
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum(fg, labels, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= 0.05 * sizes.max()) + 1
        fg = np.isin(labels, keep)
    # closed with the faces' own values beyond the volume: closing erodes from a border of 0,
    # which would drop the outer two slices of a head that fills the field of view (an EPI)
    fg = ndimage.binary_closing(np.pad(fg, 2, mode="edge"), iterations=2)[2:-2, 2:-2, 2:-2]
    return ndimage.binary_fill_holes(fg)


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centers) - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(centers[int(np.argmax(between))])


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding the mask, grown by ``margin`` voxels (clipped)."""
    idx = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - margin), min(s, int(i.max()) + 1 + margin))
                 for i, s in zip(idx, mask.shape))


def centred_cube(mask: np.ndarray, edge: int) -> tuple[slice, ...]:
    """Slices of a cube of ``edge`` voxels centred on the mask's bounding box (clipped to the
    volume)."""
    out = []
    for s, n in zip(bounding_box(mask), mask.shape):
        start = min(max(0, (s.start + s.stop) // 2 - edge // 2), max(0, n - edge))
        out.append(slice(start, min(n, start + edge)))
    return tuple(out)


def holdout_slab(mask: np.ndarray, fraction: float, min_thickness: int = 3) -> tuple[slice, ...]:
    """A slab through the middle of the mask, across its longest axis, thick enough to hold
    ``fraction`` of the mask's voxels (at least ``min_thickness`` slices).

    One contiguous slab, not scattered voxels, so that a network can be run on it alone (its
    bounding box plus the receptive halo) at a fraction of a full pass.
    """
    box = bounding_box(mask)
    axis = int(np.argmax([s.stop - s.start for s in box]))
    counts = mask.sum(axis=tuple(a for a in range(3) if a != axis))
    centre = int(round(float(np.average(np.arange(counts.size), weights=counts))))
    lo, hi = centre, centre + 1
    goal = fraction * counts.sum()
    while (counts[lo:hi].sum() < goal or hi - lo < min_thickness) and hi - lo < counts.size:
        # grow towards the side with more mask voxels, inside the volume
        down = counts[lo - 1] if lo > 0 else -1
        up = counts[hi] if hi < counts.size else -1
        if up >= down:
            hi += 1
        else:
            lo -= 1
    return tuple(slice(lo, hi) if a == axis else slice(None) for a in range(3))


#: voxels outside the mask over which the denoised result fades into the plain average
BLEND_WIDTH = 3


def blend_weights(mask: np.ndarray, width: int = BLEND_WIDTH) -> np.ndarray:
    """Weight of the denoised image in an edge-blended output: 1 inside ``mask``, falling
    linearly with the distance from it (1 - d / (width + 1) at d = 1 .. ``width`` voxels) and 0
    beyond. A hard switch from denoised to noisy at the mask edge leaves a visible step in the
    noise level and a rim in the residual; the ramp spreads it over ``width`` voxels."""
    mask = mask.astype(bool)
    if width <= 0 or not mask.any():
        return mask.astype(np.float32)
    distance = ndimage.distance_transform_edt(~mask)
    return np.clip(1.0 - distance / (width + 1), 0.0, 1.0).astype(np.float32)


def blend_outside(inside: np.ndarray, outside: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``weights * inside + (1 - weights) * outside``; 3D ``weights`` broadcast over the
    channels of (X, Y, Z, C) images."""
    w = weights[..., None] if inside.ndim == weights.ndim + 1 else weights
    return (w * inside + (1.0 - w) * outside).astype(np.float32)
