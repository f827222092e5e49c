"""The one configuration object: built by the CLI or the Python API, used by the run, and
written whole into the provenance sidecar (a run can be repeated from its sidecar alone)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import InputError
from .methods.registry import names

#: ``init`` values naming a shipped T1w model (``io.weights.PACKAGED``): the default U-Net and
#: the MU-Net it replaced
PACKAGED_INITS = {"pretrained": "t1w", "pretrained-munet": "t1w-munet"}
# views of methods.registry.REGISTRY, the one list of methods
LEARNED_METHODS = names(learned=True)
CLASSICAL_METHODS = names(learned=False, volumes=True)  # on the (registered) average
DWI_METHODS = names(volumes=False, series=True)  # 4D diffusion series only
VOLUME_ONLY_METHODS = names(volumes=True, series=False)
METHODS = LEARNED_METHODS + CLASSICAL_METHODS + DWI_METHODS
# output_tuning_steps=0: the output tuning gets this many steps per fine-tuning step, so that
# a short run (--steps) stays short, by objective and hardware (``nn.device.Policy.hardware``).
# Recorrupted pairs (r2r) run in the policy's precision: where a CPU has native bf16, 1000
# steps (5 x 200) take less time than SURE's 400 (fp32, two passes a step) and score above
# SURE's 1200; an fp32 CPU gets 3 x (600 steps: 311-318 s of one thread against SURE's
# 249-290 s at 96^3, for 0.15-0.25 dB more)
# (docs/benchmarks.md, "The default against BM4D"; docs/performance.md)
TUNING_STEPS_PER_STEP = {"r2r": {"cpu": 3, "cpu-bf16": 5, "cuda": 10},
                         "sure": {"cpu": 2, "cpu-bf16": 2, "cuda": 6}}
#: the output tuning's objectives, and the one ``output_tuning='auto'`` tunes by
TUNING_OBJECTIVES = ("r2r", "sure")
AUTO_TUNING_OBJECTIVE = "r2r"
#: each objective's learning-rate schedule under ``output_tuning_schedule='auto'``: r2r's
#: cosine is measured on protocol v1 against its constant rate (-0.08 to +0.16 dB, 4-25 %
#: less tuning time); SURE's 400 steps are measured at a constant rate only
TUNING_SCHEDULES = {"r2r": "cosine", "sure": "constant"}
#: each objective's peak learning rate under ``output_tuning_lr=0``: r2r's is measured on
#: protocol v1 (1e-4 to 5e-4, docs/benchmarks.md "The default against BM4D"); SURE's noisy
#: gradient loses with three times its 1e-4 ("Fine-tuning at the average's noise level")
TUNING_LRS = {"r2r": 3e-4, "sure": 1e-4}
# What `n2a benchmark` runs when --methods is not given.
BENCHMARK_METHODS = ("average", "nlmeans", "aonlm", "bm4d", "pretrained", "n2n", "n2a", "n2a-aligned",
                     "supervised")


@dataclass
class DenoiseConfig:
    """Everything that determines a denoising run.

    Parameters
    ----------
    method
        ``n2a-aligned`` (the default: Noise2Average with ``align='register'``, see
        docs/benchmarks.md for why), ``n2a`` (Noise2Average exactly as the paper), ``n2n`` (Noise2Noise), ``supervised``
        (needs a clean reference; benchmark upper bound), ``pretrained`` (no fine-tuning),
        ``average`` (plain mean of the repetitions), or a conventional method on the average:
        ``bm4d``, ``aonlm`` (ANTs DenoiseImage), ``nlmeans`` (DIPY); for diffusion series only
        (:func:`noise2average.diffusion.denoise_dwi`): ``mppca`` (DIPY), ``dwidenoise``
        (MRtrix3), ``patch2self`` (DIPY).
    iterations
        Noise2Average iterations; each uses the previous result as the target (1 for the others).
    steps
        Optimizer steps per iteration (Adam, one batch per step).
    lr, batch_size, patch_size
        Fine-tuning learning rate, patches per step, patch edge in voxels.
    dwi_mode
        How a learned method treats a diffusion series
        (:func:`noise2average.diffusion.denoise_dwi`): ``volumes`` (the default), every volume
        a 3D Noise2Average problem of its own, one single-channel network (the shipped T1w
        U-Net) fine-tuned on all the volumes of each shell, and on the b=0 volumes
        (:mod:`noise2average.dwi_volumes`); ``groups``, the
        diffusion network on groups of b0 + k - 1 DWIs (the paper's design, the shipped
        diffusion model).
    dwi_basis
        With ``dwi_mode='volumes'``: the volumes each shell's network denoises, its DWIs as
        acquired (``directions``) or their principal components (``components``,
        :mod:`noise2average.arrays.components`); ``auto`` (the default), per shell, the
        components where the repetitions are acquisitions of their own (not subsets of one
        scan that share its b=0 image, ``n2a dti-split --b0 mean``) and the shell's contrast
        between directions stands well out of the noise, else the DWIs
        (:func:`noise2average.dwi_volumes.shell_basis`). The b=0 volumes are denoised as
        acquired either way.
    contrast_weight
        Diffusion groups only: the extra weight of the directional contrast's error in the
        fine-tuning loss (:func:`noise2average.nn.losses.contrast_weighted_mse`); 0, the
        default, trains with the plain squared error.
    schedule
        Fine-tuning learning-rate schedule: ``constant`` or ``cosine`` (decay to 5 % of ``lr``
        over the steps of each iteration).
    restart
        Start every iteration from the initial weights (reference code) instead of continuing.
    init
        ``pretrained`` (the shipped U-Net), ``pretrained-munet`` (the shipped MU-Net),
        ``scratch`` (random weights of ``preset``) or a path.
    preset
        Architecture for ``init='scratch'`` (``unet``, ``cpu``, ``paper``, ``tiny``, ...).
    sampling
        ``mask``: patch centres drawn among mask voxels; ``blocks``: the reference code's
        overlapping blocks (stride half a patch) of the mask's bounding box.
    block_size
        Inference block edge in voxels (sets speed and peak memory, not the result). Each
        block is run with a halo of the receptive radius, so larger blocks recompute fewer
        voxels: on a 1 mm brain one pass of the CPU model takes 0.71x the time of 96-voxel
        blocks at 160, with a peak of 2.4 GB instead of 1.1 GB (``benchmarks/blocks.py``,
        docs/performance.md); lower it where memory is short.
    flip
        Left-right flip augmentation in training and flip averaging at inference.
    train_flips
        The flips of the fine-tuning patches: ``lr``, the left-right axis; ``all``, the three
        axes, as in pre-training (3D volumes; a diffusion group keeps ``lr``).
    output_flips
        The flip averaging of the output pass on the average (``output_from='average'``) when
        the kept network learnt every flip (the pre-trained one, or one fine-tuned with
        ``train_flips='all'``): ``all``, every combination of flips along the three axes (8
        passes, each an equally good estimate, so their mean has less error: +0.08 to +0.14
        dB over ``lr`` on the benchmark, docs/benchmarks.md); ``lr``, the left-right flip
        alone (2 passes). A network fine-tuned with the left-right flip alone, and a
        diffusion group, keep ``lr``.
    lr_axis
        Voxel axis that runs left-right (the file layer reads it from the affine).
    voxel_size
        Voxel size in mm (the file layer reads it from the header); the re-registration of
        ``align='register'`` is rigid in mm, not in voxels.
    outside
        Voxels outside the mask: ``blend`` (the default: the plain average, with the denoised
        result fading into it over ``arrays.masking.BLEND_WIDTH`` voxels past the mask edge,
        so that the whole field of view survives without a step at the edge; the fade needs the
        network's pass on the average, ``output_from='average'``, and is a plain switch
        otherwise), ``average`` (the plain average, switched at the edge) or ``zero`` (as the
        paper). The averages are in rep 1's frame where the repetitions are registered.
    align
        ``auto`` (``register`` for ``n2a-aligned``, else ``none``); ``none``: average the
        repetitions as they are (the paper); ``register``: learned
        methods register the noisy repetitions for the first target and the denoised ones
        (sub-voxel rigid) after every iteration, average them in rep 1's frame and give every
        repetition its target in its own frame; conventional methods register the noisy
        repetitions before averaging.
    target
        Noise2Average's target for repetition k: ``average`` of all denoised repetitions (the
        paper) or ``others``, the average of the other ones (leave-one-out).
    first_target
        What iteration 1 trains towards: ``average``, the average of all noisy repetitions
        (the paper), or ``others``, the average of the other noisy repetitions (a Noise2Noise
        first iteration: its target holds none of the input's own noise, so the network is
        not taught to keep 1/N of it; later iterations train towards the average of the
        denoised repetitions as in the paper).
    stopping
        ``auto`` (``cross`` for ``n2a-aligned``, else ``fixed``); ``fixed``: run
        ``iterations`` iterations; ``cross``: stop when the cross error (how well the other
        denoised repetitions predict each noisy one) stops falling, and keep the best
        iteration (``iterations`` is then the maximum). With the default 2 iterations,
        ``cross`` costs nothing extra: it keeps iteration 1 when iteration 2 made the cross
        error worse (measured in docs/benchmarks.md: it happens with 4 repetitions).
    output_from
        What the result is made of: ``denoised``, the mean of the denoised repetitions (the
        paper); ``average``, the kept iteration's network applied once more, with flip
        averaging, to the (registered) average of the noisy repetitions - the network sees
        noise sigma / sqrt(N) there, and the result gained 0.2 dB on the benchmark
        (docs/benchmarks.md); the repetitions' own passes, which form the targets, the scores
        and the saved repetitions, then skip the flip averaging, which pays for the extra pass.
        ``auto``: ``average`` for ``n2a-aligned``, else ``denoised``.
    output_contrast
        With ``output_from='average'`` on 3D repetitions: whose brightness and contrast the
        result has. ``average``: the repetitions' mean; ``first``: repetition 1's, the
        frame the result is in: the part of repetition 1's difference from the average that
        the result's own contrast explains
        (:func:`noise2average.arrays.noise.contrast_explained`) is added to it, so that two
        echoes give the first echo with the noise of both. ``auto`` (the default): ``first``
        where that part holds more than ``pipeline.CONTRAST_SHARE`` of the difference
        (repetitions that differ in contrast, such as echoes), else ``average``. The
        conventional methods on the average (``bm4d`` ...) take ``first`` only when it is
        asked for: under ``auto`` they stay as their users run them.
    holdout
        With the cross-error rule: the fraction of the mask (one central slab) left out of the
        fine-tuning loss and used to score the iterations, so that the score is not biased by
        the network having fitted the noise it is scored on; only its bright voxels count
        (``pipeline.SCORE_MIN_SNR``), out of the Rician bias of dark tissue. The pre-trained network's own
        prediction competes as iteration 0 on the same slab (a partial inference pass) and is
        the result when it scores best (at sigma 0.08 with 4 repetitions it is, and rightly;
        on the echo variant it is too: 1.3 dB worse against echo 1, 0.70 dB better against
        the mean of the echoes, docs/benchmarks.md "Echoes"). 0: score on the whole mask, no
        iteration 0.
    output_tuning
        ``auto`` (the default), ``none``, ``r2r`` or ``sure``: before the output pass, tune
        the kept network on the registered average itself
        (:mod:`noise2average.output_tuning`) by an estimate of its error against the truth
        whose noise draws are the repetitions' signed difference
        (:func:`noise2average.arrays.noise.difference_probe`) cut elsewhere in the volume,
        with the Rician bias taken off the data: recorrupted pairs (``r2r``, one forward pass
        a step, bf16 where the CPU has it) or Monte-Carlo SURE (``sure``, two fp32 passes).
        SURE on the held-out slab keeps the best scored step, the untuned network included.
        ``auto`` tunes ``n2a-aligned`` by ``r2r`` where it applies (3D repetitions with a
        network without a noise-map channel, or diffusion series with ``dwi_mode='volumes'``,
        each shell on its own; ``output_from='average'``) and no comparison method; ``r2r``
        and ``sure`` ask for it and refuse where it does not apply. Measured on
        protocol v1 with a bf16 CPU's 1000 steps: +0.62 dB on average over the untuned output
        pass, above BM4D on the registered average in the six cases without echoes, and
        above SURE's 400 steps, which take more time (docs/benchmarks.md, "The default
        against BM4D").
    output_tuning_steps, output_tuning_lr, output_tuning_alpha
        Its optimizer steps (one 32^3 patch each; 0: ``TUNING_STEPS_PER_STEP`` x ``steps``,
        by objective and hardware: ``r2r`` 5 x on a CPU with bf16, 3 x on an fp32 CPU, 10 x on
        a GPU; ``sure`` 2 x on a CPU, 6 x on a GPU), peak learning rate (0: by objective,
        ``TUNING_LRS``: 3e-4 for ``r2r``, 1e-4 for ``sure``), and the
        recorrupted pairs' probe weight alpha (input average + alpha probe, target average -
        probe / alpha).
    output_tuning_schedule, output_tuning_checks
        The tuning's learning-rate schedule (``cosine``, the decay to 5 % of
        :func:`noise2average.nn.engine.fit`, or ``constant``; ``auto``: cosine for ``r2r``,
        constant for ``sure``, each as measured) and how many times after the
        untuned network the held-out slab scores it (evenly spaced, the last at the last
        step; 1: the tuned network against the untuned one). The default pair, measured
        against a constant rate with five checks on protocol v1, scores within -0.08 to
        +0.16 dB on every case for 4-25 % less tuning time (docs/benchmarks.md, "The
        default against BM4D").
    output_detail
        How much of the output's own fine detail (its difference from a Gaussian blur of 0.7
        voxels, an unsharp mask; :mod:`noise2average.arrays.detail`) the 3D output pass adds
        back. ``match``: the share at which the result, with a draw of the average's noise
        added, has the average's mean gradient magnitude in the mask's interior, so that it
        is as sharp as the data show (the gradient match), at most the share whose estimated
        cost reaches ``output_detail_budget``. ``none``: the network's output as it is.
        ``sure``: the share that SURE on the held-out slab finds least in error (the output
        tuning's slab, ``holdout`` > 0). A number in [0, 1]: that share. ``auto`` (the
        default): ``match`` where the output pass is tuned on a held-out slab that prices
        the share (``n2a-aligned`` on 3D repetitions, ``holdout`` > 0, a budget above 0,
        no ``output_blend``), ``none`` elsewhere (the diffusion workflows add none).
        Measured on protocol v1 (docs/benchmarks.md, "Sharpness: the gradient match"): the
        match, with its default budget, lifts the sharpness ratio from 0.93-0.97 to
        0.96-0.99 in all seven cases, for 0.02-0.17 dB with two repetitions and a gain of
        0.01-0.08 dB with four; SURE picks 0-0.03 (+0.01 dB).
    output_detail_budget
        The most PSNR (dB) that the gradient match (``output_detail`` ``auto`` or
        ``match``) may spend: where the output tuning scores on a held-out slab, SURE there
        estimates the result's squared error and its growth with the share (a quadratic),
        and the share stops where the growth reaches this many decibels (:func:`noise2average.arrays.detail.budget_amount`). 0: no bound
        (on the macaque at sigma 0.08, where the network is smoothest, the unbounded share
        costs 0.70 dB; the bounded one 0.08).
    noise_coils
        The receive channels whose root sum of squares the magnitude images are: the noise
        floor whose bias (non-central chi, about 2 x ``noise_coils`` - 1 times the Rician
        one in bright tissue) the output tuning takes off its data. 0 (the default): read
        off the air around the head (:mod:`noise2average.arrays.coils`), one channel (the
        Rician model) where the volume has too little air; recorded as ``noise_coils`` in
        the history.
    output_blend
        The share of BM4D on the registered average in the result, the network's output
        making up the rest (0, the default: the network's output alone). Two denoisers whose
        errors differ: a share of 0.4 scores above both in ten of eleven benchmark cases
        (+0.03 to +0.21 dB over the default) and 0.16 dB below the default where the
        network leads BM4D by 1.1 dB (docs/benchmarks.md, "BM4D and the network
        together"), for BM4D's time and memory on top of the default's (on a full 1 mm
        brain about 300 s and 7 GB). Needs the ``bm4d`` package and
        ``output_from=average``.
    device, precision, threads, seed
        Runtime; see :func:`noise2average.nn.device.resolve_policy`.
    """

    method: str = "n2a-aligned"
    iterations: int = 2
    steps: int = 200
    lr: float = 2e-4
    schedule: str = "constant"
    dwi_mode: str = "volumes"
    dwi_basis: str = "auto"
    contrast_weight: float = 0.0
    batch_size: int = 1
    patch_size: int = 32
    restart: bool = True
    init: str = "pretrained"
    preset: str = "cpu"
    sampling: str = "mask"
    block_size: int = 160
    flip: bool = True
    train_flips: str = "lr"
    output_flips: str = "all"
    lr_axis: int = 0
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    outside: str = "blend"
    align: str = "auto"
    target: str = "average"
    first_target: str = "average"
    stopping: str = "auto"
    output_from: str = "auto"
    output_contrast: str = "auto"
    holdout: float = 0.08
    output_tuning: str = "auto"
    output_tuning_steps: int = 0
    output_tuning_lr: float = 0.0
    output_tuning_alpha: float = 0.5
    output_tuning_schedule: str = "auto"
    output_tuning_checks: int = 1
    output_detail: str = "auto"
    output_detail_budget: float = 0.2
    noise_coils: int = 0
    output_blend: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        for name in ("iterations", "batch_size", "patch_size", "block_size",
                     "output_tuning_checks"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.output_tuning_steps < 0:
            raise InputError(f"output_tuning_steps must be >= 0 (0: a multiple of steps by "
                             f"device), got {self.output_tuning_steps}")
        if self.steps < 0:
            raise InputError(f"steps must be >= 0, got {self.steps}")
        if self.steps == 0 and self.method in ("n2a-aligned", "n2a", "n2n", "supervised"):
            raise InputError(f"method {self.method} with 0 steps would only apply the "
                             "pre-trained network; use --method pretrained for that")
        for name in ("lr", "output_tuning_alpha"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.output_tuning_lr >= 0:
            raise InputError(f"output_tuning_lr must be >= 0 (0: by objective), got "
                             f"{self.output_tuning_lr}")
        self._validate_detail()
        if not 0 <= self.output_blend <= 1:
            raise InputError(f"output_blend must be a share in [0, 1], got {self.output_blend}")
        if self.output_blend and not self.from_average:
            raise InputError("output_blend mixes BM4D into the output pass on the registered "
                             "average; it needs output_from=average (the n2a-aligned default)")
        if not 0 <= self.noise_coils <= 64:
            raise InputError(f"noise_coils must be 0 (from the background) to 64, got "
                             f"{self.noise_coils}")
        if not self.output_detail_budget >= 0:
            raise InputError(f"output_detail_budget must be >= 0 dB (0: no bound), got "
                             f"{self.output_detail_budget}")
        if self.detail_rule == "sure" and self.output_tuning == "none":
            raise InputError("output_detail=sure is chosen on the output tuning's held-out "
                             "slab; it needs output_tuning auto, r2r or sure")
        if not self.contrast_weight >= 0:
            raise InputError(f"contrast_weight must be >= 0, got {self.contrast_weight}")
        if self.sampling not in ("mask", "blocks"):
            raise InputError(f"sampling must be 'mask' or 'blocks', got {self.sampling!r}")
        if self.outside not in ("blend", "average", "zero"):
            raise InputError(f"outside must be 'blend', 'average' or 'zero', got "
                             f"{self.outside!r}")
        for name, allowed in (("schedule", ("constant", "cosine")),
                              ("output_tuning_schedule", ("auto", "constant", "cosine")),
                              ("align", ("auto", "none", "register")), ("target", ("average", "others")),
                              ("first_target", ("average", "others")),
                              ("train_flips", ("lr", "all")),
                              ("output_flips", ("lr", "all")),
                              ("dwi_mode", ("volumes", "groups")),
                              ("dwi_basis", ("auto", "directions", "components")),
                              ("output_tuning", ("auto", "none", *TUNING_OBJECTIVES)),
                              ("stopping", ("auto", "fixed", "cross")),
                              ("output_from", ("auto", "denoised", "average")),
                              ("output_contrast", ("auto", "average", "first"))):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if not 0 <= self.holdout <= 0.5:
            raise InputError(f"holdout must be a fraction in [0, 0.5], got {self.holdout}")
        if len(self.voxel_size) != 3 or not all(v > 0 for v in self.voxel_size):
            raise InputError(f"voxel_size must be 3 positive sizes (mm), got {self.voxel_size}")
        self.voxel_size = tuple(float(v) for v in self.voxel_size)
        if self.lr_axis not in (0, 1, 2):
            raise InputError(f"lr_axis must be 0, 1 or 2, got {self.lr_axis}")

    def _validate_detail(self) -> None:
        """``output_detail``: ``auto``, ``none``, ``sure``, ``match`` or a share in [0, 1]
        (kept as its text, so that the sidecar records what was asked)."""
        self.output_detail = str(self.output_detail)
        if self.output_detail in ("none", "auto"):
            return
        if self.output_detail not in ("sure", "match"):
            try:
                share = float(self.output_detail)
            except ValueError:
                share = float("nan")
            if not 0 <= share <= 1:
                raise InputError(f"output_detail must be auto, none, sure, match or a share "
                                 f"in [0, 1], got {self.output_detail!r}")
        if not self.from_average:
            raise InputError("output_detail is added in the output pass on the registered "
                             "average; it needs output_from=average (the n2a-aligned default)")

    @property
    def detail_rule(self) -> str:
        """How the output pass chooses its share of detail (``output_detail``): ``none``,
        ``sure``, ``match`` or a fixed ``share``; ``auto`` resolves to ``match`` where the
        output tuning's held-out slab prices the share within ``output_detail_budget``
        (resolved per method like ``align``), to ``none`` elsewhere. The pipeline adds no
        detail to 4D outputs, where the output pass is not tuned."""
        if self.output_detail == "auto":
            # ``output_blend``'s share of BM4D is measured on the least-error output
            priced = (self.from_average and self.wants_tuning and self.holdout > 0
                      and self.output_detail_budget > 0 and not self.output_blend)
            return "match" if priced else "none"
        if self.output_detail in ("none", "sure", "match"):
            return self.output_detail
        return "share"

    @property
    def detail_share(self) -> float | None:
        """The fixed share of the output's own detail that ``output_detail`` asks for; None
        where there is none or a rule chooses it per run."""
        return float(self.output_detail) if self.detail_rule == "share" else None

    @property
    def registers(self) -> bool:
        """Whether repetitions are re-registered (``align``, with ``auto`` resolved). Kept
        unresolved in the config so that ``replace(method=...)`` re-resolves it."""
        if self.align == "auto":
            return self.method == "n2a-aligned"
        return self.align == "register"

    @property
    def stops_early(self) -> bool:
        """Whether the cross-error rule picks the iteration (``stopping``, ``auto`` resolved
        per method like ``align``)."""
        if self.stopping == "auto":
            return self.method == "n2a-aligned"
        return self.stopping == "cross"

    @property
    def from_average(self) -> bool:
        """Whether the result is the network applied to the average (``output_from``, ``auto``
        resolved per method like ``align``)."""
        if self.output_from == "auto":
            return self.method == "n2a-aligned"
        return self.output_from == "average"

    @property
    def asks_for_tuning(self) -> bool:
        """Whether ``output_tuning`` names an objective (tuning required, not ``auto``)."""
        return self.output_tuning in TUNING_OBJECTIVES

    @property
    def wants_tuning(self) -> bool:
        """Whether the output pass is tuned where tuning applies: ``output_tuning`` names an
        objective, or is ``auto`` and the method is ``n2a-aligned`` (the comparison methods
        stay what they are named)."""
        return self.asks_for_tuning or (self.output_tuning == "auto"
                                        and self.method == "n2a-aligned")

    def tunes_output(self, ndim: int) -> bool:
        """Whether the output pass is tuned on the average of ``ndim``-D repetitions: 3D,
        ``output_from=average`` and ``wants_tuning`` (the pipeline also skips a network
        with a noise-map channel)."""
        return ndim == 3 and self.from_average and self.wants_tuning

    @property
    def tuning_objective(self) -> str:
        """The output tuning's objective: ``output_tuning`` with ``auto`` resolved to
        ``AUTO_TUNING_OBJECTIVE`` (whether ``auto`` tunes at all is the pipeline's call)."""
        if self.output_tuning == "auto":
            return AUTO_TUNING_OBJECTIVE
        return self.output_tuning

    @property
    def tuning_schedule(self) -> str:
        """The output tuning's learning-rate schedule: ``output_tuning_schedule`` with
        ``auto`` resolved by the objective (``TUNING_SCHEDULES``)."""
        if self.output_tuning_schedule == "auto":
            return TUNING_SCHEDULES[self.tuning_objective]
        return self.output_tuning_schedule

    @property
    def tuning_lr(self) -> float:
        """The output tuning's peak learning rate: ``output_tuning_lr``, or for 0 the
        objective's (``TUNING_LRS``)."""
        return self.output_tuning_lr or TUNING_LRS[self.tuning_objective]

    def tuning_steps(self, hardware: str) -> int:
        """The output tuning's steps on ``hardware`` (``cpu``, ``cpu-bf16``, ``cuda``:
        ``nn.device.Policy.hardware``): ``output_tuning_steps``, or for 0
        ``TUNING_STEPS_PER_STEP`` of the objective and that hardware (an fp32 CPU's for any
        other) times ``steps``."""
        budget = TUNING_STEPS_PER_STEP[self.tuning_objective]
        per_step = budget.get(hardware, budget["cpu"])
        return self.output_tuning_steps or per_step * max(self.steps, 1)

    @property
    def flip_repetitions(self) -> bool:
        """Whether the repetitions' inference passes are flip-averaged: with the result taken
        from the average they only form targets and scores, and the flip averaging is kept
        for the one pass that makes the result."""
        return self.flip and not self.from_average

    @property
    def strategy(self) -> str:
        """How training targets are formed (``n2a-aligned`` trains as ``n2a``)."""
        return "n2a" if self.method == "n2a-aligned" else self.method

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DenoiseConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes) -> "DenoiseConfig":
        return DenoiseConfig(**{**self.to_dict(), **changes})


def parse_settings(items, where: str) -> dict:
    """``key=value`` strings -> :class:`DenoiseConfig` changes, each value cast to its field's
    type (booleans: 1/true/yes); ``where`` names the option in the error line."""
    types = {f: type(v) for f, v in DenoiseConfig().to_dict().items() if v is not None}
    changes: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in types or key == "method":
            raise InputError(f"{where}: {item!r} is not a DenoiseConfig key=value "
                             f"(keys: {', '.join(k for k in types if k != 'method')})")
        cast = types[key]
        try:
            changes[key] = (value.lower() in ("1", "true", "yes")) if cast is bool else cast(value)
        except ValueError as exc:
            raise InputError(f"{where}: {item!r}: {key} takes a {cast.__name__}") from exc
    return changes


#: command-line option -> DenoiseConfig field, for the options that change a default when given
OPTION_FIELDS = {"iterations": "iterations", "steps": "steps", "lr": "lr",
                 "patch": "patch_size", "batch": "batch_size", "block": "block_size",
                 "sampling": "sampling", "outside": "outside", "preset": "preset",
                 "align": "align", "target": "target", "first_target": "first_target",
                 "stopping": "stopping", "holdout": "holdout", "output_from": "output_from",
                 "dwi_mode": "dwi_mode", "dwi_basis": "dwi_basis"}
#: options always passed on (their command-line defaults are the config's)
ALWAYS_OPTIONS = ("method", "init", "device", "precision", "threads", "seed")


def changes_from_options(options: dict) -> dict:
    """The :class:`DenoiseConfig` changes that a command's options ask for: ``options`` maps
    option names (as argparse stores them) to values; the names a command lacks are skipped.
    ``continue_weights`` and ``no_flip`` turn ``restart`` and ``flip`` off; ``set`` is a list
    of ``key=value`` strings (:func:`parse_settings`), applied last."""
    changes = {k: options[k] for k in ALWAYS_OPTIONS if k in options}
    if "continue_weights" in options:
        changes["restart"] = not options["continue_weights"]
    if "no_flip" in options:
        changes["flip"] = not options["no_flip"]
    changes.update({field: options[opt] for opt, field in OPTION_FIELDS.items()
                    if options.get(opt) is not None})
    changes.update(parse_settings(options.get("set") or [], "--set"))
    return changes

