"""Plain averaging, BM4D, AONLM (ANTs DenoiseImage) and DIPY non-local means."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputError

Method = Callable[[Sequence[np.ndarray], np.ndarray, float], np.ndarray]

from .registry import REGISTRY

#: pip package that each optional 3D method needs (from the registry)
EXTRAS = {n: m.extra for n, m in REGISTRY.items() if m.extra and m.volumes}


def _require(method: str):
    import importlib

    module = {"bm4d": "bm4d", "aonlm": "ants", "nlmeans": "dipy.denoise.nlmeans"}[method]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"method {method!r} needs the optional package {EXTRAS[method]!r}: "
                         f"pip install {EXTRAS[method]}") from exc


def _average(reps: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)


def average(reps, mask, sigma):
    """The plain average: the floor every method must beat."""
    return _average(reps)


def bm4d(reps, mask, sigma):
    """BM4D (the `bm4d` package, Gaussian model) on the average, given its noise SD."""
    lib = _require("bm4d")
    avg = _average(reps)
    return np.asarray(lib.bm4d(avg, sigma / np.sqrt(len(reps))), dtype=np.float32)


def aonlm(reps, mask, sigma):
    """Adaptive non-local means with the Rician model: ANTs DenoiseImage through antspyx
    (it estimates the noise itself)."""
    ants = _require("aonlm")
    avg = _average(reps)
    img = ants.from_numpy(avg)
    m = ants.from_numpy(mask.astype(np.float32))
    return np.asarray(ants.denoise_image(img, m, noise_model="Rician").numpy(), dtype=np.float32)


def nlmeans(reps, mask, sigma):
    """DIPY non-local means (Rician correction) on the average, given its noise SD."""
    lib = _require("nlmeans")
    avg = _average(reps)
    return np.asarray(lib.nlmeans(avg, sigma=sigma / np.sqrt(len(reps)), mask=mask,
                                  patch_radius=1, block_radius=2, rician=True), dtype=np.float32)


CLASSICAL: dict[str, Method] = {"average": average, "bm4d": bm4d, "aonlm": aonlm,
                                "nlmeans": nlmeans}
