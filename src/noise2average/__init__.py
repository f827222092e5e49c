"""Noise2Average: self-supervised denoising of repeated MRI acquisitions.

The public API is imported lazily so that ``import noise2average`` stays light::

    from noise2average import denoise, DenoiseConfig
    result = denoise([rep1, rep2], mask=mask)      # numpy arrays in, arrays out
    result.output                                  # the denoised average
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["DenoiseConfig", "DenoiseResult", "denoise", "denoise_dwi", "denoise_files",
           "__version__"]


def __getattr__(name: str):
    if name in ("DenoiseConfig",):
        from .config import DenoiseConfig

        return DenoiseConfig
    if name in ("denoise", "DenoiseResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("denoise_dwi", "DwiResult"):  # 4D diffusion series, group by group
        from . import diffusion

        return getattr(diffusion, name)
    if name == "denoise_files":
        from .api import denoise_files

        return denoise_files
    raise AttributeError(f"module 'noise2average' has no attribute {name!r}")
