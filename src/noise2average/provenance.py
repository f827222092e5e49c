"""Provenance: versions, machine, input checksums, written as a JSON sidecar beside outputs."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

from .io.paths import file_sha256

__all__ = ["environment", "file_sha256", "sidecar_path", "write_sidecar"]


def environment(policy=None) -> dict:
    import nibabel
    import numpy
    import scipy
    import torch

    from ._version import __version__
    from .nn.device import available_cpus

    env = {
        "noise2average": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "nibabel": nibabel.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        "torch_threads": torch.get_num_threads(),
    }
    if policy is not None:
        env["compute"] = policy.describe()
        if policy.device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(policy.device)
    return env


def sidecar_path(output: str | os.PathLike) -> Path:
    """``out.nii.gz`` -> ``out.json`` (BIDS-style: the sidecar replaces the image extension)."""
    p = Path(output)
    name = p.name
    for ext in (".nii.gz", ".nii", ".safetensors"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_name(name + ".json")


def write_sidecar(output: str | os.PathLike, record: dict) -> Path:
    from .io.atomic import write_text

    record = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **record}
    path = sidecar_path(output)
    write_text(path, json.dumps(record, indent=2, default=_jsonable))
    return path


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj)}")
