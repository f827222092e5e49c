"""Noise2Average for diffusion series, on arrays: volume by volume, or groups of k channels.

A learned method treats a series in one of two ways (``DenoiseConfig.dwi_mode``):

- ``volumes`` (the default): every volume is a 3D Noise2Average problem of its own, and one
  single-channel network, the shipped T1w U-Net, is fine-tuned on all the volumes of each
  shell, and on the b=0 volumes (:mod:`noise2average.dwi_volumes`). It keeps the contrast
  between diffusion directions better than the groups do, and its tensor metrics are the
  more accurate (docs/benchmarks.md, "Diffusion").
- ``groups`` (the paper's design): the diffusion network sees k channels at a time
  (method.md): the mean b0 and k - 1 DWIs - a *group* (k = 7: b0 + 6 directions, the fewest a
  tensor needs; k = 13: b0 + 12). A series with more directions is processed group by group,
  each group through :func:`noise2average.pipeline.denoise` with channels-last (X, Y, Z, k)
  repetitions, and the output is put back in the input's volume order:

- **Grouping.** The DWIs are ordered by shell (so a group mixes b-values only when a shell does
  not fill it), then by their position in the series, and cut into consecutive groups of k - 1.
  When the last group is short, it is filled with the first DWIs of the series; those borrowed
  channels help the network but their outputs are dropped (each DWI volume of the output comes
  from exactly one group, the one that owns it). A series needs at least k - 1 DWIs.
- **b0.** Channel 0 of every group is the mean of the repetition's b=0 volumes (the same
  image in every group: the groups share it). In the output, every b=0 volume is the mean over
  groups of the denoised channel 0, i.e. the denoised mean b0 - the per-b0 variation that
  remains in a real series (drift, motion) is noise to a tensor fit and is not kept.
- **Weights.** Every group starts from the same initial weights (the shipped diffusion model,
  or ``init``); fine-tuning is per group, as the repetitions of different groups hold
  different anatomy contrasts.

Conventional diffusion methods (:data:`noise2average.methods.DIFFUSION`) run on the whole
series of each repetition instead - MP-PCA and Patch2Self need all the volumes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .arrays.contrast import contrast_kept, directional_contrast  # noqa: F401 (API)
from .config import LEARNED_METHODS, VOLUME_ONLY_METHODS, DenoiseConfig
from .methods.registry import names
from .errors import InputError

#: diffusion presets that the T1w preset names stand for in DWI mode
PRESET_FOR_DWI = {"paper": "dti-paper", "cpu": "dti-cpu", "tiny": "dti-tiny"}


@dataclass(frozen=True)
class GroupPlan:
    """How the volumes of a series map to the channels of its groups.

    Attributes
    ----------
    n_volumes : volumes in the series.
    b0 : indices of the b=0 volumes (averaged into channel 0 of every group).
    groups : per group, the k - 1 volume indices of channels 1..k-1.
    owned : per group, which of those channels the group's output provides (False for DWIs
        borrowed to fill the last group).
    """

    n_volumes: int
    b0: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    owned: tuple[tuple[bool, ...], ...]

    @property
    def group_size(self) -> int:
        return 1 + len(self.groups[0])

    def to_dict(self) -> dict:
        return {"n_volumes": self.n_volumes, "b0": list(self.b0),
                "groups": [list(g) for g in self.groups],
                "owned": [list(o) for o in self.owned]}


def plan_groups(bvals, bvecs, group_size: int = 7, *, n_volumes: int | None = None,
                b0_threshold: float = 50.0) -> GroupPlan:
    """Split a series' DWIs into groups of ``group_size - 1`` (see the module text); the
    table is validated against ``n_volumes`` when given."""
    from .arrays.gradients import validate_gradients

    bvals = np.asarray(bvals, np.float64).reshape(-1)
    table = validate_gradients(bvals, bvecs, bvals.size if n_volumes is None else n_volumes,
                               b0_threshold=b0_threshold)
    if group_size < 2:
        raise InputError(f"group size must be >= 2 (b0 + DWIs), got {group_size}")
    g = group_size - 1
    dwis = table.dwi_indices
    if dwis.size < g:
        raise InputError(f"a group of {group_size} channels needs {g} diffusion-weighted "
                         f"volumes; the series has {dwis.size}")
    order = sorted(dwis.tolist(), key=lambda v: (int(table.shell_index[v]), v))
    groups, owned = [], []
    for start in range(0, len(order), g):
        chunk = order[start:start + g]
        own = [True] * len(chunk)
        fill = [v for v in order if v not in chunk][: g - len(chunk)]
        groups.append(tuple(chunk + fill))
        owned.append(tuple(own + [False] * len(fill)))
    return GroupPlan(int(bvals.size), tuple(int(i) for i in table.b0_indices), tuple(groups),
                     tuple(owned))


def volume_shells(bvals, bvecs, n_volumes: int, b0_threshold: float = 50.0) -> np.ndarray:
    """(V,) int: the shell of each volume of a series (-1 for b=0), after validating its
    gradient table."""
    from .arrays.gradients import validate_gradients

    bvals = np.asarray(bvals, np.float64).reshape(-1)
    table = validate_gradients(bvals, bvecs, n_volumes, b0_threshold=b0_threshold)
    return np.asarray(table.shell_index, int)


def split_groups(series: np.ndarray, plan: GroupPlan) -> list[np.ndarray]:
    """(X, Y, Z, V) series -> one (X, Y, Z, k) array per group: mean b0, then its DWIs."""
    if series.ndim != 4 or series.shape[3] != plan.n_volumes:
        raise InputError(f"series of shape {series.shape} does not match a plan for "
                         f"{plan.n_volumes} volumes")
    b0 = np.mean(series[..., list(plan.b0)], axis=3, dtype=np.float64).astype(np.float32)
    return [np.concatenate([b0[..., None], series[..., list(g)]], axis=3).astype(np.float32)
            for g in plan.groups]


def merge_groups(outputs: Sequence[np.ndarray], plan: GroupPlan) -> np.ndarray:
    """Inverse of :func:`split_groups`: the (X, Y, Z, V) series in the input's volume order.

    Every b=0 volume gets the mean of the groups' channel 0; every DWI the channel of the
    group that owns it.
    """
    if len(outputs) != len(plan.groups):
        raise ValueError(f"{len(outputs)} group outputs for {len(plan.groups)} groups")
    shape = outputs[0].shape[:3]
    out = np.zeros(shape + (plan.n_volumes,), np.float32)
    b0 = np.mean([o[..., 0] for o in outputs], axis=0, dtype=np.float64).astype(np.float32)
    out[..., list(plan.b0)] = b0[..., None]
    for o, g, own in zip(outputs, plan.groups, plan.owned):
        for c, (v, mine) in enumerate(zip(g, own), start=1):
            if mine:
                out[..., v] = o[..., c]
    return out


@dataclass
class DwiResult:
    """Output of :func:`denoise_dwi`.

    Attributes
    ----------
    output : the denoised (X, Y, Z, V) series, in the input's volume order.
    denoised : each denoised repetition (learned methods; the inputs otherwise).
    mask : the 3D mask used.
    sigma : noise SD of one repetition (all volumes, from the differences between repetitions).
    noise_map : 3D local noise SD of one repetition (root mean square over the volumes).
    uncertainty : (X, Y, Z, V) standard error of the mean of the denoised repetitions, or None.
    plan : the grouping (learned methods with ``dwi_mode='groups'``, else None); ``history``
        has one entry per group, or per shell with ``dwi_mode='volumes'``.
    contrast_kept : the directional contrast the denoised repetitions keep, relative to the
        noisy ones (:func:`contrast_kept`; learned methods only, else None).
    contrast_restored : whether the output's directional contrast was spread by
        ``1 / contrast_kept`` (:func:`noise2average.arrays.contrast.restore_contrast`).
    """

    output: np.ndarray
    denoised: list[np.ndarray]
    mask: np.ndarray
    sigma: float
    noise_map: np.ndarray
    plan: GroupPlan | None
    uncertainty: np.ndarray | None = None
    history: list[dict] = field(default_factory=list)
    config: DenoiseConfig | None = None
    compute: str = ""
    contrast_kept: float | None = None
    contrast_restored: bool = False


def validate_series(reps: Sequence[np.ndarray], mask: np.ndarray | None) -> list[np.ndarray]:
    """Check N >= 2 4D repetitions on one grid (and the mask) before any work."""
    from .pipeline import validate_inputs

    for r in reps:
        if np.ndim(r) != 4:
            raise InputError(f"a diffusion series must be 4D (X, Y, Z, volumes), got shape "
                             f"{np.shape(r)}")
    return validate_inputs(reps, mask)


def series_noise_map(reps: Sequence[np.ndarray], mask: np.ndarray,
                     radius: float = 2.0) -> np.ndarray:
    """3D local noise SD of one repetition: the unbiased spread between repetitions, averaged
    over the volumes as a variance, then smoothed in space only (as
    :func:`noise2average.arrays.noise.noise_map` does for one volume)."""
    from scipy import ndimage

    stack = np.stack(reps).astype(np.float32)
    n = stack.shape[0]
    dev2 = (((stack - stack.mean(0)) ** 2).sum(0) / (n - 1)).mean(axis=3)
    out = np.sqrt(np.maximum(ndimage.gaussian_filter(dev2, radius), 0)).astype(np.float32)
    out[~mask] = 0
    return out


def initial_dwi_model(config: DenoiseConfig, group_size: int):
    """The diffusion network every group starts from, with ``group_size`` channels."""
    from .io.weights import load_model, load_packaged
    from .nn.models import DIFFUSION_PRESETS, build_model, with_channels

    if config.init == "scratch":
        preset = PRESET_FOR_DWI.get(config.preset, config.preset)
        if preset not in DIFFUSION_PRESETS:
            raise InputError(f"preset {config.preset!r} is not a diffusion network; choose from "
                             f"{', '.join(DIFFUSION_PRESETS)} (or cpu, paper, tiny)")
        return build_model(with_channels(preset, group_size))
    model, _ = load_packaged("dwi") if config.init == "pretrained" else load_model(config.init)
    k = model.config.in_channels
    if k != group_size or model.config.out_channels != group_size:
        name = "shipped" if config.init == "pretrained" else config.init
        raise InputError(f"the diffusion model {name} takes {k} channels (b0 + {k - 1} DWIs) "
                         f"but the group size is {group_size}; use --group-size {k} or "
                         "--init scratch")
    return model


def _check_method(config: DenoiseConfig, reference, shape) -> None:
    """Refuse the 3D-only methods, and a supervised run without a matching reference."""
    if config.method in VOLUME_ONLY_METHODS:
        raise InputError(f"method {config.method!r} is for 3D images; for diffusion series use "
                         f"{', '.join(names(series=True))}")
    if config.method == "supervised":
        if reference is None:
            raise InputError("method 'supervised' needs a clean reference series")
        if reference.shape != shape:
            raise InputError(f"reference shape {reference.shape} differs from {shape}")


def _denoise_groups(reps, mask, config, plan: GroupPlan, base, reference, done, on_group,
                    progress):
    """Each group of the series through the pipeline from ``base`` (groups in ``done`` are
    not run again): the merged output, denoised repetitions, uncertainty, per-group history
    and the compute the pipeline ran on."""
    from .pipeline import denoise

    rep_groups = [split_groups(r, plan) for r in reps]
    ref_groups = split_groups(reference, plan) if reference is not None else None
    done = dict(done or {})
    outputs, per_rep, uncert, history, compute = [], [], [], [], ""
    for gi in range(len(plan.groups)):
        if gi in done:
            out_g, den_g, rec = done[gi]
        else:
            res = denoise([rg[gi] for rg in rep_groups], mask, config,
                          reference=ref_groups[gi] if ref_groups is not None else None,
                          init_model=copy.deepcopy(base), progress=progress)
            out_g, den_g = res.output, res.denoised
            compute = res.compute
            rec = {"group": gi + 1, "volumes": list(plan.groups[gi]),
                   "history": [{k: v for k, v in h.items() if k != "losses"} |
                               ({"loss_first": h["losses"][0], "loss_last": h["losses"][-1]}
                                if h.get("losses") else {}) for h in res.history]}
            if getattr(res, "uncertainty", None) is not None:
                rec["_uncertainty"] = res.uncertainty
            if on_group is not None:
                on_group(gi, out_g, den_g, rec)
        outputs.append(out_g)
        per_rep.append(den_g)
        uncert.append(rec.pop("_uncertainty", None))
        history.append(rec)
    output = merge_groups(outputs, plan)
    denoised = [merge_groups([g[k] for g in per_rep], plan) for k in range(len(reps))]
    uncertainty = merge_groups(uncert, plan) if all(u is not None for u in uncert) else None
    return output, denoised, uncertainty, history, compute


def denoise_dwi(reps: Sequence[np.ndarray], bvals, bvecs, mask: np.ndarray | None = None,
                config: DenoiseConfig | None = None, *, group_size: int = 7,
                reference: np.ndarray | None = None, init_model=None,
                done: dict[int, tuple[np.ndarray, list[np.ndarray], dict]] | None = None,
                on_group: Callable[[int, np.ndarray, list[np.ndarray], dict], None] | None = None,
                progress=None) -> DwiResult:
    """Denoise N >= 2 co-registered repetitions of one DWI series.

    Parameters
    ----------
    reps
        4D arrays (X, Y, Z, V) on one grid, volumes in the order of ``bvals``/``bvecs``.
    bvals, bvecs
        The series' gradient table (FSL conventions; shared by all repetitions).
    mask
        3D brain mask; default: a head mask of the average's mean b0.
    config
        :class:`DenoiseConfig`; its method may be a learned one (``n2a``, ``n2n``,
        ``supervised``, ``pretrained``) or one of :data:`noise2average.methods.DIFFUSION`.
        ``init='pretrained'`` is the shipped diffusion model; the presets ``cpu``, ``paper``,
        ``tiny`` name their diffusion counterparts with ``init='scratch'``.
    group_size
        Channels per group, k (7 = b0 + 6 DWIs, 13 = b0 + 12).
    reference
        Clean (X, Y, Z, V) series, only for ``method='supervised'``.
    init_model
        A MU-Net to start every group from instead of ``config.init``.
    done, on_group
        Resumption: groups already denoised (index -> (output, denoised reps, record)) are
        not run again; ``on_group`` is called after each group that is run.
    progress
        Factory of progress bars, passed to the pipeline.
    """
    from .arrays.masking import auto_mask
    from .arrays.noise import estimate_sigma

    config = config or DenoiseConfig()
    config.validate()
    if config.asks_for_tuning and (config.dwi_mode == "groups" or not config.from_average):
        raise InputError(f"output_tuning={config.output_tuning!r} tunes the network for the "
                         "output pass on the average: it needs --dwi-mode volumes and "
                         "output_from=average (n2a-aligned)")
    reps = validate_series(reps, mask)
    shells = volume_shells(bvals, bvecs, reps[0].shape[3])
    b0 = shells < 0
    by_group = config.method in LEARNED_METHODS and config.dwi_mode == "groups"
    plan = plan_groups(bvals, bvecs, group_size, n_volumes=reps[0].shape[3]) if by_group else None
    _check_method(config, reference, reps[0].shape)
    average = np.mean(reps, axis=0, dtype=np.float64).astype(np.float32)
    if mask is None:
        mask = auto_mask(np.mean(average[..., b0], axis=3))
        if not mask.any():
            raise InputError("no foreground found for an automatic mask; pass a mask")
    mask = mask.astype(bool)
    sigma = estimate_sigma(reps, mask)
    nmap = series_noise_map(reps, mask)

    if config.method not in LEARNED_METHODS:
        from .methods import DIFFUSION

        out = DIFFUSION[config.method](reps, mask, sigma, bvals=bvals)
        keep = 0 if config.outside == "zero" else average
        out = np.where(mask[..., None], out, keep).astype(np.float32)
        return DwiResult(out, list(reps), mask, sigma, nmap, plan, config=config,
                         compute="cpu")

    if not by_group:
        from .dwi_volumes import denoise_by_volume

        run = denoise_by_volume(reps, mask, shells, config, reference=reference,
                                init_model=init_model, progress=progress)
        keep = 0 if config.outside == "zero" else average
        out = np.where(mask[..., None], run.output, keep).astype(np.float32)
        return DwiResult(out, run.denoised, mask, sigma, nmap, None, run.uncertainty,
                         run.history, config, run.compute, run.contrast_kept,
                         contrast_restored=run.contrast_restored)
    base = init_model if init_model is not None else initial_dwi_model(config, group_size)
    if base.config.in_channels != group_size:
        raise InputError(f"the initial model takes {base.config.in_channels} channels, the "
                         f"group size is {group_size}")
    output, denoised, uncertainty, history, compute = _denoise_groups(
        reps, mask, config, plan, base, reference, done, on_group, progress)
    return DwiResult(output, denoised, mask, sigma, nmap, plan, uncertainty, history, config,
                     compute, contrast_kept(denoised, reps, b0, mask))
