"""One grid across benchmark cases: PSNR (and sharpness) of every method's averaged output, one
column per case, read from the ``results.json`` files that ``n2a benchmark`` writes.

    python benchmarks/summary.py docs/benchmarks/colin27_sigma0.0* > grid.md

Rows keep the order in which methods first appear; a cell is empty where a case did not run the
method. The best PSNR of each column is in bold (the noisy and network-iteration rows included,
the supervised upper bound excluded: it sees the reference).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def case_label(result: dict) -> str:
    sim = result["simulation"]["config"]
    label = f"sigma {sim['sigma']:g}, N={sim['reps']}"
    return label + (", echo" if sim.get("echo") else "")


def _label(method: str) -> str:
    """``n2a-aligned:iterations=3 iter 2`` -> ``n2a-aligned iter 2``: the iteration count a
    case ran does not change what iteration k is, so the cases share rows."""
    spec, sep, it = method.partition(" iter ")
    name, _, opts = spec.partition(":")
    kept = [o for o in opts.split(",") if o and not o.startswith("iterations=")]
    return name + (":" + ",".join(kept) if kept else "") + sep + it


def averaged_rows(result: dict) -> dict[str, dict]:
    """method -> scores of its averaged output (the noisy rep 1 kept as its own row). A run
    scored per iteration is listed by iteration only (its final output is its last one)."""
    per_iteration = {_label(r["method"]).split(" iter ")[0] for r in result["rows"]
                     if " iter " in r["method"]}
    rows = {}
    for r in result["rows"]:
        if "psnr" not in r or _label(r["method"]) in per_iteration:
            continue
        if r["output"] == "average" or r["method"] == "noisy rep 1":
            rows[_label(r["method"])] = r
    return rows


def grid(results: list[dict]) -> str:
    tables = [averaged_rows(r) for r in results]
    methods: list[str] = []
    for t in tables:
        methods += [m for m in t if m not in methods]
    best = []
    for t in tables:
        scores = [r["psnr"] for m, r in t.items() if not m.startswith("supervised")]
        best.append(max(scores) if scores else None)
    head = "| method | " + " | ".join(case_label(r) for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for m in methods:
        cells = []
        for t, b in zip(tables, best):
            r = t.get(m)
            if r is None:
                cells.append("")
                continue
            text = f"{r['psnr']:.2f} / {r['sharpness']:.3f}"
            bold = b is not None and abs(r["psnr"] - b) < 1e-9 and not m.startswith("supervised")
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cross_pick(its: list[dict], cap: int | None = None) -> dict:
    """The iteration ``--stopping cross`` keeps: the last one before the cross error first
    stops falling, among the first ``cap`` iterations."""
    its = its[:cap] if cap else its
    picked = its[0]
    for r in its[1:]:
        if r["cross_mse"] >= picked["cross_mse"]:
            break
        picked = r
    return picked


def stopping_rows(result: dict) -> list[str]:
    """For each network run with several scored iterations: the truly best iteration, 2 fixed
    iterations, and what ``--stopping cross`` keeps with at most 2 iterations and with every
    iteration that was run."""
    runs: dict[str, list[dict]] = {}
    for r in result["rows"]:
        base, sep, it = r["method"].rpartition(" iter ")
        if sep and "cross_mse" in r:
            runs.setdefault(base, []).append({**r, "iteration": int(it)})
    lines = []
    for method, its in runs.items():
        its.sort(key=lambda r: r["iteration"])
        best = max(its, key=lambda r: r["psnr"])
        fixed = its[min(2, len(its)) - 1]
        cells = [f"{best['iteration']}: {best['psnr']:.2f}", f"{fixed['psnr']:.2f}"]
        for cap in (2, None):
            p = cross_pick(its, cap)
            cells.append(f"{p['iteration']}: {p['psnr']:.2f} ({p['psnr'] - fixed['psnr']:+.2f})")
        lines.append(f"| {case_label(result)} | {_label(method)} | {len(its)} | "
                     + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+", type=Path, help="benchmark output folders")
    args = ap.parse_args(argv)
    results = [json.loads((c / "results.json").read_text()) for c in args.cases]
    print("PSNR dB / sharpness ratio of the averaged output, inside the brain mask.\n")
    print(grid(results))
    rows = [line for r in results for line in stopping_rows(r)]
    if rows:
        print("\nIterations: the best one, 2 fixed, and what `--stopping cross` keeps (iteration: "
              "PSNR dB, and its gain over 2 fixed iterations).\n")
        print("| case | method | iterations run | best | 2 fixed | cross, at most 2 | "
              "cross, at most all run |\n|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
