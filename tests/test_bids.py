"""n2a bids on a tiny BIDS dataset built here: discovery, derivatives, a real 2-worker Dask
cohort with one broken participant, resume rules and invalid datasets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_nifti
from noise2average import bids
from noise2average.cli import main

FAST = ["--steps", "2", "--iterations", "1", "--threads", "1", "--block", "32", "--quiet"]


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    return path


def _description(root, **extra):
    root.mkdir(parents=True, exist_ok=True)
    desc = {"Name": "tiny", "BIDSVersion": "1.10.0", **extra}
    (root / "dataset_description.json").write_text(json.dumps(desc))


@pytest.fixture()
def dataset(tmp_path, phantom):
    """sub-01 (session pre) and sub-03 with two T1w runs each; sub-02 broken (runs of
    different shapes). Volumes are 32^3 crops of the MNI152 phantom, int16."""
    reps, _, _ = phantom
    crop = [np.round(r[4:36, 4:36, 4:36] * 1000) for r in reps]
    root = tmp_path / "raw"
    _description(root)
    anat = {"01": root / "sub-01" / "ses-pre" / "anat", "02": root / "sub-02" / "anat",
            "03": root / "sub-03" / "anat"}
    for label, folder in anat.items():
        folder.mkdir(parents=True)
        ses = "_ses-pre" if label == "01" else ""
        for k, vol in enumerate(crop, 1):
            if label == "02" and k == 2:
                vol = vol[:30]
            write_nifti(folder / f"sub-{label}{ses}_run-{k}_T1w.nii.gz", vol, dtype=np.int16)
    return root


def test_file_names_and_groups(tmp_path):
    name = bids.parse_name("sub-01_ses-a_acq-fast_run-2_T1w.nii.gz")
    assert name.get("run") == "2" and name.suffix == "T1w" and name.ext == ".nii.gz"
    assert name.stem(drop=("run",), desc="denoised") == "sub-01_ses-a_acq-fast_desc-denoised_T1w"
    assert bids.parse_name("notes.txt") is None and bids.parse_name("sub-01_x_T1w.nii") is None
    assert bids.parse_name("dwi.bval", require_sub=False).suffix == "dwi"

    root = tmp_path / "raw"
    _description(root)
    anat, dwi = root / "sub-01" / "anat", root / "sub-01" / "dwi"
    for k in (10, 2):  # run-2 sorts before run-10
        _touch(anat / f"sub-01_acq-fast_run-{k}_T1w.nii.gz")
    for e in (1, 2):
        _touch(anat / f"sub-01_echo-{e}_part-mag_MEGRE.nii")
        _touch(anat / f"sub-01_echo-{e}_part-phase_MEGRE.nii")  # phase: not a repetition
    for d in ("AP", "PA"):
        _touch(dwi / f"sub-01_dir-{d}_dwi.nii.gz")
    _touch(dwi / "sub-01_dir-AP_dwi.bval")  # beside its image...
    _touch(root / "dwi.bval")  # ...or inherited from the top level
    _touch(root / "dwi.bvec")
    _touch(root / "sub-02" / "anat" / "sub-02_T1w.nii.gz")  # a single image: nothing to average
    out = tmp_path / "out"
    groups, empty = bids.discover(root, out, ["01", "02"])
    by_name = {g.name: g for g in groups}
    assert sorted(by_name) == ["acq-fast_T1w", "dwi", "part-mag_MEGRE"]
    t1 = by_name["acq-fast_T1w"]
    assert [p.name for p in t1.sources] == ["sub-01_acq-fast_run-2_T1w.nii.gz",
                                           "sub-01_acq-fast_run-10_T1w.nii.gz"]
    assert t1.output == out / "sub-01" / "anat" / "sub-01_acq-fast_desc-denoised_T1w.nii.gz"
    assert by_name["part-mag_MEGRE"].repeats == "echo"
    dw = by_name["dwi"]
    assert dw.output.name == "sub-01_desc-denoised_dwi.nii.gz" and dw.repeats == "dir"
    assert dw.bvals == [dwi / "sub-01_dir-AP_dwi.bval", root / "dwi.bval"]
    assert dw.bvecs == [root / "dwi.bvec"] * 2 and dw.problem is None
    assert [(r["participant_id"], r["status"]) for r in empty] == [("sub-02", "skipped")]


def test_cohort_on_a_local_dask_cluster(dataset, tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "derivatives" / "n2a"
    rc = main(["bids", str(dataset), str(out), "participant", "--participant_label", "01",
               "sub-02", "--workers", "2", *FAST])
    assert rc == 1  # sub-02 failed, the others went on
    table = capsys.readouterr().out
    assert "sub-01" in table and "sub-02" in table and "failed" in table

    den = out / "sub-01" / "ses-pre" / "anat" / "sub-01_ses-pre_desc-denoised_T1w.nii.gz"
    assert den.is_file()
    side = json.loads(den.with_name("sub-01_ses-pre_desc-denoised_T1w.json").read_text())
    assert side["Sources"] == [f"bids:raw:sub-01/ses-pre/anat/sub-01_ses-pre_run-{k}_T1w.nii.gz"
                               for k in (1, 2)]
    assert side["SkullStripped"] is False
    assert side["config"]["steps"] == 2 and side["config"]["threads"] == 1  # run_denoise's keys
    assert not (out / "sub-02" / "anat" / "sub-02_desc-denoised_T1w.nii.gz").exists()
    assert not (out / "sub-03").exists()  # not selected

    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"]
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "noise2average" and gen["Version"]
    assert "n2a bids" in gen["Description"] and "--workers 2" in gen["Description"]
    assert (out / desc["DatasetLinks"]["raw"]).resolve() == dataset.resolve()

    lines = (out / "n2a_summary.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, line.split("\t"))) for line in lines[1:]]
    status = {(r["participant_id"], r["session_id"]): r for r in rows}
    assert set(status) == {("sub-01", "ses-pre"), ("sub-02", "n/a")}
    assert status["sub-01", "ses-pre"]["status"] == "ok"
    assert float(status["sub-01", "ses-pre"]["seconds"]) > 0
    assert status["sub-02", "n/a"]["status"] == "failed"
    assert "shape" in status["sub-02", "n/a"]["error"]
    assert not [p for p in out.rglob("*") if ".part" in p.name]


def test_serial_run_existing_outputs_and_skipped_diffusion(dataset, tmp_path, capsys,
                                                           monkeypatch):
    # a DWI pair the installed workflow may not support: reported as skipped, never an error
    monkeypatch.setattr(bids, "diffusion_supported", lambda: False)
    dwi = dataset / "sub-03" / "dwi"
    for d in ("AP", "PA"):
        for ext in (".nii.gz", ".bval", ".bvec"):
            _touch(dwi / f"sub-03_dir-{d}_dwi{ext}")
    out = tmp_path / "out"
    argv = ["bids", str(dataset), str(out), "participant", "--participant-label", "sub-03",
            "--method", "average", "--quiet"]
    assert main(argv) == 0
    den = out / "sub-03" / "anat" / "sub-03_desc-denoised_T1w.nii.gz"
    assert den.is_file()
    rows = (out / "n2a_summary.tsv").read_text()
    assert "diffusion support not installed" in rows and "\tok\t" in rows
    capsys.readouterr()

    assert main(argv) == 2  # outputs exist: refuse before writing anything
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--skip-existing" in err[0]
    assert main(argv + ["--skip-existing"]) == 0
    assert "output exists" in (out / "n2a_summary.tsv").read_text()


def _one_error_line(argv, out, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("n2a bids: error:"), err
    assert not out.exists()  # nothing written
    return err[0]


def test_invalid_datasets_and_options(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _one_error_line(["bids", str(empty), str(out), "participant"], out, capsys)
    assert "no dataset_description.json" in err and "no sub-<label>" in err
    (dataset / "dataset_description.json").write_text(json.dumps({"Name": "x"}))
    err = _one_error_line(["bids", str(dataset), str(out), "participant"], out, capsys)
    assert "BIDSVersion" in err
    _description(dataset)
    err = _one_error_line(["bids", str(dataset), str(out), "participant",
                           "--participant_label", "01", "sub-07"], out, capsys)
    assert "07" in err and "01, 02, 03" in err
    err = _one_error_line(["bids", str(dataset), str(out), "participant",
                           "--session-label", "post"], out, capsys)
    assert "post" in err
    err = _one_error_line(["bids", str(dataset), str(dataset), "participant"], out, capsys)
    assert "BIDS_DIR" in err
    err = _one_error_line(["bids", str(dataset), str(out), "participant", "--force",
                           "--skip-existing"], out, capsys)
    assert "contradict" in err
    _one_error_line(["bids", str(dataset), str(out), "participant", "--steps", "-1"], out, capsys)


def test_missing_dask_is_one_error_line(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    out = tmp_path / "out"
    err = _one_error_line(["bids", str(dataset), str(out), "participant", "--workers", "2"],
                          out, capsys)
    assert "noise2average[cohort]" in err


def test_dwi_pairs_are_denoised_as_diffusion_series(tmp_path):
    """dir-AP/dir-PA series with an inherited .bval and per-series .bvec go through the real
    diffusion workflow (a conventional method keeps it fast) and the Sources list them all."""
    import nibabel as nib

    root = tmp_path / "raw"
    _description(root)
    dwi = root / "sub-01" / "dwi"
    dwi.mkdir(parents=True)
    rng = np.random.default_rng(0)
    bvecs = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                      [0.7071, 0.7071, 0], [0.7071, 0, 0.7071], [0, 0.7071, 0.7071]])
    bvals = np.array([0] + [1000] * 6)
    x = np.indices((16, 16, 16)) - 7.5
    brain = (x ** 2).sum(0) < 6.5 ** 2
    clean = np.stack([1000 * brain * np.exp(-b * 0.8e-3) for b in bvals], axis=-1)
    for d in ("PA", "AP"):
        noisy = clean + 30 * rng.standard_normal(clean.shape)
        nib.save(nib.Nifti1Image(noisy.astype(np.float32), np.eye(4)),
                 str(dwi / f"sub-01_acq-b1000_dir-{d}_dwi.nii.gz"))
        np.savetxt(dwi / f"sub-01_acq-b1000_dir-{d}_dwi.bvec", bvecs.T, fmt="%.4f")
    np.savetxt(root / "acq-b1000_dwi.bval", bvals[None], fmt="%d")  # inherited by both series
    out = tmp_path / "out"
    assert main(["bids", str(root), str(out), "participant", "--method", "average",
                 "--quiet"]) == 0
    den = out / "sub-01" / "dwi" / "sub-01_acq-b1000_desc-denoised_dwi.nii.gz"
    assert nib.load(str(den)).shape == (16, 16, 16, 7)
    side = json.loads(den.with_name(den.name.replace(".nii.gz", ".json")).read_text())
    assert side["Sources"][-1] == "bids:raw:sub-01/dwi/sub-01_acq-b1000_dir-PA_dwi.bvec"
    assert "bids:raw:acq-b1000_dwi.bval" in side["Sources"] and len(side["Sources"]) == 5


def test_time_left_is_measured_from_the_groups_done():
    from noise2average.bids import _time_left

    rows = [{"status": "ok", "seconds": 60.0}, {"status": "failed", "seconds": 1.0}]
    assert _time_left(rows, 6, parallel=False) == "; about 4.0 min left at this pace"
    assert _time_left(rows, 6, parallel=True) == ""
    assert _time_left(rows[1:], 6, parallel=False) == ""  # nothing denoised yet
    assert _time_left(rows, 2, parallel=False) == ""  # nothing left
