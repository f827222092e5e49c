"""FSL-style ``bvals``/``bvecs`` text files in and out.

``bvals``: the b-values (s/mm^2), whitespace separated, usually one row (a column is accepted).
``bvecs``: the unit directions as 3 rows (FSL) or n rows of 3 (accepted). For 3 volumes the
layout is ambiguous and read as FSL's 3 rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..arrays.gradients import GradientTable, validate_gradients
from ..errors import InputError
from .atomic import write_text


def _read_numbers(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        rows = [line.replace(",", " ").split() for line in path.read_text().splitlines()]
        rows = [r for r in rows if r and not r[0].startswith("#")]
        arr = np.array([[float(x) for x in r] for r in rows], dtype=np.float64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {path} as numbers: {exc}") from exc
    if arr.size == 0:
        raise InputError(f"{what} file {path} is empty")
    return arr


def read_bvecs(path: str | os.PathLike) -> np.ndarray:
    """Directions of an FSL bvecs file as an (n, 3) array (NaN kept; validation decides)."""
    path = Path(path)
    arr = _read_numbers(path, "bvecs")
    if arr.ndim != 2:  # ragged rows
        raise InputError(f"bvecs file {path} has rows of different lengths")
    if arr.shape[0] == 3:
        return arr.T
    if arr.shape[1] == 3:
        return arr
    raise InputError(f"bvecs file {path} must hold 3 rows (or 3 columns), got {arr.shape[0]} x "
                     f"{arr.shape[1]}")


def read_bvals(path: str | os.PathLike) -> np.ndarray:
    """b-values of an FSL bvals file (one row or one column) as an (n,) array."""
    path = Path(path)
    arr = _read_numbers(path, "bvals")
    if arr.ndim != 2 or min(arr.shape) != 1:
        raise InputError(f"bvals file {path} must hold one row (or one column) of b-values")
    return arr.reshape(-1)


def read_table(bvals_path: str | os.PathLike, bvecs_path: str | os.PathLike, n_volumes: int,
               *, b0_threshold: float = 50.0) -> GradientTable:
    """Read and validate an FSL gradient table for a series of ``n_volumes`` volumes."""
    bvals = read_bvals(bvals_path)
    bvecs = read_bvecs(bvecs_path)
    source = f"{Path(bvals_path).name}, {Path(bvecs_path).name}"
    return validate_gradients(bvals, bvecs, n_volumes, b0_threshold=b0_threshold, source=source)


def read_fsl(bvals_path: str | os.PathLike, bvecs_path: str | os.PathLike, n_volumes: int,
             *, b0_threshold: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Validated b-values ``(n,)`` and unit directions ``(n, 3)`` of an FSL gradient table.

    Raises InputError (one line) for a missing or unreadable file, counts that do not match
    ``n_volumes``, non-unit directions or no b=0 volume. Directions of b=0 volumes come back
    as zeros.
    """
    t = read_table(bvals_path, bvecs_path, n_volumes, b0_threshold=b0_threshold)
    return t.bvals, t.bvecs


def write_fsl(bvals, bvecs, bvals_path: str | os.PathLike, bvecs_path: str | os.PathLike) -> None:
    """Write b-values as one row and directions as 3 rows (FSL), each file atomically."""
    bvals = np.asarray(bvals, dtype=np.float64).reshape(-1)
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.shape != (bvals.size, 3):
        raise ValueError(f"bvecs shape {bvecs.shape} does not match {bvals.size} b-values")
    write_text(bvals_path, " ".join(f"{b:.6g}" for b in bvals) + "\n")
    write_text(bvecs_path, "\n".join(" ".join(f"{v:.8f}" for v in row) for row in bvecs.T) + "\n")
