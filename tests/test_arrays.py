import numpy as np
import pytest

from noise2average.arrays.components import from_components, principal_basis, to_components
from noise2average.arrays.masking import auto_mask, bounding_box
from noise2average.arrays.metrics import psnr, score
from noise2average.arrays.noise import estimate_sigma, noise_map, rician
from noise2average.arrays.normalize import Norm
from noise2average.io.templates import mni152


def test_auto_mask_finds_the_head_in_a_noisy_template():
    t1, brain, _ = mni152()
    t1, brain = t1[::2, ::2, ::2], brain[::2, ::2, ::2]
    noisy = rician(t1, 0.05, np.random.default_rng(0))
    mask = auto_mask(noisy)
    assert mask[brain].mean() > 0.98
    assert not mask[0, 0, 0] and not mask[-1, -1, -1]
    assert mask.mean() < 0.8


def test_noise_estimates_from_repetitions():
    rng = np.random.default_rng(1)
    clean = np.full((30, 30, 30), 10.0, np.float32)
    reps = [clean + rng.normal(0, 0.5, clean.shape).astype(np.float32) for _ in range(3)]
    mask = np.ones(clean.shape, bool)
    assert abs(estimate_sigma(reps, mask) - 0.5) < 0.02
    assert abs(np.median(noise_map(reps, mask)) - 0.5) < 0.05


def test_norm_round_trip_and_metrics():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 1, (20, 20, 20)).astype(np.float32)
    mask = img > 0.2
    n = Norm.fit(img, mask)
    z = n.forward(img)
    assert abs(z[mask].mean()) < 1e-5 and abs(z[mask].std() - 1) < 1e-4
    np.testing.assert_allclose(n.inverse(z), img, atol=1e-5)
    s = score(img, img, mask)
    assert s["psnr"] > 150 and abs(s["ssim"] - 1) < 1e-6 and s["nmae"] == 0
    assert abs(s["sharpness"] - 1) < 1e-6
    assert psnr(img + 0.1, img, mask) == 20.0 or abs(psnr(img + 0.1, img, mask) - 20) < 1e-4
    assert bounding_box(mask)[0].start == np.nonzero(mask)[0].min()


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    from noise2average.io.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_holdout_slab_is_one_central_slab_holding_the_fraction():
    from noise2average.arrays.masking import holdout_slab

    mask = np.zeros((30, 50, 40), bool)
    mask[5:25, 4:46, 6:34] = True
    slab = holdout_slab(mask, 0.1)
    # across the longest axis (1), contiguous, about the middle, at least the fraction
    assert slab[0] == slice(None) and slab[2] == slice(None)
    lo, hi = slab[1].start, slab[1].stop
    assert abs((lo + hi) / 2 - 25) <= 1.5
    assert mask[slab].sum() >= 0.1 * mask.sum()
    assert mask[:, lo + 1:hi, :].sum() < 0.1 * mask.sum()  # not thicker than it needs to be
    # a tiny mask still gets the minimum thickness
    small = np.zeros((8, 8, 8), bool)
    small[2:6, 2:6, 2:6] = True
    assert holdout_slab(small, 0.01, min_thickness=3)[0].stop - holdout_slab(small, 0.01)[0].start == 3


def test_method_registry_matches_the_method_tables():
    from noise2average.config import CLASSICAL_METHODS, DWI_METHODS, METHODS
    from noise2average.methods import CLASSICAL, DIFFUSION, REGISTRY
    from noise2average.methods.registry import method_help

    # every conventional function has its registry entry and the reverse
    assert set(CLASSICAL) == set(CLASSICAL_METHODS)
    assert set(DIFFUSION) == {n for n, m in REGISTRY.items() if m.series and not m.learned}
    assert set(DWI_METHODS) < set(DIFFUSION) and set(METHODS) == set(REGISTRY)
    assert all(m.volumes or m.series for m in REGISTRY.values())
    assert all(name in method_help() for name in REGISTRY)


