"""Supervised residual pre-training on clean images with simulated noise (domain randomized).

Clean data come either from fixed volumes (:class:`SyntheticNoiseSampler`) or from
domain-randomized cubes cut from several sources under random deformation, voxel size, tissue
contrast, texture and blur (:class:`DomainRandomizedSampler`, :mod:`noise2average.arrays.synth`).
Every ``refresh`` steps a fresh noisy volume is drawn: a clean volume, a random contrast
(gamma) and smooth bias field, a noise level log-uniform in ``sigma_range`` (1.0 = 99th
percentile in the brain), a g-factor-shaped noise map (probability 0.7) and spatially correlated
noise (probability 0.5), Rician magnitude or, with probability ``multicoil``, non-central
chi. The normalization statistics are jittered (mean +-0.3 SD, SD x exp(+-0.3)) so the
network does not rely on the exact mask a user gives: a head
mask, a brain mask or a crop shift the statistics, and a network trained on one fixed
normalization misreads the others (measured: -2 dB on a Colin27 crop). The network learns the residual from the noisy image
to the clean one in the noisy image's own mask normalization: the same pairs that fine-tuning
forms, with the clean image as the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .arrays.masking import bounding_box
from .arrays.noise import gfactor_map, noise_map, rician, smooth_field
from .arrays.normalize import Norm
from .arrays.synth import Source, draw_clean
from .nn.device import Policy
from .nn.engine import FitState, fit
from .nn.patches import Batch, PatchSampler


@dataclass
class PretrainConfig:
    steps: int = 4000
    lr: float = 5e-4
    schedule: str = "cosine"
    warmup: int = 100
    batch_size: int = 2
    patch_size: int = 32
    sigma_min: float = 0.01
    sigma_max: float = 0.12
    refresh: int = 50
    seed: int = 0
    #: edge of the randomized clean cube drawn at each refresh (domain-randomized data)
    crop: int = 72
    #: probability of multi-coil (non-central chi, 2-4 coils) instead of Rician noise; from a
    #: patch the network cannot tell the coil count, and 0.3 taught a U-Net a -0.01
    #: brightness bias on Rician data (docs/benchmarks.md), hence 0 by default
    multicoil: float = 0.0
    #: normalization jitter: mean +- this many SDs, SD x exp(+- this)
    norm_jitter: float = 0.3
    #: noisy volumes that patches are drawn from at once: every refresh replaces the oldest,
    #: and each patch of a batch comes from a random one of them. With 1 every batch comes
    #: from one volume for ``refresh`` steps, and a network large enough to follow it swings
    #: to each volume's contrast and noise (measured: a U-Net's PSNR jumping 30 -> 15 -> 28 dB
    #: between checkpoints 150 steps apart)
    pool: int = 1
    #: gradient-norm clipping (0: none): one batch of high noise can otherwise throw a deep
    #: network far off (measured: loss spikes of 10^3 in a U-Net run at lr 3e-4)
    clip_grad: float = 1.0
    #: give the network a second input channel: the local noise SD, estimated from two
    #: noisy draws of the same volume as the pipeline estimates it from two repetitions
    #: (:func:`arrays.noise.noise_map`), in the input's normalized units
    noise_channel: bool = False
    #: with the noise channel: probability that the draws after the first are repetitions as
    #: a user's registration leaves them, drawn on the volume under a random rigid motion
    #: (up to 2 degrees and 1 voxel) and resampled back, so that their noise is interpolated
    #: (:func:`registered_draw`); the map then means what it means in ``n2a denoise``
    registered: float = 0.0
    #: with the noise channel: probability that the network's input is the average of the
    #: draws, with the map divided by sqrt(draws), as in the pipeline's final pass
    average_input: float = 0.0
    #: processes that synthesize the training batches (0: the training process itself); a
    #: GPU needs them, since one CPU core synthesizes a 96^3 volume in about 1.5 s
    #: (:mod:`noise2average.nn.workers`; batches then arrive in the workers' order)
    workers: int = 0
    #: wall-time budget in minutes (0: none): training stops when it is spent, and the
    #: cosine schedule runs over it instead of over ``steps`` (hardware of unknown speed)
    minutes: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def add_noise(clean: np.ndarray, rng: np.random.Generator, config: PretrainConfig,
              draws: int = 1) -> tuple[list[np.ndarray], dict]:
    """``clean`` (99th percentile in the brain = 1) with randomized magnitude noise: sigma
    log-uniform in the config's range, a g-factor map (probability 0.7), spatial correlation
    (probability 0.5), non-central chi from 2-4 coils (probability ``config.multicoil``, else
    Rician). Returns ``draws`` independent noisy images of one noise model (repetitions) and
    the drawn parameters."""
    sigma = float(np.exp(rng.uniform(np.log(config.sigma_min), np.log(config.sigma_max))))
    use_g = bool(rng.random() < 0.7)
    g = gfactor_map(clean.shape, rng) if use_g else np.float32(1.0)
    corr = float(rng.uniform(0.3, 0.8)) if rng.random() < 0.5 else 0.0
    # drawn only when asked for, so runs without multi-coil noise keep their random stream
    coils = int(rng.integers(2, 5)) if config.multicoil > 0 and rng.random() < config.multicoil else 1
    # drawn only when asked for, as above
    registered = draws > 1 and config.registered > 0 and bool(rng.random() < config.registered)
    noisy = []
    for k in range(draws):
        if registered and k > 0:
            noisy.append(registered_draw(clean, rng, lambda moved: rician(
                moved, sigma * g, rng, correlation=corr, coils=coils)))
        else:
            noisy.append(rician(clean, sigma * g, rng, correlation=corr, coils=coils))
    return noisy, {"sigma": sigma, "gfactor": use_g, "correlation": corr, "coils": coils,
                   "registered": registered}


def registered_draw(clean: np.ndarray, rng: np.random.Generator,
                    noise: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A repetition as a registration leaves it: ``noise`` applied to ``clean`` moved by a
    random rigid motion (rotations up to 2 degrees, translations up to 1 voxel), then
    resampled back onto ``clean``'s grid (cubic spline), which interpolates its noise."""
    from .arrays.simulate import resample, rigid_matrix

    motion = rigid_matrix(rng.uniform(-2, 2, 3), rng.uniform(-1, 1, 3))
    zooms = (1.0, 1.0, 1.0)
    moved = resample(clean, np.linalg.inv(motion), zooms)
    return np.clip(resample(noise(moved), motion, zooms), 0, None).astype(np.float32)


