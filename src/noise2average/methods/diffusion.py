"""Conventional diffusion denoisers for 4D series, with the call shape of
:mod:`noise2average.methods.classical`: ``method(reps, mask, sigma, *, bvals=None) -> array``.

``reps`` are N repetitions of one DWI series, each (X, Y, Z, V) with V volumes in the series
order; the result is one (X, Y, Z, V) array. Each method denoises every repetition on its own
(MP-PCA and Patch2Self need the whole series, all directions, not a diffusion group) and
averages the denoised repetitions - what a user with an AP and a PA series would do before
combining them. ``sigma`` (one repetition's noise SD) is not used: MP-PCA estimates the noise
from the eigenvalue spectrum and Patch2Self needs no noise model.

- ``mppca``: DIPY ``dipy.denoise.localpca.mppca`` (Marchenko-Pastur PCA, 5^3 patches);
- ``dwidenoise``: MRtrix3 ``dwidenoise`` (MP-PCA, Cordero-Grande estimator; Debian package
  ``mrtrix3``), run through a temporary folder;
- ``patch2self``: DIPY ``dipy.denoise.patch2self.patch2self`` (self-supervised regression of
  each volume on the others, OLS, DIPY's default version 3; needs the b-values). DIPY 1.12's
  version 3 fails on some volume counts (14 among 7-39) with a shape error: the series is then
  run with one all-zero DWI appended (an uninformative regressor) and that volume dropped.
  Its version 1 returns unscaled output in DIPY 1.12 and is not used;
- ``average``: the plain average of the repetitions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError

DwiMethod = Callable[..., np.ndarray]

#: where each method comes from (shown when it is missing)
SOURCES = {"mppca": "the Python package 'dipy'", "patch2self": "the Python package 'dipy'",
           "dwidenoise": "MRtrix3 (Debian package 'mrtrix3')"}


def _check(reps: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(r, np.float32) for r in reps]
    if not arrays or any(a.ndim != 4 for a in arrays):
        raise InputError("diffusion methods need 4D (X, Y, Z, volumes) repetitions")
    return arrays


def _mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean(arrays, axis=0, dtype=np.float64).astype(np.float32)


def average(reps, mask, sigma, *, bvals=None) -> np.ndarray:
    """The plain average of the repetitions."""
    return _mean(_check(reps))


def mppca(reps, mask, sigma, *, bvals=None) -> np.ndarray:
    """DIPY MP-PCA (patch radius 2) on each repetition, then averaged."""
    try:
        from dipy.denoise.localpca import mppca as dipy_mppca
    except ImportError as exc:
        raise InputError(f"method 'mppca' needs {SOURCES['mppca']}: pip install dipy") from exc
    out = [dipy_mppca(r, mask=np.asarray(mask, bool), patch_radius=2, out_dtype=np.float32)
           for r in _check(reps)]
    return _mean(out)


def dwidenoise_path() -> str | None:
    """The ``dwidenoise`` executable on PATH (or Debian's /usr/bin), or None."""
    found = shutil.which("dwidenoise")
    if found is None and os.access("/usr/bin/dwidenoise", os.X_OK):
        found = "/usr/bin/dwidenoise"
    return found


def dwidenoise(reps, mask, sigma, *, bvals=None, threads: int = 1) -> np.ndarray:
    """MRtrix3 ``dwidenoise`` (default extent and estimator) on each repetition, then averaged."""
    import nibabel as nib

    exe = dwidenoise_path()
    if exe is None:
        raise InputError(f"method 'dwidenoise' needs {SOURCES['dwidenoise']}: "
                         "apt-get install mrtrix3")
    arrays = _check(reps)
    out = []
    with tempfile.TemporaryDirectory(prefix="n2a-dwidenoise-") as tmp:
        d = Path(tmp)
        nib.save(nib.Nifti1Image(np.asarray(mask, np.uint8), np.eye(4)), str(d / "mask.nii"))
        for k, rep in enumerate(arrays):
            src, dst = d / f"in{k}.nii", d / f"out{k}.nii"
            nib.save(nib.Nifti1Image(rep, np.eye(4)), str(src))
            cmd = [exe, str(src), str(dst), "-mask", str(d / "mask.nii"), "-nthreads",
                   str(threads), "-quiet", "-force"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise InputError(f"dwidenoise failed ({proc.returncode}): {msg}")
            out.append(np.asarray(nib.load(str(dst)).dataobj, dtype=np.float32))
    return _mean(out)


def patch2self(reps, mask, sigma, *, bvals=None) -> np.ndarray:
    """DIPY Patch2Self (OLS, version 3) on each repetition, then averaged."""
    if bvals is None:
        raise InputError("method 'patch2self' needs the b-values")
    try:
        from dipy.denoise.patch2self import patch2self as dipy_p2s
    except ImportError as exc:
        raise InputError(f"method 'patch2self' needs {SOURCES['patch2self']}: "
                         "pip install dipy") from exc
    bvals = np.asarray(bvals, np.float64).reshape(-1)

    def run(rep: np.ndarray) -> np.ndarray:
        try:
            return dipy_p2s(rep, bvals, model="ols", out_dtype=np.float32)
        except ValueError:  # DIPY 1.12 version-3 chunking bug (module text)
            padded = np.concatenate([rep, np.zeros_like(rep[..., :1])], axis=3)
            b = np.append(bvals, bvals.max())
            return dipy_p2s(padded, b, model="ols", out_dtype=np.float32)[..., :-1]

    return _mean([np.asarray(run(r), np.float32) for r in _check(reps)])


def _volume_by_volume(name: str) -> DwiMethod:
    """A 3D method of :mod:`.classical` applied to each volume of the repetitions' average,
    as a user of that tool denoises a diffusion series (``sigma``: one repetition's noise SD,
    over all volumes)."""

    def run(reps, mask, sigma, *, bvals=None) -> np.ndarray:
        from .classical import CLASSICAL

        arrays = _check(reps)
        mask = np.asarray(mask, bool)
        out = [CLASSICAL[name]([a[..., v] for a in arrays], mask, sigma)
               for v in range(arrays[0].shape[3])]
        return np.stack(out, axis=3).astype(np.float32)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"{name} (3D) on each volume of the average of the repetitions."
    return run


#: Methods for 4D (diffusion) input; the learned ones run through noise2average.diffusion.
DIFFUSION: dict[str, DwiMethod] = {"average": average, "mppca": mppca,
                                   "dwidenoise": dwidenoise, "patch2self": patch2self,
                                   "bm4d": _volume_by_volume("bm4d"),
                                   "aonlm": _volume_by_volume("aonlm")}
