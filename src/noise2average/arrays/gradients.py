"""Diffusion gradient tables on arrays: validation, shells, and the AP/PA comparison.

Conventions (FSL): b-values in s/mm^2, one per volume; gradient directions are unit vectors, one
per volume, in the image's voxel frame. A volume whose b-value is at most ``b0_threshold`` is a
b=0 volume; its direction is ignored (zero, unit, or NaN as some tools write it, e.g. DIPY's
own ``small_64D.bvec``: NaN directions of b=0 volumes are set to zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

UNIT_TOLERANCE = 1e-2  # |norm - 1| allowed for a diffusion-weighted direction
SHELL_GAP = 100.0  # s/mm^2: sorted b-values further apart than this start a new shell


@dataclass(frozen=True)
class GradientTable:
    """A validated gradient table.

    Attributes
    ----------
    bvals : (n,) float64 b-values (s/mm^2).
    bvecs : (n, 3) float64 directions; exactly unit for DWIs, zero for b=0 volumes.
    b0_mask : (n,) bool, True for b=0 volumes.
    shells : nominal b-value of each shell (rounded median of its b-values), ascending.
    shell_index : (n,) int, index into ``shells`` of each volume, -1 for b=0 volumes.
    b0_threshold : the threshold used.
    """

    bvals: np.ndarray
    bvecs: np.ndarray
    b0_mask: np.ndarray
    shells: tuple[float, ...]
    shell_index: np.ndarray
    b0_threshold: float

    @property
    def n_volumes(self) -> int:
        return int(self.bvals.shape[0])

    @property
    def b0_indices(self) -> np.ndarray:
        return np.flatnonzero(self.b0_mask)

    @property
    def dwi_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.b0_mask)

    def shell_indices(self, shell: float) -> np.ndarray:
        """Volume indices of the DWIs in the shell whose nominal b-value is ``shell``."""
        k = int(np.argmin([abs(s - shell) for s in self.shells]))
        return np.flatnonzero(self.shell_index == k)


def _shells(bvals: np.ndarray, gap: float) -> tuple[tuple[float, ...], np.ndarray]:
    index = np.full(bvals.shape, -1, dtype=int)
    order = np.argsort(bvals, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and bvals[i] - bvals[groups[-1][-1]] <= gap:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    shells = []
    for k, g in enumerate(groups):
        index[g] = k
        shells.append(float(np.round(np.median(bvals[g]))))
    return tuple(shells), index


def validate_gradients(bvals, bvecs, n_volumes: int, *, b0_threshold: float = 50.0,
                       unit_tolerance: float = UNIT_TOLERANCE, shell_gap: float = SHELL_GAP,
                       source: str = "") -> GradientTable:
    """Check a gradient table against a DWI series and return it normalized.

    Parameters
    ----------
    bvals : array-like, (n,) b-values in s/mm^2.
    bvecs : array-like, (n, 3) directions ((3, n) is accepted for n != 3).
    n_volumes : number of volumes of the 4D series the table belongs to.
    b0_threshold : b-values at or below this are b=0 volumes.
    unit_tolerance : allowed deviation of a DWI direction's norm from 1.
    shell_gap : b-values closer than this (after sorting) belong to one shell.
    source : words naming the input in error messages (e.g. the file names).

    Returns
    -------
    GradientTable

    Raises
    ------
    InputError
        Counts that do not match the volumes, non-finite or negative b-values, non-finite,
        zero or non-unit DWI directions, or no b=0 volume.
    """
    where = f" ({source})" if source else ""
    bvals = np.asarray(bvals, dtype=np.float64).reshape(-1)
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.ndim != 2 or 3 not in bvecs.shape:
        raise InputError(f"bvecs{where} must be 3 x n or n x 3, got shape {bvecs.shape}")
    if bvecs.shape[1] != 3:  # (3, n): FSL's file layout
        bvecs = bvecs.T
    if bvals.size != n_volumes:
        raise InputError(f"{bvals.size} b-values{where} for {n_volumes} volumes")
    if bvecs.shape[0] != n_volumes:
        raise InputError(f"{bvecs.shape[0]} gradient directions{where} for {n_volumes} volumes")
    if not np.isfinite(bvals).all():
        raise InputError(f"b-values{where} contain NaN or Inf")
    if (bvals < 0).any():
        raise InputError(f"b-values{where} must be >= 0 (volume {int(np.argmax(bvals < 0))})")
    b0 = bvals <= b0_threshold
    if not b0.any():
        raise InputError(f"no b=0 volume{where} (no b-value <= {b0_threshold:g}); a b=0 "
                         "volume is needed to fit tensors")
    dwi = ~b0
    bad = dwi & ~np.isfinite(bvecs).all(axis=1)
    if bad.any():
        raise InputError(f"gradient direction of volume {int(np.argmax(bad))}{where} is NaN or Inf")
    norms = np.linalg.norm(np.where(np.isfinite(bvecs), bvecs, 0.0), axis=1)
    off = dwi & (np.abs(norms - 1.0) > unit_tolerance)
    if off.any():
        i = int(np.argmax(off))
        raise InputError(f"gradient direction of volume {i}{where} has length {norms[i]:.4g}, "
                         "not 1 (directions must be unit vectors)")
    vecs = np.zeros_like(bvecs)
    vecs[dwi] = bvecs[dwi] / norms[dwi, None]
    shells, idx = _shells(bvals[dwi], shell_gap) if dwi.any() else ((), np.zeros(0, int))
    shell_index = np.full(n_volumes, -1, dtype=int)
    shell_index[dwi] = idx
    return GradientTable(bvals=bvals, bvecs=vecs, b0_mask=b0, shells=shells,
                         shell_index=shell_index, b0_threshold=float(b0_threshold))


def _as_table(t) -> GradientTable:
    if isinstance(t, GradientTable):
        return t
    bvals, bvecs = t
    return validate_gradients(bvals, bvecs, len(np.asarray(bvals).reshape(-1)))


def gradient_mismatch(a, b, *, b_tolerance: float = 20.0, b_rel_tolerance: float = 0.02,
                      angle_tolerance_deg: float = 5.0) -> str | None:
    """Why two gradient tables differ, or None when they are the same protocol.

    Same protocol: the same number of volumes, b=0 volumes in the same places, b-values equal
    within ``max(b_tolerance, b_rel_tolerance * b)``, and each DWI direction equal up to sign
    within ``angle_tolerance_deg`` (opposite phase encoding does not change the gradients, but
    per-volume motion correction may rotate them by a few degrees).

    ``a`` and ``b`` are GradientTables or ``(bvals, bvecs)`` pairs.
    """
    a, b = _as_table(a), _as_table(b)
    if a.n_volumes != b.n_volumes:
        return f"{a.n_volumes} volumes against {b.n_volumes}"
    diff = np.flatnonzero(a.b0_mask != b.b0_mask)
    if diff.size:
        return f"volume {diff[0]} is b=0 in one table only"
    tol = np.maximum(b_tolerance, b_rel_tolerance * np.maximum(a.bvals, b.bvals))
    diff = np.flatnonzero(np.abs(a.bvals - b.bvals) > tol)
    if diff.size:
        i = diff[0]
        return f"volume {i} has b={a.bvals[i]:g} against b={b.bvals[i]:g}"
    dwi = ~a.b0_mask
    cos = np.abs(np.sum(a.bvecs * b.bvecs, axis=1))
    diff = np.flatnonzero(dwi & (cos < np.cos(np.deg2rad(angle_tolerance_deg))))
    if diff.size:
        i = diff[0]
        ang = np.rad2deg(np.arccos(np.clip(cos[i], 0, 1)))
        return f"volume {i} directions differ by {ang:.1f} degrees"
    return None


def same_gradients(a, b, **tolerances) -> bool:
    """True when two gradient tables are the same protocol (see :func:`gradient_mismatch`)."""
    return gradient_mismatch(a, b, **tolerances) is None


def require_same_gradients(a, b, names: tuple[str, str] = ("AP", "PA"), **tolerances) -> None:
    """Raise a one-line InputError when two series' gradient tables differ."""
    why = gradient_mismatch(a, b, **tolerances)
    if why is not None:
        raise InputError(f"the gradient tables of {names[0]} and {names[1]} differ: {why}")
