"""Registration of repetitions at the file level: ``n2a register`` and ``n2a denoise --register``.

Repetitions are registered rigidly to repetition 1 in world (scanner) space, so they may come on
different grids (shapes, voxel sizes, orientations), and are resampled once, with a cubic
B-spline, onto repetition 1's grid.

Transform files ``rep-K_to_rep-1.txt`` are ITK text transforms (what ANTs writes and reads):
the matrix maps a point of repetition 1 (the fixed image) in LPS millimetres to the matching
point of repetition K, which is the transform that resamples repetition K onto repetition 1
(``antsApplyTransforms -i rep-K.nii.gz -r rep-1.nii.gz -t rep-K_to_rep-1.txt``). The sidecars
hold the same map in nibabel's RAS millimetres and as a voxel-to-voxel matrix.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .errors import InputError

CONVENTION = ("world_fixed_to_moving_ras_mm maps a point of rep-1 (RAS mm) to the matching point "
              "of this repetition; voxel_fixed_to_moving maps rep-1 voxel indices to this "
              "repetition's voxel indices; the .txt is the same map as an ITK transform (LPS mm), "
              "usable with antsApplyTransforms -r rep-1 -t FILE")


def register_repetitions(arrays: list[np.ndarray], affines: list[np.ndarray],
                         mask: np.ndarray | None = None, *, quiet: bool = True,
                         names: list[str] | None = None):
    """Register repetitions 2..N to repetition 1 and resample them onto its grid.

    Parameters
    ----------
    arrays : list of 3D ndarray
        Repetitions, each on its own grid; the first is the reference.
    affines : list of (4, 4) ndarray
        Voxel -> world (mm) of each repetition.
    mask : bool ndarray on repetition 1's grid, optional
        Where registration looks (a brain mask is best; default: a head mask of repetition 1).
    quiet : bool
        No progress lines on stderr.
    names : list of str, optional
        How progress lines name the repetitions.

    Returns
    -------
    (list of float32 ndarray on repetition 1's grid, list of dict)
        The repetitions (the first unchanged) and one JSON-ready record per registered
        repetition (matrices, parameters, metric, seconds).
    """
    from .arrays.registration import apply_rigid, rigid_register

    fixed, fixed_affine = arrays[0], affines[0]
    out = [np.asarray(fixed, dtype=np.float32)]
    records = []
    names = names or [f"rep-{k}" for k in range(1, len(arrays) + 1)]
    for k in range(1, len(arrays)):
        res = rigid_register(fixed, arrays[k], mask=mask, fixed_affine=fixed_affine,
                             moving_affine=affines[k])
        moved = apply_rigid(arrays[k], res.matrix, shape=fixed.shape, order=3, mode="constant")
        if arrays[k].min() >= 0:  # cubic overshoot would put negatives into magnitude images
            np.clip(moved, 0, None, out=moved)
        out.append(moved)
        records.append({"repetition": k + 1, "method": "rigid: DIPY mutual information "
                        "(shrink 8, 4) then Gauss-Newton on NCC (shrink 2, 1); cubic B-spline "
                        "resampling", **res.to_dict(), "convention": CONVENTION})
        if not quiet:
            print(f"n2a: registered {names[k]} to {names[0]}: rotation "
                  f"{np.round(res.rotation_deg, 2).tolist()} deg, translation "
                  f"{np.round(res.translation_mm, 2).tolist()} mm, NCC {res.metric:.4f} "
                  f"({res.seconds:.1f} s)", file=sys.stderr)
    return out, records


def run_register(reps, output_dir, mask=None, *, force: bool = False, quiet: bool = True):
    """``n2a register``: write rep-1 and every registered repetition on rep-1's grid, the ITK
    transforms and a JSON sidecar per image, after checking every input and output."""
    from .io import nifti
    from .io.transforms import write_itk_affine
    from .provenance import environment, file_sha256, write_sidecar
    from .io.paths import check_output

    t0 = time.perf_counter()
    paths = [Path(p) for p in reps]
    outdir = Path(output_dir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output {outdir} exists and is not a folder")
    arrays, imgs = nifti.load_repetitions(paths, needs="registration", same_grid=False)
    mask_path = Path(mask) if mask else None
    mask_arr = nifti.load_mask(mask_path, arrays[0].shape, imgs[0].affine) if mask_path else None
    inputs = paths + ([mask_path] if mask_path else [])
    files = {"rep-1": outdir / "rep-1.nii.gz"}
    for k in range(2, len(paths) + 1):
        files[f"rep-{k}"] = outdir / f"rep-{k}_registered.nii.gz"
        files[f"xfm-{k}"] = outdir / f"rep-{k}_to_rep-1.txt"
    for f in files.values():
        check_output(f, inputs, force)
    for f in list(files.values()):
        if f.name.endswith(".nii.gz"):
            check_output(f.with_name(f.name[:-7] + ".json"), inputs, force)
    registered, records = register_repetitions(arrays, [i.affine for i in imgs], mask_arr,
                                               quiet=quiet, names=[str(p) for p in paths])
    sources = [{"path": str(p), "sha256": file_sha256(p)} for p in inputs]
    common = {"Sources": sources, "mask": str(mask_path) if mask_path else
              "automatic head mask of rep-1", "environment": environment(),
              "wall_seconds": round(time.perf_counter() - t0, 2)}
    nifti.save_volume(files["rep-1"], registered[0], imgs[0])
    write_sidecar(files["rep-1"], {"Description": "repetition 1, the registration reference, "
                                   "as float32 on its own grid", "role": "reference", **common})
    for k, (vol, rec) in enumerate(zip(registered[1:], records), 2):
        write_itk_affine(files[f"xfm-{k}"], np.asarray(rec["world_fixed_to_moving_ras_mm"]))
        nifti.save_volume(files[f"rep-{k}"], vol, imgs[0])
        write_sidecar(files[f"rep-{k}"], {
            "Description": f"repetition {k} rigidly registered to repetition 1 and resampled "
                           "onto its grid", "role": "registered",
            "transform": str(files[f"xfm-{k}"]),
            "registration": rec, **common})
    if not quiet:
        print(f"n2a register: wrote {outdir} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return records
