"""The diffusion comparison: one phantom, every method, the same scores.

Phantom: :func:`noise2average.arrays.dwi_phantom.make_phantom` on the MNI152 2009a GM/WM/CSF
fractions (:func:`noise2average.io.templates.mni152_tissues`) resampled to 2 mm isotropic (a
typical DTI voxel; the shipped diffusion model was pre-trained on Colin27 at 2 and 1.5 mm and
has never seen MNI152), a centred cube of ``crop`` voxels, ``n_b0`` b=0 volumes and ``n_dirs``
directions at b = 1000 s/mm^2, Rician noise with sigma = (mean WM b0) / ``snr``.

Two cases, scored separately:

- ``apap``: two independent noise realizations of the whole series (AP and PA after the
  user's distortion correction). MP-PCA, dwidenoise and Patch2Self denoise each series and
  average them; BM4D and AONLM denoise the average volume by volume; the learned ones run
  :func:`noise2average.diffusion.denoise_dwi` (volume by volume unless a spec asks for
  ``dwi_mode=groups``: groups of b0 + 6).
- ``subset``: ONE noisy series (realization 1) split by ``dti_split`` into two repetitions of
  b0 + 6 DWIs along common directions (tensor fit of two disjoint 6-direction subsets, then
  synthesis). The learned methods and the average work on those repetitions; the conventional
  methods, which need no repetitions, denoise the whole single series (what a user would do).
  ``METHOD@subsets`` runs a conventional method on the volumes the subsets were fitted from
  (their b=0 and DWI volumes: 2 + 12 of the 32), so that every method sees the same
  measurements; it is scored on those volumes.
- A learned method may carry configuration changes, as in ``n2a benchmark``:
  ``n2a:contrast_weight=3``.

Scores, inside the brain mask: PSNR of the DWIs (b > 0 volumes of each output against their
clean counterparts: the clean series, or for the subset repetitions the clean tensor field
synthesized along the common directions; peak = the largest clean DWI value in the brain);
mean absolute errors of FA, MD, AD, RD in white matter (WM fraction > 0.5) and in the whole
brain, and the mean angle between principal eigenvectors where the reference FA > 0.2, all
from a DIPY weighted-least-squares tensor fit of each output against the phantom's ground
truth tensors (:func:`noise2average.arrays.dti.dti_errors`); and the white-matter contrast
slope (:func:`contrast_slope`), how much of the contrast between directions is kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..methods.registry import names
from .volumes import parse_spec

# the conventional series methods of methods.registry but the plain average: in the subset
# case they denoise the whole acquired series, as their users would (module text)
CONVENTIONAL = tuple(n for n in names(learned=False, series=True) if n != "average")
LEARNED = ("pretrained", "n2n", "n2a", "supervised")
DEFAULT_METHODS = ("noisy", "average") + CONVENTIONAL + ("n2n", "n2a", "supervised")


@dataclass
class DwiBenchConfig:
    case: str = "apap"
    crop: int = 64
    zoom_mm: float = 2.0
    n_dirs: int = 30
    n_b0: int = 2
    bval: float = 1000.0
    snr: float = 20.0
    seed: int = 0
    group_size: int = 7
    subsets: int = 2  # repetitions made by dti_split in the subset case
    subset_size: int = 6  # directions in each subset (6: the paper's b=0 + 6 repetitions)
    subset_b0: str = "mean"  # the subsets' b=0 images: dti_split's ``b0`` (mean or split)
    #: the white matter's tract field: "structure" (the WM map's structure tensor) or
    #: "bundles" (smooth crossing fibre families; arrays.dwi_phantom.bundle_tensors)
    phantom: str = "structure"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Case:
    """Inputs and truth of one benchmark case."""

    reps: list[np.ndarray]  # what the learned methods and the average get
    bvals: np.ndarray
    bvecs: np.ndarray
    clean: np.ndarray  # clean counterpart of ``reps`` (same volumes)
    single: np.ndarray  # the noisy single series (subset case) or rep 1 (apap)
    single_bvals: np.ndarray
    single_bvecs: np.ndarray
    single_clean: np.ndarray
    brain: np.ndarray
    wm: np.ndarray
    metrics: dict  # ground-truth FA, MD, AD, RD, V1
    affine: np.ndarray
    record: dict
    subset: bool = False


def mni_phantom(cfg: DwiBenchConfig):
    """The 2 mm MNI152 phantom of the benchmark (module text) and its grid's affine."""
    from scipy import ndimage

    from ..arrays.dwi_phantom import make_phantom
    from ..arrays.masking import centred_cube
    from ..io.templates import mni152_tissues

    tissues, brain, affine = mni152_tissues()
    f = 1.0 / cfg.zoom_mm
    small = {k: np.clip(ndimage.zoom(v, f, order=1), 0, 1).astype(np.float32)
             for k, v in tissues.items()}
    brain2 = ndimage.zoom(brain.astype(np.float32), f, order=1) > 0.5
    aff = affine @ np.diag([cfg.zoom_mm, cfg.zoom_mm, cfg.zoom_mm, 1.0])
    region = centred_cube(brain2, cfg.crop)
    ph = make_phantom(small["gm"], small["wm"], small["csf"], zooms=(cfg.zoom_mm,) * 3,
                      n_dirs=cfg.n_dirs, n_b0=cfg.n_b0, bval=cfg.bval, seed=cfg.seed,
                      brain_mask=brain2, region=region, orientation=cfg.phantom)
    offset = aff @ np.array([region[0].start, region[1].start, region[2].start, 1.0])
    aff = aff.copy()
    aff[:3, 3] = offset[:3]
    return ph, aff


