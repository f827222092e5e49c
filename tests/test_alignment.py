"""Issue 4 pieces: re-registration of the repetitions inside the denoiser (frames), the
uncertainty map, the reference-free diagnostics and the cross-error stopping rule."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from noise2average.arrays.agreement import best_iteration, iteration_diagnostics, uncertainty_map
from noise2average.arrays.frames import Frames
from noise2average.arrays.registration import apply_rigid, rigid_from_euler
from noise2average.cli import main
from noise2average.config import DenoiseConfig
from noise2average.pipeline import denoise


def _shifted_pair(t1, mask, rng, sigma=0.03):
    """rep 1 and a copy moved by a known sub-voxel rigid transform, both noisy."""
    move = rigid_from_euler((0.4, -0.3, 0.2), (0.35, -0.25, 0.3))
    clean2 = apply_rigid(t1, move)
    noise = [sigma * rng.standard_normal(t1.shape).astype(np.float32) for _ in range(2)]
    return [t1 + noise[0], clean2 + noise[1]], move


def test_frames_recover_a_sub_voxel_motion_and_map_between_reps(mni_crop):
    t1, mask = mni_crop
    t1 = t1 / np.percentile(t1[mask], 99)
    (a, b), move = _shifted_pair(t1, mask, np.random.default_rng(0), sigma=0.01)
    frames = Frames(2)
    assert frames.shifts(mask) == [0.0, 0.0]
    frames.update([a, b], mask)
    # the pull matrix of rep 2 undoes the motion: M_2 @ move = identity (to 0.05 voxel)
    residual = Frames(2, [np.eye(4), frames.matrices[1] @ move])
    assert residual.shifts(mask)[1] < 0.05
    assert 0.3 < frames.shifts(mask)[1] < 3
    # rep 2 brought into rep 1's frame lines up with rep 1 better than before
    inner = mask.copy()
    inner[:4], inner[-4:], inner[:, :4], inner[:, -4:], inner[..., :4], inner[..., -4:] = (0,) * 6
    before = np.mean((b - a)[inner] ** 2)
    after = np.mean((frames.to_frame(b, 1, 0) - a)[inner] ** 2)
    assert after < 0.7 * before
    # and back: rep 1 into rep 2's frame is the inverse mapping
    np.testing.assert_allclose(frames.pull(0, 1) @ frames.pull(1, 0), np.eye(4), atol=1e-9)


def test_uncertainty_map_is_the_standard_error_of_the_mean():
    rng = np.random.default_rng(1)
    mask = np.zeros((24, 24, 24), bool)
    mask[4:20, 4:20, 4:20] = True
    truth = np.ones(mask.shape, np.float32)
    ds = [truth + 0.1 * rng.standard_normal(mask.shape).astype(np.float32) for _ in range(4)]
    unc = uncertainty_map(ds, mask, radius=2.0)
    assert unc[~mask].max() == 0
    # SD 0.1 per repetition -> standard error 0.05 for N = 4
    assert abs(np.median(unc[mask]) - 0.05) < 0.006
    same = uncertainty_map([truth, truth], mask)
    assert same.max() == 0


def test_diagnostics_see_blur_and_prefer_the_better_estimate(mni_crop):
    from scipy import ndimage

    t1, mask = mni_crop
    t1 = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    rng = np.random.default_rng(2)
    noisy = [t1 + 0.05 * rng.standard_normal(t1.shape).astype(np.float32) for _ in range(2)]

    def diag(denoised):
        others = [denoised[1], denoised[0]]
        return iteration_diagnostics(noisy, others, [y - d for y, d in zip(noisy, denoised)],
                                     denoised, mask)

    good = diag([t1, t1])
    blurred_img = ndimage.gaussian_filter(t1, 1.5)
    blurred = diag([blurred_img, blurred_img])
    noisy_out = diag(noisy)
    # the clean estimate has the lowest cross error; blur shows as correlated residuals
    assert good["cross_mse"] < blurred["cross_mse"]
    assert good["cross_mse"] < noisy_out["cross_mse"]
    assert abs(good["residual_corr"]) < 0.05 < blurred["residual_corr"]
    assert best_iteration([noisy_out, good, blurred]) == 2


def test_pipeline_aligns_reports_and_stops(mni_crop):
    t1, mask = mni_crop
    t1 = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    reps, move = _shifted_pair(t1, mask, np.random.default_rng(3), sigma=0.05)
    cfg = DenoiseConfig(steps=2, iterations=3, preset="tiny", init="scratch", threads=1,
                        align="register", stopping="cross", patch_size=16, block_size=40,
                        output_from="denoised")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)  # the scratch network's initial weights
    res = denoise(reps, mask, cfg, all_iterations=True)
    hist = res.history
    # the first target (the average of the noisy repetitions) is registered too: its frames
    # undo the known motion to a tenth of a voxel, noisy as the repetitions are
    first = Frames(2, hist[0]["target_frames"])
    assert Frames(2, [np.eye(4), first.matrices[1] @ move]).shifts(mask)[1] < 0.1
    assert hist[0]["target_frame_shift_voxels"][1] > 0.3
    assert all("target_frames" not in h for h in hist[1:])
    assert all("cross_mse" in h and "residual_corr" in h for h in hist)
    assert all(h["frame_shift_voxels"][1] > 0.3 for h in hist)
    # scored on the held-out slab, which the training loss never saw
    assert 0 < hist[0]["holdout"]["voxels"] < mask.sum() / 2
    # of which the bright ones are scored (see the Rician test below)
    assert 0 < hist[0]["holdout"]["scored_voxels"] <= hist[0]["holdout"]["voxels"]
    crosses = [h["heldout_cross_mse"] for h in hist]
    # the rule keeps the iteration before the first rise (or the last one)
    rise = next((i for i in range(1, len(crosses)) if crosses[i] >= crosses[i - 1]), None)
    expected = rise if rise is not None else len(crosses)
    assert res.selected_iteration == expected
    np.testing.assert_array_equal(res.output, res.iterations[expected - 1])
    assert res.uncertainty is not None and res.uncertainty.shape == mask.shape
    assert np.all(res.uncertainty[~mask] == 0) and res.uncertainty[mask].max() > 0
    with pytest.raises(Exception, match="align"):
        DenoiseConfig(align="sideways")
    # by default the last iteration is inferred on the slab first, and on the whole mask only
    # when it is kept: the same scores, the same choice, the same output
    torch.manual_seed(0)
    lazy = denoise(reps, mask, cfg)
    assert lazy.selected_iteration == res.selected_iteration
    np.testing.assert_allclose([h["heldout_cross_mse"] for h in lazy.history], crosses,
                               rtol=1e-4)
    np.testing.assert_allclose(lazy.output, res.output, atol=1e-5)
    kept_last = res.selected_iteration == len(hist)
    assert ("inferred_on" in lazy.history[-1]) != kept_last
    assert len(lazy.iterations) == len(res.iterations) - (not kept_last)


def test_cli_writes_the_uncertainty_map(nifti_case):
    folder, paths, mpath = nifti_case
    out = folder / "den.nii.gz"
    rc = main(["denoise", *map(str, paths), "--mask", str(mpath), "-o", str(out), "--steps", "2",
               "--iterations", "1", "--align", "register", "--save-uncertainty", "--threads", "1",
               "--holdout", "0.1", "--quiet", "--no-report"])
    assert rc == 0
    unc = folder / "den_uncertainty.nii.gz"
    assert unc.is_file() and (folder / "den_uncertainty.json").is_file()
    side = json.loads((folder / "den.json").read_text())
    assert side["config"]["align"] == "register" and side["config"]["holdout"] == 0.1
    # the default stopping rule scored the pre-trained network (iteration 0) against it
    assert side["selected_iteration"] in (0, 1)
    assert "pretrained_heldout_cross_mse" in side["history"][0]
    # the frames that made the output are recorded: the fine-tuned or the pre-trained ones
    first = side["history"][0]
    assert ("frame_shift_voxels" if side["selected_iteration"] else
            "pretrained_frame_shift_voxels") in first
    assert side["config"]["output_from"] == "auto" and side["output_from"] == "average"
    rc = main(["denoise", *map(str, paths), "--mask", str(mpath), "-o", str(folder / "pap.nii.gz"),
               "--method", "n2a", "--steps", "1", "--iterations", "1", "--output-from", "average",
               "--threads", "1", "--quiet", "--no-report"])
    side = json.loads((folder / "pap.json").read_text())
    assert rc == 0 and side["output_from"] == "average" and side["config"]["method"] == "n2a"
    rc = main(["denoise", *map(str, paths), "-o", str(folder / "avg.nii.gz"), "--method",
               "average", "--save-uncertainty", "--quiet"])
    assert rc == 2 and not (folder / "avg.nii.gz").exists()


def test_auto_alignment_follows_the_method():
    base = DenoiseConfig()  # the default method, n2a-aligned
    assert base.registers and base.strategy == "n2a"
    # a benchmark derives every method from one base config: auto must not carry over
    assert not base.replace(method="bm4d").registers
    assert not base.replace(method="n2a").registers
    # the same for the stopping rule: the default stops on the cross error, the paper does not
    assert base.stops_early and not base.replace(method="n2a").stops_early
    assert base.replace(method="n2a", stopping="cross").stops_early
    assert not base.replace(stopping="fixed").stops_early
    assert base.replace(method="bm4d", align="register").registers
    assert not base.replace(align="none").registers


def test_benchmark_method_specs():
    from noise2average.bench.volumes import parse_spec
    from noise2average.errors import InputError

    assert parse_spec("bm4d") == ("bm4d", {})
    assert parse_spec("n2a:align=register,iterations=4,flip=false") == (
        "n2a", {"align": "register", "iterations": 4, "flip": False})
    for bad in ("n2a:colour=red", "n2a:iterations", "n2a:method=n2n"):
        with pytest.raises(InputError):
            parse_spec(bad)


def test_pretrained_prediction_competes_as_iteration_0(mni_crop):
    """A fine-tuning that goes wrong (a learning rate far too high) loses on the held-out slab
    to the pre-trained network's own prediction, which then becomes the result."""
    from noise2average.nn.models import build_model

    t1, mask = mni_crop
    t1 = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    reps, _ = _shifted_pair(t1, mask, np.random.default_rng(4), sigma=0.05)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = build_model("tiny")
    # the output tuning would change the kept network: here the choice itself is under test
    kw = dict(preset="tiny", threads=1, align="register", patch_size=16, block_size=40, seed=0,
              output_tuning="none")
    ruined = denoise(reps, mask, DenoiseConfig(steps=8, lr=0.5, iterations=2, stopping="cross",
                                               **kw), init_model=copy.deepcopy(net))
    first = ruined.history[0]
    assert first["pretrained_heldout_cross_mse"] < min(
        h["heldout_cross_mse"] for h in ruined.history)
    assert ruined.selected_iteration == 0
    # the last iteration lost on the slab: it was never inferred on the whole mask
    assert ruined.history[-1]["inferred_on"] == "held-out slab"
    assert len(ruined.iterations) == 1 and "cross_mse" not in ruined.history[-1]
    # inferring it anyway (the benchmark's curves) changes nothing else: not the frames the
    # result is made with, not the choice
    every = denoise(reps, mask, DenoiseConfig(steps=8, lr=0.5, iterations=2, stopping="cross",
                                              **kw), init_model=copy.deepcopy(net),
                    all_iterations=True)
    assert every.selected_iteration == 0 and len(every.iterations) == 2
    assert "cross_mse" in every.history[-1]
    np.testing.assert_allclose(every.output, ruined.output, atol=1e-6)
    assert every.history[0]["pretrained_frames"] == ruined.history[0]["pretrained_frames"]
    # the result is the pre-trained network's prediction on the whole mask
    plain = denoise(reps, mask, DenoiseConfig(method="pretrained", output_from="average", **kw),
                    init_model=copy.deepcopy(net))
    np.testing.assert_allclose(ruined.denoised[0], plain.denoised[0], atol=1e-5)
    assert ruined.output_from == plain.output_from == "average"
    np.testing.assert_allclose(ruined.output, plain.output, atol=1e-3)
    # one iteration only: it competes with iteration 0 alone, and loses
    one = denoise(reps, mask, DenoiseConfig(steps=8, lr=0.5, iterations=1, stopping="cross",
                                            **kw), init_model=copy.deepcopy(net))
    assert one.selected_iteration == 0 and one.iterations == []
    np.testing.assert_allclose(one.output, plain.output, atol=1e-3)
    # without the hold-out the rule scores on the whole mask and has no iteration 0
    whole = denoise(reps, mask, DenoiseConfig(steps=2, iterations=1, stopping="cross",
                                              holdout=0, **kw), init_model=copy.deepcopy(net))
    assert "holdout" not in whole.history[0] and "heldout_cross_mse" not in whole.history[0]
    assert whole.selected_iteration == 1


