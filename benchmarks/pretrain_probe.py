"""How a pre-trained T1w model does alone, before any fine-tuning: PSNR, mean error (bias) and
sharpness ratio of its denoised repetition 1 on a centred Colin27 crop (protocol v1, one noisy
repetition, simulated on the crop), and on the MNI152 crop for comparison.

    python benchmarks/pretrain_probe.py MODEL.safetensors [MODEL2 ...] [--crop 64] [--sigma 0.05]

A quick probe of pre-training progress (seconds per model), not the benchmark: the benchmark
simulates on the whole head and scores the registered average (`n2a benchmark`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import nibabel as nib

    from noise2average.arrays.masking import centred_cube
    from noise2average.arrays.metrics import psnr
    from noise2average.arrays.normalize import Norm
    from noise2average.arrays.simulate import SimulationConfig, simulate
    from noise2average.io.templates import colin27_paths, mni152
    from noise2average.io.weights import load_model
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.engine import denoise_volume

    policy = resolve_policy("cpu", "auto", args.threads)
    ref_path, mask_path = colin27_paths()
    colin = (np.asarray(nib.load(str(ref_path)).dataobj, np.float32),
             np.asarray(nib.load(str(mask_path)).dataobj) > 0)
    t1, mask, _ = mni152()
    for name, (img, msk) in {"colin27": colin, "mni152": (t1, mask)}.items():
        sl = centred_cube(msk, args.crop)
        img, msk = img[sl], msk[sl]
        reps, ref, _ = simulate(img, msk, (1.0, 1.0, 1.0),
                                SimulationConfig(sigma=args.sigma, seed=0))
        norm = Norm.fit(reps[0], msk)

        def grad(a):
            return float(np.mean(np.linalg.norm(np.gradient(a), axis=0)[msk]))

        for path in args.models:
            model = policy.prepare(load_model(path)[0])
            z = norm.forward(reps[0])[None]
            out = denoise_volume(model, z, msk, policy, model.config.receptive_radius, 160, 0)
            out = norm.inverse(out[0])
            print(json.dumps({"image": name, "model": path,
                              "psnr": round(psnr(out, ref, msk), 2),
                              "noisy_psnr": round(psnr(reps[0], ref, msk), 2),
                              "bias": round(float((out - ref)[msk].mean()), 4),
                              "sharpness": round(grad(out) / grad(ref), 3)}), flush=True)


if __name__ == "__main__":
    main()
