"""The diffusion comparison (noise2average.bench.dwi): one case, every method, one table.

    python benchmarks/dwi.py --case apap -o docs/benchmarks/dwi_apap_snr20 --threads 1
    python benchmarks/dwi.py --case subset -o docs/benchmarks/dwi_subset_snr20 --threads 1
    python benchmarks/dwi.py --case apap --phantom bundles -o docs/benchmarks/dwi_apap_bundles

``--phantom bundles`` swaps the white matter's structure-tensor tract field for smooth crossing
fibre families (``noise2average.arrays.dwi_phantom.bundle_tensors``).

Each method's output is cached in ``--work`` (default ``runs/bench_<case>``) as soon as it is
done, so an interrupted run continues where it stopped and methods can be run in separate
calls (``--methods``); ``results.md``, ``results.json`` and ``fa.png`` are written once every
requested method has an output.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from noise2average.bench.dwi import (DEFAULT_METHODS, DwiBenchConfig, add_subset_arguments,
                                     cached_case, default_work, fa_figure, markdown_table,
                                     run_method, score, target_check)
from noise2average.bench.volumes import parse_spec
from noise2average.config import DenoiseConfig
from noise2average.io.atomic import write_text
from noise2average.provenance import environment


def method_changes(spec: str) -> dict:
    """The DenoiseConfig changes a method spec makes: its base method (``@subsets`` dropped)
    and any ``:key=value`` settings, so that the recorded config is the one that ran."""
    base, changes = parse_spec(spec.partition("@")[0])
    return {"method": base, **changes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["apap", "subset"], default="apap")
    ap.add_argument("-o", "--output", required=True, help="folder for results.md/json, fa.png")
    ap.add_argument("--work", help="cache of method outputs (default runs/bench_CASE with the "
                                   "phantom, directions and subset size appended)")
    ap.add_argument("--phantom", choices=["structure", "bundles"], default="structure")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    ap.add_argument("--report-methods", nargs="+", default=None,
                    help="methods in the table (default: --methods)")
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--dirs", type=int, default=30)
    ap.add_argument("--b0s", type=int, default=2)
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--group-size", type=int, default=7)
    ap.add_argument("--subsets", type=int, default=2, help="subset case: repetitions to make")
    add_subset_arguments(ap)
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps per iteration")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--patch", type=int, default=None)
    ap.add_argument("--init", default="pretrained")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    cfg = DwiBenchConfig(case=args.case, crop=args.crop, n_dirs=args.dirs, n_b0=args.b0s,
                         snr=args.snr, seed=args.seed, group_size=args.group_size,
                         subsets=args.subsets, subset_size=args.subset_size,
                         subset_b0=args.subset_b0, phantom=args.phantom)
    changes = {"init": args.init, "threads": args.threads, "seed": args.seed, "device": "cpu"}
    for key, name in (("steps", "steps"), ("iterations", "iterations"), ("lr", "lr"),
                      ("patch", "patch_size")):
        if getattr(args, key) is not None:
            changes[name] = getattr(args, key)
    config = DenoiseConfig(**changes)
    work = default_work(cfg, args.work)
    t0 = time.perf_counter()
    case = cached_case(cfg, work / "case.npz")
    print(f"case ready in {time.perf_counter() - t0:.0f} s: reps {case.reps[0].shape}, "
          f"single {case.single.shape}", flush=True)
    for m in args.methods:
        npz = work / f"{m}.npz"
        if npz.is_file():
            continue
        print(f"running {m} ...", flush=True)
        t0 = time.perf_counter()
        try:
            out, table = run_method(case, m, config, args.group_size)
        except Exception as exc:  # a missing optional tool: recorded, the others go on
            write_text(work / f"{m}.json", json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            print(f"  {m} failed: {exc}", flush=True)
            continue
        secs = time.perf_counter() - t0
        np.savez_compressed(npz, output=out.astype(np.float32))
        write_text(work / f"{m}.json", json.dumps({
            "table": table, "seconds": round(secs, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
            "config": (config.replace(**method_changes(m)).to_dict()
                       if m not in ("noisy",) else None)}))
        print(f"  {m}: {secs:.0f} s", flush=True)

    report = args.report_methods or args.methods
    missing = [m for m in report if not (work / f"{m}.json").is_file()]
    if missing:
        print(f"not reporting yet: no output for {', '.join(missing)}")
        return 0
    rows, fa_maps = [], {}
    for m in report:
        info = json.loads((work / f"{m}.json").read_text())
        if info.get("error"):
            rows.append({"method": m, "error": info["error"]})
            continue
        out = np.load(work / f"{m}.npz")["output"]
        sc, met = score(case, out, info["table"])
        rows.append({"method": m, **sc, "seconds": info["seconds"], "table": info["table"]})
        fa_maps[m] = met["FA"]
    outdir = Path(args.output)
    argv_str = " ".join(["python", "benchmarks/dwi.py"] + sys.argv[1:])
    tracts = "" if cfg.phantom == "structure" else ", bundle tract field"
    title = (f"Diffusion phantom (MNI152 GM/WM/CSF at {cfg.zoom_mm:g} mm, centred {cfg.crop}^3"
             f"{tracts}), "
             f"{cfg.n_b0} b0 + {cfg.n_dirs} directions at b={cfg.bval:g}, b0 SNR {cfg.snr:g}, "
             + ("AP/PA: 2 noise realizations" if cfg.case == "apap" else
                f"DTI subsets: one noisy series split into {cfg.subsets} repetitions of b0 + 6"))
    md = [f"## {title}", "", f"`{argv_str}`", "",
          markdown_table(rows), "Targets (issue 20):", ""]
    md += [f"- {line}" for line in target_check(rows)]
    write_text(outdir / "results.md", "\n".join(md) + "\n")
    write_text(outdir / "results.json", json.dumps(
        {"title": title, "command": argv_str, "rows": rows, "benchmark": cfg.to_dict(),
         "denoise_config": config.to_dict(), "case": case.record,
         "environment": environment()}, indent=2, default=float))
    fa_figure(outdir / "fa.png", fa_maps, case.metrics["FA"], case.brain)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
