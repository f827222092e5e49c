"""The volume-by-volume diffusion mode with and without its contrast restoration (issue 20).

Runs :func:`noise2average.dwi_volumes.denoise_by_volume` on a diffusion benchmark case and
scores its output twice: as returned, and with the other choice of contrast restoration (the
restoration spreads the directional contrast by 1 / kept and is exactly invertible; it is
off where the repetitions share their b=0 image, the subset case).

    python benchmarks/dwi_volumes.py [--case apap|subset] [--phantom bundles|structure]
        [--crop 48] [--dirs 30] [--set KEY=VALUE ...] [--threads 1] [--save OUT.npy]

Prints one JSON line per variant: the diffusion benchmark's scores (``bench.dwi.score``;
diffusivities in 10^-3 mm^2/s), the contrast kept, whether the variant is the output as
returned, the settings and the seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    from noise2average.bench.dwi import add_probe_case_arguments, probe_case_from, score
    from noise2average.config import DenoiseConfig, parse_settings
    from noise2average.arrays.contrast import restore_contrast
    from noise2average.diffusion import volume_shells
    from noise2average.dwi_volumes import denoise_by_volume

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_probe_case_arguments(ap)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="DenoiseConfig changes, as in n2a denoise")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", metavar="OUT.npy",
                    help="also write the output series as returned (X, Y, Z, V) to this file")
    args = ap.parse_args()
    case = probe_case_from(args)
    changes = parse_settings(args.set, "--set")
    config = DenoiseConfig(**{"threads": args.threads, "device": "cpu", **changes})
    shells = volume_shells(case.bvals, case.bvecs, case.reps[0].shape[3])
    b0 = shells < 0
    t0 = time.perf_counter()
    run = denoise_by_volume(case.reps, case.brain, shells, config)
    seconds = time.perf_counter() - t0
    kept = run.contrast_kept
    if args.save:
        np.save(args.save, run.output)
    # the output as returned, and the same with the other choice of restoration
    if run.contrast_restored:
        variants = {"restored": run.output,
                    "not restored": restore_contrast(run.output, b0, case.brain, 1 / kept)}
    else:
        variants = {"not restored": run.output,
                    "restored": restore_contrast(run.output, b0, case.brain, kept)}
    for name, series in variants.items():
        scores, _ = score(case, series, "reps")
        scaled = {k: round(v * (1e3 if k[:2] in ("MD", "AD", "RD") else 1), 4)
                  for k, v in scores.items() if isinstance(v, float)}
        print(json.dumps({"variant": name, "case": args.case, "phantom": args.phantom,
                          "crop": args.crop, "set": args.set, "contrast_kept": round(kept, 4),
                          "returned": list(variants)[0] == name,
                          "seconds": round(seconds, 1), **scaled}), flush=True)


if __name__ == "__main__":
    main()
