"""File-level workflows behind the CLI: read and check inputs, run, write outputs + sidecars."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .errors import InputError


def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, leave=False, dynamic_ncols=True)


def _check_output(path: Path, inputs: list[Path], force: bool) -> None:
    resolved = path.resolve()
    for p in inputs:
        if p.resolve() == resolved:
            raise InputError(f"output {path} is also an input; choose another name")
    if path.exists() and not force:
        raise InputError(f"output {path} exists; pass --force to overwrite")


def pretrain_files(args: argparse.Namespace) -> None:
    import torch

    from .io import nifti
    from .io.checkpoint import load_fit, save_fit
    from .io.templates import mni152
    from .io.weights import save_model
    from .nn.device import resolve_policy
    from .nn.models import build_model
    from .pretrain import PretrainConfig, pretrain
    from .provenance import environment

    out = Path(args.output)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt")
    images = [Path(p) for p in args.images or []]
    _check_output(out, images, args.force)
    if ckpt.exists() and not args.resume and not args.force:
        raise InputError(f"checkpoint {ckpt} exists; pass --resume to continue or --force")
    if images:
        if not args.masks or len(args.masks) != len(images):
            raise InputError("--masks must give one brain mask per --images file")
        vols, masks = [], []
        for ip, mp in zip(images, args.masks):
            vol, _ = nifti.load_volume(ip)
            mask = nifti.load_mask(mp, vol.shape)
            vols.append(vol / np.percentile(vol[mask], 99))
            masks.append(mask)
        data_desc = [str(p) for p in images]
    else:
        t1, mask, _ = mni152()
        vols, masks, data_desc = [t1], [mask], ["MNI152 2009a sym T1 (nilearn wheel)"]
    cfg = PretrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch,
                         patch_size=args.patch, sigma_min=args.sigma_range[0],
                         sigma_max=args.sigma_range[1], seed=args.seed)
    policy = resolve_policy(args.device, args.precision, args.threads)
    torch.manual_seed(args.seed)
    state = None
    model = build_model(args.preset)
    if args.resume:
        loaded = load_fit(ckpt)
        if loaded is not None:
            model, state, _ = loaded
    meta = {"kind": "t1w", "pretrain": cfg.to_dict(), "data": data_desc,
            "preset": args.preset, "noise": "Rician, g-factor maps, correlated, bias, gamma"}
    bar = _progress(cfg.steps, "pretrain", args.quiet)
    if state is not None:
        bar.update(state.step)

    def on_step(s):
        if s.step % args.checkpoint_every == 0 or s.step == cfg.steps:
            save_fit(ckpt, model, s, meta)

    def progress(n, loss):
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.4f}")

    state = pretrain(model, vols, masks, cfg, policy, state=state, on_step=on_step,
                     progress=progress)
    bar.close()
    meta.update({"steps_done": state.step, "seconds": round(state.seconds, 1),
                 "final_loss_mean100": float(np.mean(state.losses[-100:])),
                 "environment": environment(policy)})
    save_model(out, model, meta)
    from .io.atomic import write_text

    write_text(out.with_suffix(".losses.json"), json.dumps(state.losses))
