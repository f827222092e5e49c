"""Model weights as safetensors (no pickled code is ever executed), with the architecture and
provenance in the file's metadata, and the packaged pre-trained models with checksums."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open, save_file

from ..errors import InputError
from ..nn.models import ModelConfig, MUNet
from ..provenance import file_sha256 as sha256
from .atomic import atomic_path

#: Packaged models: name -> file in ``noise2average/weights`` (and its SHA-256 in manifest.json).
PACKAGED = {"t1w": "t1w-cpu.safetensors"}


def save_model(path: str | os.PathLike, model: MUNet, metadata: dict | None = None) -> None:
    meta = {"config": json.dumps(model.config.to_dict())}
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_metadata(path: str | os.PathLike) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def load_model(path: str | os.PathLike) -> tuple[MUNet, dict]:
    """Model and metadata from a safetensors file written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        meta = read_metadata(path)
        config = ModelConfig(**json.loads(meta["config"]))
        state = load_file(str(path))
    except (KeyError, ValueError, OSError, Exception) as exc:  # safetensors raises its own types
        raise InputError(f"not a noise2average model file: {path} ({exc})") from exc
    model = MUNet(config)
    model.load_state_dict(state)
    return model, meta


def packaged_path(name: str = "t1w") -> Path:
    if name not in PACKAGED:
        raise InputError(f"no packaged model {name!r}; available: {sorted(PACKAGED)}")
    return Path(str(resources.files("noise2average") / "weights" / PACKAGED[name]))


def load_packaged(name: str = "t1w") -> tuple[MUNet, dict]:
    """The shipped pre-trained model, after checking its SHA-256 against the manifest."""
    path = packaged_path(name)
    if not path.is_file():
        raise InputError(f"packaged model {path.name} is missing from this installation")
    manifest = json.loads((path.parent / "manifest.json").read_text())
    expected = manifest.get(path.name)
    if expected is not None and sha256(path) != expected:
        raise InputError(f"packaged model {path.name} is corrupt (checksum mismatch)")
    return load_model(path)


def state_to_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
