"""The n2a command line on real NIfTI files: round trip, bad input, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from conftest import AFFINE, write_nifti
from noise2average.arrays.simulate import SimulationConfig, simulate
from noise2average.cli import main

FAST = ["--steps", "3", "--threads", "1", "--quiet", "--block", "48"]


def test_round_trip_keeps_geometry_and_writes_sidecars(nifti_case):
    d, reps, mask = nifti_case
    out = d / "out" / "den.nii.gz"
    rc = main(["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask),
               "--save-reps", "--save-noise-map", "--save-iterations", *FAST])
    assert rc == 0
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, AFFINE)
    assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(AFFINE)
    data = img.get_fdata()
    assert 500 < np.median(data[data > 0]) < 1500  # back on the input's intensity scale
    side = json.loads((d / "out" / "den.json").read_text())
    assert side["config"]["method"] == "n2a-aligned" and side["config"]["steps"] == 3
    assert side["config"]["align"] == "auto"  # resolved per method: n2a-aligned registers
    assert all("frame_shift_voxels" in h for h in side["history"])
    assert side["config"]["lr_axis"] == 0
    assert len(side["inputs"]) == 3 and all(len(i["sha256"]) == 64 for i in side["inputs"])
    assert "torch" in side["environment"]
    assert len(side["model"]["sha256"]) == 64 and side["model"]["init"] == "pretrained"
    for name in ("den_rep-1", "den_rep-2", "den_noisemap", "den_iter-1", "den_iter-2"):
        assert (d / "out" / f"{name}.nii.gz").is_file() and (d / "out" / f"{name}.json").is_file()
    assert not (d / "out" / "den.ckpt").exists()  # removed once the outputs are complete
    report = (d / "out" / "den_report.html").read_text()
    kept = side["selected_iteration"]
    assert (f"iteration {kept} of 2" if kept else "the pre-trained network without fine-tuning") \
        in report
    assert 'id="warnings"' in report and "Verdict" in report
    assert isinstance(side["warnings"], list)
    assert not [p for p in (d / "out").iterdir() if ".part" in p.name]


def test_one_4d_file_of_repetitions_and_the_run_summary(nifti_case, capsys):
    d, reps, mask = nifti_case
    series = write_nifti(d / "series.nii.gz",
                         np.stack([nib.load(str(p)).get_fdata() for p in reps], axis=-1),
                         dtype=np.int16)
    # the two inputs' equivalence is under test, not the output pass's tuning
    args = ["--mask", str(mask), "--steps", "3", "--threads", "1", "--block", "48",
            "--set", "output_tuning=none"]
    assert main(["denoise", str(reps[0]), str(reps[1]), "-o", str(d / "a.nii.gz"), *args,
                 "--quiet"]) == 0
    assert main(["denoise", str(series), "-o", str(d / "b.nii.gz"), *args]) == 0
    a, b = (nib.load(str(d / f"{n}.nii.gz")) for n in "ab")
    assert b.shape == a.shape and len(b.shape) == 3
    np.testing.assert_allclose(b.get_fdata(), a.get_fdata(), rtol=1e-5, atol=1e-3)
    err = capsys.readouterr().err
    assert "wrote" in err and "gain:" in err and "mask:    given" in err
    assert str(d / "b_report.html") in err
    capsys.readouterr()
    single = write_nifti(d / "single.nii.gz", nib.load(str(reps[0])).get_fdata()[..., None],
                         dtype=np.int16)
    assert main(["denoise", str(single), "-o", str(d / "c.nii.gz"), *args]) != 0
    assert "one 4D file whose volumes are the repetitions" in capsys.readouterr().err


def test_api_file_wrapper_without_mask(nifti_case):
    from noise2average import denoise_files

    d, reps, _ = nifti_case
    result = denoise_files(reps, d / "api.nii.gz", steps=2, threads=1, block_size=48)
    assert (d / "api.nii.gz").is_file() and (d / "api.json").is_file()
    assert result.mask.any() and np.abs(result.output[~result.mask]).max() > 0  # the whole FOV
    side = json.loads((d / "api.json").read_text())
    assert side["mask"].startswith("automatic")


def _run_bad(argv, d, capsys):
    before = sorted(p.name for p in d.rglob("*"))
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "error" in err[0], err
    assert sorted(p.name for p in d.rglob("*")) == before  # nothing written
    return err[0]


def test_bad_inputs_fail_with_one_line(nifti_case, capsys):
    d, reps, mask = nifti_case
    r1, r2 = map(str, reps)
    rng = np.random.default_rng(0)
    good = nib.load(r1).get_fdata()
    small = write_nifti(d / "small.nii.gz", good[:-2])
    shifted = AFFINE.copy()
    shifted[0, 3] += 3.0
    moved = write_nifti(d / "moved.nii.gz", good, shifted)
    four = write_nifti(d / "four.nii.gz", np.stack([good, good], -1))
    nan = good.copy()
    nan[5, 5, 5] = np.nan
    nanf = write_nifti(d / "nan.nii.gz", nan.astype(np.float32))
    empty = write_nifti(d / "empty.nii.gz", np.zeros(good.shape, np.uint8))
    wrong_mask = write_nifti(d / "wmask.nii.gz", np.ones((4, 4, 4), np.uint8))
    garbage = d / "garbage.nii.gz"
    garbage.write_bytes(rng.bytes(300))
    existing = d / "exists.nii.gz"
    existing.write_bytes(b"keep me")
    out = str(d / "o.nii.gz")
    cases = {
        "shape": [r1, str(small)],
        "affine": [r1, str(moved)],
        "4D": [r1, str(four)],
        "NaN": [r1, str(nanf)],
        "empty mask": [r1, r2, "--mask", str(empty)],
        "mask shape": [r1, r2, "--mask", str(wrong_mask)],
        "single": [r1],
        "unreadable": [r1, str(garbage)],
        "missing": [r1, str(d / "nope.nii.gz")],
    }
    expect = {"shape": "shape", "affine": "affine", "4D": "4D", "NaN": "NaN",
              "empty mask": "empty", "mask shape": "shape", "single": "at least 2",
              "unreadable": "cannot read", "missing": "not found"}
    for name, args in cases.items():
        msg = _run_bad(["denoise", *args, "-o", out, *FAST], d, capsys)
        assert expect[name] in msg, (name, msg)
    msg = _run_bad(["denoise", r1, r2, "-o", r1, *FAST], d, capsys)
    assert "also an input" in msg
    msg = _run_bad(["denoise", r1, r2, "-o", str(existing), *FAST], d, capsys)
    assert "--force" in msg and existing.read_bytes() == b"keep me"
    msg = _run_bad(["denoise", r1, r2, "-o", str(d / "x.txt"), *FAST], d, capsys)
    assert ".nii" in msg


def test_overwrite_needs_force(nifti_case):
    d, reps, mask = nifti_case
    out = d / "o.nii.gz"
    out.write_bytes(b"old")
    argv = ["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask), "--method", "average",
            "--quiet"]
    assert main(argv) == 2 and out.read_bytes() == b"old"
    assert main(argv + ["--force"]) == 0
    assert nib.load(str(out)).shape == nib.load(str(reps[0])).shape


def test_interrupted_run_resumes_after_its_last_iteration(nifti_case):
    d, reps, mask = nifti_case
    out = d / "r.nii.gz"
    ckpt = d / "r.ckpt"
    argv = [sys.executable, "-m", "noise2average.cli", "denoise", *map(str, reps), "-o", str(out),
            "--mask", str(mask), "--iterations", "3", "--steps", "40", "--threads", "1",
            "--quiet", "--block", "48", "--set", "output_tuning=none"]  # resuming is under test
    proc = subprocess.Popen(argv)
    deadline = time.time() + 900  # a guard against a hang, generous for a loaded machine
    while not (ckpt / "state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = json.loads((ckpt / "state.json").read_text())["iteration"]
    assert done >= 1
    # a fresh run refuses to clobber the checkpoint
    assert subprocess.run(argv, capture_output=True).returncode == 2
    res = subprocess.run(argv + ["--resume", "--save-iterations"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    side = json.loads((d / "r.json").read_text())
    assert [h["iteration"] for h in side["history"]] == [1, 2, 3]
    trained_now = [h for h in side["history"] if "train_seconds" in h]
    assert all((d / f"r_iter-{i}.nii.gz").is_file() for i in (1, 2, 3))
    assert not ckpt.exists()
    assert len(trained_now) == 3  # the history of resumed iterations is carried over


def test_simulate_and_evaluate(tmp_path, mni_crop, capsys):
    t1, mask = mni_crop
    ref = write_nifti(tmp_path / "t1.nii.gz", t1)
    m = write_nifti(tmp_path / "m.nii.gz", mask.astype(np.uint8))
    out = tmp_path / "sim"
    assert main(["simulate", "--reference", str(ref), "--mask", str(m), "--sigma", "0.05",
                 "--reps", "3", "--echo", "--seed", "4", "-o", str(out)]) == 0
    rec = json.loads((out / "simulation.json").read_text())
    assert len(rec["repetitions"]) == 3 and rec["repetitions"][1]["echo"]
    assert rec["repetitions"][0]["rotation_deg"] == [0.0, 0.0, 0.0]
    assert max(abs(a) for a in rec["repetitions"][2]["rotation_deg"]) <= 2.0
    again = tmp_path / "sim2"
    main(["simulate", "--reference", str(ref), "--mask", str(m), "--sigma", "0.05", "--reps", "3",
          "--echo", "--seed", "4", "-o", str(again)])
    a = nib.load(str(out / "rep-2.nii.gz")).get_fdata()
    np.testing.assert_array_equal(a, nib.load(str(again / "rep-2.nii.gz")).get_fdata())
    capsys.readouterr()
    assert main(["evaluate", "--reference", str(out / "reference.nii.gz"), "--mask",
                 str(out / "mask.nii.gz"), str(out / "rep-1.nii.gz"), str(out / "rep-2.nii.gz"),
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    r1 = scores[str(out / "rep-1.nii.gz")]
    assert 20 < r1["psnr"] < 32 and r1["sharpness"] > 1.0  # noise adds gradient energy


@pytest.mark.parametrize("args,msg", [
    (["--sigma", "0"], "sigma"), (["--reps", "1"], "reps")])
def test_simulate_rejects_bad_values(tmp_path, mni_crop, capsys, args, msg):
    t1, mask = mni_crop
    ref = write_nifti(tmp_path / "t1.nii.gz", t1)
    m = write_nifti(tmp_path / "m.nii.gz", mask.astype(np.uint8))
    rc = main(["simulate", "--reference", str(ref), "--mask", str(m), "-o", str(tmp_path / "s"), *args])
    assert rc == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_pretrain_writes_a_loadable_model_and_resumes(tmp_path, mni_crop):
    from noise2average.io.weights import load_model

    t1, mask = mni_crop
    img = write_nifti(tmp_path / "clean.nii.gz", t1)
    m = write_nifti(tmp_path / "mask.nii.gz", mask.astype(np.uint8))
    out = tmp_path / "m.safetensors"
    base = ["pretrain", "--images", str(img), "--masks", str(m), "--preset", "tiny", "--patch", "16",
            "--threads", "1", "--quiet", "-o", str(out), "--checkpoint-every", "2"]
    assert main(base + ["--steps", "2"]) == 0
    state = json.loads((tmp_path / "m.safetensors.ckpt" / "state.json").read_text())
    assert state["step"] == 2
    assert main(base + ["--steps", "4", "--resume", "--force"]) == 0
    model, meta = load_model(out)
    assert json.loads(meta["steps_done"]) == 4 and model.config.width == 8


def test_benchmark_runs_every_method_on_one_case(tmp_path, mni_crop):
    t1, mask = mni_crop
    ref = write_nifti(tmp_path / "t1.nii.gz", t1)
    m = write_nifti(tmp_path / "m.nii.gz", mask.astype(np.uint8))
    out = tmp_path / "bench"
    methods = ["average", "nlmeans", "aonlm", "bm4d", "pretrained", "n2a", "supervised"]
    rc = main(["benchmark", "--reference", str(ref), "--mask", str(m), "--crop", "24",
               "--steps", "2", "--iterations", "2", "--methods", *methods, "--threads", "1",
               "--quiet", "-o", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    rows = {(r["method"], r["output"]): r for r in res["rows"]}
    for meth in methods:
        assert rows[(meth, "average")]["psnr"] > 0, meth
        assert rows[(meth, "average")]["seconds"] >= 0 and rows[(meth, "average")]["peak_rss_gb"] > 0
    assert ("n2a", "rep 1") in rows and ("n2a iter 2", "average") in rows
    # every conventional denoiser improves on the plain average
    for meth in ("nlmeans", "aonlm", "bm4d"):
        assert rows[(meth, "average")]["psnr"] > rows[("average", "average")]["psnr"], meth
    assert (out / "results.md").read_text().count("\n|") >= len(methods) + 3
    assert (out / "results.png").stat().st_size > 10_000


def test_echo_benchmark_also_scores_against_the_mean_of_the_echoes(tmp_path, mni_crop):
    """Echo variant: the protocol's table (echo 1) and a second one against the mean of both
    echoes' anatomy, which the plain average estimates without the later echo's darkening."""
    from noise2average.arrays.simulate import SimulationConfig, later_echo_scale, mean_anatomy

    t1, mask = mni_crop
    ref = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    cfg = SimulationConfig(reps=2, echo=True)
    scale = later_echo_scale(ref, mask, cfg)
    assert np.exp(-5 / 45) - 1e-6 <= scale[mask].min() and scale[mask].max() <= np.exp(-5 / 150) + 1e-6
    np.testing.assert_allclose(mean_anatomy(ref, mask, cfg), ref * (1 + scale) / 2, rtol=1e-6)
    np.testing.assert_array_equal(mean_anatomy(ref, mask, SimulationConfig()), ref)

    r = write_nifti(tmp_path / "t1.nii.gz", t1)
    m = write_nifti(tmp_path / "m.nii.gz", mask.astype(np.uint8))
    out = tmp_path / "bench"
    assert main(["benchmark", "--reference", str(r), "--mask", str(m), "--crop", "24", "--echo",
                 "--methods", "average", "--threads", "1", "--quiet", "-o", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    echo1 = {(x["method"], x["output"]): x["psnr"] for x in res["rows"]}
    mean = {(x["method"], x["output"]): x["psnr"] for x in res["rows_echo_mean"]}
    assert mean[("average", "average")] > echo1[("average", "average")] + 1.0
    assert "mean of the echoes" in (out / "results.md").read_text()


def test_classical_method_through_denoise(nifti_case):
    d, reps, mask = nifti_case
    out = d / "nlm.nii.gz"
    assert main(["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask),
                 "--method", "nlmeans", "--quiet"]) == 0
    side = json.loads((d / "nlm.json").read_text())
    assert side["config"]["method"] == "nlmeans" and nib.load(str(out)).shape == (40, 40, 40)
    assert main(["denoise", *map(str, reps), "-o", str(d / "x.nii.gz"), "--method", "bm4d",
                 "--save-reps", "--quiet"]) == 2


def test_set_reaches_any_config_field_and_refuses_what_is_not_one(nifti_case, capsys):
    d, reps, mask = nifti_case
    out = d / "avg_set.nii.gz"
    assert main(["denoise", *map(str, reps), "-o", str(out), "--mask", str(mask), "--method",
                 "average", "--set", "align=register", "--set", "holdout=0.1", "--quiet"]) == 0
    side = json.loads((d / "avg_set.json").read_text())
    assert side["config"]["align"] == "register" and side["config"]["holdout"] == 0.1
    capsys.readouterr()
    for bad in ("bogus=1", "steps=many", "steps"):
        assert main(["denoise", *map(str, reps), "-o", str(d / "never.nii.gz"), "--method",
                     "average", "--set", bad, "--quiet"]) == 2
        assert "--set" in capsys.readouterr().err
    assert not (d / "never.nii.gz").exists()


def test_demo_writes_outputs_and_says_what_its_numbers_mean(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--crop", "32", "--steps", "2", "--threads", "1",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "PRE-TRAINED ON THIS TEMPLATE" in text and "Noise2Average" in text
    for name in ("reference", "rep-1", "rep-2", "average", "denoised"):
        assert (out / f"{name}.nii.gz").is_file()
    assert (out / "demo.png").stat().st_size > 10_000
    side = json.loads((out / "denoised.json").read_text())
    assert side["scores"]["Noise2Average"]["psnr"] > side["scores"]["noisy rep 1"]["psnr"]


def test_time_left_is_measured_from_the_first_steps(capsys):
    from noise2average.workflows import TimeLeft

    clock = TimeLeft(100, "n2a denoise", after=3)
    infer = clock.progress(4, "infer 1/2")
    infer.update(4)
    bar = clock.progress(50, "train 1/2")
    for _ in range(5):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "training and tuning left" in line]
    assert len(lines) == 1 and "measured from its first 4 steps" in lines[0]
    # the output pass's tuning counts: 3 tuning steps after 1 + 3 training ones
    clock = TimeLeft(1000, "n2a denoise", after=3)
    clock.progress(1, "train 1/1").update(1)
    tune = clock.progress(10, "tune on the average")
    for _ in range(3):
        tune.update(1)
    assert "measured from its first 4 steps" in capsys.readouterr().err


def test_the_time_left_plans_the_output_tuning():
    from noise2average.config import DenoiseConfig
    from noise2average.workflows import _time_left

    default = DenoiseConfig(steps=10, iterations=2, output_tuning_steps=30, threads=1)
    assert _time_left(default, 3, "n2a denoise").total == 2 * 10 + 30
    assert _time_left(default, 4, "n2a denoise").total == 2 * 10  # 4D: not tuned
    untuned = default.replace(output_tuning="none")
    assert _time_left(untuned, 3, "n2a denoise").total == 2 * 10
    assert _time_left(default.replace(method="bm4d"), 3, "n2a denoise").total == 0


def test_benchmark_says_each_method_and_its_time(tmp_path, mni_crop, capsys):
    t1, mask = mni_crop
    r = write_nifti(tmp_path / "t1.nii.gz", t1)
    m = write_nifti(tmp_path / "m.nii.gz", mask.astype(np.uint8))
    assert main(["benchmark", "--reference", str(r), "--mask", str(m), "--crop", "24",
                 "--methods", "average", "nosuchmethod:steps=1", "--threads", "1", "-o",
                 str(tmp_path / "b")]) == 2  # an unknown method: refused before any run
    assert main(["benchmark", "--reference", str(r), "--mask", str(m), "--crop", "24",
                 "--methods", "average", "--threads", "1", "-o", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "[1/1] average ..." in err and "[1/1] average done in" in err and "min so far" in err


def test_two_echoes_come_back_in_the_first_echos_contrast(tmp_path, mni_crop, capsys):
    t1, mask = mni_crop
    config = SimulationConfig(sigma=0.05, echo=True, seed=2)
    reps, ref, _ = simulate(t1, mask, (1.0, 1.0, 1.0), config)
    paths = [write_nifti(tmp_path / f"echo{k}.nii.gz", r) for k, r in enumerate(reps, 1)]
    mpath = write_nifti(tmp_path / "mask.nii.gz", mask.astype(np.uint8))
    out = tmp_path / "out.nii.gz"
    assert main(["denoise", *map(str, paths), "-o", str(out), "--mask", str(mpath),
                 "--method", "pretrained", "--set", "output_from=average", "--set",
                 "output_flips=lr", "--align", "none", "--threads", "1", "--block", "48"]) == 0
    assert "in repetition 1's contrast" in capsys.readouterr().err
    assert "the repetitions differ in contrast" in (tmp_path / "out_report.html").read_text()
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["history"][-1]["output_contrast"] == "first"
    result = nib.load(str(out)).get_fdata()
    # echo 1's brightness: the result's mean in the brain within 1 % of echo 1's truth
    assert abs(result[mask].mean() / ref[mask].mean() - 1) < 0.01
