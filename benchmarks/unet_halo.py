"""The U-Net's inference halo: seam error of block-wise inference against one whole-volume pass,
by halo and block size, with the time of each, on a noisy Colin27 crop (protocol v1).

    python benchmarks/unet_halo.py MODEL.safetensors [--crop 128] [--sigma 0.05]
        [--blocks 64 96] [--halos 0 8 16 24 32] [--threads 1] [--precision auto] [--out FILE.json]

A U-Net's receptive field is wider than any practical halo, so block-wise inference differs
from whole-volume inference near the seams. The error is reported inside the brain mask in the
image's units (99th percentile of the brain = 1), beside the noise sigma for scale, at least
the largest halo away from the crop's faces.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--blocks", type=int, nargs="+", default=[64, 96])
    ap.add_argument("--halos", type=int, nargs="+", default=[0, 8, 16, 24, 32])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="auto", help="auto (as n2a denoise), fp32 or bf16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import nibabel as nib

    from noise2average.arrays.normalize import Norm
    from noise2average.arrays.masking import centred_cube
    from noise2average.arrays.simulate import SimulationConfig, simulate
    from noise2average.io.templates import colin27_paths
    from noise2average.io.weights import load_model
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.patches import predict_volume

    ref_path, mask_path = colin27_paths()
    img = np.asarray(nib.load(str(ref_path)).dataobj, np.float32)
    mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    sl = centred_cube(mask, args.crop)
    img, mask = img[sl], mask[sl]
    reps, _, _ = simulate(img, mask, (1.0, 1.0, 1.0), SimulationConfig(sigma=args.sigma, seed=0))
    norm = Norm.fit(reps[0], mask)
    z = norm.forward(reps[0])[None]
    policy = resolve_policy("cpu", args.precision, args.threads)
    model, _ = load_model(args.model)
    model = policy.prepare(model).eval()
    big = max(args.halos)

    def run(block: int, halo: int) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        out = predict_volume(model, z, mask, halo, policy.to_tensor, block=block,
                             align=model.config.grid_alignment)
        return out[0] * norm.std, time.perf_counter() - t0

    # the reference: one block holding the whole crop, with the largest halo's reflected margin;
    # the error is scored away from the crop's faces, where the margins differ by construction
    # (inside a whole head the brain's bounding box lies far from the volume's faces)
    whole, whole_s = run(max(z.shape[1:]) + 1, big)
    interior = np.zeros_like(mask)
    interior[(slice(big, -big),) * 3] = True
    scored = mask & interior
    rows = []
    for block in args.blocks:
        for halo in args.halos:
            out, seconds = run(block, halo)
            err = np.abs(out - whole)[scored]
            rows.append({"block": block, "halo": halo, "max_error": float(err.max()),
                         "rms_error": float(np.sqrt((err ** 2).mean())),
                         "rms_error_over_sigma": float(np.sqrt((err ** 2).mean()) / args.sigma),
                         "seconds": round(seconds, 2), "time_ratio": round(seconds / whole_s, 2)})
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": "python " + " ".join(sys.argv), "model": str(args.model), "crop": args.crop,
              "sigma": args.sigma, "whole_seconds": round(whole_s, 2), "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
