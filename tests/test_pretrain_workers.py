"""Pre-training for fast devices: batches from worker processes, a wall-time budget with the
schedule over time, and a run that starts from existing weights (``n2a pretrain --init``)."""

import json

import numpy as np
import pytest
import torch

from noise2average.cli import main
from noise2average.io.checkpoint import load_fit
from noise2average.io.pretrain_sources import pretrain_sources
from noise2average.io.weights import load_model
from noise2average.nn.device import resolve_policy
from noise2average.nn.engine import _lr_at, fit
from noise2average.nn.models import build_model
from noise2average.nn.workers import WorkerSampler
from noise2average.pretrain import DomainRandomizedSampler, PretrainConfig


def test_workers_deliver_distinct_batches_of_the_sampler():
    cfg = PretrainConfig(crop=24, patch_size=16, batch_size=2, pool=2, refresh=2)
    sampler = WorkerSampler(DomainRandomizedSampler(pretrain_sources(), cfg), workers=2, seed=3)
    try:
        batches = [sampler(np.random.default_rng(0)) for _ in range(4)]
    finally:
        sampler.close()
    for x, y, w in batches:
        assert x.shape == y.shape == w.shape == (2, 1, 16, 16, 16)
        assert torch.isfinite(x).all() and w.sum() > 0
    # two workers draw from two random streams: no two batches are the same
    flat = [b[0].flatten() for b in batches]
    assert all(not torch.equal(flat[i], flat[j]) for i in range(4) for j in range(i + 1, 4))


def test_time_budget_stops_training_and_anneals_by_the_clock():
    assert _lr_at(500, 1000, 1e-3, "cosine", 10, done=1.0) == pytest.approx(5e-5)
    assert _lr_at(500, 1000, 1e-3, "cosine", 10, done=0.0) == pytest.approx(1e-3)
    model = build_model("unet-tiny")
    rng = np.random.default_rng(0)
    batch = (rng.normal(size=(1, 1, 8, 8, 8)).astype(np.float32),
             rng.normal(size=(1, 1, 8, 8, 8)).astype(np.float32) * 0.1,
             np.ones((1, 1, 8, 8, 8), np.float32))
    state = fit(model, lambda r: batch, 10**6, 1e-3, resolve_policy("cpu", "fp32", 1),
                schedule="cosine", seconds=1.0)
    assert 1 <= state.step < 10**6 and 1.0 <= state.seconds < 5.0


def test_pretrain_init_workers_minutes_from_the_cli(tmp_path):
    start = tmp_path / "start.safetensors"
    common = ["--preset", "unet-tiny", "--data", "randomized", "--crop", "24", "--patch", "16",
              "--refresh", "2", "--pool", "2", "--threads", "1", "--quiet"]
    assert main(["pretrain", "-o", str(start), "--steps", "2"] + common) == 0
    out = tmp_path / "continued.safetensors"
    assert main(["pretrain", "-o", str(out), "--init", str(start), "--steps", "100000",
                 "--minutes", "0.05", "--workers", "1", "--checkpoint-every", "1000"]
                + common) == 0
    model, meta = load_model(out)
    steps, recorded = int(meta["steps_done"]), json.loads(meta["pretrain"])
    assert 1 <= steps < 100000 and meta["init"] == str(start)
    assert recorded["workers"] == 1 and recorded["minutes"] == 0.05
    # the run ends between checkpoints; its last step is kept for --resume
    _, state, _ = load_fit(out.with_name(out.name + ".ckpt"))
    assert state.step == steps
    losses = json.loads(out.with_suffix(".losses.json").read_text())
    assert len(losses) == steps and np.all(np.isfinite(losses))
    # the weights moved away from the starting ones
    first, _ = load_model(start)
    assert any(not torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                     model.state_dict().values()))


def test_pretrain_refuses_a_missing_init_file_and_negative_budgets(tmp_path, capsys):
    out = str(tmp_path / "m.safetensors")
    rc = main(["pretrain", "-o", out, "--init", str(tmp_path / "none.safetensors"),
               "--steps", "1", "--quiet"])
    assert rc != 0 and "no such model file" in capsys.readouterr().err
    for option in ("--workers", "--minutes"):
        assert main(["pretrain", "-o", out, option, "-1", "--steps", "1", "--quiet"]) != 0
        assert f"{option} must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()
