"""The gradient match (``output_detail=match``) on one protocol-v1 case, with the truth at hand:
the gradient discrepancy of the least-error output, of BM4D on the registered average and of
the noise-free image, and for several widths of the detail the share the match picks and what
the result scores. One JSON row per width.

    python benchmarks/gradient_match.py SIGMA N CROP >> rows.jsonl

The network runs once (``n2a-aligned:output_detail=none``, one thread); each width's share is
then chosen on its output, as the output pass chooses it
(:func:`noise2average.arrays.detail.matched_detail_amount`), with the registered average and
the noise probe that the output pass makes.
"""

from __future__ import annotations

import json
import sys

import numpy as np

WIDTHS = (0.5, 0.7, 1.0, 1.5, 2.0)


def analyse(case: str, least: np.ndarray, bm4d: np.ndarray, average: np.ndarray,
            probe: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> list[dict]:
    """The rows for one case: each width's share and score, with the discrepancies that do
    not depend on the width (the least-error output's, BM4D's and the truth's)."""
    from noise2average.arrays.detail import add_detail, matched_detail_amount
    from noise2average.arrays.metrics import score

    def discrepancy(image: np.ndarray) -> float:
        return matched_detail_amount(image, average, probe, mask)[1]["gradient_discrepancy"]

    fixed = {"case": case, "least_error": round(score(least, truth, mask)["psnr"], 3),
             "discrepancy_least_error": discrepancy(least),
             "discrepancy_bm4d": discrepancy(bm4d), "discrepancy_truth": discrepancy(truth)}
    rows = []
    for width in WIDTHS:
        amount, _ = matched_detail_amount(least, average, probe, mask, width=width)
        s = score(add_detail(least, mask, amount, width=width), truth, mask)
        rows.append({**fixed, "width": width, "share": round(amount, 4),
                     "psnr": round(s["psnr"], 3), "sharpness": round(s["sharpness"], 4)})
    return rows


def main(argv: list[str]) -> None:
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.bench.volumes import registered_average, run_methods
    from noise2average.config import DenoiseConfig
    from noise2average.workflows import reference_and_mask, simulate_case

    sigma, n, crop = float(argv[0]), int(argv[1]), int(argv[2])
    ref, whole_mask, img, _, _ = reference_and_mask(None, None)
    reps, truth, mask, _, _ = simulate_case(ref, whole_mask, img,
                                            SimulationConfig(sigma=sigma, reps=n, seed=0), crop)
    average, probe = registered_average(
        reps, mask, tuple(float(z) for z in img.header.get_zooms()[:3]))
    least, bm4d = run_methods(reps, mask, truth, ["n2a-aligned:output_detail=none",
                                                  "bm4d:align=register"],
                              DenoiseConfig(threads=1, seed=0), isolate=False)
    for row in analyse(f"s{sigma} n{n} c{crop}", least.output, bm4d.output, average, probe,
                       truth, mask):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
