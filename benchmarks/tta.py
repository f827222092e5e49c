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
    from noise2average.arrays.frames import Frames
    from noise2average.arrays.metrics import score
    from noise2average.arrays.normalize import Norm
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.io.weights import load_model, load_packaged
    from noise2average.nn.engine import denoise_volume
    from noise2average.nn.device import resolve_policy
    from noise2average.workflows import reference_and_mask, simulate_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="a .safetensors model (default: the shipped)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--block", type=int, default=160)
    args = ap.parse_args(argv)
    ref, mask, img, _, _ = reference_and_mask(None, None)
    cfg = SimulationConfig(sigma=args.sigma, reps=args.reps, seed=args.seed)
    reps, scaled, mask, like, _ = simulate_case(ref, mask, img, cfg, args.crop)
    frames = Frames(len(reps), zooms=tuple(float(z) for z in like.header.get_zooms()[:3]))
    frames.update(reps, mask)
    mean_in = np.mean([frames.to_frame(r, k, 0) for k, r in enumerate(reps)],
                      axis=0).astype(np.float32)
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
