"""Supervised residual pre-training of the diffusion network on a tensor-field phantom.

Training data: the ground-truth tensor field of :func:`noise2average.arrays.dwi_phantom.
make_phantom` built from the Colin27 tissue classes (k-means of ``ch2.nii.gz`` in
``ch2bet.nii.gz``, :func:`noise2average.arrays.simulate.tissue_classes`), partial-volumed by a
Gaussian of 0.6 voxel and resampled to the training voxel sizes. Never MNI152: the diffusion
benchmark's phantom is built from the MNI152 maps.

Every ``refresh`` steps a fresh noisy group is drawn, on the whole field:

- k - 1 directions: with probability 1/2 the electrostatic set of k - 1 directions under a
  random rotation (a DTI scheme, or a subset synthesized by ``dti-split``), otherwise k - 1
  consecutive directions of a random 30-64-direction electrostatic scheme (a group of an
  AP/PA series); b uniform in [700, 1300] s/mm^2;
- tissue variation: all diffusivities x U(0.85, 1.15), S0 contrast S0^gamma with gamma in
  [0.8, 1.25], a smooth bias field of +-10 %;
- Rician noise of sigma = (mean WM b0) / SNR with the b0 SNR log-uniform in ``snr_range``
  (8-40 by default); channel 0 is the mean of 1-6 independently noisy b0 volumes, as in a
  group;
- per-channel mask normalization (as fine-tuning does), its statistics jittered (mean +-0.2
  SD, SD x exp(+-0.2)) so the network does not rely on the exact mask.

The network learns the residual from the noisy group to the clean one in the noisy group's
own normalization: the pairs that fine-tuning forms, with the clean group as the target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from .arrays.dti import TensorField, electrostatic_directions, synthesize
from .arrays.masking import bounding_box
from .arrays.noise import rician, smooth_field
from .arrays.normalize import Norm
from .nn.device import Policy
from .nn.engine import FitState
from .nn.models import Network
from .nn.patches import Batch, PatchSampler
from .pretrain import fit_sampler


@dataclass
class DwiPretrainConfig:
    steps: int = 1000
    lr: float = 5e-4
    schedule: str = "cosine"
    warmup: int = 50
    batch_size: int = 2
    patch_size: int = 24
    snr_min: float = 8.0
    snr_max: float = 40.0
    refresh: int = 25
    seed: int = 0
    #: gradient-norm clipping (0: none; the shipped diffusion model was trained without)
    clip_grad: float = 0.0
    #: batch-synthesizing processes and wall-time budget, as in ``PretrainConfig``
    workers: int = 0
    minutes: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FieldVolume:
    """One training field: the tensors, S0, the brain and WM masks, cropped to the brain."""

    field: TensorField
    brain: np.ndarray
    wm: np.ndarray
    zooms: tuple[float, float, float]


def colin27_fields(zooms_list: Sequence[float] = (2.0, 1.5), seed: int = 0,
                   n_dirs: int = 6) -> list[FieldVolume]:
    """Tensor fields of the Colin27 phantom at each isotropic voxel size in ``zooms_list``."""
    import nibabel as nib
    from scipy import ndimage

    from .arrays.dwi_phantom import make_phantom
    from .arrays.simulate import tissue_classes
    from .errors import InputError
    from .io.templates import colin27_paths

    t1_path, mask_path = colin27_paths()
    if not t1_path.is_file():
        raise InputError(f"Colin27 not found at {t1_path}: install the Debian package "
                         "mricron-data")
    img = nib.load(str(t1_path))
    t1 = np.asarray(img.dataobj, np.float32)
    brain = np.asarray(nib.load(str(mask_path)).dataobj, np.float32) > 0
    labels = tissue_classes(t1, brain)
    box = bounding_box(brain, margin=6)
    labels = labels[box]
    base_zoom = float(img.header.get_zooms()[0])
    out = []
    for z in zooms_list:
        frac = {}
        for name, lab in (("csf", 1), ("gm", 2), ("wm", 3)):
            f = ndimage.gaussian_filter((labels == lab).astype(np.float32), 0.6)
            frac[name] = np.clip(ndimage.zoom(f, base_zoom / z, order=1), 0, 1)
        ph = make_phantom(frac["gm"], frac["wm"], frac["csf"], zooms=(z, z, z), n_dirs=n_dirs,
                          n_b0=1, seed=seed)
        keep = bounding_box(ph.brain_mask, margin=4)
        f = ph.field
        out.append(FieldVolume(
            TensorField(f.evals[keep].astype(np.float32), f.evecs[keep].astype(np.float32),
                        f.S0[keep].astype(np.float32), f.mask[keep]),
            ph.brain_mask[keep], ph.wm_mask[keep], (z, z, z)))
    return out


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3D rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` directions as a DTI group sees them (see the module text)."""
    if rng.random() < 0.5:
        return electrostatic_directions(n) @ random_rotation(rng).T
    total = int(rng.integers(max(30, n), 65))
    scheme = electrostatic_directions(total)
    start = int(rng.integers(total))
    return scheme[(start + np.arange(n)) % total]


