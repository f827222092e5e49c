"""The ``n2a`` command line: thin handlers over the Python API, imports deferred so that
``n2a --help`` is instant."""

from __future__ import annotations

import argparse
import sys


def _add_runtime(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("runtime")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on GPUs and on CPUs with AMX/AVX512-BF16, else fp32")
    g.add_argument("--threads", type=int, default=None, help="CPU threads (default: the CPUs this process may use: affinity, cgroup quota, "
                        "or OMP_NUM_THREADS)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")


BLOCK_HELP = ("inference block edge in voxels (default 160: a 2.4 GB peak on a 1 mm brain; "
              "96: 1.1 GB, 1.4x slower)")


def _add_denoise(sub) -> None:
    from .methods.registry import method_help

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
    dw.add_argument("--group-size", type=int, default=None,
                    help="channels per group, b0 + DWIs (default 7; 13 = b0 + 12)")
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
    _add_runtime(d)


def _add_pretrain(sub) -> None:
    p = sub.add_parser("pretrain", help="supervised residual pre-training with simulated noise")
    p.add_argument("-o", "--output", required=True, help="model file (.safetensors)")
    p.add_argument("--images", nargs="*", default=None,
                   help="clean training images (default: MNI152 2009a T1 from nilearn)")
    p.add_argument("--masks", nargs="*", default=None, help="brain masks, one per image")
    p.add_argument("--data", choices=("template", "randomized"), default="template",
                   help="without --images: the MNI152 T1 as it is (template, default), or "
                        "domain-randomized brains from every source found (randomized)")
    p.add_argument("--extra-data", metavar="DIR",
                   help="--data randomized: folder with more sources "
                        "(scripts/get_pretrain_data.sh fills data/pretrain)")
    p.add_argument("--crop", type=int, default=72,
                   help="--data randomized: edge of each randomized cube (default 72)")
    p.add_argument("--multicoil", type=float, default=0.0,
                   help="probability of non-central chi (2-4 coils) noise instead of Rician")
    p.add_argument("--refresh", type=int, default=50,
                   help="steps between fresh noisy volumes (default 50)")
    p.add_argument("--pool", type=int, default=1,
                   help="noisy volumes each batch's patches are drawn from (default 1; 8 for "
                        "networks large enough to swing to one volume)")
    p.add_argument("--preset", default="cpu",
                   help="architecture: cpu (default), paper, tiny, unet, unet-tiny")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--sigma-range", type=float, nargs=2, default=(0.01, 0.12), metavar=("LO", "HI"))
    p.add_argument("--dwi", action="store_true",
                   help="pre-train the diffusion network (b0 + DWIs) on the Colin27 tensor phantom")
    p.add_argument("--group-size", type=int, default=7,
                   help="--dwi: channels per group, b0 + DWIs (default 7)")
    p.add_argument("--snr-range", type=float, nargs=2, default=(8.0, 40.0), metavar=("LO", "HI"),
                   help="--dwi: b0 SNR range (default 8 40)")
    p.add_argument("--checkpoint", help="checkpoint folder (default: OUTPUT + .ckpt)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--resume", action="store_true")
    _add_runtime(p)


def _add_simulate(sub) -> None:
    s = sub.add_parser("simulate", help="noisy repetitions of a clean reference (benchmark protocol v1)")
    s.add_argument("--reference", help="clean reference NIfTI (default: Colin27 ch2.nii.gz)")
    s.add_argument("--mask", help="brain mask NIfTI (default: Colin27 ch2bet.nii.gz > 0)")
    s.add_argument("--sigma", type=float, default=None,
                   help="noise level (1.0 = 99th pct in brain; default 0.05)")
    s.add_argument("--reps", type=int, default=2, help="number of repetitions (>= 2)")
    s.add_argument("--echo", action="store_true", help="repetition 2 is a later echo")
    s.add_argument("--crop", type=int, default=None,
                   help="keep a centred cube of this edge (after simulating the whole volume)")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--force", action="store_true")
    sd = s.add_argument_group("diffusion phantom (--dwi)")
    sd.add_argument("--dwi", action="store_true",
                    help="simulate the DWI phantom (MNI152 GM/WM/CSF tensor field) instead of T1w: "
                         "reference (clean 4D), mask, wm, rep-K, dwi.bval/.bvec, reference_FA...")
    sd.add_argument("--snr", type=float, default=20.0, help="b=0 SNR in white matter (default 20)")
    sd.add_argument("--dirs", type=int, default=32, help="b=1000 directions (default 32)")
    sd.add_argument("--b0s", type=int, default=2, help="b=0 volumes (default 2)")
    sd.add_argument("--bval", type=float, default=1000.0, help="b-value in s/mm^2 (default 1000)")
    sd.add_argument("--misalign", action="store_true",
                    help="repetitions after the first get a small residual rigid misalignment")
    sd.add_argument("--tissues", nargs=3, metavar=("GM", "WM", "CSF"),
                    help="tissue fraction maps to build the phantom from (default MNI152 2009a)")


def _add_dti_split(sub) -> None:
    ds = sub.add_parser("dti-split", help="one DTI series -> repetitions from disjoint direction "
                                          "subsets, synthesized on a common scheme")
    ds.add_argument("dwi", metavar="DWI", help="4D DWI series (NIfTI)")
    ds.add_argument("--bvals", required=True, help="FSL bvals file")
    ds.add_argument("--bvecs", required=True, help="FSL bvecs file")
    ds.add_argument("--mask", help="brain mask (default: fit every voxel)")
    ds.add_argument("-o", "--output", required=True,
                    help="output folder: rep-K.nii.gz (+ .json), dwi.bval, dwi.bvec")
    ds.add_argument("--dirs", type=int, choices=[6, 12], default=6,
                    help="DWIs per repetition on the common scheme (6 or 12; default 6)")
    ds.add_argument("--subsets", type=int, default=2, help="repetitions = subsets (default 2)")
    ds.add_argument("--subset-size", type=int, default=6,
                    help="directions per subset (default 6, the fewest that fit a tensor)")
    ds.add_argument("--shell", type=float, default=None,
                    help="b-value of the shell to use (default: the one nearest 1000)")
    ds.add_argument("--b0", choices=["mean", "split"], default="mean",
                    help="b=0 of every repetition: the mean of all b=0 volumes (default) or "
                         "disjoint groups of them")
    ds.add_argument("--method", default="WLS", choices=["WLS", "OLS", "NLLS"],
                    help="tensor fit (default WLS)")
    ds.add_argument("--quiet", action="store_true")
    ds.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_dti_metrics(sub) -> None:
    dm = sub.add_parser("dti-metrics", help="FA, MD, AD, RD and V1 of a DWI series (DIPY, WLS)")
    dm.add_argument("dwi", metavar="DWI", help="4D DWI series (NIfTI)")
    dm.add_argument("--bvals", required=True, help="FSL bvals file")
    dm.add_argument("--bvecs", required=True, help="FSL bvecs file")
    dm.add_argument("--mask", help="brain mask (default: a head mask of the mean b=0)")
    dm.add_argument("-o", "--output", required=True, help="output folder: FA, MD, AD, RD, V1 .nii.gz")
    dm.add_argument("--method", default="WLS", choices=["WLS", "OLS", "NLLS"],
                    help="tensor fit (default WLS)")
    dm.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_demo(sub) -> None:
    m = sub.add_parser("demo", help="simulate 2 noisy repetitions of the MNI152 template, denoise, score")
    m.add_argument("-o", "--output", default="demo-output", help="output folder (default demo-output)")
    m.add_argument("--steps", type=int, default=60,
                   help="optimizer steps per iteration (default 60: a demo, not a benchmark)")
    m.add_argument("--crop", type=int, default=64,
                   help="edge of the centred cube denoised (default 64; 0: whole)")
    _add_runtime(m)


def _add_benchmark(sub) -> None:
    from .config import BENCHMARK_METHODS

    b = sub.add_parser("benchmark", help="simulate a case (protocol v1), run methods, score them")
    b.add_argument("--reference", help="clean reference NIfTI (default: Colin27 ch2.nii.gz)")
    b.add_argument("--mask", help="brain mask NIfTI (default: Colin27 ch2bet.nii.gz > 0)")
    b.add_argument("--sigma", type=float, default=0.05)
    b.add_argument("--reps", type=int, default=2)
    b.add_argument("--echo", action="store_true")
    b.add_argument("--methods", nargs="+", default=None,
                   help=f"default: {' '.join(BENCHMARK_METHODS)}; a "
                        "method may carry settings, NAME:key=value,..., e.g. "
                        "n2a:align=register,iterations=4")
    b.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations scored")
    b.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    b.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate")
    b.add_argument("--init", default=None, help="initial model (default: the shipped one)")
    b.add_argument("--crop", type=int, default=None, help="score a centred cube of this edge")
    b.add_argument("--quick", action="store_true", help="--crop 64 and 100 steps: minutes, not hours")
    b.add_argument("-o", "--output", required=True, help="output folder")
    _add_runtime(b)


def _add_bids(sub) -> None:
    bp = sub.add_parser("bids", help="BIDS-App: denoise each participant's repeated acquisitions "
                                     "into BIDS derivatives (serially or on a Dask cluster)")
    bp.add_argument("bids_dir", metavar="BIDS_DIR", help="the BIDS dataset (only read)")
    bp.add_argument("output_dir", metavar="OUT_DIR",
                    help="derivatives folder, e.g. BIDS_DIR/derivatives/noise2average")
    bp.add_argument("analysis_level", choices=["participant"], help="participant (the only level)")
    bp.add_argument("--participant-label", "--participant_label", dest="participant_label",
                    nargs="+", metavar="LABEL", help="participants to run, with or without sub- "
                                                     "(default: all)")
    bp.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                    metavar="LABEL", help="sessions to run, with or without ses- (default: all)")
    par = bp.add_mutually_exclusive_group()
    par.add_argument("--workers", type=int, metavar="N",
                     help="run groups in parallel on a local Dask cluster of N processes")
    par.add_argument("--scheduler", metavar="ADDRESS",
                     help="send groups to a running Dask scheduler, e.g. tcp://host:8786")
    bp.add_argument("--skip-existing", action="store_true",
                    help="skip groups whose derivative exists (resume a cohort)")
    bp.add_argument("--resume", action="store_true",
                    help="continue interrupted groups from their checkpoints")
    bp.add_argument("--method", default="n2a-aligned",
                    help="n2a-aligned (default), n2a, n2n, pretrained, average, ...")
    bp.add_argument("--iterations", type=int, default=None, help="Noise2Average iterations (default 2)")
    bp.add_argument("--steps", type=int, default=None, help="optimizer steps per iteration")
    bp.add_argument("--lr", type=float, default=None, help="learning rate")
    bp.add_argument("--init", default="pretrained",
                    help="pretrained, pretrained-munet, scratch or a .safetensors PATH")
    bp.add_argument("--block", type=int, default=None, help=BLOCK_HELP)
    _add_runtime(bp)


