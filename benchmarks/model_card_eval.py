"""Score the shipped pre-trained model on a Colin27 simulation (an image it never saw), next to
the plain average, DIPY non-local means and BM4D, for the model card.

    python benchmarks/model_card_eval.py [--crop 96] [--sigma 0.05] [--out benchmarks/results/model_card.json]

Protocol v1 on the whole Colin27 volume, then a centred crop (BM4D on the full volume takes
minutes and GBs on 2 cores). Needs mricron-data; `pip install dipy bm4d` for those rows
(BM4D's licence forbids redistribution: it is never a dependency).
BM4D and NLM are given the true sigma times the mean g-factor (a generous oracle).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--sigma", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results/model_card.json")
    args = ap.parse_args()

    import nibabel as nib

    from noise2average import DenoiseConfig, denoise
    from noise2average.arrays.masking import bounding_box
    from noise2average.arrays.metrics import score
    from noise2average.arrays.simulate import SimulationConfig, simulate
    from noise2average.io.templates import colin27_paths

    ref_path, mask_path = colin27_paths()
    img = nib.load(str(ref_path))
    ref = np.asarray(img.dataobj, np.float32)
    mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    reps, sref, record = simulate(ref, mask, img.header.get_zooms()[:3],
                                  SimulationConfig(sigma=args.sigma, seed=args.seed))
    box = bounding_box(mask)
    c = [(s.start + s.stop) // 2 for s in box]
    sl = tuple(slice(x - args.crop // 2, x - args.crop // 2 + args.crop) for x in c)
    reps, sref, mask = [r[sl] for r in reps], sref[sl], mask[sl]
    avg = np.mean(reps, 0).astype(np.float32)
    sigma_eff = args.sigma * float(np.mean([r["gfactor_mean"] for r in record["repetitions"]]))
    sigma_avg = sigma_eff / np.sqrt(len(reps))

    rows: dict[str, dict] = {}

    def add(name, fn):
        t0 = time.perf_counter()
        try:
            out = fn()
        except ImportError as exc:
            print(f"skipping {name}: {exc}")
            return
        s = score(np.where(mask, out, 0), sref, mask)
        s["seconds"] = round(time.perf_counter() - t0, 1)
        rows[name] = s
        print(f"{name:28s} PSNR {s['psnr']:6.2f}  SSIM {s['ssim']:.4f}  sharp {s['sharpness']:.3f}  {s['seconds']:.0f}s", flush=True)

    add("noisy rep 1", lambda: reps[0])
    add("plain average", lambda: avg)

    def nlm():
        from dipy.denoise.nlmeans import nlmeans

        return nlmeans(avg, sigma=sigma_avg, mask=mask, patch_radius=1, block_radius=2, rician=True)

    def bm4d_avg():
        import bm4d

        return np.asarray(bm4d.bm4d(avg, sigma_avg), np.float32)

    add("DIPY nlmeans (average)", nlm)
    add("BM4D (average)", bm4d_avg)
    base = DenoiseConfig(threads=args.threads, **({"steps": args.steps} if args.steps else {}))
    add("pre-trained, no fine-tuning", lambda: denoise(reps, mask, base.replace(method="pretrained")).output)
    res = {}
    add("Noise2Average (2 iter)", lambda: res.setdefault("n2a", denoise(reps, mask, base)).output)
    add("Noise2Average iter 1", lambda: res["n2a"].iterations[0])
    out = {"case": f"Colin27 protocol v1 sigma {args.sigma}, 2 reps, centred {args.crop}^3 crop",
           "seed": args.seed, "config": base.to_dict(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
