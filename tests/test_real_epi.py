"""The documented real-data example (docs/examples.md): nibabel's real two-volume EPI
(``tests/data/example4d.nii.gz``, 128 x 96 x 24, 2 x 2 x 2.2 mm) as one 4D file of repetitions,
without a mask."""

from pathlib import Path

import nibabel as nib
import numpy as np

from noise2average.cli import main

EPI = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"


def test_real_epi_keeps_every_slice_and_warns_what_differs(tmp_path, capsys):
    out = tmp_path / "epi_n2a.nii.gz"
    assert main(["denoise", str(EPI), "-o", str(out), "--steps", "4", "--threads", "1",
                 "--block", "64"]) == 0
    series = nib.load(str(EPI)).get_fdata()
    result = nib.load(str(out)).get_fdata()
    assert result.shape == series.shape[:3]
    # every slice with signal survives (the automatic mask keeps the outer slices, and the
    # default --outside blend keeps the average wherever the mask ends)
    signal = (series.mean(axis=3) > 100).sum(axis=(0, 1))
    kept = (result > 100).sum(axis=(0, 1))
    assert np.all(kept[signal > 0] > 0.8 * signal[signal > 0])
    err = capsys.readouterr().err
    assert "gain:" in err and "automatic head mask" in err
    # 2.2 mm voxels of an EPI: unlike the T1w network's pre-training data, and said so
    assert "the T1w network was pre-trained on 0.8-1.3 mm voxels" in err
    report = (tmp_path / "epi_n2a_report.html").read_text()
    assert "Verdict: check the result" in report and "0.8-1.3 mm voxels" in report
