"""Accuracy and speed of rigid registration on a full 1 mm brain (not a test).

    OMP_NUM_THREADS=1 python benchmarks/registration.py [--reference REF --mask MASK]
        [--out benchmarks/results/registration.json]

Default images: Colin27 (Debian mricron-data), else the MNI152 template from nilearn. Each case
moves the reference by a known rigid motion about the brain's centre, makes the moving image
``scale *`` that (another intensity scale) or a later echo (tissue-dependent T2* decay), adds
Gaussian noise of ``sigma`` to both images, and registers. Errors are the distances (voxels)
between the true and the found voxel maps: the mean over brain voxels and the largest at the
corners of the brain's bounding box; timings are wall and CPU seconds of the fit alone (not of the final resampling); on a
shared machine the CPU seconds are the better measure of one core's work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

CASES = [  # name, fit, rotation (deg), translation (voxels), sigma, intensity scale or "echo"
    ("residual 0.3 deg / 0.4 vox, clean", "refine", (0.3, -0.2, 0.25), (0.4, -0.3, 0.25), 0.0, 1.0),
    ("residual 0.5 deg / 0.5 vox, clean, x1.3", "refine", (0.5, 0.4, -0.3), (0.5, 0.2, -0.5), 0.0,
     1.3),
    ("residual 0.1 deg / 0.1 vox, sigma 0.02", "refine", (0.1, -0.1, 0.05), (0.1, 0.1, -0.1),
     0.02, 1.0),
    ("residual 0.3 deg / 0.4 vox, sigma 0.05, x1.3", "refine", (0.3, -0.2, 0.25), (0.4, -0.3, 0.25),
     0.05, 1.3),
    ("residual 0.3 deg / 0.4 vox, sigma 0.05, later echo", "refine", (0.3, -0.2, 0.25),
     (0.4, -0.3, 0.25), 0.05, "echo"),
    ("motion 5 deg / 4 vox, sigma 0.05", "register", (5.0, -4.0, 3.0), (4.0, -3.0, 2.0), 0.05,
     1.0),
]


def load(reference: str | None, mask: str | None):
    from noise2average.io import nifti
    from noise2average.io.templates import colin27_paths, mni152

    ref_path, mask_path = (reference, mask) if reference else colin27_paths()
    if Path(ref_path).is_file():
        ref, img = nifti.load_volume(ref_path)
        brain = nifti.load_mask(mask_path, ref.shape)
        ref = np.clip(ref, 0, None) / np.percentile(ref[brain], 99)
        return ref.astype(np.float32), brain, str(ref_path)
    t1, brain, _ = mni152()
    return t1, brain, "MNI152 2009a (nilearn)"


def echo_decay(ref: np.ndarray, brain: np.ndarray, delta_te_ms: float = 5.0) -> np.ndarray:
    """Signal ratio of a later echo, exp(-dTE / T2*(tissue)), as benchmark protocol v1."""
    from noise2average.arrays.simulate import T2STAR_MS, tissue_classes

    classes = tissue_classes(ref, brain)
    t2 = np.full(ref.shape, T2STAR_MS["wm"], np.float32)
    t2[classes == 1] = T2STAR_MS["csf"]
    t2[classes == 2] = T2STAR_MS["gm"]
    return np.exp(-delta_te_ms / t2).astype(np.float32)


def main() -> None:
    from noise2average.arrays import registration as reg

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference")
    ap.add_argument("--mask")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    args = ap.parse_args()
    ref, brain, name = load(args.reference, args.mask)
    idx = np.argwhere(brain)
    centre = idx.mean(axis=0)
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])]).T
    sample = np.c_[idx[::50], np.ones(len(idx[::50]))].T
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{name}: {ref.shape}, {brain.sum()} brain voxels, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for label, fit, rot, trans, sigma, scale in CASES:
        truth = (reg.translation_matrix(centre) @ reg.rigid_from_euler(rot, trans)
                 @ reg.translation_matrix(-centre))
        anatomy = ref * echo_decay(ref, brain) if scale == "echo" else ref * scale
        moving = reg.apply_rigid(anatomy, reg.invert(truth))  # anatomy(x) = moving(truth x)
        fixed = ref + rng.normal(0, sigma, ref.shape).astype(np.float32) if sigma else ref
        if sigma:
            moving = moving + rng.normal(0, sigma, ref.shape).astype(np.float32)
        t0, c0 = time.perf_counter(), time.process_time()
        res = (reg.refine_rigid if fit == "refine" else reg.rigid_register)(fixed, moving,
                                                                           mask=brain)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        diff = res.matrix - truth
        row = {"case": label, "fit": fit, "seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2),
               "mean_error_vox": float(np.linalg.norm((diff @ sample)[:3], axis=0).mean()),
               "max_corner_error_vox": float(np.linalg.norm((diff @ corners)[:3], axis=0).max()),
               "rotation_error_deg": float(np.abs(np.subtract(res.rotation_deg,
                                                              reg.euler_deg(truth))).max()),
               "ncc": round(res.metric, 5)}
        rows.append(row)
        print(f"{label:50s} {fit:8s} {seconds:6.2f} s ({cpu:5.2f} s CPU)  "
              f"mean {row['mean_error_vox']:.4f} vox  "
              f"corners {row['max_corner_error_vox']:.4f} vox  rot {row['rotation_error_deg']:.4f}"
              f" deg")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"image": name, "shape": list(ref.shape),
                                              "machine": platform.processor() or platform.machine(),
                                              "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                                              "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
