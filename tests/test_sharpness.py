"""The truth-free sharpness estimate: the anatomy's gradient energy is the average's less its
noise's, so the estimate of a known blur follows the ratio that the truth gives."""

import numpy as np
from scipy import ndimage

from noise2average.arrays.noise import difference_probe
from noise2average.arrays.qc import smoothing_warning
from noise2average.arrays.sharpness import gradient_energy, interior, sharpness_estimate


def _case(sigma=0.3, n=2, seed=0):
    """Blocky anatomy with edges at several scales, smoothed a little, and n noisy copies."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((8, 8, 8)).astype(np.float32)
    truth = ndimage.gaussian_filter(np.kron(coarse, np.ones((5, 5, 5), np.float32)), 0.6)
    reps = [truth + sigma * rng.standard_normal(truth.shape).astype(np.float32)
            for _ in range(n)]
    region = np.ones(truth.shape, bool)
    return truth, reps, np.mean(reps, axis=0), difference_probe(reps), region


def test_the_estimate_follows_the_truths_ratio():
    truth, reps, average, probe, region = _case()
    inner = interior(region)
    assert abs(sharpness_estimate(truth, average, probe, region) - 1) < 0.03
    assert sharpness_estimate(average, average, probe, region) > 1.2  # the noise is not anatomy
    for width in (0.5, 0.8):
        blurred = ndimage.gaussian_filter(truth, width)
        true_ratio = np.sqrt(gradient_energy(blurred, inner) / gradient_energy(truth, inner))
        assert true_ratio < 0.95
        assert abs(sharpness_estimate(blurred, average, probe, region) - true_ratio) < 0.03



def test_a_blurred_result_draws_the_smoothing_warning():
    truth, _, average, probe, region = _case(seed=2)
    assert smoothing_warning(sharpness_estimate(truth, average, probe, region)) is None
    blurred = ndimage.gaussian_filter(truth, 0.8)
    assert smoothing_warning(sharpness_estimate(blurred, average, probe, region))
