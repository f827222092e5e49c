"""SURE fine-tuning on the registered average: the noise probe, the loss, the pipeline option."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from noise2average.arrays.detail import DETAIL_BOUNDS, add_detail, matched_detail_amount
from noise2average.arrays.noise import (contrast_explained, difference_probe, estimate_sigma,
                                        local_sd, remove_anatomy, rician, rician_bias,
                                        rician_mean)
from noise2average.arrays.sharpness import interior, sharpness_estimate
from noise2average.config import DenoiseConfig
from noise2average.diffusion import denoise_dwi
from noise2average.errors import InputError
from noise2average.methods import CLASSICAL
from noise2average.nn.losses import sure_loss
from noise2average.pipeline import denoise


def _smooth_volume(shape, seed):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 2).astype(np.float32) * 5


def _box_residual(x: torch.Tensor) -> torch.Tensor:
    """The residual of a 3x3x3 box filter, a linear denoiser with a known divergence."""
    kernel = torch.full((1, 1, 3, 3, 3), 1 / 27)
    wrapped = torch.nn.functional.pad(x, (1,) * 6, mode="circular")  # no darkened border
    return torch.nn.functional.conv3d(wrapped, kernel) - x


@pytest.mark.parametrize("probe_scale, close", [(1.0, True), (2.0, False)])
def test_sure_loss_estimates_the_error_against_the_truth(probe_scale, close):
    g = torch.Generator().manual_seed(0)
    clean = torch.from_numpy(_smooth_volume((40, 40, 40), 1))[None, None]
    sigma, eps = 0.3, 1e-2
    noisy = clean + sigma * torch.randn(clean.shape, generator=g)
    probe = probe_scale * sigma * torch.randn(clean.shape, generator=g)
    pred = _box_residual(torch.cat([noisy, noisy + eps * probe]))
    weight = torch.ones_like(clean)
    estimate = float(sure_loss(pred, probe, weight, eps))
    # SURE estimates the squared error minus the noise variance, without the truth
    truth = float(((noisy + _box_residual(noisy) - clean) ** 2).mean()) - sigma ** 2
    assert (abs(estimate - truth) < 0.05 * sigma ** 2) == close


def test_recorrupted_pairs_have_uncorrelated_noise_and_no_bias():
    """Input x + alpha p and target x - bias - p / alpha: the input's noise has (1 + alpha^2)
    times the image's variance, the target's noise is uncorrelated with it and has no mean."""
    from noise2average.nn.patches import RecorruptedPatchSampler

    rng = np.random.default_rng(0)
    shape, sigma, alpha, bias, truth = (40, 40, 40), 0.1, 0.5, 0.03, 1.0
    image = truth + bias + sigma * rng.standard_normal((1, *shape), dtype=np.float32)
    probe = sigma * rng.standard_normal((1, *shape), dtype=np.float32)
    sampler = RecorruptedPatchSampler(image, probe, np.ones(shape, np.float32),
                                      np.ones(shape, bool), patch=16, batch=8, alpha=alpha,
                                      bias=np.full_like(image, bias))
    batches = [sampler(rng) for _ in range(20)]
    assert all(x.shape == r.shape == w.shape == (8, 1, 16, 16, 16) for x, r, w in batches)
    noise_in = np.concatenate([x for x, _, _ in batches]).ravel() - truth
    noise_out = np.concatenate([x + r for x, r, _ in batches]).ravel() - truth
    assert np.isclose(noise_in.var(), (1 + alpha ** 2) * sigma ** 2, rtol=0.05)
    assert np.isclose(noise_out.var(), (1 + alpha ** -2) * sigma ** 2, rtol=0.05)
    assert abs(np.corrcoef(noise_in, noise_out)[0, 1]) < 0.02
    assert abs(noise_out.mean()) < 0.05 * sigma  # the bias is out of the target
    assert abs(noise_in.mean() - bias) < 0.05 * sigma  # and still in the input


@pytest.mark.parametrize("coils", [1, 4])
def test_rician_mean_matches_simulated_magnitudes(coils):
    rng = np.random.default_rng(0)
    sd = 0.1
    for snr in (0.0, 0.5, 1.0, 3.0, 10.0, 100.0):
        signal = np.full(200_000, snr * sd, np.float32)
        simulated = float(rician(signal, sd, rng, coils=coils).mean())
        assert float(rician_mean(signal[:1], sd, coils)[0]) == pytest.approx(simulated, rel=4e-3)
    assert float(rician_bias(np.zeros(1), sd)[0]) == pytest.approx(sd * np.sqrt(np.pi / 2))


def test_sure_loss_with_the_rician_bias_estimates_the_error():
    """On magnitude data the average carries the Rician bias; SURE scored against the data
    minus that bias estimates the error against the truth, plain SURE does not."""
    rng = np.random.default_rng(1)
    clean = 0.35 + 0.15 * np.tanh(_smooth_volume((40, 40, 40), 3))
    sd, eps = 0.15, 1e-2
    reps = [rician(clean, sd, rng) for _ in range(2)]
    noisy = torch.from_numpy(np.mean(reps, axis=0))[None, None]
    probe = torch.from_numpy(difference_probe(reps))[None, None]
    # the probe cut elsewhere, as the sampler does: independent of the average's own noise
    probe = torch.roll(probe, 20, dims=2)
    bias = torch.from_numpy(rician_bias(clean, sd))[None, None]
    pred = _box_residual(torch.cat([noisy, noisy + eps * probe]))
    weight = torch.ones_like(noisy)
    noise = noisy - torch.from_numpy(clean)[None, None] - bias
    truth = float(((noisy + pred[:1] - torch.from_numpy(clean)) ** 2).mean()) - float(noise.var())
    corrected = float(sure_loss(pred, torch.cat([probe, bias]), weight, eps))
    plain = float(sure_loss(pred, probe, weight, eps))
    assert abs(corrected - truth) < 0.25 * abs(plain - truth)


def test_difference_probe_has_the_average_noise_and_no_anatomy():
    rng = np.random.default_rng(0)
    anatomy = _smooth_volume((48, 48, 48), 2)
    sds = (0.1, 0.2)
    reps = [anatomy + s * rng.standard_normal(anatomy.shape).astype(np.float32) for s in sds]
    probe = difference_probe(reps)
    average_noise = np.mean(reps, axis=0) - anatomy
    assert probe.var() == pytest.approx(average_noise.var(), rel=0.03)
    assert abs(np.corrcoef(probe.ravel(), anatomy.ravel())[0, 1]) < 0.02
    three = [anatomy + 0.1 * rng.standard_normal(anatomy.shape).astype(np.float32)
             for _ in range(3)]
    assert difference_probe(three).var() == pytest.approx(0.01 / 3, rel=0.03)
    with pytest.raises(ValueError):
        difference_probe(reps[:1])


def test_remove_anatomy_takes_an_echo_contrast_out_of_the_probe():
    """Two echoes differ in contrast tissue by tissue; the probe without that difference has
    the average's noise again, and repetitions of one contrast keep theirs."""
    rng = np.random.default_rng(3)
    anatomy = 1.0 + np.tanh(_smooth_volume((48, 48, 48), 4))
    decay = np.where(anatomy > 1.0, 0.90, 0.93).astype(np.float32)  # two "tissues"
    noise = [0.05 * rng.standard_normal(anatomy.shape).astype(np.float32) for _ in range(2)]
    average_noise_var = float(np.var((noise[0] + noise[1]) / 2))
    for scale in (decay, np.float32(1.0)):
        reps = [anatomy + noise[0], anatomy * scale + noise[1]]
        raw = difference_probe(reps)
        clean = remove_anatomy(raw, np.mean(reps, axis=0))
        assert clean.var() == pytest.approx(average_noise_var, rel=0.04)
        assert abs(np.corrcoef(clean.ravel(), anatomy.ravel())[0, 1]) < 0.02
        assert float(np.median(local_sd(clean))) == pytest.approx(np.sqrt(average_noise_var),
                                                                  rel=0.05)
    assert raw.var() == pytest.approx(average_noise_var, rel=0.01)  # one contrast: untouched
    echo = difference_probe([anatomy + noise[0], anatomy * decay + noise[1]])
    assert echo.var() > 1.2 * average_noise_var  # the raw echo difference holds contrast


