"""File-level workflows behind the CLI: read and check inputs, run, write outputs + sidecars."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .io.paths import check_output, lr_axis, nifti_ext, nifti_stem
from .progress import TimeLeft


def planned_outputs(out: Path, n_reps: int, n_iter: int, save_reps: bool, save_iterations: bool,
                    save_noise_map: bool, report: bool = True,
                    save_uncertainty: bool = False) -> dict[str, Path]:
    """Every file a denoise run will write, by role (sidecars not included)."""
    folder, stem = nifti_stem(out)
    ext = nifti_ext(out)
    files = {"output": out}
    if save_reps:
        for k in range(1, n_reps + 1):
            files[f"rep-{k}"] = folder / f"{stem}_rep-{k}{ext}"
    if save_iterations:
        for i in range(1, n_iter + 1):
            files[f"iter-{i}"] = folder / f"{stem}_iter-{i}{ext}"
    if save_noise_map:
        files["noise-map"] = folder / f"{stem}_noisemap{ext}"
    if save_uncertainty:
        files["uncertainty"] = folder / f"{stem}_uncertainty{ext}"
    if report:
        files["report"] = folder / f"{stem}_report.html"
    return files


def read_repetitions(paths: list[Path], mask_path: Path | None, same_grid: bool = True):
    """Validated repetitions, mask (or None) and the first image (the output geometry).
    ``same_grid=False`` lets the repetitions' grids differ (they are registered afterwards)."""
    from .io import nifti

    arrays, imgs = nifti.load_repetitions(paths, same_grid=same_grid)
    mask = nifti.load_mask(mask_path, arrays[0].shape, imgs[0].affine) if mask_path else None
    return arrays, mask, imgs[0]


def _model_identity(config) -> dict:
    """Which weights a learned run started from, with their SHA-256."""
    from .io.weights import packaged_path, sha256

    if config.init == "scratch":
        return {"init": "scratch", "preset": config.preset}
    from .config import PACKAGED_INITS

    path = (packaged_path(PACKAGED_INITS[config.init]) if config.init in PACKAGED_INITS
            else Path(config.init))
    return {"init": config.init, "file": path.name, "sha256": sha256(path)}


def config_changes_from_args(args: argparse.Namespace) -> dict:
    """DenoiseConfig fields that ``n2a denoise``'s options set (the rest keep their
    defaults; :func:`noise2average.config.changes_from_options`)."""
    from .config import changes_from_options

    if args.preset is not None and args.init == "pretrained":
        raise InputError("--preset applies to --init scratch; the pretrained model has its own "
                         "architecture")
    return changes_from_options(vars(args))


def denoise_files(args: argparse.Namespace) -> None:
    """``n2a denoise``."""
    run_denoise(args.reps, args.output, mask=args.mask, reference=args.reference,
                save_reps=args.save_reps, save_iterations=args.save_iterations,
                save_noise_map=args.save_noise_map, checkpoint=args.checkpoint,
                save_uncertainty=getattr(args, "save_uncertainty", False),
                resume=args.resume, force=args.force, quiet=args.quiet,
                register=getattr(args, "register", False),
                report=not getattr(args, "no_report", False),
                bvals=getattr(args, "bvals", None), bvecs=getattr(args, "bvecs", None),
                group_size=getattr(args, "group_size", None) or 7,
                **config_changes_from_args(args))