def build_case(cfg: DwiBenchConfig) -> Case:
    from ..arrays.dti import dti_split, synthesize
    from ..arrays.dwi_phantom import noisy_repetitions

    ph, aff = mni_phantom(cfg)
    reps, noise = noisy_repetitions(ph, 2, snr_b0=cfg.snr, seed=cfg.seed)
    record = {"phantom": ph.record, "noise": noise, "config": cfg.to_dict()}
    if cfg.case == "apap":
        return Case(reps, ph.bvals, ph.bvecs, ph.dwi, reps[0], ph.bvals, ph.bvecs, ph.dwi,
                    ph.brain_mask, ph.wm_mask, ph.metrics, aff, record)
    if cfg.case != "subset":
        raise ValueError(f"unknown case {cfg.case!r}")
    split, bv, bc, split_rec = dti_split(reps[0], ph.bvals, ph.bvecs, ph.brain_mask,
                                         n_subsets=cfg.subsets, subset_size=cfg.subset_size,
                                         b0=cfg.subset_b0)
    clean = synthesize(ph.field.evals, ph.field.evecs, ph.field.S0.astype(np.float32), bv, bc,
                       ph.field.mask)
    record["split"] = split_rec
    return Case(split, bv, bc, clean, reps[0], ph.bvals, ph.bvecs, ph.dwi, ph.brain_mask,
                ph.wm_mask, ph.metrics, aff, record, subset=True)


_ARRAYS = ("bvals", "bvecs", "clean", "single", "single_bvals", "single_bvecs",
           "single_clean", "brain", "wm", "affine")


def save_case(path, case: Case) -> None:
    """Cache a case (arrays in one .npz, the record as JSON inside it; no pickles)."""
    import json

    from ..io.atomic import atomic_path

    arrays = {k: getattr(case, k) for k in _ARRAYS}
    arrays.update({f"rep_{k}": r for k, r in enumerate(case.reps)})
    arrays.update({f"metric_{k}": v for k, v in case.metrics.items()})
    arrays["record"] = np.array(json.dumps(case.record, default=float))
    arrays["subset"] = np.array(case.subset)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_case(path) -> Case:
    import json

    with np.load(path, allow_pickle=False) as z:
        reps = [z[f"rep_{k}"] for k in range(sum(n.startswith("rep_") for n in z.files))]
        metrics = {n[7:]: z[n] for n in z.files if n.startswith("metric_")}
        fields = {k: z[k] for k in _ARRAYS}
        return Case(reps=reps, metrics=metrics, record=json.loads(str(z["record"])),
                    subset=bool(z["subset"]), **fields)



