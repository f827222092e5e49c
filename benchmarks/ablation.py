"""Issue-4 ablation: variants of the default denoiser on one protocol-v1 case, side by side.

Every variant is a method spec ``NAME[:key=value,...]`` (see ``noise2average.bench.volumes``), run
in its own process on the same simulated repetitions and scored the same way; the per-iteration
rows carry the reference-free diagnostics (cross error, residual correlation) next to the true
PSNR, so a stopping rule can be checked against the truth.

    python benchmarks/ablation.py --crop 96 --sigma 0.05 --reps 2 -o runs/ablation \
        n2a:align=register,iterations=5 n2a:target=others,iterations=5 ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from noise2average.arrays.simulate import SimulationConfig
from noise2average.bench.volumes import markdown_table, run_methods, score_runs
from noise2average.config import DenoiseConfig
from noise2average.io.atomic import write_text
from noise2average.io.templates import colin27_paths
from noise2average.provenance import environment
from noise2average.workflows import reference_and_mask, simulate_case


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--echo", action="store_true")
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    cfg = SimulationConfig(sigma=args.sigma, reps=args.reps, echo=args.echo, seed=args.seed)
    ref, mask, img, *_ = reference_and_mask(None, None)
    reps, scaled, mask, _, record = simulate_case(ref, mask, img, cfg, args.crop)
    config = DenoiseConfig(threads=args.threads, seed=args.seed,
                           **({"steps": args.steps} if args.steps else {}))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for spec in args.specs:  # one file per variant: a killed run keeps what it finished
        name = spec.replace(":", "_").replace(",", "_").replace("=", "-")
        if (out / f"{name}.json").exists():
            continue
        runs = run_methods(reps, mask, scaled, [spec], config)
        rows = score_runs(runs, reps, scaled, mask)[1:]
        write_text(out / f"{name}.json", json.dumps(
            {"spec": spec, "rows": rows, "history": runs[0].history,
             "selected_iteration": runs[0].selected_iteration}, indent=2))
        print(markdown_table(rows), flush=True)
    command = " ".join(["python", "benchmarks/ablation.py"] + sys.argv[1:])
    write_text(out / "case.json", json.dumps({"command": command, "simulation": record,
                                              "reference": str(colin27_paths()[0]),
                                              "environment": environment()}, indent=2))


if __name__ == "__main__":
    main()
