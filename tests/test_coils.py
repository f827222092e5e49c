"""The noise floor's channel count, read off the air around a head."""

import numpy as np
import pytest
from scipy import ndimage

from noise2average.arrays.coils import background_coils, noise_mean_to_sd
from noise2average.arrays.noise import difference_probe, rician
from noise2average.config import DenoiseConfig
from noise2average.errors import InputError


def _head(size: int = 64):
    """A bright ball of tissue with texture (the mask: its inner part) in air."""
    grid = np.indices((size,) * 3) - (size - 1) / 2
    radius = np.sqrt((grid ** 2).sum(0))
    rng = np.random.default_rng(1)
    texture = 0.1 * np.sin(grid[0] / 2) * np.cos(grid[1] / 3)
    clean = np.where(radius < 18, 0.7 + texture + 0.02 * rng.standard_normal(radius.shape), 0)
    return clean.astype(np.float32), radius < 14


@pytest.mark.parametrize("coils", [1, 8])
def test_background_gives_the_channel_count(coils):
    clean, mask = _head()
    rng = np.random.default_rng(0)
    reps = [rician(clean, 0.05, rng, coils=coils) for _ in range(2)]
    found, air = background_coils(np.mean(reps, 0), difference_probe(reps), mask, reps[0])
    assert air > 10000
    assert abs(found - coils) <= (0 if coils == 1 else 1), found


def test_a_resampled_repetition_does_not_add_channels():
    """Registration resamples repetition 2: interpolation smooths its noise (a lower SD, the
    same mean), which read as a second channel when the ratio came from the average."""
    clean, mask = _head()
    rng = np.random.default_rng(0)
    first, moved = (rician(clean, 0.05, rng) for _ in range(2))
    resampled = ndimage.shift(moved, (0.5, 0.5, 0.5), order=1, mode="nearest")  # trilinear
    reps = [first, resampled]
    found, air = background_coils(np.mean(reps, 0), difference_probe(reps), mask, first)
    assert air > 10000 and found == 1, found


def test_no_air_keeps_one_channel():
    """Textured tissue everywhere (a crop of the brain), or zeros outside a skull-stripped
    brain: nothing to read, the Rician model stays."""
    clean, mask = _head()
    rng = np.random.default_rng(0)
    anatomy = ndimage.gaussian_filter(rng.standard_normal(clean.shape), 1.5).astype(np.float32)
    tissue = np.where(clean > 0, clean, 0.3 + 2 * anatomy)
    reps = [rician(tissue, 0.05, rng, coils=8) for _ in range(2)]
    assert background_coils(np.mean(reps, 0), difference_probe(reps), mask, reps[0])[0] == 1
    stripped = [np.where(clean > 0, r, 0) for r in reps]
    assert background_coils(np.mean(stripped, 0), difference_probe(stripped), mask,
                            stripped[0]) == (1, 0)


def test_the_ratio_table_rises_with_the_channels():
    table = noise_mean_to_sd(np.arange(1, 9))
    assert table[0] == pytest.approx(1.913, abs=1e-3) and np.all(np.diff(table) > 0)


def test_noise_coils_is_validated():
    with pytest.raises(InputError, match="noise_coils"):
        DenoiseConfig(noise_coils=-1)
