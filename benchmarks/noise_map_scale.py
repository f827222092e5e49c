"""Is a noise-map network calibrated on registered repetitions? (issue 18 probe.)

One protocol-v1 case of ``n2a benchmark`` (same simulation and crop), registered as
``n2a denoise`` registers it; the map network alone on the registered average, given the
pipeline's noise map for it (``arrays.noise.registered_noise_maps``: the registered
repetitions' spread divided by sqrt(N)) times a scale, and the shipped blind U-Net on the same average. No flip
averaging.

    python benchmarks/noise_map_scale.py MAP_MODEL [--sigma 0.05] [--reps 2] [--crop 96]

Prints one JSON line per scale and one for the blind network: PSNR dB in the brain.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    import nibabel as nib

    from noise2average.arrays.channels import with_noise_channel
    from noise2average.arrays.frames import Frames
    from noise2average.arrays.metrics import psnr
    from noise2average.arrays.noise import registered_noise_maps
    from noise2average.arrays.normalize import Norm
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.io.templates import colin27_paths
    from noise2average.io.weights import load_model, load_packaged
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.engine import denoise_volume
    from noise2average.pipeline import _register
    from noise2average.workflows import simulate_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--scales", type=float, nargs="+", default=(0.6, 0.7, 0.8, 0.9, 1.0))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    ref_path, mask_path = colin27_paths()
    img = nib.load(str(ref_path))
    ref = np.asarray(img.dataobj, np.float32)
    brain = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    reps, truth, mask, _, _ = simulate_case(
        ref, brain, img, SimulationConfig(sigma=args.sigma, reps=args.reps, seed=0), args.crop)
    n = len(reps)
    frames = Frames(n)
    _register(frames, reps, mask)
    sd = registered_noise_maps(reps, frames)[1]
    average = np.mean([frames.to_frame(r, j, 0) for j, r in enumerate(reps)], axis=0)
    norm = Norm.fit(average, mask)
    policy = resolve_policy("cpu", "auto", args.threads)

    def score(model, extra=None) -> float:
        z = norm.forward(average)[None]
        if extra is not None:
            z = with_noise_channel(z, extra, norm.std)
        out = denoise_volume(model, z, mask, policy, model.config.receptive_radius, 160, None)
        return round(psnr(norm.inverse(out[0]), truth, mask), 2)

    case = {"sigma": args.sigma, "reps": n, "crop": args.crop}
    model = policy.prepare(load_model(args.model)[0])
    for scale in args.scales:
        print(json.dumps({**case, "model": args.model, "map_scale": scale,
                          "psnr": score(model, scale * sd)}), flush=True)
    blind = policy.prepare(load_packaged("t1w")[0])
    print(json.dumps({**case, "model": "shipped U-Net (blind)", "psnr": score(blind)}))


if __name__ == "__main__":
    main()
