"""Short pre-training runs side by side: the probe's PSNR and sharpness (rep 1 alone, Colin27
64^3 crop, sigma 0.05, no fine-tuning) every ``--every`` steps, for one data / network /
optimizer setting per call.

    python benchmarks/pretrain_ablation.py --data randomized --extra-data data/pretrain \
        --preset unet --lr 5e-4 --steps 450 --pool 8 --refresh 25
    python benchmarks/pretrain_ablation.py --data template --preset cpu --lr 5e-4 --steps 450

A few hundred steps tell a setting that swings or blurs from one that learns; they do not
tell the converged quality.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=("template", "randomized"), default="randomized")
    ap.add_argument("--extra-data", default=None)
    ap.add_argument("--preset", default="unet")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=450)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--pool", type=int, default=8)
    ap.add_argument("--refresh", type=int, default=25)
    ap.add_argument("--multicoil", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from noise2average.io.pretrain_sources import pretrain_sources
    from noise2average.io.templates import mni152
    from noise2average.nn.device import resolve_policy
    from noise2average.nn.models import build_model
    from noise2average.pretrain import PretrainConfig, pretrain
    from pretrain_probe import colin27_case, probe  # benchmarks/ is this script's folder

    policy = resolve_policy("cpu", "auto", args.threads)
    case = colin27_case(64, 0.05)

    torch.manual_seed(0)
    model = policy.prepare(build_model(args.preset))
    cfg = PretrainConfig(steps=args.steps, lr=args.lr, warmup=50, batch_size=2, patch_size=32,
                         sigma_min=0.01, sigma_max=0.15, clip_grad=args.clip, pool=args.pool,
                         refresh=args.refresh, multicoil=args.multicoil)
    t1, t1_mask, _ = mni152()
    sources = pretrain_sources(args.extra_data) if args.data == "randomized" else None
    rows = []

    def on_step(state) -> None:
        if state.step % args.every == 0:
            scores = probe(model, case, policy)
            model.train()  # the probe put it in eval mode
            rows.append({"step": state.step, "psnr": scores["psnr"],
                         "sharpness": scores["sharpness"]})

    t0 = time.perf_counter()
    pretrain(model, [t1], [t1_mask], cfg, policy, sources=sources, on_step=on_step)
    print(json.dumps({"settings": vars(args), "probe": rows,
                      "seconds": round(time.perf_counter() - t0)}))


if __name__ == "__main__":
    main()
