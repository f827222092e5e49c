"""MU-Net: the paper's "modified U-Net" without pooling or up-sampling.

Blocks of two 3x3x3 convolutions + ReLU keep the full resolution. With ``n_blocks`` = 2m - 1,
blocks 1..m run in sequence and every later block j takes the channel concatenation of
block (n_blocks + 1 - j) and block (j - 1) - for the paper's 9 blocks: 6 <- 4+5, 7 <- 3+6,
8 <- 2+7, 9 <- 1+8. A final 1x1x1 linear convolution outputs the residual.

Diffusion networks (presets ``dti-paper`` and ``dti-cpu``) take k channels in and give k out:
the mean b0 and the DWIs of one group (k = 7 for b0 + 6 directions, 13 for b0 + 12), channels
last in the arrays and first in the tensors. The authors' two descriptions of this network
disagree. Their figure: 10 convolution layers of 192 channels, batch normalization before every
convolution. Their code (``munet_res_dti.py``): 10 layers, but conv -> batch norm -> ReLU with
no batch norm after the first convolution, a default width of 64 that tapers to 1/2 and 1/4 in
the last block, skips 4 <- 3+1 and 5 <- 4+2, and a 3x3x3 output convolution. We follow the
figure for what the paper reports and its readers compare (10 layers = 5 two-convolution
blocks, a constant width of 192, batch norm on every layer) and the code for the order
(conv -> batch norm -> ReLU, the usual one; normalizing before the first convolution would only
repeat our per-channel z-scoring), and keep this module's nested skips and 1x1x1 linear head so
that the T1w and diffusion networks are one family with one weights format. ``dti-paper`` has
11.0 M parameters (22 MFLOP per voxel); ``dti-cpu`` is the same shape at width 48 (0.69 M).

Batch normalization and tiny batches: pre-training (2 patches per step, a fresh noisy volume
every 25 steps, hundreds of steps) learns the running statistics. Fine-tuning on one subject
(1-2 patches per step) and inference both use those statistics unchanged - batch norm stays in
eval mode (``nn.engine.fit(..., freeze_bn=True)``), only the weights and the batch-norm scales
and shifts are fine-tuned - so the network is the same function in training and at inference.
The two alternatives fail: with train-mode batch norm in fine-tuning each step normalizes by
the statistics of one patch, and the weights adapt to a normalization that eval mode does not
apply (measured on a 1 mm MNI152 crop at b0 SNR 10: 26.3 dB after 30 Noise2Average steps,
against 36.0 dB with frozen statistics and 33.9 dB for the plain average); train-mode
inference would make each block's output depend on how much background and which tissue the
block holds, i.e. on the block size, with seams between blocks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .unet import UNet

__all__ = ["ModelConfig", "MUNet", "PRESETS", "DIFFUSION_PRESETS", "Network", "UNet", "build_model",
           "with_channels"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a MU-Net.

    Parameters
    ----------
    in_channels, out_channels
        1 for T1w; k for a diffusion group (b0 + DWIs).
    width
        Feature channels of every convolution.
    n_blocks
        Odd number of two-convolution blocks (9 in the paper's T1w network).
    batch_norm
        Batch normalization after each convolution (the paper's diffusion network).
    arch
        ``"munet"`` (the paper's full-resolution network, this module) or ``"unet"`` (the
        multi-scale residual U-Net of :mod:`noise2average.nn.unet`). Files written before the
        U-Net existed carry no ``arch`` and load as MU-Nets.
    levels, res_blocks, bias, halo
        U-Net only: scales (the width doubles at each), residual blocks per scale and stage,
        biases in the convolutions, and the margin in voxels that block-wise inference adds
        around each block.
    """

    in_channels: int = 1
    out_channels: int = 1
    width: int = 24
    n_blocks: int = 5
    batch_norm: bool = False
    arch: str = "munet"
    levels: int = 4
    res_blocks: int = 1
    bias: bool = False
    halo: int = 16

    def __post_init__(self) -> None:
        if self.arch not in ("munet", "unet"):
            raise ValueError(f"arch must be 'munet' or 'unet', got {self.arch!r}")
        if self.arch == "munet" and (self.n_blocks < 1 or self.n_blocks % 2 == 0):
            raise ValueError(f"n_blocks must be odd and >= 1, got {self.n_blocks}")
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.arch == "unet" and (self.levels < 2 or self.res_blocks < 1 or self.halo < 0):
            raise ValueError("a U-Net needs levels >= 2, res_blocks >= 1 and halo >= 0")

    @property
    def widths(self) -> tuple[int, ...]:
        """U-Net feature channels per scale, finest first."""
        return tuple(self.width * 2 ** level for level in range(self.levels))

    @property
    def grid_alignment(self) -> int:
        """The shift (voxels) the network is equivariant to: 1 for the full-resolution MU-Net,
        2^(levels - 1) for the U-Net (block-wise inference keeps blocks on that lattice)."""
        return 2 ** (self.levels - 1) if self.arch == "unet" else 1

    @property
    def receptive_radius(self) -> int:
        """Margin of block-wise inference in voxels: the MU-Net's exact receptive half-width
        (one voxel per 3x3x3 convolution), the U-Net's measured halo."""
        return self.halo if self.arch == "unet" else 2 * self.n_blocks

    def to_dict(self) -> dict:
        return asdict(self)


