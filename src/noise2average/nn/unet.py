"""A multi-scale residual 3D U-Net (DRUNet-like), the alternative to the full-resolution MU-Net.

Each of ``levels`` scales holds ``res_blocks`` residual blocks (conv3 - ReLU - conv3, plus the
block's input); a stride-2 2x2x2 convolution halves the grid and doubles the width on the way
down, a stride-2 transposed convolution undoes it on the way up, and the decoder concatenates
the encoder's features of the same scale and mixes them with a 1x1x1 convolution. The output is
the residual (clean - noisy), as for the MU-Net.

Why this shape: at 1 mm a brain's structures span tens of voxels, and a denoiser that sees a
wide neighbourhood (about 100 voxels across at four levels) can average along them, where the
MU-Net's 21-voxel field cannot; most of the computation runs at the coarse scales, so the cost
per voxel stays below the MU-Net's. Layers are bias-free by default: a bias-free ReLU network
is positively homogeneous (scaling the input scales the output), which is what lets
bias-free denoisers generalize across noise levels they were not trained on.

Any input shape works: the model pads the input by replication up to a multiple of
2^(levels - 1) and crops the output back. The receptive field is larger than any practical
inference halo, so block-wise inference (``nn.patches.predict_volume``) is not exactly
whole-volume inference; ``halo`` is the margin chosen by measuring the seam error
(``benchmarks/unet_halo.py``). The stride-2 layers make the network shift-equivariant only by
multiples of 2^(levels - 1) voxels, so blocks are kept on that lattice
(``ModelConfig.grid_alignment``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet"]


class _Residual(nn.Module):
    def __init__(self, width: int, bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(width, width, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv3d(width, width, 3, padding=1, bias=bias)
        # every block starts as the identity (its branch's last layer at zero), so a deep
        # stack without normalization layers starts stable and grows its branches as it learns
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _stage(width: int, n: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(*[_Residual(width, bias) for _ in range(n)])


class UNetShape(Protocol):
    """What the U-Net reads of its configuration (``models.ModelConfig`` has it all; this
    module does not import it, so that ``models`` can build a U-Net without a circle)."""

    in_channels: int
    out_channels: int
    widths: Sequence[int]
    res_blocks: int
    bias: bool


class UNet(nn.Module):
    """Residual denoiser: ``forward(x)`` returns the predicted residual (target - x)."""

    def __init__(self, config: UNetShape) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        bias = config.bias
        self.head = nn.Conv3d(config.in_channels, widths[0], 3, padding=1, bias=bias)
        self.encoders = nn.ModuleList(_stage(w, config.res_blocks, bias) for w in widths[:-1])
        self.downs = nn.ModuleList(nn.Conv3d(a, b, 2, stride=2, bias=bias)
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.bottom = _stage(widths[-1], config.res_blocks, bias)
        self.ups = nn.ModuleList(nn.ConvTranspose3d(b, a, 2, stride=2, bias=bias)
                                 for a, b in zip(widths[:-1], widths[1:]))
        self.merges = nn.ModuleList(nn.Conv3d(2 * w, w, 1, bias=bias) for w in widths[:-1])
        self.decoders = nn.ModuleList(_stage(w, config.res_blocks, bias) for w in widths[:-1])
        self.tail = nn.Conv3d(widths[0], config.out_channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[2:]
        m = 2 ** (len(self.config.widths) - 1)
        pad = [(-s) % m for s in shape]
        if any(pad):
            # F.pad takes the last axis first: (z_lo, z_hi, y_lo, y_hi, x_lo, x_hi)
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
        h = self.head(x)
        skips = []
        for encode, down in zip(self.encoders, self.downs):
            h = encode(h)
            skips.append(h)
            h = down(h)
        h = self.bottom(h)
        for up, merge, decode in zip(reversed(self.ups), reversed(self.merges),
                                     reversed(self.decoders)):
            h = merge(torch.cat([skips.pop(), up(h)], dim=1))
            h = decode(h)
        out = self.tail(h)
        return out[:, :, :shape[0], :shape[1], :shape[2]]

    def flops_per_voxel(self) -> float:
        """Multiply-adds x 2 of one forward pass per input voxel (convolutions only; a layer at
        scale s runs on 1/8^s of the voxels)."""
        total = 0.0
        for level, modules in self._modules_by_level():
            for mod in modules:
                for conv in mod.modules():
                    if isinstance(conv, (nn.Conv3d, nn.ConvTranspose3d)):
                        k = conv.kernel_size[0] * conv.kernel_size[1] * conv.kernel_size[2]
                        per_out = 2 * conv.in_channels * conv.out_channels * k
                        # a transposed conv's kernel covers 2^3 outputs of the finer scale
                        if isinstance(conv, nn.ConvTranspose3d):
                            per_out /= 8
                        total += per_out / 8 ** level
        return total

    def _modules_by_level(self):
        """(scale index of the voxels a module's outputs live on, modules) pairs."""
        n = len(self.config.widths)
        yield 0, [self.head, self.tail]
        for s in range(n - 1):
            yield s, [self.encoders[s], self.merges[s], self.decoders[s], self.ups[s]]
            yield s + 1, [self.downs[s]]
        yield n - 1, [self.bottom]
