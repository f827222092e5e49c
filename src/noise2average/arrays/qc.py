"""Checks on a finished run that tell a user when its result needs a second look.

Each check looks at the arrays of one run (the repetitions, the mask, the estimated noise and
SNR) and returns a sentence when something is off: a result barely better than averaging or
smoother than the anatomy, a mask cut by the field of view or one that leaves slices with
signal out, repetitions that are nearly copies, noise or voxels unlike what the shipped T1w
network was pre-trained on. The file layer prints them and puts them in the report with a
verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: an estimated SNR gain over the plain average below this is "barely better than averaging"
MIN_GAIN = 1.2
#: noise SD of one repetition, as a fraction of the 99th percentile in the mask, that the
#: shipped T1w network was pre-trained on (MODEL_CARD.md: sigma in [0.01, 0.12])
PRETRAIN_SIGMA = (0.01, 0.12)
#: voxel edges (mm) of the pre-training data (0.8-1.3 mm)
PRETRAIN_VOXEL = (0.8, 1.3)
#: a slice outside the mask "holds signal" when this fraction of it is brighter than half the
#: mask's median
SIGNAL_FRACTION = 0.05
#: a result whose estimated sharpness (:mod:`.sharpness`) is below this is "smoother than the
#: anatomy": the default reads 0.97-1.00 on protocol v1, a blur of 0.7 voxels about 0.83
MIN_SHARPNESS = 0.9


def gain_warning(snr: dict) -> str | None:
    """The estimated SNR gain over the plain average, when it is near 1."""
    gain = snr_gain(snr)
    if gain is None or gain >= MIN_GAIN:
        return None
    return (f"estimated SNR gain over the plain average is only x{gain:.2f}: the result is "
            "barely better than averaging the repetitions")


def smoothing_warning(sharpness: float | None) -> str | None:
    """The result's estimated sharpness next to the repetitions' anatomy, when it is low."""
    if sharpness is None or sharpness >= MIN_SHARPNESS:
        return None
    return (f"the result's gradients are {sharpness:.2f} of the anatomy's in the repetitions "
            "(output_sharpness_estimate): it is smoother than the anatomy; the gradient "
            "match adds back its own detail up to output_detail_budget (dB), and --set "
            "output_detail=match,output_detail_budget=0 lifts that bound")


def snr_gain(snr: dict) -> float | None:
    """SNR of the result over that of the plain average (None when not measurable)."""
    after, before = snr.get("snr_result"), snr.get("snr_average")
    if not after or not before:
        return None
    return float(after) / float(before)


def mask_edge_warning(mask: np.ndarray) -> str | None:
    """Faces of the volume that the mask touches: the field of view may cut the anatomy."""
    mask = np.asarray(mask, bool)
    names = ("first x", "last x", "first y", "last y", "first z", "last z")
    faces = []
    for axis in range(3):
        for end in (0, -1):
            if np.take(mask, end, axis=axis).any():
                faces.append(names[2 * axis + (end == -1)])
    if not faces:
        return None
    return ("the mask touches the edge of the field of view (" + ", ".join(faces) + " slice): "
            "anatomy may be cut there, and the network sees no context beyond it")


def dropped_slices_warning(average: np.ndarray, mask: np.ndarray) -> str | None:
    """Slices beyond the mask's extent that hold signal (a mask that leaves anatomy out)."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    level = 0.5 * float(np.median(average[mask]))
    found = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        inside = np.flatnonzero(mask.any(axis=other))
        bright = (average > level).mean(axis=other)
        outside = np.ones(mask.shape[axis], bool)
        outside[inside.min():inside.max() + 1] = False
        n = int(np.sum(outside & (bright > SIGNAL_FRACTION)))
        if n:
            found.append(f"{n} along axis {axis}")
    if not found:
        return None
    return ("slices outside the mask hold signal (" + ", ".join(found) + "): the mask leaves "
            "anatomy out; pass a mask that covers it (--mask)")


def near_copies_warning(reps: Sequence[np.ndarray], mask: np.ndarray, sigma: float
                        ) -> str | None:
    """Repetitions whose differences are far below any MR noise level: copies, or images
    that were already denoised or interpolated together."""
    scale = _p99(reps[0], mask)
    if scale <= 0 or sigma / scale >= 1e-3:
        return None
    return (f"the repetitions are nearly identical (noise SD {sigma / scale:.1e} of the "
            "brightest signal): Noise2Average learns from their differences; are they copies, "
            "or already denoised?")


def pretraining_warnings(reps: Sequence[np.ndarray], mask: np.ndarray, sigma: float,
                         voxel_size: Sequence[float]) -> list[str]:
    """Noise level and voxel size outside the range the shipped T1w network was trained on."""
    out = []
    scale = _p99(reps[0], mask)
    rel = sigma / scale if scale > 0 else 0.0
    lo, hi = PRETRAIN_SIGMA
    if rel > 0 and not lo / 2 <= rel <= hi * 1.5:
        out.append(f"the noise SD is {rel:.3f} of the brightest signal, outside the "
                   f"{lo}-{hi} the T1w network was pre-trained on")
    vlo, vhi = PRETRAIN_VOXEL
    zooms = [float(z) for z in voxel_size]
    if min(zooms) < vlo * 0.8 or max(zooms) > vhi * 1.5:
        out.append("voxels of " + " x ".join(f"{z:g}" for z in zooms) + f" mm: the T1w "
                   f"network was pre-trained on {vlo}-{vhi} mm voxels (1 mm T1w brains)")
    elif max(zooms) / min(zooms) > 1.5:
        out.append("anisotropic voxels (" + " x ".join(f"{z:g}" for z in zooms) + " mm): the "
                   "T1w network was pre-trained on near-isotropic ones")
    return out


def run_warnings(reps: Sequence[np.ndarray], average: np.ndarray, mask: np.ndarray,
                 sigma: float, snr: dict, voxel_size: Sequence[float],
                 t1w_network: bool, automatic_mask: bool,
                 sharpness: float | None = None) -> list[str]:
    """Every warning of one run, most important first (empty: nothing to flag).

    ``t1w_network``: whether the result comes from the shipped T1w network, whose
    pre-training range is checked. ``automatic_mask``: whether the mask was made by
    :func:`~noise2average.arrays.masking.auto_mask`; only then are slices with signal outside
    it a fault (a brain mask the user gives leaves the neck out on purpose). ``sharpness``:
    the output pass's estimate, where it made one."""
    first = [gain_warning(snr), smoothing_warning(sharpness),
             near_copies_warning(reps, mask, sigma),
             dropped_slices_warning(average, mask) if automatic_mask else None,
             mask_edge_warning(mask)]
    found = [w for w in first if w]
    if t1w_network:
        found += pretraining_warnings(reps, mask, sigma, voxel_size)
    return found


def _p99(image: np.ndarray, mask: np.ndarray) -> float:
    mask = np.asarray(mask, bool)
    return float(np.percentile(image[mask], 99)) if mask.any() else 0.0