def _echo_pair(decay: np.ndarray | float, seed: int = 5):
    """Two noisy repetitions of a smooth two-tissue anatomy, the second scaled by ``decay``
    (a later echo), the clean first and the mask."""
    rng = np.random.default_rng(seed)
    anatomy = 1.0 + np.tanh(_smooth_volume((40, 40, 40), 4))
    mask = np.zeros(anatomy.shape, bool)
    mask[4:36, 4:36, 4:36] = True
    reps = [anatomy + 0.05 * rng.standard_normal(anatomy.shape).astype(np.float32),
            anatomy * decay + 0.05 * rng.standard_normal(anatomy.shape).astype(np.float32)]
    return reps, anatomy, mask


def test_the_contrast_model_explains_an_echo_not_noise():
    anatomy = _echo_pair(1.0)[1]
    echo_decay = np.where(anatomy > 1.0, 0.88, 0.93).astype(np.float32)  # two "tissues"
    for decay in (echo_decay, np.float32(1.0)):
        reps, anatomy, mask = _echo_pair(decay)
        estimate = (anatomy * (1 + decay) / 2).astype(np.float32)  # a perfect denoiser's
        explained, share = contrast_explained(reps[0] - np.mean(reps, axis=0), estimate, mask)
        error = np.sqrt(np.mean((estimate + explained - anatomy)[mask] ** 2))
        if decay is echo_decay:
            assert share > 0.5, share
            # the estimate of echo 1 gets its brightness back: error far below the mean's
            assert error < 0.2 * np.sqrt(np.mean((estimate - anatomy)[mask] ** 2))
        else:
            assert share < 0.15, share
            assert error < 0.01  # the fits add next to nothing to a perfect estimate


