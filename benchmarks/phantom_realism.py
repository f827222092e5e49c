"""Is the diffusion benchmark's phantom as smooth as real white matter?

    python benchmarks/phantom_realism.py -o docs/benchmarks/dwi_phantom_realism

Measures, for DIPY's real DWI crop ``small_64D`` (2 mm, 64 directions at b = 1000) and for
the benchmark's MNI152 phantom (2 mm, 30 directions at b = 1000, ``noise2average.bench.dwi``),
how much face-neighbouring anisotropic voxels (fitted FA > 0.3) differ in FA and in principal
direction (``arrays.dti.neighbour_roughness``), and the b0 SNR each series has as its tensor
fit sees it (``arrays.dti.residual_snr``). A real series holds noise as well as anatomy, so
the phantom is measured three ways: its true tensors, its noisy series at the benchmark's SNR
(20), and its noisy series at the real crop's SNR. The real crop is a single series: its
roughness is anatomy plus noise, to compare with the phantom's noisy rows at a matched SNR.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from noise2average.arrays.dti import (dti_metrics, fit_tensor, neighbour_roughness,
                                      residual_snr)
from noise2average.arrays.masking import auto_mask
from noise2average.bench.dwi import DwiBenchConfig, build_case
from noise2average.io.atomic import write_text

FA_MIN = 0.3  # "anisotropic": white matter in the phantom and, by FA alone, in the real crop


def measure(name: str, dwi, bvals, bvecs, mask) -> dict:
    field = fit_tensor(dwi, bvals, bvecs, mask)
    m = dti_metrics(field)
    aniso = mask & (m["FA"] > FA_MIN)
    return {"series": name, "snr_b0": residual_snr(dwi, bvals, bvecs, field, aniso),
            "voxels_fa_over_0.3": int(aniso.sum()), "mask_voxels": int(mask.sum()),
            **neighbour_roughness(m["FA"], m["V1"], aniso)}


def real_crop() -> dict:
    import nibabel as nib
    from dipy.data import get_fnames

    dwi_path, bval_path, bvec_path = get_fnames(name="small_64D")
    dwi = np.asarray(nib.load(str(dwi_path)).dataobj, np.float32)
    bvals, bvecs = np.loadtxt(bval_path), np.loadtxt(bvec_path)
    bvecs = bvecs.T if bvecs.shape[0] == 3 else bvecs
    mask = auto_mask(dwi[..., bvals < 50].mean(axis=-1))
    return measure("real: DIPY small_64D (2 mm, b 1000, 64 directions)", dwi, bvals, bvecs, mask)


def phantom_rows(snrs) -> list[dict]:
    rows = []
    for snr in snrs:
        case = build_case(DwiBenchConfig(snr=snr))
        if not rows:  # the truth: the phantom's own tensors
            fa, v1 = case.metrics["FA"], case.metrics["V1"]
            aniso = case.brain & (fa > FA_MIN)
            rows.append({"series": "phantom: true tensors", "snr_b0": None,
                         "voxels_fa_over_0.3": int(aniso.sum()),
                         "mask_voxels": int(case.brain.sum()),
                         **neighbour_roughness(fa, v1, aniso)})
        rows.append(measure(f"phantom: one noisy series, b0 SNR {snr:g}", case.single,
                            case.single_bvals, case.single_bvecs, case.brain))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args(argv)
    real = real_crop()
    rows = [real] + phantom_rows([20.0, round(real["snr_b0"], 1)])
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    cmd = f"python benchmarks/phantom_realism.py -o {args.output}"
    write_text(out / "realism.json", json.dumps({"command": cmd, "fa_min": FA_MIN,
                                                 "rows": rows}, indent=2))
    lines = ["## Neighbour roughness of anisotropic voxels (fitted FA > 0.3)", "", f"`{cmd}`", "",
             "| series | b0 SNR (fit residual) | voxels | neighbour pairs | FA abs. difference "
             "| V1 angle deg |", "|---|---|---|---|---|---|"]
    for r in rows:
        snr = "" if r["snr_b0"] is None else f"{r['snr_b0']:.1f}"
        lines.append(f"| {r['series']} | {snr} | {r['voxels_fa_over_0.3']} | {r['pairs']} | "
                     f"{r['FA_abs_diff']:.3f} | {r['V1_angle_deg']:.1f} |")
    write_text(out / "realism.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
