"""Diffusion tensors on arrays: fit (DIPY), metrics, synthesis, the DTI subset split, scores.

Units: b in s/mm^2, diffusivities in mm^2/s. Directions are unit vectors in the voxel frame.
Tensor fields are stored as eigenvalues ``evals`` (X, Y, Z, 3), sorted descending, and
eigenvectors ``evecs`` (X, Y, Z, 3, 3) whose COLUMNS are the eigenvectors (DIPY's convention:
``evecs[..., :, 0]`` is the principal direction V1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .gradients import validate_gradients

FIT_METHODS = ("WLS", "OLS", "NLLS")
DTI_B = 1000.0  # s/mm^2: the b-value a DTI split prefers when the series has several shells


# ---------------------------------------------------------------- directions and conditioning

def design_matrix(bvecs: np.ndarray) -> np.ndarray:
    """Rows ``[gx^2, gy^2, gz^2, 2 gx gy, 2 gx gz, 2 gy gz]``: g^T D g = row . (Dxx, Dyy, Dzz,
    Dxy, Dxz, Dyz). Its condition number measures how well the directions determine a tensor
    (the b-value scales all rows alike and leaves it unchanged)."""
    g = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3)
    x, y, z = g[:, 0], g[:, 1], g[:, 2]
    return np.stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z], axis=1)


def condition_number(bvecs: np.ndarray) -> float:
    """2-norm condition number of :func:`design_matrix` (inf when the directions cannot
    determine a tensor, e.g. fewer than 6 or coplanar)."""
    s = np.linalg.svd(design_matrix(bvecs), compute_uv=False)
    if s.size < 6 or s[-1] <= 1e-12 * s[0]:
        return float("inf")
    return float(s[0] / s[-1])


def electrostatic_directions(n: int, iterations: int = 500) -> np.ndarray:
    """``n`` well-spread unit directions, deterministic: antipodally symmetric electrostatic
    repulsion (Jones et al. 1999) by projected gradient descent on the energy
    sum_{i<j} 1/|x_i - x_j| + 1/|x_i + x_j|, started from a golden-angle spiral on the upper
    hemisphere. Returned with z >= 0, in the spiral's order."""
    return _electrostatic(int(n), int(iterations)).copy()


@functools.lru_cache(maxsize=16)
def _electrostatic(n: int, iterations: int) -> np.ndarray:
    if n < 1:
        raise ValueError("n must be >= 1")
    k = np.arange(n) + 0.5
    z = 1.0 - k / n  # upper hemisphere, equal-area spiral
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    x = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    if n == 1:
        return np.array([[0.0, 0.0, 1.0]])
    step = 0.1 / n
    energy = _energy(x)
    for _ in range(iterations):
        grad = np.zeros_like(x)
        for sign in (1.0, -1.0):
            d = x[:, None, :] - sign * x[None, :, :]
            dist = np.linalg.norm(d, axis=2)
            np.fill_diagonal(dist, np.inf)
            grad -= (d / dist[..., None] ** 3).sum(axis=1)
        grad -= (grad * x).sum(1, keepdims=True) * x  # tangent part only
        trial = x - step * grad
        trial /= np.linalg.norm(trial, axis=1, keepdims=True)
        e = _energy(trial)
        if e < energy:
            x, energy, step = trial, e, step * 1.1
        else:
            step *= 0.5
            if step < 1e-12:
                break
    return _canonical(x)


def _energy(x: np.ndarray) -> float:
    e = 0.0
    for sign in (1.0, -1.0):
        dist = np.linalg.norm(x[:, None, :] - sign * x[None, :, :], axis=2)
        iu = np.triu_indices(len(x), 1)
        e += float((1.0 / dist[iu]).sum())
    return e


def _canonical(v: np.ndarray) -> np.ndarray:
    """Flip each direction to the hemisphere z > 0 (ties broken by y, then x)."""
    v = np.array(v, dtype=np.float64)
    for i, row in enumerate(v):
        nz = np.flatnonzero(np.abs(row[::-1]) > 1e-12)
        if nz.size and row[2 - nz[0]] < 0:
            v[i] = -row
    return v


