"""The ``n2a`` command line: thin handlers over the Python API, imports deferred so that
``n2a --help`` is instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _add_runtime(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on GPUs and on CPUs with AMX/AVX512-BF16, else fp32")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="n2a", description="Noise2Average denoising of MRI repetitions.")
    ap.add_argument("--version", action="version", version=f"noise2average {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("denoise", help="denoise co-registered repetitions of one subject")
    d.add_argument("reps", nargs="+", metavar="REP", help="2 or more co-registered NIfTI repetitions")
    d.add_argument("-o", "--output", required=True, help="denoised average (NIfTI)")
    d.add_argument("--mask", help="brain mask (NIfTI); default: a head mask from the average")
    d.add_argument("--method", default="n2a",
                   help="n2a (default), n2n, supervised, pretrained; conventional methods on the "
                        "average: average, bm4d, aonlm, nlmeans")
    d.add_argument("--reference", help="clean reference (only for --method supervised)")
    d.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations (default 2)")
    d.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    d.add_argument("--lr", type=float, default=None, help="learning rate")
    d.add_argument("--patch", type=int, default=None, help="training patch edge (voxels)")
    d.add_argument("--batch", type=int, default=None, help="patches per optimizer step")
    d.add_argument("--init", default="pretrained",
                   help="pretrained (the shipped model), scratch, or a .safetensors PATH")
    d.add_argument("--preset", default=None, help="architecture for --init scratch: cpu, paper, tiny")
    d.add_argument("--continue-weights", action="store_true",
                   help="start each iteration from the previous one's weights (default: restart "
                        "from the initial weights, as the reference code does)")
    d.add_argument("--sampling", choices=["mask", "blocks"], default=None,
                   help="training patches centred at random in the mask (default) or the "
                        "reference code's overlapping blocks of the brain bounding box")
    d.add_argument("--block", type=int, default=None, help="inference block edge (voxels)")
    d.add_argument("--no-flip", action="store_true", help="no left-right flip augmentation/TTA")
    d.add_argument("--outside", choices=["zero", "average"], default=None,
                   help="voxels outside the mask: zero (default, as the paper) or the plain average")
    d.add_argument("--save-reps", action="store_true", help="also write each denoised repetition")
    d.add_argument("--save-iterations", action="store_true", help="also write each iteration's result")
    d.add_argument("--save-noise-map", action="store_true",
                   help="also write the noise map (sigma from the differences between repetitions)")
    d.add_argument("--checkpoint", help="checkpoint folder (default: OUTPUT's name + .ckpt)")
    d.add_argument("--resume", action="store_true", help="continue from the checkpoint folder")
    _add_runtime(d)

    p = sub.add_parser("pretrain", help="supervised residual pre-training with simulated noise")
    p.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    p.add_argument("--images", nargs="*", default=None,
                   help="clean training images (default: MNI152 2009a T1 from nilearn)")
    p.add_argument("--masks", nargs="*", default=None, help="brain masks, one per image")
    p.add_argument("--preset", default="cpu", help="architecture: cpu (default), paper, tiny")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--sigma-range", type=float, nargs=2, default=(0.01, 0.12), metavar=("LO", "HI"))
    p.add_argument("--checkpoint", help="checkpoint folder (default: OUTPUT + .ckpt)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true")
    _add_runtime(p)

    s = sub.add_parser("simulate", help="noisy repetitions of a clean reference (benchmark protocol v1)")
    s.add_argument("--reference", help="clean reference NIfTI (default: Colin27 ch2.nii.gz)")
    s.add_argument("--mask", help="brain mask NIfTI (default: Colin27 ch2bet.nii.gz > 0)")
    s.add_argument("--sigma", type=float, default=0.05, help="noise level (1.0 = 99th pct in brain)")
    s.add_argument("--reps", type=int, default=2, help="number of repetitions (>= 2)")
    s.add_argument("--echo", action="store_true", help="repetition 2 is a later echo")
    s.add_argument("--crop", type=int, default=None,
                   help="keep a centred cube of this edge (after simulating the whole volume)")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true")

    m = sub.add_parser("demo", help="simulate 2 noisy repetitions of the MNI152 template, denoise, score")
    m.add_argument("-o", "--output", default="demo-output", help="output folder (default demo-output)")
    m.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    m.add_argument("--crop", type=int, default=112, help="edge of the centred cube denoised (0: whole)")
    _add_runtime(m)

    b = sub.add_parser("benchmark", help="simulate a case (protocol v1), run methods, score them")
    b.add_argument("--reference", help="clean reference NIfTI (default: Colin27 ch2.nii.gz)")
    b.add_argument("--mask", help="brain mask NIfTI (default: Colin27 ch2bet.nii.gz > 0)")
    b.add_argument("--sigma", type=float, default=0.05)
    b.add_argument("--reps", type=int, default=2)
    b.add_argument("--echo", action="store_true")
    b.add_argument("--methods", nargs="+", default=None,
                   help="default: average nlmeans aonlm bm4d pretrained n2n n2a supervised")
    b.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations scored")
    b.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    b.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    b.add_argument("--init", default=None, help="initial model (default: the shipped one)")
    b.add_argument("--crop", type=int, default=None, help="score a centred cube of this edge")
    b.add_argument("--quick", action="store_true", help="--crop 64 and 100 steps: minutes, not hours")
    b.add_argument("-o", "--output", required=True, help="output folder")
    _add_runtime(b)

    e = sub.add_parser("evaluate", help="PSNR, SSIM, NMAE, sharpness against a clean reference")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument("--reference", required=True)
    e.add_argument("--mask", required=True)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return ap


HANDLERS = {"denoise": "denoise_files", "pretrain": "pretrain_files", "simulate": "simulate_files",
            "demo": "demo", "benchmark": "benchmark_files", "evaluate": "evaluate_files"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import InputError

    try:
        # every subcommand has one handler in .workflows, imported only when it runs
        from . import workflows

        getattr(workflows, HANDLERS[args.command])(args)
    except InputError as exc:
        print(f"n2a {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"n2a {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
