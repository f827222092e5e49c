"""Noise2Average for diffusion series volume by volume, with 3D networks (arrays only).

Every volume of the series (b=0 or DWI) is a 3D Noise2Average problem of its own: its N
repetitions and their average. For each shell (and for the b=0 volumes), one single-channel
network (the shipped T1w U-Net) is fine-tuned on all of its volumes at once - each training
patch comes from a random volume and repetition, its target that volume's target - and then
denoises each volume of each repetition on its own, as BM4D does: no volume borrows from
another, so a network that mixes the directions cannot pull their contrast together (the
diffusion groups of :mod:`noise2average.diffusion` do, docs/benchmarks.md "Diffusion").

The volumes of a shell are either its DWIs as acquired or, where the repetitions are
acquisitions of their own and the shell's contrast between directions stands out of the noise
(``dwi_basis``, :func:`shell_basis`), the shell's principal
components (:mod:`noise2average.arrays.components`): an orthonormal rotation across its DWIs,
undone after every pass, that puts the tissue boundaries of the shell's mean image into one
component at a high signal-to-noise ratio and the contrast between directions into a few
others, each with the noise of one DWI.

Each volume is normalized by the mean and SD of its average inside the mask (one
normalization for all its repetitions, so that input and target share a scale). The
strategies are those of :mod:`noise2average.nn.strategies`, volume by volume; Noise2Average
iterates, each iteration training towards the previous one's average of the denoised
repetitions. With ``output_from='average'`` (the default of ``n2a-aligned``) the last
network denoises the average of the repetitions once more, with flip averaging, and that is
the output, as for 3D images; for ``n2a-aligned`` (``output_tuning='auto'``) each shell's
network is first tuned on that average by recorrupted pairs
(:mod:`noise2average.output_tuning`, patches from all the shell's volumes). A spatial
denoiser still keeps slightly less than all of the contrast between directions;
:func:`~noise2average.arrays.contrast.restore_contrast` undoes the shrinkage, measured on
the denoised repetitions or, after the tuning, on a recorrupted pass of the tuned network.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .arrays.components import component_snr, from_components, principal_basis, to_components
from .arrays.contrast import contrast_kept, restore_contrast
from .arrays.normalize import Norm
from .errors import InputError


@dataclass
class VolumeRun:
    """What :func:`denoise_by_volume` returns.

    Attributes
    ----------
    output : the denoised (X, Y, Z, V) series.
    denoised : each denoised repetition (X, Y, Z, V).
    uncertainty : per volume, the local standard error of the mean of the denoised repetitions.
    history : one entry per shell (its volumes, and per iteration the training and inference
        seconds and the first and last losses).
    compute : the device and precision the networks ran with.
    contrast_kept : the directional contrast the output keeps before
        :func:`~noise2average.arrays.contrast.restore_contrast`: measured on the denoised
        repetitions, or, after an output tuning, on a recorrupted pass of the tuned networks;
        or None.
    contrast_restored : whether the output's contrast was spread by ``1 / contrast_kept``:
        not when a shell's repetitions are one image (a b=0 that ``n2a dti-split`` gives
        every subset: ``--b0 mean``, or a series with one b=0 volume). The
        subsets' DWIs are tensor fits through that shared b=0, so part of their noise is
        common to both, looks like contrast to the estimate and is spread with it
        (docs/benchmarks.md, "Volume by volume").
    """

    output: np.ndarray
    denoised: list[np.ndarray]
    uncertainty: np.ndarray
    history: list[dict] = field(default_factory=list)
    compute: str = ""
    contrast_kept: float | None = None
    contrast_restored: bool = False


def volume_norms(average: np.ndarray, mask: np.ndarray) -> list[Norm]:
    """One normalization per volume of the (X, Y, Z, V) ``average``."""
    return [Norm.fit(average[..., v], mask) for v in range(average.shape[-1])]


def component_norms(dwis: np.ndarray, components: np.ndarray, mask: np.ndarray) -> list[Norm]:
    """One normalization per component of a shell's (X, Y, Z, n) average ``components``: each
    its own mean, all the same SD, the RMS of the DWIs' own (``dwis``, the same average as
    acquired), so that every component keeps the noise level a DWI has under its own
    normalization."""
    std = float(np.sqrt(np.mean([n.std ** 2 for n in volume_norms(dwis, mask)])))
    return [Norm(float(components[..., c][mask].mean()), std)
            for c in range(components.shape[-1])]


#: ``dwi_basis='auto'`` denoises a shell in its principal components when the median signal-to-
#: noise variance ratio of its components 2 to 6 (those that carry the contrast between
#: directions) is at least this. Measured on the tensor phantoms (benchmarks/dwi_components.py):
#: 22-25 with 30 DWIs, where the components win; 10.0 with 12 and 2.7-4.8 with 6, where they
#: lose in FA. 15 is the geometric middle of the nearest loss and win.
COMPONENT_SNR = 15.0


def repetitions_independent(reps: Sequence[np.ndarray], b0: np.ndarray,
                            mask: np.ndarray) -> bool:
    """Whether the repetitions are acquisitions of their own: their b=0 volumes (if any) are
    not one image, as they are in ``n2a dti-split``'s subsets with ``--b0 mean`` (tensor fits
    through one shared b=0 image, whose noise the directions share)."""
    return not any(b0) or any(not np.array_equal(r[..., b0][mask], reps[0][..., b0][mask])
                              for r in reps[1:])


def shell_basis(choice: str, dwis: Sequence[np.ndarray], mask: np.ndarray,
                independent: bool) -> tuple[np.ndarray | None, float | None]:
    """The rotation onto the principal components that a shell's repetitions ``dwis`` (each
    X, Y, Z, n) are denoised in, or None for the DWIs as acquired, and the median
    signal-to-noise ratio of its components 2 to 6 (:func:`component_snr`). ``choice`` is
    ``DenoiseConfig.dwi_basis``; ``auto`` takes the components where the repetitions are
    ``independent`` (:func:`repetitions_independent`: only noise that is independent between
    the DWIs, of one variance, stays so in the components) and that ratio is at least
    :data:`COMPONENT_SNR` (with few DWIs the components that carry the contrast between
    directions are too noisy, and denoising them costs FA; docs/benchmarks.md, "Principal
    components of each shell")."""
    n = dwis[0].shape[-1]
    if choice == "directions" or n < 2:
        return None, None
    basis = principal_basis(np.mean(dwis, axis=0, dtype=np.float64).astype(np.float32), mask)
    snr = float(np.median(component_snr(dwis, basis, mask)[1:6]))
    if choice == "components" or (independent and snr >= COMPONENT_SNR):
        return basis, snr
    return None, snr


def volume_pairs(method: str, reps: Sequence[np.ndarray], current: np.ndarray,
                 norms: Sequence[Norm], reference: np.ndarray | None = None):
    """Normalized inputs (1, X, Y, Z) and residual targets, for every (volume, repetition);
    the targets of ``method`` (:func:`noise2average.nn.strategies.image_targets`) volume by
    volume."""
    from .nn.strategies import image_targets

    inputs, targets = [], []
    for v, norm in enumerate(norms):
        vols = [r[..., v] for r in reps]
        ref = reference[..., v] if reference is not None else None
        for vol, t in zip(vols, image_targets(method, vols, current[..., v], ref)):
            z = norm.forward(vol)
            inputs.append(z[None])
            targets.append((norm.forward(t) - z)[None])
    return inputs, targets


def apply_by_volume(model, series: np.ndarray, norms: Sequence[Norm], mask: np.ndarray,
                    policy, block: int, flips, tick=None) -> np.ndarray:
    """Each volume of ``series`` (X, Y, Z, V) through the network on its own (the input kept
    outside the mask); ``tick`` is called after each volume."""
    from .nn.engine import denoise_volume

    out = np.empty_like(series, dtype=np.float32)
    for v, norm in enumerate(norms):
        z = norm.forward(series[..., v])[None]
        d = denoise_volume(model, z, mask, policy, model.config.receptive_radius, block, flips)
        out[..., v] = np.where(mask, norm.inverse(d[0]), series[..., v])
        if tick is not None:
            tick()
    return out


def initial_volume_model(config, init_model=None):
    """The single-channel 3D network every run starts from (``config.init``: the shipped T1w
    U-Net by default)."""
    from .pipeline import initial_model

    model = initial_model(config, init_model)
    if model.config.in_channels != 1 or model.config.out_channels != 1:
        raise InputError(f"--dwi-mode volumes needs a single-channel 3D network; {config.init} "
                         f"takes {model.config.in_channels} channels")
    return model


def series_uncertainty(denoised: Sequence[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """:func:`noise2average.arrays.agreement.uncertainty_map` of every volume."""
    from .arrays.agreement import uncertainty_map

    out = np.zeros(denoised[0].shape, np.float32)
    for v in range(out.shape[-1]):
        out[..., v] = uncertainty_map([d[..., v] for d in denoised], mask)
    return out


def flip_axes(config, train: bool) -> tuple[tuple[int, ...], int | tuple[int, ...] | None]:
    """The flips of fine-tuning (``train_flips``) and of inference: the left-right axis, or
    all three axes where the network learnt them (pre-trained, or ``train_flips='all'``) and
    ``output_flips='all'``."""
    if not config.flip:
        return (), None
    every = config.train_flips == "all"
    train_axes = (0, 1, 2) if every else (config.lr_axis,)
    learnt_all = every or not train
    return train_axes, (0, 1, 2) if learnt_all and config.output_flips == "all" else config.lr_axis


def _bar(progress, total: int, desc: str):
    """A progress bar and its one-step tick, or (None, None)."""
    if progress is None:
        return None, None
    bar = progress(total, desc)
    return bar, lambda: bar.update(1)


@dataclass
class _Shell:
    """The fixed inputs of one shell's run: its repetitions, average, normalizations,
    (supervised) reference and its name in progress bars and the history."""

    reps: list[np.ndarray]
    average: np.ndarray
    norms: list[Norm]
    reference: np.ndarray | None
    label: str
    #: with ``dwi_basis='components'``, the (n, n) rotation from the DWIs to the components
    #: that ``reps``, ``average`` and ``reference`` hold
    basis: np.ndarray | None = None

    def to_dwis(self, series: np.ndarray) -> np.ndarray:
        """``series`` of this shell (X, Y, Z, n) back in the DWIs as acquired."""
        return series if self.basis is None else from_components(series, self.basis)


def _shell(reps: Sequence[np.ndarray], average: np.ndarray, reference: np.ndarray | None,
           idx: np.ndarray, mask: np.ndarray, basis: np.ndarray | None, label: str) -> _Shell:
    """The volumes ``idx`` of the series as one shell's inputs; with a ``basis``, rotated
    onto those principal components (:mod:`noise2average.arrays.components`)."""
    dwis = average[..., idx]
    ref = reference[..., idx] if reference is not None else None
    if basis is None:
        return _Shell([r[..., idx] for r in reps], dwis, volume_norms(dwis, mask), ref, label)
    shell_average = to_components(dwis, basis)
    return _Shell([to_components(r[..., idx], basis) for r in reps], shell_average,
                  component_norms(dwis, shell_average, mask),
                  to_components(ref, basis) if ref is not None else None, label, basis)


def _tuning_inputs(shell: _Shell, estimate: np.ndarray, mask: np.ndarray,
                   coils: int) -> tuple[list, dict]:
    """Per volume of the shell, what :func:`~noise2average.output_tuning.tune_on_average`
    needs: the normalized average, its noise probe (the repetitions' signed difference, the
    contrast they do not share removed), the noise floor's bias at one repetition's noise SD
    for the signal ``estimate`` (the mean of the denoised repetitions) and the local noise
    SD. The probe and the bias are made per DWI as acquired (where the noise is Rician, or
    non-central chi for ``coils`` channels) and rotated with the shell's components, if it
    has them. ``coils`` 0 reads the channel count off the air around the head in the
    shell's first DWI (:func:`~noise2average.arrays.coils.background_coils`). Returns the
    inputs and the record's entries (the count used, and the air voxels it was read on)."""
    from .arrays.coils import background_coils
    from .arrays.noise import difference_probe, local_sd, remove_anatomy, rician_bias
    from .output_tuning import SureInputs

    n = len(shell.reps)
    reps = [shell.to_dwis(r) for r in shell.reps]
    average, estimate = shell.to_dwis(shell.average), shell.to_dwis(estimate)
    probes, biases, sds = [], [], []
    record: dict = {"noise_coils": coils}
    for v in range(average.shape[-1]):
        probe = remove_anatomy(difference_probe([r[..., v] for r in reps]), average[..., v])
        if not record["noise_coils"]:  # one count for the scanner's coil: read it once
            record["noise_coils"], record["noise_coils_air_voxels"] = background_coils(
                average[..., v], probe, mask, reps[0][..., v])
        sds.append(local_sd(probe))
        probes.append(probe)
        biases.append(np.where(mask, rician_bias(estimate[..., v], sds[-1] * np.sqrt(n),
                                                 record["noise_coils"]), 0))
    probes, biases = np.stack(probes, -1), np.stack(biases, -1).astype(np.float32)
    if shell.basis is not None:
        probes, biases = to_components(probes, shell.basis), to_components(biases, shell.basis)
        sds = [local_sd(probes[..., c]) for c in range(probes.shape[-1])]
    data = []
    for v, norm in enumerate(shell.norms):
        scale = np.float32(norm.std)
        data.append(SureInputs(norm.forward(shell.average[..., v])[None],
                               (probes[..., v] / scale)[None],
                               (biases[..., v] / scale).astype(np.float32)[None], sds[v]))
    return data, record


def _tune_on_average(model, shell: _Shell, data: list, mask: np.ndarray, config, policy,
                     progress) -> dict:
    """Tune ``model`` on the shell's average by ``config.tuning_objective``, patches drawn
    from all its volumes (:mod:`noise2average.output_tuning`; no held-out slab: the budget
    is fixed). Returns the record's entries."""
    from .output_tuning import TuningSettings, tune_on_average

    steps = config.tuning_steps(policy.hardware)
    settings = TuningSettings(steps, config.tuning_lr, config.patch_size,
                              config.batch_size, config.seed, steps,
                              model.config.receptive_radius, config.block_size,
                              objective=config.tuning_objective,
                              alpha=config.output_tuning_alpha,
                              schedule=config.tuning_schedule)
    bar, tick = _bar(progress, steps, f"tune {shell.label} on the average")
    record = tune_on_average(model, data, mask, None, policy, settings,
                             progress=(lambda n, loss: tick()) if tick else None)
    if bar:
        bar.close()
    return record


def _iterate(model, base_state: dict, shell: _Shell, mask: np.ndarray, config, policy,
             progress, train: bool) -> tuple[np.ndarray, list[np.ndarray], list[dict]]:
    """The Noise2Average iterations (or one pass of another strategy) on one shell's volumes:
    the mean of the denoised repetitions, the denoised repetitions and one record per
    iteration. Without ``train`` the initial network makes one pass (as
    ``method='pretrained'``)."""
    from .nn.engine import fit
    from .nn.patches import PatchSampler

    train_axes, flips = flip_axes(config, train)
    # with the output from the average, the repetitions' passes only form targets: no flips
    rep_flips = None if config.from_average else flips
    n_iter = config.iterations if config.strategy == "n2a" and train else 1
    current, denoised, history = shell.average, list(shell.reps), []
    for it in range(1, n_iter + 1):
        rec: dict = {"iteration": it}
        if train:
            if it > 1 and config.restart:
                model.load_state_dict(base_state)
            method = ("n2n" if it == 1 and config.first_target == "others"
                      and config.strategy == "n2a" else config.strategy)
            inputs, targets = volume_pairs(method, shell.reps, current, shell.norms,
                                           shell.reference)
            sampler = PatchSampler(inputs, targets, mask, config.patch_size, config.batch_size,
                                   flip_axes=train_axes)
            bar, tick = _bar(progress, config.steps, f"train {shell.label} {it}/{n_iter}")
            state = fit(model, sampler, config.steps, config.lr, policy,
                        seed=config.seed + it, schedule=config.schedule, freeze_bn=True,
                        progress=(lambda n, loss: tick()) if tick else None)
            if bar:
                bar.close()
            rec |= {"train_seconds": round(state.seconds, 2),
                    "loss_first": state.losses[0], "loss_last": state.losses[-1]}
        t0 = time.perf_counter()
        bar, tick = _bar(progress, len(shell.reps) * len(shell.norms),
                         f"denoise {shell.label} {it}/{n_iter}")
        denoised = [apply_by_volume(model, r, shell.norms, mask, policy, config.block_size,
                                    rep_flips, tick) for r in shell.reps]
        if bar:
            bar.close()
        current = np.mean(denoised, axis=0, dtype=np.float64).astype(np.float32)
        rec["infer_seconds"] = round(time.perf_counter() - t0, 2)
        history.append(rec)
    return current, denoised, history


@dataclass
class _Output:
    """The output pass of one shell: its output and, for a tuned network, the probe (in the
    series' units) and the network's output on the average plus ``alpha`` times it."""

    output: np.ndarray
    probe: np.ndarray | None = None
    probed: np.ndarray | None = None


def _output_pass(model, shell: _Shell, estimate: np.ndarray, mask: np.ndarray, config,
                 policy, progress, train: bool, tune: bool, record: dict) -> _Output:
    """The network on the shell's average; with ``tune`` tuned on that average first
    (``record`` takes its entries), then all 8 flips (the tuning's patches flip along every
    axis), and one more pass without flips on a recorrupted average (average + alpha x a
    probe moved across the volume), from which the contrast the output keeps is measured
    (:func:`~noise2average.arrays.contrast.contrast_kept_by_pairs`)."""
    from .arrays.noise import probe_moved

    _, flips = flip_axes(config, train)
    if not tune:
        bar, tick = _bar(progress, len(shell.norms), f"output pass {shell.label}")
        out = apply_by_volume(model, shell.average, shell.norms, mask, policy,
                              config.block_size, flips, tick)
        if bar:
            bar.close()
        return _Output(out)
    data, noise_record = _tuning_inputs(shell, estimate, mask, config.noise_coils)
    record |= _tune_on_average(model, shell, data, mask, config, policy, progress)
    record |= noise_record
    flips = (0, 1, 2) if config.flip and config.output_flips == "all" else flips
    probe = np.stack([probe_moved(d.probe[0] * np.float32(norm.std), d.sd,
                                  mask.shape[0] // 2, 0)
                      for d, norm in zip(data, shell.norms)], axis=-1)
    bar, tick = _bar(progress, 2 * len(shell.norms), f"output pass {shell.label}")
    out = apply_by_volume(model, shell.average, shell.norms, mask, policy, config.block_size,
                          flips, tick)
    probed = apply_by_volume(model, shell.average + config.output_tuning_alpha * probe,
                             shell.norms, mask, policy, config.block_size, None, tick)
    if bar:
        bar.close()
    return _Output(out, probe, probed)


def _output_contrast_kept(average: np.ndarray, output: np.ndarray,
                          tuned: list[tuple[np.ndarray, _Output]], b0: np.ndarray,
                          mask: np.ndarray, alpha: float) -> float | None:
    """The directional contrast that the output of tuned networks keeps, from recorrupted
    pairs: the tuned networks' pass on average + alpha p against the witness
    average - p / alpha, whose noise is independent of that input's (the shells that were not
    tuned enter with p = 0 and their output)."""
    from .arrays.contrast import contrast_kept_by_pairs

    probe = np.zeros_like(average)
    probed = output.copy()
    for idx, out in tuned:
        probe[..., idx] = out.probe
        probed[..., idx] = out.probed
    return contrast_kept_by_pairs([(probed, average + alpha * probe, average - probe / alpha)],
                                  b0, mask)


def denoise_by_volume(reps: Sequence[np.ndarray], mask: np.ndarray, shells: np.ndarray,
                      config, *, reference: np.ndarray | None = None, init_model=None,
                      progress=None) -> VolumeRun:
    """Denoise N >= 2 co-registered (X, Y, Z, V) repetitions volume by volume (module text).

    Parameters
    ----------
    reps
        The repetitions, on one grid, volumes in the series order.
    mask
        3D mask: training patches are centred in it and the loss is restricted to it.
    shells
        (V,) int: the shell of each volume, -1 for b=0
        (:attr:`noise2average.arrays.gradients.GradientTable.shell_index`). Each shell, and
        the b=0 volumes, is fine-tuned from the initial network on its own: the shells differ
        in contrast and noise level, and a network shared with 30 DWIs denoises the few b=0
        volumes, on which every tensor metric depends, worse than one of their own. A shell
        whose repetitions are one and the same image (the b=0 volume that ``n2a dti-split
        --b0 mean`` gives every subset) has no noise to learn from and gets the initial
        network's pass.
    config
        :class:`~noise2average.config.DenoiseConfig`: ``method`` (``n2a``/``n2a-aligned``,
        ``n2n``, ``supervised``, ``pretrained``), ``iterations``, ``steps``, ``lr``,
        ``patch_size``, ``batch_size``, ``restart``, ``flip``, ``train_flips``,
        ``output_flips``, ``lr_axis``, ``block_size``, ``output_from``, ``first_target``,
        ``init``, ``dwi_basis``, ``output_tuning`` and its settings, the runtime fields and
        ``seed``;
        the iterations and the tuning are not scored on a
        held-out slab (all ``iterations`` run). The repetitions are not registered (a DWI
        series is corrected for motion and distortion before, with the user's tools).
    reference
        Clean (X, Y, Z, V) series, only for ``method='supervised'``.
    init_model
        A single-channel network to start from instead of ``config.init``.
    progress
        Factory of progress bars ``progress(total, description)``.
    """
    from .nn.device import resolve_policy

    if config.contrast_weight > 0:
        raise InputError("contrast_weight is for diffusion groups (--dwi-mode groups)")
    policy = resolve_policy(config.device, config.precision, config.threads)
    base = initial_volume_model(config, init_model)
    base_state = copy.deepcopy(base.state_dict())
    model = policy.prepare(base)
    reps = [np.asarray(r, np.float32) for r in reps]
    average = np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
    shells = np.asarray(shells, int)
    output = np.empty_like(average)
    denoised = [np.empty_like(r) for r in reps]
    history, tuned, independent = [], [], True
    independent_reps = repetitions_independent(reps, shells < 0, mask)
    for k in np.unique(shells):
        idx = np.flatnonzero(shells == k)
        model.load_state_dict(base_state)
        label = "b0" if k < 0 else f"shell {k + 1}"
        basis, snr = (None, None) if k < 0 else shell_basis(
            config.dwi_basis, [r[..., idx] for r in reps], mask, independent_reps)
        shell = _shell(reps, average, reference, idx, mask, basis, label)
        # repetitions that are one image (a b=0 shared by n2a dti-split's subsets) hold no
        # noise to learn from: the initial network denoises them as it is
        differ = any(not np.array_equal(r[mask], shell.reps[0][mask]) for r in shell.reps[1:])
        independent &= differ
        train = differ and config.strategy != "pretrained"
        mean_k, den_k, hist = _iterate(model, base_state, shell, mask, config, policy, progress,
                                       train)
        output[..., idx] = shell.to_dwis(mean_k)
        if config.from_average:
            out_k = _output_pass(model, shell, mean_k, mask, config, policy, progress, train,
                                 differ and config.wants_tuning, hist[-1])
            output[..., idx] = shell.to_dwis(out_k.output)
            if out_k.probe is not None:
                tuned.append((idx, _Output(output[..., idx], shell.to_dwis(out_k.probe),
                                           shell.to_dwis(out_k.probed))))
        for d, dk in zip(denoised, den_k):
            d[..., idx] = shell.to_dwis(dk)
        history.append({"shell": label, "volumes": idx.tolist(), "fine_tuned": train,
                        "basis": "directions" if basis is None else "components",
                        "component_snr": None if snr is None else round(snr, 2),
                        "iterations": hist})
    b0 = shells < 0
    if tuned:
        kept = _output_contrast_kept(average, output, tuned, b0, mask,
                                     config.output_tuning_alpha)
    else:
        kept = contrast_kept(denoised, reps, b0, mask)
    restored = kept is not None and independent
    if restored:
        output = restore_contrast(output, b0, mask, kept)
    return VolumeRun(output, denoised, series_uncertainty(denoised, mask), history,
                     policy.describe(), kept, restored)
