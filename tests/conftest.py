"""Shared fixtures: tiny, real volumes (a crop of the MNI152 template shipped with nilearn)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from noise2average.arrays.simulate import SimulationConfig, simulate
from noise2average.io.templates import mni152

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mni_crop():
    """A 40^3 crop of the MNI152 T1 across cortex, WM and ventricles, and its brain mask."""
    t1, mask, _ = mni152()
    sl = (slice(70, 110), slice(100, 140), slice(80, 120))
    return t1[sl].copy(), mask[sl].copy()


@pytest.fixture(scope="session")
def phantom(mni_crop):
    """Two protocol-v1 repetitions (sigma 0.08), the scaled reference and the mask."""
    t1, mask = mni_crop
    reps, ref, _ = simulate(t1, mask, (1.0, 1.0, 1.0), SimulationConfig(sigma=0.08, seed=3))
    return reps, ref, mask


AFFINE = np.array([[-1.0, 0, 0, 90], [0, 1.0, 0, -126], [0, 0, 1.2, -72], [0, 0, 0, 1]])


def write_nifti(path, data, affine=AFFINE, dtype=None):
    arr = np.asarray(data)
    if dtype is not None:
        arr = arr.astype(dtype)
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


@pytest.fixture()
def nifti_case(tmp_path, phantom):
    """Repetitions as int16 NIfTI files (scaled x1000) with an oblique-free LAS affine, a mask."""
    reps, ref, mask = phantom
    paths = [write_nifti(tmp_path / f"rep{k}.nii.gz", np.round(r * 1000), dtype=np.int16)
             for k, r in enumerate(reps, 1)]
    mpath = write_nifti(tmp_path / "mask.nii.gz", mask.astype(np.uint8))
    return tmp_path, paths, mpath


def shrink_contrast(series: np.ndarray, b0: np.ndarray, kept: float) -> np.ndarray:
    """``series`` with a fraction ``kept`` of its contrast between diffusion directions: each
    voxel's attenuations S/S0 pulled towards their mean (the b=0 volumes unchanged)."""
    s0 = np.maximum(series[..., b0].mean(-1, keepdims=True), 1e-6)
    att = series[..., ~b0] / s0
    mean = att.mean(-1, keepdims=True)
    out = series.copy()
    out[..., ~b0] = s0 * (mean + kept * (att - mean))
    return out
