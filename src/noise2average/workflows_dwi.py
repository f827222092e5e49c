"""File-level diffusion workflows behind ``n2a denoise --bvals/--bvecs``, ``n2a pretrain --dwi``,
``n2a dti-split``, ``n2a dti-metrics`` and ``n2a simulate --dwi``: read and check every input and
output first, compute on arrays, then write each file atomically (NIfTI float32 with the input's
geometry, FSL bvals/bvecs, JSON sidecars)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError
from .io.paths import check_output, lr_axis, nifti_ext, nifti_stem
from .progress import progress_bar

METRIC_NAMES = ("FA", "MD", "AD", "RD", "V1")
METRIC_UNITS = {"FA": "1", "MD": "mm^2/s", "AD": "mm^2/s", "RD": "mm^2/s",
                "V1": "unit vector (voxel axes)"}


def _check_outputs(paths, inputs, force: bool) -> None:

    for p in paths:
        check_output(Path(p), [Path(i) for i in inputs], force)


def light_environment() -> dict:
    """Versions that a diffusion run depends on (no torch import: these runs do not use it)."""
    import platform

    import dipy
    import nibabel
    import scipy

    from ._version import __version__

    return {"noise2average": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "nibabel": nibabel.__version__,
            "dipy": dipy.__version__, "platform": platform.platform()}


def read_dwi(dwi_path, bvals_path, bvecs_path, mask_path=None, *, b0_threshold: float = 50.0):
    """A validated 4D DWI series, its gradient table, mask (or None) and image.

    Raises InputError (one line) for a 3D image, a missing or mismatched gradient table,
    non-unit directions, no b=0 volume, or a mask off the series' grid.
    """
    from .io import nifti
    from .io.gradients import read_table

    dwi_path = Path(dwi_path)
    if not bvals_path or not bvecs_path:
        raise InputError("a DWI series needs --bvals and --bvecs (FSL format)")
    img = nifti.load_image(dwi_path)
    if len(img.shape) != 4 or img.shape[3] < 2:
        raise InputError(f"{dwi_path} is {len(img.shape)}D {tuple(img.shape)}; a DWI series "
                         "must be 4D (b=0 and diffusion-weighted volumes)")
    data, img = nifti.load_volume(dwi_path, ndim=4)
    table = read_table(bvals_path, bvecs_path, data.shape[3], b0_threshold=b0_threshold)
    mask = nifti.load_mask(mask_path, data.shape[:3], img.affine) if mask_path else None
    return data, table, mask, img


def dti_split_files(args: argparse.Namespace) -> None:
    """``n2a dti-split``: one DTI series -> repetitions rep-K.nii.gz on a common scheme."""
    from .arrays.dti import dti_split
    from .io import nifti
    from .io.gradients import write_fsl
    from .provenance import file_sha256, write_sidecar

    inputs = [Path(p) for p in (args.dwi, args.bvals, args.bvecs, args.mask) if p]
    data, table, mask, img = read_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    if args.subsets < 2:
        raise InputError(f"--subsets must be >= 2, got {args.subsets}")
    outdir = Path(args.output)
    reps_files = [outdir / f"rep-{k}.nii.gz" for k in range(1, args.subsets + 1)]
    bval_file, bvec_file = outdir / "dwi.bval", outdir / "dwi.bvec"
    sidecars = [outdir / f"rep-{k}.json" for k in range(1, args.subsets + 1)]
    _check_outputs(reps_files + sidecars + [bval_file, bvec_file], inputs, args.force)
    reps, bvals, bvecs, record = dti_split(
        data, table.bvals, table.bvecs, mask, n_dirs=args.dirs, n_subsets=args.subsets,
        subset_size=args.subset_size, shell=args.shell, b0=args.b0, method=args.method)
    base = {"Description": "noise2average dti-split: a repetition synthesized from one subset "
                           "of the series' directions",
            "split": record,
            "inputs": [{"path": str(p), "sha256": file_sha256(p)} for p in inputs],
            "mask": str(args.mask) if args.mask else "none (every voxel fitted)",
            "gradients": {"bvals": str(bval_file), "bvecs": str(bvec_file)},
            "environment": light_environment()}
    for k, (rep, path) in enumerate(zip(reps, reps_files), 1):
        nifti.save_volume(path, rep, img)
        write_sidecar(path, {**base, "repetition": k, "subset": record["subsets"][k - 1]})
    write_fsl(bvals, bvecs, bval_file, bvec_file)
    if not getattr(args, "quiet", False):
        conds = ", ".join(f"{s['condition_number']:.2f}" for s in record["subsets"])
        print(f"n2a dti-split: {len(reps)} repetitions of b=0 + {args.dirs} DWIs "
              f"(b={record['shell']:g}) from subsets of {record['subset_size']} directions, "
              f"b=0 {record['b0']}, in {outdir}/; subset condition numbers {conds}",
              file=sys.stderr)


def dti_metrics_files(args: argparse.Namespace) -> None:
    """``n2a dti-metrics``: FA, MD, AD, RD and V1 of a DWI series (DIPY tensor fit)."""
    from .arrays.dti import dti_metrics, fit_tensor
    from .arrays.masking import auto_mask
    from .io import nifti
    from .provenance import file_sha256, write_sidecar

    inputs = [Path(p) for p in (args.dwi, args.bvals, args.bvecs, args.mask) if p]
    data, table, mask, img = read_dwi(args.dwi, args.bvals, args.bvecs, args.mask)
    outdir = Path(args.output)
    files = {m: outdir / f"{m}.nii.gz" for m in METRIC_NAMES}
    _check_outputs(list(files.values()) + [outdir / f"{m}.json" for m in METRIC_NAMES],
                   inputs, args.force)
    mask_desc = str(args.mask)
    if mask is None:
        mask = auto_mask(data[..., table.b0_mask].mean(axis=-1))
        mask_desc = "automatic head mask of the mean b=0 image"
    field = fit_tensor(data, table.bvals, table.bvecs, mask, args.method)
    metrics = dti_metrics(field)
    record = {"Description": "noise2average dti-metrics: diffusion tensor metrics (DIPY "
                             f"TensorModel, {args.method.upper()})",
              "method": args.method.upper(), "mask": mask_desc,
              "b0_volumes": int(table.b0_mask.sum()), "shells": list(table.shells),
              "inputs": [{"path": str(p), "sha256": file_sha256(p)} for p in inputs],
              "environment": light_environment()}
    for m, path in files.items():
        nifti.save_volume(path, metrics[m], img)
        write_sidecar(path, {**record, "metric": m, "units": METRIC_UNITS[m]})


def simulate_dwi_files(args: argparse.Namespace) -> None:
    """``n2a simulate --dwi``: the diffusion phantom and its noisy repetitions in a folder.
    ``--tissues`` maps hold fractions in [0, 1] (or 0-255, rescaled)."""
    import nibabel as nib

    from .arrays.dwi_phantom import make_phantom, noisy_repetitions
    from .arrays.masking import bounding_box, centred_cube
    from .io import nifti
    from .io.atomic import write_text
    from .io.gradients import write_fsl
    from .io.templates import mni152_tissues

    for flag, given in (("--echo", args.echo), ("--reference", args.reference),
                        ("--mask", args.mask), ("--sigma", args.sigma is not None)):
        if given:
            raise InputError(f"{flag} is a T1w option; with --dwi the noise is set by --snr and "
                             "the anatomy by --tissues")
    if args.reps < 2:
        raise InputError(f"--reps must be >= 2, got {args.reps}")
    if not args.snr > 0:
        raise InputError(f"--snr must be > 0, got {args.snr}")
    if not 6 <= args.dirs <= 200 or args.b0s < 1:
        raise InputError("--dirs must be 6..200 and --b0s >= 1")
    inputs: list[Path] = []
    if args.tissues:
        inputs = [Path(p) for p in args.tissues]
        vols, imgs = [], []
        for p in inputs:
            v, i = nifti.load_volume(p)
            vols.append(v)
            imgs.append(i)
        nifti.check_same_grid(imgs, inputs, [v.shape for v in vols])
        scale = 255.0 if max(float(v.max()) for v in vols) > 1.5 else 1.0
        tissues = dict(zip(("gm", "wm", "csf"), (v / scale for v in vols)))
        brain = None
        grid, source = imgs[0], [str(p) for p in inputs]
        zooms = tuple(float(z) for z in imgs[0].header.get_zooms()[:3])
    else:
        tissues, brain, affine = mni152_tissues()
        grid = nib.Nifti1Image(np.zeros(brain.shape, np.float32), affine)
        source = "MNI152 2009a sym GM/WM (nilearn wheel), CSF = 1 - GM - WM near the brain"
        zooms = (1.0, 1.0, 1.0)
    outdir = Path(args.output)
    names = ["reference", "mask", "wm"] + [f"rep-{k}" for k in range(1, args.reps + 1)]
    names += [f"reference_{m}" for m in METRIC_NAMES]
    files = {n: outdir / f"{n}.nii.gz" for n in names}
    extra = [outdir / "dwi.bval", outdir / "dwi.bvec", outdir / "simulation.json"]
    _check_outputs(list(files.values()) + extra, inputs, args.force)
    from scipy import ndimage

    if brain is None:
        brain = ndimage.binary_fill_holes(
            ndimage.binary_closing(tissues["gm"] + tissues["wm"] > 0.5, iterations=3))
    if not brain.any():
        raise InputError("the tissue maps hold no brain (GM + WM > 0.5 nowhere)")
    # the phantom covers the brain's bounding box (+4 voxels) or a centred cube of it
    region = centred_cube(brain, args.crop) if args.crop else bounding_box(brain, margin=4)
    phantom = make_phantom(tissues["gm"], tissues["wm"], tissues["csf"], zooms=zooms,
                           n_dirs=args.dirs, n_b0=args.b0s, bval=args.bval, seed=args.seed,
                           brain_mask=brain, region=region)
    reps, noise = noisy_repetitions(phantom, args.reps, args.snr, args.seed, args.misalign)
    like = grid.slicer[region]
    like.header.set_xyzt_units("mm")
    nifti.save_volume(files["reference"], phantom.dwi, like)
    nifti.save_volume(files["mask"], phantom.brain_mask.astype(np.float32), like)
    nifti.save_volume(files["wm"], phantom.wm_mask.astype(np.float32), like)
    for k, rep in enumerate(reps, 1):
        nifti.save_volume(files[f"rep-{k}"], rep, like)
    for m in METRIC_NAMES:
        nifti.save_volume(files[f"reference_{m}"], phantom.metrics[m], like)
    write_fsl(phantom.bvals, phantom.bvecs, extra[0], extra[1])
    record = {"protocol": "dwi-v1", "tissues": source, "phantom": phantom.record,
              "noise": noise, "crop": args.crop, "files": {k: str(v) for k, v in files.items()},
              "case": "AP/PA: repetitions are independent noise realizations of one series"
                      + (" with a residual rigid misalignment" if args.misalign else ""),
              "environment": light_environment()}
    write_text(extra[2], json.dumps(record, indent=2))


def _as_list(value) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]


def read_series(paths: list[Path], bvals, bvecs, mask_path: Path | None):
    """Validated 4D repetitions, their shared gradient table, the mask and the first image.

    ``bvals``/``bvecs``: one file each (shared by all series) or one per series; several
    tables must be the same protocol (:func:`~noise2average.arrays.gradients.
    require_same_gradients`), and the first one is used.
    """
    from .arrays.gradients import require_same_gradients
    from .io import nifti
    from .io.gradients import read_table

    bval_paths, bvec_paths = _as_list(bvals), _as_list(bvecs)
    if not bval_paths or not bvec_paths:
        raise InputError("diffusion series need both --bvals and --bvecs")
    if len(bval_paths) != len(bvec_paths) or len(bval_paths) not in (1, len(paths)):
        raise InputError(f"give one --bvals/--bvecs pair for all series or one per series "
                         f"({len(paths)}); got {len(bval_paths)} bvals, {len(bvec_paths)} bvecs")
    arrays, imgs = nifti.load_repetitions(paths, ndim=4)
    n_vol = arrays[0].shape[3]
    tables = [read_table(bv, bc, n_vol) for bv, bc in zip(bval_paths, bvec_paths)]
    for k, t in enumerate(tables[1:], start=1):
        require_same_gradients(tables[0], t, names=(paths[0].name, paths[k].name))
    mask = (nifti.load_mask(mask_path, arrays[0].shape[:3], imgs[0].affine)
            if mask_path else None)
    return arrays, tables[0], mask, imgs[0], bval_paths + bvec_paths


def _copy_file(src: Path, dst: Path) -> None:
    from .io.atomic import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _planned_outputs(out: Path, n_reps: int, save_reps: bool, save_noise_map: bool,
                     report: bool) -> tuple[dict[str, Path], dict[str, Path]]:
    """The NIfTI outputs of a diffusion run by role, and the other files (gradient table,
    report)."""
    folder, stem = nifti_stem(out)
    ext = nifti_ext(out)
    files = {"output": out}
    if save_reps:
        files.update({f"rep-{k}": folder / f"{stem}_rep-{k}{ext}" for k in range(1, n_reps + 1)})
    if save_noise_map:
        files["noise-map"] = folder / f"{stem}_noisemap{ext}"
    extra = {"bval": folder / f"{stem}.bval", "bvec": folder / f"{stem}.bvec"}
    if report:
        extra["report"] = folder / f"{stem}_report.html"
    return files, extra


def _model_identity(config, by_group: bool) -> dict:
    """Which weights a learned run started from, with their SHA-256: the shipped diffusion
    model for groups, the shipped T1w models for volumes (``config.init``)."""
    from .config import PACKAGED_INITS
    from .io.weights import packaged_path, sha256

    if config.init == "scratch":
        return {"init": "scratch", "preset": config.preset}
    if by_group:
        path = packaged_path("dwi") if config.init == "pretrained" else Path(config.init)
    else:
        path = (packaged_path(PACKAGED_INITS[config.init]) if config.init in PACKAGED_INITS
                else Path(config.init))
    return {"init": config.init, "file": path.name, "sha256": sha256(path)}


def run_denoise_dwi(reps, output, bvals, bvecs, mask=None, *, group_size: int = 7,
                    reference=None, save_reps: bool = False, save_noise_map: bool = False,
                    checkpoint=None, resume: bool = False, force: bool = False,
                    quiet: bool = True, report: bool = True, **config_changes):
    """Denoise 4D DWI repetitions (e.g. AP and PA) into the 4D ``output``.

    Writes ``output`` and its JSON sidecar, the gradient table next to it (``STEM.bval``,
    ``STEM.bvec``, copies of the first given files), and optionally each denoised repetition
    (``STEM_rep-K``) and the noise map (``STEM_noisemap``, 3D), and unless ``report`` is False
    the QC report ``STEM_report.html`` (:func:`write_dwi_report`). Everything is validated
    before anything is written. ``config_changes`` are DenoiseConfig fields. Returns the DwiResult.
    """
    from .config import LEARNED_METHODS, PACKAGED_INITS, DenoiseConfig
    from .diffusion import denoise_dwi, initial_dwi_model
    from .io import nifti
    from .provenance import environment, file_sha256, write_sidecar

    from dataclasses import fields

    t_start = time.perf_counter()
    out = Path(output)
    paths = [Path(p) for p in reps]
    mask_path = Path(mask) if mask else None
    arrays, table, mask_arr, like, grad_files = read_series(paths, bvals, bvecs, mask_path)
    inputs = paths + grad_files + ([mask_path] if mask_path else [])
    config_changes.setdefault("lr_axis", lr_axis(like.affine))
    if "voxel_size" in {f.name for f in fields(DenoiseConfig)}:  # mm, for align='register'
        config_changes.setdefault("voxel_size",
                                  tuple(float(z) for z in like.header.get_zooms()[:3]))
    config = DenoiseConfig(**config_changes)
    ref_arr = (nifti.load_reference(reference, like, paths[0], arrays[0].shape)
               if config.method == "supervised" else None)
    if ref_arr is not None:
        inputs.append(Path(reference))
    if (config.init not in (*PACKAGED_INITS, "scratch")
            and not Path(config.init).is_file()):
        raise InputError(f"--init {config.init}: no such model file")
    learned = config.method in LEARNED_METHODS
    if save_reps and not learned:
        raise InputError(f"--save-reps: method {config.method!r} gives the average only")
    by_group = learned and config.dwi_mode == "groups"
    base = initial_dwi_model(config, group_size) if by_group else None
    stem = nifti_stem(out)[1]
    files, extra = _planned_outputs(out, len(arrays), save_reps, save_noise_map, report)
    for f in list(files.values()) + list(extra.values()):
        check_output(f, inputs, force)
    ckpt_dir = Path(checkpoint) if checkpoint else out.with_name(stem + ".ckpt")
    identity = {"config": {k: v for k, v in config.to_dict().items()
                           if k not in ("device", "precision", "threads")},
                "inputs": [file_sha256(p) for p in paths], "group_size": group_size}
    from .io.checkpoint_runs import GroupCheckpoint, claim_checkpoint

    ckpt = GroupCheckpoint(ckpt_dir, identity)
    claim_checkpoint(ckpt, resume, force)
    done = ckpt.load() if resume else {}
    result = denoise_dwi(arrays, table.bvals, table.bvecs, mask_arr, config,
                         group_size=group_size, reference=ref_arr, init_model=base, done=done,
                         on_group=ckpt.save if learned else None,
                         progress=None if quiet else lambda n, d: progress_bar(n, d, False))
    model_id = _model_identity(config, by_group) if learned else None
    record = {
        "Description": f"noise2average {config.method} denoising of a diffusion series",
        "config": config.to_dict(),
        "group_size": group_size if by_group else None,
        "groups": result.plan.to_dict() if result.plan is not None else None,
        "inputs": [{"path": str(p), "sha256": file_sha256(p)} for p in inputs],
        "gradients": {"bvals": str(grad_files[0]), "bvecs": str(grad_files[len(grad_files) // 2]),
                      "shells": list(table.shells), "n_b0": int(table.b0_mask.sum())},
        "environment": environment(),
        "compute": result.compute,
        "model": model_id,
        "mask": "given" if mask_arr is not None else "automatic head mask of the mean b0",
        "noise_sigma_estimate": result.sigma,
        # from the repetitions (arrays.contrast): under 1, FA comes out biased low
        "directional_contrast_kept": result.contrast_kept,
        # dwi_mode='volumes' spreads the output's contrast by 1 / kept (arrays.contrast)
        "directional_contrast_restored": result.contrast_restored,
        "history": result.history,
        "wall_seconds": round(time.perf_counter() - t_start, 2),
    }
    shown = report_volume(table)
    record["warnings"] = dwi_warnings(arrays, result, shown, config.method in LEARNED_METHODS)
    if report:
        write_dwi_report(extra["report"], arrays, result, table, shown, like, record, out)
    images = {"output": result.output, "noise-map": result.noise_map}
    images.update({f"rep-{k}": r for k, r in enumerate(result.denoised, 1)})
    for role, path in files.items():
        nifti.save_volume(path, images[role], like)
        write_sidecar(path, {**record, "role": role,
                             "outputs": {r: str(p) for r, p in {**files, **extra}.items()}})
    _copy_file(grad_files[0], extra["bval"])
    _copy_file(grad_files[len(grad_files) // 2], extra["bvec"])
    ckpt.remove()
    if not quiet:
        print(dwi_summary(out, record, result, extra.get("report")), file=sys.stderr)
    return result


def dwi_summary(out: Path, record: dict, result, report: Path | None) -> str:
    """What a finished diffusion run tells the terminal: the output, the time, the
    directional contrast kept, the report, and any warnings."""
    unit = (f"{len(result.plan.groups)} groups" if result.plan is not None
            else f"{result.output.shape[3]} volumes")
    lines = [f"n2a denoise: wrote {out} in {record['wall_seconds']:.0f} s ({unit})"]
    if result.contrast_kept is not None:
        then = ("; the output's contrast is restored by 1 / that share"
                if result.contrast_restored else "; below 100 %, FA is biased low")
        lines.append(f"  contrast: the denoising keeps "
                     f"{100 * result.contrast_kept:.1f} % of the contrast between diffusion "
                     f"directions (estimated from the repetitions{then})")
    if report is not None:
        lines.append(f"  report:   {report}")
    lines += [f"  warning:  {w}" for w in record["warnings"]]
    return "\n".join(lines)


#: below this share of the directional contrast kept, a run warns that FA comes out biased low
MIN_CONTRAST_KEPT = 0.95


def report_volume(table) -> int:
    """The volume the report shows: the first DWI of the highest shell, where the noise is
    largest against the signal (the first volume when the series has no DWI)."""
    if not table.shells:
        return 0
    return int(table.shell_indices(table.shells[-1])[0])


def dwi_warnings(arrays, result, shown: int, learned: bool) -> list[str]:
    """The run's warnings: the T1w checks on the shown volume (gain, near copies, the mask)
    and the directional contrast the learned methods lose."""
    from .arrays.qc import gain_warning, mask_edge_warning, near_copies_warning

    reps = [a[..., shown] for a in arrays]
    found = [gain_warning(_dwi_snr(arrays, result, shown, learned)),
             near_copies_warning(reps, result.mask, result.sigma),
             mask_edge_warning(result.mask)]
    kept = result.contrast_kept
    if kept is not None and kept < MIN_CONTRAST_KEPT and not result.contrast_restored:
        found.append(f"the denoised repetitions keep {100 * kept:.1f} % of the contrast between "
                     "diffusion directions: FA from this output is biased low (see "
                     "docs/diffusion.md)")
    return [w for w in found if w]


def _dwi_snr(arrays, result, shown: int, learned: bool) -> dict:
    """SNR before and after on the shown volume (:mod:`noise2average.arrays.snr`)."""
    from .arrays.snr import snr_summary

    reps = [a[..., shown] for a in arrays]
    denoised = [d[..., shown] for d in result.denoised] if learned else None
    return snr_summary(reps, result.mask, denoised=denoised, result=result.output[..., shown])


def write_dwi_report(path: Path, arrays, result, table, shown: int, like, record: dict,
                     out: Path) -> None:
    """The QC report of a diffusion run: the views, SNR and residual of one volume
    (:func:`report_volume`), the warnings, and the run's tables."""
    from .config import LEARNED_METHODS
    from .io.report import write_report

    learned = record["config"]["method"] in LEARNED_METHODS
    reps = [a[..., shown] for a in arrays]
    average = np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
    shown_out = result.output[..., shown]
    snr = _dwi_snr(arrays, result, shown, learned)
    uncertainty = None if result.uncertainty is None else result.uncertainty[..., shown]
    details = {"shown volume": f"{shown} (b = {table.bvals[shown]:g} s/mm^2), of "
                               f"{table.n_volumes}",
               "inputs": [Path(i["path"]).name for i in record["inputs"]],
               "mask": record["mask"], "model": record["model"],
               "groups": (len(result.plan.groups) if result.plan is not None
                          else "none (volume by volume)"),
               "directional contrast kept": record["directional_contrast_kept"]}
    timings = {"total wall time (s)": record["wall_seconds"], "compute": result.compute}
    write_report(path, inputs=reps, average=average, result=shown_out,
                 residual=reps[0] - shown_out, noise_map=result.noise_map,
                 uncertainty=uncertainty, mask=result.mask, affine=like.affine,
                 sigma=snr["sigma_rep"], snr=snr, config=record["config"],
                 warnings=record["warnings"], environment=record["environment"],
                 timings=timings, details=details,
                 title=f"noise2average QC report: {out.name}, volume {shown}")
