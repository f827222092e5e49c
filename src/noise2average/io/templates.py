"""Brain templates installed with the dependencies (no download at run time)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

_MNI = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
COLIN27_DIR = Path("/usr/share/mricron/templates")  # Debian package mricron-data


def nilearn_data_dir() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def mni152_paths() -> dict[str, Path]:
    """MNI152 2009a (symmetric, 1 mm) T1, GM and WM files shipped inside the nilearn wheel."""
    d = nilearn_data_dir()
    return {k: d / _MNI.format(k) for k in ("t1", "gm", "wm")}


def mni152() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNI152 T1 scaled so the 99th percentile in the brain is 1, its brain mask, and its affine.

    The brain mask is GM + WM probability > 0.5 with holes filled (ventricles included).
    """
    from scipy import ndimage

    paths = mni152_paths()
    t1_img = nib.load(paths["t1"])
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32)
    gm = np.asarray(nib.load(paths["gm"]).dataobj, dtype=np.float32)
    wm = np.asarray(nib.load(paths["wm"]).dataobj, dtype=np.float32)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(gm + wm > 0.5, iterations=3))
    t1 = np.clip(t1, 0, None) / np.percentile(t1[mask], 99)
    return t1.astype(np.float32), mask, t1_img.affine


def colin27_paths() -> tuple[Path, Path]:
    return COLIN27_DIR / "ch2.nii.gz", COLIN27_DIR / "ch2bet.nii.gz"
