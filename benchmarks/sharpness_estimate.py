"""The truth-free sharpness estimate (:mod:`noise2average.arrays.sharpness`) beside the
sharpness ratios that the truth gives, for the default and BM4D on the registered average on
one protocol-v1 case; one JSON row per method.

    python benchmarks/sharpness_estimate.py SIGMA N CROP [REFERENCE] >> rows.jsonl

Columns: the benchmark's sharpness ratio (mean gradient magnitude over the mask), the same
ratio in the mask's interior (the mask eroded by two voxels), the root-mean-square ratio there
(``rms_truth``), the estimate without the truth, the one the run recorded in its history,
and the estimate of the noise-free image itself (what a perfect output would read). One
thread; REFERENCE is a brain-extracted T1w (its nonzero voxels the mask), Colin27 by default.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> None:
    from noise2average.arrays.metrics import score, sharpness_ratio
    from noise2average.arrays.sharpness import gradient_energy, interior, sharpness_estimate
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.bench.volumes import registered_average, run_methods
    from noise2average.config import DenoiseConfig
    from noise2average.workflows import reference_and_mask, simulate_case

    sigma, n, crop = float(argv[0]), int(argv[1]), int(argv[2])
    reference = argv[3] if len(argv) > 3 else None
    ref, whole_mask, img, _, _ = reference_and_mask(reference, reference)
    reps, truth, mask, _, _ = simulate_case(ref, whole_mask, img,
                                            SimulationConfig(sigma=sigma, reps=n, seed=0), crop)
    average, probe = registered_average(
        reps, mask, tuple(float(z) for z in img.header.get_zooms()[:3]))
    inner = interior(mask)
    runs = run_methods(reps, mask, truth, ["n2a-aligned", "bm4d:align=register"],
                       DenoiseConfig(threads=1, seed=0), isolate=False)
    case = f"s{sigma} n{n} c{crop}" + (f" {reference.split('/')[-1]}" if reference else "")
    for run in runs:
        out = run.output
        s = score(out, truth, mask)  # as the benchmark scores it
        rms = np.sqrt(gradient_energy(out, inner) / gradient_energy(truth, inner))
        print(json.dumps({
            "case": case, "method": run.method, "psnr": round(s["psnr"], 3),
            "sharpness": round(s["sharpness"], 4),
            "sharpness_interior": round(sharpness_ratio(out, truth, inner), 4),
            "rms_truth": round(float(rms), 4),
            "estimate": round(sharpness_estimate(out, average, probe, mask), 4),
            "estimate_in_run": (run.history[-1] if run.history else {}).get(
                "output_sharpness_estimate"),
            "truth_estimate": round(sharpness_estimate(truth, average, probe, mask), 4)}),
            flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
