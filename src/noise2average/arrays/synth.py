"""Domain-randomized clean brain images for pre-training (arrays in, arrays out).

Three kinds of source feed the generator: *intensity* sources (a T1w image, e.g. a template),
*tissue* sources (GM / WM / CSF fraction maps), from which an image is synthesized with
random tissue intensities and texture, and *shapes*: random label maps made on the spot,
anatomy of no species, so that the network learns edges, sheets and blobs of every size and
contrast rather than one brain's. Every draw from an image source cuts a randomly placed,
rotated, scaled and elastically deformed cube out of it, so that the network sees anatomy in
positions, sizes and shapes no single template has; then blur and anisotropic resolution vary
the sharpness. Noise is added afterwards by the pre-training sampler (:mod:`noise2average.pretrain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["Source", "shapes_source", "random_warp", "sharpen_fractions", "synthesize_tissues",
           "random_labels", "synthesize_labels", "degrade_resolution", "draw_clean"]

KINDS = ("intensity", "tissues", "shapes")


@dataclass
class Source:
    """One pre-training source.

    Parameters
    ----------
    name
        Shown in provenance.
    channels
        Arrays on one grid: one T1w image (``kind='intensity'``) or GM, WM, CSF fractions
        (``kind='tissues'``); none for ``kind='shapes'``, which makes its images on the spot.
    mask
        Brain mask on the same grid (where crops are centred and the loss counts).
    zoom
        Voxel size of the grid in mm (isotropic).
    kind
        ``'intensity'``, ``'tissues'`` or ``'shapes'``.
    weight
        Relative probability of drawing this source.
    """

    name: str
    channels: list[np.ndarray]
    mask: np.ndarray
    zoom: float
    kind: str = "intensity"
    weight: float = 1.0
    centres: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        # a sparse sample of mask voxels is enough to place crops
        idx = np.argwhere(self.mask)
        self.centres = idx[:: max(1, len(idx) // 20000)]


def shapes_source(weight: float = 1.0) -> Source:
    """The source of random label maps (:func:`random_labels`), drawn with ``weight``."""
    return Source("random-shapes", [], np.ones((1, 1, 1), bool), 1.0, "shapes", weight)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    cx, cy, cz = np.cos(a)
    sx, sy, sz = np.sin(a)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_warp(source: Source, shape: tuple[int, int, int], voxel_mm: float,
                rng: np.random.Generator, max_rotation: float = 12.0, max_scale: float = 0.12,
                max_displacement_mm: float = 3.0) -> tuple[list[np.ndarray], np.ndarray]:
    """A cube of ``shape`` voxels of ``voxel_mm`` cut from ``source`` around a random mask voxel,
    under a random rotation, anisotropic scaling and smooth elastic displacement (linear
    interpolation). Returns the warped channels and the warped mask (fraction > 0.5)."""
    out = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) - (s - 1) / 2 for s in shape],
                               indexing="ij"))  # (3, X, Y, Z), centred
    scale = voxel_mm / source.zoom * np.exp(rng.uniform(-max_scale, max_scale, 3))
    matrix = _rotation(rng, max_rotation) * scale[None, :]
    coords = np.tensordot(matrix.astype(np.float32), out, axes=1)
    # elastic part: Gaussian noise on a coarse grid, cubic-upsampled, in source voxels
    amp = rng.uniform(0, max_displacement_mm) / source.zoom
    coarse = [max(2, s // 16) for s in shape]
    for axis in range(3):
        d = rng.standard_normal(coarse).astype(np.float32)
        d = ndimage.zoom(d, [s / c for s, c in zip(shape, coarse)], order=3)[
            tuple(slice(0, s) for s in shape)]
        coords[axis] += amp * d / (np.abs(d).max() + 1e-6)
    centre = source.centres[int(rng.integers(len(source.centres)))]
    coords += centre.astype(np.float32)[:, None, None, None]
    warped = [ndimage.map_coordinates(c, coords, order=1, mode="constant", cval=0.0,
                                      prefilter=False).astype(np.float32)
              for c in source.channels]
    mask = ndimage.map_coordinates(source.mask.astype(np.float32), coords, order=1,
                                   mode="constant", cval=0.0, prefilter=False) > 0.5
    return warped, mask


def _texture(shape, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Multiplicative fine texture: smoothed Gaussian noise of 1 +- ``amplitude``."""
    t = rng.standard_normal(shape).astype(np.float32)
    t = ndimage.gaussian_filter(t, rng.uniform(0.6, 2.0))
    return 1.0 + amplitude * t / (t.std() + 1e-6)


def sharpen_fractions(fractions: list[np.ndarray], rng: np.random.Generator,
                      max_voxels: float = 0.6) -> list[np.ndarray]:
    """Tissue fractions with the crisp boundaries of one subject: each voxel goes to its most
    likely tissue (of the given ones, or none where their sum is below 1/2), then a Gaussian
    partial-volume blur of up to ``max_voxels``. Template probability maps average many
    brains, and images synthesized from them are smoother than any subject's anatomy, which a
    denoiser trained on them learns as a prior and applies as blur (measured: a sharpness ratio
    of 0.75 on Colin27)."""
    stack = np.stack(fractions)
    label = np.argmax(stack, axis=0)
    inside = stack.sum(0) >= 0.5
    width = float(rng.uniform(0.3, max_voxels))
    out = []
    for k in range(len(fractions)):
        hard = ((label == k) & inside).astype(np.float32)
        out.append(ndimage.gaussian_filter(hard, width).astype(np.float32))
    return out


