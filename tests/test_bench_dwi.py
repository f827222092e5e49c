"""The diffusion benchmark's subset case: conventional methods on the subsets' own volumes."""

import numpy as np
import pytest

from noise2average.bench.dwi import DwiBenchConfig, build_case, run_method, score, subset_volumes
from noise2average.config import DenoiseConfig

from conftest import shrink_contrast


@pytest.fixture(scope="module")
def subset_case():
    return build_case(DwiBenchConfig(case="subset", crop=16, n_dirs=14, n_b0=2, snr=15.0))


def test_subset_volumes_are_the_b0s_and_dwis_the_subsets_were_fitted_from(subset_case):
    vols = subset_volumes(subset_case)
    split = subset_case.record["split"]["subsets"]
    assert len(vols) == 2 + 12  # both b=0 volumes (mean b=0 per subset) and 2 x 6 DWIs
    assert set(vols) >= set(split[0]["volumes"]) | set(split[1]["volumes"])
    assert int(np.sum(subset_case.single_bvals[vols] < 50)) == 2
    assert len(set(vols)) == len(vols) and np.all(np.diff(vols) > 0)


def test_a_conventional_method_on_the_subsets_volumes_is_scored_on_them(subset_case):
    out, table = run_method(subset_case, "mppca@subsets", DenoiseConfig(), 7)
    assert table == "subsets" and out.shape == subset_case.single.shape[:3] + (14,)
    full, full_table = run_method(subset_case, "mppca", DenoiseConfig(), 7)
    assert full_table == "single" and full.shape == subset_case.single.shape
    scores, metrics = score(subset_case, out, table)
    noisy, _ = score(subset_case, subset_case.single[..., subset_volumes(subset_case)], "subsets")
    assert np.isfinite(scores["FA_mae_wm"]) and metrics["FA"].shape == out.shape[:3]
    # MP-PCA on the 14 volumes still denoises them
    assert scores["psnr_dwi"] > noisy["psnr_dwi"]


def test_subsets_suffix_is_refused_where_it_means_nothing(subset_case):
    with pytest.raises(ValueError, match="@subsets"):
        run_method(subset_case, "n2a@subsets", DenoiseConfig(), 7)
    with pytest.raises(ValueError, match="@subsets"):
        run_method(subset_case, "mppca@all", DenoiseConfig(), 7)


def test_contrast_slope_reads_one_for_the_truth_and_the_shrinkage_of_a_shrunk_copy(subset_case):
    from noise2average.bench.dwi import contrast_slope

    case = subset_case
    b0 = case.bvals <= 50
    clean = case.clean.astype(np.float64)
    m = case.wm & case.brain
    assert contrast_slope(clean, clean, b0, m) == pytest.approx(1.0)
    shrunk = shrink_contrast(clean, b0, 0.9)
    assert contrast_slope(shrunk, clean, b0, m) == pytest.approx(0.9, abs=1e-6)


def test_each_case_caches_in_a_folder_of_its_own(tmp_path, monkeypatch):
    from noise2average.bench.dwi import default_work

    monkeypatch.chdir(tmp_path)
    configs = [DwiBenchConfig(case="subset"), DwiBenchConfig(case="subset", subset_size=15),
               DwiBenchConfig(case="subset", subset_size=15, subset_b0="split"),
               DwiBenchConfig(case="subset", phantom="bundles", n_dirs=12),
               DwiBenchConfig(case="apap", subset_size=15)]
    folders = [default_work(c) for c in configs]
    assert [f.name for f in folders] == ["bench_subset", "bench_subset_subset15",
                                         "bench_subset_subset15_b0split",
                                         "bench_subset_bundles_dirs12", "bench_apap"]
    assert all(f.is_dir() for f in folders)
    assert default_work(configs[0], tmp_path / "mine") == tmp_path / "mine"
