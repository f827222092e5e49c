"""Rigid registration of repetitions: a robust multi-resolution fit for scans that moved
(:func:`rigid_register`: DIPY's mutual-information optimizer, then :func:`refine_rigid`), a fast
sub-voxel fit for images that are nearly aligned already (:func:`refine_rigid`), and resampling
(:func:`apply_rigid`).

Conventions (one for the whole module)
--------------------------------------
A registration of ``moving`` to ``fixed`` is stored as two equivalent 4x4 matrices:

``world``
    maps a point of the fixed image's world space (mm, the NIfTI/RAS frame given by the fixed
    affine) to the corresponding point of the moving image's world space. It is rigid
    (a proper rotation and a translation). This is the direction ITK/ANTs use for the
    transform that resamples ``moving`` onto ``fixed``.
``matrix``
    the same map between voxel indices: fixed voxel ``(i, j, k, 1)`` -> moving voxel
    ``matrix @ (i, j, k, 1)``, i.e. ``inv(moving_affine) @ world @ fixed_affine``. It is what
    :func:`apply_rigid` (and ``scipy.ndimage.affine_transform``) takes to resample ``moving``
    onto the fixed grid: ``registered[x] = moving[matrix @ x]``.

Without affines, both arrays are taken to lie on one grid of voxel size ``zooms`` with its world
origin at voxel (0, 0, 0); the two matrices then differ only by the voxel size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError

RIGID_TOL = 1e-3  # how far from orthonormal a rotation may be before it is not rigid


@dataclass(frozen=True)
class RigidResult:
    """A rigid registration of ``moving`` to ``fixed`` (see the module's conventions).

    Attributes
    ----------
    world : (4, 4) ndarray
        Fixed world (mm) -> moving world (mm), rigid.
    matrix : (4, 4) ndarray
        Fixed voxel -> moving voxel, what :func:`apply_rigid` takes.
    rotation_deg : tuple of 3 floats
        Rotation of ``world`` as angles about x, y, z (R = Rz Ry Rx), degrees.
    translation_mm : tuple of 3 floats
        Displacement (mm) that ``world`` gives the centroid of the fixed mask.
    metric : float
        Final value of the metric named by ``metric_name``: ``"ncc"`` (normalized
        cross-correlation inside the mask, 1 is perfect) after :func:`refine_rigid`, or
        ``"neg_mutual_information"`` from DIPY when ``rigid_register(..., refine=False)``.
    metric_name : str
    iterations : int
        Optimizer iterations, all levels together (for the mutual-information stage of
        :func:`rigid_register`, its iteration budget).
    seconds : float
        Wall time of the fit.
    levels : tuple
        Shrink factors used, coarse to fine.
    """

    world: np.ndarray
    matrix: np.ndarray
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    metric: float
    metric_name: str
    iterations: int
    seconds: float
    levels: tuple = field(default=())

    def to_dict(self) -> dict:
        """JSON-ready description (for sidecars)."""
        return {"world_fixed_to_moving_ras_mm": np.round(self.world, 8).tolist(),
                "voxel_fixed_to_moving": np.round(self.matrix, 8).tolist(),
                "rotation_deg": [round(v, 5) for v in self.rotation_deg],
                "translation_mm": [round(v, 5) for v in self.translation_mm],
                "metric": round(float(self.metric), 6), "metric_name": self.metric_name,
                "iterations": self.iterations, "seconds": round(self.seconds, 3),
                "levels": list(self.levels)}


# ---------------------------------------------------------------------------------------------
# matrices


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """3x3 rotation of angle ``|rotvec|`` (radians) about ``rotvec`` (Rodrigues)."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    theta = float(np.linalg.norm(rotvec))
    if theta < 1e-12:
        return np.eye(3)
    k = rotvec / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def rigid_from_euler(rotation_deg, translation) -> np.ndarray:
    """4x4 rigid: rotations about x, y, z in degrees (R = Rz Ry Rx), then ``translation``."""
    ax, ay, az = np.deg2rad(np.asarray(rotation_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = translation
    return m


def euler_deg(rotation: np.ndarray) -> tuple[float, float, float]:
    """Angles about x, y, z (degrees) of a rotation R = Rz Ry Rx (inverse of rigid_from_euler)."""
    r = np.asarray(rotation)[:3, :3]
    ay = -np.arcsin(np.clip(r[2, 0], -1.0, 1.0))
    ax = np.arctan2(r[2, 1], r[2, 2])
    az = np.arctan2(r[1, 0], r[0, 0])
    return tuple(float(v) for v in np.rad2deg([ax, ay, az]))


def translation_matrix(offset) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = offset
    return m


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 4x4 affine map (exact for rigid maps: R^T and -R^T t)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.linalg.inv(m)


def compose(*matrices: np.ndarray) -> np.ndarray:
    """Matrix product ``matrices[0] @ matrices[1] @ ...``: the LAST one is applied first.

    For example ``compose(b_to_c, a_to_b)`` maps points of ``a`` to ``c``.
    """
    out = np.eye(4)
    for m in matrices:
        out = out @ np.asarray(m, dtype=np.float64)
    return out


def voxel_to_world(matrix: np.ndarray, fixed_affine: np.ndarray,
                   moving_affine: np.ndarray) -> np.ndarray:
    """World (mm) map of a voxel map: ``moving_affine @ matrix @ inv(fixed_affine)``."""
    return compose(moving_affine, matrix, invert(fixed_affine))


def world_to_voxel(world: np.ndarray, fixed_affine: np.ndarray,
                   moving_affine: np.ndarray) -> np.ndarray:
    """Voxel map of a world map: ``inv(moving_affine) @ world @ fixed_affine``."""
    return compose(invert(moving_affine), world, fixed_affine)


def is_rigid(world: np.ndarray, tol: float = RIGID_TOL) -> bool:
    """Whether a 4x4 matrix is a proper rotation plus a translation (within ``tol``)."""
    m = np.asarray(world, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        return False
    r = m[:3, :3]
    return (np.allclose(r.T @ r, np.eye(3), atol=tol) and abs(np.linalg.det(r) - 1) < tol
            and np.allclose(m[3], [0, 0, 0, 1], atol=1e-9))


# ---------------------------------------------------------------------------------------------
# resampling


def apply_rigid(image: np.ndarray, matrix: np.ndarray, *, shape: tuple[int, ...] | None = None,
                order: int = 3, mode: str = "nearest", cval: float = 0.0) -> np.ndarray:
    """Resample ``image`` onto the fixed grid: ``out[x] = image[matrix @ x]`` (voxel indices).

    Parameters
    ----------
    image : (X, Y, Z) ndarray
        The moving image on its own grid.
    matrix : (4, 4) ndarray
        Fixed voxel -> moving voxel (``RigidResult.matrix``; any affine map works).
    shape : tuple, optional
        Shape of the fixed grid (default: ``image.shape``).
    order : int
        Spline order (3: cubic B-spline, 1: trilinear, 0: nearest, e.g. for masks).
    mode, cval
        Outside the moving image (``scipy.ndimage`` modes): ``"nearest"`` repeats the edge,
        ``"constant"`` fills ``cval``.

    Returns
    -------
    float32 ndarray of ``shape``.
    """
    image = np.asarray(image)
    m = np.asarray(matrix, dtype=np.float64)
    if image.ndim != 3:
        raise InputError(f"apply_rigid needs a 3D image, got shape {image.shape}")
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise InputError("apply_rigid needs a finite 4x4 matrix")
    shape = tuple(image.shape) if shape is None else tuple(int(s) for s in shape)
    if np.allclose(m, np.eye(4), atol=1e-9, rtol=0) and shape == image.shape:
        return image.astype(np.float32, copy=True)
    src = image.astype(np.float64 if order > 1 else np.float32, copy=False)
    out = ndimage.affine_transform(src, m[:3, :3], m[:3, 3], output_shape=shape, order=order,
                                   mode=mode, cval=cval)
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# checks shared by both fits


def _check_inputs(fixed, moving, mask, zooms, fixed_affine, moving_affine, init):
    """Validated float64 arrays, mask, affines and the initial world map."""
    fixed = np.asarray(fixed)
    moving = np.asarray(moving)
    for name, a in (("fixed", fixed), ("moving", moving)):
        if a.ndim != 3:
            raise InputError(f"registration needs 3D images; {name} has shape {a.shape}")
        if min(a.shape) < 4:
            raise InputError(f"{name} image {a.shape} is too small to register (min 4 voxels)")
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise InputError(f"{name} image has dtype {a.dtype}; expected real numbers")
        if not np.isfinite(a).all():
            raise InputError(f"{name} image contains NaN or Inf voxels")
    if fixed_affine is None and moving_affine is None:
        if fixed.shape != moving.shape:
            raise InputError(f"fixed {fixed.shape} and moving {moving.shape} differ in shape; "
                             "without affines both must lie on one grid")
        z = np.asarray(zooms, dtype=np.float64)
        if z.shape != (3,) or not np.isfinite(z).all() or (z <= 0).any():
            raise InputError(f"zooms must be 3 positive voxel sizes, got {zooms}")
        fixed_affine = moving_affine = np.diag([*z, 1.0])
    elif fixed_affine is None or moving_affine is None:
        raise InputError("give both fixed_affine and moving_affine, or neither")
    affines = []
    for name, a in (("fixed", fixed_affine), ("moving", moving_affine)):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (4, 4) or not np.isfinite(a).all() or abs(np.linalg.det(a[:3, :3])) < 1e-9:
            raise InputError(f"{name} affine must be a finite, invertible 4x4 matrix")
        affines.append(a)
    fixed_affine, moving_affine = affines
    if mask is None:
        from .masking import auto_mask

        mask = auto_mask(fixed.astype(np.float32))
    mask = np.asarray(mask).astype(bool)
    if mask.shape != fixed.shape:
        raise InputError(f"mask {mask.shape} is not on the fixed grid {fixed.shape}")
    if mask.sum() < 64:
        raise InputError("the registration mask has fewer than 64 voxels")
    if init is None:
        world0 = np.eye(4)
    else:
        m = np.asarray(getattr(init, "matrix", init), dtype=np.float64)
        if m.shape != (4, 4) or not np.isfinite(m).all():
            raise InputError("init must be a finite 4x4 voxel matrix (fixed voxel -> moving voxel)")
        world0 = voxel_to_world(m, fixed_affine, moving_affine)
        if not is_rigid(world0, 1e-2):
            raise InputError("init is not a rigid map in world coordinates")
    # float32 halves the memory traffic of a 1 mm brain; sums below are taken in float64
    return (fixed.astype(np.float32), moving.astype(np.float32), mask, fixed_affine,
            moving_affine, world0)


def _result(world, fixed_affine, moving_affine, centre, metric, metric_name, iterations, t0,
            levels) -> RigidResult:
    world = _orthonormalize(world)
    moved = world @ np.append(centre, 1.0)
    return RigidResult(world=world, matrix=world_to_voxel(world, fixed_affine, moving_affine),
                       rotation_deg=euler_deg(world),
                       translation_mm=tuple(float(v) for v in moved[:3] - centre),
                       metric=float(metric), metric_name=metric_name, iterations=int(iterations),
                       seconds=time.perf_counter() - t0, levels=tuple(levels))


def _orthonormalize(world: np.ndarray) -> np.ndarray:
    """Nearest proper rotation (SVD), so that round-off never accumulates into a shear."""
    u, _, vt = np.linalg.svd(world[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:  # cannot happen for a rigid input; kept for safety
        u[:, -1] *= -1
        r = u @ vt
    out = np.array(world, dtype=np.float64)
    out[:3, :3] = r
    out[3] = [0, 0, 0, 1]
    return out


def _mask_centroid_world(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask).mean(axis=0)
    return (affine @ np.append(idx, 1.0))[:3]


# ---------------------------------------------------------------------------------------------
# fast sub-voxel refinement (our own Gauss-Newton)


def _shrink(volume: np.ndarray, affine: np.ndarray, factor: int):
    """Block mean over ``factor``^3 blocks and the matching affine (block centres)."""
    if factor == 1:
        return volume, affine
    n = [s // factor * factor for s in volume.shape]
    v = volume[: n[0], : n[1], : n[2]]
    sh = (n[0] // factor, factor, n[1] // factor, factor, n[2] // factor, factor)
    small = v.reshape(sh).mean(axis=(1, 3, 5))
    scale = np.diag([factor, factor, factor, 1.0]).astype(np.float64)
    scale[:3, 3] = (factor - 1) / 2.0
    return small, affine @ scale


def refine_rigid(fixed: np.ndarray, moving: np.ndarray, *, mask: np.ndarray | None = None,
                 zooms=(1.0, 1.0, 1.0), fixed_affine: np.ndarray | None = None,
                 moving_affine: np.ndarray | None = None, init=None, levels=(2, 1),
                 max_iter: int = 25, samples: int = 60_000, tol_voxel: float = 1e-3,
                 seed: int = 0) -> RigidResult:
    """Sub-voxel rigid fit of two nearly aligned images (residual motion up to about a voxel
    and a degree), e.g. repetitions already registered once, or the denoised repetitions.

    Gauss-Newton in the inverse-compositional form (the fixed image's gradient, taken once per
    level, gives a constant Jacobian) on the residual ``a * moving(W x) + b - fixed(x)`` inside
    the mask, with the intensity scale ``a`` and offset ``b`` solved jointly, so a later echo or
    a rescaled repetition registers as well. Moving values come from a cubic B-spline at
    ``samples`` random mask voxels per level; levels are block-mean shrink factors.

    Parameters
    ----------
    fixed, moving : (X, Y, Z) ndarray
        The images; without affines they must share one grid of voxel size ``zooms``.
    mask : bool ndarray on the fixed grid, optional
        Where the fit looks (a brain mask is best); default: a head mask of ``fixed``.
    zooms : 3 floats
        Voxel size (mm) of the common grid when no affines are given.
    fixed_affine, moving_affine : (4, 4) ndarray, optional
        Voxel -> world (mm) of each image, for images on different grids.
    init : (4, 4) ndarray or RigidResult, optional
        Starting voxel map (fixed voxel -> moving voxel); default: identity in world.
    levels : tuple of int
        Shrink factors, coarse to fine (levels whose image would be under 8 voxels are skipped).
    max_iter : int
        Gauss-Newton iterations per level at most.
    samples : int
        Mask voxels sampled per level (all of them when fewer).
    tol_voxel : float
        Stop a level when an update moves no mask voxel by more than this (in voxels).
    seed : int
        Seed of the voxel sampling (the fit is deterministic for a given seed).

    Returns
    -------
    RigidResult with ``metric_name == "ncc"``.
    """
    t0 = time.perf_counter()
    fixed, moving, mask, fa, ma, world = _check_inputs(fixed, moving, mask, zooms, fixed_affine,
                                                       moving_affine, init)
    centre = _mask_centroid_world(mask, fa)
    rng = np.random.default_rng(seed)
    total_iter, ncc, used = 0, float("nan"), []
    for factor in levels:
        factor = int(factor)
        if factor < 1:
            raise InputError(f"levels must be positive integers, got {levels}")
        if min(fixed.shape) // factor < 8 or min(moving.shape) // factor < 8:
            continue
        world, n_iter, ncc = _gauss_newton_level(fixed, moving, mask, fa, ma, world, centre,
                                                 factor, max_iter, samples, tol_voxel, rng)
        total_iter += n_iter
        used.append(factor)
    if not used:
        raise InputError(f"images {fixed.shape} are too small for the levels {tuple(levels)}")
    return _result(world, fa, ma, centre, ncc, "ncc", total_iter, t0, used)


def _gauss_newton_level(fixed, moving, mask, fa, ma, world, centre, factor, max_iter, samples,
                        tol_voxel, rng):
    f_img, f_aff = _shrink(fixed, fa, factor)
    m_img, m_aff = _shrink(moving, ma, factor)
    if factor > 1:
        m_small, _ = _shrink(mask.astype(np.float32), fa, factor)
        f_mask = m_small > 0.5
    else:
        f_mask = mask
    # sample voxels away from the border, so central differences need no padding
    inner = np.zeros_like(f_mask)
    inner[1:-1, 1:-1, 1:-1] = f_mask[1:-1, 1:-1, 1:-1]
    idx = np.argwhere(inner)
    if len(idx) < 16:
        return world, 0, float("nan")
    if len(idx) > samples:
        idx = idx[np.sort(rng.choice(len(idx), samples, replace=False))]
    i, j, k = idx.T
    f_vals = f_img[i, j, k].astype(np.float64)
    grad_vox = np.stack([(f_img[i + 1, j, k] - f_img[i - 1, j, k]) / 2,
                         (f_img[i, j + 1, k] - f_img[i, j - 1, k]) / 2,
                         (f_img[i, j, k + 1] - f_img[i, j, k - 1]) / 2], axis=1)
    # world-space gradient: dF/dp = inv(A)^T dF/dx
    grad = grad_vox @ np.linalg.inv(f_aff[:3, :3])
    pts = (f_aff @ np.c_[idx, np.ones(len(idx))].T)[:3].T - centre  # centred world (mm)
    # d F(delta(p)) / d(omega, t) at the identity: (p x grad, grad)
    jac = np.c_[np.cross(pts, grad), grad]
    # work in the centred frame: world_c = S world S^-1, S = translate(-centre)
    s, s_inv = translation_matrix(-centre), translation_matrix(centre)
    world_c = s @ world @ s_inv
    m_inv = np.linalg.inv(m_aff)
    # crop the moving image around where the samples land, then prefilter once
    coords = _moving_coords(m_inv @ s_inv @ world_c, pts)
    margin = 6
    lo = np.maximum(np.floor(coords.min(axis=1)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(coords.max(axis=1)).astype(int) + margin + 1, m_img.shape)
    if (hi - lo < 2).any():
        raise InputError("the images do not overlap under the initial transform")
    crop = m_img[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    coeffs = ndimage.spline_filter(crop, order=3, mode="nearest", output=np.float32)
    size = np.array(crop.shape) - 1
    radius = float(np.sqrt((pts ** 2).sum(axis=1).max()))
    vox_mm = float(np.min(np.sqrt((f_aff[:3, :3] ** 2).sum(axis=0))))
    ncc, n_iter = float("nan"), 0
    for n_iter in range(1, max_iter + 1):
        coords = _moving_coords(m_inv @ s_inv @ world_c, pts) - lo[:, None]
        valid = ((coords >= 0) & (coords <= size[:, None])).all(axis=0)
        if valid.sum() < 16:
            raise InputError("the images do not overlap inside the mask")
        mw = ndimage.map_coordinates(coeffs, coords[:, valid], order=3, mode="nearest",
                                     prefilter=False, output=np.float64)
        fv, jv = f_vals[valid], jac[valid]
        # residual a*mw + b - F - J theta = 0, linear in (a, b, theta): one least-squares solve
        design = np.c_[mw, np.ones_like(mw), -jv]
        sol, *_ = np.linalg.lstsq(design, fv, rcond=None)
        omega, t = sol[2:5], sol[5:8]
        ncc = _ncc(mw, fv)
        delta = np.eye(4)
        delta[:3, :3] = rotation_matrix(omega)
        delta[:3, 3] = t
        # a*M(W p) ~ F(delta p)  =>  M(W delta^-1 q) ~ F(q)
        world_c = _orthonormalize(world_c @ invert(delta))
        step = (np.linalg.norm(omega) * radius + np.linalg.norm(t)) / vox_mm
        if step < tol_voxel:
            break
    return s_inv @ world_c @ s, n_iter, ncc


def _moving_coords(world_to_moving_vox: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Moving voxel coordinates (3, N) of centred fixed world points (N, 3)."""
    return world_to_moving_vox[:3, :3] @ pts.T + world_to_moving_vox[:3, 3:4]


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# robust registration for repetitions that moved (DIPY, then the refinement)


def rigid_register(fixed: np.ndarray, moving: np.ndarray, *, mask: np.ndarray | None = None,
                   zooms=(1.0, 1.0, 1.0), fixed_affine: np.ndarray | None = None,
                   moving_affine: np.ndarray | None = None, init=None, levels=(8, 4),
                   iterations=(100, 50), nbins: int = 32, refine: bool = True,
                   refine_levels=(2, 1), seed: int = 0) -> RigidResult:
    """Rigid registration of repetitions that are not aligned (head motion of several degrees
    and millimetres): DIPY's mutual-information optimizer over a Gaussian scale space, started
    from ``init`` (default: the scanner geometry, identity in world), then, with ``refine``, the
    sub-voxel :func:`refine_rigid` on the full-resolution images. With ``refine``, a
    mutual-information result that correlates worse than the start is dropped (it can drift on
    images without a head outline, such as inner crops) and the refinement starts from ``init``.

    Parameters
    ----------
    fixed, moving : (X, Y, Z) ndarray
        The images; without affines they must share one grid of voxel size ``zooms``.
    mask : bool ndarray on the fixed grid, optional
        Where the metric is computed; default: a head mask of ``fixed``.
    zooms : 3 floats
        Voxel size (mm) of the common grid when no affines are given.
    fixed_affine, moving_affine : (4, 4) ndarray, optional
        Voxel -> world (mm) of each image, for images on different grids (scanner space).
    init : (4, 4) ndarray or RigidResult, optional
        Starting voxel map (fixed voxel -> moving voxel).
    levels : tuple of int
        Shrink factors of the mutual-information stage, coarse to fine (smoothing sigma
        ``factor - 1`` voxels at each); a level that would leave fewer than 16 voxels along an
        axis is skipped (if none is left, one level as coarse as that allows).
    iterations : tuple of int
        Optimizer iterations at each of ``levels``.
    nbins : int
        Histogram bins of the mutual information.
    refine : bool
        Finish with :func:`refine_rigid` (for images of the same contrast up to a linear
        intensity change; set False for different contrasts).
    refine_levels : tuple of int
        ``levels`` of the refinement.
    seed : int
        Seed of the refinement's voxel sampling.

    Returns
    -------
    RigidResult (``metric_name`` ``"ncc"`` with ``refine``, else ``"neg_mutual_information"``).
    """
    t0 = time.perf_counter()
    fixed, moving, mask, fa, ma, world = _check_inputs(fixed, moving, mask, zooms, fixed_affine,
                                                       moving_affine, init)
    if len(levels) != len(iterations) or not levels:
        raise InputError("levels and iterations must have the same, non-zero length")
    # a level shrinks the images to at least 16 voxels per axis (small crops use fewer levels)
    small = min(min(fixed.shape), min(moving.shape))
    kept = [(int(f), int(n)) for f, n in zip(levels, iterations) if small // int(f) >= 16]
    if not kept:  # a small image: one smoothed level, as coarse as 16 voxels allow
        kept = [(max(1, min(int(levels[-1]), small // 16)), int(iterations[-1]))]
    levels, iterations = zip(*kept)
    centre = _mask_centroid_world(mask, fa)
    # rotate about the mask centroid: DIPY rotates about the world origin, so move it there
    s, s_inv = translation_matrix(-centre), translation_matrix(centre)
    # DIPY's scale space would smooth full-resolution copies at every level: shrink once to the
    # finest MI level by block means first (about 10x faster on a 1 mm brain, same result)
    base = min(int(f) for f in levels)
    f_small, fa_small = _shrink(fixed, s @ fa, base)
    m_small, ma_small = _shrink(moving, s @ ma, base)
    k_small = _shrink(mask.astype(np.float32), fa, base)[0] > 0.5 if base > 1 else mask
    if min(f_small.shape) < 8 or min(m_small.shape) < 8 or k_small.sum() < 64:
        raise InputError(f"images {fixed.shape} are too small for the levels {tuple(levels)}")
    start_c = s @ world @ s_inv
    world_c, mi, n_iter = _dipy_mi(f_small, m_small, k_small, fa_small, ma_small, start_c,
                                   [int(f) // base for f in levels], iterations, nbins)
    if refine and (_ncc_at(f_small, m_small, k_small, fa_small, ma_small, world_c)
                   < _ncc_at(f_small, m_small, k_small, fa_small, ma_small, start_c)):
        # mutual information can drift on images without a head outline (an inner crop);
        # for one contrast, correlation is the better judge: keep the start then
        world_c = start_c
    world = s_inv @ world_c @ s
    used = tuple(int(f) for f in levels)
    if not refine:
        return _result(world, fa, ma, centre, mi, "neg_mutual_information", n_iter, t0, used)
    fine = refine_rigid(fixed, moving, mask=mask, fixed_affine=fa, moving_affine=ma,
                        init=world_to_voxel(world, fa, ma), levels=refine_levels, seed=seed)
    return _result(fine.world, fa, ma, centre, fine.metric, "ncc", n_iter + fine.iterations, t0,
                   used + tuple(fine.levels))


def _ncc_at(fixed, moving, mask, fa, ma, world) -> float:
    """Correlation inside the mask of ``fixed`` and ``moving`` mapped through ``world``
    (trilinear; voxels that land outside ``moving`` are left out)."""
    idx = np.argwhere(mask)
    if len(idx) > 100_000:
        idx = idx[:: len(idx) // 100_000 + 1]
    vox = world_to_voxel(world, fa, ma)
    coords = vox[:3, :3] @ idx.T + vox[:3, 3:4]
    inside = ((coords >= 0) & (coords <= np.array(moving.shape)[:, None] - 1)).all(axis=0)
    if inside.sum() < 16:
        return -1.0
    mv = ndimage.map_coordinates(moving, coords[:, inside], order=1)
    return _ncc(mv, fixed[tuple(idx[inside].T)])


def _dipy_mi(fixed, moving, mask, fa, ma, world, levels, iterations, nbins):
    try:
        from dipy.align.imaffine import AffineRegistration, MutualInformationMetric
        from dipy.align.transforms import RigidTransform3D
    except ImportError as exc:  # dipy is a core dependency; say so if it went missing
        raise InputError("rigid_register needs DIPY (pip install dipy)") from exc
    import logging

    logging.getLogger("dipy").setLevel(logging.WARNING)
    reg = AffineRegistration(metric=MutualInformationMetric(nbins=nbins, sampling_proportion=None),
                             level_iters=[int(i) for i in iterations],
                             sigmas=[max(float(f) - 1.0, 0.0) for f in levels],
                             factors=[int(f) for f in levels], verbosity=0)
    try:
        amap, _, fopt = reg.optimize(fixed, moving, RigidTransform3D(), None,
                                     static_grid2world=fa, moving_grid2world=ma,
                                     starting_affine=world, ret_metric=True,
                                     static_mask=mask.astype(np.int32))
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise InputError(f"rigid registration failed: {exc}") from exc
    out = np.asarray(amap.affine, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InputError("rigid registration diverged (no overlap between the images?)")
    return out, float(fopt), int(sum(iterations))
