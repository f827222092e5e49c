"""Domain-randomized pre-training data: warps, tissue synthesis, multi-coil noise, sampler."""

import numpy as np
import torch

from noise2average.arrays.noise import rician
from noise2average.arrays.synth import (Source, degrade_resolution, draw_clean, random_labels,
                                        random_warp, shapes_source, sharpen_fractions)
from noise2average.io.pretrain_sources import pretrain_sources, tissue_fractions
from noise2average.nn.device import resolve_policy
from noise2average.nn.models import build_model
from noise2average.pretrain import DomainRandomizedSampler, PretrainConfig, pretrain


def _ball_tissues(n=48):
    g = np.indices((n, n, n)).astype(np.float32) - n / 2
    r = np.sqrt((g ** 2).sum(0))
    wm = np.clip(14 - r, 0, 1)
    gm = np.clip(np.minimum(r - 13, 19 - r), 0, 1)
    csf = np.clip(np.minimum(r - 18, 21 - r), 0, 1)
    return gm, wm, csf, r < 19


def test_random_warp_keeps_the_anatomy_inside_the_cube():
    gm, wm, csf, brain = _ball_tissues()
    src = Source("ball", [gm, wm, csf], brain, 1.0, "tissues")
    rng = np.random.default_rng(0)
    (g2, w2, c2), mask = random_warp(src, (24, 24, 24), 1.0, rng)
    assert g2.shape == (24, 24, 24) and mask.dtype == bool
    # linear interpolation of fractions keeps them in [0, 1] and their sum <= 1 (+ rounding)
    total = g2 + w2 + c2
    assert total.min() >= 0 and total.max() <= 1.0001
    assert mask.any()