def test_output_contrast_gives_two_echoes_the_first_ones_brightness():
    anatomy = _echo_pair(1.0)[1]
    decay = np.where(anatomy > 1.0, 0.88, 0.93).astype(np.float32)
    reps, anatomy, mask = _echo_pair(decay)
    base = DenoiseConfig(method="pretrained", output_from="average", align="none", threads=1,
                         precision="fp32", block_size=48, output_flips="lr")
    errors, records = {}, {}
    for contrast in ("auto", "average"):
        result = denoise(reps, mask, base.replace(output_contrast=contrast))
        records[contrast] = result.history[-1]
        errors[contrast] = float(np.sqrt(np.mean((result.output - anatomy)[mask] ** 2)))
    assert records["auto"]["output_contrast"] == "first"
    assert records["auto"]["output_contrast_share"] > 0.3
    assert "output_contrast" not in records["average"]
    assert errors["auto"] < 0.7 * errors["average"], errors
    # a conventional method takes echo 1's contrast only when asked to
    plain = {c: denoise(reps, mask, base.replace(method="average", output_contrast=c)).output
             for c in ("auto", "first")}
    plain_error = {c: float(np.sqrt(np.mean((o - anatomy)[mask] ** 2)))
                   for c, o in plain.items()}
    assert plain_error["first"] < 0.8 * plain_error["auto"], plain_error
    np.testing.assert_array_equal(plain["auto"], np.mean(reps, axis=0))
    # repetitions of one contrast keep the average's
    same = denoise(_echo_pair(np.float32(1.0))[0], mask, base).history[-1]
    assert same["output_contrast"] == "average" and same["output_contrast_share"] < 0.3
    with pytest.raises(InputError, match="output_contrast"):
        DenoiseConfig(output_contrast="echo1")


def _cubes_case():
    clean = np.zeros((32, 32, 32), np.float32)
    clean[8:24, 8:24, 8:24] = 1.0
    clean[12:20, 12:20, 12:20] = 0.5
    clean = ndimage.gaussian_filter(clean, 1)
    mask = np.zeros(clean.shape, bool)
    mask[4:28, 4:28, 4:28] = True
    rng = np.random.default_rng(0)
    reps = [rician(clean, 0.08, rng) for _ in range(2)]
    return clean, mask, reps


def test_output_tuning_lowers_the_error_of_the_output():
    """Both objectives, SURE and recorrupted pairs, tune the output pass below the untuned
    network's error."""
    clean, mask, reps = _cubes_case()
    # fp32: the bf16 autocast of the Noise2Average steps before it hit a NaN at step 1 once
    # in a full-suite run (as in test_dwi_volumes); SURE's own steps always run in fp32, the
    # recorrupted pairs follow the policy
    base = DenoiseConfig(steps=3, iterations=1, patch_size=16, align="none", threads=1,
                         precision="fp32", output_tuning_steps=200)
    bright = mask & (clean > 0.3)
    errors = {}
    for tuning in ("none", "sure", "r2r"):
        result = denoise(reps, mask, base.replace(output_tuning=tuning))
        errors[tuning] = [float(np.sqrt(((result.output - clean)[m] ** 2).mean()))
                          for m in (mask, bright)]
        history = result.history[-1]
        if tuning != "none":
            assert history["output_tuning"] == tuning
            assert np.isfinite(history["output_tuning_loss"])
    # the zero-signal rim of this phantom keeps a Rician floor that no denoiser can place;
    # the gain is in the cubes
    for tuning in ("sure", "r2r"):
        assert errors[tuning][0] < errors["none"][0], (tuning, errors)
        assert errors[tuning][1] < 0.9 * errors["none"][1], (tuning, errors)