def select_subsets(bvecs: np.ndarray, n_subsets: int = 2, size: int = 6, *,
                   max_passes: int = 200) -> list[np.ndarray]:
    """Disjoint, well-conditioned subsets of directions, deterministic.

    1. Greedy growth, round robin over the subsets: each takes the unused direction that
       maximizes log det(B^T B + 1e-6 I) of its design matrix B (D-optimal growth; ties go to
       the lowest index).
    2. Steepest-descent swaps: each pass tries every exchange of a subset member with a
       direction outside that subset (unused, or a member of another subset, which then gets
       the first one in exchange) and applies the one that most lowers the objective
       (largest condition number over the subsets, then their sum); stop when none helps.

    Parameters
    ----------
    bvecs : (m, 3) unit directions (the DWIs of one shell).
    n_subsets, size : how many subsets, of how many directions (size >= 6 to fit a tensor).

    Returns
    -------
    list of ``n_subsets`` sorted integer arrays of row indices into ``bvecs``.
    """
    g = np.asarray(bvecs, dtype=np.float64).reshape(-1, 3)
    m = len(g)
    if size < 6:
        raise InputError(f"a tensor needs at least 6 directions per subset, got {size}")
    if n_subsets < 1 or n_subsets * size > m:
        raise InputError(f"{n_subsets} disjoint subsets of {size} directions need "
                         f"{n_subsets * size} diffusion directions; the series has {m}")
    rows = design_matrix(g)
    subsets: list[list[int]] = [[] for _ in range(n_subsets)]
    used = np.zeros(m, dtype=bool)
    eye = 1e-6 * np.eye(6)
    for _ in range(size):
        for s in subsets:
            best, best_val = -1, -np.inf
            for j in np.flatnonzero(~used):
                b = rows[s + [j]]
                val = np.linalg.slogdet(b.T @ b + eye)[1]
                if val > best_val + 1e-12:
                    best, best_val = int(j), val
            s.append(best)
            used[best] = True
    conds = np.array([condition_number(g[s]) for s in subsets])

    def key(c: np.ndarray) -> tuple[float, float]:
        return (float(c.max()), float(c.sum()))

    def better(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] < b[0] - 1e-9 or (a[0] <= b[0] + 1e-12 and a[1] < b[1] - 1e-9)

    owner = np.full(m, -1)
    for k, s in enumerate(subsets):
        owner[s] = k
    for _ in range(max_passes):
        best_move, best_key = None, key(conds)
        for k, s in enumerate(subsets):
            for p in range(size):
                cand = np.flatnonzero(owner != k)
                new_k = np.repeat(rows[s][None], cand.size, axis=0)
                new_k[:, p] = rows[cand]
                ck = _batch_cond(new_k)
                ct = np.zeros(cand.size)
                for t in set(owner[cand].tolist()) - {-1}:  # swaps with another subset
                    hit = np.flatnonzero(owner[cand] == t)
                    new_t = np.repeat(rows[subsets[t]][None], hit.size, axis=0)
                    pos = [subsets[t].index(int(j)) for j in cand[hit]]
                    new_t[np.arange(hit.size), pos] = rows[s[p]]
                    ct[hit] = _batch_cond(new_t)
                for i, j in enumerate(cand):
                    c = conds.copy()
                    c[k] = ck[i]
                    t = owner[j]
                    if t >= 0:
                        c[t] = ct[i]
                    kk = key(c)
                    if better(kk, best_key):
                        best_move, best_key = (k, p, int(j), int(t), c), kk
        if best_move is None:
            break
        k, p, j, t, c = best_move
        old = subsets[k][p]
        subsets[k][p] = j
        owner[j] = k
        if t >= 0:
            subsets[t] = [old if i == j else i for i in subsets[t]]
        owner[old] = t
        conds = c
    return [np.array(sorted(s), dtype=int) for s in subsets]


def _batch_cond(b: np.ndarray) -> np.ndarray:
    """Condition numbers of a stack of design matrices (inf where rank-deficient)."""
    sv = np.linalg.svd(b, compute_uv=False)
    with np.errstate(divide="ignore"):
        return np.where(sv[:, -1] > 1e-12 * sv[:, 0], sv[:, 0] / sv[:, -1], np.inf)


# ---------------------------------------------------------------- tensor fit and metrics

