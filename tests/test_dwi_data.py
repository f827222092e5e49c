"""Diffusion data: gradient tables, the DTI split on DIPY's real DWI crop, tensor metrics, the
phantom, and the bad inputs of dti-split, dti-metrics and simulate --dwi."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import write_nifti
from noise2average.arrays.dti import (
    angular_error_deg, condition_number, dti_errors, dti_metrics, dti_split,
    electrostatic_directions, fit_tensor, select_subsets, synthesize)
from noise2average.arrays.dwi_phantom import ap_pa_pair, gradient_scheme, make_phantom
from noise2average.arrays.gradients import (
    require_same_gradients, same_gradients, validate_gradients)
from noise2average.cli import main
from noise2average.errors import InputError
from noise2average.io.gradients import read_fsl, write_fsl

DIPY_FILES = Path(__import__("dipy").__file__).parent / "data" / "files"


@pytest.fixture(scope="module")
def small64():
    """DIPY's real 10^3 x 65 DWI crop (1 b=0 + 64 directions at b~1000) and its FSL files; the
    bvecs file writes the b=0 direction as NaN, as some tools do."""
    path = DIPY_FILES / "small_64D.nii"
    data = nib.load(str(path)).get_fdata()
    bvals, bvecs = read_fsl(DIPY_FILES / "small_64D.bval", DIPY_FILES / "small_64D.bvec",
                            data.shape[3])
    return path, data, bvals, bvecs


# ---------------------------------------------------------------- gradient tables

def test_gradient_validation_errors_and_normalization():
    bvals, bvecs = gradient_scheme(12, 2, 1000.0)
    t = validate_gradients(bvals, bvecs, 14)
    assert t.b0_mask.sum() == 2 and t.shells == (1000.0,) and t.dwi_indices.size == 12
    bad = {
        "13 b-values": (bvals[:-1], bvecs, 14),
        "13 gradient directions": (bvals, bvecs[:-1], 14),
        "not 1": (bvals, bvecs * np.where(bvals[:, None] > 0, 1.1, 1), 14),
        "no b=0": (np.full(14, 1000.0), np.tile([1.0, 0, 0], (14, 1)), 14),
        "NaN or Inf": (np.where(np.arange(14) == 3, np.nan, bvals), bvecs, 14),
        "must be >= 0": (np.where(np.arange(14) == 3, -5, bvals), bvecs, 14),
    }
    for words, (b, v, n) in bad.items():
        with pytest.raises(InputError, match=words):
            validate_gradients(b, v, n)
    nan_b0 = bvecs.copy()
    nan_b0[bvals == 0] = np.nan  # a b=0 direction has no meaning; some tools write NaN
    assert np.all(validate_gradients(bvals, nan_b0, 14).bvecs[bvals == 0] == 0)
    dwi_nan = bvecs.copy()
    dwi_nan[1] = np.nan
    with pytest.raises(InputError, match="volume 1"):
        validate_gradients(bvals, dwi_nan, 14)
    # multi-shell real table: shells are grouped despite scanner jitter
    multi = validate_gradients(np.loadtxt(DIPY_FILES / "small_101D.bval"),
                               np.loadtxt(DIPY_FILES / "small_101D.bvec"), 102)
    assert len(multi.shells) > 3 and multi.b0_mask.sum() >= 1


def test_fsl_files_both_layouts_round_trip(tmp_path):
    bvals, bvecs = gradient_scheme(8, 1, 1000.0)
    write_fsl(bvals, bvecs, tmp_path / "a.bval", tmp_path / "a.bvec")
    assert len((tmp_path / "a.bvec").read_text().splitlines()) == 3  # FSL: 3 rows
    b, v = read_fsl(tmp_path / "a.bval", tmp_path / "a.bvec", 9)
    np.testing.assert_allclose(b, bvals)
    np.testing.assert_allclose(v, bvecs, atol=1e-7)
    np.savetxt(tmp_path / "rows.bvec", bvecs)  # n rows of 3 is accepted too
    np.savetxt(tmp_path / "col.bval", bvals[:, None])
    b2, v2 = read_fsl(tmp_path / "col.bval", tmp_path / "rows.bvec", 9)
    np.testing.assert_allclose(v2, v, atol=1e-7)
    np.testing.assert_allclose(b2, b)
    with pytest.raises(InputError, match="not found"):
        read_fsl(tmp_path / "none.bval", tmp_path / "a.bvec", 9)
    with pytest.raises(InputError, match="9 b-values"):
        read_fsl(tmp_path / "a.bval", tmp_path / "a.bvec", 10)


def test_same_gradients_for_ap_pa():
    bvals, bvecs = gradient_scheme(12, 2, 1000.0)
    flipped = bvecs * np.where(np.arange(14) % 2, -1.0, 1.0)[:, None]  # signs do not matter
    assert same_gradients((bvals, bvecs), (bvals + 5, flipped))
    rot = np.deg2rad(10.0)
    turned = bvecs @ np.array([[np.cos(rot), -np.sin(rot), 0], [np.sin(rot), np.cos(rot), 0],
                               [0, 0, 1]]).T
    assert not same_gradients((bvals, bvecs), (bvals, turned))
    assert not same_gradients((bvals, bvecs), (np.where(bvals > 0, 2000.0, 0), bvecs))
    with pytest.raises(InputError, match="AP and PA differ: 14 volumes against 13"):
        require_same_gradients((bvals, bvecs), (bvals[:13], bvecs[:13]))


# ---------------------------------------------------------------- subsets, fit, synthesis

def test_select_subsets_disjoint_well_conditioned_deterministic(small64):
    _, _, bvals, bvecs = small64
    dirs = bvecs[bvals > 50]
    subsets = select_subsets(dirs, 2, 6)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, select_subsets(dirs, 2, 6)))
    assert len(set(np.concatenate(subsets).tolist())) == 12  # disjoint
    conds = [condition_number(dirs[s]) for s in subsets]
    # the best 6-direction scheme (icosahedral) has 1.58; first-6 of the table is far worse
    assert max(conds) < 2.0, conds
    assert condition_number(dirs[:6]) > max(conds)
    assert condition_number(electrostatic_directions(6)) == pytest.approx(np.sqrt(2.5), rel=1e-3)
    with pytest.raises(InputError, match="need 12 diffusion directions; the series has 11"):
        select_subsets(dirs[:11], 2, 6)


def test_fit_and_synthesize_round_trip_on_real_data(small64):
    _, data, bvals, bvecs = small64
    vols = np.r_[0, 1 + select_subsets(bvecs[1:], 2, 6)[0]]  # b=0 + 6: exactly determined
    sub = data[..., vols]
    field = fit_tensor(sub, bvals[vols], bvecs[vols])
    again = synthesize(field.evals, field.evecs, field.S0, bvals[vols], bvecs[vols])
    ok = field.evals[..., 2] > 1e-5  # where no eigenvalue was clipped, the fit is exact
    assert ok.mean() > 0.7
    np.testing.assert_allclose(again[ok], sub[ok], rtol=1e-4, atol=1e-2)


def test_dti_split_cli_on_dipy_real_crop(small64, tmp_path):
    path, data, bvals, bvecs = small64
    out = tmp_path / "split"
    rc = main(["dti-split", str(path), "--bvals", str(DIPY_FILES / "small_64D.bval"),
               "--bvecs", str(DIPY_FILES / "small_64D.bvec"), "-o", str(out), "--quiet"])
    assert rc == 0
    reps = [nib.load(str(out / f"rep-{k}.nii.gz")) for k in (1, 2)]
    assert all(r.shape == (10, 10, 10, 7) for r in reps)
    np.testing.assert_allclose(reps[0].affine, nib.load(str(path)).affine)
    b_out, v_out = read_fsl(out / "dwi.bval", out / "dwi.bvec", 7)
    assert b_out[0] == 0 and np.all(np.abs(b_out[1:] - 994) < 10)
    side = [json.loads((out / f"rep-{k}.json").read_text()) for k in (1, 2)]
    vols = [set(s["subset"]["volumes"]) for s in side]
    # by default the shell's 64 directions are shared out: disjoint, 32 each, none unused
    assert not vols[0] & vols[1] and all(len(v) == 32 for v in vols)
    assert side[0]["split"]["unused_volumes"] == []
    assert all(s["subset"]["condition_number"] < 2.0 for s in side)
    assert side[0]["split"]["subsets"] == side[1]["split"]["subsets"]
    # the same b=0 image in both; each repetition's tensor is near the full-data tensor
    rep_data = [r.get_fdata() for r in reps]
    np.testing.assert_allclose(rep_data[0][..., 0], rep_data[1][..., 0])
    full = dti_metrics(fit_tensor(data, bvals, bvecs))
    high = full["FA"] > 0.5
    assert high.sum() > 50
    for r in rep_data:
        m = dti_metrics(fit_tensor(r, b_out, v_out))
        assert np.median(angular_error_deg(m["V1"], full["V1"])[high]) < 25  # random: ~60
        assert np.median(np.abs(m["FA"] - full["FA"])[high]) < 0.15
        assert np.median(np.abs(m["MD"] / full["MD"] - 1)[high]) < 0.2
    # and the repetitions' metrics through the CLI
    rc = main(["dti-metrics", str(out / "rep-1.nii.gz"), "--bvals", str(out / "dwi.bval"),
               "--bvecs", str(out / "dwi.bvec"), "-o", str(tmp_path / "met")])
    assert rc == 0
    assert nib.load(str(tmp_path / "met" / "V1.nii.gz")).shape == (10, 10, 10, 3)
    assert json.loads((tmp_path / "met" / "FA.json").read_text())["method"] == "WLS"
    # the paper's split: 6 directions in each subset, still well conditioned
    _, _, _, rec6 = dti_split(data, bvals, bvecs, subset_size=6)
    assert [len(s["volumes"]) for s in rec6["subsets"]] == [6, 6]
    assert all(s["condition_number"] < 2.0 for s in rec6["subsets"])
    assert len(rec6["unused_volumes"]) == 64 - 12
    # 12 common directions
    reps12, b12, v12, rec = dti_split(data, bvals, bvecs, n_dirs=12)
    assert reps12[0].shape[-1] == 13 and rec["common_directions"]["condition_number"] < 1.7
    # one b=0 volume: both repetitions share it; with two, by default each keeps its own
    assert side[0]["split"]["b0"] == "mean"
    two_b0 = np.concatenate([data, 1.01 * data[..., :1]], axis=-1)
    reps_b0, _, _, rec = dti_split(two_b0, np.r_[bvals, 0], np.r_[bvecs, [[0, 0, 0]]])
    assert rec["b0"] == "split" and [s["b0_volumes"] for s in rec["subsets"]] == [[0], [65]]
    np.testing.assert_allclose(reps_b0[1][..., 0], 1.01 * data[..., 0], rtol=1e-5)
    with pytest.raises(InputError, match="b0 'split' needs at least 2 b=0"):
        dti_split(data, bvals, bvecs, b0="split")


def test_dti_split_picks_a_shell_of_a_multishell_series():
    data = nib.load(str(DIPY_FILES / "small_101D.nii.gz")).get_fdata()
    t = validate_gradients(np.loadtxt(DIPY_FILES / "small_101D.bval"),
                           np.loadtxt(DIPY_FILES / "small_101D.bvec"), data.shape[3])
    reps, bvals, _, rec = dti_split(data, t.bvals, t.bvecs)
    # the shell nearest b=1000 with 12 directions (922 has only 4)
    assert rec["shell"] == 1540 and np.all(bvals[1:] == 1540)
    assert all(t.bvals[v] == pytest.approx(1540, abs=60) for s in rec["subsets"]
               for v in s["volumes"])
    with pytest.raises(InputError, match="no shell near b=700"):
        dti_split(data, t.bvals, t.bvecs, shell=700)


def test_dti_metrics_cli_recovers_known_tensor_field(tmp_path):
    rng = np.random.default_rng(4)
    shape = (6, 5, 4)
    evals = np.sort(rng.uniform(0.2e-3, 2.0e-3, shape + (3,)), axis=-1)[..., ::-1]
    q, _ = np.linalg.qr(rng.standard_normal(shape + (3, 3)))  # random rotations
    s0 = rng.uniform(500, 1500, shape)
    bvals, bvecs = gradient_scheme(30, 2, 1000.0)
    dwi = synthesize(evals, q, s0, bvals, bvecs)
    write_nifti(tmp_path / "dwi.nii.gz", dwi.astype(np.float32))
    write_nifti(tmp_path / "mask.nii.gz", np.ones(shape, np.uint8))
    write_fsl(bvals, bvecs, tmp_path / "b.bval", tmp_path / "b.bvec")
    rc = main(["dti-metrics", str(tmp_path / "dwi.nii.gz"), "--bvals", str(tmp_path / "b.bval"),
               "--bvecs", str(tmp_path / "b.bvec"), "--mask", str(tmp_path / "mask.nii.gz"),
               "-o", str(tmp_path / "m")])
    assert rc == 0
    truth = dti_metrics(evals, q)
    got = {k: nib.load(str(tmp_path / "m" / f"{k}.nii.gz")).get_fdata() for k in truth}
    np.testing.assert_allclose(got["FA"], truth["FA"], atol=2e-3)
    np.testing.assert_allclose(got["MD"], truth["MD"], rtol=2e-3)
    np.testing.assert_allclose(got["AD"], truth["AD"], rtol=5e-3)
    assert angular_error_deg(got["V1"], truth["V1"]).max() < 1.0
    side = json.loads((tmp_path / "m" / "MD.json").read_text())
    assert side["units"] == "mm^2/s" and len(side["inputs"]) == 4


# ---------------------------------------------------------------- the phantom

@pytest.fixture(scope="module")
def tissue_crop():
    from noise2average.io.templates import mni152_tissues

    tissues, brain, _ = mni152_tissues()
    sl = (slice(70, 102), slice(100, 132), slice(84, 116))  # WM, ventricles, cortex
    return {k: v[sl].copy() for k, v in tissues.items()}, brain[sl].copy()


def test_phantom_sanity_and_determinism(tissue_crop):
    t, brain = tissue_crop
    p = make_phantom(t["gm"], t["wm"], t["csf"], zooms=(1, 1, 1), n_dirs=30, brain_mask=brain)
    assert p.dwi.shape == brain.shape + (32,) and p.bvals.tolist().count(0) == 2
    m = p.metrics
    pure_wm = p.tissues["wm"] > 0.9
    assert 0.6 < m["FA"][pure_wm].mean() < 0.8
    assert m["FA"][p.tissues["gm"] > 0.8].mean() < 0.2
    assert p.csf_mask.sum() > 100
    assert m["MD"][p.tissues["csf"] > 0.95].mean() == pytest.approx(3.0e-3, rel=0.05)
    assert p.S0[p.csf_mask].mean() > 2 * p.S0[p.wm_mask].mean()  # CSF bright at b=0
    v1 = m["V1"][p.brain_mask]
    np.testing.assert_allclose(np.linalg.norm(v1, axis=1), 1.0, atol=1e-5)
    # the clean series is exactly a tensor field: a fit recovers the ground truth
    refit = dti_metrics(fit_tensor(p.dwi, p.bvals, p.bvecs, p.brain_mask))
    err = dti_errors(refit, m, p.wm_mask, p.brain_mask)
    assert err["FA_mae_wm"] < 1e-4 and err["V1_angle_deg"] < 0.1
    # deterministic per seed
    q = make_phantom(t["gm"], t["wm"], t["csf"], zooms=(1, 1, 1), n_dirs=30, brain_mask=brain)
    np.testing.assert_array_equal(p.dwi, q.dwi)
    r = make_phantom(t["gm"], t["wm"], t["csf"], zooms=(1, 1, 1), n_dirs=30, brain_mask=brain,
                     seed=1)
    assert not np.array_equal(p.dwi, r.dwi)
    ap, pa, rec = ap_pa_pair(p, snr_b0=20, seed=3)
    ap2, _, _ = ap_pa_pair(p, snr_b0=20, seed=3)
    np.testing.assert_array_equal(ap, ap2)
    assert rec["sigma"] == pytest.approx(p.wm_signal / 20)
    diff = (ap - pa)[p.wm_mask, 0]
    assert diff.std() / np.sqrt(2) == pytest.approx(rec["sigma"], rel=0.1)
    noisy = dti_errors(dti_metrics(fit_tensor(ap, p.bvals, p.bvecs, p.brain_mask)), m,
                       p.wm_mask, p.brain_mask)
    assert 0.005 < noisy["FA_mae_wm"] < 0.1
    _, moved, mrec = ap_pa_pair(p, snr_b0=20, seed=3, misalign=True)
    assert np.abs(mrec["repetitions"][1]["rotation_deg"]).max() > 0
    assert moved.shape == ap.shape


@pytest.fixture(scope="module")
def brain_at_3mm():
    """The whole MNI152 tissue maps at 3 mm and a centred 32^3 box of them."""
    from scipy import ndimage

    from noise2average.arrays.masking import centred_cube
    from noise2average.io.templates import mni152_tissues

    tissues, brain, _ = mni152_tissues()
    t = {k: np.clip(ndimage.zoom(v, 1 / 3, order=1), 0, 1) for k, v in tissues.items()}
    brain3 = ndimage.zoom(brain.astype(np.float32), 1 / 3, order=1) > 0.5
    return t, brain3, centred_cube(brain3, 32)


def test_bundle_phantom_has_coherent_crossing_fibres(brain_at_3mm):
    """The bundle tract field keeps the tissue model (S0, GM, CSF) and replaces the WM
    directions: neighbours agree far better in direction than in the structure-tensor field,
    pure single-family WM keeps a high FA, and crossings lower it."""
    from noise2average.arrays.dti import neighbour_roughness
    from noise2average.arrays.dwi_phantom import bundle_directions

    t, brain, region = brain_at_3mm
    kw = dict(zooms=(3, 3, 3), n_dirs=30, brain_mask=brain, region=region)
    s = make_phantom(t["gm"], t["wm"], t["csf"], **kw)
    b = make_phantom(t["gm"], t["wm"], t["csf"], orientation="bundles", **kw)
    np.testing.assert_array_equal(s.S0, b.S0)
    assert b.record["orientation"] == "bundles"
    rough = {}
    for name, p in (("structure", s), ("bundles", b)):
        aniso = p.brain_mask & (p.metrics["FA"] > 0.3)
        rough[name] = neighbour_roughness(p.metrics["FA"], p.metrics["V1"], aniso)
    assert rough["bundles"]["V1_angle_deg"] < 0.7 * rough["structure"]["V1_angle_deg"]
    pure_wm = b.tissues["wm"] > 0.8
    fa = b.metrics["FA"][pure_wm]
    assert np.percentile(fa, 90) > 0.7 and fa.min() < 0.6  # single families and crossings
    # the clean series is still exactly a tensor field
    refit = dti_metrics(fit_tensor(b.dwi, b.bvals, b.bvecs, b.brain_mask))
    assert dti_errors(refit, b.metrics, b.wm_mask, b.brain_mask)["FA_mae_wm"] < 1e-4
    shape = (40, 40, 40)
    dirs = bundle_directions(shape, tuple(slice(0, n) for n in shape), (2, 2, 2))
    for d in dirs:
        np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-6)
    # over the midline the commissural family runs left-right, the projection one upwards
    assert abs(dirs[0][20, 20, 30, 0]) > 0.99 and abs(dirs[2][20, 20, 30, 2]) > 0.95
    with pytest.raises(InputError, match="orientation"):
        make_phantom(t["gm"], t["wm"], t["csf"], orientation="radial", **kw)


def test_simulate_dwi_cli(tmp_path, tissue_crop):
    t, _ = tissue_crop
    maps = [str(write_nifti(tmp_path / f"{k}.nii.gz", t[k])) for k in ("gm", "wm", "csf")]
    out = tmp_path / "sim"
    rc = main(["simulate", "--dwi", "--tissues", *maps, "--crop", "20", "--dirs", "12",
               "--b0s", "1", "--snr", "15", "--misalign", "-o", str(out)])
    assert rc == 0
    ref = nib.load(str(out / "reference.nii.gz"))
    assert ref.shape == (20, 20, 20, 13)
    for name in ("mask", "wm", "rep-1", "rep-2", "reference_FA", "reference_V1"):
        assert (out / f"{name}.nii.gz").is_file()
    b, v = read_fsl(out / "dwi.bval", out / "dwi.bvec", 13)
    assert (b == 0).sum() == 1
    rec = json.loads((out / "simulation.json").read_text())
    assert rec["noise"]["snr_b0"] == 15 and rec["noise"]["misalign"] is True
    assert rec["phantom"]["n_dirs"] == 12 and rec["tissues"] == maps
    assert not [p for p in out.iterdir() if ".part" in p.name]


# ---------------------------------------------------------------- bad input

def _run_bad(argv, d, capsys, words):
    before = sorted(str(p) for p in d.rglob("*"))
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "error" in err[0] and words in err[0], err
    assert sorted(str(p) for p in d.rglob("*")) == before  # nothing written


def test_bad_diffusion_inputs_fail_with_one_line(small64, tmp_path, capsys):
    path, data, bvals, bvecs = small64
    d = tmp_path
    dwi = d / "dwi.nii"
    shutil.copy(path, dwi)
    write_fsl(bvals, bvecs, d / "ok.bval", d / "ok.bvec")
    write_fsl(bvals[:-1], bvecs[:-1], d / "short.bval", d / "short.bvec")
    write_fsl(bvals, bvecs * 1.2, d / "long.bval", d / "long.bvec")
    write_fsl(np.full(65, 1000.0), np.tile([1.0, 0, 0], (65, 1)), d / "nob0.bval", d / "nob0.bvec")
    write_nifti(d / "few.nii.gz", data[..., :12].astype(np.float32))  # b=0 + 11 directions
    write_fsl(bvals[:12], bvecs[:12], d / "few.bval", d / "few.bvec")
    write_nifti(d / "three.nii.gz", data[..., 0].astype(np.float32))
    ok = ["--bvals", str(d / "ok.bval"), "--bvecs", str(d / "ok.bvec")]
    out = ["-o", str(d / "out")]
    cases = [
        (["dti-split", str(dwi), "--bvals", str(d / "missing.bval"), "--bvecs",
          str(d / "ok.bvec")], "not found"),
        (["dti-split", str(dwi), "--bvals", str(d / "short.bval"), "--bvecs",
          str(d / "ok.bvec")], "64 b-values"),
        (["dti-split", str(dwi), "--bvals", str(d / "ok.bval"), "--bvecs",
          str(d / "short.bvec")], "64 gradient directions"),
        (["dti-metrics", str(dwi), "--bvals", str(d / "long.bval"), "--bvecs",
          str(d / "long.bvec")], "unit vectors"),
        (["dti-split", str(dwi), "--bvals", str(d / "nob0.bval"), "--bvecs",
          str(d / "nob0.bvec")], "no b=0"),
        (["dti-split", str(d / "few.nii.gz"), "--bvals", str(d / "few.bval"), "--bvecs",
          str(d / "few.bvec")], "at least 12 diffusion directions"),
        (["dti-split", str(d / "three.nii.gz"), *ok], "must be 4D"),
        (["dti-metrics", str(d / "three.nii.gz"), *ok], "must be 4D"),
        (["dti-split", str(dwi), *ok, "--subsets", "1"], "--subsets"),
        (["dti-split", str(dwi), *ok, "--mask", str(d / "three.nii.gz")], "grid"),
        (["simulate", "--dwi", "--echo"], "T1w option"),
        (["simulate", "--dwi", "--snr", "0"], "--snr"),
    ]
    for argv, words in cases:
        _run_bad(argv + out, d, capsys, words)
    # an existing output is not overwritten without --force
    (d / "out").mkdir()
    (d / "out" / "FA.nii.gz").write_bytes(b"x")
    _run_bad(["dti-metrics", str(dwi), *ok, *out], d, capsys, "--force")