def _add_register(sub) -> None:
    r = sub.add_parser("register", help="rigidly register repetitions 2..N to repetition 1")
    r.add_argument("reps", nargs="+", metavar="REP", help="2 or more NIfTI repetitions (any grids)")
    r.add_argument("-o", "--output", required=True,
                   help="output folder: rep-1.nii.gz, rep-K_registered.nii.gz on rep 1's grid, "
                        "rep-K_to_rep-1.txt (ITK/ANTs transform), JSON sidecars")
    r.add_argument("--mask", help="brain mask on rep 1's grid (default: a head mask of rep 1)")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--force", action="store_true", help="overwrite existing outputs")


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="PSNR, SSIM, NMAE, sharpness against a clean reference")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument("--reference", required=True)
    e.add_argument("--mask", required=True)
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _parser() -> argparse.ArgumentParser:
    from ._version import __version__

    ap = argparse.ArgumentParser(prog="n2a", description="Noise2Average denoising of MRI repetitions.")
    ap.add_argument("--version", action="version", version=f"noise2average {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_denoise(sub)
    _add_pretrain(sub)
    _add_simulate(sub)
    _add_dti_split(sub)
    _add_dti_metrics(sub)
    _add_demo(sub)
    _add_benchmark(sub)
    _add_bids(sub)
    _add_register(sub)
    _add_evaluate(sub)
    return ap


# every subcommand's handler, as "module:function" in this package, imported only when it runs
HANDLERS = {"denoise": "workflows:denoise_files", "pretrain": "workflows_pretrain:pretrain_files",
            "simulate": "workflows:simulate_files", "demo": "workflows:demo",
            "benchmark": "workflows:benchmark_files", "evaluate": "workflows:evaluate_files",
            "bids": "bids:run_app", "register": "workflows:register_files",
            "dti-split": "workflows_dwi:dti_split_files",
            "dti-metrics": "workflows_dwi:dti_metrics_files"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .errors import InputError

    try:
        from importlib import import_module

        module, handler = HANDLERS[args.command].split(":")
        rc = getattr(import_module(f".{module}", __package__), handler)(args)
    except InputError as exc:
        print(f"n2a {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"n2a {args.command}: interrupted", file=sys.stderr)
        return 130
    return rc if type(rc) is int else 0  # a handler may report partial failure (n2a bids: 1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
