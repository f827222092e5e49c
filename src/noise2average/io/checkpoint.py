"""Resumable training checkpoints: weights (safetensors), optimizer (tensors only, loaded with
``weights_only=True``) and the rest of :class:`FitState` as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..nn.engine import FitState
from ..nn.models import Network
from .atomic import atomic_path, write_text
from .weights import load_model, save_model


def save_fit(directory: str | os.PathLike, model: Network, state: FitState,
             metadata: dict | None = None) -> None:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_model(d / "model.safetensors", model, metadata)
    with atomic_path(d / "optimizer.pt") as tmp:
        torch.save(state.optimizer, tmp)
    # the JSON goes last: its presence marks a complete checkpoint
    write_text(d / "state.json", json.dumps({"step": state.step, "losses": state.losses,
                                             "rng": state.rng, "seconds": state.seconds}))


def load_fit(directory: str | os.PathLike) -> tuple[Network, FitState, dict] | None:
    """The checkpoint in ``directory``, or None when there is no complete one."""
    d = Path(directory)
    if not (d / "state.json").is_file():
        return None
    info = json.loads((d / "state.json").read_text())
    model, meta = load_model(d / "model.safetensors")
    # map_location: a checkpoint written on a GPU resumes on a CPU (and the reverse: the
    # optimizer moves its state to the parameters' device when it loads it)
    opt = _with_first_moments(torch.load(d / "optimizer.pt", map_location="cpu",
                                         weights_only=True))
    state = FitState(step=info["step"], losses=info["losses"], optimizer=opt, rng=info["rng"],
                     seconds=info.get("seconds", 0.0))
    return model, state, meta


def _with_first_moments(optimizer: dict | None) -> dict | None:
    """Adam state as the optimizer loads it. A compact checkpoint (``scripts/pack_resume.py``)
    keeps only the second moments, in bfloat16: the first moments, an average over
    about the last ten steps, restart at zero; the optimizer casts the rest back to the
    parameters' precision when it loads them."""
    if not optimizer or "state" not in optimizer:
        return optimizer
    for entry in optimizer["state"].values():
        if "exp_avg_sq" in entry and "exp_avg" not in entry:
            entry["exp_avg"] = torch.zeros_like(entry["exp_avg_sq"], dtype=torch.float32)
    return optimizer
