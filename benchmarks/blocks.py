"""Inference block size: time and peak memory of one pass of the shipped T1w network over a
full 1 mm brain (Colin27, Debian mricron-data), one block size per child process so that each
peak resident memory is its own, all measured in one run on one machine.

    python benchmarks/blocks.py [--sizes 96 160 192] [--threads 1] [--out benchmarks/results/blocks.json]

Each block is run with a halo of the network's receptive radius, so the voxels computed fall as
blocks grow; the result does not depend on the block size (the script checks it).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def one_pass(block: int, threads: int, save: str) -> dict:
    """Run in a child: one pass at ``block``; the masked result is saved to ``save``."""
    import nibabel as nib

    from noise2average.io.templates import colin27_paths
    from noise2average.io.weights import load_packaged
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.engine import denoise_volume

    ref, mask_path = colin27_paths()
    mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    img = np.asarray(nib.load(str(ref)).dataobj, np.float32)
    z = ((img - img[mask].mean()) / img[mask].std())[None]
    policy = resolve_policy("cpu", "auto", threads)
    model, _ = load_packaged("t1w")
    model = policy.prepare(model)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    t0 = time.perf_counter()
    out = denoise_volume(model, z, mask, policy, model.config.receptive_radius, block, None)
    seconds = time.perf_counter() - t0
    np.save(save, out[0][mask])
    return {"block": block, "radius": model.config.receptive_radius,
            "seconds": round(seconds, 1), "compute": policy.describe(),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
            "rss_before_pass_gb": round(before, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 160, 192])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/blocks.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(one_pass(args.child, args.threads, args.save)))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    import nibabel as nib

    from speed import processed_voxels

    from noise2average.io.templates import colin27_paths

    mask = np.asarray(nib.load(str(colin27_paths()[1])).dataobj) > 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.sizes:
            save = f"{tmp}/{b}.npy"
            run = subprocess.run([sys.executable, __file__, "--child", str(b), "--threads",
                                  str(args.threads), "--save", save],
                                 capture_output=True, text=True, check=True)
            row = json.loads(run.stdout.strip().splitlines()[-1])
            row["voxels_computed_millions"] = round(processed_voxels(mask, b, row["radius"]) / 1e6, 2)
            row["max_abs_difference_to_first"] = float(np.abs(np.load(save) - np.load(
                f"{tmp}/{args.sizes[0]}.npy")).max())
            rows.append(row)
            print(json.dumps(row))
    first = rows[0]["seconds"]
    for r in rows:
        r["time_ratio_to_first"] = round(r["seconds"] / first, 3)
    out = {"case": "one pass of the shipped T1w network, Colin27 1 mm brain mask, no flip",
           "threads": args.threads, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
