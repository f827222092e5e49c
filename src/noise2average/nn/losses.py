"""Training losses on (B, C, X, Y, Z) predictions and residual targets, weighted by a
(B, 1, X, Y, Z) mask; each is a sum over channels, averaged over the weighted voxels."""

from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Squared error summed over channels, averaged over the weighted voxels."""
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


def contrast_weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                          contrast_weight: float) -> torch.Tensor:
    """:func:`masked_mse` plus ``contrast_weight`` times the squared error of the directional
    contrast: for a diffusion group (channel 0 the mean b0, channels 1.. its DWIs), each DWI
    channel's error minus the voxel's mean DWI error.

    That part of the error is what FA and the principal direction are made of; a network
    trained with the plain loss keeps about 97 % of the contrast between directions
    (``diffusion.contrast_kept``), and FA comes out biased low. Weighting the part up asks
    the network to spend more of its capacity there; in expectation both losses have the same
    minimizer, so the weight trades capacity, not bias in the target.
    """
    err = pred - target
    dwi = err[:, 1:]
    contrast = dwi - dwi.mean(1, keepdim=True)
    total = (err ** 2 * weight).sum() + contrast_weight * (contrast ** 2 * weight).sum()
    return total / weight.sum().clamp_min(1.0)


def sure_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
              eps: float) -> torch.Tensor:
    """Monte-Carlo SURE of a residual denoiser, up to a constant, for a batch stacked as
    (inputs, inputs + ``eps`` * probe): ``pred`` (2B, C, ...) holds the residuals of both
    halves; ``target`` is the probe (B, C, ...), a draw with the covariance of the inputs'
    noise, or the probe stacked over the noise's mean (2B, C, ...).

    For Gaussian noise n of covariance S and a denoiser x + r(x), the expected squared error
    against the truth equals E |r(x)|^2 + 2 tr(S J_r) + tr(S), and tr(S J_r) is estimated by
    probe . (r(x + eps probe) - r(x)) / eps. No clean target enters: the loss can be minimised
    on the noisy image that is to be denoised. Noise with a mean m (the Rician bias of
    magnitude images) is handled by scoring r(x) + m, the residual against x - m; without
    that the denoiser learns to keep the bias.
    """
    b = pred.shape[0] // 2
    probe = target[:b]
    bias = target[b:] if target.shape[0] > b else torch.zeros_like(probe)
    r, r_probed = pred[:b], pred[b:]
    divergence = probe * (r_probed - r) / eps
    return (((r + bias) ** 2 + 2 * divergence) * weight).sum() / weight.sum().clamp_min(1.0)
