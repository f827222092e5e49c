"""The default against BM4D on repetitions from a simulator that is not protocol v1's.

Issue 18's claims are to be checked with a simulator this project did not write. This script
is a second acquisition model, written apart from :mod:`noise2average.arrays.simulate`, whose
choices differ from protocol v1's wherever a real scanner leaves room:

- head motion up to 3 degrees and 3 mm per axis, resampled trilinearly, and no registration
  back: the methods get the repetitions as acquired and register them themselves;
- eight receive coils with smooth sensitivities fixed in the scanner, correlated channel noise,
  combined by root sum of squares: non-central chi noise (not Rician) whose SD follows the
  coils' geometry (not a g-factor map);
- channel noise smoothed over neighbouring voxels (a reconstruction filter), so the noise is
  correlated before any resampling;
- a global intensity drift between repetitions (SD 2 %, normalized to a mean of 1), so the
  repetitions' difference holds a little anatomy as well as noise.

Scored as protocol v1 scores (inside the mask, against the scaled reference in repetition 1's
geometry). One thread, every method in this process::

    python benchmarks/foreign_sim.py --sigma 0.05 --reps 2 --crop 96 [--reference inia19]
        [--methods n2a-aligned bm4d:align=register] [--out rows.jsonl]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import ndimage

INIA19 = "/usr/share/mricron/templates/inia19-t1-brain.nii.gz"
COILS = 8
#: correlation between any two coils' noise
COIL_CORRELATION = 0.15
#: SD (voxels) of the Gaussian that correlates each channel's noise
NOISE_SMOOTHING = 0.6
DRIFT_SD = 0.02


def move(volume: np.ndarray, deg: np.ndarray, mm: np.ndarray, voxel_mm: float) -> np.ndarray:
    """The head rotated about the volume's centre and shifted, sampled trilinearly."""
    from noise2average.arrays.simulate import rigid_matrix

    r = rigid_matrix(deg, np.zeros(3))[:3, :3]
    centre = (np.asarray(volume.shape) - 1) / 2
    # output voxel o samples input r^-1 (o - centre - t) + centre
    inverse = r.T
    offset = centre - inverse @ (centre + mm / voxel_mm)
    return ndimage.affine_transform(volume, inverse, offset, order=1, mode="constant")


