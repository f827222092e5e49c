"""The QC report of ``n2a denoise``: written by real runs, opened in a real headless browser
(Debian's chromium), every image checked to have loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from noise2average.arrays.snr import snr_summary
from noise2average.cli import main
from noise2average.io.report import _Views

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs Debian's chromium in .ci/run)")

SECTIONS = ("snr", "views", "loss", "config", "environment", "timings")
FAST = ["--threads", "1", "--quiet", "--block", "48"]

# Appended to a copy of the report: once the page has loaded, count the images that decoded.
PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-img-ok", String(ok));
  document.body.setAttribute("data-img-total", String(imgs.length));
});
</script>"""


def open_in_browser(html_text: str, tmp_path, name: str) -> tuple[int, int, str]:
    """(images loaded, images in the page, the DOM) after chromium loaded the page."""
    page = tmp_path / f"{name}.html"
    page.write_text(html_text.replace("</body>", PROBE + "</body>"))
    profile = tmp_path / f"{name}-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           "--virtual-time-budget=15000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = proc.stdout
    ok = re.search(r'data-img-ok="(\d+)"', dom)
    total = re.search(r'data-img-total="(\d+)"', dom)
    assert ok and total, f"the page never finished loading in chromium: {proc.stderr[-2000:]}"
    return int(ok.group(1)), int(total.group(1)), dom


def check_self_contained(text: str) -> None:
    assert "://" not in text  # no external URL: the file works offline and leaks nothing
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in text


def corrupt_first_image(text: str) -> str:
    """The first PNG's signature replaced: the browser cannot decode that image."""
    marker = "data:image/png;base64,iVBORw0KGgo"
    assert marker in text
    return text.replace(marker, "data:image/png;base64,AAAAAAAAAAAA", 1)


@needs_browser
def test_n2a_report_opens_in_a_browser_with_every_image(nifti_case, tmp_path):
    d, reps, mask = nifti_case
    out = d / "den.nii.gz"
    assert main(["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask),
                 "--steps", "2", "--iterations", "2", "--init", "scratch", "--preset", "tiny",
                 *FAST]) == 0
    report = d / "den_report.html"
    side = json.loads((d / "den.json").read_text())
    assert side["outputs"]["report"] == str(report)
    text = report.read_text()
    assert report.stat().st_size < 2_000_000
    check_self_contained(text)
    ok, total, dom = open_in_browser(text, tmp_path, "n2a")
    # 2 repetitions, average, result, residual, noise map, loss (+ uncertainty when given)
    assert total == text.count("<img") and total >= 7
    assert ok == total, f"{total - ok} of {total} images did not load"
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert 'id="loss-plot"' in dom and 'id="view-residual"' in dom
    snr = side["snr_estimate"]
    assert snr["snr_average"] == pytest.approx(snr["snr_rep"] * np.sqrt(2))
    assert snr["snr_result"] > 0  # measured from the denoised repetitions' disagreement
    # the check itself: one broken image is caught
    ok, total, _ = open_in_browser(corrupt_first_image(text), tmp_path, "broken")
    assert ok == total - 1


@needs_browser
def test_conventional_method_report_has_no_after_snr(nifti_case, tmp_path):
    d, reps, mask = nifti_case
    out = d / "avg.nii.gz"
    argv = ["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask), "--method",
            "average", *FAST]
    assert main(argv) == 0
    report = d / "avg_report.html"
    text = report.read_text()
    check_self_contained(text)
    ok, total, dom = open_in_browser(text, tmp_path, "average")
    assert ok == total == 6  # 2 repetitions, average, result, residual, noise map; no loss
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert "No training" in dom and 'id="loss-plot"' not in dom
    snr_html = dom[dom.index('id="snr"'):dom.index('id="views"')]
    assert "n/a" in snr_html
    assert json.loads((d / "avg.json").read_text())["snr_estimate"]["snr_result"] is None
    # the report is an output like the others: never overwritten without --force
    before = report.read_bytes()
    out.unlink()
    assert main(argv) == 2 and report.read_bytes() == before
    assert main(argv + ["--force"]) == 0


def test_no_report_flag(nifti_case):
    d, reps, mask = nifti_case
    out = d / "plain.nii.gz"
    assert main(["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask), "--method",
                 "average", "--no-report", *FAST]) == 0
    assert out.is_file() and not (d / "plain_report.html").exists()
    assert "report" not in json.loads((d / "plain.json").read_text())["outputs"]
    assert not [p for p in os.listdir(d) if ".part" in p]


def test_views_follow_the_affine():
    """A marker on the subject's right, superior and anterior lands on the right of the axial
    and coronal views, at the top of the coronal and sagittal views, and on the right of the
    sagittal view, whatever the voxel order; extents are in mm."""
    vol = np.zeros((10, 12, 8), np.float32)
    vol[1, 10, 6] = 1  # LAS affine below: voxel x=1 is near the right, y=10 anterior, z=6 up
    affine = np.array([[-2.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])
    views = _Views(affine, vol > 0, vol.shape)
    axial, coronal, sagittal = views.cut(vol)
    for view in (axial, coronal, sagittal):  # rows drawn bottom-up (origin="lower")
        r, c = np.argwhere(view > 0)[0]
        assert r >= view.shape[0] / 2 and c >= view.shape[1] / 2
    assert views.extents[0] == (0, 20.0, 0, 12.0) and views.extents[2] == (0, 12.0, 0, 24.0)


def test_snr_estimates_match_known_noise():
    rng = np.random.default_rng(0)
    clean = np.full((30, 30, 30), 2.0, np.float32)
    mask = np.ones(clean.shape, bool)
    reps = [clean + 0.2 * rng.standard_normal(clean.shape, dtype=np.float32) for _ in range(3)]
    den = [clean + 0.05 * rng.standard_normal(clean.shape, dtype=np.float32) for _ in range(3)]
    s = snr_summary(reps, mask, denoised=den, result=np.mean(den, axis=0))
    assert s["sigma_rep"] == pytest.approx(0.2, rel=0.05)
    assert s["snr_average"] == pytest.approx(2.0 / (0.2 / np.sqrt(3)), rel=0.05)
    assert s["sigma_result"] == pytest.approx(0.05 / np.sqrt(3), rel=0.05)
    assert s["residual_sd"] == pytest.approx(np.hypot(0.2, 0.05 / np.sqrt(3)), rel=0.05)
    assert snr_summary(reps, mask, 0.2)["snr_result"] is None
