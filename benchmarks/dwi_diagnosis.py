"""Where the white-matter FA error of the diffusion benchmark comes from (issue 5).

    python benchmarks/dwi_diagnosis.py --case apap -o docs/benchmarks/dwi_diagnosis_apap \
        [--work runs/bench_apap] [--skip-network]

The same case as ``benchmarks/dwi.py`` (its cache in ``--work`` is reused, or built). Rows:

- the Rician mean of the clean series (no noise variance, only the magnitude bias): how much
  FA error the noise floor alone causes;
- the plain average, and the average smoothed by a Gaussian of 0.4-1.0 voxel: how much FA
  error spatial smoothing alone adds on this phantom;
- the shipped diffusion network without fine-tuning (``pretrained``), unless
  ``--skip-network``.

For each row: PSNR of the DWIs, white-matter FA MAE, the mean signed FA error in white matter
(bias), the FA MAE once that mean bias is removed, and the *directional contrast slope*: in
white matter, each volume's attenuation S/S0 minus the voxel's mean attenuation, regressed on
the truth's (1 = contrast kept, < 1 = the directions pulled towards each other, which lowers
FA). For the network, the slope is also estimated without the truth, from the repetitions, as
``n2a denoise`` does (:func:`noise2average.diffusion.contrast_kept`, whole brain mask).

And the phantom's own roughness: the mean absolute FA difference and the angle between the
principal eigenvectors of neighbouring white-matter voxels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["apap", "subset"], default="apap")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--work")
    ap.add_argument("--skip-network", action="store_true")
    args = ap.parse_args(argv)

    from scipy import ndimage

    from noise2average.bench.dwi import DwiBenchConfig, cached_case, score
    from noise2average.diffusion import contrast_kept, directional_contrast
    from noise2average.io.atomic import write_text

    cfg = DwiBenchConfig(case=args.case)
    work = Path(args.work or f"runs/bench_{args.case}")
    work.mkdir(parents=True, exist_ok=True)
    case = cached_case(cfg, work / "case.npz")
    sigma = float(case.record["noise"]["sigma"])
    b0 = case.bvals <= 50
    wm = case.wm & case.brain
    truth = directional_contrast(case.clean, b0, wm)
    ref_fa = case.metrics["FA"][wm].astype(np.float64)
    average = np.mean(case.reps, axis=0).astype(np.float32)
    rows: list[dict] = []

    def row(name: str, series: np.ndarray, extra: dict | None = None) -> None:
        s, met = score(case, series.astype(np.float32), "reps")
        err = met["FA"][wm].astype(np.float64) - ref_fa
        c = directional_contrast(series, b0, wm)
        r = {"method": name, "psnr_dwi": s["psnr_dwi"], "FA_mae_wm": s["FA_mae_wm"],
             "FA_bias_wm": float(err.mean()),
             "FA_mae_wm_unbiased": float(np.abs(err - err.mean()).mean()),
             "MD_mae_wm": s["MD_mae_wm"],
             "contrast_slope": float((c * truth).sum() / (truth * truth).sum()), **(extra or {})}
        rows.append(r)
        print(json.dumps(r), flush=True)

    from noise2average.arrays.noise import rician_mean

    row("Rician mean of the clean series (bias only)", rician_mean(case.clean, sigma))
    row("average", average)
    for s in (0.4, 0.6, 1.0):
        smooth = np.stack([ndimage.gaussian_filter(average[..., v], s)
                           for v in range(average.shape[-1])], -1)
        row(f"average, Gaussian {s} voxel", smooth)
    if not args.skip_network:
        import torch

        from noise2average.config import DenoiseConfig
        from noise2average.diffusion import denoise_dwi

        torch.set_num_threads(1)
        res = denoise_dwi(case.reps, case.bvals, case.bvecs, case.brain,
                          DenoiseConfig(method="pretrained", threads=1, seed=0, device="cpu",
                                        dwi_mode="groups"),
                          group_size=cfg.group_size)
        row("shipped network, no fine-tuning", res.output,
            {"contrast_slope_from_data": contrast_kept(res.denoised, case.reps, b0, case.brain)})
    fa, v1 = case.metrics["FA"], case.metrics["V1"]
    rough = {}
    for ax in range(3):
        both = wm & np.roll(wm, 1, axis=ax)
        rough[f"axis{ax}"] = {
            "FA_abs_diff": float(np.abs(fa - np.roll(fa, 1, axis=ax))[both].mean()),
            "V1_angle_deg": float(np.degrees(np.arccos(np.clip(np.abs(
                (v1 * np.roll(v1, 1, axis=ax)).sum(-1)), 0, 1)))[both].mean())}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cmd = (f"python benchmarks/dwi_diagnosis.py --case {args.case} -o {args.output}"
           + (" --skip-network" if args.skip_network else ""))
    write_text(out / "diagnosis.json", json.dumps({"command": cmd, "rows": rows,
                                                   "neighbour_roughness_wm": rough,
                                                   "config": cfg.to_dict()}, indent=2))
    lines = [f"## Diffusion FA diagnosis, case {args.case} (b0 SNR {cfg.snr:g}, N = 2)", "",
             f"`{cmd}`", "",
             "| series | PSNR DWI dB | FA MAE WM | FA bias WM | FA MAE WM, bias removed "
             "| MD MAE WM | contrast slope |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        slope = f"{r['contrast_slope']:.3f}"
        if "contrast_slope_from_data" in r:
            slope += f" (from the data: {r['contrast_slope_from_data']:.3f})"
        lines.append(f"| {r['method']} | {r['psnr_dwi']:.2f} | {r['FA_mae_wm']:.4f} | "
                     f"{r['FA_bias_wm']:+.4f} | {r['FA_mae_wm_unbiased']:.4f} | "
                     f"{r['MD_mae_wm'] * 1e3:.4f} | {slope} |")
    lines += ["", "MD in 10^-3 mm^2/s. Neighbouring white-matter voxels of the truth differ by "
              + ", ".join(f"{v['FA_abs_diff']:.3f}" for v in rough.values())
              + " in FA and "
              + ", ".join(f"{v['V1_angle_deg']:.1f}" for v in rough.values())
              + " degrees in V1 (mean, along x, y, z).", ""]
    write_text(out / "diagnosis.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
