"""A ground-truth diffusion phantom built from any GM/WM/CSF fraction maps.

Tissue model (b in s/mm^2, diffusivities in mm^2/s):

- White matter: a cylindrically symmetric tensor, axial diffusivity ``wm_ad`` (1.7e-3) along
  the local tract direction, radial diffusivity from ``wm_rd`` = (0.3e-3, 0.5e-3): the low
  value where the WM map is tube-like (a well-defined tract), the high one where it is not
  (sheets, wide WM: crossing fibres in reality). FA 0.65-0.78 in pure WM.
- Tract direction (the documented rule): the structure tensor J of the WM map, the outer
  product of its Gaussian gradient (``grad_sigma_mm``) integrated at two scales
  (``integration_sigma_mm``, the fine scale dominates near WM borders, the coarse one defines
  a direction deep inside wide WM). Its eigenvector of the SMALLEST eigenvalue is the direction
  along which the WM map changes least: along the tract. Tube-likeness is
  c = (mu2 - mu3) / (mu1 + eps) with mu1 >= mu2 >= mu3 the eigenvalues of J.
- Grey matter: nearly isotropic, (``gm_ad``, ``gm_rd``) = (0.9e-3, 0.75e-3), FA about 0.1,
  its principal axis radial to the cortex (the LARGEST eigenvector of the GM map's structure
  tensor, i.e. across the ribbon), as cortical diffusion is mostly radial.
- CSF: isotropic free water, 3.0e-3.
- Partial volume: S0 = sum_t f_t S0_t; the voxel's tensor is the S0-weighted mean of the tissue
  tensors, D = sum_t (f_t S0_t / S0) D_t (the first cumulant of the multi-compartment signal).
  The clean DWIs are S0 exp(-b g^T D g) EXACTLY, so a tensor fit of the clean series returns
  the ground truth and the reference DTI metrics are unambiguous.
- S0 (the b=0 image, T2-weighted at a DTI echo time): WM 1, GM 1.35, CSF 3.5 (CSF bright),
  times ``s0_scale``, times a smooth receive-bias field of +/- ``bias``.
- Diffusivities of WM and GM vary smoothly by +/- ``variation`` (a seeded random field), so the
  phantom is not piecewise constant.
- Scheme: ``n_b0`` b=0 volumes interleaved evenly (the first volume is one) among ``n_dirs``
  directions at b = ``bval`` from deterministic antipodal electrostatic repulsion.

``orientation="bundles"`` keeps the tissue maps, S0 and GM/CSF tensors but replaces the white
matter's tract field by three smooth fibre families (:func:`bundle_tensors`): commissural arcs
(left-right over the midline), association fibres (anterior-posterior, gently bending) and
projection fibres (fanning upwards from below the brain). Each voxel's WM tensor is the mean
of the families' cylinders weighted by smooth random memberships: one family dominates most of
the white matter, and where two meet they cross (lower FA, a blended direction). Its
neighbouring white-matter voxels differ far less in direction than in the structure-tensor
field: the phantom of a brain whose bundles are coherent at the voxel scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .dti import TensorField, design_matrix, dti_metrics, electrostatic_directions, synthesize
from .noise import rician

DEFAULT_S0 = {"wm": 1.0, "gm": 1.35, "csf": 3.5}


@dataclass
class Phantom:
    """A clean DWI series with its ground truth.

    ``dwi`` (X, Y, Z, V) float32 clean signal; ``bvals`` (V,), ``bvecs`` (V, 3);
    ``S0`` (X, Y, Z); ``tissues`` the fractions used; ``brain_mask``, ``wm_mask``,
    ``csf_mask`` bool; ``field`` the ground-truth tensor field; ``metrics`` its FA, MD, AD, RD
    and V1; ``zooms`` voxel size (mm); ``record`` every parameter.
    """

    dwi: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    S0: np.ndarray
    tissues: dict[str, np.ndarray]
    brain_mask: np.ndarray
    wm_mask: np.ndarray
    csf_mask: np.ndarray
    field: TensorField
    metrics: dict[str, np.ndarray]
    zooms: tuple[float, float, float]
    record: dict = field(default_factory=dict)

    @property
    def wm_signal(self) -> float:
        """Mean b=0 signal in the white-matter mask (the SNR reference)."""
        return float(self.S0[self.wm_mask].mean())


def gradient_scheme(n_dirs: int = 32, n_b0: int = 2, bval: float = 1000.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """b-values and directions: ``n_b0`` b=0 volumes at evenly spaced positions (the first
    at index 0) among ``n_dirs`` electrostatic-repulsion directions at ``bval``."""
    if n_dirs < 6 or n_b0 < 1:
        raise InputError(f"a DTI scheme needs >= 6 directions and >= 1 b=0, got {n_dirs}, {n_b0}")
    n = n_dirs + n_b0
    b0_pos = {int(round(i * n / n_b0)) for i in range(n_b0)}
    dirs = iter(electrostatic_directions(n_dirs))
    bvals, bvecs = np.zeros(n), np.zeros((n, 3))
    for v in range(n):
        if v not in b0_pos:
            bvals[v], bvecs[v] = bval, next(dirs)
    return bvals, bvecs


def smooth_box_field(shape: tuple[int, ...], box: tuple[slice, ...], rng: np.random.Generator,
                 amplitude: float, max_freq: int = 2) -> np.ndarray:
    """A smooth random field 1 + amplitude * u(x), |u| <= 1, evaluated on ``box`` of a volume of
    ``shape``: a sum of cosines with 0..``max_freq`` periods across the volume per axis and
    random amplitudes and phases (seeded by ``rng``). Any box gets the values of the whole
    field there, so a crop of the phantom equals the same part of the whole phantom."""
    freqs = [f for f in np.ndindex(*(max_freq + 1,) * 3) if any(f)]
    amps = rng.standard_normal(len(freqs)) / (1.0 + np.linalg.norm(freqs, axis=1))
    phases = rng.uniform(0, 2 * np.pi, len(freqs))
    if amplitude <= 0:
        return np.ones(tuple(b.stop - b.start for b in box))
    grid = np.meshgrid(*[np.arange(b.start, b.stop) / n for b, n in zip(box, shape)],
                       indexing="ij", sparse=True)
    u = sum(a * np.cos(2 * np.pi * (f[0] * grid[0] + f[1] * grid[1] + f[2] * grid[2]) + ph)
            for a, f, ph in zip(amps, freqs, phases))
    return 1.0 + amplitude * u / np.abs(amps).sum()


def structure_tensor(prob: np.ndarray, zooms, grad_sigma_mm: float = 1.0,
                     integration_sigma_mm: tuple[float, ...] = (3.0, 8.0)) -> np.ndarray:
    """(X, Y, Z, 3, 3) structure tensor of a map in mm units: the outer product of its
    Gaussian-derivative gradient, smoothed at each integration scale and summed."""
    zooms = np.asarray(zooms, dtype=np.float64)
    prob = prob.astype(np.float32)
    grads = []
    for ax in range(3):
        order = [0, 0, 0]
        order[ax] = 1
        grads.append(ndimage.gaussian_filter(prob, grad_sigma_mm / zooms, order=order)
                     / zooms[ax])
    j = np.zeros(prob.shape + (3, 3), dtype=np.float32)
    for a in range(3):
        for b in range(a, 3):
            prod = grads[a] * grads[b]
            comp = sum(ndimage.gaussian_filter(prod, s / zooms) for s in integration_sigma_mm)
            j[..., a, b] = comp
            j[..., b, a] = comp
    return j


def _eig(j: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and column eigenvectors of J where ``where``, zeros elsewhere."""
    vals = np.zeros(j.shape[:-1], dtype=np.float64)
    vecs = np.zeros(j.shape, dtype=np.float64)
    w, v = np.linalg.eigh(j[where].astype(np.float64))
    vals[where] = w[:, ::-1]
    vecs[where] = v[:, :, ::-1]
    return vals, vecs


