"""A compact checkpoint (second moments only, bfloat16) resumes pre-training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from noise2average.cli import main
from noise2average.io.checkpoint import load_fit

ROOT = Path(__file__).resolve().parents[1]


def test_packed_checkpoint_resumes_pretraining(tmp_path):
    out = tmp_path / "m.safetensors"
    # random label maps among the sources: the --shapes path end to end
    common = ["pretrain", "-o", str(out), "--preset", "unet-tiny", "--data", "randomized",
              "--shapes", "1", "--crop", "24", "--patch", "16", "--refresh", "4", "--pool", "2",
              "--checkpoint-every", "3", "--threads", "1", "--quiet"]
    assert main(common + ["--steps", "6"]) == 0
    packed = tmp_path / "packed"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "pack_resume.py"),
                    str(tmp_path / "m.safetensors.ckpt"), str(packed)], check=True,
                   capture_output=True)
    model, state, _ = load_fit(packed)
    assert state.step == 6 and all("exp_avg" in e for e in state.optimizer["state"].values())
    assert main(common + ["--steps", "9", "--checkpoint", str(packed), "--resume",
                          "--force"]) == 0
    losses = json.loads(out.with_suffix(".losses.json").read_text())
    assert len(losses) == 9 and np.all(np.isfinite(losses))


def test_shapes_need_randomized_data(tmp_path, capsys):
    assert main(["pretrain", "-o", str(tmp_path / "m.safetensors"), "--shapes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--shapes needs --data randomized" in err[0]
    assert not any(tmp_path.iterdir())
