"""The training losses of nn.losses."""

import torch

from noise2average.nn.losses import contrast_weighted_mse, masked_mse


def _batch(seed=0, channels=7):
    g = torch.Generator().manual_seed(seed)
    shape = (2, channels, 6, 6, 6)
    pred, target = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    weight = (torch.rand((2, 1, 6, 6, 6), generator=g) > 0.3).float()
    return pred, target, weight


def test_contrast_weight_zero_is_the_plain_loss():
    pred, target, weight = _batch()
    assert torch.allclose(contrast_weighted_mse(pred, target, weight, 0.0),
                          masked_mse(pred, target, weight))


def test_only_the_error_between_directions_is_weighted_up():
    _, target, weight = _batch(1)
    shape = target.shape
    common = torch.randn(shape[:1] + (1,) + shape[2:]).expand(shape)  # same error in every channel
    assert torch.allclose(contrast_weighted_mse(target + common, target, weight, 3.0),
                          masked_mse(target + common, target, weight))
    between = torch.randn(shape)
    between[:, 0] = 0  # b0 exact; the DWI errors sum to zero in every voxel
    between[:, 1:] -= between[:, 1:].mean(1, keepdim=True)
    plain = masked_mse(target + between, target, weight)
    assert torch.allclose(contrast_weighted_mse(target + between, target, weight, 3.0),
                          4.0 * plain)
