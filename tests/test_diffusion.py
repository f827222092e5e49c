"""Diffusion: multi-channel engine, groups, the 4D CLI and the conventional baselines, on tiny
phantoms built from a crop of the MNI152 tissue classes (no benchmark is scored here)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from noise2average.arrays.dwi_phantom import make_phantom, noisy_repetitions
from noise2average.arrays.normalize import Norm
from noise2average.arrays.simulate import tissue_classes
from noise2average.cli import main
from noise2average.config import DenoiseConfig
from noise2average.diffusion import (contrast_kept, denoise_dwi, merge_groups, plan_groups,
                                     split_groups)
from noise2average.errors import InputError
from noise2average.io.gradients import write_fsl
from noise2average.methods import DIFFUSION
from noise2average.methods.diffusion import dwidenoise_path
from noise2average.nn.models import MUNet, build_model, with_channels

from conftest import AFFINE, shrink_contrast


def _phantom(t1, mask, n_dirs, region=None):
    cls = tissue_classes(t1, mask)
    fr = {n: ndimage.gaussian_filter((cls == lab).astype(np.float32), 0.6)
          for n, lab in (("csf", 1), ("gm", 2), ("wm", 3))}
    return make_phantom(fr["gm"], fr["wm"], fr["csf"], n_dirs=n_dirs, n_b0=2, seed=1,
                        brain_mask=mask, region=region)


@pytest.fixture(scope="module")
def dwi_case(mni_crop):
    """b0 x 2 + 6 DWIs on a 24^3 crop, two noisy repetitions at b0 SNR 10."""
    t1, mask = mni_crop
    ph = _phantom(t1, mask, 6, region=(slice(8, 32),) * 3)
    reps, _ = noisy_repetitions(ph, 2, snr_b0=10, seed=2)
    return ph, reps


@pytest.fixture(scope="module")
def small_series(mni_crop):
    """b0 x 2 + 12 DWIs on a 16^3 crop (two groups of 7), two noisy repetitions."""
    t1, mask = mni_crop
    ph = _phantom(t1, mask, 12, region=(slice(12, 28),) * 3)
    reps, _ = noisy_repetitions(ph, 2, snr_b0=15, seed=4)
    return ph, reps


def _psnr(img, ref, mask):
    mse = np.mean((img[mask] - ref[mask]) ** 2)
    return 10 * np.log10(ref[mask].max() ** 2 / mse)


# ------------------------------------------------------------------ models and normalization

def test_diffusion_presets():
    cfg = with_channels("dti-paper", 13)
    assert (cfg.in_channels, cfg.out_channels, cfg.width, cfg.batch_norm) == (13, 13, 192, True)
    model = build_model("dti-paper")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 11 and sum(c.kernel_size == (3, 3, 3) for c in convs) == 10
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) == 10
    small = MUNet(with_channels("dti-cpu", 7))
    assert small(torch.zeros(1, 7, 8, 8, 8)).shape == (1, 7, 8, 8, 8)


def test_norm_is_per_channel_and_inverts():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(6, 5, 4, 3)).astype(np.float32) * [1, 10, 100] + [0, 5, 50]
    mask = np.ones((6, 5, 4), bool)
    norm = Norm.fit(img, mask)
    z = norm.forward(img)
    np.testing.assert_allclose(z[mask].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[mask].std(0), 1, atol=1e-4)
    np.testing.assert_allclose(norm.inverse(z), img, rtol=1e-4, atol=1e-3)
    assert isinstance(Norm.fit(img[..., 0], mask).mean, float)  # 3D stays one scalar


# ------------------------------------------------------------------ groups

def test_groups_round_trip_in_volume_order():
    bvals = np.array([0, 1000, 1000, 2000, 0, 1000, 1000, 1000, 2000, 1000, 2000, 1000, 0])
    rng = np.random.default_rng(1)
    bvecs = rng.normal(size=(13, 3))
    bvecs /= np.linalg.norm(bvecs, axis=1, keepdims=True)
    plan = plan_groups(bvals, bvecs, group_size=4)
    assert plan.b0 == (0, 4, 12) and plan.group_size == 4
    # shells first: 7 DWIs at b=1000 then 3 at b=2000, in series order, 3 per group
    assert plan.groups[0] == (1, 2, 5) and plan.groups[2] == (11, 3, 8)
    assert plan.groups[3][0] == 10 and plan.owned[3] == (True, False, False)
    series = np.broadcast_to(np.arange(13, dtype=np.float32), (3, 2, 2, 13)).copy()
    groups = split_groups(series, plan)
    assert all(g.shape == (3, 2, 2, 4) for g in groups)
    np.testing.assert_allclose(groups[0][..., 0], (0 + 4 + 12) / 3)
    back = merge_groups(groups, plan)
    dwi = np.flatnonzero(bvals > 0)
    np.testing.assert_array_equal(back[..., dwi], series[..., dwi])  # every DWI where it was
    np.testing.assert_allclose(back[..., [0, 4, 12]], 16 / 3)  # b0s: the (denoised) mean b0


def test_plan_needs_enough_dwis():
    with pytest.raises(InputError, match="needs 6 diffusion-weighted"):
        plan_groups([0, 1000, 1000, 1000], np.eye(4, 3)[[0, 0, 1, 2]], group_size=7)


# ------------------------------------------------------------------ the engine on 4D

def test_noise2average_on_a_diffusion_group_beats_the_average(dwi_case):
    ph, reps = dwi_case
    mask = ph.brain_mask
    avg = np.mean(reps, axis=0)
    cfg = DenoiseConfig(method="n2a", steps=6, iterations=1, threads=1, patch_size=16,
                        block_size=32, flip=False, outside="zero", dwi_mode="groups")
    res = denoise_dwi(reps, ph.bvals, ph.bvecs, mask, cfg)  # the shipped diffusion model
    assert res.output.shape == reps[0].shape and res.output.dtype == np.float32
    assert len(res.plan.groups) == 1 and len(res.denoised) == 2
    assert np.all(res.output[~mask] == 0)
    gain = _psnr(res.output, ph.dwi, mask) - _psnr(avg, ph.dwi, mask)
    assert gain > 1.0, gain  # measured: 1.38 dB (6 steps, no flip averaging)


def test_contrast_weight_trains_a_diffusion_group_and_is_refused_for_3d(dwi_case, phantom):
    from noise2average.pipeline import denoise

    ph, reps = dwi_case
    cfg = DenoiseConfig(method="n2a", steps=3, iterations=1, threads=1, patch_size=16,
                        block_size=32, flip=False, outside="zero", contrast_weight=2.0,
                        dwi_mode="groups")
    res = denoise_dwi(reps, ph.bvals, ph.bvecs, ph.brain_mask, cfg)
    assert np.isfinite(res.output).all() and res.config.contrast_weight == 2.0
    t1_reps, _, mask = phantom
    with pytest.raises(InputError, match="contrast_weight is for diffusion groups"):
        denoise(t1_reps, mask, DenoiseConfig(steps=1, iterations=1, contrast_weight=1.0))
    with pytest.raises(InputError, match="contrast_weight"):
        DenoiseConfig(contrast_weight=-1.0)


def test_contrast_kept_is_measured_without_the_truth(dwi_case):
    ph, reps = dwi_case
    b0 = ph.bvals == 0
    m = ph.brain_mask
    clean = ph.dwi.astype(np.float64)

    def shrunk(g):  # the clean series with a fraction g of its directional contrast
        return shrink_contrast(clean, b0, g)

    # the repetitions themselves keep all of their contrast, exactly
    assert contrast_kept(reps, reps, b0, m) == pytest.approx(1.0, abs=1e-12)
    # a known shrinkage is found from the noisy repetitions alone (b0 SNR 10: the Rician floor
    # compresses the noisy contrast by a few per cent, so the estimate reads slightly high)
    for g in (1.0, 0.8):
        est = contrast_kept([shrunk(g)] * 2, reps, b0, m)
        assert g <= est <= g * 1.08, (g, est)
    # the output's S0 divides all three series: repetitions that share one noisy b=0 image
    # (dti-split's subsets) give the same estimate as repetitions with b=0 images of their own
    shared = [reps[0], reps[1].copy()]
    shared[1][..., b0] = reps[0][..., b0]
    assert contrast_kept([shrunk(0.8)] * 2, shared, b0, m) == pytest.approx(
        contrast_kept([shrunk(0.8)] * 2, reps, b0, m), rel=1e-9)
    assert contrast_kept(reps, reps, np.ones_like(b0), m) is None  # no DWI
    assert contrast_kept(reps[:1], reps[:1], b0, m) is None  # one repetition


def test_groups_of_a_series_are_denoised_and_reassembled(small_series):
    ph, reps = small_series
    cfg = DenoiseConfig(method="n2n", init="scratch", preset="tiny", steps=2, threads=1,
                        patch_size=12, block_size=16, outside="average", dwi_mode="groups")
    res = denoise_dwi(reps, ph.bvals, ph.bvecs, ph.brain_mask, cfg)
    assert len(res.plan.groups) == 2 and len(res.history) == 2
    assert res.output.shape == reps[0].shape
    b0 = np.flatnonzero(ph.bvals == 0)
    np.testing.assert_array_equal(res.output[..., b0[0]], res.output[..., b0[1]])
    out = ~ph.brain_mask
    # DWIs outside the mask keep the plain average
    dwi = np.flatnonzero(ph.bvals > 0)
    np.testing.assert_allclose(res.output[out][:, dwi], np.mean(reps, 0)[out][:, dwi], rtol=1e-5)


def test_shape_and_method_errors(small_series):
    ph, reps = small_series
    with pytest.raises(InputError, match="4D"):
        denoise_dwi([r[..., 0] for r in reps], ph.bvals, ph.bvecs)
    with pytest.raises(InputError, match="b-values"):
        denoise_dwi(reps, ph.bvals[:-1], ph.bvecs[:-1])
    with pytest.raises(InputError, match="3D images"):
        denoise_dwi(reps, ph.bvals, ph.bvecs, config=DenoiseConfig(method="nlmeans"))
    from noise2average.pipeline import denoise

    with pytest.raises(InputError, match="diffusion"):
        denoise([r[..., 0] for r in reps], config=DenoiseConfig(method="mppca"))


# ------------------------------------------------------------------ baselines

@pytest.mark.parametrize("method", ["average", "mppca", "patch2self", "dwidenoise", "bm4d",
                                    "aonlm"])
def test_baselines_run_on_a_tiny_series(small_series, method):
    if method == "dwidenoise" and dwidenoise_path() is None:
        pytest.skip("MRtrix3 dwidenoise is not installed")
    from noise2average.arrays.noise import estimate_sigma

    ph, reps = small_series
    mask = ph.brain_mask
    # BM4D takes the noise SD of one repetition; the others estimate it or need none
    sigma = estimate_sigma(reps, mask) if method == "bm4d" else 1.0
    out = DIFFUSION[method](reps, mask, sigma, bvals=ph.bvals)
    assert out.shape == reps[0].shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    if method != "average":  # each denoiser is closer to the truth than the plain average
        avg = np.mean(reps, axis=0)
        assert _psnr(out, ph.dwi, mask) > _psnr(avg, ph.dwi, mask)


def test_patch2self_needs_bvals(small_series):
    _, reps = small_series
    with pytest.raises(InputError, match="b-values"):
        DIFFUSION["patch2self"](reps, None, 1.0)


# ------------------------------------------------------------------ files and CLI

@pytest.fixture()
def dwi_files(tmp_path, small_series):
    ph, reps = small_series
    paths = []
    for name, rep in zip(("AP", "PA"), reps):
        p = tmp_path / f"dwi_{name}.nii.gz"
        nib.save(nib.Nifti1Image(rep, AFFINE), str(p))
        paths.append(p)
    write_fsl(ph.bvals, ph.bvecs, tmp_path / "dwi.bval", tmp_path / "dwi.bvec")
    mpath = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(ph.brain_mask.astype(np.uint8), AFFINE), str(mpath))
    return tmp_path, paths, mpath, ph


FAST = ["--init", "scratch", "--preset", "tiny", "--steps", "2", "--iterations", "1",
        "--patch", "12", "--block", "16", "--threads", "1", "--quiet"]


def test_cli_denoises_a_4d_pair_with_its_gradient_table(dwi_files):
    d, (ap, pa), mpath, ph = dwi_files
    out = d / "out" / "dwi_n2a.nii.gz"
    rc = main(["denoise", str(ap), str(pa), "--bvals", str(d / "dwi.bval"), "--bvecs",
               str(d / "dwi.bvec"), "--mask", str(mpath), "-o", str(out), *FAST])
    assert rc == 0
    img = nib.load(str(out))
    assert img.shape == (16, 16, 16, 14) and np.allclose(img.affine, AFFINE)
    side = json.loads((d / "out" / "dwi_n2a.json").read_text())
    # volume by volume (the default): no groups, the output's contrast restored
    assert side["config"]["dwi_mode"] == "volumes" and side["groups"] is None
    assert side["group_size"] is None and len(side["history"]) == 2  # b=0 and one shell
    assert 0 < side["directional_contrast_kept"] < 2  # a learned method: measured
    assert side["directional_contrast_restored"] is True
    # each shell's network tuned on its average before the output pass (output_tuning auto)
    assert all(h["iterations"][-1]["output_tuning"] == "r2r" for h in side["history"])
    assert (d / "out" / "dwi_n2a.bval").read_text() == (d / "dwi.bval").read_text()
    assert (d / "out" / "dwi_n2a.bvec").read_text() == (d / "dwi.bvec").read_text()
    assert not (d / "out" / "dwi_n2a.ckpt").exists()
    # the QC report shows one DWI of the highest shell, with the verdict and the SNR section
    page = (d / "out" / "dwi_n2a_report.html").read_text()
    assert 'id="warnings"' in page and 'id="snr"' in page and "Verdict" in page
    assert f"b = {ph.bvals.max():g} s/mm^2" in page
    assert side["outputs"]["report"] == str(d / "out" / "dwi_n2a_report.html")
    assert isinstance(side["warnings"], list)
    # the diffusion network on groups of b0 + 6 DWIs
    grouped = d / "out" / "dwi_groups.nii.gz"
    assert main(["denoise", str(ap), str(pa), "--bvals", str(d / "dwi.bval"), "--bvecs",
                 str(d / "dwi.bvec"), "--mask", str(mpath), "-o", str(grouped),
                 "--dwi-mode", "groups", *FAST]) == 0
    side = json.loads((d / "out" / "dwi_groups.json").read_text())
    assert side["group_size"] == 7 and len(side["groups"]["groups"]) == 2
    assert side["directional_contrast_restored"] is False
    # the same table given once per series is accepted; an existing output is refused
    twice = ["--bvals", str(d / "dwi.bval"), str(d / "dwi.bval"), "--bvecs",
             str(d / "dwi.bvec"), str(d / "dwi.bvec"), "--method", "average", "--quiet"]
    avg = d / "out" / "dwi_avg.nii.gz"
    assert main(["denoise", str(ap), str(pa), *twice, "-o", str(avg)]) == 0
    assert nib.load(str(avg)).shape == (16, 16, 16, 14)
    assert json.loads((d / "out" / "dwi_avg.json").read_text())["directional_contrast_kept"] is None
    assert main(["denoise", str(ap), str(pa), *twice, "-o", str(avg)]) == 2


def _bad_cases(d, ap, pa, ph):
    three = d / "b0.nii.gz"
    nib.save(nib.Nifti1Image(nib.load(str(ap)).get_fdata()[..., 0], AFFINE), str(three))
    short = d / "short.bval"
    short.write_text(" ".join(str(int(b)) for b in ph.bvals[:-1]) + "\n")
    other_vecs = ph.bvecs.copy()
    other_vecs[[3, 4]] = other_vecs[[4, 3]]
    write_fsl(ph.bvals, other_vecs, d / "other.bval", d / "other.bvec")
    bvals, bvecs = str(d / "dwi.bval"), str(d / "dwi.bvec")
    return {
        "3D input": [str(three), str(pa), "--bvals", bvals, "--bvecs", bvecs],
        "wrong length": [str(ap), str(pa), "--bvals", str(short), "--bvecs", bvecs],
        "no bvecs": [str(ap), str(pa), "--bvals", bvals],
        "mismatched tables": [str(ap), str(pa), "--bvals", bvals, str(d / "other.bval"),
                              "--bvecs", bvecs, str(d / "other.bvec")],
    }


@pytest.mark.parametrize("case", ["3D input", "wrong length", "no bvecs", "mismatched tables"])
def test_cli_refuses_bad_diffusion_input(dwi_files, capsys, case):
    d, (ap, pa), _, ph = dwi_files
    out = d / "bad" / "out.nii.gz"
    rc = main(["denoise", *_bad_cases(d, ap, pa, ph)[case], "-o", str(out), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("n2a denoise: error:")
    assert not (d / "bad").exists()


# ------------------------------------------------------------------ pre-training

@pytest.fixture()
def tiny_field(dwi_case):
    from noise2average.arrays.dti import TensorField
    from noise2average.pretrain_dwi import FieldVolume

    ph, _ = dwi_case
    f = ph.field
    return FieldVolume(TensorField(f.evals.astype(np.float32), f.evecs.astype(np.float32),
                                   f.S0.astype(np.float32), f.mask),
                       ph.brain_mask, ph.wm_mask, (1.0, 1.0, 1.0))


def test_dwi_pretraining_sampler(tiny_field):
    from noise2average.pretrain_dwi import DwiNoiseSampler, DwiPretrainConfig

    sampler = DwiNoiseSampler([tiny_field], 7, DwiPretrainConfig(patch_size=12, batch_size=2))
    x, y, w = sampler(np.random.default_rng(0))
    assert x.shape == y.shape == (2, 7, 12, 12, 12) and w.shape == (2, 1, 12, 12, 12)
    assert 8 <= sampler.last["snr_b0"] <= 40 and 1 <= sampler.last["n_b0"] <= 6
    assert np.isfinite(x).all() and np.isfinite(y).all()


def test_pretrain_dwi_cli_checkpoints_and_resumes(tmp_path, tiny_field, monkeypatch):
    import noise2average.pretrain_dwi as pd
    from noise2average.io.weights import load_model

    monkeypatch.setattr(pd, "colin27_fields", lambda **kw: [tiny_field])
    out = tmp_path / "dwi.safetensors"
    common = ["pretrain", "--dwi", "-o", str(out), "--preset", "tiny", "--patch", "12",
              "--batch", "1", "--checkpoint-every", "1", "--threads", "1", "--quiet"]
    assert main([*common, "--steps", "2"]) == 0
    model, meta = load_model(out)
    assert model.config.in_channels == 7 and model.config.batch_norm
    assert json.loads(meta["steps_done"]) == 2 and json.loads(meta["group_size"]) == 7
    assert main([*common, "--steps", "3", "--resume", "--force"]) == 0
    assert json.loads(load_model(out)[1]["steps_done"]) == 3
    assert main([*common, "--steps", "2", "--group-size", "1", "--force"]) == 2


def test_group_checkpoint_keeps_finished_groups_and_refuses_other_runs(tmp_path):
    from noise2average.io.checkpoint_runs import GroupCheckpoint

    out = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    reps = [out + 1, out + 2]
    ckpt = GroupCheckpoint(tmp_path / "ck", {"config": {"steps": 3}, "inputs": ["abc"]})
    assert not ckpt.exists() and ckpt.load() == {}
    ckpt.save(1, out, reps, {"group": 2, "_uncertainty": out})
    done = ckpt.load()
    assert list(done) == [1] and np.array_equal(done[1][0], out)
    assert all(np.array_equal(a, b) for a, b in zip(done[1][1], reps))
    assert done[1][2] == {"group": 2}  # private entries are not stored
    other = GroupCheckpoint(tmp_path / "ck", {"config": {"steps": 4}, "inputs": ["abc"]})
    with pytest.raises(InputError, match="other inputs or settings"):
        other.load()
    ckpt.remove()
    assert not (tmp_path / "ck").exists()