def test_result_from_the_average_of_the_repetitions(phantom):
    """``output_from='average'``: the kept network denoises the average of the noisy
    repetitions (noise sigma / sqrt(N)); with the shipped model that beats the mean of the
    denoised repetitions, and it is the default of ``n2a-aligned`` only."""
    from noise2average.arrays.metrics import psnr

    reps, ref, mask = phantom
    kw = dict(method="pretrained", threads=1, block_size=40)
    mean = denoise(reps, mask, DenoiseConfig(output_from="denoised", **kw))
    avg = denoise(reps, mask, DenoiseConfig(output_from="average", **kw))
    assert (mean.output_from, avg.output_from) == ("denoised", "average")
    assert "output_seconds" in avg.history[-1] and "output_seconds" not in mean.history[-1]
    np.testing.assert_allclose(mean.output[mask], np.mean(mean.denoised, axis=0)[mask], atol=1e-6)
    assert psnr(avg.output, ref, mask) > psnr(mean.output, ref, mask) + 0.05
    # outside the mask: the plain average (the default ``blend`` fades only the pass on it)
    np.testing.assert_allclose(mean.output[~mask], np.mean(reps, axis=0)[~mask], rtol=1e-6)
    assert DenoiseConfig().from_average and not DenoiseConfig(method="n2a").from_average
    with pytest.raises(Exception, match="output_from"):
        DenoiseConfig(output_from="median")


