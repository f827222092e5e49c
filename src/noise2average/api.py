"""Python API on files: a thin wrapper of the same workflow as ``n2a denoise``."""

from __future__ import annotations

import os
from collections.abc import Sequence


def denoise_files(reps: Sequence[str | os.PathLike], output: str | os.PathLike,
                  mask: str | os.PathLike | None = None, **kwargs):
    """Denoise NIfTI repetitions into ``output`` (plus a JSON sidecar); returns the
    :class:`~noise2average.pipeline.DenoiseResult`.

    Keyword arguments are :class:`~noise2average.config.DenoiseConfig` fields (``steps``,
    ``iterations``, ``method``, ...) or file options of ``n2a denoise`` (``save_reps``,
    ``save_iterations``, ``save_noise_map``, ``reference``, ``checkpoint``, ``resume``,
    ``force``, ``quiet``). With ``bvals=`` and ``bvecs=`` (FSL files; one each, or one per
    series) the repetitions are 4D diffusion series (``group_size=``, default 7) and a
    :class:`~noise2average.diffusion.DwiResult` is returned.
    """
    from .workflows import run_denoise

    return run_denoise(reps, output, mask, **kwargs)
