"""What a denoising run keeps after each completed iteration: the pipeline fills it, the
checkpoint files (``io.checkpoint_runs.RunCheckpoint``) store it, and a resumed run starts from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class IterationState:
    """What is kept after each completed iteration (enough to resume after it)."""

    iteration: int
    result: np.ndarray
    denoised: list[np.ndarray]
    history: list[dict]