def test_registered_runs_give_every_strategy_targets_in_each_repetitions_frame(mni_crop):
    """With frames, the Noise2Noise and supervised targets of rep 2 are moved into rep 2's
    frame, so they line up with rep 2's anatomy instead of rep 1's."""
    from noise2average.nn.strategies import image_targets

    t1, mask = mni_crop
    t1 = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    (a, b), move = _shifted_pair(t1, mask, np.random.default_rng(5), sigma=0.01)
    frames = Frames(2)
    frames.update([a, b], mask)
    clean2 = apply_rigid(t1, move)
    inner = np.zeros_like(mask)
    inner[6:-6, 6:-6, 6:-6] = mask[6:-6, 6:-6, 6:-6]

    def err(img):
        return float(np.mean((img - clean2)[inner] ** 2))

    sup_plain = image_targets("supervised", [a, b], None, t1)[1]
    sup_reg = image_targets("supervised", [a, b], None, t1, frames)[1]
    n2n_plain = image_targets("n2n", [a, b], None)[1]
    n2n_reg = image_targets("n2n", [a, b], None, frames=frames)[1]
    assert err(sup_reg) < 0.2 * err(sup_plain)
    assert err(n2n_reg) < 0.7 * err(n2n_plain)
    # rep 1's targets stay in rep 1's frame (the reference itself)
    np.testing.assert_allclose(image_targets("supervised", [a, b], None, t1, frames)[0], t1)


