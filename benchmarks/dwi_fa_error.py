"""Where a diffusion output's white-matter FA error lies, against BM4D's (issue 20).

Takes an output series saved by ``benchmarks/dwi_volumes.py --save OUT.npy`` and scores it
beside BM4D volume by volume on the same case (computed once and cached next to the case):

- the two outputs with their b=0 volumes swapped (which part, b=0 or DWIs, makes the
  difference in FA);
- the FA error split by the true FA, by white-matter interior against its one-voxel rim, and
  into a smooth part (Gaussian, 1.5 voxels) and the high-frequency rest; and the white-matter
  RMS errors of the b=0 volumes, the DWIs (relative to the true signal) and the attenuation.

    python benchmarks/dwi_fa_error.py OUT.npy [--case apap] [--phantom bundles] [--crop 48]

Prints one JSON line per row.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage


def bm4d_output(case, path: Path) -> np.ndarray:
    """BM4D on each volume of the repetitions' average (the benchmark's ``bm4d`` row),
    cached in ``path``."""
    from noise2average.config import DenoiseConfig
    from noise2average.diffusion import denoise_dwi

    if not path.exists():
        config = DenoiseConfig(method="bm4d", threads=1, device="cpu", align="auto")
        np.save(path, denoise_dwi(case.reps, case.bvals, case.bvecs, case.brain, config).output)
    return np.load(path)


def error_parts(case, fa: np.ndarray, wm: np.ndarray) -> dict:
    """The white-matter FA error by true FA, interior / rim, smooth / high-frequency."""
    truth = case.metrics["FA"]
    err = np.where(case.brain, fa - truth, 0).astype(np.float64)
    out: dict = {}
    for lo, hi in ((0.0, 0.4), (0.4, 0.6), (0.6, 1.0)):
        sel = wm & (truth >= lo) & (truth < hi)
        out[f"mae_true_fa_{lo}_{hi}"] = float(np.abs(err[sel]).mean())
    interior = ndimage.binary_erosion(wm)
    out["mae_interior"] = float(np.abs(err[interior]).mean())
    out["mae_rim"] = float(np.abs(err[wm & ~interior]).mean())
    weight = ndimage.gaussian_filter(case.brain.astype(np.float64), 1.5)
    smooth = ndimage.gaussian_filter(err, 1.5) / np.maximum(weight, 1e-6)
    out["rms_smooth"] = float(np.sqrt((smooth[wm] ** 2).mean()))
    out["rms_high_frequency"] = float(np.sqrt(((err - smooth)[wm] ** 2).mean()))
    out["bias"] = float(err[wm].mean())
    return out


def signal_errors(case, series: np.ndarray, wm: np.ndarray) -> dict:
    """White-matter RMS errors against the truth: b=0 and DWIs relative to the true signal,
    and the attenuation S/S0 (each series divided by its own mean b=0)."""
    b0 = case.bvals <= 50
    out, clean = series[wm].astype(np.float64), case.clean[wm].astype(np.float64)
    rel = (out - clean) / np.maximum(clean, 1e-6)
    att = out[:, ~b0] / np.maximum(out[:, b0].mean(1, keepdims=True), 1e-6)
    att_true = clean[:, ~b0] / np.maximum(clean[:, b0].mean(1, keepdims=True), 1e-6)
    return {"rms_rel_b0": float(np.sqrt((rel[:, b0] ** 2).mean())),
            "rms_rel_dwi": float(np.sqrt((rel[:, ~b0] ** 2).mean())),
            "rms_attenuation": float(np.sqrt(((att - att_true) ** 2).mean()))}


def main() -> None:
    from noise2average.bench.dwi import probe_case, score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", help="the output series (.npy, X, Y, Z, V)")
    ap.add_argument("--case", choices=("apap", "subset"), default="apap")
    ap.add_argument("--phantom", choices=("structure", "bundles"), default="bundles")
    ap.add_argument("--crop", type=int, default=48)
    ap.add_argument("--work", help="case cache folder (default runs/bench_CASE[_PHANTOM])")
    args = ap.parse_args()
    case = probe_case(args.case, args.phantom, args.crop, args.work)
    suffix = "" if args.phantom == "structure" else f"_{args.phantom}"
    folder = Path(args.work or f"runs/bench_{args.case}{suffix}")
    ours = np.load(args.output)
    bm4d = bm4d_output(case, folder / f"bm4d_crop{args.crop}.npy")
    b0 = case.bvals <= 50
    wm = case.wm & case.brain

    def with_b0(series: np.ndarray, donor: np.ndarray) -> np.ndarray:
        mixed = series.copy()
        mixed[..., b0] = donor[..., b0]
        return mixed

    average = np.mean(case.reps, axis=0, dtype=np.float64).astype(np.float32)
    rows = {"output": ours, "bm4d": bm4d, "average": average,
            "output DWIs + bm4d b=0": with_b0(ours, bm4d),
            "bm4d DWIs + output b=0": with_b0(bm4d, ours)}
    for name, series in rows.items():
        scores, metrics = score(case, series, "reps")
        row = {"row": name, "FA_mae_wm": round(scores["FA_mae_wm"], 4),
               "MD_mae_wm": round(scores["MD_mae_wm"] * 1e3, 4),
               "psnr_dwi": round(scores["psnr_dwi"], 2)}
        if name in ("output", "bm4d", "average"):
            parts = error_parts(case, metrics["FA"], wm) | signal_errors(case, series, wm)
            row |= {k: round(v, 4) for k, v in parts.items()}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
