"""File-level diffusion workflows behind ``n2a dti-split``, ``n2a dti-metrics`` and
``n2a simulate --dwi``: read and check every input and output first, compute on arrays, then
write each file atomically (NIfTI float32 with the input's geometry, FSL bvals/bvecs, JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import InputError

METRIC_NAMES = ("FA", "MD", "AD", "RD", "V1")
METRIC_UNITS = {"FA": "1", "MD": "mm^2/s", "AD": "mm^2/s", "RD": "mm^2/s",
                "V1": "unit vector (voxel axes)"}


def _check_outputs(paths, inputs, force: bool) -> None:
    from .workflows import _check_output

    for p in paths:
        _check_output(Path(p), [Path(i) for i in inputs], force)


def light_environment() -> dict:
    """Versions that a diffusion run depends on (no torch import: these runs do not use it)."""
    import platform

    import dipy
    import nibabel
    import scipy

    from . import __version__

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
              f"(b={record['shell']:g}) "
              f"in {outdir}/; subset condition numbers {conds}", file=sys.stderr)


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