def coil_sensitivities(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """(COILS, X, Y, Z) smooth magnitude profiles centred on a sphere around the volume."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    out = []
    for _ in range(COILS):
        direction = rng.normal(size=3)
        centre = 1.3 * direction / np.linalg.norm(direction)
        distance2 = sum((grid[i] - centre[i]) ** 2 for i in range(3))
        out.append(np.exp(-distance2 / (2 * rng.uniform(0.6, 0.9) ** 2)))
    return np.asarray(out, dtype=np.float32)


def channel_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(COILS, X, Y, Z) complex noise of SD ``sigma`` per part, correlated between coils and,
    by a Gaussian filter, between neighbouring voxels."""
    mixing = np.linalg.cholesky(np.full((COILS, COILS), COIL_CORRELATION)
                                + (1 - COIL_CORRELATION) * np.eye(COILS))
    white = rng.normal(size=(2, COILS, *shape)).astype(np.float32)
    for part in white:
        for c in range(COILS):
            part[c] = ndimage.gaussian_filter(part[c], NOISE_SMOOTHING)
            part[c] /= part[c].std()
    mixed = np.einsum("ij,pj...->pi...", mixing, white)
    return sigma * (mixed[0] + 1j * mixed[1])


def acquire(anatomy: np.ndarray, sensitivities: np.ndarray, sigma: float,
            rng: np.random.Generator) -> np.ndarray:
    """Root sum of squares of the coil images of ``anatomy`` with channel noise."""
    weights = sensitivities / np.sqrt((sensitivities ** 2).sum(0, keepdims=True))
    coil_images = weights * anatomy + channel_noise(anatomy.shape, sigma, rng)
    return np.sqrt((np.abs(coil_images) ** 2).sum(0)).astype(np.float32)


def simulate(reference: np.ndarray, voxel_mm: float, sigma: float, reps: int, seed: int):
    """Repetitions as acquired (repetition 1 in the reference's place) and the record."""
    rng = np.random.default_rng(seed)
    sensitivities = coil_sensitivities(reference.shape, rng)
    drift = rng.normal(1, DRIFT_SD, reps)
    drift /= drift.mean()
    out, record = [], []
    for k in range(reps):
        deg = np.zeros(3) if k == 0 else rng.uniform(-3, 3, 3)
        mm = np.zeros(3) if k == 0 else rng.uniform(-3, 3, 3)
        anatomy = reference if k == 0 else np.clip(move(reference, deg, mm, voxel_mm), 0, None)
        out.append(acquire(drift[k] * anatomy, sensitivities, sigma, rng))
        record.append({"rotation_deg": deg.tolist(), "translation_mm": mm.tolist(),
                       "intensity_drift": float(drift[k])})
    return out, record


def main() -> None:
    from noise2average.arrays.masking import centred_cube
    from noise2average.arrays.metrics import score
    from noise2average.arrays.simulate import scale_reference
    from noise2average.bench.volumes import run_methods
    from noise2average.config import DenoiseConfig
    from noise2average.workflows import reference_and_mask

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--crop", type=int, default=96, help="centred cube; 0: the whole volume")
    ap.add_argument("--reference", choices=("colin27", "inia19"), default="colin27")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+",
                    default=["n2a-aligned", "bm4d:align=register", "average:align=register"])
    ap.add_argument("--out", help="append the rows to this JSON-lines file")
    args = ap.parse_args()
    paths = (INIA19, INIA19) if args.reference == "inia19" else (None, None)
    ref, mask, img, _, _ = reference_and_mask(*paths)
    voxel_mm = float(img.header.get_zooms()[0])
    truth = scale_reference(ref, mask).astype(np.float32)
    reps, record = simulate(truth, voxel_mm, args.sigma, args.reps, args.seed)
    if args.crop:
        sl = centred_cube(mask, args.crop)
        reps, truth, mask = [r[sl] for r in reps], truth[sl], mask[sl]
    bright = mask & (truth > 0.5)
    noise_sd = float(np.std((reps[0] - truth)[bright]))
    config = DenoiseConfig(threads=1, seed=args.seed, voxel_size=(voxel_mm,) * 3)
    runs = run_methods(reps, mask, truth, args.methods, config, isolate=False)
    case = (f"{args.reference}, sigma {args.sigma}, N = {args.reps}, "
            f"{f'{args.crop}^3' if args.crop else 'whole volume'}, "
            f"seed {args.seed}")
    print(f"{case} (repetition 1's noise SD where the truth > 0.5: {noise_sd:.4f})\n")
    print("| method | PSNR dB | SSIM | sharpness | seconds | noise_coils | detail share |\n"
          "|---|---|---|---|---|---|---|")
    for r in runs:
        if r.error:
            print(f"| {r.method} | failed: {r.error} | | | | | |")
            continue
        s = score(np.where(mask, r.output, 0), truth, mask)
        last = r.history[-1] if r.history else {}
        coils, share = last.get("noise_coils", ""), last.get("output_detail_amount", "")
        print(f"| {r.method} | {s['psnr']:.2f} | {s['ssim']:.4f} | {s['sharpness']:.3f} | "
              f"{r.seconds:.0f} | {coils} | {share} |", flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"case": case, "method": r.method, "noise_sd": noise_sd,
                                    "noise_coils": coils, "output_detail_amount": share,
                                    **{k: round(v, 4) for k, v in s.items()},
                                    "seconds": round(r.seconds, 1), "record": record}) + "\n")


if __name__ == "__main__":
    main()
