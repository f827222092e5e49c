"""Benchmark protocol v1 (shared/benchmark.md): N noisy, moved, re-registered repetitions of a
clean reference, with every random parameter recorded.

1. head motion M_k (rep 1: identity), 2. the reference resampled into the moved position,
3. Rician noise of standard deviation sigma * g(x) with a smooth g-factor map,
4. registration back with the inverse of M_k composed with a small error E_k, so the noise
becomes spatially correlated and a sub-voxel misalignment stays, 5. optionally, rep 2 is a
later echo: anatomy scaled by exp(-dTE / T2*(tissue)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from .noise import gfactor_map, rician

T2STAR_MS = {"csf": 150.0, "gm": 55.0, "wm": 45.0}


@dataclass
class SimulationConfig:
    sigma: float = 0.05
    reps: int = 2
    echo: bool = False
    seed: int = 0
    max_rotation_deg: float = 2.0
    max_translation_mm: float = 2.0
    reg_error_voxel: float = 0.15
    reg_error_deg: float = 0.15
    gfactor_range: tuple[float, float] = (1.0, 1.8)
    delta_te_ms: float = 5.0
    t2star_ms: dict = field(default_factory=lambda: dict(T2STAR_MS))

    def validate(self) -> None:
        from ..errors import InputError

        if not self.sigma > 0:
            raise InputError(f"sigma must be > 0, got {self.sigma}")
        if self.reps < 2:
            raise InputError(f"reps must be >= 2, got {self.reps}")


def scale_reference(reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reference scaled so that its 99th percentile inside the mask is 1.0 (negatives clipped)."""
    ref = np.clip(reference.astype(np.float32), 0, None)
    return (ref / np.percentile(ref[mask], 99)).astype(np.float32)


def rigid_matrix(rot_deg: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """4x4 rigid transform: rotations about x, y, z (degrees) then a translation."""
    ax, ay, az = np.deg2rad(rot_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = trans
    return m


def resample(volume: np.ndarray, mm_transform: np.ndarray, zooms: tuple[float, ...]) -> np.ndarray:
    """out(x) = volume(T x) with T a rigid transform in mm about the volume centre; cubic spline."""
    centre = (np.array(volume.shape) - 1) / 2
    s = np.diag(list(zooms) + [1.0])
    s[:3, 3] = -np.asarray(zooms) * centre  # voxel -> mm, origin at the centre
    vox = np.linalg.inv(s) @ mm_transform @ s
    return ndimage.affine_transform(volume, vox[:3, :3], vox[:3, 3], order=3, mode="nearest",
                                    ).astype(np.float32)


def tissue_classes(reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """0 outside, 1 CSF, 2 GM, 3 WM: 3-class k-means of T1w intensities in the mask."""
    vals = reference[mask]
    centres = np.percentile(vals, [10, 50, 90]).astype(np.float64)
    for _ in range(20):
        lab = np.argmin(np.abs(vals[:, None] - centres[None]), axis=1)
        centres = np.array([vals[lab == i].mean() if (lab == i).any() else centres[i]
                            for i in range(3)])
    out = np.zeros(reference.shape, np.uint8)
    out[mask] = lab + 1
    return out


def later_echo_scale(ref: np.ndarray, mask: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """exp(-dTE / T2*(tissue)): the voxel-wise darkening of the later echo (repetition 2) of
    the echo variant, from a segmentation of the scaled reference ``ref``."""
    classes = tissue_classes(ref, mask)
    t2 = np.full(ref.shape, config.t2star_ms["wm"], np.float32)
    t2[classes == 1] = config.t2star_ms["csf"]
    t2[classes == 2] = config.t2star_ms["gm"]
    return np.exp(-config.delta_te_ms / t2).astype(np.float32)


def mean_anatomy(ref: np.ndarray, mask: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """The mean of the repetitions' noise-free anatomy in rep 1's geometry: ``ref`` itself,
    except in the echo variant, where repetition 2 is the later echo. An average of the
    repetitions estimates this image, and so does every method that denoises it; against echo 1
    alone every such output is scored for the later echo's darkening as well."""
    if not config.echo:
        return ref.astype(np.float32)
    return ((ref * (config.reps - 1 + later_echo_scale(ref, mask, config))) / config.reps
            ).astype(np.float32)


def simulate(reference: np.ndarray, mask: np.ndarray, zooms: tuple[float, ...],
             config: SimulationConfig) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Repetitions, the scaled reference (rep-1 geometry) and the record of drawn parameters."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    ref = scale_reference(reference, mask)
    record: dict = {"protocol": "v1", "config": asdict(config), "repetitions": []}
    echo_scale = later_echo_scale(ref, mask, config) if config.echo else None
    reps = []
    for k in range(config.reps):
        anatomy = ref * echo_scale if (echo_scale is not None and k == 1) else ref
        gseed = int(rng.integers(2**31))
        g = gfactor_map(ref.shape, np.random.default_rng(gseed), *config.gfactor_range)
        if k == 0:
            m = e = np.eye(4)
            rot = trans = err_rot = err_trans = np.zeros(3)
            moved = anatomy
        else:
            rot = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, 3)
            trans = rng.uniform(-config.max_translation_mm, config.max_translation_mm, 3)
            err_rot = rng.normal(0, config.reg_error_deg, 3)
            err_trans = rng.normal(0, config.reg_error_voxel, 3) * np.asarray(zooms)
            m = rigid_matrix(rot, trans)
            e = rigid_matrix(err_rot, err_trans)
            moved = resample(anatomy, np.linalg.inv(m), zooms)  # head moved by M
        noisy = rician(moved, config.sigma * g, rng)
        if k > 0:
            # the user's registration estimates M with error E: resample with M E
            noisy = np.clip(resample(noisy, m @ e, zooms), 0, None)
        reps.append(noisy.astype(np.float32))
        record["repetitions"].append({
            "index": k + 1, "rotation_deg": rot.tolist(), "translation_mm": trans.tolist(),
            "registration_error_rotation_deg": err_rot.tolist(),
            "registration_error_translation_mm": err_trans.tolist(),
            "motion_matrix": m.tolist(), "registration_error_matrix": e.tolist(),
            "gfactor_seed": gseed, "gfactor_mean": float(g.mean()),
            "echo": bool(echo_scale is not None and k == 1)})
    return reps, ref, record
