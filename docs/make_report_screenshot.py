"""Regenerate docs/report_screenshot.png: a real `n2a denoise` QC report, photographed by
headless chromium.

A centred 64^3 crop of the MNI152 template (shipped with nilearn), two protocol-v1 repetitions
(sigma 0.05), Noise2Average with the shipped model, 2 iterations of 40 steps.

    .venv/bin/python docs/make_report_screenshot.py [WORKDIR]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from noise2average.arrays.masking import centred_cube
from noise2average.arrays.simulate import SimulationConfig, simulate
from noise2average.cli import main
from noise2average.io.templates import mni152

DOCS = Path(__file__).resolve().parent


def run(work: Path) -> Path:
    t1, mask, affine = mni152()
    sl = centred_cube(mask, 64)
    like = nib.Nifti1Image(t1, affine).slicer[sl]
    reps, _, _ = simulate(t1[sl], mask[sl], (1.0, 1.0, 1.0), SimulationConfig(sigma=0.05, seed=0))
    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rep in enumerate(reps, 1):
        paths.append(work / f"sub-01_run-{k}_T1w.nii.gz")
        nib.save(nib.Nifti1Image(rep, like.affine), paths[-1])
    mpath = work / "sub-01_brainmask.nii.gz"
    nib.save(nib.Nifti1Image(mask[sl].astype(np.uint8), like.affine), mpath)
    out = work / "sub-01_desc-n2a_T1w.nii.gz"
    rc = main(["denoise", *map(str, paths), "-o", str(out), "--mask", str(mpath),
               "--steps", "40", "--iterations", "2", "--quiet", "--force"])
    if rc:
        sys.exit(rc)
    return work / "sub-01_desc-n2a_T1w_report.html"


def screenshot(report: Path, png: Path, profile: Path) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--hide-scrollbars", f"--user-data-dir={profile}",
                    f"--screenshot={png}", "--window-size=1200,2400", report.as_uri()],
                   check=True, capture_output=True, timeout=180)
    # a 256-colour palette: a third of the size in the repository, no visible change
    Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)


if __name__ == "__main__":
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="n2a-report-"))
    report = run(work)
    screenshot(report, DOCS / "report_screenshot.png", work / "chromium-profile")
    print(f"report: {report} ({report.stat().st_size / 1e6:.2f} MB); "
          f"screenshot: {DOCS / 'report_screenshot.png'}")
