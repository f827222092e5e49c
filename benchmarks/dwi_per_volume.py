"""A T1w network as a volume-by-volume spatial denoiser of diffusion data (issue 20 probe).

The diffusion network denoises groups of 7 channels (mean b0 and 6 DWIs) together and shrinks
the contrast between directions. This probe applies a 3D T1w network, with no fine-tuning, to
each volume of the AP/PA average separately, as BM4D is applied: no channel can borrow from
another. A network with a noise-map channel gets each volume's local noise SD (the spread
between the two repetitions, divided by sqrt(2) for their average).

    python benchmarks/dwi_per_volume.py MODEL [--phantom bundles] [--crop 48] [--work DIR]

Prints one JSON line: the diffusion benchmark's scores (``bench.dwi.score``; diffusivities in
10^-3 mm^2/s) and the seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def denoise_per_volume(model, reps, mask, policy) -> np.ndarray:
    """Every volume of the average of ``reps`` (channels last) denoised on its own."""
    from noise2average.arrays.noise import noise_map
    from noise2average.arrays.channels import with_noise_channel
    from noise2average.arrays.normalize import Norm
    from noise2average.nn.engine import denoise_volume

    avg = np.mean(reps, axis=0)
    out = np.zeros_like(avg)
    for v in range(avg.shape[-1]):
        norm = Norm.fit(avg[..., v], mask)
        z = norm.forward(avg[..., v])[None]
        if model.config.in_channels == 2:
            sd = noise_map([r[..., v] for r in reps]) / np.sqrt(len(reps))
            z = with_noise_channel(z, sd, norm.std)
        d = denoise_volume(model, z, mask, policy, model.config.receptive_radius, 160, 0)
        out[..., v] = np.where(mask, norm.inverse(d[0]), 0)
    return out


def main() -> None:
    from noise2average.bench.dwi import probe_case, score
    from noise2average.io.weights import load_model
    from noise2average.nn.device import resolve_policy

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--phantom", choices=("structure", "bundles"), default="bundles")
    ap.add_argument("--crop", type=int, default=48)
    ap.add_argument("--work", help="case cache folder (default runs/bench_apap[_bundles])")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    case = probe_case("apap", args.phantom, args.crop, args.work)
    policy = resolve_policy("cpu", "auto", args.threads)
    model = policy.prepare(load_model(args.model)[0])
    t0 = time.perf_counter()
    out = denoise_per_volume(model, case.reps, case.brain, policy)
    seconds = time.perf_counter() - t0
    scores, _ = score(case, out, "reps")
    scaled = {k: round(v * (1e3 if k[:2] in ("MD", "AD", "RD") else 1), 4)
              for k, v in scores.items() if isinstance(v, float)}
    print(json.dumps({"model": args.model, "phantom": args.phantom, "crop": args.crop,
                      "seconds": round(seconds, 1), **scaled}))


if __name__ == "__main__":
    main()
