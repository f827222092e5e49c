"""Benchmark protocol v1 as a loop: the same simulated case through every method, scored the
same way, each method in a fresh process so its wall time and peak memory are its own."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..arrays.metrics import score
from ..config import LEARNED_METHODS, DenoiseConfig


@dataclass
class MethodRun:
    method: str
    output: np.ndarray
    rep1: np.ndarray | None
    iterations: list[np.ndarray]
    seconds: float
    peak_rss_gb: float
    error: str | None = None
    history: list[dict] = field(default_factory=list)
    selected_iteration: int = 1


def parse_spec(spec: str) -> tuple[str, dict]:
    """``NAME[:key=value,...]`` -> (method, DenoiseConfig changes), e.g.
    ``n2a:align=register,iterations=4`` or ``bm4d:align=register``."""
    from ..config import parse_settings

    method, _, opts = spec.partition(":")
    return method, parse_settings(filter(None, opts.split(",")), f"method spec {spec!r}")


def _run_one(spec: str, reps, mask, reference, config: DenoiseConfig) -> MethodRun:
    from ..errors import InputError
    from ..pipeline import denoise

    method, changes = parse_spec(spec)
    t0 = time.perf_counter()
    try:
        # every iteration on the whole mask: the rows score each one (the output is the same)
        res = denoise(reps, mask, config.replace(method=method, **changes),
                      reference=reference if method == "supervised" else None,
                      all_iterations=True)
    except InputError as exc:  # e.g. an optional package is missing
        return MethodRun(spec, None, None, [], 0.0, 0.0, str(exc))
    seconds = time.perf_counter() - t0
    learned = method in LEARNED_METHODS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return MethodRun(spec, res.output, res.denoised[0] if learned else None,
                     res.iterations if res.config.strategy == "n2a" else [], seconds, rss,
                     history=[{k: v for k, v in h.items() if k not in ("losses", "frames")}
                              for h in res.history],
                     selected_iteration=res.selected_iteration)


def registered_average(reps: Sequence[np.ndarray], mask: np.ndarray,
                       zooms: Sequence[float] = (1.0, 1.0, 1.0)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The repetitions registered to the first and averaged, and a draw of that average's
    noise (anatomy removed), as the output pass makes them; ``zooms`` the voxel size (mm)."""
    from ..arrays.frames import Frames
    from ..arrays.noise import difference_probe, remove_anatomy

    frames = Frames(len(reps), zooms=zooms)
    frames.update([r.astype(np.float32) for r in reps], mask)
    aligned = [frames.to_frame(r.astype(np.float32), k, 0) for k, r in enumerate(reps)]
    average = np.mean(aligned, axis=0)
    return average, remove_anatomy(difference_probe(aligned), average)


def run_methods(reps: Sequence[np.ndarray], mask: np.ndarray, reference: np.ndarray,
                methods: Sequence[str], config: DenoiseConfig,
                isolate: bool = True, say=None) -> list[MethodRun]:
    """Run each method on the same inputs; ``isolate`` runs each in a fresh spawned process.
    ``say(line)``, when given, hears each method's start and its time when done."""
    runs = []
    t0 = time.perf_counter()
    for k, m in enumerate(methods, 1):
        if say:
            say(f"n2a benchmark: [{k}/{len(methods)}] {m} ...")
        if isolate:
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
                runs.append(ex.submit(_run_one, m, list(reps), mask, reference, config).result())
        else:
            runs.append(_run_one(m, reps, mask, reference, config))
        if say:
            r = runs[-1]
            what = f"failed: {r.error}" if r.error else f"done in {r.seconds:.0f} s"
            say(f"n2a benchmark: [{k}/{len(methods)}] {m} {what} "
                f"({(time.perf_counter() - t0) / 60:.1f} min so far)")
    return runs


DIAGNOSTICS = ("cross_mse", "heldout_cross_mse", "residual_corr")  # per iteration, in the rows


def score_runs(runs: Sequence[MethodRun], reps: Sequence[np.ndarray], reference: np.ndarray,
               mask: np.ndarray) -> list[dict]:
    """One row per output: the noisy rep 1, each method's average output, its denoised rep 1
    where it has one, and Noise2Average after each iteration."""
    rows = [{"method": "noisy rep 1", "output": "rep 1",
             **score(np.where(mask, reps[0], 0), reference, mask)}]
    for r in runs:
        if r.error:
            rows.append({"method": r.method, "output": "skipped", "error": r.error})
            continue
        base = {"seconds": round(r.seconds, 1), "peak_rss_gb": round(r.peak_rss_gb, 2)}
        kept = next((h for h in r.history if h.get("iteration") == r.selected_iteration), {})
        base.update({k: kept[k] for k in DIAGNOSTICS if k in kept})
        first = r.history[0] if r.history else {}
        if "pretrained_heldout_cross_mse" in first:  # the stopping rule's iteration 0
            base.update(selected_iteration=r.selected_iteration,
                        pretrained_heldout_cross_mse=first["pretrained_heldout_cross_mse"])
        if r.history and "output_heldout_cross_mse" in r.history[-1]:  # N >= 3, from average
            base["output_heldout_cross_mse"] = r.history[-1]["output_heldout_cross_mse"]
        last = r.history[-1] if r.history else {}
        base.update({k: last[k] for k in ("output_tuning_seconds", "output_tuning_kept_step",
                                          "output_tuning_scores", "output_tuning_check_seconds",
                                          "output_detail_amount", "output_detail_seconds",
                                          "gradient_discrepancy", "output_detail_bound",
                                          "output_seconds")
                     if k in last})
        rows.append({"method": r.method, "output": "average", **score(r.output, reference, mask),
                     **base})
        if r.rep1 is not None:
            rows.append({"method": r.method, "output": "rep 1",
                         **score(np.where(mask, r.rep1, 0), reference, mask)})
        for i, img in enumerate(r.iterations, 1):
            if len(r.iterations) > 1:
                diag = next((h for h in r.history if h.get("iteration") == i), {})
                rows.append({"method": f"{r.method} iter {i}", "output": "average",
                             **score(img, reference, mask),
                             **{k: diag[k] for k in DIAGNOSTICS if k in diag}})
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    lines = ["| method | output | PSNR dB | SSIM | NMAE | sharpness | time s | peak GB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['method']} | skipped: {r['error']} | | | | | | |")
            continue
        t = r.get("seconds", "")
        mem = r.get("peak_rss_gb", "")
        lines.append(f"| {r['method']} | {r['output']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                     f"{r['nmae']:.4f} | {r['sharpness']:.3f} | {t} | {mem} |")
    return "\n".join(lines) + "\n"
