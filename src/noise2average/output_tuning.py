"""Tuning a network on the registered average it is about to denoise, without a clean image.

The average of N registered repetitions holds noise at its own level (lower than any
repetition's, partly resampled), which neither pre-training nor Noise2Average's targets
match exactly. Two objectives estimate a denoiser's error against the truth from the average
alone, given draws of its noise: the repetitions' signed difference
(:func:`~noise2average.arrays.noise.difference_probe`), which has the average's noise
covariance, cut at another place of the volume so that it is independent of the noise where
it is used.

- ``sure``: Monte-Carlo SURE (Stein's unbiased risk estimate); two forward passes a step and
  a finite difference that only fp32 resolves.
- ``r2r``: recorrupted pairs (input average + alpha probe, target average - probe / alpha),
  whose noises are uncorrelated; one forward pass a step, in bf16 where the CPU has it, so
  that a CPU affords about five steps in the time of two SURE steps.

Magnitude images add a mean to that noise, the Rician bias, which averaging does not lower:
both objectives take the data without it (:func:`~noise2average.arrays.noise.rician_bias`),
or the tuning teaches the network to keep it (docs/benchmarks.md, "Fine-tuning at the
average's noise level").

Training leaves out the held-out slab of the pipeline's stopping rule; SURE computed on the
slab with a probe cut elsewhere scores the network before tuning and every ``check_every``
steps, and the best scored weights are kept (the untuned ones included). Everything here
works on normalized arrays; the pipeline does the I/O and the registration.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .arrays.detail import high_pass, sure_detail_amount
from .arrays.noise import probe_moved
from .nn.device import Policy
from .nn.engine import denoise_volume, fit, train_mode
from .nn.losses import masked_mse, sure_loss
from .nn.patches import MixedSampler, RecorruptedPatchSampler, SurePatchSampler

#: SURE's finite-difference step, in units of the noise probe (whose SD is the average's noise
#: SD): small enough for the network to be linear over it, large enough for fp32
SURE_EPS = 1e-2


@dataclass
class SureInputs:
    """The normalized (1, X, Y, Z) average, its noise probe and its noise's Rician bias, and
    the local noise SD (X, Y, Z; only its ratios between places are used)."""

    image: np.ndarray
    probe: np.ndarray
    bias: np.ndarray
    sd: np.ndarray


@dataclass
class TuningSettings:
    steps: int
    lr: float
    patch: int
    batch: int
    seed: int
    #: steps between two scores on the held-out slab
    check_every: int
    radius: int
    block: int
    #: ``sure`` (Monte-Carlo SURE, fp32) or ``r2r`` (recorrupted pairs, the policy's precision)
    objective: str = "sure"
    #: the recorrupted pairs' probe weight (``r2r``)
    alpha: float = 0.5
    #: the learning-rate schedule (:func:`~noise2average.nn.engine.fit`)
    schedule: str = "constant"
    #: after tuning, choose the amount of the output's own detail to add by SURE on the slab
    detail: bool = False


def probe_from_elsewhere(probe: np.ndarray, sd: np.ndarray, slab: tuple[slice, ...]
                         ) -> np.ndarray:
    """``probe`` (C, X, Y, Z) moved along the slab's axis by twice the slab's thickness plus 8
    voxels (:func:`~noise2average.arrays.noise.probe_moved`): a draw of the noise in the slab
    that is independent of the slab's own noise."""
    axis = next(a for a, s in enumerate(slab) if s != slice(None))
    return probe_moved(probe, sd, 2 * (slab[axis].stop - slab[axis].start) + 8, axis)


def sure_score(model: torch.nn.Module, data: SureInputs, probe: np.ndarray,
               region: np.ndarray, scored: np.ndarray, policy: Policy,
               settings: TuningSettings) -> float:
    """SURE of ``model``'s residual on the ``scored`` voxels (inside ``region``, where the
    network runs), up to the noise variance, which every network shares: the mean of
    (r + bias)^2 + 2 probe . (r(x + eps probe) - r(x)) / eps."""
    def residual(x: np.ndarray) -> np.ndarray:
        return denoise_volume(model, x, region, policy, settings.radius, settings.block,
                              None) - x

    r = residual(data.image)
    r_probed = residual(data.image + SURE_EPS * probe)
    divergence = probe * (r_probed - r) / SURE_EPS
    terms = ((r + data.bias) ** 2 + 2 * divergence)[:, scored]
    return float(terms.astype(np.float64).sum(0).mean())


