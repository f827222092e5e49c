"""Test-time flips of the pre-trained network on the registered average: none, the left-right
flip the pipeline uses, and all 8 flips of the three axes, side by side on one case.

    python benchmarks/tta.py --sigma 0.05 --reps 2 --crop 96 [--init MODEL] [--threads 1]

Protocol v1 on Colin27 (the same simulated repetitions as ``n2a benchmark`` with the same
seed); PSNR in the brain mask against the noise-free reference, and the seconds of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    from noise2average.arrays.channels import channels_first, channels_last
    from noise2average.arrays.metrics import score
    from noise2average.arrays.normalize import Norm
    from noise2average.io.weights import load_model, load_packaged
    from noise2average.nn.engine import denoise_volume
    from noise2average.nn.device import resolve_policy
    from prior_grid import registered_average  # beside this script

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="a .safetensors model (default: the shipped)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--block", type=int, default=160)
    args = ap.parse_args(argv)
    mean_in, scaled, mask = registered_average("colin27", args.sigma, args.reps, args.crop,
                                               False, args.seed)
    policy = resolve_policy("cpu", "auto", args.threads)
    model = (load_model(args.init)[0] if args.init else load_packaged("t1w")[0])
    model = policy.prepare(model)
    norm = Norm.fit(mean_in, mask)
    z = channels_first(norm.forward(mean_in))
    lr = 0  # Colin27's voxel axis 0 runs left-right
    variants = {"no flip": None, "left-right flip (the pipeline's)": lr,
                "all 8 flips": (0, 1, 2)}
    print(f"sigma {args.sigma}, N = {args.reps}, {args.crop}^3, {policy.describe()}")
    print("| test-time flips | PSNR dB | sharpness | seconds |\n|---|---|---|---|")
    for name, flips in variants.items():
        t0 = time.perf_counter()
        d = denoise_volume(model, z, mask, policy, model.config.receptive_radius, args.block,
                           flips)
        out = np.where(mask, norm.inverse(channels_last(d, 3)), 0)
        s = score(out, scaled, mask)
        print(f"| {name} | {s['psnr']:.2f} | {s['sharpness']:.3f} | "
              f"{time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