def run_denoise(reps, output, mask=None, *, reference=None, save_reps: bool = False,
                save_iterations: bool = False, save_noise_map: bool = False, checkpoint=None,
                save_uncertainty: bool = False,
                resume: bool = False, force: bool = False, quiet: bool = True,
                report: bool = True, register: bool = False, bvals=None, bvecs=None,
                group_size: int = 7, **config_changes):
    """Denoise NIfTI repetitions into ``output``: check every input and output first, run,
    then write each output atomically with a JSON sidecar. Returns the DenoiseResult.

    ``config_changes`` are :class:`~noise2average.config.DenoiseConfig` fields; the
    left-right axis is read from the first repetition's affine unless given. With ``bvals``
    and ``bvecs`` (one file each, or one per series) the repetitions are 4D diffusion series,
    denoised in groups of ``group_size`` channels by
    :func:`noise2average.workflows_dwi.run_denoise_dwi` (which returns a DwiResult).
    """
    if bvals is not None or bvecs is not None:
        from .workflows_dwi import run_denoise_dwi

        if save_iterations or register:
            raise InputError("--save-iterations and --register are not available for "
                             "diffusion series")
        return run_denoise_dwi(reps, output, bvals, bvecs, mask, group_size=group_size,
                               reference=reference, save_reps=save_reps,
                               save_noise_map=save_noise_map, checkpoint=checkpoint,
                               resume=resume, force=force, quiet=quiet, report=report,
                               **config_changes)
    from .config import LEARNED_METHODS, DenoiseConfig
    from .io import nifti
    from .io.checkpoint_runs import RunCheckpoint
    from .pipeline import denoise
    from .provenance import file_sha256

    t_start = time.perf_counter()
    out = Path(output)
    reps_paths = [Path(p) for p in reps]
    mask_path = Path(mask) if mask else None
    inputs = reps_paths + ([mask_path] if mask_path else [])
    arrays, mask_arr, like = read_repetitions(reps_paths, mask_path, same_grid=not register)
    config_changes.setdefault("lr_axis", lr_axis(like.affine))
    config_changes.setdefault("voxel_size", tuple(float(z) for z in like.header.get_zooms()[:3]))
    config = DenoiseConfig(**config_changes)
    ref_arr = (nifti.load_reference(reference, like, reps_paths[0], arrays[0].shape)
               if config.method == "supervised" else None)
    if ref_arr is not None:
        inputs.append(Path(reference))
    if (config.init not in ("pretrained", "pretrained-munet", "scratch")
            and not Path(config.init).is_file()):
        raise InputError(f"--init {config.init}: no such model file")
    if save_reps and config.method not in LEARNED_METHODS:
        raise InputError(f"--save-reps: method {config.method!r} denoises the average only")
    n_iter = config.iterations if config.strategy == "n2a" else 1
    if save_uncertainty and config.method not in LEARNED_METHODS:
        raise InputError(f"--save-uncertainty: method {config.method!r} has no denoised "
                         "repetitions to compare")
    files = planned_outputs(out, len(arrays), n_iter, save_reps, save_iterations, save_noise_map,
                            report, save_uncertainty)
    for f in files.values():
        check_output(f, inputs, force)
    ckpt_dir = Path(checkpoint) if checkpoint else out.with_name(nifti_stem(out)[1] + ".ckpt")
    ckpt = RunCheckpoint(ckpt_dir, config, [file_sha256(p) for p in reps_paths])
    state = _open_checkpoint(ckpt, ckpt_dir, resume, force, quiet)
    registration = None
    if register:  # rigid, in world space, onto rep 1's grid (see noise2average.coregister)
        from .coregister import register_repetitions

        # one 4D file: its volumes share the file's affine
        affines = [like.affine] + [nifti.load_image(p).affine for p in reps_paths[1:]] \
            if len(reps_paths) > 1 else [like.affine] * len(arrays)
        arrays, registration = register_repetitions(arrays, affines, mask_arr, quiet=quiet,
                                                    names=[str(p) for p in reps_paths])
    clock = _time_left(config, arrays[0].ndim, "n2a denoise")
    result = denoise(arrays, mask_arr, config, reference=ref_arr, resume=state,
                     on_iteration=ckpt.save if config.method in LEARNED_METHODS else None,
                     progress=None if quiet else clock.progress,
                     all_iterations=save_iterations)
    record = _run_record(config, inputs, result, mask_arr is not None, registration, t_start)
    record["snr_estimate"] = _snr_estimate(arrays, result, config)
    record["warnings"] = _run_warnings(arrays, result, config, record["snr_estimate"],
                                       automatic_mask=mask_arr is None)
    if "report" in files:  # first: a failure here leaves the checkpoint, so --resume works
        _write_report(files["report"], arrays, result, like, record, out)
    _write_volumes(files, result, record, like, ckpt, n_iter)
    ckpt.remove()  # the outputs are complete: the checkpoint has served
    if not quiet:
        print(run_summary(out, record, result.mask, files.get("report")), file=sys.stderr)
    return result