def cached_case(cfg: DwiBenchConfig, path) -> Case:
    """The case of ``cfg``, loaded from the cache at ``path`` when it was built with the same
    configuration, else built and cached there."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            built = json.loads(str(z["record"]))["config"]
        # a cache from before a field existed has that field's default
        if {**DwiBenchConfig().to_dict(), **built} == cfg.to_dict():
            return load_case(path)
    case = build_case(cfg)
    save_case(path, case)
    return case

def add_probe_case_arguments(parser) -> None:
    """The options of the probe scripts that pick a case (:func:`probe_case_from`)."""
    parser.add_argument("--case", choices=("apap", "subset"), default="apap")
    parser.add_argument("--phantom", choices=("structure", "bundles"), default="bundles")
    parser.add_argument("--crop", type=int, default=48)
    parser.add_argument("--dirs", type=int, default=30,
                        help="diffusion directions (default 30)")
    add_subset_arguments(parser)
    parser.add_argument("--work", help="case cache folder (default runs/bench_CASE with the "
                                       "phantom, directions and subsets appended)")


def add_subset_arguments(parser) -> None:
    """How the subset case splits its series (``DwiBenchConfig.subset_size``, ``subset_b0``;
    the defaults are the paper's split)."""
    parser.add_argument("--subset-size", type=int, default=DwiBenchConfig.subset_size,
                        help="subset case: directions in each subset (default 6)")
    parser.add_argument("--subset-b0", choices=("mean", "split"),
                        default=DwiBenchConfig.subset_b0,
                        help="subset case: the subsets' b=0 images (default mean)")


def probe_case_from(args) -> Case:
    """:func:`probe_case` of the options :func:`add_probe_case_arguments` added."""
    return probe_case(args.case, args.phantom, args.crop, args.work, args.dirs,
                      args.subset_size, args.subset_b0)


def probe_case(case: str, phantom: str, crop: int, work=None, n_dirs: int = 30,
               subset_size: int = 6, subset_b0: str = "mean") -> Case:
    """A benchmark case for the probe scripts of ``benchmarks/``, cached in ``work`` (default
    :func:`default_work`)."""
    cfg = DwiBenchConfig(case=case, crop=crop, phantom=phantom, n_dirs=n_dirs,
                         subset_size=subset_size, subset_b0=subset_b0)
    folder = default_work(cfg, work)
    return cached_case(cfg, folder / "case.npz")


def default_work(cfg: DwiBenchConfig, work=None):
    """The folder of a case's cache (created): ``work``, or by default ``runs/bench_CASE``
    with ``_PHANTOM`` appended for a phantom other than ``structure``, ``_dirsN`` for other
    than 30 directions, ``_subsetN`` for subsets of other than 6 directions and ``_b0split``
    for subsets with b=0 images of their own, so that cached method outputs of one case
    never stand for another's."""
    from pathlib import Path

    suffix = ("" if cfg.phantom == "structure" else f"_{cfg.phantom}") + (
        "" if cfg.n_dirs == 30 else f"_dirs{cfg.n_dirs}") + (
        "" if cfg.case != "subset" or cfg.subset_size == 6 else f"_subset{cfg.subset_size}") + (
        "" if cfg.case != "subset" or cfg.subset_b0 == "mean" else "_b0split")
    folder = Path(work or f"runs/bench_{cfg.case}{suffix}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_method(case: Case, method: str, config, group_size: int,
               init_model=None) -> tuple[np.ndarray, str]:
    """One method's output series and the table it is in (``'reps'`` or ``'single'``)."""
    from ..diffusion import denoise_dwi
    from ..methods import DIFFUSION

    if method == "noisy":
        return case.single, "single"
    base, _, where = method.partition("@")
    if where and (where != "subsets" or base not in CONVENTIONAL or not case.subset):
        raise ValueError(f"{method!r}: '@subsets' is for a conventional method in the subset "
                         "case")
    if base in CONVENTIONAL and case.subset:  # one single series (module text)
        from dipy.denoise.noise_estimate import estimate_sigma

        vols = subset_volumes(case) if where else np.arange(case.single.shape[-1])
        series = np.ascontiguousarray(case.single[..., vols])
        # one series, no repetitions to difference: the noise SD as a user of BM4D would
        # estimate it (DIPY's local estimate, median over volumes; the others ignore it)
        sigma = float(np.median(estimate_sigma(series, N=0)))
        out = DIFFUSION[base]([series], case.brain, sigma, bvals=case.single_bvals[vols])
        return (np.where(case.brain[..., None], out, 0).astype(np.float32),
                "subsets" if where else "single")
    # a learned method may carry DenoiseConfig changes: ``n2a:contrast_weight=2``
    base, changes = parse_spec(method)
    res = denoise_dwi(case.reps, case.bvals, case.bvecs, case.brain,
                      config.replace(method=base, align="auto", **changes),
                      group_size=group_size,
                      reference=case.clean if base == "supervised" else None,
                      init_model=init_model)
    return res.output, "reps"


def subset_volumes(case: Case) -> np.ndarray:
    """Indices into the single series of the volumes the subset repetitions were fitted
    from: their b=0 volumes and their DWIs, in acquisition order."""
    split = case.record["split"]["subsets"]
    used = {v for s in split for v in s["volumes"] + s["b0_volumes"]}
    return np.array(sorted(used), dtype=int)


def score(case: Case, output: np.ndarray, table: str) -> tuple[dict, dict]:
    """Scores of one output (module text) and its DTI metrics."""
    from ..arrays.dti import dti_errors, dti_metrics, fit_tensor

    if table == "single":
        bvals, bvecs, clean = case.single_bvals, case.single_bvecs, case.single_clean
    elif table == "subsets":
        vols = subset_volumes(case)
        bvals, bvecs = case.single_bvals[vols], case.single_bvecs[vols]
        clean = case.single_clean[..., vols]
    else:
        bvals, bvecs, clean = case.bvals, case.bvecs, case.clean
    dwi = bvals > 50
    m = case.brain
    ref = clean[..., dwi][m]
    mse = float(np.mean((output[..., dwi][m] - ref) ** 2))
    psnr = 10 * np.log10(float(ref.max()) ** 2 / mse)
    fit = fit_tensor(np.clip(output, 0, None), bvals, bvecs, m)
    met = dti_metrics(fit)
    out = {"psnr_dwi": psnr, **dti_errors(met, case.metrics, case.wm, m),
           "contrast_slope_wm": contrast_slope(output, clean, bvals <= 50, case.wm & m)}
    return out, met


def contrast_slope(output: np.ndarray, clean: np.ndarray, b0: np.ndarray,
                   mask: np.ndarray) -> float:
    """How much of the clean series' contrast between directions the output keeps: the
    regression slope of its directional contrast on the truth's, through the origin (1 =
    kept; below 1, FA comes out biased low)."""
    from ..arrays.contrast import directional_contrast

    c = directional_contrast(output, b0, mask)
    t = directional_contrast(clean, b0, mask)
    return float((c * t).sum() / max((t * t).sum(), 1e-12))



def markdown_table(rows: list[dict]) -> str:
    """Scores as Markdown; diffusivities in 10^-3 mm^2/s (= um^2/ms)."""
    head = ("| method | PSNR DWI dB | FA MAE WM | FA MAE brain | MD MAE WM | MD MAE brain | "
            "AD MAE WM | RD MAE WM | V1 angle deg (FA>0.2) | contrast slope WM | time s |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['method']} | skipped: {r['error']} |" + " |" * 9)
            continue
        k = 1e3
        lines.append(
            f"| {r['method']} | {r['psnr_dwi']:.2f} | {r['FA_mae_wm']:.4f} | "
            f"{r['FA_mae_brain']:.4f} | {r['MD_mae_wm'] * k:.4f} | {r['MD_mae_brain'] * k:.4f} | "
            f"{r['AD_mae_wm'] * k:.4f} | {r['RD_mae_wm'] * k:.4f} | {r['V1_angle_deg']:.2f} | "
            f"{r['contrast_slope_wm']:.3f} | {r.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


def target_check(rows: list[dict]) -> list[str]:
    """Issue 20's targets for the default learned row (``n2a-aligned``, else ``n2a``): white-
    matter FA and MD errors below those of Noise2Noise, BM4D and AONLM (the paper's claim), at
    most MP-PCA's, and the goal beyond it, 0.8 x MP-PCA's (each row of those methods, on the
    whole series or ``@subsets``)."""
    by = {r["method"]: r for r in rows if not r.get("error")}
    name = next((m for m in ("n2a-aligned", "n2a") if m in by), None)
    if name is None:
        return ["neither n2a-aligned nor n2a was run"]
    ours, out = by[name], []
    for m, r in by.items():
        base = m.partition("@")[0].partition(":")[0]
        for key, label, scale in (("FA_mae_wm", "WM FA MAE", 1.0), ("MD_mae_wm", "WM MD MAE", 1e3)):
            mine, theirs = ours[key] * scale, r[key] * scale
            if base in ("n2n", "bm4d", "aonlm") and m != name:
                out.append(f"{label} {mine:.4f} below {m}'s {theirs:.4f}: "
                           f"{'met' if mine < theirs else 'NOT met'}")
            elif base == "mppca":
                out.append(f"{label} {mine:.4f} at most {m}'s {theirs:.4f}: "
                           f"{'met' if mine <= theirs else 'NOT met'}; 0.8 x: "
                           f"{'met' if mine <= 0.8 * theirs else 'NOT met'}")
    return out


def fa_figure(path, maps: dict[str, np.ndarray], reference: np.ndarray, mask: np.ndarray) -> None:
    """Axial mid-slice FA maps (top) and |FA - reference| (bottom) of every output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io.atomic import atomic_path

    z = int(np.argwhere(mask)[:, 2].mean())
    names = ["reference"] + list(maps)
    fig, axes = plt.subplots(2, len(names), figsize=(1.9 * len(names), 4.2), squeeze=False)
    for j, name in enumerate(names):
        fa = reference if name == "reference" else maps[name]
        sl = np.where(mask, fa, 0)[:, :, z].T
        axes[0, j].imshow(sl, cmap="gray", vmin=0, vmax=1, origin="lower")
        axes[0, j].set_title(name, fontsize=8)
        err = np.abs(np.where(mask, fa - reference, 0))[:, :, z].T
        axes[1, j].imshow(err, cmap="magma", vmin=0, vmax=0.3, origin="lower")
        for a in axes[:, j]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_ylabel("FA", fontsize=8)
    axes[1, 0].set_ylabel("|FA error| (0-0.3)", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
