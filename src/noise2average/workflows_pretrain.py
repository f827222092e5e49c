"""File-level pre-training behind ``n2a pretrain`` (T1w) and ``n2a pretrain --dwi``: check the
outputs, resume from a checkpoint folder, checkpoint while training, write the weights with
their provenance and the loss curve."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .errors import InputError
from .io.paths import check_output
from .progress import progress_bar


def pretrain_files(args: argparse.Namespace) -> None:
    """``n2a pretrain``: the T1w network on MNI152, given images or randomized brains."""
    if getattr(args, "dwi", False):
        return pretrain_dwi_files(args)
    from .io import nifti
    from .io.templates import mni152
    from .nn.models import build_model
    from .pretrain import PretrainConfig, pretrain

    images = [Path(p) for p in args.images or []]
    out, ckpt = pretrain_outputs(args, images)
    sources = None
    if images and args.data == "randomized":
        raise InputError("--data randomized draws from its own sources; leave out --images")
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
    elif args.data == "randomized":
        from .arrays.synth import shapes_source
        from .io.pretrain_sources import pretrain_sources

        sources = pretrain_sources(args.extra_data)
        if args.shapes > 0:
            sources.append(shapes_source(args.shapes))
        vols, masks = None, None
        data_desc = [f"{s.name} (weight {s.weight})" for s in sources]
    else:
        t1, mask, _ = mni152()
        vols, masks, data_desc = [t1], [mask], ["MNI152 2009a sym T1 (nilearn wheel)"]
    if args.extra_data and sources is None:
        raise InputError("--extra-data needs --data randomized")
    if args.shapes and sources is None:
        raise InputError("--shapes needs --data randomized")
    if args.shapes < 0:
        raise InputError(f"--shapes is a draw weight, at least 0; got {args.shapes}")
    cfg = PretrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch,
                         patch_size=args.patch, sigma_min=args.sigma_range[0],
                         sigma_max=args.sigma_range[1], seed=args.seed, crop=args.crop,
                         multicoil=args.multicoil, refresh=args.refresh,
                         pool=args.pool, workers=args.workers, minutes=args.minutes)
    meta = {"kind": "t1w", "pretrain": cfg.to_dict(), "data": data_desc,
            "preset": args.preset, "noise": "Rician or non-central chi, g-factor maps, "
                                             "correlated, bias, gamma"}
    initial = None
    if args.init:
        initial, initial_meta = initial_weights(args.init)
        meta.update({"init": args.init, "preset": initial_meta.get("preset", "from --init")})
    run_pretraining(args, out, ckpt,
                    lambda: initial if initial is not None else build_model(args.preset),
                    meta, cfg.steps, "pretrain",
                    lambda model, policy, **kw: pretrain(model, vols, masks, cfg, policy,
                                                         sources=sources, **kw))


def initial_weights(init: str):
    """The network that ``n2a pretrain --init`` starts from, and its file's metadata: the
    shipped T1w U-Net (``pretrained``) or a model file's weights and architecture."""
    from .io.weights import load_model, load_packaged

    if init != "pretrained" and not Path(init).is_file():
        raise InputError(f"--init {init}: no such model file")
    return load_packaged("t1w") if init == "pretrained" else load_model(init)


def pretrain_outputs(args: argparse.Namespace, inputs: list[Path]) -> tuple[Path, Path]:
    """The weights file and its checkpoint folder, checked before any work starts (with the
    options that a typo would otherwise turn into a silent default)."""
    if args.workers < 0:
        raise InputError(f"--workers must be >= 0, got {args.workers}")
    if args.minutes < 0:
        raise InputError(f"--minutes must be >= 0, got {args.minutes}")
    out = Path(args.output)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_name(out.name + ".ckpt")
    check_output(out, inputs, args.force)
    if ckpt.exists() and not args.resume and not args.force:
        raise InputError(f"checkpoint {ckpt} exists; pass --resume to continue or --force")
    return out, ckpt