def _time_left(config, ndim: int, label: str) -> TimeLeft:
    """The run's clock: its fine-tuning steps and, where the output pass is tuned on the
    average (3D repetitions, ``n2a-aligned``), the tuning's. An upper bound: a network with
    a noise-map channel skips the tuning."""
    from .config import LEARNED_METHODS
    from .nn.device import resolve_policy

    if config.method not in LEARNED_METHODS:
        return TimeLeft(0, label)
    steps = config.steps * (config.iterations if config.strategy == "n2a" else 1)
    if config.tunes_output(ndim):
        hardware = resolve_policy(config.device, config.precision, config.threads).hardware
        steps += config.tuning_steps(hardware)
    return TimeLeft(steps, label)


def _run_record(config, inputs: list[Path], result, mask_given: bool, registration,
                t_start: float) -> dict:
    """The provenance of a run, shared by its sidecars (the losses shortened to first/last)."""
    from .config import LEARNED_METHODS
    from .provenance import environment, file_sha256

    return {
        "Description": f"noise2average {config.method} denoising",
        "config": config.to_dict(),
        "inputs": [{"path": str(p), "sha256": file_sha256(p)} for p in inputs],
        "environment": environment(),
        "compute": result.compute,
        "model": _model_identity(config) if config.method in LEARNED_METHODS else None,
        "mask": "given" if mask_given else "automatic head mask of the average",
        "registration": registration,
        "noise_sigma_estimate": result.sigma,
        "selected_iteration": result.selected_iteration,
        "output_from": result.output_from,
        "history": [{k: v for k, v in h.items() if k != "losses"} |
                    ({"loss_first": h["losses"][0], "loss_last": h["losses"][-1]}
                     if h.get("losses") else {}) for h in result.history],
        "wall_seconds": round(time.perf_counter() - t_start, 2),
    }

def _open_checkpoint(ckpt, ckpt_dir: Path, resume: bool, force: bool, quiet: bool):
    """The state to resume from (None: start afresh). A checkpoint left by an interrupted run
    needs ``--resume`` or ``--force``; ``--resume`` without one says so and starts afresh."""
    from .io.checkpoint_runs import claim_checkpoint

    claim_checkpoint(ckpt, resume, force)
    state = ckpt.load() if resume else None
    if resume and state is None and not quiet:
        print(f"n2a denoise: no checkpoint in {ckpt_dir}; starting from the beginning",
              file=sys.stderr)
    return state


def _write_volumes(files: dict, result, record: dict, like, ckpt, n_iter: int) -> None:
    """Every NIfTI output of a run (the report is written before), each with its sidecar."""
    from .io import nifti
    from .provenance import write_sidecar

    images = {"output": result.output, "noise-map": result.noise_map,
              "uncertainty": result.uncertainty}
    images.update({f"rep-{k}": rep for k, rep in enumerate(result.denoised, 1)})
    first_iter = n_iter - len(result.iterations) + 1  # a resumed run holds the later ones only
    images.update({f"iter-{i}": img for i, img in enumerate(result.iterations, first_iter)})
    for role, path in files.items():
        if role == "report":
            continue
        img = images.get(role)
        if img is None:  # an iteration finished before the run was resumed
            img = ckpt.iteration_result(int(role[5:]))
        nifti.save_volume(path, img, like)
        write_sidecar(path, {**record, "role": role,
                             "outputs": {r: str(p) for r, p in files.items()}})


def _run_warnings(arrays, result, config, snr: dict, automatic_mask: bool) -> list[str]:
    """:func:`noise2average.arrays.qc.run_warnings` for a T1w run."""
    from .arrays.qc import run_warnings
    from .config import LEARNED_METHODS, PACKAGED_INITS

    average = np.mean(arrays, axis=0, dtype=np.float64).astype(np.float32)
    t1w = config.method in LEARNED_METHODS and config.init in PACKAGED_INITS
    last = result.history[-1] if result.history else {}
    return run_warnings(arrays, average, result.mask, result.sigma, snr, config.voxel_size,
                        t1w_network=t1w, automatic_mask=automatic_mask,
                        sharpness=last.get("output_sharpness_estimate"))


