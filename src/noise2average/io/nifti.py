"""NIfTI in and out: validated float32 arrays in, float32 files out with the input's geometry."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from .atomic import atomic_path

AFFINE_ATOL_MM = 1e-2  # repetitions whose affines differ by more are not co-registered


def load_image(path: str | os.PathLike) -> nib.Nifti1Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        with np.errstate(all="ignore"):  # NaN quaternions etc. are judged below, not warned
            img = nib.load(str(path))
            img.header.get_data_shape()
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"cannot read {path} as NIfTI: {_brief(exc)}") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path} is not a NIfTI image")
    return img


def _brief(exc: BaseException) -> str:
    """An exception's text on one line (nibabel's messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _check_voxel_type(img: nib.Nifti1Image, path: Path) -> None:
    """One real number per voxel: RGB, untyped and complex voxels are refused, not cut."""
    dt = img.get_data_dtype()
    if dt.names or dt.kind == "V":
        kind = "RGB" if dt.names else f"untyped ({dt})"
        raise InputError(f"{path} holds {kind} voxels; expected a grey-level image")
    if dt.kind == "c":
        raise InputError(f"{path} holds complex voxels; give the magnitude image")


def _check_geometry(img: nib.Nifti1Image, path: Path) -> None:
    """A finite, invertible voxel-to-world affine and positive voxel sizes."""
    aff = np.asarray(img.affine, dtype=np.float64)
    if (aff.shape != (4, 4) or not np.isfinite(aff).all()
            or abs(np.linalg.det(aff[:3, :3])) < 1e-12):
        raise InputError(f"{path} has a non-finite or singular voxel-to-world affine "
                         "(check its sform/qform)")
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    if not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise InputError(f"{path} has invalid voxel sizes {tuple(zooms.tolist())} (pixdim); "
                         "expected positive numbers")


def _as_float(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    _check_voxel_type(img, path)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow -> Inf, refused later
            data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise InputError(f"cannot read the voxels of {path}: {_brief(exc)}") from exc
    return data


def load_volume(path: str | os.PathLike, ndim: int = 3) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Voxels of a 3D (``ndim=3``) or 4D NIfTI as float32, checked for shape and finiteness."""
    path = Path(path)
    img = load_image(path)
    shape = img.shape
    if ndim == 3 and len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != ndim:
        raise InputError(f"{path} is {len(img.shape)}D {tuple(img.shape)}; expected a {ndim}D image")
    if min(shape) < 1 or (ndim == 3 and min(shape) < 2):
        raise InputError(f"{path} has an empty or degenerate shape {tuple(img.shape)}")
    _check_geometry(img, path)
    data = _as_float(img, path).reshape(shape)
    if not np.isfinite(data).all():
        raise InputError(f"{path} contains NaN or Inf voxels")
    return data, img


def load_repetitions(paths: list[Path], ndim: int = 3, *, needs: str = "Noise2Average",
                     same_grid: bool = True) -> tuple[list[np.ndarray], list[nib.Nifti1Image]]:
    """Two or more distinct repetitions (``load_volume`` each); ``same_grid`` also requires one
    voxel grid. ``needs`` names what needs the repetitions in the error line."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and ndim == 3:
        return split_series(paths[0], needs)
    if len(paths) < 2:
        raise InputError(f"{needs} needs at least 2 repetitions, got {len(paths)}")
    if len({p.resolve() for p in paths}) != len(paths):
        raise InputError("the same file is given twice as a repetition")
    arrays, imgs = [], []
    for p in paths:
        data, img = load_volume(p, ndim)
        arrays.append(data)
        imgs.append(img)
    if same_grid:
        check_same_grid(imgs, paths, [a.shape for a in arrays])
    return arrays, imgs


def split_series(path: Path, needs: str = "Noise2Average"
                 ) -> tuple[list[np.ndarray], list[nib.Nifti1Image]]:
    """The volumes of one 4D file as repetitions (a repeated EPI or an fMRI-like series on one
    grid), each with a 3D image of the file's geometry."""
    img = load_image(path)
    if len(img.shape) != 4 or img.shape[3] < 2:
        raise InputError(f"{needs} needs at least 2 repetitions: give 2 or more 3D files, or "
                         f"one 4D file whose volumes are the repetitions ({path} is "
                         f"{tuple(img.shape)})")
    data, _ = load_volume(path, 4)
    arrays = [np.ascontiguousarray(data[..., k]) for k in range(data.shape[3])]
    header = img.header.copy()
    header.set_data_shape(arrays[0].shape)
    like = nib.Nifti1Image(arrays[0], img.affine, header)
    return arrays, [like] * len(arrays)


def load_reference(path, like: nib.Nifti1Image, first: Path, shape: tuple) -> np.ndarray:
    """The clean reference of a supervised run (3D, or 4D for a series as ``shape`` says),
    refused when missing or off the grid of ``like``, the first repetition ``first``."""
    if not path:
        raise InputError("--method supervised needs --reference CLEAN.nii.gz")
    ref, img = load_volume(path, ndim=len(shape))
    check_same_grid([like, img], [Path(first), Path(path)], [tuple(shape), ref.shape])
    return ref


def check_same_grid(imgs: list[nib.Nifti1Image], paths: list[Path], shapes: list[tuple]) -> None:
    ref_shape, ref_aff = shapes[0], imgs[0].affine
    for img, p, s in zip(imgs[1:], paths[1:], shapes[1:]):
        if tuple(s) != tuple(ref_shape):
            raise InputError(f"{p} has shape {tuple(s)} but {paths[0]} has {tuple(ref_shape)}; "
                             "repetitions must be co-registered on one grid")
        if not np.allclose(img.affine, ref_aff, atol=AFFINE_ATOL_MM, rtol=0):
            raise InputError(f"{p} and {paths[0]} have different affines; repetitions must be "
                             "co-registered on one grid (resample them first)")


def load_mask(path: str | os.PathLike, shape: tuple[int, ...],
              affine: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask (voxels > 0) on the given grid; empty or mismatched masks are refused."""
    path = Path(path)
    img = load_image(path)
    mshape = tuple(img.shape)
    if len(mshape) == 4 and mshape[3] == 1:
        mshape = mshape[:3]
    if mshape != tuple(shape):  # from the header: a wrong mask is refused before it is read
        raise InputError(f"mask {path} has shape {mshape} but the images have {tuple(shape)}")
    if affine is not None and not np.allclose(img.affine, affine, atol=AFFINE_ATOL_MM, rtol=0):
        raise InputError(f"mask {path} is not on the images' grid (different affine)")
    data = _as_float(img, path).reshape(mshape)
    mask = np.nan_to_num(data) > 0
    if not mask.any():
        raise InputError(f"mask {path} is empty")
    return mask


def save_volume(path: str | os.PathLike, data: np.ndarray, like: nib.Nifti1Image) -> None:
    """Write float32 ``data`` with the geometry (affine, qform/sform codes, zooms) of ``like``."""
    hdr = like.header.copy()
    hdr.set_data_dtype(np.float32)
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    if data.ndim != len(like.shape):
        hdr.set_data_shape(data.shape)
    img = type(like)(np.asarray(data, dtype=np.float32), like.affine, hdr)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