def test_detail_step_and_blend_add_their_shares_to_the_output():
    """``output_detail=sure``: the same tuned output plus the recorded share of its own
    detail, the share in its bounds; ``match``: the share the gradient match finds on that
    output; a number: that share. ``output_blend``: that share of BM4D on the average, the
    rest the network's output. A small scratch network: the wiring is under test
    (tests/test_detail.py checks both choices against the truth)."""
    clean, mask, reps = _cubes_case()
    base = DenoiseConfig(steps=2, iterations=1, patch_size=16, align="none", threads=1,
                         precision="fp32", output_tuning_steps=20, output_tuning="r2r",
                         outside="zero", output_flips="lr", preset="tiny", init="scratch",
                         output_detail="none")
    plain = denoise(reps, mask, base)
    sharp = denoise(reps, mask, base.replace(output_detail="sure"))
    record = sharp.history[-1]
    amount = record["output_detail_amount"]
    assert DETAIL_BOUNDS[0] <= amount <= DETAIL_BOUNDS[1] and record["output_detail_seconds"] > 0
    assert "output_detail_amount" not in plain.history[-1]
    assert plain.history[-1]["noise_coils"] == 1  # Rician noise: the floor of one channel
    average = np.mean(reps, axis=0)  # align="none": the output pass's average
    probe = remove_anatomy(difference_probe(reps), average)
    assert plain.history[-1]["output_sharpness_estimate"] == pytest.approx(
        sharpness_estimate(plain.output, average, probe, mask), abs=2e-4)
    expected = np.where(mask, add_detail(plain.output, mask, amount), 0)
    np.testing.assert_allclose(sharp.output, expected, atol=1e-4)
    matched = denoise(reps, mask, base.replace(output_detail="match", output_detail_budget=0))
    record = matched.history[-1]
    assert record["gradient_discrepancy_after"] >= record["gradient_discrepancy"]
    assert "output_detail_bound" not in record
    assert record["output_detail_amount"] == pytest.approx(
        matched_detail_amount(plain.output, average, probe, mask, interior(mask))[0], abs=0.02)
    np.testing.assert_allclose(
        matched.output,
        np.where(mask, add_detail(plain.output, mask, record["output_detail_amount"]), 0),
        atol=1e-4)
    # ``auto`` on n2a-aligned with a held-out slab: the match within its budget
    bounded = denoise(reps, mask, base.replace(output_detail="auto",
                                               output_detail_budget=0.01)).history[-1]
    assert set(bounded["output_detail_sure_terms"]) == {"quadratic", "linear", "error"}
    assert bounded["output_detail_amount"] <= min(bounded["output_detail_bound"],
                                                  record["output_detail_amount"]) + 1e-4
    fixed = denoise(reps, mask, base.replace(output_detail="0.3"))
    assert fixed.history[-1]["output_detail_amount"] == 0.3
    np.testing.assert_allclose(fixed.output, np.where(mask, add_detail(plain.output, mask, 0.3), 0),
                               atol=1e-4)
    blended = denoise(reps, mask, base.replace(output_blend=0.4))
    other = CLASSICAL["bm4d"](reps, mask, estimate_sigma(reps, mask))  # --method bm4d's
    assert blended.history[-1]["output_blend"] == pytest.approx(0.4)
    np.testing.assert_allclose(blended.output,
                               np.where(mask, 0.6 * plain.output + 0.4 * other, 0), atol=1e-4)
    for value in (1.5, -0.1):
        with pytest.raises(InputError, match="output_blend"):
            DenoiseConfig(output_blend=value)
    with pytest.raises(InputError, match="output_blend"):
        DenoiseConfig(output_blend=0.4, method="n2a")
    for wrong in ("always", "1.5", "-0.1", "nan"):
        with pytest.raises(InputError, match="output_detail"):
            DenoiseConfig(output_detail=wrong)
    with pytest.raises(InputError, match="output_from=average"):
        DenoiseConfig(output_detail="0.2", method="n2a")
    with pytest.raises(InputError, match="output_detail=sure"):
        DenoiseConfig(output_detail="sure", output_tuning="none")
    with pytest.raises(InputError, match="output_from=average"):
        DenoiseConfig(output_detail="match", method="n2a")
    assert DenoiseConfig(output_detail="match").detail_rule == "match"
    # ``auto``: the budgeted match where the tuning's slab prices it, no detail elsewhere
    assert DenoiseConfig().detail_rule == "match"
    for unpriced in ({"method": "n2a"}, {"method": "bm4d"}, {"output_tuning": "none"},
                     {"holdout": 0.0}, {"output_detail_budget": 0.0}, {"output_blend": 0.4}):
        assert DenoiseConfig(**unpriced).detail_rule == "none", unpriced
    with pytest.raises(InputError, match="output_detail_budget"):
        DenoiseConfig(output_detail="match", output_detail_budget=-1)
    assert DenoiseConfig(output_detail="0.2").detail_rule == "share"


