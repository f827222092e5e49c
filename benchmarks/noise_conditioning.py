"""Does a noise-map input channel help the pre-trained U-Net? (issue 18, FFDNet-style
conditioning.)

Two continuations of the same pre-trained network, with the same data, steps and schedule:
``blind`` (one input channel, as shipped) and ``map`` (a second input channel holding the local
noise SD, estimated from two noisy draws as the pipeline estimates it from two repetitions;
its first-layer weights start at zero, so the continuation starts from the shipped network's
outputs). Then both are probed on a Colin27 crop with protocol-v1 noise (a g-factor map, so
the noise varies in space): repetition 1 alone and the average of the two repetitions, each
denoised by the network alone.

    python benchmarks/noise_conditioning.py train blind OUT_DIR [--steps 3000] [--init MODEL]
    python benchmarks/noise_conditioning.py train map OUT_DIR
    python benchmarks/noise_conditioning.py train map OUT_DIR --init MAP_MODEL --lr 6e-5
    python benchmarks/noise_conditioning.py train map OUT_DIR --init MAP_MODEL --registered 0.7 --average-input 0.5
    python benchmarks/noise_conditioning.py probe MODEL [MODEL ...] [--crop 64]

Training runs on one thread (``--threads``) and saves ``OUT_DIR/model.safetensors`` every 250
steps and at the end; ``train`` resumes from OUT_DIR's checkpoint when there is one. An
``--init`` that already takes the noise channel is continued as it is (a second stage at a
lower learning rate).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np


def with_noise_input(model):
    """A copy of the one-channel ``model`` with a second input channel whose first-layer
    weights are zero: the same outputs, until training gives the channel a use."""
    import torch

    from noise2average.nn.models import build_model

    config = replace(model.config, in_channels=2)
    wider = build_model(config)
    state = model.state_dict()
    head = [k for k, v in state.items() if v.ndim == 5 and v.shape[1] == 1][0]
    extra = torch.zeros_like(state[head])
    state[head] = torch.cat([state[head], extra], dim=1)
    wider.load_state_dict(state)
    return wider


def train(args) -> None:
    import torch

    from noise2average.io.checkpoint import load_fit, save_fit
    from noise2average.io.pretrain_sources import pretrain_sources
    from noise2average.io.weights import load_model
    from noise2average.nn.device import resolve_policy
    from noise2average.pretrain import PretrainConfig, pretrain

    out = Path(args.out)
    policy = resolve_policy("cpu", "auto", args.threads)
    torch.manual_seed(args.seed)
    cfg = PretrainConfig(steps=args.steps, lr=args.lr, warmup=100, batch_size=2, patch_size=32,
                         crop=72, refresh=30, pool=8, multicoil=0.0, sigma_min=0.01,
                         sigma_max=0.12, seed=args.seed, noise_channel=args.variant == "map",
                         registered=args.registered, average_input=args.average_input)
    loaded = load_fit(out / "ckpt")
    if loaded is not None:
        model, state, _ = loaded
    else:
        model, state = load_model(args.init)[0], None
        if args.variant == "map" and model.config.in_channels == 1:
            model = with_noise_input(model)
    meta = {"kind": "t1w", "pretrain": cfg.to_dict(), "init": str(args.init),
            "variant": args.variant}

    def on_step(s):
        if s.step % 250 == 0 or s.step == cfg.steps:
            save_fit(out / "ckpt", model, s, meta)
            print(json.dumps({"step": s.step, "loss100": float(np.mean(s.losses[-100:])),
                              "seconds": round(s.seconds)}), flush=True)

    state = pretrain(model, None, None, cfg, policy, state=state, on_step=on_step,
                     sources=pretrain_sources(args.extra_data))
    from noise2average.io.weights import save_model

    save_model(out / "model.safetensors", model, {**meta, "steps_done": state.step})


def probe_cases(crop: int, sigmas) -> dict:
    """Colin27 crops with two protocol-v1 repetitions per noise level, without motion (so
    that their plain average is the registered one)."""
    import nibabel as nib

    from noise2average.arrays.masking import centred_cube
    from noise2average.arrays.simulate import SimulationConfig, simulate
    from noise2average.io.templates import colin27_paths

    ref_path, mask_path = colin27_paths()
    image = np.asarray(nib.load(str(ref_path)).dataobj, np.float32)
    mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    sl = centred_cube(mask, crop)
    image, mask = image[sl], mask[sl]
    cases = {}
    for sigma in sigmas:
        reps, ref, _ = simulate(image, mask, (1.0, 1.0, 1.0),
                                SimulationConfig(sigma=sigma, reps=2, seed=0, max_rotation_deg=0.0,
                                                 max_translation_mm=0.0, reg_error_voxel=0.0,
                                                 reg_error_deg=0.0))
        cases[sigma] = (reps, ref, mask)
    return cases


def denoise(model, image: np.ndarray, sd: np.ndarray, mask: np.ndarray, policy) -> np.ndarray:
    """The network alone on ``image`` (with the left-right flip), given the noise SD map ``sd``
    as a second channel when the model takes one."""
    from noise2average.arrays.channels import with_noise_channel
    from noise2average.arrays.normalize import Norm
    from noise2average.nn.engine import denoise_volume

    norm = Norm.fit(image, mask)
    z = norm.forward(image)[None]
    if model.config.in_channels == 2:
        z = with_noise_channel(z, sd, norm.std)
    out = denoise_volume(model, z, mask, policy, model.config.receptive_radius, 160, 0)
    return norm.inverse(out[0])


def probe(args) -> None:
    from noise2average.arrays.metrics import psnr
    from noise2average.arrays.noise import noise_map
    from noise2average.io.weights import load_model
    from noise2average.nn.device import resolve_policy

    policy = resolve_policy("cpu", "auto", args.threads)
    cases = probe_cases(args.crop, args.sigmas)
    for path in args.models:
        model = policy.prepare(load_model(path)[0])
        for sigma, (reps, ref, mask) in cases.items():
            sd = noise_map(reps)
            row = {"model": path, "sigma": sigma}
            for name, image, level in (("rep1", reps[0], sd),
                                       ("average", 0.5 * (reps[0] + reps[1]), sd / np.sqrt(2))):
                out = denoise(model, image, level, mask, policy)
                row[name] = round(psnr(out, ref, mask), 2)
                row[name + "_noisy"] = round(psnr(image, ref, mask), 2)
            print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("variant", choices=("blind", "map"))
    t.add_argument("out")
    t.add_argument("--init", default="src/noise2average/weights/t1w-unet.safetensors")
    t.add_argument("--extra-data", default="data/pretrain")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--registered", type=float, default=0.0,
                   help="probability of a registered (resampled) second draw")
    t.add_argument("--average-input", type=float, default=0.0,
                   help="probability that the input is the draws' average")
    p = sub.add_parser("probe")
    p.add_argument("models", nargs="+")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--sigmas", type=float, nargs="+", default=(0.03, 0.05, 0.08))
    p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    train(args) if args.cmd == "train" else probe(args)


if __name__ == "__main__":
    main()
