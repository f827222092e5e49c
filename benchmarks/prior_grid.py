"""Pre-trained networks without fine-tuning, side by side on every case: each applied to the
registered average with all 8 test-time flips (the untuned default's iteration 0), on protocol
v1's seven Colin27 cases and four cases of the INIA19 macaque template (a species the networks
never saw; Debian's ``mricron-data``).

    python benchmarks/prior_grid.py --out rows.jsonl shipped runs/x/model.safetensors ...

``shipped`` is the packaged T1w U-Net. One thread; the same simulated repetitions as
``n2a benchmark`` with the same seed and crop. One JSON line per case and model.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

INIA19 = "/usr/share/mricron/templates/inia19-t1-brain.nii.gz"
#: (reference, sigma, repetitions, crop, echo variant)
CASES = [("colin27", 0.03, 2, 96, False), ("colin27", 0.03, 4, 64, False),
         ("colin27", 0.05, 2, 96, False), ("colin27", 0.05, 4, 96, False),
         ("colin27", 0.08, 2, 64, False), ("colin27", 0.08, 4, 64, False),
         ("colin27", 0.05, 2, 64, True),
         ("inia19", 0.03, 2, 96, False), ("inia19", 0.05, 2, 96, False),
         ("inia19", 0.08, 2, 64, False), ("inia19", 0.05, 4, 64, False)]


def registered_average(reference: str, sigma: float, reps: int, crop: int, echo: bool,
                       seed: int = 0):
    """The case's registered average, the scaled reference and the mask (also used by
    ``benchmarks/tta.py``)."""
    from noise2average.arrays.frames import Frames
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.workflows import reference_and_mask, simulate_case

    # the template is brain-extracted: its nonzero voxels are the mask
    paths = (INIA19, INIA19) if reference == "inia19" else (None, None)
    ref, mask, img, _, _ = reference_and_mask(*paths)
    cfg = SimulationConfig(sigma=sigma, reps=reps, echo=echo, seed=seed)
    noisy, truth, mask, like, _ = simulate_case(ref, mask, img, cfg, crop)
    frames = Frames(len(noisy), zooms=tuple(float(z) for z in like.header.get_zooms()[:3]))
    frames.update(noisy, mask)
    mean = np.mean([frames.to_frame(r, k, 0) for k, r in enumerate(noisy)], axis=0)
    return mean.astype(np.float32), truth, mask


def main() -> None:
    from noise2average.arrays.channels import channels_first, channels_last
    from noise2average.arrays.metrics import score
    from noise2average.arrays.normalize import Norm
    from noise2average.io.weights import load_model, load_packaged
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.engine import denoise_volume

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files, or 'shipped'")
    ap.add_argument("--out", help="append the rows to this JSON-lines file")
    args = ap.parse_args()
    policy = resolve_policy("cpu", "auto", 1)
    models = {name: policy.prepare(load_packaged("t1w")[0] if name == "shipped"
                                   else load_model(name)[0]) for name in args.models}
    for reference, sigma, reps, crop, echo in CASES:
        mean, truth, mask = registered_average(reference, sigma, reps, crop, echo)
        norm = Norm.fit(mean, mask)
        z = channels_first(norm.forward(mean))
        case = f"{reference}, sigma {sigma}, N = {reps}, {crop}^3{', echo' if echo else ''}"
        for name, model in models.items():
            t0 = time.perf_counter()
            d = denoise_volume(model, z, mask, policy, model.config.receptive_radius, 160,
                               (0, 1, 2))
            s = score(np.where(mask, norm.inverse(channels_last(d, 3)), 0), truth, mask)
            row = {"case": case, "model": name, "psnr": round(s["psnr"], 3),
                   "sharpness": round(s["sharpness"], 4),
                   "seconds": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