def test_held_out_score_leaves_out_the_rician_biased_dark_voxels():
    """Scored against magnitude data, a prediction of the biased noisy mean beats the clean
    truth by a wide margin in dark voxels; above SCORE_MIN_SNR noise SDs the margin is small,
    which is why the held-out score counts those voxels only."""
    from noise2average.arrays.agreement import bright_region, cross_error
    from noise2average.arrays.noise import noise_map, rician
    from noise2average.pipeline import SCORE_MIN_SNR

    rng = np.random.default_rng(0)
    clean = np.full((24, 24, 24), 0.08, np.float32)
    clean[12:] = 1.0  # dark half (SNR 1), bright half (SNR 12.5)
    sigma = 0.08
    reps = [rician(clean, sigma, rng) for _ in range(4)]
    # E|x + n| of each level, from many draws
    levels = {v: float(rician(np.full(200_000, v, np.float32), sigma, rng).mean()) for v in (0.08, 1.0)}
    biased = np.where(clean > 0.5, levels[1.0], levels[0.08]).astype(np.float32)
    mask = np.ones(clean.shape, bool)
    bright = bright_region(np.mean(reps, axis=0), noise_map(reps, mask), SCORE_MIN_SNR)
    assert 0.4 < bright.mean() < 0.6

    def margin(region):  # how much better the biased prediction scores than the truth
        return (cross_error(reps, [clean] * 4, region) - cross_error(reps, [biased] * 4, region))

    assert margin(mask) > 5e-4
    assert margin(bright) < 0.1 * margin(mask)