def test_output_tuning_is_validated():
    with pytest.raises(InputError, match="output_tuning"):
        DenoiseConfig(output_tuning="always")
    with pytest.raises(InputError, match="output_tuning_steps"):
        DenoiseConfig(output_tuning_steps=-1)
    assert DenoiseConfig(steps=7).tuning_steps("cpu-bf16") == 35
    assert DenoiseConfig(steps=7).tuning_steps("cpu") == 21
    assert DenoiseConfig(steps=7).tuning_steps("cuda") == 70
    assert DenoiseConfig(steps=7, output_tuning="sure").tuning_steps("cpu-bf16") == 14
    assert DenoiseConfig().tuning_objective == "r2r"
    assert DenoiseConfig(output_tuning="sure").tuning_objective == "sure"
    # each objective's schedule as measured, unless one is named
    assert DenoiseConfig().tuning_schedule == "cosine"
    assert DenoiseConfig(output_tuning="sure").tuning_schedule == "constant"
    assert DenoiseConfig(output_tuning_schedule="cosine", output_tuning="sure"
                         ).tuning_schedule == "cosine"
    with pytest.raises(InputError, match="output_tuning_schedule"):
        DenoiseConfig(output_tuning_schedule="step")
    # and each objective's learning rate, unless one is named
    assert DenoiseConfig().tuning_lr == 3e-4
    assert DenoiseConfig(output_tuning="sure").tuning_lr == 1e-4
    assert DenoiseConfig(output_tuning_lr=2e-4, output_tuning="sure").tuning_lr == 2e-4
    with pytest.raises(InputError, match="output_tuning_lr"):
        DenoiseConfig(output_tuning_lr=-1e-4)
    with pytest.raises(InputError, match="output_tuning_alpha"):
        DenoiseConfig(output_tuning_alpha=0)
    assert DenoiseConfig(steps=7, output_tuning_steps=5).tuning_steps("cuda") == 5
    _, mask, reps = _cubes_case()
    with pytest.raises(InputError, match="output_from=average"):
        denoise(reps, mask, DenoiseConfig(output_tuning="sure", output_from="denoised"))
    series = [np.ones((8, 8, 8, 3), np.float32)] * 2
    for mode in ({"dwi_mode": "groups"}, {"output_from": "denoised"}):
        with pytest.raises(InputError, match="dwi-mode volumes and output_from=average"):
            denoise_dwi(series, np.array([0, 1000, 1000]), np.eye(3), None,
                        DenoiseConfig(output_tuning="sure", **mode))


def test_auto_tunes_the_default_method_only():
    """``output_tuning='auto'`` tunes Noise2Average's output pass by recorrupted pairs and
    leaves the comparison methods as they are named."""
    _, mask, reps = _cubes_case()
    base = DenoiseConfig(steps=2, iterations=1, patch_size=16, align="none", threads=1,
                         precision="fp32", output_tuning="auto")
    tuned = denoise(reps, mask, base).history[-1]
    # fp32 on a CPU: three steps per fine-tuning step; by default the slab scores the
    # untuned and the last step, with five checks every ceil(6 / 5) = 2 steps
    assert tuned["output_tuning"] == "r2r" and tuned["output_tuning_kept_step"] in (0, 6)
    assert set(tuned["output_tuning_scores"]) == {"0", "6"}
    # the resolved budget and learning rate are recorded
    assert tuned["output_tuning_steps"] == 6 and tuned["output_tuning_lr"] == 3e-4
    five = denoise(reps, mask, base.replace(output_tuning_checks=5)).history[-1]
    assert set(five["output_tuning_scores"]) == {"0", "2", "4", "6"}
    for method in ("n2n", "pretrained"):
        config = base.replace(method=method, output_from="average")
        assert "output_tuning" not in denoise(reps, mask, config).history[-1]
