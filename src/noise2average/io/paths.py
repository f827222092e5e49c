"""Output paths of the file workflows: NIfTI names and their stems, the refusal to overwrite
an input or an existing file, and the left-right axis of an affine."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import InputError


def check_output(path: Path, inputs: list[Path], force: bool) -> None:
    """Refuse ``path`` when it is one of ``inputs``, or when it exists and ``force`` is False."""
    resolved = path.resolve()
    for p in inputs:
        if p.resolve() == resolved:
            raise InputError(f"output {path} is also an input; choose another name")
    if path.exists() and not force:
        raise InputError(f"output {path} exists; pass --force to overwrite")


def nifti_stem(path: Path) -> tuple[Path, str]:
    """The folder and the name without .nii/.nii.gz of a NIfTI output path."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return path.parent, name[: -len(ext)]
    raise InputError(f"output {path} must end in .nii or .nii.gz")


def nifti_ext(path: Path) -> str:
    """``.nii.gz`` or ``.nii``, as ``path`` ends."""
    return ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"


def lr_axis(affine: np.ndarray) -> int:
    """Voxel axis that runs left-right in world space."""
    import nibabel as nib

    codes = nib.aff2axcodes(affine)
    return next(i for i, c in enumerate(codes) if c in ("L", "R"))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