def run_summary(out: Path, record: dict, mask: np.ndarray, report: Path | None) -> str:
    """What a finished run tells the terminal: the output, the time, what the result is,
    the estimated gain over the plain average, the mask, the report, and any warnings."""
    from .arrays.qc import snr_gain

    lines = [f"n2a denoise: wrote {out} in {record['wall_seconds']:.0f} s ({record['compute']})"]
    kept = record.get("selected_iteration")
    n_iter = len(record.get("history") or [])
    if record.get("model") is not None:
        what = ("the pre-trained network (fine-tuning did not improve it on the held-out slab)"
                if kept == 0 else f"iteration {kept} of {n_iter}")
        if record.get("output_from") == "average":
            what += ", applied to the average of the repetitions"
        last = (record.get("history") or [{}])[-1]
        if last.get("output_tuning_kept_step"):
            what += f", tuned on that average ({last['output_tuning_kept_step']} steps)"
        if last.get("output_detail_amount"):
            what += f", {last['output_detail_amount']:.0%} of its own fine detail added back"
        if last.get("output_contrast") == "first":
            what += (", in repetition 1's contrast (the repetitions differ in contrast: "
                     f"{last['output_contrast_share']:.0%} of its difference from the "
                     "average follows the image's)")
        lines.append(f"  result:  {what}")
    gain = snr_gain(record.get("snr_estimate") or {})
    if gain is not None:
        lines.append(f"  gain:    estimated SNR x{gain:.2f} over the plain average")
    lines.append(f"  mask:    {record['mask']} ({int(np.count_nonzero(mask))} voxels)")
    if report is not None:
        lines.append(f"  report:  {report}")
    warnings = record.get("warnings") or []
    lines += [f"  warning: {w}" for w in warnings]
    return "\n".join(lines)


def _snr_estimate(arrays, result, config) -> dict:
    """SNR before and after (see :mod:`noise2average.arrays.snr`); the "after" needs denoised
    repetitions, which the conventional methods (on the average only) do not have."""
    from .arrays.snr import snr_summary
    from .config import LEARNED_METHODS

    learned = config.method in LEARNED_METHODS
    return snr_summary(arrays, result.mask, result.sigma, result=result.output,
                       denoised=result.denoised if learned else None)


def _write_report(path: Path, arrays, result, like, record: dict, out: Path) -> None:
    """The QC report of a denoise run (:mod:`noise2average.io.report`)."""
    import nibabel as nib

    from .io.report import write_report

    history = result.history
    timings = {"total wall time (s)": record["wall_seconds"],
               "training (s)": round(sum(h.get("train_seconds", 0) for h in history), 2),
               "inference (s)": round(sum(h.get("infer_seconds", 0) for h in history), 2),
               "compute": result.compute}
    zooms = tuple(round(float(z), 3) for z in like.header.get_zooms()[:3])
    details = {"inputs": [Path(i["path"]).name for i in record["inputs"]],
               "mask": record["mask"], "model": record["model"],
               "grid": f"{like.shape[:3]} voxels of {zooms} mm, "
                       f"{''.join(nib.aff2axcodes(like.affine))}"}
    if record["selected_iteration"] == 0:  # the stopping rule kept the pre-trained network
        details["result"] = ("the pre-trained network without fine-tuning: it scored better "
                             f"than each of the {len(history)} fine-tuned iteration(s) on the "
                             "held-out slab")
    elif len(history) > 1:  # say which iteration is the result (the stopping rule may keep one)
        details["result"] = f"iteration {record['selected_iteration']} of {len(history)}"
    if record.get("output_from") == "average":
        details["result"] = (details.get("result", "the fine-tuned network") + ", applied to "
                             "the average of the noisy repetitions")
    if history and history[-1].get("output_detail_amount"):
        details["detail"] = (f"{history[-1]['output_detail_amount']:.0%} of the result's own "
                             "fine detail added back (output_detail)")
    if history and history[-1].get("output_contrast") == "first":
        details["contrast"] = ("repetition 1's (the repetitions differ in contrast: "
                               f"{history[-1]['output_contrast_share']:.0%} of its difference "
                               "from the average follows the image's)")
    average = np.mean(arrays, axis=0, dtype=np.float64).astype(np.float32)
    write_report(path, inputs=arrays, average=average, result=result.output,
                 residual=arrays[0] - result.output, noise_map=result.noise_map,
                 uncertainty=getattr(result, "uncertainty", None), mask=result.mask,
                 affine=like.affine, sigma=result.sigma, history=history,
                 snr=record["snr_estimate"], config=record["config"],
                 warnings=record["warnings"],
                 environment=record["environment"], timings=timings, details=details,
                 title=f"noise2average QC report: {out.name}")