#: Named architectures. ``paper`` is the published T1w network (about 2.3 M parameters);
#: ``cpu`` is ours: a quarter of the depth-width product, so it trains and infers on a laptop.
PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(width=64, n_blocks=9),
    "cpu": ModelConfig(width=32, n_blocks=5),
    "tiny": ModelConfig(width=8, n_blocks=3),
    # multi-scale residual U-Nets (nn/unet.py)
    "unet": ModelConfig(arch="unet", width=24, levels=4, res_blocks=1),
    "unet-wide": ModelConfig(arch="unet", width=32, levels=4, res_blocks=2),
    "unet-tiny": ModelConfig(arch="unet", width=4, levels=3, res_blocks=1),
    # diffusion (module docstring): b0 + 6 DWIs by default, see with_channels()
    "dti-paper": ModelConfig(in_channels=7, out_channels=7, width=192, n_blocks=5,
                             batch_norm=True),
    "dti-cpu": ModelConfig(in_channels=7, out_channels=7, width=48, n_blocks=5, batch_norm=True),
    "dti-tiny": ModelConfig(in_channels=7, out_channels=7, width=8, n_blocks=3, batch_norm=True),
}

#: Presets for diffusion groups (k channels in and out).
DIFFUSION_PRESETS = ("dti-paper", "dti-cpu", "dti-tiny")


def with_channels(config: ModelConfig | str, channels: int) -> ModelConfig:
    """``config`` (or a preset name) with ``channels`` input and output channels - the group
    size k of a diffusion network (7 = b0 + 6 DWIs, 13 = b0 + 12)."""
    from dataclasses import replace

    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown preset {config!r}; choose from {sorted(PRESETS)}")
        config = PRESETS[config]
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    return replace(config, in_channels=channels, out_channels=channels)


class _Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(nn.Conv3d(c, cout, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm3d(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class MUNet(nn.Module):
    """Residual denoiser: ``forward(x)`` returns the predicted residual (target - x)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        n, w = config.n_blocks, config.width
        self.m = (n + 1) // 2
        blocks = []
        for j in range(1, n + 1):
            cin = config.in_channels if j == 1 else (w if j <= self.m else 2 * w)
            blocks.append(_Block(cin, w, config.batch_norm))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv3d(w, config.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.config.n_blocks
        # only the outputs a later block concatenates are kept, and each only until then: at
        # inference (no autograd graph) that is what bounds the memory of a large block
        skips: dict[int, torch.Tensor] = {}
        h = x
        for j, block in enumerate(self.blocks, start=1):
            if j > self.m:
                h = torch.cat([skips.pop(n + 1 - j), h], dim=1)  # block n + 1 - j's output
            h = block(h)
            if j <= n - self.m:
                skips[j] = h
        return self.head(h)

    def flops_per_voxel(self) -> int:
        """Multiply-adds x 2 of one forward pass per output voxel (convolutions only)."""
        total = 0
        for mod in self.modules():
            if isinstance(mod, nn.Conv3d):
                k = mod.kernel_size[0] * mod.kernel_size[1] * mod.kernel_size[2]
                total += 2 * mod.in_channels * mod.out_channels * k
        return total


#: Either network family; both map a (B, C, X, Y, Z) input to its residual.
Network = MUNet | UNet


def build_model(config: ModelConfig | str) -> Network:
    """Build the network (MU-Net or U-Net, by ``config.arch``) from a config or a preset name."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown preset {config!r}; choose from {sorted(PRESETS)}")
        config = PRESETS[config]
    return UNet(config) if config.arch == "unet" else MUNet(config)
