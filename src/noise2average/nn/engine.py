"""The one training loop, and inference with test-time flip averaging.

Noise2Average, Noise2Noise, supervised fine-tuning and pre-training all call :func:`fit`; they
differ only in the sampler, i.e. in how the (input, residual target) pairs were formed (and a
diffusion run may weight the directional contrast in the loss, :mod:`.losses`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .device import Policy
from .losses import masked_mse
from .patches import Batch, count_blocks, predict_volume

Sampler = Callable[[np.random.Generator], Batch]


@dataclass
class FitState:
    """What a resumable training run needs besides the model weights."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    optimizer: dict | None = None
    rng: dict | None = None
    seconds: float = 0.0


def _lr_at(step: int, steps: int, lr: float, schedule: str, warmup: int,
           done: float | None = None) -> float:
    """The learning rate at ``step``: linear warm-up, then constant or a cosine decay to 5 %.
    ``done`` (0-1), when given, is how far the run is by the clock, and replaces
    ``step / steps`` as the cosine's progress (a run with a time budget)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "cosine":
        t = (step - warmup) / max(1, steps - warmup) if done is None else min(1.0, done)
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
    return lr


def train_mode(model: torch.nn.Module, freeze_bn: bool = False) -> None:
    """``model`` in training mode; with ``freeze_bn`` its batch-norm layers stay in eval mode
    (their running statistics fixed), as :func:`fit` trains it."""
    model.train()
    if freeze_bn:
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.eval()


def fit(model: torch.nn.Module, sampler: Sampler, steps: int, lr: float, policy: Policy,
        seed: int = 0, schedule: str = "constant", warmup: int = 0,
        state: FitState | None = None,
        on_step: Callable[[FitState], None] | None = None,
        progress: Callable[[int, float], None] | None = None,
        freeze_bn: bool = False, clip_grad: float = 0.0,
        loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] = masked_mse,
        seconds: float | None = None) -> FitState:
    """Train ``model`` in place with Adam and the masked MSE for ``steps`` optimizer steps.

    ``state`` continues an interrupted run (optimizer moments, sampler RNG, step count);
    ``on_step`` is called after every step (checkpointing, logging). ``freeze_bn`` keeps
    batch-normalization layers in eval mode (their running statistics fixed; their affine
    parameters still train), so the network computes the same function in training and at
    inference: fine-tuning with one or two patches per step must not re-estimate statistics
    (see :mod:`noise2average.nn.models`). Networks without batch norm are unaffected.
    ``clip_grad`` > 0 clips the gradients' global norm to it before each step. ``loss_fn``
    (prediction, target, weight) -> loss is :func:`~noise2average.nn.losses.masked_mse` unless
    a method asks for another (:mod:`noise2average.nn.losses`). ``seconds``, when given, is a
    wall-time budget: training stops when it is spent (or at ``steps``, whichever comes first),
    and the cosine schedule runs over that time instead of over the steps, so that a run on
    hardware of unknown speed still ends at a low learning rate.
    """
    state = state or FitState()
    rng = np.random.default_rng(seed)
    if state.rng is not None:
        rng.bit_generator.state = state.rng
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if state.optimizer is not None:
        opt.load_state_dict(state.optimizer)
    train_mode(model, freeze_bn)
    t0 = time.perf_counter() - state.seconds
    while state.step < steps and (seconds is None or state.seconds < seconds):
        done = None if seconds is None else state.seconds / seconds
        for g in opt.param_groups:
            g["lr"] = _lr_at(state.step, steps, lr, schedule, warmup, done)
        x, y, w = (policy.to_tensor(a) for a in sampler(rng))
        opt.zero_grad(set_to_none=True)
        with policy.autocast():
            pred = model(x)
        loss = loss_fn(pred.float(), y, w)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {state.step}")
        loss.backward()
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()
        state.step += 1
        state.losses.append(float(loss.detach()))
        state.seconds = time.perf_counter() - t0
        if progress:
            progress(1, state.losses[-1])
        if on_step is not None:
            state.optimizer = opt.state_dict()
            state.rng = rng.bit_generator.state
            on_step(state)
    state.optimizer = opt.state_dict()
    state.rng = rng.bit_generator.state
    return state


def flip_sets(flips: int | Sequence[int] | None) -> list[tuple[int, ...]]:
    """The axis sets of a test-time flip averaging: none, one axis (the image and its mirror
    image) or every combination of flips along several axes (2^k passes)."""
    if flips is None:
        return [()]
    axes = (flips,) if isinstance(flips, int) else tuple(flips)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def denoise_volume(model: torch.nn.Module, z: np.ndarray, mask: np.ndarray, policy: Policy,
                   radius: int, block: int = 64, flips: int | Sequence[int] | None = 0,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Residual-corrected volume ``z + f(z)`` for a normalized (C, X, Y, Z) input, averaged over
    test-time flips: ``flips`` is a spatial axis (the input and its mirror image along it),
    several axes (every combination of flips along them: 8 passes for all three) or None.

    A network with more input than output channels (a noise-map channel after the image's)
    corrects the first ``out_channels`` channels of ``z``; the result has that many.
    """
    model.eval()
    c_out = model.config.out_channels

    def forward(x: torch.Tensor) -> torch.Tensor:
        with policy.autocast():
            return model(x)

    def run(axes: tuple[int, ...]) -> np.ndarray:
        """The residual of the input flipped along ``axes``, flipped back."""
        spatial = [a + 1 for a in axes]
        vol = np.ascontiguousarray(np.flip(z, spatial)) if axes else z
        out = predict_volume(forward, vol, np.flip(mask, axes) if axes else mask, radius,
                             policy.to_tensor, block=block, out_channels=c_out,
                             progress=progress, align=model.config.grid_alignment)
        return np.flip(out, spatial) if axes else out

    sets = flip_sets(flips)
    res = run(sets[0])
    for axes in sets[1:]:
        res = res + run(axes)
    if len(sets) > 1:
        res = res / len(sets)
    return (z[:c_out] + res).astype(np.float32)


def inference_blocks(mask: np.ndarray, block: int, flip: bool) -> int:
    return count_blocks(mask, block, 8) * (2 if flip else 1)
