"""Rigid transforms as ITK text files, the format ANTs (``antsApplyTransforms -t``), SimpleITK,
ITK-SNAP and Slicer read.

Convention of the file, as ITK's: the transform maps a point of the FIXED image's physical space
to the MOVING image's physical space (so that resampling the moving image through it lands on
the fixed grid), in ITK's LPS millimetres. In memory we keep nibabel's RAS millimetres; the two
differ by flipping the signs of x and y.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ..errors import InputError
from .atomic import write_text

_RAS_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def write_itk_affine(path: str | os.PathLike, world_ras: np.ndarray) -> None:
    """Write a 4x4 fixed->moving map in RAS mm as an ITK ``AffineTransform_double_3_3``."""
    m = np.asarray(world_ras, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InputError("an ITK transform needs a finite 4x4 matrix")
    lps = _RAS_LPS @ m @ _RAS_LPS
    params = list(lps[:3, :3].ravel()) + list(lps[:3, 3])
    text = ("#Insight Transform File V1.0\n#Transform 0\n"
            "Transform: AffineTransform_double_3_3\n"
            f"Parameters: {' '.join(repr(float(v)) for v in params)}\n"
            "FixedParameters: 0 0 0\n")
    write_text(path, text)


def read_itk_affine(path: str | os.PathLike) -> np.ndarray:
    """The 4x4 fixed->moving map in RAS mm of an ITK affine/rigid text transform."""
    try:
        text = open(path, encoding="ascii").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read transform {path}: {exc}") from exc
    kind = re.search(r"^Transform:\s*(\S+)", text, re.M)
    params = re.search(r"^Parameters:(.*)$", text, re.M)
    fixed = re.search(r"^FixedParameters:(.*)$", text, re.M)
    if not (kind and params and fixed) or not kind.group(1).startswith(
            ("AffineTransform_", "MatrixOffsetTransformBase_")):
        raise InputError(f"{path} is not an ITK affine text transform")
    try:
        p = np.array(params.group(1).split(), dtype=np.float64)
        c = np.array(fixed.group(1).split(), dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: unreadable transform parameters") from exc
    if p.shape != (12,) or c.shape != (3,) or not np.isfinite(np.r_[p, c]).all():
        raise InputError(f"{path}: expected 12 parameters and a 3D centre")
    a = p[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = a
    lps[:3, 3] = p[9:] + c - a @ c  # ITK: T(x) = A (x - c) + c + t
    return _RAS_LPS @ lps @ _RAS_LPS
