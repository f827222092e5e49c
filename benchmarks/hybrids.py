"""Can BM4D and the network help each other? The default ``n2a denoise`` output and BM4D on the
registered average, each alone, blended, and BM4D's Wiener stage run with the network output as
its pilot (protocol v1, one simulated case; Colin27 unless ``--reference`` names another brain,
whose nonzero voxels are its mask).

    python benchmarks/hybrids.py SIGMA N CROP [--reference T1.nii.gz] [--out results.json]

BM4D's second stage filters the noisy image collaboratively, with weights taken from a pilot
estimate (by default its own hard-thresholding stage). A better pilot can give a better Wiener
stage; if the network's output were that pilot, the two methods together could beat both. The
blends ask the simpler question: are their errors different enough that a mix of the two
beats the better one?

All rows score the same inputs; BM4D gets the noise SD of the registered average, estimated
from the repetitions as the pipeline does. One thread.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sigma", type=float)
    ap.add_argument("reps", type=int)
    ap.add_argument("crop", type=int)
    ap.add_argument("--reference", help="a brain-extracted T1w (default: Colin27)")
    ap.add_argument("--out", help="write the rows as JSON here too")
    args = ap.parse_args(argv)

    import bm4d
    import torch

    from noise2average.arrays.metrics import score
    from noise2average.arrays.noise import estimate_sigma
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.config import DenoiseConfig
    from noise2average.io.atomic import write_text
    from noise2average.pipeline import denoise
    from noise2average.workflows import reference_and_mask, simulate_case

    torch.set_num_threads(1)
    ref, mask, img, _, _ = reference_and_mask(args.reference, args.reference)
    reps, scaled, m, _, _ = simulate_case(ref, mask, img,
                                          SimulationConfig(sigma=args.sigma, reps=args.reps),
                                          args.crop)
    rows: list[dict] = []

    def row(name: str, image: np.ndarray, seconds: float | None = None) -> None:
        s = score(np.where(m, image, 0).astype(np.float32), scaled, m)
        rows.append({"method": name, **s, "seconds": seconds})
        print(f"{name:44s} PSNR {s['psnr']:.3f}  SSIM {s['ssim']:.4f}  sharpness "
              f"{s['sharpness']:.3f}" + (f"  {seconds:.0f} s" if seconds else ""), flush=True)

    t = time.perf_counter()
    net = denoise(reps, m, DenoiseConfig(threads=1, seed=0)).output
    row("default n2a denoise", net, time.perf_counter() - t)
    avg = denoise(reps, m, DenoiseConfig(method="average", align="register", threads=1)).output
    row("registered average", avg)
    sd = estimate_sigma(reps, m) / np.sqrt(len(reps))
    t = time.perf_counter()
    full = np.asarray(bm4d.bm4d(avg, sd), np.float32)
    row("BM4D on the registered average", full, time.perf_counter() - t)
    for w in (0.3, 0.5, 0.6, 0.7, 0.8):
        row(f"blend {w:.1f} x network + {1 - w:.1f} x BM4D", w * net + (1 - w) * full)
    t = time.perf_counter()
    pilot = np.where(m, net, avg).astype(np.float32)
    wiener = np.asarray(bm4d.bm4d(avg, sd, stage_arg=pilot), np.float32)
    row("BM4D Wiener stage, network output as pilot", wiener, time.perf_counter() - t)
    if args.out:
        write_text(args.out, json.dumps(
            {"case": {"sigma": args.sigma, "reps": args.reps, "crop": args.crop},
             "reference": args.reference or "Colin27",
             "command": f"python benchmarks/hybrids.py {args.sigma} {args.reps} {args.crop}"
                        + (f" --reference {args.reference}" if args.reference else ""),
             "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
