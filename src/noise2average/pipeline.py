"""``denoise(reps, mask, config)``: the iterative Noise2Average loop (and its comparison
strategies) on arrays. No paths here: the file layer lives in :mod:`noise2average.workflows`."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .arrays.masking import auto_mask
from .arrays.noise import estimate_sigma, noise_map
from .arrays.normalize import Norm
from .config import CLASSICAL_METHODS, DenoiseConfig
from .errors import InputError

ProgressFactory = Callable[[int, str], object]  # (total, description) -> tqdm-like


@dataclass
class IterationState:
    """What is kept after each completed iteration (enough to resume after it)."""

    iteration: int
    result: np.ndarray
    denoised: list[np.ndarray]
    history: list[dict]


@dataclass
class DenoiseResult:
    """Output of :func:`denoise`.

    Attributes
    ----------
    output
        The denoised average of the last iteration (zero or plain average outside the mask).
    denoised
        Each denoised repetition of the last iteration (conventional methods: the inputs).
    iterations
        The result of every iteration, in order.
    mask, noise_map
        The mask used, and the local noise standard deviation of one repetition.
    history
        Per iteration: training losses, seconds, steps.
    """

    output: np.ndarray
    denoised: list[np.ndarray]
    iterations: list[np.ndarray]
    mask: np.ndarray
    noise_map: np.ndarray
    sigma: float
    history: list[dict] = field(default_factory=list)
    config: DenoiseConfig | None = None
    compute: str = ""


def validate_inputs(reps: Sequence[np.ndarray], mask: np.ndarray | None) -> list[np.ndarray]:
    if len(reps) < 2:
        raise InputError(f"Noise2Average needs at least 2 repetitions, got {len(reps)}")
    arrays = [np.asarray(r, dtype=np.float32) for r in reps]
    shape = arrays[0].shape
    if len(shape) != 3:
        raise InputError(f"repetitions must be 3D volumes, got shape {shape}")
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise InputError(f"repetition {i + 1} has shape {a.shape}, repetition 1 {shape}")
        if not np.isfinite(a).all():
            raise InputError(f"repetition {i + 1} contains NaN or Inf")
    if mask is not None:
        if mask.shape != shape:
            raise InputError(f"mask shape {mask.shape} differs from the images' {shape}")
        if not mask.any():
            raise InputError("mask is empty")
    return arrays


def _initial_model(config: DenoiseConfig, init_model=None):
    from .io.weights import load_model, load_packaged
    from .nn.models import build_model

    if init_model is not None:
        return init_model
    if config.init == "pretrained":
        model, _ = load_packaged("t1w")
        return model
    if config.init == "scratch":
        return build_model(config.preset)
    return load_model(config.init)[0]


def denoise(reps: Sequence[np.ndarray], mask: np.ndarray | None = None,
            config: DenoiseConfig | None = None, *, reference: np.ndarray | None = None,
            init_model=None, resume: IterationState | None = None,
            on_iteration: Callable[[IterationState], None] | None = None,
            progress: ProgressFactory | None = None) -> DenoiseResult:
    """Denoise N >= 2 co-registered repetitions of one subject.

    Parameters
    ----------
    reps
        3D arrays on one grid (any intensity scale).
    mask
        Boolean brain mask; default: a head mask of the plain average.
    config
        :class:`DenoiseConfig`; default: Noise2Average with the shipped CPU model.
    reference
        Clean image, only for ``method='supervised'``.
    init_model
        A :class:`~noise2average.nn.models.MUNet` to start from instead of ``config.init``.
    resume
        State of the last completed iteration of an interrupted run.
    on_iteration
        Called after each iteration (the file layer writes checkpoints there).
    progress
        Factory of progress bars ``progress(total, description)``.
    """
    import torch

    from .nn.device import resolve_policy
    from .nn.engine import denoise_volume, fit, inference_blocks
    from .nn.patches import PatchSampler, block_centres
    from .nn.strategies import residual_pairs

    config = config or DenoiseConfig()
    config.validate()
    reps = validate_inputs(reps, mask)
    average = np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
    mask = auto_mask(average) if mask is None else mask.astype(bool)
    if not mask.any():
        raise InputError("no foreground found for an automatic mask; pass a mask")
    sigma = estimate_sigma(reps, mask)
    nmap = noise_map(reps, mask)

    def finish(img: np.ndarray) -> np.ndarray:
        out = np.where(mask, img, average if config.outside == "average" else 0)
        return out.astype(np.float32)

    if config.method in CLASSICAL_METHODS:
        from .methods import CLASSICAL

        out = finish(CLASSICAL[config.method](reps, mask, sigma))
        return DenoiseResult(out, list(reps), [out], mask, nmap, sigma, config=config,
                             compute="cpu")
    if config.method == "supervised":
        if reference is None:
            raise InputError("method 'supervised' needs a clean reference image")
        if reference.shape != reps[0].shape:
            raise InputError(f"reference shape {reference.shape} differs from {reps[0].shape}")

    policy = resolve_policy(config.device, config.precision, config.threads)
    base = _initial_model(config, init_model)
    base_state = copy.deepcopy(base.state_dict())
    model = policy.prepare(base)
    radius = model.config.receptive_radius
    norms = [Norm.fit(r, mask) for r in reps]
    flip_axis = config.lr_axis if config.flip else None
    n_iter = config.iterations if config.method == "n2a" else 1
    steps = 0 if config.method == "pretrained" else config.steps
    centres = block_centres(mask, config.patch_size) if config.sampling == "blocks" else None

    history: list[dict] = []
    results: list[np.ndarray] = []
    current = average
    denoised = list(reps)
    start = 1
    if resume is not None:
        history, current, denoised = list(resume.history), resume.result, resume.denoised
        results = [resume.result]  # earlier iterations' results are in the checkpoint files
        start = resume.iteration + 1

    for it in range(start, n_iter + 1):
        rec: dict = {"iteration": it}
        if it > 1 and config.restart:
            model.load_state_dict(base_state)
        torch.manual_seed(config.seed + it)
        if steps > 0:
            inputs, targets = residual_pairs(config.method, reps, norms, current, reference)
            sampler = PatchSampler(inputs, targets, mask, config.patch_size, config.batch_size,
                                   flip_axes=(flip_axis,) if flip_axis is not None else (),
                                   centres=centres)
            bar = progress(steps, f"train {it}/{n_iter}") if progress else None
            state = fit(model, sampler, steps, config.lr, policy, seed=config.seed + it,
                        progress=(lambda n, loss: (bar.update(n), bar.set_postfix(loss=f"{loss:.4f}")))
                        if bar else None)
            if bar:
                bar.close()
            rec.update(train_seconds=round(state.seconds, 2), losses=state.losses)
        t0 = time.perf_counter()
        bar = progress(len(reps) * inference_blocks(mask, config.block_size, flip_axis is not None),
                       f"infer {it}/{n_iter}") if progress else None
        denoised = []
        for rep, norm in zip(reps, norms):
            z = norm.forward(rep)[None]
            out = denoise_volume(model, z, mask, policy, radius, config.block_size, flip_axis,
                                 progress=bar.update if bar else None)
            denoised.append(np.where(mask, norm.inverse(out[0]), rep).astype(np.float32))
        if bar:
            bar.close()
        rec["infer_seconds"] = round(time.perf_counter() - t0, 2)
        current = finish(np.mean(denoised, axis=0))
        results.append(current)
        history.append(rec)
        if on_iteration is not None:
            on_iteration(IterationState(it, current, list(denoised), list(history)))

    return DenoiseResult(current, denoised, results, mask, nmap, sigma, history, config,
                         policy.describe())
