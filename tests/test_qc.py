"""The checks that flag a run for a second look (noise2average.arrays.qc) and the terminal
summary of a run."""

from pathlib import Path

import numpy as np

from noise2average.arrays.masking import auto_mask
from noise2average.arrays.qc import (dropped_slices_warning, gain_warning, mask_edge_warning,
                                     near_copies_warning, pretraining_warnings, run_warnings,
                                     smoothing_warning)
from noise2average.workflows import run_summary


def _head(shape=(32, 32, 24)):
    """A bright ellipsoid 'head' that fills the field of view along z (an EPI slab)."""
    x, y, _ = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return (x ** 2 + y ** 2 < 0.6).astype(np.float32) * 100 + 1


def test_gain_near_one_is_flagged():
    assert "barely better" in gain_warning({"snr_result": 21.0, "snr_average": 20.0})
    assert gain_warning({"snr_result": 40.0, "snr_average": 20.0}) is None
    assert gain_warning({"snr_result": None, "snr_average": 20.0}) is None


def test_a_result_smoother_than_the_anatomy_is_flagged():
    assert "smoother than the anatomy" in smoothing_warning(0.8)
    assert smoothing_warning(0.97) is None and smoothing_warning(None) is None


def test_mask_that_touches_the_field_of_view():
    mask = _head() > 50
    assert "first z, last z" in mask_edge_warning(mask)
    inner = np.zeros_like(mask)
    inner[4:-4, 4:-4, 4:-4] = mask[4:-4, 4:-4, 4:-4]
    assert mask_edge_warning(inner) is None


def test_mask_that_drops_slices_with_signal():
    image = _head()
    mask = image > 50
    cut = mask.copy()
    cut[..., :2] = cut[..., -2:] = False
    assert "4 along axis 2" in dropped_slices_warning(image, cut)
    assert dropped_slices_warning(image, mask) is None
    # the automatic mask keeps the outer slices of a head that fills the field of view
    rng = np.random.default_rng(0)
    noisy = image + rng.normal(0, 2, image.shape).astype(np.float32)
    assert dropped_slices_warning(noisy, auto_mask(noisy)) is None
    # only an automatic mask is at fault: a given brain mask leaves the neck out on purpose
    reps = [noisy, noisy + rng.normal(0, 2, image.shape).astype(np.float32)]
    snr = {"snr_result": 50.0, "snr_average": 20.0}
    given = run_warnings(reps, np.mean(reps, 0), cut, 2.0, snr, (1, 1, 1), True, False)
    auto = run_warnings(reps, np.mean(reps, 0), cut, 2.0, snr, (1, 1, 1), True, True)
    assert not any("slices outside" in w for w in given)
    assert any("slices outside" in w for w in auto)


def test_near_copies_and_the_pretraining_range():
    image = _head()
    mask = image > 50
    assert "nearly identical" in near_copies_warning([image, image + 1e-5], mask, 1e-5)
    assert near_copies_warning([image, image], mask, 3.0) is None
    assert pretraining_warnings([image], mask, 3.0, (1, 1, 1)) == []
    noisy, coarse = (pretraining_warnings([image], mask, s, v)
                     for s, v in ((40.0, (1, 1, 1)), (3.0, (3.0, 3.0, 3.0))))
    assert len(noisy) == 1 and "noise SD is 0.396" in noisy[0]
    assert len(coarse) == 1 and "3 x 3 x 3 mm" in coarse[0]
    assert "anisotropic" in pretraining_warnings([image], mask, 3.0, (1, 1, 1.8))[0]


def test_run_summary_says_what_happened():
    record = {"wall_seconds": 12.3, "compute": "cpu", "selected_iteration": 0,
              "history": [{}, {}], "model": {"name": "t1w"}, "output_from": "average",
              "snr_estimate": {"snr_result": 30.0, "snr_average": 20.0},
              "mask": "given", "warnings": ["something to check"]}
    text = run_summary(Path("out.nii.gz"), record, np.ones((2, 2, 2), bool), Path("r.html"))
    assert "wrote out.nii.gz in 12 s" in text and "x1.50 over the plain average" in text
    assert "the pre-trained network" in text and "8 voxels" in text
    assert "report:  r.html" in text and "warning: something to check" in text
    assert "contrast" not in text
    record["history"][-1] = {"output_contrast": "first", "output_contrast_share": 0.62}
    text = run_summary(Path("out.nii.gz"), record, np.ones((2, 2, 2), bool), None)
    assert "in repetition 1's contrast" in text and "62%" in text
    assert "tuned on" not in text and "fine detail" not in text
    record["history"][-1] = {"output_tuning_kept_step": 1000, "output_detail_amount": 0.156}
    text = run_summary(Path("out.nii.gz"), record, np.ones((2, 2, 2), bool), None)
    assert "tuned on that average (1000 steps)" in text and "16% of its own fine detail" in text
