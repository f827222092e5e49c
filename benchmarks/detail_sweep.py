"""How sharp the least-error output is: the default's output with a multiple of its own detail
added (an unsharp mask, :func:`noise2average.arrays.detail.add_detail`), or of its residual,
scored against the truth, beside BM4D on the registered average and the SURE-chosen detail
step (``output_detail=sure``).

The sweep uses the truth to score each amount: it measures what the sharpness ratio costs in
PSNR, it is not a rule a user could apply. One case of protocol v1 (Colin27, seed 0, the
centred crop), every method in this process, one thread:

    python benchmarks/detail_sweep.py --sigma 0.08 --reps 2 --crop 64 [--out rows.jsonl]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

AMOUNTS = (0.05, 0.1, 0.15, 0.2, 0.4)


def main() -> None:
    from noise2average.arrays.detail import add_detail
    from noise2average.arrays.metrics import score
    from noise2average.arrays.simulate import SimulationConfig
    from noise2average.bench.volumes import run_methods
    from noise2average.config import DenoiseConfig
    from noise2average.workflows import reference_and_mask, simulate_case

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigma", type=float, default=0.08)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--out", help="append the rows to this JSON-lines file")
    args = ap.parse_args()
    ref, mask, img, _, _ = reference_and_mask(None, None)
    cfg = SimulationConfig(sigma=args.sigma, reps=args.reps, seed=0)
    reps, truth, mask, _, _ = simulate_case(ref, mask, img, cfg, args.crop)
    methods = ["n2a-aligned", "n2a-aligned:output_detail=sure", "bm4d:align=register",
               "average:align=register"]
    runs = {r.method: r for r in run_methods(reps, mask, truth, methods,
                                             DenoiseConfig(threads=1, seed=0), isolate=False)}
    out, noisy = runs["n2a-aligned"].output, runs["average:align=register"].output
    rows = [("default", out), ("default, output_detail=sure",
                               runs["n2a-aligned:output_detail=sure"].output),
            ("BM4D, registered average", runs["bm4d:align=register"].output)]
    rows += [(f"default + {a} x its detail", add_detail(out, mask, a)) for a in AMOUNTS]
    rows += [(f"default + {a} x its residual", out + a * np.where(mask, noisy - out, 0))
             for a in (0.05, 0.1)]
    case = f"sigma {args.sigma}, N = {args.reps}, {args.crop}^3"
    print(f"{case}\n\n| output | PSNR dB | sharpness |\n|---|---|---|")
    for name, image in rows:
        s = score(np.where(mask, image, 0), truth, mask)
        print(f"| {name} | {s['psnr']:.2f} | {s['sharpness']:.3f} |", flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps({"case": case, "output": name, "psnr": round(s["psnr"], 3),
                                    "sharpness": round(s["sharpness"], 4)}) + "\n")
    detail = runs["n2a-aligned:output_detail=sure"].history[-1]
    print(f"\nSURE's amount: {detail.get('output_detail_amount')}, "
          f"{detail.get('output_detail_seconds')} s")


if __name__ == "__main__":
    main()
