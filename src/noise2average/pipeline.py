"""``denoise(reps, mask, config)``: the iterative Noise2Average loop (and its comparison
strategies) on arrays. No paths here: the file layer lives in :mod:`noise2average.workflows`."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .arrays.agreement import (bright_region, cross_error, iteration_diagnostics,
                               matched_gains, uncertainty_map)
from .arrays.frames import Frames
from .arrays.channels import broadcast_mask, channels_first, channels_last
from .arrays.masking import auto_mask, blend_outside, blend_weights, holdout_slab
from .arrays.noise import estimate_sigma, noise_map
from .arrays.normalize import Norm
from .config import CLASSICAL_METHODS, DWI_METHODS, PACKAGED_INITS, DenoiseConfig
from .errors import InputError

ProgressFactory = Callable[[int, str], object]  # (total, description) -> tqdm-like

# The held-out score counts voxels whose average exceeds this many local noise SDs of one
# repetition: below it the magnitude (Rician) noise has a mean that fine-tuned networks learn
# from their noisy targets and the pre-trained one removes, so dark voxels favour the former.
SCORE_MIN_SNR = 3.0


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
        The result of every iteration inferred on the whole mask, in order (a last iteration
        that lost on the held-out slab has none unless ``all_iterations``).
    mask, noise_map
        The mask used, and the local noise standard deviation of one repetition.
    history
        Per iteration: training losses, seconds, steps, the agreement diagnostics of
        :mod:`noise2average.arrays.agreement` and, with ``align='register'``, the frames.
    uncertainty
        Local standard error of the mean of the denoised repetitions (learned methods).
    selected_iteration
        The iteration whose result is ``output`` (the last one unless the cross-error rule
        of ``stopping`` kept an earlier one; 0: the pre-trained network's prediction scored
        best on the held-out slab).
    output_from
        ``average``: ``output`` is the kept network applied to the average of the noisy
        repetitions; ``denoised``: the mean of ``denoised`` (``DenoiseConfig.output_from``).
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
    uncertainty: np.ndarray | None = None
    selected_iteration: int = 1
    output_from: str = "denoised"


def validate_inputs(reps: Sequence[np.ndarray], mask: np.ndarray | None) -> list[np.ndarray]:
    if len(reps) < 2:
        raise InputError(f"Noise2Average needs at least 2 repetitions, got {len(reps)}")
    arrays = [np.asarray(r, dtype=np.float32) for r in reps]
    shape = arrays[0].shape
    if len(shape) not in (3, 4):  # 4D: channels last (a diffusion group)
        raise InputError(f"repetitions must be 3D volumes or 4D (X, Y, Z, C) stacks, got "
                         f"shape {shape}")
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise InputError(f"repetition {i + 1} has shape {a.shape}, repetition 1 {shape}")
        if not np.isfinite(a).all():
            raise InputError(f"repetition {i + 1} contains NaN or Inf")
    for i in range(len(arrays)):
        for j in range(i):
            if np.array_equal(arrays[i], arrays[j]):
                raise InputError(f"repetitions {j + 1} and {i + 1} are identical (the same "
                                 "file twice?): their noise differs in real repetitions")
    if mask is not None:
        if mask.shape != shape[:3]:
            raise InputError(f"mask shape {mask.shape} differs from the images' {shape[:3]}")
        if not mask.any():
            raise InputError("mask is empty")
    return arrays


def _initial_model(config: DenoiseConfig, init_model=None):
    from .io.weights import load_model, load_packaged
    from .nn.models import build_model

    if init_model is not None:
        return init_model
    if config.init in PACKAGED_INITS:
        model, _ = load_packaged(PACKAGED_INITS[config.init])
        return model
    if config.init == "scratch":
        return build_model(config.preset)
    return load_model(config.init)[0]


def _combine(reps, denoised, frames: Frames, mask, config: DenoiseConfig, finish,
             holdout: np.ndarray | None = None):
    """Result, next targets, diagnostics and uncertainty map of one iteration's denoised reps.

    Every denoised repetition is brought into every repetition's frame (identity frames, the
    paper's setting, cost nothing): the result is their mean in rep 1's frame, and each
    repetition's next target is formed in its own frame, so that a repetition is never trained
    towards a copy of the anatomy shifted by the residual misalignment.
    """
    n = len(reps)
    grid, others = _others(denoised, frames)
    residuals = [frames.to_frame(reps[k] - denoised[k], k, 0) for k in range(n)]
    # the stopping scores forgive a brightness difference between the repetitions (echoes)
    diagnostics = iteration_diagnostics(reps, others, residuals, grid[0], mask, match_gain=True)
    if holdout is not None:
        diagnostics["heldout_cross_mse"] = cross_error(reps, others, holdout, match_gain=True)
        diagnostics["heldout_gains"] = [round(g, 5) for g in matched_gains(reps, others, holdout)]
    current = finish(np.mean(grid[0], axis=0))
    if config.target == "others":
        targets = [o.astype(np.float32) for o in others]
    elif config.registers:
        targets = [np.mean(row, axis=0).astype(np.float32) for row in grid]
    else:
        targets = current
    return current, targets, diagnostics, uncertainty_map(grid[0], mask)


def _register(frames: Frames, images, mask: np.ndarray) -> None:
    """``frames.update`` with an error line that names the step and the options around it:
    the registration runs by default (``n2a-aligned``), so a user may not know it exists."""
    try:
        frames.update(images, mask)
    except InputError as exc:
        raise InputError(f"the sub-voxel registration of the repetitions (align=register, the "
                         f"default of n2a-aligned) failed: {exc}; give a larger mask (--mask), "
                         "or --align none if the repetitions are already aligned") from exc


def _others(denoised, frames: Frames):
    """Every denoised repetition in every repetition's frame (``grid[j][k]``: rep k in rep j's
    frame), and for each j the mean of the other ones there."""
    n = len(denoised)
    grid = [[frames.to_frame(denoised[k], k, j) for k in range(n)] for j in range(n)]
    return grid, [(np.sum(row, axis=0) - row[j]) / (n - 1) for j, row in enumerate(grid)]


def _score(record: dict, key: str) -> float:
    """A stopping score of an iteration's record; missing or NaN (a diverged run) counts as
    the worst."""
    value = record.get(key)
    return float(value) if value is not None and np.isfinite(value) else np.inf


def denoise(reps: Sequence[np.ndarray], mask: np.ndarray | None = None,
            config: DenoiseConfig | None = None, *, reference: np.ndarray | None = None,
            init_model=None, resume: IterationState | None = None,
            on_iteration: Callable[[IterationState], None] | None = None,
            progress: ProgressFactory | None = None,
            all_iterations: bool = False) -> DenoiseResult:
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
        A network (:data:`~noise2average.nn.models.Network`) to start from instead of ``config.init``.
    resume
        State of the last completed iteration of an interrupted run.
    on_iteration
        Called after each iteration (the file layer writes checkpoints there).
    progress
        Factory of progress bars ``progress(total, description)``.
    all_iterations
        Infer every iteration on the whole mask. By default, when the stopping rule compares
        iterations on a held-out slab, the last iteration (which forms no further target) is
        first inferred on the slab alone, and on the whole mask only if it scores best; the
        result is the same either way, ``result.iterations`` then lacks an unkept last one.
    """
    import torch

    from .nn.device import resolve_policy
    from .nn.engine import denoise_volume, fit, inference_blocks
    from .nn.patches import PatchSampler, block_centres
    from .nn.strategies import residual_pairs

    config = config or DenoiseConfig()
    config.validate()
    if config.method in DWI_METHODS:
        raise InputError(f"method {config.method!r} denoises whole diffusion series: use "
                         "noise2average.diffusion.denoise_dwi (n2a denoise --bvals --bvecs)")
    reps = validate_inputs(reps, mask)
    average = np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
    # 4D: the mask comes from channel 0 (a diffusion group's b0, the brightest contrast)
    mask = auto_mask(average if average.ndim == 3 else average[..., 0]) if mask is None \
        else mask.astype(bool)
    if not mask.any():
        raise InputError("no foreground found for an automatic mask; pass a mask")
    sigma = estimate_sigma(reps, mask)
    nmap = noise_map(reps, mask)

    def finish(img: np.ndarray, outside: np.ndarray | None = None,
               valid: np.ndarray | None = None) -> np.ndarray:
        """``img`` inside the mask; outside it 0 (``zero``) or the plain average (``outside``,
        default the mean as given). With ``blend``, ``img`` fades into that average over the
        voxels of ``valid`` next to the mask, where ``img`` holds a network output too."""
        if config.outside == "zero":
            return np.where(broadcast_mask(mask, img), img, 0).astype(np.float32)
        keep = average if outside is None else outside
        if config.outside == "blend" and valid is not None:
            return blend_outside(img, keep, np.where(valid, blend_weights(mask), 0))
        return np.where(broadcast_mask(mask, img), img, keep).astype(np.float32)

    if config.method in CLASSICAL_METHODS:
        from .methods import CLASSICAL

        if config.registers:
            frames = Frames(len(reps), zooms=config.voxel_size)
            _register(frames, reps, mask)
            reps = [frames.to_frame(r, k, 0) for k, r in enumerate(reps)]
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
    rep_flip = flip_axis if config.flip_repetitions else None
    n_iter = config.iterations if config.strategy == "n2a" else 1
    steps = 0 if config.method == "pretrained" else config.steps
    centres = block_centres(mask, config.patch_size) if config.sampling == "blocks" else None
    # the held-out slab: out of the training loss, where iterations (and the pre-trained
    # network, iteration 0) are scored by the cross error without the training bias
    holdout, slab = None, None
    if config.stops_early and config.holdout > 0 and steps > 0:
        slab = holdout_slab(mask, config.holdout)
        holdout = np.zeros_like(mask)
        holdout[slab] = mask[slab]
        if not (mask & ~holdout).any():  # a mask too small to spare a slab
            holdout, slab = None, None
    train_mask = mask & ~holdout if holdout is not None else mask
    key = "heldout_cross_mse" if holdout is not None else "cross_mse"
    scored = holdout
    if holdout is not None:
        bright = bright_region(average, nmap, SCORE_MIN_SNR)
        if (holdout & bright).sum() >= 0.1 * holdout.sum():  # else: score the whole slab
            scored = holdout & bright

    def apply(net, image, norm: Norm, region, flip, bar=None) -> np.ndarray:
        """``image`` denoised by ``net`` inside ``region`` (the input elsewhere)."""
        z = channels_first(norm.forward(image))
        d = denoise_volume(net, z, region, policy, radius, config.block_size, flip,
                           progress=bar.update if bar else None)
        return np.where(broadcast_mask(region, image), norm.inverse(channels_last(d, image.ndim)),
                        image).astype(np.float32)

    def infer(net, region, bar=None) -> list[np.ndarray]:
        """Each repetition denoised by ``net`` inside ``region``."""
        return [apply(net, rep, norm, region, rep_flip, bar) for rep, norm in zip(reps, norms)]

    def whole(it: int) -> list[np.ndarray]:
        """Each repetition denoised by the current network on the whole mask."""
        bar = progress(len(reps) * inference_blocks(mask, config.block_size, rep_flip is not None),
                       f"infer {it}/{n_iter}") if progress else None
        out = infer(model, mask, bar)
        if bar:
            bar.close()
        return out

    history: list[dict] = []
    results: list[np.ndarray] = []
    n = len(reps)
    frames = Frames(n, zooms=config.voxel_size)
    uncertainty = None
    current = average
    targets: list[np.ndarray] | np.ndarray = average
    denoised = list(reps)
    start = 1
    if resume is not None:
        history, current, denoised = list(resume.history), resume.result, resume.denoised
        if history and "frames" in history[-1]:
            frames = Frames(n, history[-1]["frames"], config.voxel_size)
        current, targets, _, uncertainty = _combine(reps, denoised, frames, mask, config, finish)
        results = [resume.result]  # earlier iterations' results are in the checkpoint files
        start = resume.iteration + 1
    best = (start - 1, current, denoised, uncertainty) if resume is not None else None
    # network weights by iteration (the last and the best), for the final pass on the average;
    # an iteration finished before a resume has none, and its result stays the mean
    weights: dict[int, dict] = {0: base_state} if config.from_average else {}
    # iteration 1 as Noise2Noise: each repetition towards the other noisy ones
    first_others = config.strategy == "n2a" and config.first_target == "others"
    first_rec: dict = {}
    if config.strategy == "n2a" and resume is None:
        first_rec["first_target"] = config.first_target
    if resume is None and config.registers:
        # The first target (the average, or the other repetitions) is registered as well: noisy
        # repetitions register well enough with a whole brain's voxels, and a misaligned target
        # would teach iteration 1 the misalignment's blur. The denoised ones refine these frames.
        t0 = time.perf_counter()
        _register(frames, reps, mask)
        if steps > 0 and not first_others:
            _, targets, _, _ = _combine(reps, reps, frames, mask, config, finish)
        first_rec.update({"target_frames": frames.to_list(),
                          "target_frame_shift_voxels": [round(v, 4) for v in frames.shifts(mask)],
                          "target_align_seconds": round(time.perf_counter() - t0, 2)})
    if resume is None and first_others:
        # a Noise2Noise first iteration: the other noisy repetitions, in each one's own frame
        targets = [t.astype(np.float32) for t in _others(reps, frames)[1]]
    region = None  # the slab and a margin (the spline resampling between frames reaches a few
    # voxels): where iteration 0, and the last iteration before it is kept, are inferred
    if holdout is not None:
        axis = next(a for a, sl in enumerate(slab) if sl != slice(None))
        lo, hi = slab[axis].start, slab[axis].stop
        first_rec["holdout"] = {"axis": axis, "slices": [lo, hi], "voxels": int(holdout.sum()),
                                "scored_voxels": int(scored.sum()), "min_snr": SCORE_MIN_SNR}
        grown = [slice(None)] * 3
        grown[axis] = slice(max(0, lo - 6), hi + 6)
        region = np.zeros_like(mask)
        region[tuple(grown)] = mask[tuple(grown)]
    d0, score0, gains0 = None, None, None
    if region is not None and (init_model is not None or config.init != "scratch"):
        # iteration 0: the pre-trained prediction on the slab; scored when the last iteration
        # is, with the same frames
        t0 = time.perf_counter()
        d0 = infer(model, region)
        first_rec["pretrained_seconds"] = round(time.perf_counter() - t0, 2)

    def score_pretrained() -> tuple[float, list[float]]:
        """Iteration 0's held-out score and gains, with the frames at hand."""
        others0 = _others(d0, frames)[1]
        return (cross_error(reps, others0, scored, match_gain=True),
                [round(g, 5) for g in matched_gains(reps, others0, scored)])

    for it in range(start, n_iter + 1):
        rec: dict = {"iteration": it, **(first_rec if it == 1 else {})}
        if it > 1 and config.restart:
            model.load_state_dict(base_state)
        torch.manual_seed(config.seed + it)
        if steps > 0:
            inputs, train_targets = residual_pairs(config.strategy, reps, norms, targets, reference,
                                                   frames if config.registers else None)
            sampler = PatchSampler(inputs, train_targets, train_mask, config.patch_size,
                                   config.batch_size,
                                   flip_axes=(flip_axis,) if flip_axis is not None else (),
                                   centres=centres)
            bar = progress(steps, f"train {it}/{n_iter}") if progress else None
            # fine-tuning keeps any batch-norm statistics of the initial model (nn.engine.fit)
            state = fit(model, sampler, steps, config.lr, policy, seed=config.seed + it,
                        schedule=config.schedule, freeze_bn=True,
                        progress=(lambda n, loss: (bar.update(n), bar.set_postfix(loss=f"{loss:.4f}")))
                        if bar else None)
            if bar:
                bar.close()
            rec.update(train_seconds=round(state.seconds, 2), losses=state.losses)
        # The last iteration forms no target: it is scored on the slab first (with the frames
        # the previous iteration gave, as iteration 0 is) and completed on the whole mask only
        # if it is kept - a whole-brain pass saved whenever an earlier iteration wins.
        lazy = (region is not None and config.stops_early and it == n_iter
                and (best is not None or d0 is not None))
        full, infer_s, wins = None, 0.0, True
        if not lazy or all_iterations:
            t0 = time.perf_counter()
            full = whole(it)
            infer_s += time.perf_counter() - t0
        if lazy:
            t0 = time.perf_counter()
            part = infer(model, region) if full is None else [
                np.where(broadcast_mask(region, r), f, r) for f, r in zip(full, reps)]
            infer_s += time.perf_counter() - t0
            others = _others(part, frames)[1]
            rec[key] = cross_error(reps, others, scored, match_gain=True)
            rec["heldout_gains"] = [round(g, 5) for g in matched_gains(reps, others, scored)]
            if d0 is not None:
                score0, gains0 = score_pretrained()
            rivals = [_score({key: score0}, key)] + (
                [_score(history[best[0] - 1], key)] if best is not None else [])
            wins = _score(rec, key) <= min(rivals)
            if full is None and wins:
                t0 = time.perf_counter()
                full = whole(it)
                infer_s += time.perf_counter() - t0
        rec["infer_seconds"] = round(infer_s, 2)
        if full is None:
            rec["inferred_on"] = "held-out slab"  # lost: no whole-mask result
            history.append(rec)
        else:
            denoised = full
            t0 = time.perf_counter()
            # a lost last iteration (inferred only for all_iterations) leaves the frames, the
            # best iteration and the checkpoint as they would be without it
            own = frames if wins else copy.deepcopy(frames)
            if config.registers:
                _register(own, denoised, mask)
                rec["frames"] = own.to_list()
                rec["frame_shift_voxels"] = [round(v, 4) for v in own.shifts(mask)]
            current, targets, diagnostics, uncertainty = _combine(
                reps, denoised, own, mask, config, finish, None if lazy else scored)
            rec.update(diagnostics)
            rec["align_seconds"] = round(time.perf_counter() - t0, 2)
            results.append(current)
            history.append(rec)
            if wins and on_iteration is not None:
                on_iteration(IterationState(it, current, list(denoised), list(history)))
            if wins and (best is None or _score(rec, key) < _score(history[best[0] - 1], key)):
                best = (it, current, denoised, uncertainty)
        if config.from_average:
            kept = best[0] if best is not None else 0
            weights = {k: v for k, v in weights.items() if k in (0, kept)}
            weights[it] = copy.deepcopy(model.state_dict())
        if best is not None and best[0] != it and config.stops_early:
            break  # the cross error rose: the previous iteration stays the result

    selected = history[-1]["iteration"] if history else 1
    if config.stops_early and history and (best is not None or d0 is not None):
        best_score = np.inf  # best is None: iteration 0 against one unkept iteration
        if best is not None:
            selected, current, denoised, uncertainty = best
            best_score = _score(history[selected - 1], key)
        if d0 is not None:
            if score0 is None:  # the loop stopped before its last iteration
                score0, gains0 = score_pretrained()
            history[0]["pretrained_heldout_cross_mse"] = score0
            history[0]["pretrained_heldout_gains"] = gains0
        if _score({key: score0}, key) < best_score:
            # fine-tuning made it worse on the held-out slab: the pre-trained network's
            # prediction, on the whole mask, is the result
            model.load_state_dict(base_state)
            denoised = infer(model, mask)
            if config.registers:  # the frames of the result, recorded with iteration 0's score
                _register(frames, denoised, mask)
                history[0]["pretrained_frames"] = frames.to_list()
                history[0]["pretrained_frame_shift_voxels"] = [
                    round(v, 4) for v in frames.shifts(mask)]
            current, _, _, uncertainty = _combine(reps, denoised, frames, mask, config, finish)
            selected = 0
    output_from = "denoised"
    if config.from_average and selected in weights and history:
        # the kept network once more, on the average of the noisy repetitions in rep 1's frame
        t0 = time.perf_counter()
        model.load_state_dict(weights[selected])
        mean_in = np.mean([frames.to_frame(r, k, 0) for k, r in enumerate(reps)], axis=0)
        mean_in = mean_in.astype(np.float32)
        # with ``blend`` the network also runs on the rim it fades over
        valid = blend_weights(mask) > 0 if config.outside == "blend" else mask
        current = finish(apply(model, mean_in, Norm.fit(mean_in, mask), valid, flip_axis),
                         mean_in, valid)
        output_from = "average"
        history[-1]["output_seconds"] = round(time.perf_counter() - t0, 2)
    return DenoiseResult(current, denoised, results, mask, nmap, sigma, history, config,
                         policy.describe(), uncertainty, selected, output_from)