def reference_and_mask(reference, mask):
    """Reference volume, mask and image from the given files, or Colin27 by default."""
    from .io import nifti
    from .io.templates import colin27_paths

    if bool(reference) != bool(mask):
        raise InputError("give both --reference and --mask, or neither (Colin27 default)")
    ref_path, mask_path = (Path(reference), Path(mask)) if reference else colin27_paths()
    if not reference and not ref_path.is_file():
        raise InputError(f"Colin27 not found at {ref_path}: install the Debian package "
                         "mricron-data or pass --reference and --mask")
    ref, img = nifti.load_volume(ref_path)
    mask_arr = nifti.load_mask(mask_path, ref.shape, img.affine)
    return ref, mask_arr, img, ref_path, mask_path


def _echo_mean_reference(ref, mask, cfg, crop: int | None) -> np.ndarray:
    """:func:`~noise2average.arrays.simulate.mean_anatomy` of the scaled reference, cropped as
    :func:`simulate_case` crops (the segmentation behind it sees the whole brain)."""
    from .arrays.masking import centred_cube
    from .arrays.simulate import mean_anatomy, scale_reference

    out = mean_anatomy(scale_reference(ref, mask), mask, cfg)
    return out[centred_cube(mask, crop)] if crop else out


def simulate_case(ref, mask, img, cfg, crop: int | None):
    """Protocol v1 on the whole volume, then an optional centred cube (so that motion and
    resampling see the real surroundings). Returns reps, scaled reference, mask, the image whose
    geometry the outputs take, and the record."""
    from .arrays.masking import centred_cube
    from .arrays.simulate import simulate

    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    reps, scaled, record = simulate(ref, mask, zooms, cfg)
    like = img
    if crop:
        sl = centred_cube(mask, crop)
        reps, scaled, mask = [r[sl] for r in reps], scaled[sl], mask[sl]
        like = img.slicer[sl]
        record["crop"] = [[s.start, s.stop] for s in sl]
    return reps, scaled, mask, like, record


def simulate_files(args: argparse.Namespace) -> None:
    """``n2a simulate``: protocol-v1 repetitions of any reference into a folder (``--dwi``:
    the diffusion phantom, :mod:`.workflows_dwi`)."""
    if getattr(args, "dwi", False):
        from .workflows_dwi import simulate_dwi_files

        return simulate_dwi_files(args)
    from .arrays.simulate import SimulationConfig
    from .io import nifti
    from .io.atomic import write_text

    sigma = 0.05 if args.sigma is None else args.sigma
    cfg = SimulationConfig(sigma=sigma, reps=args.reps, echo=args.echo, seed=args.seed)
    cfg.validate()
    ref, mask, img, ref_path, mask_path = reference_and_mask(args.reference, args.mask)
    outdir = Path(args.output)
    names = ["reference", "mask"] + [f"rep-{k}" for k in range(1, cfg.reps + 1)]
    files = {n: outdir / f"{n}.nii.gz" for n in names}
    files_json = outdir / "simulation.json"
    for f in list(files.values()) + [files_json]:
        check_output(f, [ref_path, mask_path], args.force)
    reps, scaled, mask, like, record = simulate_case(ref, mask, img, cfg, args.crop)
    record.update(reference=str(ref_path), mask=str(mask_path))
    nifti.save_volume(files["reference"], scaled, like)
    nifti.save_volume(files["mask"], mask.astype(np.float32), like)
    for k, rep in enumerate(reps, 1):
        nifti.save_volume(files[f"rep-{k}"], rep, like)
    write_text(files_json, json.dumps(record, indent=2))