def _cylinder(axis: np.ndarray, ad: np.ndarray, rd: np.ndarray) -> np.ndarray:
    """Tensors ad * a a^T + rd * (I - a a^T), (..., 3, 3)."""
    outer = axis[..., :, None] * axis[..., None, :]
    eye = np.eye(3)
    return ad[..., None, None] * outer + rd[..., None, None] * (eye - outer)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def bundle_directions(shape: tuple[int, ...], box: tuple[slice, ...], zooms
                      ) -> list[np.ndarray]:
    """Unit directions (box shape + (3,)) of the three fibre families of ``box`` in a volume
    of ``shape`` whose centre is the brain's (axes: left-right, posterior-anterior,
    inferior-superior, mm from the centre):

    - commissural: circles about the anterior-posterior axis 40 mm below the centre, so
      left-right over the midline and turning down towards the sides;
    - association: anterior-posterior, bending by up to 15 degrees with height and side;
    - projection: radial from a point 120 mm below the centre, so superior-inferior and
      fanning out towards the cortex.
    """
    zooms = np.asarray(zooms, dtype=np.float64)
    centre = (np.asarray(shape) - 1) / 2.0
    axes = [(np.arange(b.start, b.stop) - c) * z for b, c, z in zip(box, centre, zooms)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    zero = np.zeros_like(x)
    # tangent of circles about the line x = 0, z = -40 along y: (h, 0, -x) with h = z + 40
    commissural = _unit(np.stack([z + 40.0, zero, -x], axis=-1))
    bend = np.tan(np.radians(15.0))
    association = _unit(np.stack([bend * np.sin(2 * np.pi * z / 120.0), np.ones_like(x),
                                  bend * np.sin(2 * np.pi * x / 100.0)], axis=-1))
    projection = _unit(np.stack([x, y, z + 120.0], axis=-1))
    return [commissural, association, projection]


def bundle_tensors(shape: tuple[int, ...], box: tuple[slice, ...], zooms,
                   rng: np.random.Generator, ad: np.ndarray, rd: np.ndarray,
                   sharpness: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """White-matter tensors of the bundle phantom (module docstring) on ``box``, and the
    largest membership (1 where one family is alone, 1/3 where all three mix).

    The memberships are a softmax of three smooth random fields (``smooth_box_field``, up to
    2 periods across the volume) times ``sharpness``: the larger, the narrower the crossings.
    ``ad`` and ``rd`` (box shape) are each family's axial and radial diffusivities.
    """
    fields = np.stack([smooth_box_field(shape, box, rng, 1.0) for _ in range(3)], axis=-1)
    weights = np.exp(sharpness * (fields - fields.max(axis=-1, keepdims=True)))
    weights /= weights.sum(axis=-1, keepdims=True)
    tensor = np.zeros(tuple(b.stop - b.start for b in box) + (3, 3))
    for k, axis in enumerate(bundle_directions(shape, box, zooms)):
        tensor += weights[..., k, None, None] * _cylinder(axis, ad, rd)
    return tensor, weights.max(axis=-1)


def _structure_wm_tensors(jw: np.ndarray, where: np.ndarray, ad: np.ndarray,
                          rd: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """White-matter cylinders along the smallest eigenvector of the WM map's structure tensor
    ``jw`` (along the tract), with the radial diffusivity going from ``rd[1]`` to ``rd[0]``
    as the map gets tube-like (module docstring)."""
    mu, vw = _eig(jw, where)
    eps = 1e-3 * max(float(mu[..., 0].max()), 1e-12)
    tube = np.clip((mu[..., 1] - mu[..., 2]) / (mu[..., 0] + eps), 0, 1)
    return _cylinder(vw[..., :, 2], ad, rd[1] - (rd[1] - rd[0]) * tube)


def _mix_tissues(fractions: dict, s0: dict, tensors: dict) -> tuple[np.ndarray, np.ndarray]:
    """The voxel tensor, the S0-weighted mean of the tissue tensors, and the relative S0
    (module docstring: partial volume)."""
    parts = {k: fractions[k].astype(np.float64) * s0[k] for k in ("gm", "wm", "csf")}
    s0_rel = parts["gm"] + parts["wm"] + parts["csf"]
    with np.errstate(invalid="ignore", divide="ignore"):
        w = {k: np.where(s0_rel > 0, p / s0_rel, 0.0) for k, p in parts.items()}
    tensor = sum(w[k][..., None, None] * tensors[k] for k in ("wm", "gm", "csf"))
    return tensor, s0_rel


def _check_tissues(gm, wm, csf) -> dict[str, np.ndarray]:
    maps = {"gm": np.asarray(gm, np.float32), "wm": np.asarray(wm, np.float32),
            "csf": np.asarray(csf, np.float32)}
    shapes = {m.shape for m in maps.values()}
    if len(shapes) != 1 or maps["gm"].ndim != 3:
        raise InputError(f"GM, WM and CSF maps must be 3D and of one shape, got "
                         f"{[m.shape for m in maps.values()]}")
    for k, m in maps.items():
        if not np.isfinite(m).all():
            raise InputError(f"the {k.upper()} map contains NaN or Inf")
        maps[k] = np.clip(m, 0, 1)
    total = maps["gm"] + maps["wm"] + maps["csf"]
    over = total > 1  # independent probabilities: renormalize so fractions sum to <= 1
    for k in maps:
        maps[k][over] /= total[over]
    if not (maps["wm"] > 0.5).any():
        raise InputError("the WM map has no voxel above 0.5")
    return maps


def make_phantom(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, *, zooms=(1.0, 1.0, 1.0),
                 n_dirs: int = 32, n_b0: int = 2, bval: float = 1000.0, seed: int = 0,
                 brain_mask: np.ndarray | None = None, region: tuple[slice, ...] | None = None,
                 wm_ad: float = 1.7e-3, wm_rd: tuple[float, float] = (0.3e-3, 0.5e-3),
                 gm_ad: float = 0.9e-3, gm_rd: float = 0.75e-3, csf_d: float = 3.0e-3,
                 s0: dict | None = None, s0_scale: float = 1000.0, bias: float = 0.1,
                 variation: float = 0.05, grad_sigma_mm: float = 1.0,
                 integration_sigma_mm: tuple[float, ...] = (3.0, 8.0),
                 wm_threshold: float = 0.5, csf_threshold: float = 0.5,
                 orientation: str = "structure") -> Phantom:
    """Build the phantom (see the module docstring for the model).

    Parameters
    ----------
    gm, wm, csf : tissue fraction (or probability) maps of one 3D shape, values in [0, 1]
        (sums above 1 are renormalized).
    zooms : voxel size in mm.
    n_dirs, n_b0, bval : the acquisition scheme (:func:`gradient_scheme`).
    seed : seeds the smooth bias and diffusivity-variation fields (nothing else is random).
    brain_mask : default: GM + WM > 0.5, closed and hole-filled (ventricles included).
    region : optional slices: compute orientations and fields on the whole maps (so a crop
        matches the same part of the whole phantom) but return only this box.
    wm_ad, wm_rd, gm_ad, gm_rd, csf_d : diffusivities (mm^2/s); ``wm_rd`` = (tube-like, not).
    s0, s0_scale, bias : b=0 signal per tissue (relative), overall scale, bias amplitude.
    variation : relative amplitude of the smooth variation of WM and GM diffusivities.
    grad_sigma_mm, integration_sigma_mm : scales of the structure tensor.
    wm_threshold, csf_threshold : fractions above which a voxel is in the WM / CSF mask.
    orientation : ``"structure"`` (the WM map's structure tensor) or ``"bundles"`` (three
        smooth fibre families that cross where they meet; :func:`bundle_tensors`).
    """
    if orientation not in ("structure", "bundles"):
        raise InputError(f"orientation must be 'structure' or 'bundles', got {orientation!r}")
    maps = _check_tissues(gm, wm, csf)
    shape = maps["gm"].shape
    zooms = tuple(float(z) for z in zooms)
    s0 = dict(DEFAULT_S0 if s0 is None else s0)
    if brain_mask is None:
        brain_mask = ndimage.binary_fill_holes(
            ndimage.binary_closing(maps["gm"] + maps["wm"] > 0.5, iterations=3))
    brain_mask = np.asarray(brain_mask, bool)
    if brain_mask.shape != shape:
        raise InputError(f"brain mask shape {brain_mask.shape} != tissue maps {shape}")
    rng = np.random.default_rng(seed)
    box = region if region is not None else tuple(slice(0, s) for s in shape)
    bias_field = smooth_box_field(shape, box, rng, bias)
    var_field = smooth_box_field(shape, box, rng, variation)
    # structure tensors see the whole maps (so edges of a crop are not edges of the anatomy)
    # but are only computed on the box grown by their reach
    reach = [int(np.ceil(4 * (max(integration_sigma_mm) + grad_sigma_mm) / z)) + 1 for z in zooms]
    outer = tuple(slice(max(0, b.start - r), min(n, b.stop + r))
                  for b, r, n in zip(box, reach, shape))
    inner = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))
    f = {k: m[box] for k, m in maps.items()}
    tissue = (f["gm"] + f["wm"] + f["csf"]) > 0
    jg = structure_tensor(maps["gm"][outer], zooms, grad_sigma_mm, integration_sigma_mm)[inner]
    _, vg = _eig(jg, tissue & (f["gm"] > 0))
    gm_axis = vg[..., :, 0]  # largest eigenvalue: across the cortical ribbon
    mod = var_field
    if orientation == "bundles":
        # drawn after the fields above, so both orientations share bias and variation
        d_wm, _ = bundle_tensors(shape, box, zooms, rng, wm_ad * mod, wm_rd[0] * mod)
    else:
        jw = structure_tensor(maps["wm"][outer], zooms, grad_sigma_mm,
                              integration_sigma_mm)[inner]
        d_wm = _structure_wm_tensors(jw, tissue & (f["wm"] > 0), wm_ad * mod,
                                     (wm_rd[0] * mod, wm_rd[1] * mod))
    d_gm = _cylinder(gm_axis, gm_ad * mod, gm_rd * mod)
    tensor, s0_rel = _mix_tissues(f, s0, {"wm": d_wm, "gm": d_gm, "csf": csf_d * np.eye(3)})
    del d_wm, d_gm, jg
    evals, evecs = _eig(tensor, tissue)
    S0 = (s0_scale * s0_rel * bias_field).astype(np.float32)
    bvals, bvecs = gradient_scheme(n_dirs, n_b0, bval)
    dwi = synthesize(evals, evecs, S0, bvals, bvecs)
    tf = TensorField(evals=evals, evecs=evecs, S0=S0.astype(np.float64), mask=tissue)
    bm = brain_mask[box]
    wm_mask = bm & (f["wm"] > wm_threshold)
    csf_mask = bm & (f["csf"] > csf_threshold)
    if not wm_mask.any():
        raise InputError("the phantom region holds no white matter (WM fraction > "
                         f"{wm_threshold}); choose a larger or other region")
    record = {
        "model": "tissue tensors mixed by S0-weighted fractions; WM axis = smallest "
                 "eigenvector of the WM map's structure tensor; GM axis = largest of the GM's"
                 if orientation == "structure" else
                 "tissue tensors mixed by S0-weighted fractions; WM tensor = membership-"
                 "weighted mean of three smooth fibre families' cylinders (commissural, "
                 "association, projection); GM axis = largest eigenvector of the GM map's "
                 "structure tensor",
        "orientation": orientation,
        "zooms": list(zooms), "n_dirs": n_dirs, "n_b0": n_b0, "bval": bval, "seed": seed,
        "wm_ad": wm_ad, "wm_rd": list(wm_rd), "gm_ad": gm_ad, "gm_rd": gm_rd, "csf_d": csf_d,
        "s0": s0, "s0_scale": s0_scale, "bias": bias, "variation": variation,
        "grad_sigma_mm": grad_sigma_mm, "integration_sigma_mm": list(integration_sigma_mm),
        "wm_threshold": wm_threshold, "csf_threshold": csf_threshold,
        "region": [[b.start, b.stop] for b in box], "full_shape": list(shape),
        "design_condition_number": float(np.linalg.cond(design_matrix(bvecs[bvals > 0]))),
    }
    return Phantom(dwi=dwi, bvals=bvals, bvecs=bvecs, S0=S0, tissues=f, brain_mask=bm,
                   wm_mask=wm_mask, csf_mask=csf_mask, field=tf, metrics=dti_metrics(tf),
                   zooms=zooms, record=record)


def add_rician(dwi: np.ndarray, sigma: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Magnitude (Rician) noise: |S + n_re + i n_im|, n ~ N(0, sigma^2), on any shape."""
    return rician(np.asarray(dwi, np.float32), sigma, rng)


def noisy_repetitions(phantom: Phantom, n: int = 2, snr_b0: float = 20.0, seed: int = 0,
                      misalign: bool = False, rotation_sd_deg: float = 0.25,
                      translation_sd_voxel: float = 0.25) -> tuple[list[np.ndarray], dict]:
    """``n`` independent noisy realizations of the phantom's clean series.

    sigma = (mean b=0 signal in WM) / ``snr_b0``. With ``misalign``, each realization after
    the first sees the anatomy moved by a small rigid transform (rotations ~ N(0,
    ``rotation_sd_deg``) per axis, translations ~ N(0, ``translation_sd_voxel``) voxels per
    axis, cubic spline, about the volume centre) BEFORE the noise: the residual misalignment
    that distortion correction and registration leave between AP and PA. Gradient directions
    are not rotated with it (the user's table does not know the residual either).
    """
    from .simulate import resample, rigid_matrix

    if n < 2:
        raise InputError(f"at least 2 repetitions are needed, got {n}")
    if not snr_b0 > 0:
        raise InputError(f"SNR must be > 0, got {snr_b0}")
    rng = np.random.default_rng(seed)
    sigma = phantom.wm_signal / snr_b0
    reps, rec = [], []
    for k in range(n):
        clean = phantom.dwi
        entry = {"index": k + 1, "rotation_deg": [0.0] * 3, "translation_mm": [0.0] * 3}
        if misalign and k > 0:
            rot = rng.normal(0, rotation_sd_deg, 3)
            trans = rng.normal(0, translation_sd_voxel, 3) * np.asarray(phantom.zooms)
            m = rigid_matrix(rot, trans)
            clean = np.stack([np.clip(resample(clean[..., v], m, phantom.zooms), 0, None)
                              for v in range(clean.shape[3])], axis=-1)
            entry.update(rotation_deg=rot.tolist(), translation_mm=trans.tolist(),
                         matrix=m.tolist())
        reps.append(add_rician(clean, sigma, rng))
        rec.append(entry)
    record = {"snr_b0": snr_b0, "sigma": sigma, "wm_b0_mean": phantom.wm_signal, "seed": seed,
              "noise": "Rician, white, stationary", "misalign": misalign,
              "rotation_sd_deg": rotation_sd_deg, "translation_sd_voxel": translation_sd_voxel,
              "repetitions": rec}
    return reps, record


def ap_pa_pair(phantom: Phantom, snr_b0: float = 20.0, seed: int = 0, misalign: bool = False,
               **kwargs) -> tuple[np.ndarray, np.ndarray, dict]:
    """The AP/PA case: two noisy realizations (PA optionally with a residual misalignment),
    see :func:`noisy_repetitions`."""
    reps, record = noisy_repetitions(phantom, 2, snr_b0, seed, misalign, **kwargs)
    return reps[0], reps[1], record
