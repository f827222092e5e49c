"""The detail step: a high-pass that ignores what lies outside its region, and SURE's choice of
how much of it to add, checked against the choice that the truth makes."""

import numpy as np
from scipy import ndimage

from noise2average.arrays.detail import add_detail, high_pass, sure_detail_amount


def test_high_pass_sees_no_edge_at_the_region_border():
    region = np.zeros((20, 20, 20), bool)
    region[4:16, 4:16, 4:16] = True
    flat = np.where(region, 3.0, 0.0).astype(np.float32)
    assert np.abs(high_pass(flat, region)).max() < 1e-5
    assert add_detail(flat, region, 0.5)[region].std() < 1e-5


def _blocks(n=40, seed=0):
    """Piecewise-constant anatomy with edges at several scales."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n // 5,) * 3).astype(np.float32)
    return np.kron(coarse, np.ones((5, 5, 5), np.float32))


def test_sure_picks_the_amount_the_truth_would():
    """A blurring denoiser of white noise: SURE's amount matches the one that minimizes the
    true error, and the detail it adds lowers that error."""
    truth = _blocks()
    rng = np.random.default_rng(1)
    sigma = 0.2
    noisy = truth + sigma * rng.standard_normal(truth.shape).astype(np.float32)
    probe = sigma * rng.standard_normal(truth.shape).astype(np.float32)
    region = np.ones(truth.shape, bool)
    eps = 1e-2

    def denoise(x):
        return ndimage.gaussian_filter(x, 0.8)

    out = denoise(noisy)
    detail = high_pass(out, region)
    detail_div = probe * (high_pass(denoise(noisy + eps * probe), region) - detail) / eps
    scored = np.zeros_like(region)
    scored[4:-4, 4:-4, 4:-4] = True
    amount, terms = sure_detail_amount(out - noisy, detail, detail_div,
                                       np.zeros_like(out), scored, bounds=(-1.0, 3.0))
    u, e = detail[scored], (out - truth)[scored]
    best = -float(np.sum(u * e) / np.sum(u * u))  # the truth's least-squares amount
    assert best > 0.2  # this denoiser is too smooth: detail helps
    assert abs(amount - best) < 0.05 * best
    mse = lambda a: float(np.mean((out + a * detail - truth)[scored] ** 2))  # noqa: E731
    assert mse(amount) < mse(0.0) and terms["sure_change"] < 0


def test_sure_adds_nothing_to_a_denoiser_that_keeps_the_noise():
    """The identity keeps all the noise: adding its own detail only adds noise, so the
    amount stays at the lower bound."""
    truth = _blocks(seed=2)
    rng = np.random.default_rng(3)
    noisy = truth + 0.1 * rng.standard_normal(truth.shape).astype(np.float32)
    probe = 0.1 * rng.standard_normal(truth.shape).astype(np.float32)
    region = np.ones(truth.shape, bool)
    detail = high_pass(noisy, region)
    detail_div = probe * high_pass(probe, region)  # the identity's detail is linear
    amount, _ = sure_detail_amount(np.zeros_like(noisy), detail, detail_div,
                                   np.zeros_like(noisy), region)
    assert amount == 0.0