def test_gain_matched_score_prefers_the_sharper_estimate_of_two_echoes(mni_crop):
    """Echo 2 is echo 1 darkened by 10 %. Denoised at their own brightness (A, exact) each
    echo predicts the other one badly unless the brightness is matched; a blurred estimate at
    the echoes' mean brightness (B) wins the plain cross error and loses the matched one."""
    from scipy import ndimage

    from noise2average.arrays.agreement import cross_error, matched_gains

    t1, mask = mni_crop
    t1 = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    clean = [t1, 0.9 * t1]
    rng = np.random.default_rng(4)
    noisy = [c + 0.05 * rng.standard_normal(t1.shape).astype(np.float32) for c in clean]
    exact = [clean[1], clean[0]]  # each echo's "others": the other echo's denoised image
    blurred = [ndimage.gaussian_filter(0.95 * t1, 0.8)] * 2

    def score(others, match):
        return cross_error(noisy, others, mask, match_gain=match)

    assert score(blurred, False) < score(exact, False)
    assert score(exact, True) < score(blurred, True)
    gains = matched_gains(noisy, exact, mask)
    np.testing.assert_allclose(gains, [1 / 0.9, 0.9], rtol=0.01)
    # repetitions of equal brightness: the gains are 1 and the score barely moves
    same = [clean[0], clean[0]]
    equal = [t1 + 0.05 * rng.standard_normal(t1.shape).astype(np.float32) for _ in range(2)]
    np.testing.assert_allclose(matched_gains(equal, same, mask), 1.0, atol=0.01)
    assert abs(cross_error(equal, same, mask, match_gain=True)
               - cross_error(equal, same, mask)) < 1e-5


def test_a_noise2noise_first_iteration_is_noise2noise(phantom):
    """``first_target='others'``: iteration 1 trains each repetition towards the other one, so
    with the same seed and steps it is exactly a Noise2Noise run; the paper's first target
    (the average of both) gives a different network."""
    reps, _, mask = phantom
    kw = dict(iterations=1, steps=3, threads=1, block_size=40, flip=False, align="none",
              stopping="fixed", output_from="denoised")
    first = denoise(reps, mask, DenoiseConfig(method="n2a", first_target="others", **kw))
    n2n = denoise(reps, mask, DenoiseConfig(method="n2n", **kw))
    paper = denoise(reps, mask, DenoiseConfig(method="n2a", **kw))
    np.testing.assert_allclose(first.output, n2n.output, atol=1e-6)
    assert np.abs(first.output - paper.output)[mask].max() > 1e-4
    with pytest.raises(Exception, match="first_target"):
        DenoiseConfig(first_target="clean")
    assert first.history[0]["first_target"] == "others"
    assert paper.history[0]["first_target"] == "average"


def test_output_pass_score_chooses_between_networks_with_three_repetitions(mni_crop):
    """With the result taken from an average of three or more repetitions, the pre-trained and
    the fine-tuned network compete by the held-out error of that pass (each on the average of
    all repetitions but one, against the one left out); with two, the repetitions' scores
    decide alone."""
    from noise2average.nn.models import build_model

    t1, mask = mni_crop
    t1 = (t1 / np.percentile(t1[mask], 99)).astype(np.float32)
    rng = np.random.default_rng(5)
    reps = [t1 + 0.05 * rng.standard_normal(t1.shape).astype(np.float32) for _ in range(3)]
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = build_model("tiny")
    kw = dict(preset="tiny", threads=1, patch_size=16, block_size=40, seed=0, iterations=1)
    for lr in (1e-4, 0.5):  # a gentle fine-tuning, and one that ruins the network
        res = denoise(reps, mask, DenoiseConfig(steps=6, lr=lr, **kw),
                      init_model=copy.deepcopy(net))
        scores = res.history[-1]["output_heldout_cross_mse"]
        assert set(scores) == {"0", "1"} and all(np.isfinite(v) for v in scores.values())
        assert res.selected_iteration == (0 if scores["0"] < scores["1"] else 1)
    assert res.selected_iteration == 0  # the ruined network loses
    two = denoise(reps[:2], mask, DenoiseConfig(steps=6, lr=1e-4, **kw),
                  init_model=copy.deepcopy(net))
    assert "output_heldout_cross_mse" not in two.history[-1]
    for name in ("train_flips", "output_flips"):
        with pytest.raises(Exception, match=name):
            DenoiseConfig(**{name: "diagonal"})