@dataclass
class TensorField:
    """A tensor field: ``evals`` (X, Y, Z, 3) descending, ``evecs`` (X, Y, Z, 3, 3) with the
    eigenvectors as columns, ``S0`` (X, Y, Z), and the mask it was fitted in (zeros outside)."""

    evals: np.ndarray
    evecs: np.ndarray
    S0: np.ndarray
    mask: np.ndarray

    def tensor(self) -> np.ndarray:
        """(X, Y, Z, 3, 3) symmetric tensors E diag(evals) E^T."""
        return np.einsum("...ij,...j,...kj->...ik", self.evecs, self.evals, self.evecs)


def fit_tensor(dwi4d: np.ndarray, bvals, bvecs, mask: np.ndarray | None = None,
               method: str = "WLS", *, b0_threshold: float = 50.0) -> TensorField:
    """Fit a diffusion tensor in every voxel of ``mask`` with DIPY's TensorModel.

    ``method``: "WLS" (weighted least squares of the log signal, DIPY's default), "OLS" or
    "NLLS". Signals below DIPY's minimum positive signal are clipped before the log.
    Outside the mask every output is zero.
    """
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    if dwi4d.ndim != 4:
        raise InputError(f"a DWI series must be 4D, got shape {dwi4d.shape}")
    meth = method.upper()
    if meth not in FIT_METHODS:
        raise InputError(f"unknown tensor fit method {method!r}; choose from "
                         f"{', '.join(FIT_METHODS)}")
    table = validate_gradients(bvals, bvecs, dwi4d.shape[3], b0_threshold=b0_threshold)
    if (~table.b0_mask).sum() < 6 or condition_number(table.bvecs[~table.b0_mask]) == np.inf:
        raise InputError("a tensor fit needs at least 6 non-coplanar diffusion directions")
    mask = np.ones(dwi4d.shape[:3], bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != dwi4d.shape[:3]:
        raise InputError(f"mask shape {mask.shape} does not match the DWI {dwi4d.shape[:3]}")
    gtab = gradient_table(table.bvals, bvecs=table.bvecs, b0_threshold=b0_threshold)
    model = TensorModel(gtab, fit_method=meth, return_S0_hat=True)
    fit = model.fit(np.asarray(dwi4d, dtype=np.float64), mask=mask)
    evals = np.where(mask[..., None], np.nan_to_num(fit.evals), 0.0)
    evecs = np.where(mask[..., None, None], np.nan_to_num(fit.evecs), 0.0)
    s0 = np.where(mask, np.nan_to_num(np.asarray(fit.S0_hat, dtype=np.float64)), 0.0)
    return TensorField(evals=evals.astype(np.float64), evecs=evecs.astype(np.float64),
                       S0=s0, mask=mask)


def fractional_anisotropy(evals: np.ndarray) -> np.ndarray:
    """FA = sqrt(1/2) |(l1-l2, l2-l3, l3-l1)| / |(l1, l2, l3)|, 0 where all are 0."""
    l1, l2, l3 = evals[..., 0], evals[..., 1], evals[..., 2]
    num = np.sqrt((l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2)
    den = np.sqrt(l1 * l1 + l2 * l2 + l3 * l3)
    with np.errstate(invalid="ignore", divide="ignore"):
        fa = np.where(den > 0, np.sqrt(0.5) * num / den, 0.0)
    return np.clip(fa, 0.0, 1.0)


def dti_metrics(evals, evecs: np.ndarray | None = None,
                mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """FA, MD, AD, RD (3D, float32) and V1 (4D, X x Y x Z x 3) of a tensor field.

    ``evals`` may be a :class:`TensorField` (then ``evecs`` and ``mask`` come from it).
    AD = l1, RD = (l2 + l3) / 2, MD = (l1 + l2 + l3) / 3, V1 = the eigenvector of l1.
    Zeros outside ``mask``.
    """
    if isinstance(evals, TensorField):
        evals, evecs, mask = evals.evals, evals.evecs, evals.mask if mask is None else mask
    evals = np.asarray(evals, dtype=np.float64)
    out = {"FA": fractional_anisotropy(evals), "MD": evals.mean(-1), "AD": evals[..., 0],
           "RD": 0.5 * (evals[..., 1] + evals[..., 2])}
    if evecs is not None:
        out["V1"] = np.asarray(evecs)[..., :, 0]
    if mask is not None:
        mask = np.asarray(mask, bool)
        out = {k: np.where(mask if v.ndim == 3 else mask[..., None], v, 0) for k, v in out.items()}
    return {k: v.astype(np.float32) for k, v in out.items()}


def synthesize(evals: np.ndarray, evecs: np.ndarray, S0: np.ndarray, bvals_out, bvecs_out,
               mask: np.ndarray | None = None) -> np.ndarray:
    """DWIs of a tensor field: S = S0 exp(-b g^T D g) for each (b, g); (X, Y, Z, V) float32.

    b=0 volumes (b = 0) are S0. Zeros outside ``mask`` when given.
    """
    bvals_out = np.asarray(bvals_out, dtype=np.float64).reshape(-1)
    g = np.asarray(bvecs_out, dtype=np.float64).reshape(-1, 3)
    if g.shape[0] != bvals_out.size:
        raise ValueError(f"{bvals_out.size} b-values but {g.shape[0]} directions")
    tensor = np.einsum("...ij,...j,...kj->...ik", evecs, evals, evecs)
    d6 = np.stack([tensor[..., 0, 0], tensor[..., 1, 1], tensor[..., 2, 2],
                   tensor[..., 0, 1], tensor[..., 0, 2], tensor[..., 1, 2]], axis=-1)
    rows = design_matrix(g)
    out = np.empty(S0.shape + (bvals_out.size,), dtype=np.float32)
    for v in range(bvals_out.size):  # one volume at a time: no (X, Y, Z, V, 6) temporary
        adc = d6 @ rows[v]
        out[..., v] = S0 * np.exp(-bvals_out[v] * adc)
    if mask is not None:
        out[~np.asarray(mask, bool)] = 0
    return out


# ---------------------------------------------------------------- the DTI subset split

def _pick_shell(table, needed: int, shell: float | None) -> float:
    counts = {s: int((table.shell_index == k).sum()) for k, s in enumerate(table.shells)}
    if shell is not None:
        s = min(table.shells, key=lambda x: abs(x - shell)) if table.shells else None
        if s is None or abs(s - shell) > 0.1 * max(shell, 1.0):
            raise InputError(f"no shell near b={shell:g}; the series has "
                             f"{', '.join(f'{x:g}' for x in table.shells) or 'none'}")
        candidates = [s] if counts[s] >= needed else []
    else:
        candidates = [s for s, c in counts.items() if c >= needed]
    if not candidates:
        most = max(counts.values()) if counts else 0
        raise InputError(f"dti-split needs at least {needed} diffusion directions in one shell; "
                         f"the series has {most}")
    return min(candidates, key=lambda s: (abs(s - DTI_B), s))


def dti_split(dwi4d: np.ndarray, bvals, bvecs, mask: np.ndarray | None = None, *,
              n_dirs: int = 6, n_subsets: int = 2, subset_size: int | None = None,
              shell: float | None = None, b0: str = "auto", method: str = "WLS",
              b0_threshold: float = 50.0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict]:
    """Turn one DTI series into ``n_subsets`` "repetitions" with the same gradient table.

    1. One shell is used: ``shell``, or by default the shell nearest b=1000 that holds at
       least ``n_subsets * subset_size`` directions (``n_subsets * 6`` without a size).
    2. :func:`select_subsets` picks disjoint, well-conditioned subsets of its directions,
       ``subset_size`` each, or by default as many as the shell holds shared out evenly:
       every measured direction then informs a repetition, and each subset's tensor fit is
       less noisy than one from 6 directions (docs/benchmarks.md, "All directions").
    3. Each subset, with a b=0 image, is fitted by a tensor (``method``, DIPY).
       ``b0="mean"``: every subset uses the mean of all b=0 volumes; ``b0="split"``: the b=0
       volumes are dealt round robin into disjoint groups, one per subset (independent b=0
       noise across repetitions; needs at least ``n_subsets`` b=0 volumes); ``b0="auto"``
       (default): ``split`` where the series has that many b=0 volumes, else ``mean``.
       Independent repetitions let the denoiser learn the b=0 image's noise and measure the
       contrast it keeps (docs/benchmarks.md, "All directions").
    4. Each repetition = [that b=0 image, DWIs synthesized from the subset's tensor along
       ``n_dirs`` COMMON directions]: the antipodal electrostatic-repulsion set of
       :func:`electrostatic_directions` (deterministic, so every split of every subject
       uses the same scheme; for 6 it is the optimally conditioned icosahedral set).
       The synthesized b-value is the shell's nominal b-value.

    Returns
    -------
    reps : list of (X, Y, Z, 1 + n_dirs) float32 arrays, zero outside ``mask``.
    bvals_out : (1 + n_dirs,) common b-values. bvecs_out : (1 + n_dirs, 3) common directions.
    record : the choices made (shell, subsets as volume indices, condition numbers, b=0 use).
    """
    if dwi4d.ndim != 4:
        raise InputError(f"a DWI series must be 4D, got shape {dwi4d.shape}")
    if n_dirs < 6:
        raise InputError(f"at least 6 common directions are needed, got {n_dirs}")
    if b0 not in ("auto", "mean", "split"):
        raise InputError(f"b0 must be 'auto', 'mean' or 'split', got {b0!r}")
    table = validate_gradients(bvals, bvecs, dwi4d.shape[3], b0_threshold=b0_threshold)
    if n_subsets < 2:
        raise InputError(f"a split needs at least 2 subsets, got {n_subsets}")
    b_shell = _pick_shell(table, n_subsets * (subset_size or 6), shell)
    vols = table.shell_indices(b_shell)
    if subset_size is None:
        subset_size = len(vols) // n_subsets
    picks = select_subsets(table.bvecs[vols], n_subsets, subset_size)
    b0_idx = table.b0_indices
    if b0 == "auto":
        b0 = "split" if b0_idx.size >= n_subsets else "mean"
    if b0 == "split":
        if b0_idx.size < n_subsets:
            raise InputError(f"b0 'split' needs at least {n_subsets} b=0 volumes; the series has "
                             f"{b0_idx.size}")
        b0_groups = [b0_idx[k::n_subsets] for k in range(n_subsets)]
    else:
        b0_groups = [b0_idx] * n_subsets
    common = electrostatic_directions(n_dirs)
    bvals_out = np.concatenate([[0.0], np.full(n_dirs, b_shell)])
    bvecs_out = np.concatenate([np.zeros((1, 3)), common])
    mask_arr = np.ones(dwi4d.shape[:3], bool) if mask is None else np.asarray(mask, bool)
    reps, subsets_rec = [], []
    for pick, group in zip(picks, b0_groups):
        sel = vols[pick]
        b0_img = dwi4d[..., group].mean(axis=-1)
        data = np.concatenate([b0_img[..., None], dwi4d[..., sel]], axis=-1)
        fb = np.concatenate([[0.0], table.bvals[sel]])
        fg = np.concatenate([np.zeros((1, 3)), table.bvecs[sel]])
        field = fit_tensor(data, fb, fg, mask_arr, method, b0_threshold=b0_threshold)
        dwis = synthesize(field.evals, field.evecs, field.S0, bvals_out[1:], bvecs_out[1:],
                          mask_arr)
        rep = np.concatenate([np.where(mask_arr, b0_img, 0)[..., None], dwis], axis=-1)
        reps.append(rep.astype(np.float32))
        subsets_rec.append({"volumes": sel.tolist(), "b0_volumes": group.tolist(),
                            "bvals": table.bvals[sel].tolist(),
                            "bvecs": table.bvecs[sel].round(6).tolist(),
                            "condition_number": round(condition_number(table.bvecs[sel]), 4)})
    record = {
        "rule": "disjoint subsets (greedy D-optimal growth + condition-number swaps), tensor fit "
                "per subset, DWIs synthesized along common electrostatic-repulsion directions",
        "method": method.upper(), "shell": b_shell, "subset_size": subset_size,
        "n_subsets": n_subsets, "n_dirs": n_dirs, "b0": b0, "b0_threshold": b0_threshold,
        "subsets": subsets_rec,
        "common_directions": {"rule": "antipodal electrostatic repulsion, deterministic",
                              "condition_number": round(condition_number(common), 4)},
        "unused_volumes": sorted(set(vols.tolist())
                                 - {v for s in subsets_rec for v in s["volumes"]}),
    }
    return reps, bvals_out, bvecs_out, record


# ---------------------------------------------------------------- scores

def angular_error_deg(v_pred: np.ndarray, v_ref: np.ndarray) -> np.ndarray:
    """Angle between directions in degrees, sign-invariant (0..90)."""
    a = np.asarray(v_pred, dtype=np.float64)
    b = np.asarray(v_ref, dtype=np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs((a * b).sum(-1)) / (na * nb)
    return np.rad2deg(np.arccos(np.clip(np.nan_to_num(cos), 0.0, 1.0)))


def dti_errors(pred_metrics: dict, ref_metrics: dict, wm_mask: np.ndarray,
               brain_mask: np.ndarray, fa_threshold: float = 0.2) -> dict[str, float]:
    """The DTI scores of the benchmark.

    Returns ``{M}_mae_wm`` and ``{M}_mae_brain`` (mean absolute error) for M in FA, MD, AD, RD
    (diffusivities in the metrics' units, mm^2/s), ``V1_angle_deg`` (mean sign-invariant angle
    between the principal eigenvectors in the brain where the REFERENCE FA > ``fa_threshold``),
    ``V1_angle_deg_wm`` (the same within white matter) and the voxel counts.
    """
    wm = np.asarray(wm_mask, bool) & np.asarray(brain_mask, bool)
    brain = np.asarray(brain_mask, bool)
    if not wm.any() or not brain.any():
        raise InputError("dti_errors needs non-empty white-matter and brain masks")
    out: dict[str, float] = {}
    for m in ("FA", "MD", "AD", "RD"):
        err = np.abs(np.asarray(pred_metrics[m], np.float64)
                     - np.asarray(ref_metrics[m], np.float64))
        out[f"{m}_mae_wm"] = float(err[wm].mean())
        out[f"{m}_mae_brain"] = float(err[brain].mean())
    aniso = brain & (np.asarray(ref_metrics["FA"]) > fa_threshold)
    ang = angular_error_deg(pred_metrics["V1"], ref_metrics["V1"])
    out["V1_angle_deg"] = float(ang[aniso].mean()) if aniso.any() else float("nan")
    out["V1_angle_deg_wm"] = float(ang[aniso & wm].mean()) if (aniso & wm).any() else float("nan")
    out["n_wm"], out["n_brain"] = int(wm.sum()), int(brain.sum())
    out["n_fa_above"] = int(aniso.sum())
    return out


# ---------------------------------------------------------------- how smooth a tensor field is

def neighbour_roughness(fa: np.ndarray, v1: np.ndarray, mask: np.ndarray) -> dict:
    """How much face-neighbouring voxels of ``mask`` differ: the mean absolute FA difference
    and the mean angle between their principal directions (degrees, sign-invariant), over
    the pairs along all three axes. ``pairs`` counts them."""
    fa, v1, mask = np.asarray(fa, np.float64), np.asarray(v1, np.float64), np.asarray(mask, bool)
    dfa, angles = [], []
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        both = mask[lo] & mask[hi]
        dfa.append(np.abs(fa[lo] - fa[hi])[both])
        angles.append(angular_error_deg(v1[lo][both], v1[hi][both]))
    dfa, angles = np.concatenate(dfa), np.concatenate(angles)
    return {"FA_abs_diff": float(dfa.mean()) if dfa.size else float("nan"),
            "V1_angle_deg": float(angles.mean()) if angles.size else float("nan"),
            "pairs": int(dfa.size)}


def residual_snr(dwi4d: np.ndarray, bvals, bvecs, field: TensorField,
                 mask: np.ndarray) -> float:
    """The b0 SNR of a series as its tensor fit sees it: the mean fitted S0 in ``mask`` over
    the SD of the DWIs' residuals there (the noise, where the tensor model holds; an upper
    bound on the noise elsewhere). Needs no repetition, so single real series have it too."""
    bvals = np.asarray(bvals, np.float64).reshape(-1)
    pred = synthesize(field.evals, field.evecs, field.S0, bvals, bvecs)
    mask = np.asarray(mask, bool)
    dwi = bvals > 50
    res = (np.asarray(dwi4d, np.float64)[..., dwi] - pred[..., dwi])[mask]
    return float(field.S0[mask].mean() / res.std())
