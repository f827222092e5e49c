"""``n2a denoise``: the options of a denoising run."""

from __future__ import annotations

import argparse

from .common import BLOCK_HELP, add_runtime


def add(sub) -> None:
    from ..methods.registry import method_help

    d = sub.add_parser(
        "denoise", help="denoise co-registered repetitions of one subject",
        usage="n2a denoise REP [REP ...] -o OUTPUT [options]", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Denoise N >= 2 repetitions of one subject with Noise2Average (or a "
                    "baseline) into their\ndenoised average, with a JSON sidecar and a QC "
                    "report next to it.",
        epilog="examples:\n"
               "  n2a denoise run-1.nii.gz run-2.nii.gz -o t1w_n2a.nii.gz\n"
               "  n2a denoise runs_4d.nii.gz --mask brain.nii.gz -o t1w_n2a.nii.gz\n"
               "  n2a denoise ap.nii.gz pa.nii.gz --bvals dwi.bval --bvecs dwi.bvec -o dwi.nii.gz\n"
               "every option (also the research switches --align, --target, --first-target,\n"
               "--stopping, --holdout, --output-from, --sampling, --patch, --batch, --no-flip,\n"
               "--continue-weights, --preset), with the measurements behind the defaults: "
               "docs/usage.md")
    d.add_argument("reps", nargs="+", metavar="REP",
                   help="2 or more co-registered NIfTI repetitions, or one 4D file whose "
                        "volumes are the repetitions (or see --register)")
    io = d.add_argument_group("input and output")
    io.add_argument("-o", "--output", required=True, help="denoised average (NIfTI)")
    io.add_argument("--mask", help="brain mask (NIfTI); default: a head mask from the average")
    io.add_argument("--register", action="store_true",
                    help="first register repetitions 2..N rigidly to repetition 1 (for "
                         "repetitions not aligned yet; grids may differ)")
    io.add_argument("--outside", choices=["blend", "average", "zero"], default=None,
                    help="outside the mask: the plain average with the result faded into it "
                         "at the edge (blend, default), the plain average alone, or zero")
    io.add_argument("--no-report", action="store_true",
                    help="no QC report (default: OUTPUT's stem + _report.html)")
    io.add_argument("--save-reps", action="store_true", help="also write each denoised repetition")
    io.add_argument("--save-iterations", action="store_true",
                    help="also write each iteration's result")
    io.add_argument("--save-uncertainty", action="store_true",
                    help="also write the uncertainty map (SE of the denoised repetitions' mean)")
    io.add_argument("--save-noise-map", action="store_true",
                    help="also write the noise map (from the differences between repetitions)")
    io.add_argument("--checkpoint", help="checkpoint folder (default: OUTPUT's name + .ckpt)")
    io.add_argument("--resume", action="store_true", help="continue from the checkpoint folder")
    m = d.add_argument_group("method")
    m.add_argument("--method", default="n2a-aligned", help=method_help())
    m.add_argument("--init", default="pretrained",
                   help="pretrained (the shipped U-Net), pretrained-munet, scratch, or a "
                        ".safetensors PATH")
    m.add_argument("--reference", help="clean reference (only for --method supervised)")
    dw = d.add_argument_group("diffusion series (4D repetitions)")
    dw.add_argument("--bvals", nargs="+", metavar="BVALS",
                    help="FSL b-values (one file, or one per series)")
    dw.add_argument("--bvecs", nargs="+", metavar="BVECS",
                    help="FSL gradient directions (one file, or one per series)")
    dw.add_argument("--dwi-mode", choices=["volumes", "groups"], default=None,
                    help="learned methods: volumes (default), each volume on its own with one "
                         "3D network; groups, the diffusion network on b0 + DWI groups")
    dw.add_argument("--dwi-basis", choices=["auto", "directions", "components"], default=None,
                    help="with --dwi-mode volumes: denoise each shell's principal components "
                         "or its DWIs as acquired (directions); auto (default): components "
                         "where the repetitions have b=0 images of their own and the shell's "
                         "contrast between directions stands out of the noise")
    dw.add_argument("--group-size", type=int, default=None,
                    help="with --dwi-mode groups: channels per group, b0 + DWIs (default 7; "
                         "13 = b0 + 12)")
    ft = d.add_argument_group("fine-tuning")
    ft.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations (default 2)")
    ft.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration (default 200)")
    ft.add_argument("--lr", type=float, default=None, help="learning rate")
    ft.add_argument("--block", type=int, default=None, help=BLOCK_HELP)
    ft.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="any DenoiseConfig field, repeatable (e.g. --set first_target=others)")
    # research switches: they work, docs/usage.md describes them, the help leaves them out
    hidden = argparse.SUPPRESS
    d.add_argument("--patch", type=int, default=None, help=hidden)
    d.add_argument("--batch", type=int, default=None, help=hidden)
    d.add_argument("--preset", default=None, help=hidden)
    d.add_argument("--continue-weights", action="store_true", help=hidden)
    d.add_argument("--sampling", choices=["mask", "blocks"], default=None, help=hidden)
    d.add_argument("--no-flip", action="store_true", help=hidden)
    d.add_argument("--align", choices=["none", "register"], default=None, help=hidden)
    d.add_argument("--target", choices=["average", "others"], default=None, help=hidden)
    d.add_argument("--first-target", choices=["average", "others"], default=None, help=hidden)
    d.add_argument("--stopping", choices=["fixed", "cross"], default=None, help=hidden)
    d.add_argument("--holdout", type=float, default=None, help=hidden)
    d.add_argument("--output-from", choices=["denoised", "average"], default=None, help=hidden)
    add_runtime(d)