def sure_detail(model: torch.nn.Module, data: SureInputs, probe: np.ndarray,
                region: np.ndarray, scored: np.ndarray, policy: Policy,
                settings: TuningSettings) -> dict:
    """The amount of its own detail to add to ``model``'s output
    (:mod:`~noise2average.arrays.detail`), chosen by SURE on the ``scored`` voxels from two
    passes over ``region`` without test-time flips, as :func:`sure_score`'s (with the output
    pass's 8 flips the amount moved from 0.011 to 0.015 on sigma 0.08, N = 4, for 7 times
    the seconds); the record's entries, among them SURE's terms (the error's growth with
    the amount, a quadratic, and the output's own SURE error) that price the gradient
    match's share (``output_detail_budget``)."""
    t0 = time.perf_counter()

    def output(x: np.ndarray) -> np.ndarray:
        return denoise_volume(model, x, region, policy, settings.radius, settings.block,
                              None)[0]

    out = output(data.image)
    out_probed = output(data.image + SURE_EPS * probe)
    detail = high_pass(out, region)
    detail_probed = high_pass(out_probed, region)
    residual = out - data.image[0]
    amount, terms = sure_detail_amount(residual, detail,
                                       probe[0] * (detail_probed - detail) / SURE_EPS,
                                       data.bias[0], scored)
    # SURE of the output itself: the squared error that a detail budget is a fraction of
    error = ((residual + data.bias[0]) ** 2 + 2 * probe[0] * (out_probed - out) / SURE_EPS
             - probe[0] ** 2)[scored]
    return {"output_detail_amount": round(amount, 4),
            "output_detail_sure_change": round(terms["sure_change"], 8),
            "output_detail_sure_terms": {
                "quadratic": round(terms["quadratic"], 10), "linear": round(terms["linear"], 10),
                "error": round(float(np.mean(error, dtype=np.float64)), 10)},
            "output_detail_seconds": round(time.perf_counter() - t0, 2)}


def _sampler(data: SureInputs, train_mask: np.ndarray, settings: TuningSettings):
    """The patch sampler of ``settings.objective`` on one image."""
    if settings.objective == "r2r":
        return RecorruptedPatchSampler(data.image, data.probe, data.sd, train_mask,
                                       settings.patch, settings.batch, alpha=settings.alpha,
                                       bias=data.bias)
    return SurePatchSampler(data.image, data.probe, data.sd, train_mask, settings.patch,
                            settings.batch, eps=SURE_EPS, bias=data.bias)


def _objective(data: Sequence[SureInputs], train_mask: np.ndarray, policy: Policy,
               settings: TuningSettings) -> tuple:
    """(sampler, loss, policy) of ``settings.objective``; with several images each batch
    comes from one of them. SURE runs in fp32: the finite difference of ``SURE_EPS`` probes
    is below bf16's resolution; recorrupted pairs have no such difference and keep the
    policy's precision (bf16 halves a CPU step where it is native)."""
    samplers = [_sampler(d, train_mask, settings) for d in data]
    sampler = samplers[0] if len(samplers) == 1 else MixedSampler(samplers)
    if settings.objective == "r2r":
        return sampler, masked_mse, policy
    return (sampler, functools.partial(sure_loss, eps=SURE_EPS),
            dataclasses.replace(policy, dtype=None))


def tune_on_average(model: torch.nn.Module, data: SureInputs | Sequence[SureInputs],
                    train_mask: np.ndarray,
                    heldout: tuple[np.ndarray, np.ndarray, tuple[slice, ...]] | None,
                    policy: Policy, settings: TuningSettings,
                    progress: Callable[[int, float], None] | None = None) -> dict:
    """Tune ``model`` in place on patches of ``train_mask`` by ``settings.objective``; with
    ``heldout`` (region, scored voxels, slab) keep the weights that score best there by SURE
    (fp32, whatever the objective). ``data`` may hold several images that share the mask
    (the volumes of a diffusion shell); the held-out slab scores one image only. Returns the
    record."""
    images = [data] if isinstance(data, SureInputs) else list(data)
    if heldout is not None and len(images) != 1:
        raise ValueError("the held-out slab scores the tuning on one image")
    data = images[0]
    fp32 = dataclasses.replace(policy, dtype=None)
    sampler, loss_fn, train_policy = _objective(images, train_mask, policy, settings)
    scores: dict[str, float] = {}
    best: dict = {}
    check_seconds = 0.0

    def check(step: int) -> None:
        nonlocal check_seconds
        t0 = time.perf_counter()
        score = sure_score(model, data, slab_probe, region, scored, fp32, settings)
        check_seconds += time.perf_counter() - t0
        scores[str(step)] = round(score, 6)
        if not best or score < best["score"]:
            best.update(score=score, step=step,
                        weights={k: v.detach().clone() for k, v in model.state_dict().items()})
        train_mode(model, freeze_bn=True)  # back to training after the scoring pass

    def on_step(state) -> None:
        if state.step % settings.check_every == 0 or state.step == settings.steps:
            check(state.step)

    if heldout is not None:
        region, scored, slab = heldout
        slab_probe = probe_from_elsewhere(data.probe, data.sd, slab)
        check(0)
    state = fit(model, sampler, settings.steps, settings.lr, train_policy, seed=settings.seed,
                schedule=settings.schedule, freeze_bn=True, loss_fn=loss_fn,
                on_step=on_step if heldout is not None else None, progress=progress)
    record = {"output_tuning": settings.objective, "output_tuning_steps": settings.steps,
              "output_tuning_lr": settings.lr, "output_tuning_seconds": round(state.seconds, 2),
              "output_tuning_loss": round(float(np.mean(state.losses[-100:])), 6)}
    if best:
        model.load_state_dict(best["weights"])
        record.update(output_tuning_scores=scores, output_tuning_kept_step=best["step"],
                      output_tuning_check_seconds=round(check_seconds, 2))
        if settings.detail:
            record.update(sure_detail(model, data, slab_probe, region, scored, fp32, settings))
    return record
