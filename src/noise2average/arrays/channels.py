"""Single- and multi-channel repetitions on one code path.

A repetition is a 3D volume (X, Y, Z) or a channels-last 4D stack (X, Y, Z, C) as NIfTI stores
it (C = a diffusion group: the mean b0 and its DWIs). The network wants channels first
(C, X, Y, Z); masks stay 3D and are broadcast over the channels.
"""

from __future__ import annotations

import numpy as np


def n_channels(image: np.ndarray) -> int:
    """1 for a 3D volume, C for (X, Y, Z, C)."""
    return 1 if image.ndim == 3 else int(image.shape[-1])


def channels_first(image: np.ndarray) -> np.ndarray:
    """(X, Y, Z) -> (1, X, Y, Z) (a view); (X, Y, Z, C) -> (C, X, Y, Z) (a contiguous copy)."""
    if image.ndim == 3:
        return image[None]
    if image.ndim != 4:
        raise ValueError(f"expected a 3D or 4D array, got shape {image.shape}")
    return np.ascontiguousarray(np.moveaxis(image, -1, 0))


def channels_last(array: np.ndarray, ndim: int) -> np.ndarray:
    """Inverse of :func:`channels_first` for a repetition of ``ndim`` (3 or 4) dimensions."""
    if ndim == 3:
        if array.shape[0] != 1:
            raise ValueError(f"a 3D repetition has one channel, got {array.shape[0]}")
        return array[0]
    return np.ascontiguousarray(np.moveaxis(array, 0, -1))


def broadcast_mask(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The 3D ``mask`` shaped to broadcast against ``image`` (a trailing axis for 4D)."""
    return mask[..., None] if image.ndim == mask.ndim + 1 else mask


def with_noise_channel(z: np.ndarray, sd: np.ndarray, scale: float) -> np.ndarray:
    """A normalized (1, X, Y, Z) input with the noise SD map ``sd`` appended as a second
    channel, in the input's units (``sd / scale``, ``scale`` the normalization's SD)."""
    return np.concatenate([z, (sd / scale)[None]]).astype(np.float32)