class DwiNoiseSampler:
    """Patches of freshly simulated noisy diffusion groups (see the module text)."""

    def __init__(self, fields: Sequence[FieldVolume], channels: int,
                 config: DwiPretrainConfig) -> None:
        self.fields = list(fields)
        self.channels = channels
        self.config = config
        self.count = 0
        self.inner: PatchSampler | None = None
        self.last: dict = {}

    def draw_group(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One (noisy, clean, mask) triple, channels last; parameters drawn go to ``last``."""
        cfg = self.config
        i = int(rng.integers(len(self.fields)))
        fv = self.fields[i]
        f = fv.field
        dscale = float(rng.uniform(0.85, 1.15))
        gamma = float(rng.uniform(0.8, 1.25))
        s0 = np.clip(f.S0, 0, None)
        ref = float(s0[fv.wm].mean())
        s0 = ref * (s0 / ref) ** gamma * smooth_field(s0.shape, rng, 0.9, 1.1)
        bval = float(rng.uniform(700, 1300))
        dirs = random_directions(self.channels - 1, rng)
        bvals = np.concatenate([[0.0], np.full(self.channels - 1, bval)])
        bvecs = np.concatenate([[[0.0, 0.0, 0.0]], dirs])
        clean = synthesize(f.evals * dscale, f.evecs, s0.astype(np.float32), bvals, bvecs,
                           mask=f.mask)
        snr = float(np.exp(rng.uniform(np.log(cfg.snr_min), np.log(cfg.snr_max))))
        sigma = float(s0[fv.wm].mean()) / snr
        n_b0 = int(rng.integers(1, 7))
        noisy = rician(clean, sigma, rng)
        if n_b0 > 1:
            b0 = noisy[..., 0].astype(np.float64)
            for _ in range(n_b0 - 1):
                b0 += rician(clean[..., 0], sigma, rng)
            noisy[..., 0] = (b0 / n_b0).astype(np.float32)
        self.last = {"field": i, "zooms": fv.zooms, "snr_b0": snr, "bval": bval, "n_b0": n_b0,
                     "diffusivity_scale": dscale, "s0_gamma": gamma}
        return noisy, clean, fv.brain

    def __call__(self, rng: np.random.Generator) -> Batch:
        if self.inner is None or self.count % self.config.refresh == 0:
            noisy, clean, mask = self.draw_group(rng)
            fitted = Norm.fit(noisy, mask)
            mean, std = np.asarray(fitted.mean), np.asarray(fitted.std)
            c = len(mean)
            norm = Norm(tuple((mean + std * rng.uniform(-0.2, 0.2, c)).tolist()),
                        tuple((std * np.exp(rng.uniform(-0.2, 0.2, c))).tolist()))
            z = norm.forward(noisy)
            self.inner = PatchSampler([np.moveaxis(z, -1, 0)],
                                      [np.moveaxis(norm.forward(clean) - z, -1, 0)], mask,
                                      self.config.patch_size, self.config.batch_size,
                                      flip_axes=(0, 1, 2))
        self.count += 1
        return self.inner(rng)


def pretrain_dwi(model: Network, fields: Sequence[FieldVolume], config: DwiPretrainConfig,
                 policy: Policy, state: FitState | None = None,
                 on_step: Callable[[FitState], None] | None = None,
                 progress: Callable[[int, float], None] | None = None) -> FitState:
    """Train ``model`` (k channels in and out) in place; ``state`` resumes an interrupted run.

    After a resume the noisy groups differ from those of an uninterrupted run (the sampler's
    state is not checkpointed, only its random generator's), which is harmless for training.
    """
    return fit_sampler(model, DwiNoiseSampler(fields, model.config.in_channels, config), config,
                       policy, state=state, on_step=on_step, progress=progress)