def benchmark_files(args: argparse.Namespace) -> None:
    """``n2a benchmark``: one simulated case, every method, one table, JSON and figure."""
    from .arrays.simulate import SimulationConfig
    from .bench.volumes import markdown_table, run_methods, score_runs
    from .config import BENCHMARK_METHODS, METHODS, DenoiseConfig
    from .io.atomic import write_text
    from .io.figures import slices_figure
    from .provenance import environment

    cfg = SimulationConfig(sigma=args.sigma, reps=args.reps, echo=args.echo, seed=args.seed)
    cfg.validate()
    methods = args.methods or list(BENCHMARK_METHODS)
    from .bench.volumes import parse_spec

    unknown = [m for m in methods if parse_spec(m)[0] not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    crop = args.crop or (64 if args.quick else None)
    changes = {"device": args.device, "precision": args.precision, "threads": args.threads,
               "seed": args.seed}
    if args.steps is not None or args.quick:
        changes["steps"] = args.steps if args.steps is not None else 100
    for key in ("iterations", "lr", "init"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    config = DenoiseConfig(**changes)
    ref, mask, img, ref_path, mask_path = reference_and_mask(args.reference, args.mask)
    outdir = Path(args.output)
    files = {k: outdir / f"results.{k}" for k in ("md", "json", "png")}
    for f in files.values():
        check_output(f, [ref_path, mask_path], args.force)
    echo_mean = _echo_mean_reference(ref, mask, cfg, crop) if cfg.echo else None
    reps, scaled, mask, _, record = simulate_case(ref, mask, img, cfg, crop)
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    runs = run_methods(reps, mask, scaled, methods, config, say=say)
    rows = score_runs(runs, reps, scaled, mask)
    argv = " ".join(["n2a", "benchmark"] + sys.argv[2:]) if sys.argv[1:2] == ["benchmark"] else ""
    title = (f"Protocol v1, {ref_path.name}, sigma {cfg.sigma}, {cfg.reps} repetitions"
             f"{', echo variant' if cfg.echo else ''}{f', centred {crop}^3 crop' if crop else ''}")
    text = f"## {title}\n\n`{argv}`\n\n" + markdown_table(rows)
    extra = {}
    if echo_mean is not None:  # the protocol's score (echo 1) and the echo mean's, side by side
        extra["rows_echo_mean"] = score_runs(runs, reps, echo_mean, mask)
        text += ("\n### Scored against the mean of the echoes' noise-free anatomy\n\n"
                 "What an average of the echoes estimates: this score leaves out the later "
                 "echo's T2* darkening, which the table above counts in every averaged "
                 "output.\n\n" + markdown_table(extra["rows_echo_mean"]))
    write_text(files["md"], text)
    write_text(files["json"], json.dumps({"title": title, "command": argv, "rows": rows, **extra,
                                          "config": config.to_dict(), "simulation": record,
                                          "environment": environment()}, indent=2))
    vols = {"reference": scaled, "noisy rep 1": np.where(mask, reps[0], 0)}
    vols.update({r.method: r.output for r in runs if r.output is not None})
    slices_figure(files["png"], vols, reference=scaled)
    if not args.quiet:
        print(markdown_table(rows))


def register_files(args: argparse.Namespace) -> None:
    """``n2a register``: rigid registration of repetitions to the first (:mod:`.coregister`)."""
    from .coregister import run_register

    run_register(args.reps, args.output, mask=args.mask, force=args.force, quiet=args.quiet)


def evaluate_files(args: argparse.Namespace) -> None:
    """``n2a evaluate``: protocol-v1 scores of each image, as a table or JSON."""
    from .arrays.metrics import score
    from .io import nifti

    ref, img = nifti.load_volume(args.reference)
    mask = nifti.load_mask(args.mask, ref.shape, img.affine)
    rows = {}
    for p in args.images:
        data, _ = nifti.load_volume(p)
        if data.shape != ref.shape:
            raise InputError(f"{p} has shape {data.shape}, the reference {ref.shape}")
        rows[p] = score(data, ref, mask)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'image':40s} {'PSNR':>7s} {'SSIM':>6s} {'NMAE':>6s} {'sharp':>6s}")
    for p, r in rows.items():
        print(f"{p[-40:]:40s} {r['psnr']:7.2f} {r['ssim']:6.3f} {r['nmae']:6.3f} {r['sharpness']:6.3f}")


def demo(args: argparse.Namespace) -> None:
    """``n2a demo``: the whole job on a template installed with the dependencies."""
    import nibabel as nib

    from .arrays.masking import centred_cube
    from .arrays.metrics import score
    from .arrays.simulate import SimulationConfig, simulate
    from .config import DenoiseConfig
    from .io import nifti
    from .io.figures import slices_figure
    from .io.templates import mni152
    from .pipeline import denoise
    from .provenance import environment, write_sidecar

    outdir = Path(args.output)
    files = {n: outdir / f"{n}.nii.gz" for n in
             ("reference", "mask", "rep-1", "rep-2", "average", "denoised")}
    fig_path = outdir / "demo.png"
    for f in list(files.values()) + [fig_path]:
        check_output(f, [], args.force)
    print("Demo on the MNI152 2009a template shipped with nilearn: two noisy repetitions "
          f"(sigma 0.05) of a {args.crop or 'whole'}^3 crop, Noise2Average with "
          f"2 iterations of {args.steps} fine-tuning steps (the default run uses 200). "
          "With the defaults: about 80 s on 2 CPU cores (77 s of denoising measured). The shipped "
          "model was PRE-TRAINED ON THIS TEMPLATE (and data derived from it): these numbers "
          "demonstrate the workflow, they do not benchmark it (docs/benchmarks.md scores an "
          "image the model never saw).")
    t1, mask, affine = mni152()
    if args.crop:
        sl = centred_cube(mask, args.crop)
        affine = nib.Nifti1Image(t1, affine).slicer[sl].affine
        t1, mask = t1[sl], mask[sl]
    reps, ref, record = simulate(t1, mask, (1.0, 1.0, 1.0), SimulationConfig(sigma=0.05, seed=args.seed))
    cfg = DenoiseConfig(device=args.device, precision=args.precision, threads=args.threads,
                        seed=args.seed, steps=args.steps)
    clock = _time_left(cfg, reps[0].ndim, "n2a demo")
    t0 = time.perf_counter()
    res = denoise(reps, mask, cfg, progress=None if args.quiet else clock.progress)
    seconds = time.perf_counter() - t0
    average = np.where(mask, np.mean(reps, axis=0), 0).astype(np.float32)
    like = nib.Nifti1Image(ref, affine)
    like.header.set_xyzt_units("mm")
    vols = {"reference": ref, "mask": mask.astype(np.float32), "rep-1": reps[0], "rep-2": reps[1],
            "average": average, "denoised": res.output}
    for n, v in vols.items():
        nifti.save_volume(files[n], v, like)
    rows = {"noisy rep 1": np.where(mask, reps[0], 0), "plain average": average,
            "Noise2Average": res.output}
    print(f"\n{'':16s} {'PSNR dB':>8s} {'SSIM':>7s}   (inside the brain, sigma 0.05, 2 reps)")
    scores = {}
    for name, img in rows.items():
        s = score(img, ref, mask)
        scores[name] = s
        print(f"{name:16s} {s['psnr']:8.2f} {s['ssim']:7.3f}")
    print(f"\ndenoised in {seconds:.0f} s on {res.compute}; outputs in {outdir}/")
    slices_figure(fig_path, {"reference": ref, "noisy rep 1": np.where(mask, reps[0], 0),
                             "average": average, "Noise2Average": res.output}, reference=ref)
    write_sidecar(files["denoised"], {"Description": "n2a demo (MNI152, protocol v1)",
                                      "config": cfg.to_dict(), "simulation": record,
                                      "scores": scores, "seconds": seconds,
                                      "environment": environment()})