def contrast_and_bias(clean: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                      ) -> tuple[np.ndarray, float]:
    """A random gamma contrast (0.7-1.4) and smooth bias field, rescaled to the brain's 99th
    percentile = 1."""
    gamma = float(rng.uniform(0.7, 1.4))
    clean = np.clip(clean, 0, None) ** gamma
    bias = smooth_field(clean.shape, rng, float(rng.uniform(0.8, 1.0)),
                        float(rng.uniform(1.0, 1.25)))
    clean = (clean * bias).astype(np.float32)
    clean /= max(float(np.percentile(clean[mask], 99)), 1e-6)
    return clean, gamma


class _RefreshingSampler:
    """Training patches of fresh noisy volumes: every ``config.refresh`` steps a new one
    replaces the oldest of a pool of ``config.pool`` (filled at the first call), and each patch
    of a batch comes from a random volume of the pool. Subclasses give
    ``draw_volume(rng) -> (noisy, clean, mask)`` and record what they drew in ``self.last``."""

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config
        self.count = 0
        self.pool: list[PatchSampler] = []
        self.last: dict = {}

    def draw_volume(self, rng: np.random.Generator
                    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def draws(self) -> int:
        """Noisy draws per volume: a second one gives the noise map channel."""
        return 2 if self.config.noise_channel else 1

    def _patches_of_new_volume(self, rng: np.random.Generator, batch: int) -> PatchSampler:
        noisy, clean, mask = self.draw_volume(rng)
        image, level = noisy[0], 1.0
        if (self.config.noise_channel and self.config.average_input > 0
                and rng.random() < self.config.average_input):
            image, level = np.mean(noisy, axis=0), float(1.0 / np.sqrt(len(noisy)))
        fitted = Norm.fit(image, mask)
        j = self.config.norm_jitter
        norm = Norm(fitted.mean + fitted.std * float(rng.uniform(-j, j)),
                    fitted.std * float(np.exp(rng.uniform(-j, j))))
        z = norm.forward(image)
        channels = [z]
        if self.config.noise_channel:
            channels.append(noise_map(noisy) * level / norm.std)
        return PatchSampler([np.stack(channels)], [(norm.forward(clean) - z)[None]], mask,
                            self.config.patch_size, batch, flip_axes=(0, 1, 2))

    def __call__(self, rng: np.random.Generator) -> Batch:
        size = max(1, self.config.pool)
        # a pool of one draws whole batches from its volume (the original sampler, same stream)
        batch = self.config.batch_size if size == 1 else 1
        filled = len(self.pool) < size  # the first call, or the first after a resume
        while len(self.pool) < size:
            self.pool.append(self._patches_of_new_volume(rng, batch))
        if not filled and self.count % self.config.refresh == 0:
            self.pool = self.pool[1:] + [self._patches_of_new_volume(rng, batch)]
        self.count += 1
        if size == 1:
            return self.pool[0](rng)
        parts = [self.pool[int(rng.integers(size))](rng) for _ in range(self.config.batch_size)]
        return tuple(np.concatenate(a, axis=0) for a in zip(*parts))


class SyntheticNoiseSampler(_RefreshingSampler):
    """Patches of freshly simulated noisy versions of fixed clean volumes (module docstring)."""

    def __init__(self, volumes: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                 config: PretrainConfig) -> None:
        super().__init__(config)
        boxes = [bounding_box(m, margin=8) for m in masks]
        self.volumes = [v[b] for v, b in zip(volumes, boxes)]
        self.masks = [m[b] for m, b in zip(masks, boxes)]

    def draw_volume(self, rng: np.random.Generator
                    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """One randomized (noisy draws, clean, mask) triple; the drawn parameters go to
        ``self.last``."""
        i = int(rng.integers(len(self.volumes)))
        mask = self.masks[i]
        clean, gamma = contrast_and_bias(self.volumes[i], mask, rng)
        noisy, params = add_noise(clean, rng, self.config, self.draws)
        self.last = {"volume": i, "gamma": gamma, **params}
        return noisy, clean, mask


class DomainRandomizedSampler(_RefreshingSampler):
    """Patches of noisy versions of randomized clean cubes (:func:`arrays.synth.draw_clean`):
    every refresh a new source, position, deformation, voxel size, contrast and noise."""

    def __init__(self, sources: Sequence[Source], config: PretrainConfig) -> None:
        super().__init__(config)
        self.sources = list(sources)

    def draw_volume(self, rng: np.random.Generator
                    ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        c = self.config.crop
        clean, mask, drawn = draw_clean(self.sources, (c, c, c), rng)
        clean, gamma = contrast_and_bias(clean, mask, rng)
        noisy, params = add_noise(clean, rng, self.config, self.draws)
        self.last = {**drawn, "gamma": gamma, **params}
        return noisy, clean, mask


def pretrain(model: torch.nn.Module, volumes: Sequence[np.ndarray] | None,
             masks: Sequence[np.ndarray] | None, config: PretrainConfig, policy: Policy,
             state: FitState | None = None,
             on_step: Callable[[FitState], None] | None = None,
             progress: Callable[[int, float], None] | None = None,
             sources: Sequence[Source] | None = None) -> FitState:
    """Train ``model`` in place on fixed clean ``volumes`` (with ``masks``), or on
    domain-randomized cubes of ``sources``; ``state`` resumes an interrupted run."""
    sampler = (DomainRandomizedSampler(sources, config) if sources
               else SyntheticNoiseSampler(volumes, masks, config))
    return fit_sampler(model, sampler, config, policy, state=state, on_step=on_step,
                       progress=progress)


def fit_sampler(model: torch.nn.Module, sampler, config, policy: Policy,
                state: FitState | None = None,
                on_step: Callable[[FitState], None] | None = None,
                progress: Callable[[int, float], None] | None = None) -> FitState:
    """The optimizer run of every pre-training: ``sampler`` draws fresh noisy data every
    ``config.refresh`` steps (its ``count``), ``config`` gives steps, lr, schedule, warm-up,
    seed, the sampler's worker processes and the time budget. ``state`` resumes an
    interrupted run."""
    if state is not None:
        sampler.count = state.step  # keeps the refresh cadence aligned after a resume
    model = policy.prepare(model)
    if config.workers > 0:
        from .nn.workers import WorkerSampler

        sampler = WorkerSampler(sampler, config.workers, seed=config.seed,
                                start=0 if state is None else state.step,
                                pin_memory=policy.device.type == "cuda")
    try:
        return fit(model, sampler, config.steps, config.lr, policy, seed=config.seed,
                   schedule=config.schedule, warmup=config.warmup, state=state,
                   on_step=on_step, progress=progress, clip_grad=config.clip_grad,
                   seconds=config.minutes * 60 if config.minutes > 0 else None)
    finally:
        if config.workers > 0:
            sampler.close()