def test_neighbour_roughness_counts_steps_between_neighbours():
    from noise2average.arrays.dti import neighbour_roughness

    fa = np.full((4, 4, 4), 0.5)
    v1 = np.zeros((4, 4, 4, 3))
    v1[..., 0] = 1.0
    mask = np.ones((4, 4, 4), bool)
    flat = neighbour_roughness(fa, v1, mask)
    assert flat["FA_abs_diff"] == 0 and flat["V1_angle_deg"] == 0 and flat["pairs"] == 3 * 48
    fa[2:] = 0.7  # one step along x: 16 of the 144 pairs cross it
    v1[2:] = [0.0, 1.0, 0.0]
    step = neighbour_roughness(fa, v1, mask)
    assert np.isclose(step["FA_abs_diff"], 0.2 * 16 / 144)
    assert np.isclose(step["V1_angle_deg"], 90.0 * 16 / 144)
    v1[2:] = [-1.0, 0.0, 0.0]  # a flipped direction is the same axis
    assert np.isclose(neighbour_roughness(fa, v1, mask)["V1_angle_deg"], 0.0)


def test_resampling_variance_undoes_the_noise_lost_to_interpolation():
    """A repetition moved by half a voxel loses about a third of its noise variance to the
    spline; the noise map of the registered pair reads low by that much until divided by the
    measured fraction."""
    from noise2average.arrays.frames import Frames
    from noise2average.arrays.noise import noise_map, resampling_variance

    rng = np.random.default_rng(0)
    shape = (40, 40, 40)
    reps = [rng.standard_normal(shape, dtype=np.float32) for _ in range(2)]
    moved = np.eye(4)
    moved[:2, 3] = 0.5
    frames = Frames(2, [np.eye(4), moved])
    aligned = [reps[0], frames.to_frame(reps[1], 1, 0)]
    kept = 0.5 * (1 + resampling_variance(lambda w: frames.to_frame(w, 1, 0), shape, seed=5))
    core = (slice(8, -8),) * 3
    raw = noise_map(aligned)[core].mean()
    fixed = (noise_map(aligned) / np.sqrt(kept))[core].mean()
    assert raw < 0.92 and abs(fixed - 1) < 0.03, (raw, fixed)


def test_principal_components_keep_independent_noise_independent():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 20, 20), bool)
    mask[3:17, 3:17, 3:17] = True
    # a shell-like series: one image times a direction-dependent gain, plus white noise
    anatomy = 100 + 20 * rng.random((20, 20, 20))
    gains = 0.4 + 0.3 * rng.random(12)
    clean = anatomy[..., None] * gains
    noise = rng.normal(0, 2.0, clean.shape)
    basis = principal_basis((clean + noise).astype(np.float32), mask)
    np.testing.assert_allclose(basis.T @ basis, np.eye(12), atol=1e-5)
    # the first component is the mean image's direction, with every entry positive
    assert np.all(basis[:, 0] > 0)
    assert abs(basis[:, 0] @ gains / np.linalg.norm(gains)) > 0.999
    series = (clean + noise).astype(np.float32)
    np.testing.assert_allclose(from_components(to_components(series, basis), basis), series,
                               rtol=1e-5, atol=1e-3)
    # the noise keeps its variance and stays uncorrelated between components (up to the
    # axes' fit to this draw of it: 2 sqrt(12 / 2744), 13 %, on this mask)
    cov = np.cov(to_components(noise.astype(np.float32), basis)[mask].T)
    assert np.trace(cov) / 12 == pytest.approx(4.0, rel=0.03)
    np.testing.assert_allclose(np.diag(cov), 4.0, rtol=0.2)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.abs(corr - np.eye(12)).max() < 0.1
    # nearly all of the signal is in the first component
    signal = to_components(clean.astype(np.float32), basis)[mask]
    assert (signal[:, 0] ** 2).sum() / (signal ** 2).sum() > 0.999