def run_pretraining(args: argparse.Namespace, out: Path, ckpt: Path, new_model, meta: dict,
                    steps: int, label: str, train) -> None:
    """The resumable pre-training loop shared by T1w and diffusion: resume from ``ckpt`` with
    ``--resume``, checkpoint every ``--checkpoint-every`` steps, then write the weights (with
    ``meta``) and the loss curve. ``new_model()`` builds the untrained network (after the seed
    is set, so its initial weights follow ``--seed``); ``train(model, policy, state=, on_step=,
    progress=)`` runs the optimizer and returns its final state."""
    import torch

    from .io.atomic import write_text
    from .io.checkpoint import load_fit, save_fit
    from .io.weights import save_model
    from .nn.device import resolve_policy
    from .provenance import environment

    policy = resolve_policy(args.device, args.precision, args.threads)
    torch.manual_seed(args.seed)
    model, state = new_model(), None
    if args.resume:
        loaded = load_fit(ckpt)
        if loaded is not None:
            model, state, _ = loaded
    bar = progress_bar(steps, label, args.quiet)
    if state is not None:
        bar.update(state.step)

    def on_step(s):
        if s.step % args.checkpoint_every == 0 or s.step == steps:
            save_fit(ckpt, model, s, meta)

    def progress(n, loss):
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.4f}")

    state = train(model, policy, state=state, on_step=on_step, progress=progress)
    bar.close()
    meta.update({"steps_done": state.step, "seconds": round(state.seconds, 1),
                 "final_loss_mean100": float(np.mean(state.losses[-100:])),
                 "environment": environment(policy)})
    # a run that stops on its time budget ends between checkpoints: keep its last step
    save_fit(ckpt, model, state, meta)
    save_model(out, model, meta)
    write_text(out.with_suffix(".losses.json"), json.dumps(state.losses))


def pretrain_dwi_files(args: argparse.Namespace) -> None:
    """``n2a pretrain --dwi``: the diffusion network on the Colin27 tensor-field phantom."""
    from .nn.models import DIFFUSION_PRESETS, build_model, with_channels
    from .pretrain_dwi import DwiPretrainConfig, colin27_fields, pretrain_dwi

    out, ckpt = pretrain_outputs(args, [])
    if args.images:
        raise InputError("--dwi pre-trains on the Colin27 tensor phantom; --images is for T1w")
    if args.init:
        raise InputError("--init continues a T1w network; leave it out with --dwi")
    preset = {"cpu": "dti-cpu", "paper": "dti-paper", "tiny": "dti-tiny"}.get(args.preset,
                                                                              args.preset)
    if preset not in DIFFUSION_PRESETS:
        raise InputError(f"--preset {args.preset}: not a diffusion network "
                         f"({', '.join(DIFFUSION_PRESETS)})")
    k = args.group_size
    if k < 2:
        raise InputError(f"--group-size must be >= 2, got {k}")
    lo, hi = args.snr_range
    if not 0 < lo <= hi:
        raise InputError(f"--snr-range must be 0 < LO <= HI, got {lo} {hi}")
    cfg = DwiPretrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch,
                            patch_size=args.patch, snr_min=lo, snr_max=hi, seed=args.seed,
                            workers=args.workers, minutes=args.minutes)
    fields = colin27_fields(seed=args.seed)
    meta = {"kind": "dwi", "pretrain": cfg.to_dict(), "preset": preset, "group_size": k,
            "data": "Colin27 (mricron-data ch2.nii.gz, ch2bet.nii.gz) tissue classes -> "
                    "make_phantom tensor fields at 2.0 and 1.5 mm",
            "noise": "Rician, b0 SNR log-uniform, mean of 1-6 b0s, random directions, b, "
                     "diffusivity and S0 contrast"}
    run_pretraining(args, out, ckpt, lambda: build_model(with_channels(preset, k)), meta, cfg.steps,
                    "pretrain dwi",
                    lambda model, policy, **kw: pretrain_dwi(model, fields, cfg, policy, **kw))
