"""Speed and memory of `n2a denoise` on a full 1 mm Colin27-sized pair, against a conv3d peak
measured in the same run on the same machine.

    python benchmarks/speed.py [--threads N] [--steps S] [--cli] [--out benchmarks/results/speed.json]

Simulates protocol v1 (sigma 0.05, 2 repetitions) from Colin27 (Debian mricron-data), runs the
default Noise2Average configuration end to end through the public API, and reports wall time,
training and inference throughput as fractions of the peak of one large fp32/bf16 conv3d (the
precision the policy picks), and the process's peak resident memory. ``--cli`` runs the
command a user types instead, ``n2a denoise rep1.nii.gz rep2.nii.gz --mask mask.nii.gz -o
denoised.nii.gz``, on NIfTI files written beforehand: reading, the QC report and the output
files count in its time.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def conv_peak(policy, threads: int, seconds: float = 6.0) -> float:
    """Sustained TFLOP/s of a 64->64 3x3x3 convolution on a 48^3 block (forward)."""
    import torch

    conv = policy.prepare(torch.nn.Conv3d(64, 64, 3, padding=1))
    x = policy.to_tensor(np.random.default_rng(0).standard_normal((1, 64, 48, 48, 48), np.float32))
    flops = 2 * 64 * 64 * 27 * 48**3
    with torch.no_grad(), policy.autocast():
        conv(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conv(x)
            n += 1
    return flops * n / (time.perf_counter() - t0) / 1e12


def processed_voxels(mask, block: int, radius: int) -> int:
    """Voxels the network actually runs on in one pass: every core with its halo."""
    from noise2average.arrays.masking import bounding_box
    from noise2average.nn.patches import block_grid

    return sum(int(np.prod([c.stop - c.start + 2 * radius for c in core]))
               for core in block_grid(bounding_box(mask), block, 8) if mask[core].any())


def run_cli(reps, mask, affine, folder: Path, threads: int | None,
            steps: int | None) -> tuple[float, dict, np.ndarray]:
    """``n2a denoise`` on NIfTI copies of ``reps`` (QC report included): its wall seconds, its
    JSON sidecar and its output."""
    import nibabel as nib

    from noise2average.cli import main as n2a

    paths = []
    for k, rep in enumerate(reps, 1):
        paths.append(str(folder / f"rep{k}.nii.gz"))
        nib.save(nib.Nifti1Image(rep, affine), paths[-1])
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(folder / "mask.nii.gz"))
    out = folder / "denoised.nii.gz"
    argv = ["denoise", *paths, "--mask", str(folder / "mask.nii.gz"), "-o", str(out), "--quiet"]
    argv += ["--threads", str(threads)] if threads else []
    argv += ["--steps", str(steps)] if steps else []
    t0 = time.perf_counter()
    if n2a(argv) != 0:
        raise SystemExit("n2a denoise failed")
    wall = time.perf_counter() - t0
    side = json.loads((folder / "denoised.json").read_text())
    return wall, side, np.asarray(nib.load(str(out)).dataobj, np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cli", action="store_true",
                    help="time the n2a denoise command on NIfTI files instead of the API")
    ap.add_argument("--out", default="benchmarks/results/speed.json")
    args = ap.parse_args()

    import nibabel as nib

    from noise2average import DenoiseConfig, denoise
    from noise2average.arrays.metrics import score
    from noise2average.arrays.simulate import SimulationConfig, simulate
    from noise2average.io.templates import colin27_paths
    from noise2average.nn.device import resolve_policy
    from noise2average.provenance import environment

    ref_path, mask_path = colin27_paths()
    img = nib.load(str(ref_path))
    ref = np.asarray(img.dataobj, np.float32)
    mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    reps, sref, _ = simulate(ref, mask, img.header.get_zooms()[:3], SimulationConfig(sigma=0.05))

    cfg = DenoiseConfig(threads=args.threads, **({"steps": args.steps} if args.steps else {}))
    policy = resolve_policy(cfg.device, cfg.precision, cfg.threads)
    import torch

    threads = torch.get_num_threads()
    peak = conv_peak(policy, threads)

    if args.cli:
        with tempfile.TemporaryDirectory() as tmp:
            wall, side, output = run_cli(reps, mask, img.affine, Path(tmp), args.threads,
                                         args.steps)
        history, selected, compute = side["history"], side["selected_iteration"], side["compute"]
    else:
        t0 = time.perf_counter()
        res = denoise(reps, mask, cfg)
        wall = time.perf_counter() - t0
        history, selected, compute, output = (res.history, res.selected_iteration, res.compute,
                                              res.output)

    from noise2average.io.weights import load_packaged

    model, _ = load_packaged()
    fpv = model.flops_per_voxel()
    n_iter = len(history)
    train_s = sum(h.get("train_seconds", 0) for h in history)
    infer_s = sum(h["infer_seconds"] for h in history)
    # whole-mask passes (an unkept last iteration is inferred on the held-out slab only)
    full = [h for h in history if h.get("inferred_on") != "held-out slab"]
    full_s = sum(h["infer_seconds"] for h in full)
    # registration of the repetitions (n2a-aligned): the first target's and every iteration's
    align_s = sum(h.get("align_seconds", 0) + h.get("target_align_seconds", 0) for h in history)
    train_flops = 3 * fpv * cfg.patch_size**3 * cfg.batch_size * cfg.steps * n_iter
    vox = processed_voxels(mask, cfg.block_size, model.config.receptive_radius)
    # the final pass on the average (output_from) is timed apart, as output_seconds
    infer_flops = fpv * vox * len(reps) * (2 if cfg.flip_repetitions else 1) * len(full)
    output_s = sum(h.get("output_seconds", 0) for h in history)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    out = {
        "case": f"Colin27 {ref.shape} 1 mm, protocol v1 sigma 0.05, 2 reps",
        "mode": "n2a denoise (NIfTI in and out, QC report)" if args.cli else "API: denoise(arrays)",
        "config": cfg.to_dict(), "compute": compute, "threads": threads,
        "conv3d_peak_tflops": round(peak, 4),
        "end_to_end_seconds": round(wall, 1),
        "train_seconds": round(train_s, 1), "infer_seconds": round(infer_s, 1),
        "align_seconds": round(align_s, 1), "output_seconds": round(output_s, 1),
        # iteration 0 on the held-out slab (and on the whole mask when it is kept), scoring,
        # statistics; with --cli also reading the inputs, the QC report and the output files
        "rest_seconds": round(wall - train_s - infer_s - align_s - output_s, 1),
        "iterations_run": n_iter,
        "iterations_on_whole_mask": len(full),
        "selected_iteration": selected,
        "per_iteration": [{k: h[k] for k in ("iteration", "train_seconds", "infer_seconds",
                                             "align_seconds", "pretrained_seconds",
                                             "output_seconds", "inferred_on") if k in h}
                          for h in history],
        "train_tflops": round(train_flops / train_s / 1e12, 4) if train_s else None,
        "infer_tflops": round(infer_flops / full_s / 1e12, 4),
        "train_fraction_of_peak": round(train_flops / train_s / 1e12 / peak, 3) if train_s else None,
        "infer_fraction_of_peak": round(infer_flops / full_s / 1e12 / peak, 3),
        "peak_rss_gb": round(rss_gb, 2),
        "psnr_average": round(score(np.where(mask, np.mean(reps, 0), 0), sref, mask)["psnr"], 2),
        "psnr_rep1": round(score(np.where(mask, reps[0], 0), sref, mask)["psnr"], 2),
        "psnr_n2a": round(score(output, sref, mask)["psnr"], 2),
        "environment": environment(policy),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("config", "environment")}, indent=2))


if __name__ == "__main__":
    main()
