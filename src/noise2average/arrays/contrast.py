"""The contrast between diffusion directions: what FA and the principal direction are made of.

Per voxel and DWI, the contrast is the attenuation S/S0 minus the voxel's mean attenuation.
:func:`contrast_kept` measures, from N >= 2 repetitions and without the truth, the fraction of
it a denoiser kept, and :func:`contrast_kept_by_pairs` the same from any (output, input,
witness) triples whose witness noise is independent of the input's (a recorrupted pair);
:func:`restore_contrast` undoes a uniform shrinkage of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def directional_contrast(series: np.ndarray, b0: np.ndarray, mask: np.ndarray,
                         s0: np.ndarray | None = None) -> np.ndarray:
    """(mask voxels, DWIs): attenuation S/S0 minus the voxel's mean attenuation; S0 is the
    series' mean b=0 signal, or ``s0`` (mask voxels) when given."""
    s = series[mask].astype(np.float64)
    if s0 is None:
        s0 = s[:, b0].mean(1)
    att = s[:, ~b0] / np.maximum(s0, 1e-6)[:, None]
    return att - att.mean(1, keepdims=True)


def contrast_kept(denoised: Sequence[np.ndarray], reps: Sequence[np.ndarray], b0: np.ndarray,
                  mask: np.ndarray) -> float | None:
    """How much of the contrast between diffusion directions the denoising kept, from the data.

    The contrast of a series is, per voxel and DWI, its attenuation S/S0 minus the voxel's mean
    attenuation: what FA and the principal direction are made of. A denoiser that pulls the
    directions towards each other keeps a fraction ``g < 1`` of it, and FA comes out biased low.
    With N >= 2 repetitions ``g`` is measured without the truth: the noise of repetition j is
    independent of repetition k, so in

        g = sum_{k != j} <c(denoised_k), c(rep_j)> / sum_{k != j} <c(rep_k), c(rep_j)>

    both sums estimate products with the underlying contrast and the noise cancels (mask
    voxels, all DWIs). 1 = the repetitions' own contrast kept. Measured relative to the noisy
    data, whose Rician floor itself compresses the contrast slightly (about 1 % at a b0 SNR of
    20): on the diffusion benchmark the shipped diffusion (groups) network keeps 0.967 of the
    truth's contrast and this estimate reads 0.977 (``benchmarks/dwi_diagnosis.py``). None
    when the series has no DWI, the mask is empty or the repetitions share no contrast (pure
    noise).
    """
    if len(reps) < 2:
        return None
    return contrast_kept_by_pairs([(d, reps[k], reps[j]) for k, d in enumerate(denoised)
                                   for j in range(len(reps)) if j != k], b0, mask)


def contrast_kept_by_pairs(triples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           b0: np.ndarray, mask: np.ndarray) -> float | None:
    """The contrast kept from (output, input, witness) triples: the output is the denoised
    input, and the witness a noisy series whose noise is independent of the input's, so
    that ``sum <c(output), c(witness)> / sum <c(input), c(witness)>`` leaves the noise out
    (:func:`contrast_kept` takes the other repetitions as witnesses; the tuned diffusion
    output a recorrupted pair). All three are divided by the output's S0: a noisy S0 shared
    by the input and the witness (the common b=0 of ``n2a dti-split --b0 mean``) would
    otherwise inflate the denominator by about 3 / SNR^2 and the restoration with it. None
    when the series has no DWI or no b=0 volume, the mask is empty or the witnesses share no
    contrast with the inputs."""
    b0 = np.asarray(b0, bool)
    mask = np.asarray(mask, bool)
    if not triples or b0.all() or not b0.any() or not mask.any():
        return None
    num = den = 0.0
    for x0 in range(0, mask.shape[0], 8):  # slabs of 8 slices bound the memory of a big series
        sl = slice(x0, x0 + 8)
        m = mask[sl]
        if not m.any():
            continue
        for output, noisy, witness in triples:
            s0 = output[sl][m][:, b0].astype(np.float64).mean(1)
            cw = directional_contrast(witness[sl], b0, m, s0)
            num += float(np.vdot(directional_contrast(output[sl], b0, m, s0), cw))
            den += float(np.vdot(directional_contrast(noisy[sl], b0, m, s0), cw))
    return num / den if den > 0 else None


def restore_contrast(series: np.ndarray, b0: np.ndarray, mask: np.ndarray,
                     kept: float | None) -> np.ndarray:
    """Undo a uniform shrinkage of the contrast between diffusion directions.

    ``kept`` is the fraction of the directional contrast a denoiser kept
    (:func:`noise2average.diffusion.contrast_kept`, measured from the repetitions). Each mask
    voxel's attenuations S/S0 are spread about their mean by ``1 / kept``; the mean
    attenuation and the b=0 volumes are unchanged, and so, to first order, is MD. Nothing
    changes when ``kept`` is None, not positive, or the series has no b=0 or no DWI volume.
    """
    b0 = np.asarray(b0, bool)
    if kept is None or kept <= 0 or b0.all() or not b0.any():
        return series
    out = series.astype(np.float32).copy()
    s = out[mask]
    s0 = np.maximum(s[:, b0].mean(1, keepdims=True), 1e-6)
    att = s[:, ~b0] / s0
    mean = att.mean(1, keepdims=True)
    s[:, ~b0] = (mean + (att - mean) / kept) * s0
    out[mask] = s
    return out
