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
from ..nn.models import ModelConfig, Network, build_model
from .paths import file_sha256 as sha256
from .atomic import atomic_path

#: Packaged models: name -> file in ``noise2average/weights`` (and its SHA-256 in manifest.json).
PACKAGED = {"t1w": "t1w-unet.safetensors", "t1w-munet": "t1w-cpu.safetensors",
            "dwi": "dwi-cpu.safetensors"}


def save_model(path: str | os.PathLike, model: Network, metadata: dict | None = None) -> None:
    meta = {"config": json.dumps(model.config.to_dict())}
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_metadata(path: str | os.PathLike) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def load_model(path: str | os.PathLike) -> tuple[Network, dict]:
    """Model and metadata from a safetensors file written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    _check_safetensors_layout(path)
    try:
        meta = read_metadata(path)
        config = ModelConfig(**json.loads(meta["config"]))
        state = load_file(str(path))
        # compare shapes on the meta device first: a crafted config allocates nothing
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
        if expected != {k: tuple(v.shape) for k, v in state.items()}:
            raise ValueError("its tensors do not match the architecture in its metadata")
        model = build_model(config)
        model.load_state_dict(state)
    except Exception as exc:  # safetensors, json, dataclass and torch raise their own types
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"not a noise2average model file: {path} ({text})") from exc
    return model, meta


def _check_safetensors_layout(path: Path) -> None:
    """Refuse anything that is not laid out as safetensors (8-byte header length, then a JSON
    header) before a parser sees it, and name PyTorch pickles, which are never unpickled."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if len(head) == 9 and 2 <= n <= size - 8 and head[8:9] == b"{":
        return
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        raise InputError(f"{path} is a PyTorch/pickle checkpoint; noise2average loads only "
                         ".safetensors weights, which cannot run code (convert it with "
                         "safetensors.torch.save_file)")
    raise InputError(f"not a noise2average model file: {path} (not in safetensors format)")


def packaged_path(name: str = "t1w") -> Path:
    if name not in PACKAGED:
        raise InputError(f"no packaged model {name!r}; available: {sorted(PACKAGED)}")
    return Path(str(resources.files("noise2average") / "weights" / PACKAGED[name]))


def load_packaged(name: str = "t1w") -> tuple[Network, dict]:
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