def synthesize_tissues(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """A T1w-like image from tissue fractions: random tissue intensities (mostly in T1w order,
    WM > GM > CSF, sometimes any order), per-tissue fine texture, partial volume from the
    fractions. The background (no tissue) is 0."""
    wm_level = 1.0
    if rng.random() < 0.85:
        gm_level = rng.uniform(0.45, 0.8)
        csf_level = rng.uniform(0.05, 0.4) * gm_level
    else:  # other contrasts: the network must not rely on one intensity order
        gm_level, csf_level = rng.uniform(0.1, 1.2, 2)
    image = np.zeros_like(gm)
    for frac, level in ((wm, wm_level), (gm, gm_level), (csf, csf_level)):
        image += frac * level * _texture(frac.shape, rng, rng.uniform(0.0, 0.08))
    return np.clip(image, 0, None)


def _smooth_field(shape: tuple[int, int, int], size: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise on a grid of one node per ``size`` voxels, cubic-upsampled to ``shape``."""
    coarse = [max(2, int(round(s / size)) + 1) for s in shape]
    field = ndimage.zoom(rng.standard_normal(coarse).astype(np.float32),
                         [s / c for s, c in zip(shape, coarse)], order=3)
    return field[tuple(slice(0, s) for s in shape)]


def random_labels(shape: tuple[int, int, int], rng: np.random.Generator,
                  labels: tuple[int, int] = (4, 10),
                  size_voxels: tuple[float, float] = (3.0, 16.0),
                  shell_probability: float = 0.6) -> np.ndarray:
    """A random label map: each voxel takes the largest of several smooth random fields
    (blobs with curved boundaries, their size log-uniform in ``size_voxels``), and, with
    ``shell_probability``, a thin shell of 1-3 voxels round one label becomes a label of its
    own (a sheet like a cortical ribbon)."""
    n = int(rng.integers(labels[0], labels[1] + 1))
    size = float(np.exp(rng.uniform(*np.log(size_voxels))))
    label = np.argmax([_smooth_field(shape, size, rng) for _ in range(n)], axis=0)
    if rng.random() < shell_probability:
        region = label == int(rng.integers(n))
        inner = ndimage.binary_erosion(region, iterations=int(rng.integers(1, 4)))
        label[region & ~inner] = n
    return label.astype(np.int16)


def synthesize_labels(label: np.ndarray, rng: np.random.Generator,
                      max_partial_volume: float = 0.6) -> np.ndarray:
    """An image from a label map: a random intensity in [0, 1] and fine texture per label,
    partial volume by a Gaussian blur of each label's indicator (0.3 to
    ``max_partial_volume`` voxels, as :func:`sharpen_fractions`)."""
    width = float(rng.uniform(0.3, max_partial_volume))
    image = np.zeros(label.shape, np.float32)
    for k in np.unique(label):
        frac = ndimage.gaussian_filter((label == k).astype(np.float32), width)
        image += frac * rng.uniform(0.0, 1.0) * _texture(label.shape, rng,
                                                           rng.uniform(0.0, 0.08))
    return np.clip(image, 0, None)


def degrade_resolution(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random isotropic blur (probability 0.2, up to 0.5 voxel) and, with probability 0.15, one
    axis blurred further (thicker slices, up to 1 voxel). Rare and mild: every blur teaches
    the network that anatomy is smooth."""
    sig = np.zeros(3)
    if rng.random() < 0.2:
        sig += rng.uniform(0.0, 0.5)
    if rng.random() < 0.15:
        sig[int(rng.integers(3))] += rng.uniform(0.3, 1.0)
    if not sig.any():
        return image
    return ndimage.gaussian_filter(image, sig).astype(np.float32)


def draw_clean(sources: list[Source], shape: tuple[int, int, int], rng: np.random.Generator,
               voxel_range: tuple[float, float] = (0.8, 1.3)) -> tuple[np.ndarray, np.ndarray, dict]:
    """One random clean cube (scaled so its brain's 99th percentile is 1), its mask and what
    was drawn; a ``shapes`` source gives a random label image whose every voxel is in the
    mask."""
    w = np.array([s.weight for s in sources], float)
    src = sources[int(rng.choice(len(sources), p=w / w.sum()))]
    voxel = float(rng.uniform(*voxel_range))
    if src.kind == "shapes":  # every voxel is foreground: there is no brain to cut from
        image = degrade_resolution(synthesize_labels(random_labels(shape, rng), rng), rng)
        mask = np.ones(shape, bool)
        image /= max(float(np.percentile(image, 99)), 1e-6)
        return image.astype(np.float32), mask, {"source": src.name}
    for _ in range(10):  # a crop near the edge of the brain can hold too little of it
        channels, mask = random_warp(src, shape, voxel, rng)
        if mask.sum() >= 0.15 * mask.size:
            break
    if src.kind == "tissues":
        image = synthesize_tissues(*sharpen_fractions(channels, rng), rng)
    else:
        image = channels[0]
    image = degrade_resolution(image, rng)
    image = np.clip(image, 0, None)
    image /= max(float(np.percentile(image[mask], 99)), 1e-6) if mask.any() else 1.0
    return image.astype(np.float32), mask, {"source": src.name, "voxel_mm": round(voxel, 3)}
