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


def mni152_tissues() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """MNI152 2009a GM, WM and CSF fractions (1 mm), its brain mask and affine.

    nilearn ships the GM and WM probability maps (stored as uint8 0-255, rescaled here to
    0-1) but no CSF map, so CSF is what is left: CSF = clip(1 - GM - WM, 0, 1) inside the brain
    mask grown by 2 voxels (ventricles, sulci and a thin rim of external CSF), 0 outside. The
    brain mask is GM + WM > 0.5, closed and hole-filled (ventricles included).
    """
    from scipy import ndimage

    paths = mni152_paths()
    img = nib.load(paths["gm"])

    def fraction(path):
        data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        if data.max() > 1.5:  # stored as 0-255
            data /= 255.0
        return np.clip(data, 0, 1)

    gm, wm = fraction(paths["gm"]), fraction(paths["wm"])
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(gm + wm > 0.5, iterations=3))
    total = gm + wm
    over = total > 1  # the maps are independent probabilities: keep their sum <= 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    shell = ndimage.binary_dilation(brain, iterations=2)
    csf = np.where(shell, np.clip(1.0 - gm - wm, 0, 1), 0).astype(np.float32)
    return {"gm": gm, "wm": wm, "csf": csf}, brain, img.affine