def test_draw_clean_is_scaled_and_seeded():
    gm, wm, csf, brain = _ball_tissues()
    sources = [Source("ball", [gm, wm, csf], brain, 1.0, "tissues"),
               Source("ball-t1", [wm + 0.6 * gm], brain, 1.0, "intensity")]
    a, ma, da = draw_clean(sources, (20, 20, 20), np.random.default_rng(5))
    b, mb, db = draw_clean(sources, (20, 20, 20), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert da == db and da["source"] in ("ball", "ball-t1")
    assert abs(np.percentile(a[ma], 99) - 1.0) < 1e-3


def test_shapes_source_draws_seeded_label_images_without_a_brain():
    a, mask, drawn = draw_clean([shapes_source()], (24, 24, 24), np.random.default_rng(2))
    b, _, _ = draw_clean([shapes_source()], (24, 24, 24), np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert drawn == {"source": "random-shapes"} and mask.all()
    assert abs(np.percentile(a, 99) - 1.0) < 1e-3 and a.min() >= 0
    # several labels, none filling the cube: the image has edges, not one flat level
    label = random_labels((24, 24, 24), np.random.default_rng(2))
    counts = np.bincount(label.ravel())
    assert (counts > 0).sum() >= 4 and counts.max() < label.size
    assert np.abs(np.diff(a, axis=0)).max() > 0.2


def test_degrade_resolution_never_sharpens():
    img = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    for seed in range(5):
        out = degrade_resolution(img, np.random.default_rng(seed))
        assert out.std() <= img.std() + 1e-6


def test_multicoil_noise_raises_the_background_floor():
    """Non-central chi: in a zero-signal region the mean magnitude grows with the coil count
    (sigma sqrt(pi/2) for 1 coil, about sigma sqrt(2 L - 1/2) for L coils)."""
    zero = np.zeros((40, 40, 40), np.float32)
    rng = np.random.default_rng(0)
    one = rician(zero, 0.1, rng).mean()
    four = rician(zero, 0.1, rng, coils=4).mean()
    assert abs(one - 0.1 * np.sqrt(np.pi / 2)) < 0.003
    assert abs(four - 0.1 * np.sqrt(8 - 0.5)) < 0.01


def test_tissue_fractions_order_the_classes(mni_crop):
    t1, mask = mni_crop
    gm, wm, csf = tissue_fractions(t1, mask)
    np.testing.assert_allclose((gm + wm + csf)[mask], 1.0, atol=1e-5)
    # WM is brighter than GM, GM than CSF, where each class dominates
    mean = [t1[(m > 0.5) & mask].mean() for m in (csf, gm, wm)]
    assert mean[0] < mean[1] < mean[2]


def test_domain_randomized_pretraining_runs_and_learns():
    """A few real optimizer steps on the MNI152 sources: the loss is finite and falls."""
    torch.manual_seed(0)
    sources = pretrain_sources()
    assert {s.name for s in sources} == {"mni152-t1", "mni152-tissues"}
    cfg = PretrainConfig(steps=30, lr=2e-3, warmup=2, batch_size=2, patch_size=16, crop=32,
                         refresh=30, multicoil=0.5, sigma_min=0.08, sigma_max=0.08)
    sampler = DomainRandomizedSampler(sources, cfg)
    noisy, clean, mask = sampler.draw_volume(np.random.default_rng(0))
    assert len(noisy) == 1 and noisy[0].shape == clean.shape == mask.shape == (32, 32, 32)
    model = build_model("unet-tiny")
    state = pretrain(model, None, None, cfg, resolve_policy("cpu", "fp32", 1), sources=sources)
    assert state.step == 30 and np.all(np.isfinite(state.losses))
    assert np.mean(state.losses[-5:]) < np.mean(state.losses[:5])


def test_noise_channel_carries_the_local_noise_sd_of_the_input():
    """With ``noise_channel`` every patch has a second channel, the noise map estimated from two
    draws, in the input's normalized units: inside the brain it follows the drawn sigma."""
    cfg = PretrainConfig(batch_size=2, patch_size=16, crop=32, refresh=10, noise_channel=True,
                         sigma_min=0.06, sigma_max=0.06, norm_jitter=0.0)
    sampler = DomainRandomizedSampler(pretrain_sources(), cfg)
    noisy, clean, mask = sampler.draw_volume(np.random.default_rng(1))
    assert len(noisy) == 2 and not np.array_equal(noisy[0], noisy[1])
    x, y, w = sampler(np.random.default_rng(2))
    assert x.shape == (2, 2, 16, 16, 16) and y.shape == (2, 1, 16, 16, 16)
    # the channel is sigma (x g-factor 1-1.8, scaled by the normalization's SD): positive,
    # of the drawn noise's order, and not the image
    inside = w[:, 0] > 0
    level = x[:, 1][inside]
    assert level.min() > 0
    image_sd = float(np.std(x[:, 0][inside]))
    assert 0.02 * image_sd < float(np.median(level)) < 0.5 * image_sd


def test_registered_draw_keeps_the_anatomy_and_interpolates_the_noise():
    """A registered repetition: the anatomy back in place (up to the spline's blur), its
    noise interpolated, so that its variance is below the first draw's."""
    from noise2average.arrays.noise import rician
    from noise2average.pretrain import registered_draw

    gm, wm, csf, brain = _ball_tissues(40)
    clean = (0.4 * gm + 0.8 * wm + 0.2 * csf).astype(np.float32)
    rng = np.random.default_rng(3)
    first = rician(clean, 0.05, rng)
    second = registered_draw(clean, rng, lambda moved: rician(moved, 0.05, rng))
    inner = (slice(6, -6),) * 3
    clean_back = registered_draw(clean, np.random.default_rng(4), lambda moved: moved)
    assert np.abs(clean_back - clean)[inner].mean() < 0.02
    var_first = np.var((first - clean)[inner])
    var_second = np.var((second - clean_back)[inner])
    assert 0.4 * var_first < var_second < 0.95 * var_first, (var_first, var_second)


def test_average_input_gives_the_average_and_its_map():
    """With ``average_input`` = 1 the input is the draws' average and the map is divided by
    sqrt(2): the map channel's median falls by about that factor against ``average_input`` 0
    on the same volumes."""
    medians = []
    for p in (0.0, 1.0):
        cfg = PretrainConfig(batch_size=2, patch_size=16, crop=32, refresh=10,
                             noise_channel=True, sigma_min=0.06, sigma_max=0.06,
                             norm_jitter=0.0, registered=1.0, average_input=p)
        sampler = DomainRandomizedSampler(pretrain_sources(), cfg)
        x, _, w = sampler(np.random.default_rng(5))
        assert x.dtype == np.float32
        inside = w[:, 0] > 0
        medians.append(float(np.median(x[:, 1][inside])))
    assert 0.55 < medians[1] / medians[0] < 0.85, medians


def test_sharpened_fractions_are_crisp_partitions():
    gm, wm, csf, _ = _ball_tissues()
    soft = [np.asarray(a, np.float32) for a in (gm, wm, csf)]
    from scipy import ndimage
    soft = [ndimage.gaussian_filter(a, 2.0) for a in soft]  # template-like blurred maps
    hard = sharpen_fractions(soft, np.random.default_rng(0))
    total = sum(hard)
    assert total.max() <= 1.0 + 1e-5
    # most voxels hold one tissue almost alone: the boundaries are a voxel wide, not several
    mixed_soft = np.mean((np.max(soft, 0) < 0.9) & (sum(soft) > 0.5))
    mixed_hard = np.mean((np.max(hard, 0) < 0.9) & (total > 0.5))
    assert mixed_hard < 0.5 * mixed_soft


def test_a_pool_mixes_volumes_in_each_batch():
    """With a pool, the patches of one batch come from different noisy volumes."""
    gm, wm, csf, brain = _ball_tissues(40)
    src = [Source("ball", [gm, wm, csf], brain, 1.0, "tissues")]
    cfg = PretrainConfig(batch_size=8, patch_size=8, crop=24, refresh=1000, pool=4,
                         sigma_min=0.05, sigma_max=0.05)
    sampler = DomainRandomizedSampler(src, cfg)
    x, y, w = sampler(np.random.default_rng(0))
    assert x.shape == (8, 1, 8, 8, 8) and len(sampler.pool) == 4
    single = DomainRandomizedSampler(src, PretrainConfig(batch_size=8, patch_size=8, crop=24,
                                                         refresh=1000))
    single(np.random.default_rng(0))
    assert len(single.pool) == 1
