"""The detail step: a high-pass that ignores what lies outside its region, SURE's choice of how
much of it to add, checked against the choice that the truth makes, and the gradient match's,
checked against the truth's sharpness."""

import numpy as np
from scipy import ndimage

from noise2average.arrays.detail import (add_detail, budget_amount, high_pass,
                                        matched_detail_amount, sure_detail_amount)
from noise2average.arrays.metrics import gradient_components, gradient_magnitude, sharpness_ratio


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


#: the step of the Monte-Carlo divergence
EPS = 1e-2


def _blurring_denoiser(truth, sigma, seed, width):
    """White noise of ``sigma`` on ``truth``, a Gaussian blur of ``width`` as the denoiser:
    the noisy image, a noise probe, the output and the output with the input moved by
    ``EPS`` probes, the output's detail and its one-draw divergence (the whole volume is
    the region)."""
    rng = np.random.default_rng(seed)
    noisy = truth + sigma * rng.standard_normal(truth.shape).astype(np.float32)
    probe = sigma * rng.standard_normal(truth.shape).astype(np.float32)
    region = np.ones(truth.shape, bool)
    out = ndimage.gaussian_filter(noisy, width)
    out_probed = ndimage.gaussian_filter(noisy + EPS * probe, width)
    detail = high_pass(out, region)
    detail_div = probe * (high_pass(out_probed, region) - detail) / EPS
    return noisy, probe, out, out_probed, detail, detail_div


def test_sure_picks_the_amount_the_truth_would():
    """A blurring denoiser of white noise: SURE's amount matches the one that minimizes the
    true error, and the detail it adds lowers that error."""
    truth = _blocks()
    noisy, probe, out, _, detail, detail_div = _blurring_denoiser(truth, 0.2, 1, 0.8)
    region = np.ones(truth.shape, bool)
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


def _smooth_anatomy(n=40, seed=4):
    """Blocks with soft edges and fine texture, like tissue at 1 mm."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal((n,) * 3), 1.0).astype(np.float32)
    return ndimage.gaussian_filter(_blocks(n, seed), 0.7) + 0.05 * texture


def _average_and_probe(truth, sigma, seed):
    rng = np.random.default_rng(seed)
    average = truth + sigma * rng.standard_normal(truth.shape).astype(np.float32)
    probe = sigma * rng.standard_normal(truth.shape).astype(np.float32)
    return average, probe


def test_gradient_components_add_up_to_the_benchmarks_magnitude():
    image = _smooth_anatomy(20)
    parts = gradient_components(image)
    assert np.allclose(np.sqrt(sum(p * p for p in parts)), gradient_magnitude(image), atol=1e-6)


def test_the_gradient_match_sharpens_a_blurred_result_towards_the_truth():
    """A result blurred beyond the truth falls short of the average's gradient: the match adds
    detail, and the result's sharpness ratio comes closer to 1; the truth itself needs
    almost none."""
    truth = _smooth_anatomy()
    average, probe = _average_and_probe(truth, 0.1, 5)
    region = np.ones(truth.shape, bool)
    inner = np.zeros_like(region)
    inner[4:-4, 4:-4, 4:-4] = True
    blurred = ndimage.gaussian_filter(truth, 0.5)
    amount, record = matched_detail_amount(blurred, average, probe, region, inner)
    assert record["gradient_discrepancy"] < 0.97 and amount > 0.1
    assert abs(record["gradient_discrepancy_after"] - 1) < 2e-3
    before = sharpness_ratio(blurred, truth, inner)
    after = sharpness_ratio(add_detail(blurred, region, amount), truth, inner)
    assert before < 0.95 and abs(after - 1) < abs(before - 1) / 4
    assert matched_detail_amount(truth, average, probe, region, inner)[0] < 0.05


def test_the_gradient_match_adds_nothing_to_a_result_that_keeps_the_noise():
    truth = _smooth_anatomy(seed=6)
    average, probe = _average_and_probe(truth, 0.1, 7)
    amount, record = matched_detail_amount(average, average, probe, np.ones(truth.shape, bool))
    assert amount == 0.0 and record["gradient_discrepancy"] > 1.1


def test_the_budget_stops_the_share_where_the_error_grows_by_that_many_decibels():
    """A blurring denoiser of white noise, SURE's terms on it: the bound's share raises the
    true error by about the budget, and a share past it by more."""
    truth = _smooth_anatomy(seed=8)
    noisy, probe, out, out_probed, detail, detail_div = _blurring_denoiser(truth, 0.1, 9, 1.0)
    scored = np.zeros(truth.shape, bool)
    scored[4:-4, 4:-4, 4:-4] = True
    _, terms = sure_detail_amount(out - noisy, detail, detail_div, np.zeros_like(out), scored)
    error = float(np.mean(((out - noisy) ** 2 + 2 * probe * (out_probed - out) / EPS
                           - probe ** 2)[scored]))
    mse = lambda a: float(np.mean((out + a * detail - truth)[scored] ** 2))  # noqa: E731
    assert abs(error - mse(0.0)) < 0.1 * mse(0.0)  # SURE of the output itself
    bound = budget_amount(terms["quadratic"], terms["linear"], error, budget_db=0.3)
    best = -terms["linear"] / (2 * terms["quadratic"])
    assert bound > best > 0  # the least-error share costs nothing: the bound lies beyond it
    growth_db = 10 * np.log10(mse(bound) / mse(0.0))
    assert 0.15 < growth_db < 0.45  # within half the budget: one probe draw prices it
    assert budget_amount(terms["quadratic"], terms["linear"], -1.0, 0.3) == float("inf")
