"""Checkpoints of denoising runs, so an interrupted run resumes where it stopped: after its
last completed iteration (:class:`RunCheckpoint`, volumes) or its last completed group
(:class:`GroupCheckpoint`, diffusion series). Arrays are .npy files (loaded with
``allow_pickle=False``). Training checkpoints (weights and optimizer) are in
:mod:`.checkpoint`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..config import DenoiseConfig
from ..errors import InputError
from ..run_state import IterationState
from .atomic import atomic_path, write_text

# fields that may change between an interrupted run and its resumption
RUNTIME_FIELDS = {"device", "precision", "threads"}


class RunCheckpoint:
    def __init__(self, directory: Path, config: DenoiseConfig, input_sha256: list[str]) -> None:
        self.dir = Path(directory)
        self.config = config
        self.inputs = input_sha256

    def _identity(self) -> dict:
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in RUNTIME_FIELDS}
        # as JSON gives it back (tuples become lists), so a saved identity compares equal
        return json.loads(json.dumps({"config": cfg, "inputs": self.inputs}))

    def exists(self) -> bool:
        return (self.dir / "state.json").is_file()

    def save(self, state: IterationState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        i = state.iteration
        for name, arr in [("result", state.result)] + [
                (f"rep-{k}", r) for k, r in enumerate(state.denoised, 1)]:
            with atomic_path(self.dir / f"iter-{i}_{name}.npy", suffix=".npy") as tmp:
                np.save(tmp, np.asarray(arr, np.float32))
        # written last: only a state.json makes a checkpoint valid
        write_text(self.dir / "state.json", json.dumps(
            {**self._identity(), "iteration": i, "n_reps": len(state.denoised),
             "history": state.history}))

    def load(self) -> IterationState | None:
        if not self.exists():
            return None
        info = json.loads((self.dir / "state.json").read_text())
        if {"config": info["config"], "inputs": info["inputs"]} != self._identity():
            raise InputError(f"checkpoint {self.dir} belongs to other inputs or settings; "
                             "remove it or run without --resume")
        i = info["iteration"]
        denoised = [np.load(self.dir / f"iter-{i}_rep-{k}.npy", allow_pickle=False)
                    for k in range(1, info["n_reps"] + 1)]
        return IterationState(i, self.iteration_result(i), denoised, info["history"])

    def iteration_result(self, i: int) -> np.ndarray:
        return np.load(self.dir / f"iter-{i}_result.npy", allow_pickle=False)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class GroupCheckpoint:
    """Per-group checkpoints of a diffusion run: a resumed run skips the finished groups."""

    def __init__(self, directory: Path, identity: dict) -> None:
        self.dir = Path(directory)
        self.identity = identity

    def exists(self) -> bool:
        return (self.dir / "state.json").is_file()

    def _state(self) -> dict:
        return json.loads((self.dir / "state.json").read_text())

    def save(self, gi: int, output: np.ndarray, denoised: list[np.ndarray], rec: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        done = self._state()["done"] if self.exists() else []
        arrays = [("output", output)] + [(f"rep-{k}", r) for k, r in enumerate(denoised, 1)]
        for name, arr in arrays:
            with atomic_path(self.dir / f"group-{gi}_{name}.npy", suffix=".npy") as tmp:
                np.save(tmp, np.asarray(arr, np.float32))
        clean = {k: v for k, v in rec.items() if not k.startswith("_")}
        write_text(self.dir / f"group-{gi}.json", json.dumps({**clean, "n_reps": len(denoised)}))
        write_text(self.dir / "state.json", json.dumps({**self.identity,
                                                        "done": sorted(set(done) | {gi})}))

    def load(self) -> dict[int, tuple[np.ndarray, list[np.ndarray], dict]]:
        if not self.exists():
            return {}
        state = self._state()
        if {k: state.get(k) for k in self.identity} != self.identity:
            raise InputError(f"checkpoint {self.dir} belongs to other inputs or settings; "
                             "remove it or run without --resume")
        done = {}
        for gi in state["done"]:
            rec = json.loads((self.dir / f"group-{gi}.json").read_text())
            n = rec.pop("n_reps")
            out = np.load(self.dir / f"group-{gi}_output.npy", allow_pickle=False)
            reps = [np.load(self.dir / f"group-{gi}_rep-{k}.npy", allow_pickle=False)
                    for k in range(1, n + 1)]
            done[gi] = (out, reps, rec)
        return done

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def claim_checkpoint(ckpt, resume: bool, force: bool) -> None:
    """Before a run: a checkpoint left by an interrupted run (``RunCheckpoint`` or
    ``GroupCheckpoint``) needs ``--resume`` to continue it or ``--force`` to start over."""
    if ckpt.exists() and not resume:
        if not force:
            raise InputError(f"checkpoint {ckpt.dir} exists from an interrupted run; pass "
                             "--resume to continue it or --force to start over")
        ckpt.remove()

