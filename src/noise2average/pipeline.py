"""``denoise(reps, mask, config)``: the iterative Noise2Average loop (and its comparison
strategies) on arrays. No paths here: the file layer lives in :mod:`noise2average.workflows`."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .arrays.agreement import (bright_region, cross_error, iteration_diagnostics,
                               matched_gains, uncertainty_map)
from .arrays.coils import background_coils
from .arrays.detail import DETAIL_BOUNDS, add_detail, budget_amount, matched_detail_amount
from .arrays.frames import Frames
from .arrays.channels import (broadcast_mask, channels_first, channels_last, n_channels,
                              with_noise_channel)
from .arrays.masking import auto_mask, blend_outside, blend_weights, holdout_slab
from .arrays.noise import (contrast_explained, difference_probe, estimate_sigma, local_sd,
                           noise_map, registered_noise_maps, remove_anatomy, rician_bias)
from .arrays.normalize import Norm
from .arrays.sharpness import interior, sharpness_estimate
from .config import CLASSICAL_METHODS, DWI_METHODS, PACKAGED_INITS, DenoiseConfig
from .errors import InputError
from .run_state import IterationState

ProgressFactory = Callable[[int, str], object]  # (total, description) -> tqdm-like

# The held-out score counts voxels whose average exceeds this many local noise SDs of one
# repetition: below it the magnitude (Rician) noise has a mean that fine-tuned networks learn
# from their noisy targets and the pre-trained one removes, so dark voxels favour the former.
SCORE_MIN_SNR = 3.0

# ``output_contrast='auto'`` gives the result repetition 1's contrast when the contrast model
# explains more than this share (RMS) of repetition 1's difference from the average. Protocol
# v1 measured (a Gaussian-smoothed average as the estimate): 0.04-0.10 for repetitions of one
# contrast, whose differences are noise and residual misalignment; 0.62 for two echoes 5 ms
# apart (benchmarks/echo_contrast.py).
CONTRAST_SHARE = 0.3

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


def initial_model(config: DenoiseConfig, init_model=None):
    """The network a learned run starts from: ``init_model``, or the one ``config.init``
    names (a shipped model, ``scratch`` weights of ``config.preset``, or a file)."""
    from .io.weights import load_model, load_packaged
    from .nn.models import build_model

    if init_model is not None:
        return init_model
    if config.init in PACKAGED_INITS:
        model, _ = load_packaged(PACKAGED_INITS[config.init])
        return model
    if config.init == "scratch":
        import torch

        torch.manual_seed(config.seed)  # the run's seed sets the initial weights too
        return build_model(config.preset)
    return load_model(config.init)[0]


def _takes_noise_map(model, channels: int, name: str) -> bool:
    """Whether ``model`` takes a noise-map channel after the image's ``channels`` (a network
    pre-trained with ``noise_channel``); an InputError for any other channel layout."""
    cin, cout = model.config.in_channels, model.config.out_channels
    if cin == cout == channels:
        return False
    if cout == channels == 1 and cin == 2:
        return True
    raise InputError(f"{name}: the network takes {cin} input channels for {cout} output; the "
                     f"images have {channels} (a noise-map channel is for 3D images only)")


def _loss(config: DenoiseConfig, channels: int):
    """The fine-tuning loss: the plain masked MSE, or with ``contrast_weight`` the one that
    weights the directional contrast of a diffusion group (b0 and at least two DWIs)."""
    from .nn.losses import contrast_weighted_mse, masked_mse

    if config.contrast_weight == 0:
        return masked_mse
    if channels < 3:
        raise InputError("contrast_weight is for diffusion groups (a b0 and at least two "
                         f"DWIs); these images have {channels} channel(s)")
    return functools.partial(contrast_weighted_mse, contrast_weight=config.contrast_weight)


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
    finish = _Finish(mask, average, config.outside)
    if config.method in CLASSICAL_METHODS:
        return _denoise_classical(reps, mask, config, finish, sigma, nmap)
    if config.method == "supervised":
        if reference is None:
            raise InputError("method 'supervised' needs a clean reference image")
        if reference.shape != reps[0].shape:
            raise InputError(f"reference shape {reference.shape} differs from {reps[0].shape}")
    run = _LearnedRun(reps, mask, average, (nmap, sigma), config, finish, reference, init_model,
                      progress)
    return run.run(resume, on_iteration, all_iterations)


class _Finish:
    """A result on the whole field of view: ``img`` inside the mask; outside it 0 (``zero``)
    or the plain average (``outside``, default the mean as given). With ``blend``, ``img``
    fades into that average over the voxels of ``valid`` next to the mask, where ``img``
    holds a network output too (:func:`~noise2average.arrays.masking.blend_weights`)."""

    def __init__(self, mask: np.ndarray, average: np.ndarray, outside: str) -> None:
        self.mask, self.average, self.outside = mask, average, outside

    def __call__(self, img: np.ndarray, outside: np.ndarray | None = None,
                 valid: np.ndarray | None = None) -> np.ndarray:
        if self.outside == "zero":
            return np.where(broadcast_mask(self.mask, img), img, 0).astype(np.float32)
        keep = self.average if outside is None else outside
        if self.outside == "blend" and valid is not None:
            return blend_outside(img, keep, np.where(valid, blend_weights(self.mask), 0))
        return np.where(broadcast_mask(self.mask, img), img, keep).astype(np.float32)


def _denoise_classical(reps, mask, config: DenoiseConfig, finish: _Finish, sigma: float,
                       nmap: np.ndarray) -> DenoiseResult:
    """A conventional method on the (registered, with ``align='register'``) average."""
    from .methods import CLASSICAL

    if config.registers:
        frames = Frames(len(reps), zooms=config.voxel_size)
        _register(frames, reps, mask)
        reps = [frames.to_frame(r, k, 0) for k, r in enumerate(reps)]
    out = finish(CLASSICAL[config.method](reps, mask, sigma))
    if config.output_contrast == "first" and out.ndim == 3:  # asked for: not under 'auto'
        deviation = reps[0] - np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
        out = _add_explained(out, contrast_explained(deviation, out, mask)[0], mask,
                             config.outside)
    return DenoiseResult(out, list(reps), [out], mask, nmap, sigma, config=config, compute="cpu")


def _add_explained(result: np.ndarray, explained: np.ndarray, mask: np.ndarray,
                   outside: str) -> np.ndarray:
    """``result`` in repetition 1's contrast: plus the part of repetition 1's difference
    from the average that the contrast model explains, outside the mask too unless the
    result is zero there."""
    keep = mask if outside == "zero" else np.ones_like(mask)
    return (result + np.where(keep, explained, 0)).astype(np.float32)


class _HeldOut:
    """The held-out slab of the cross stopping rule: left out of the training loss, it is
    where the iterations and the pre-trained network (iteration 0) are scored by the cross
    error, without the bias of a network that fitted the noise it is scored on.

    Attributes: ``holdout`` (the slab's mask voxels, or None when the rule or the mask leaves
    no slab), ``train_mask``, ``key`` (the score's name in an iteration's record), ``scored``
    (the slab's bright voxels, or the whole slab), ``region`` (the slab and a margin: the
    spline resampling between frames reaches a few voxels; where partial inference runs) and
    ``record`` (what iteration 1's record says of the slab).
    """

    def __init__(self, mask: np.ndarray, average: np.ndarray, nmap: np.ndarray,
                 config: DenoiseConfig, steps: int) -> None:
        self.holdout, slab = None, None
        if config.stops_early and config.holdout > 0 and steps > 0:
            slab = holdout_slab(mask, config.holdout)
            holdout = np.zeros_like(mask)
            holdout[slab] = mask[slab]
            if (mask & ~holdout).any():  # else the mask is too small to spare a slab
                self.holdout = holdout
        self.train_mask = mask & ~self.holdout if self.holdout is not None else mask
        self.key = "heldout_cross_mse" if self.holdout is not None else "cross_mse"
        self.scored, self.region, self.record = self.holdout, None, {}
        if self.holdout is None:
            return
        bright = bright_region(average, nmap, SCORE_MIN_SNR)
        if (self.holdout & bright).sum() >= 0.1 * self.holdout.sum():  # else: the whole slab
            self.scored = self.holdout & bright
        axis = next(a for a, sl in enumerate(slab) if sl != slice(None))
        lo, hi = slab[axis].start, slab[axis].stop
        self.record = {"holdout": {"axis": axis, "slices": [lo, hi],
                                   "voxels": int(self.holdout.sum()),
                                   "scored_voxels": int(self.scored.sum()),
                                   "min_snr": SCORE_MIN_SNR}}
        grown = [slice(None)] * 3
        grown[axis] = slice(max(0, lo - 6), hi + 6)
        self.region = np.zeros_like(mask)
        self.region[tuple(grown)] = mask[tuple(grown)]

    def score(self, reps, denoised, frames: Frames) -> tuple[float, list[float]]:
        """The cross error of ``denoised`` on the scored voxels, and the matched gains."""
        others = _others(denoised, frames)[1]
        return (cross_error(reps, others, self.scored, match_gain=True),
                [round(g, 5) for g in matched_gains(reps, others, self.scored)])


class _LearnedRun:
    """One run of a learned method (:func:`denoise`): the iterations, their scores on the
    held-out slab against each other and against iteration 0, the choice of the result, and
    the final pass of the kept network on the average.

    The state between iterations: ``frames``, ``targets``, ``current`` (the last combined
    result), ``denoised``, ``uncertainty``, ``history`` and ``results``; ``best`` is
    (iteration, result, denoised, uncertainty) of the best scored iteration, ``weights`` the
    network weights by iteration (the best and the last) for the final pass, and ``d0``,
    ``score0``, ``gains0`` the pre-trained network's prediction on the slab and its score.
    """

    def __init__(self, reps, mask, average, noise: tuple[np.ndarray, float],
                 config: DenoiseConfig, finish: _Finish, reference, init_model,
                 progress: ProgressFactory | None) -> None:
        from .nn.device import resolve_policy
        from .nn.patches import block_centres

        (self.nmap, self.sigma), nmap = noise, noise[0]
        self.reps, self.mask, self.config = reps, mask, config
        self.finish, self.reference, self.progress = finish, reference, progress
        self.policy = resolve_policy(config.device, config.precision, config.threads)
        base = initial_model(config, init_model)
        self.takes_noise = _takes_noise_map(base, n_channels(reps[0]), str(config.init))
        tunable = not self.takes_noise and reps[0].ndim == 3 and config.from_average
        if config.asks_for_tuning and not tunable:
            raise InputError(f"output_tuning={config.output_tuning!r} tunes the network for "
                             "the output pass on the average: it needs 3D repetitions, a "
                             "network without a noise-map channel and output_from=average "
                             "(n2a-aligned)")
        self.tunes_output = not self.takes_noise and config.tunes_output(reps[0].ndim)
        self.loss_fn = _loss(config, n_channels(reps[0]))
        self._noise_sd: list[np.ndarray] | None = None
        self.base_state = copy.deepcopy(base.state_dict())
        self.model = self.policy.prepare(base)
        self.radius = self.model.config.receptive_radius
        self.norms = [Norm.fit(r, mask) for r in reps]
        self.flip_axis = config.lr_axis if config.flip else None
        # the flips a network learnt: the pre-training flips along every axis, fine-tuning
        # along the left-right one or (train_flips='all', 3D volumes) every axis too
        volume = config.flip and n_channels(reps[0]) == 1
        self.train_flips = ((0, 1, 2) if volume and config.train_flips == "all"
                            else (self.flip_axis,) if self.flip_axis is not None else ())
        # the output pass of a network that learnt every flip: all 8 (output_flips='all')
        self.output_flips = ((0, 1, 2) if volume and config.output_flips == "all"
                             else self.flip_axis)
        self.rep_flip = self.flip_axis if config.flip_repetitions else None
        self.n_iter = config.iterations if config.strategy == "n2a" else 1
        self.steps = 0 if config.method == "pretrained" else config.steps
        self.centres = (block_centres(mask, config.patch_size) if config.sampling == "blocks"
                        else None)
        self.heldout = _HeldOut(mask, average, nmap, config, self.steps)
        self.has_pretrained = init_model is not None or config.init != "scratch"
        self.frames = Frames(len(reps), zooms=config.voxel_size)
        self.history: list[dict] = []
        self.results: list[np.ndarray] = []
        self.uncertainty = None
        self.current = average
        self.targets: list[np.ndarray] | np.ndarray = average
        self.denoised = list(reps)
        self.best = None
        self.weights: dict[int, dict] = {0: self.base_state} if config.from_average else {}
        self.d0, self.score0, self.gains0 = None, None, None

    # ------------------------------------------------------------------ inference
    def noise_sd(self, k: int | None) -> np.ndarray | None:
        """The local noise SD of repetition ``k`` in its own frame, or of the registered
        average (``k`` None) in repetition 1's: the noise-map channel, None for a network
        without one. Estimated once, from the repetitions registered into repetition 1's
        frame (when the run registers; motion would otherwise read as noise at every edge)
        and without the mask, as in pre-training: the network sees the noise outside the
        brain too (:func:`~noise2average.arrays.noise.registered_noise_maps`)."""
        if not self.takes_noise:
            return None
        if self._noise_sd is None:
            per_rep, average = registered_noise_maps(self.reps, self.frames)
            self._noise_sd = per_rep + [average]
        return self._noise_sd[-1 if k is None else k]

    def inputs(self, image, norm: Norm, k: int | None) -> np.ndarray:
        """The network's normalized (C, X, Y, Z) input for repetition ``k`` (None: the
        average), with the noise-map channel when the network takes one."""
        z = channels_first(norm.forward(image))
        sd = self.noise_sd(k)
        return z if sd is None else with_noise_channel(z, sd, norm.std)

    def apply(self, image, norm: Norm, region, flip, k: int | None, bar=None) -> np.ndarray:
        """``image`` (repetition ``k``, or the average for None) denoised by the network inside
        ``region`` (the input elsewhere)."""
        from .nn.engine import denoise_volume

        z = self.inputs(image, norm, k)
        d = denoise_volume(self.model, z, region, self.policy, self.radius,
                           self.config.block_size, flip, progress=bar.update if bar else None)
        return np.where(broadcast_mask(region, image), norm.inverse(channels_last(d, image.ndim)),
                        image).astype(np.float32)

    def infer(self, region, bar=None) -> list[np.ndarray]:
        """Each repetition denoised by the network inside ``region``."""
        return [self.apply(rep, norm, region, self.rep_flip, k, bar)
                for k, (rep, norm) in enumerate(zip(self.reps, self.norms))]

    def whole(self, it: int) -> list[np.ndarray]:
        """Each repetition denoised by the network on the whole mask."""
        from .nn.engine import inference_blocks

        bar = None
        if self.progress:
            blocks = inference_blocks(self.mask, self.config.block_size, self.rep_flip is not None)
            bar = self.progress(len(self.reps) * blocks, f"infer {it}/{self.n_iter}")
        out = self.infer(self.mask, bar)
        if bar:
            bar.close()
        return out

    # ------------------------------------------------------------------ the run
    def run(self, resume: IterationState | None, on_iteration, all_iterations: bool
            ) -> DenoiseResult:
        start = self._resume(resume)
        first = self._first_target(resume)
        for it in range(start, self.n_iter + 1):
            if self._iteration(it, first if it == 1 else {}, on_iteration, all_iterations):
                break  # the cross error rose: the previous iteration stays the result
        selected = self._select()
        output_from = self._output_pass(selected)
        return DenoiseResult(self.current, self.denoised, self.results, self.mask, self.nmap,
                             self.sigma, self.history, self.config, self.policy.describe(),
                             self.uncertainty, selected, output_from)

    def _resume(self, resume: IterationState | None) -> int:
        """The first iteration to run, after restoring the state of a resumed run."""
        if resume is None:
            return 1
        self.history, self.denoised = list(resume.history), resume.denoised
        if self.history and "frames" in self.history[-1]:
            self.frames = Frames(len(self.reps), self.history[-1]["frames"],
                                 self.config.voxel_size)
        self.current, self.targets, _, self.uncertainty = _combine(
            self.reps, self.denoised, self.frames, self.mask, self.config, self.finish)
        self.results = [resume.result]  # earlier iterations' results are in the checkpoint files
        self.best = (resume.iteration, self.current, self.denoised, self.uncertainty)
        return resume.iteration + 1

    def _first_target(self, resume: IterationState | None) -> dict:
        """Iteration 1's target and record: the registered average, or with
        ``first_target='others'`` the other noisy repetitions (a Noise2Noise first
        iteration); then iteration 0, the pre-trained prediction on the slab."""
        config, reps, mask = self.config, self.reps, self.mask
        first_others = config.strategy == "n2a" and config.first_target == "others"
        rec: dict = {}
        if config.strategy == "n2a" and resume is None:
            rec["first_target"] = config.first_target
        if resume is None and config.registers:
            # The first target is registered as well: noisy repetitions register well enough
            # with a whole brain's voxels, and a misaligned target would teach iteration 1 the
            # misalignment's blur. The denoised ones refine these frames.
            t0 = time.perf_counter()
            _register(self.frames, reps, mask)
            if self.steps > 0 and not first_others:
                _, self.targets, _, _ = _combine(reps, reps, self.frames, mask, config,
                                                 self.finish)
            rec.update({"target_frames": self.frames.to_list(),
                        "target_frame_shift_voxels": [round(v, 4)
                                                      for v in self.frames.shifts(mask)],
                        "target_align_seconds": round(time.perf_counter() - t0, 2)})
        if resume is None and first_others:  # each one's own frame
            self.targets = [t.astype(np.float32) for t in _others(reps, self.frames)[1]]
        rec.update(self.heldout.record)
        if self.heldout.region is not None and self.has_pretrained:
            # scored when the last iteration is, with the same frames
            t0 = time.perf_counter()
            self.d0 = self.infer(self.heldout.region)
            rec["pretrained_seconds"] = round(time.perf_counter() - t0, 2)
        return rec

    def _iteration(self, it: int, first: dict, on_iteration, all_iterations: bool) -> bool:
        """Train, infer and combine iteration ``it``; True when the run stops after it."""
        import torch

        config = self.config
        rec: dict = {"iteration": it, **first}
        if it > 1 and config.restart:
            self.model.load_state_dict(self.base_state)
        torch.manual_seed(config.seed + it)
        if self.steps > 0:
            rec.update(self._train(it))
        full, wins, lazy = self._infer_iteration(it, rec, all_iterations)
        if full is None:
            rec["inferred_on"] = "held-out slab"  # lost: no whole-mask result
            self.history.append(rec)
        else:
            self._combine_iteration(it, rec, full, wins, lazy, on_iteration)
        if config.from_average:
            kept = self.best[0] if self.best is not None else 0
            self.weights = {k: v for k, v in self.weights.items() if k in (0, kept)}
            self.weights[it] = copy.deepcopy(self.model.state_dict())
        return self.best is not None and self.best[0] != it and config.stops_early

    def _train(self, it: int) -> dict:
        """Fine-tune the network towards the current targets; the record's training entries."""
        from .nn.engine import fit
        from .nn.patches import PatchSampler
        from .nn.strategies import residual_pairs

        config = self.config
        inputs, train_targets = residual_pairs(config.strategy, self.reps, self.norms,
                                               self.targets, self.reference,
                                               self.frames if config.registers else None)
        if self.takes_noise:
            inputs = [self.inputs(r, norm, k) for k, (r, norm) in
                      enumerate(zip(self.reps, self.norms))]
        sampler = PatchSampler(inputs, train_targets, self.heldout.train_mask, config.patch_size,
                               config.batch_size,
                               flip_axes=self.train_flips,
                               centres=self.centres)
        bar = self.progress(self.steps, f"train {it}/{self.n_iter}") if self.progress else None
        # fine-tuning keeps any batch-norm statistics of the initial model (nn.engine.fit)
        state = fit(self.model, sampler, self.steps, config.lr, self.policy,
                    seed=config.seed + it, schedule=config.schedule, freeze_bn=True,
                    loss_fn=self.loss_fn,
                    progress=(lambda n, loss: (bar.update(n),
                                               bar.set_postfix(loss=f"{loss:.4f}")))
                    if bar else None)
        if bar:
            bar.close()
        return {"train_seconds": round(state.seconds, 2), "losses": state.losses}

    def _infer_iteration(self, it: int, rec: dict, all_iterations: bool):
        """The iteration's denoised repetitions on the whole mask (None when a lazy last
        iteration loses), whether it wins, and whether it was lazy.

        The last iteration forms no target: it is scored on the slab first (with the frames
        the previous iteration gave, as iteration 0 is) and completed on the whole mask only
        if it is kept - a whole-brain pass saved whenever an earlier iteration wins."""
        ho = self.heldout
        lazy = (ho.region is not None and self.config.stops_early and it == self.n_iter
                and (self.best is not None or self.d0 is not None))
        full, infer_s, wins = None, 0.0, True
        if not lazy or all_iterations:
            t0 = time.perf_counter()
            full = self.whole(it)
            infer_s += time.perf_counter() - t0
        if lazy:
            t0 = time.perf_counter()
            part = self.infer(ho.region) if full is None else [
                np.where(broadcast_mask(ho.region, r), f, r) for f, r in zip(full, self.reps)]
            infer_s += time.perf_counter() - t0
            rec[ho.key], rec["heldout_gains"] = ho.score(self.reps, part, self.frames)
            if self.d0 is not None:
                self.score0, self.gains0 = ho.score(self.reps, self.d0, self.frames)
            rivals = [_score({ho.key: self.score0}, ho.key)] + (
                [_score(self.history[self.best[0] - 1], ho.key)] if self.best is not None
                else [])
            wins = _score(rec, ho.key) <= min(rivals)
            if full is None and wins:
                t0 = time.perf_counter()
                full = self.whole(it)
                infer_s += time.perf_counter() - t0
        rec["infer_seconds"] = round(infer_s, 2)
        return full, wins, lazy

    def _combine_iteration(self, it: int, rec: dict, full, wins: bool, lazy: bool,
                           on_iteration) -> None:
        """Register and combine the iteration's denoised repetitions into its result and the
        next targets; checkpoint it and keep it as the best when it wins."""
        config, key = self.config, self.heldout.key
        self.denoised = full
        t0 = time.perf_counter()
        # a lost last iteration (inferred only for all_iterations) leaves the frames, the
        # best iteration and the checkpoint as they would be without it
        own = self.frames if wins else copy.deepcopy(self.frames)
        if config.registers:
            _register(own, full, self.mask)
            rec["frames"] = own.to_list()
            rec["frame_shift_voxels"] = [round(v, 4) for v in own.shifts(self.mask)]
        self.current, self.targets, diagnostics, self.uncertainty = _combine(
            self.reps, full, own, self.mask, config, self.finish,
            None if lazy else self.heldout.scored)
        rec.update(diagnostics)
        rec["align_seconds"] = round(time.perf_counter() - t0, 2)
        self.results.append(self.current)
        self.history.append(rec)
        if wins and on_iteration is not None:
            on_iteration(IterationState(it, self.current, list(full), list(self.history)))
        if wins and (self.best is None
                     or _score(rec, key) < _score(self.history[self.best[0] - 1], key)):
            self.best = (it, self.current, full, self.uncertainty)

    def _select(self) -> int:
        """The kept iteration: the best scored one, or 0 when the pre-trained network's
        prediction scores better on the slab (then inferred on the whole mask). When the
        result is the network applied to an average of three or more repetitions, the two
        compete by the held-out error of that pass (:meth:`_scores_output_pass`)."""
        config, key, history = self.config, self.heldout.key, self.history
        selected = history[-1]["iteration"] if history else 1
        if not (config.stops_early and history and (self.best is not None
                                                     or self.d0 is not None)):
            return selected
        best_score = np.inf  # best is None: iteration 0 against one unkept iteration
        if self.best is not None:
            selected, self.current, self.denoised, self.uncertainty = self.best
            best_score = _score(history[selected - 1], key)
        if self.d0 is not None:
            if self.score0 is None:  # the loop stopped before its last iteration
                self.score0, self.gains0 = self.heldout.score(self.reps, self.d0, self.frames)
            history[0]["pretrained_heldout_cross_mse"] = self.score0
            history[0]["pretrained_heldout_gains"] = self.gains0
        pretrained_wins = _score({key: self.score0}, key) < best_score
        if self._scores_output_pass(selected):
            t0 = time.perf_counter()
            inputs = self._leave_one_out_averages()
            # each network scored with the flips its output pass would use
            scores = {0: self._average_cross_error(self.weights[0], self._pass_flips(True),
                                                   inputs),
                      selected: self._average_cross_error(self.weights[selected],
                                                          self._pass_flips(False), inputs)}
            history[-1]["output_heldout_cross_mse"] = {str(k): v for k, v in scores.items()}
            history[-1]["output_score_seconds"] = round(time.perf_counter() - t0, 2)
            pretrained_wins = scores[0] < scores[selected]
        if not pretrained_wins:
            return selected
        # fine-tuning made it worse on the held-out slab: the pre-trained network's
        # prediction, on the whole mask, is the result
        self.model.load_state_dict(self.base_state)
        self.denoised = self.infer(self.mask)
        if config.registers:  # the frames of the result, recorded with iteration 0's score
            _register(self.frames, self.denoised, self.mask)
            history[0]["pretrained_frames"] = self.frames.to_list()
            history[0]["pretrained_frame_shift_voxels"] = [
                round(v, 4) for v in self.frames.shifts(self.mask)]
        self.current, _, _, self.uncertainty = _combine(self.reps, self.denoised, self.frames,
                                                        self.mask, config, self.finish)
        return 0

    def _scores_output_pass(self, selected: int) -> bool:
        """Whether the choice between the pre-trained network and iteration ``selected`` is
        made by the held-out error of the output pass (:meth:`_average_cross_error`): when the
        result is the kept network applied to the average of three or more repetitions. A
        network fine-tuned on single repetitions learns their noise level, and on an average
        of N it can smooth far more than the pre-trained one (measured: sigma 0.08, N = 4,
        33.12 dB for the pre-trained network on the average against 31.96 for iteration 1,
        which the repetitions' own held-out scores preferred, docs/benchmarks.md). With two
        repetitions the average of all but one is a single repetition, which the
        repetitions' scores already measure."""
        return (self.config.from_average and self.has_pretrained and len(self.reps) >= 3
                and selected > 0 and self.heldout.region is not None
                and selected in self.weights)

    def _leave_one_out_averages(self) -> list[np.ndarray]:
        """For each repetition k, the average of every other one in k's frame."""
        n = len(self.reps)
        return [np.mean([self.frames.to_frame(self.reps[j], j, k) for j in range(n) if j != k],
                        axis=0).astype(np.float32) for k in range(n)]

    def _average_cross_error(self, state: dict, flips: int | tuple[int, ...] | None,
                             averages: list[np.ndarray]) -> float:
        """The held-out error of the output pass at nearly its noise level: the network
        ``state`` applied with test-time ``flips`` to each of the leave-one-out ``averages``
        (:meth:`_leave_one_out_averages`, on the held-out slab), scored against the
        repetition left out (gain-matched), averaged over the repetitions. The left-out
        repetition's noise is independent of the prediction, so the score ranks networks as
        their error against the truth does."""
        self.model.load_state_dict(state)
        preds = [self.apply(a, Norm.fit(a, self.mask), self.heldout.region, flips, None)
                 for a in averages]
        return cross_error(self.reps, preds, self.heldout.scored, match_gain=True)

    def _pass_flips(self, untuned: bool) -> int | tuple[int, ...] | None:
        """The test-time flips of the output pass: all 8 for a network that learnt every flip
        (the pre-trained one, or one fine-tuned with ``train_flips='all'``), the left-right
        flip alone for one fine-tuned with the left-right flip, on which the other flips
        cost 0.04-0.05 dB (docs/benchmarks.md, "Test-time flips on the final pass")."""
        return self.output_flips if untuned or len(self.train_flips) == 3 else self.flip_axis

    def _output_pass(self, selected: int) -> str:
        """With ``output_from='average'``: the kept network once more, on the average of the
        noisy repetitions in rep 1's frame, becomes the result. Returns the output's source."""
        if not (self.config.from_average and selected in self.weights and self.history):
            return "denoised"
        t0 = time.perf_counter()
        self.model.load_state_dict(self.weights[selected])
        aligned = [self.frames.to_frame(r, k, 0) for k, r in enumerate(self.reps)]
        mean_in = np.mean(aligned, axis=0).astype(np.float32)
        norm = Norm.fit(mean_in, self.mask)
        untuned = selected == 0 or self.steps == 0  # --method pretrained: no fine-tuning
        # a draw of the average's noise: the tuning's, and the sharpness estimate's (3D)
        probe = (remove_anatomy(difference_probe(aligned), mean_in)
                 if self.tunes_output or mean_in.ndim == 3 else None)
        if self.tunes_output:
            record = self._tune_on_average(mean_in, norm, probe, aligned)
            self.history[-1].update(record)
            # the tuning's patches flip along every axis: all 8 flips apply to a tuned network
            untuned = untuned or record.get("output_tuning_kept_step", 1) > 0
        # with ``blend`` the network also runs on the rim it fades over
        valid = blend_weights(self.mask) > 0 if self.config.outside == "blend" else self.mask
        out = self.apply(mean_in, norm, valid, self._pass_flips(untuned), None)
        out = add_detail(out, valid, self._detail_amount(out, mean_in, probe, valid))
        if self.config.output_blend:
            out = self._blend_with_bm4d(out, aligned, valid)
        self.current = self.finish(out, mean_in, valid)
        if mean_in.ndim == 3:  # before the contrast step: it compares with the average
            self.history[-1]["output_sharpness_estimate"] = round(
                sharpness_estimate(self.current, mean_in, probe, self.mask), 4)
        self._match_first_contrast(aligned[0] - mean_in)
        self.history[-1]["output_seconds"] = round(time.perf_counter() - t0, 2)
        return "average"

    def _detail_amount(self, out: np.ndarray, mean_in: np.ndarray, probe: np.ndarray | None,
                       valid: np.ndarray) -> float:
        """The share of its own detail that the output pass adds to ``out`` (``output_detail``):
        a fixed share, the one SURE chose in the tuning, or the one at which the result, with
        a draw of the average's noise added, is as sharp as the average ``mean_in``
        (:func:`~noise2average.arrays.detail.matched_detail_amount`), at most the share whose
        SURE-estimated cost on the tuning's slab reaches ``output_detail_budget``; recorded
        in the history."""
        rule, record = self.config.detail_rule, self.history[-1]
        terms = record.get("output_detail_sure_terms")
        # ``auto`` adds detail only where the tuning's slab has priced it
        priced = terms is not None or self.config.output_detail == "match"
        if rule == "share":
            record["output_detail_amount"] = self.config.detail_share
        elif rule == "match" and probe is not None and priced:
            t0 = time.perf_counter()
            high = DETAIL_BOUNDS[1]
            if terms and self.config.output_detail_budget:
                bound = budget_amount(**terms, budget_db=self.config.output_detail_budget)
                record.update(output_detail_bound=round(min(bound, high), 4),
                              output_detail_sure_amount=record.get("output_detail_amount"))
                high = min(bound, high)
            amount, match = matched_detail_amount(out, mean_in, probe, valid,
                                                  interior(self.mask), (DETAIL_BOUNDS[0], high))
            seconds = record.get("output_detail_seconds", 0.0) + time.perf_counter() - t0
            record.update(output_detail_amount=round(amount, 4), **match,
                          output_detail_seconds=round(seconds, 2))
        return record.get("output_detail_amount", 0.0)

    def _blend_with_bm4d(self, out: np.ndarray, aligned: list[np.ndarray],
                         valid: np.ndarray) -> np.ndarray:
        """``output_blend`` times BM4D on the registered average of ``aligned``, plus the rest
        times the network's ``out``, inside ``valid``: an ensemble of two denoisers whose
        errors differ. BM4D is given the noise SD that ``--method bm4d`` is given."""
        from .methods import CLASSICAL

        t0 = time.perf_counter()
        other = CLASSICAL["bm4d"](aligned, self.mask, self.sigma)
        share = np.float32(self.config.output_blend)
        self.history[-1].update(output_blend=float(share),
                                output_blend_seconds=round(time.perf_counter() - t0, 2))
        return np.where(valid, (1 - share) * out + share * other, out).astype(np.float32)

    def _match_first_contrast(self, deviation: np.ndarray) -> None:
        """Give the result repetition 1's brightness and contrast where ``output_contrast``
        asks for it (``auto``: where the repetitions differ in contrast); ``deviation`` is
        repetition 1 minus the average, in its frame. The history records the share of the
        deviation that the result's contrast explains and the contrast the result has."""
        if self.config.output_contrast == "average" or self.current.ndim != 3:
            return
        explained, share = contrast_explained(deviation, self.current, self.mask)
        first = self.config.output_contrast == "first" or share > CONTRAST_SHARE
        if first:
            self.current = _add_explained(self.current, explained, self.mask,
                                          self.config.outside)
        self.history[-1].update(output_contrast="first" if first else "average",
                                output_contrast_share=round(share, 4))

    def _tune_on_average(self, mean_in: np.ndarray, norm: Norm, probe: np.ndarray,
                         aligned: list[np.ndarray]) -> dict:
        """Tune the network on the registered average of ``aligned`` it is about to
        denoise, by recorrupted pairs or Monte-Carlo SURE (``output_tuning``,
        :mod:`noise2average.output_tuning`); the record's entries. The noise ``probe`` keeps
        no contrast difference between the repetitions (echoes,
        :func:`~noise2average.arrays.noise.remove_anatomy`) and gives the local
        noise SD; the Rician bias is that of the kept iteration's result at one repetition's
        SD; the held-out slab, when there is one, scores the network
        ``output_tuning_checks`` times and picks the kept step."""
        from .output_tuning import SureInputs, TuningSettings, tune_on_average

        config, scale = self.config, np.float32(norm.std)
        sd = local_sd(probe)  # the average's; one repetition's is sqrt(N) times it
        coils, air = config.noise_coils, None
        if not coils:  # repetition 1 is the one never resampled
            coils, air = background_coils(mean_in, probe, self.mask, aligned[0])
        # the kept iteration's result is in the average's frame: no extra pass for the bias
        bias = np.where(self.mask, rician_bias(self.current, sd * np.sqrt(len(aligned)),
                                               coils), 0)
        data = SureInputs(channels_first(norm.forward(mean_in)),
                          channels_first(probe / scale),
                          channels_first((bias / scale).astype(np.float32)), sd)
        steps = config.tuning_steps(self.policy.hardware)
        settings = TuningSettings(steps, config.tuning_lr,
                                  config.patch_size, config.batch_size, config.seed,
                                  -(-steps // config.output_tuning_checks), self.radius,
                                  config.block_size, objective=config.tuning_objective,
                                  alpha=config.output_tuning_alpha,
                                  schedule=config.tuning_schedule,
                                  detail=config.detail_rule == "sure" or (
                                      config.detail_rule == "match"
                                      and config.output_detail_budget > 0))
        ho = self.heldout
        heldout = None
        if ho.holdout is not None:
            heldout = (ho.region, ho.holdout, holdout_slab(self.mask, config.holdout))
        bar = self.progress(steps, "tune on the average") if self.progress else None
        record = tune_on_average(self.model, data, ho.train_mask, heldout, self.policy,
                                 settings,
                                 progress=(lambda n, loss: bar.update(n)) if bar else None)
        if bar:
            bar.close()
        record["noise_coils"] = coils
        if air is not None:
            record["noise_coils_air_voxels"] = air
        return record
