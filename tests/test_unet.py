"""The multi-scale U-Net: any input shape, residual output, weights round trip, block inference."""

import numpy as np
import pytest
import torch

from noise2average.io.weights import load_model, save_model
from noise2average.nn.device import resolve_policy
from noise2average.nn.models import PRESETS, ModelConfig, UNet, build_model
from noise2average.nn.patches import predict_volume


def test_unet_takes_any_shape():
    torch.manual_seed(0)
    model = build_model("unet-tiny").eval()
    for shape in [(13, 10, 7), (16, 16, 16), (5, 9, 22)]:
        x = torch.randn(1, 1, *shape)
        with torch.no_grad():
            assert model(x).shape == x.shape


def test_unet_is_bias_free_and_homogeneous():
    """Bias-free ReLU layers: scaling the input by a > 0 scales the residual by a."""
    torch.manual_seed(0)
    model = build_model("unet-tiny").eval()
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    x = torch.randn(1, 1, 12, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(3.0 * x), 3.0 * model(x), rtol=1e-4, atol=1e-5)


def test_unet_widths_and_cost():
    cfg = PRESETS["unet"]
    assert cfg.widths == (24, 48, 96, 192)
    model = build_model(cfg)
    # most of the work runs at coarse scales: cheaper per voxel than the MU-Net cpu preset
    assert model.flops_per_voxel() < build_model("cpu").flops_per_voxel()
    with pytest.raises(ValueError):
        ModelConfig(arch="unet", levels=1)
    with pytest.raises(ValueError):
        ModelConfig(arch="resnet")


def test_unet_weights_round_trip(tmp_path):
    torch.manual_seed(1)
    model = build_model("unet-tiny")
    save_model(tmp_path / "m.safetensors", model, {"note": "test"})
    loaded, meta = load_model(tmp_path / "m.safetensors")
    assert isinstance(loaded, UNet) and loaded.config == model.config
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_unet_block_inference_on_its_lattice_matches_whole_volume():
    """Blocks kept on the U-Net's 2^(levels-1) lattice, with a halo, reproduce one whole-volume
    pass; off the lattice (align=1) they differ whatever the halo, the network being
    shift-equivariant only by whole strides."""
    torch.manual_seed(0)
    model = UNet(ModelConfig(arch="unet", width=4, levels=3, halo=12)).eval()
    for mod in model.modules():  # residual branches live, not the identity of the init
        if isinstance(mod, torch.nn.Conv3d):
            mod.reset_parameters()
    vol = np.random.default_rng(0).standard_normal((1, 40, 36, 32)).astype(np.float32)
    mask = np.ones(vol.shape[1:], bool)
    mask[:3] = False  # a bounding box that does not start at 0
    policy = resolve_policy("cpu", "fp32")
    align = model.config.grid_alignment
    assert align == 4

    def run(block, halo, a):
        return predict_volume(model, vol, mask, halo, policy.to_tensor, block=block, align=a)

    whole = run(64, 12, align)
    aligned = np.abs(run(17, 12, align) - whole).max()
    unaligned = np.abs(run(17, 12, 1) - whole).max()
    assert aligned < 0.1 * unaligned


def test_noise_map_network_gets_the_noise_sd_of_what_it_denoises(phantom):
    """A network pre-trained with a noise-map channel gets, after the image, the local noise
    SD in the image's normalized units: one repetition's for a repetition, 1 / sqrt(N) of it
    for the registered average of the final pass; and fine-tuning trains it with that channel."""
    from dataclasses import replace

    from noise2average.arrays.noise import estimate_sigma
    from noise2average.arrays.normalize import Norm
    from noise2average.config import DenoiseConfig
    from noise2average.pipeline import denoise

    reps, _, mask = phantom
    torch.manual_seed(0)
    model = build_model(replace(PRESETS["unet-tiny"], in_channels=2))
    seen = []
    model.register_forward_pre_hook(
        lambda mod, args: seen.append(float(args[0][:, 1].float().median())))
    res = denoise(reps, mask, DenoiseConfig(steps=2, iterations=1, holdout=0, threads=1),
                  init_model=model)
    assert np.isfinite(res.output).all() and res.output.shape == reps[0].shape
    expected = estimate_sigma(reps, mask) / Norm.fit(reps[0], mask).std
    first, last = seen[0], seen[-1]  # a training patch of a repetition; the average's pass
    assert 0.6 < first / expected < 1.5, (first, expected)
    inferred = seen[2:]  # after the two training steps: each repetition, then the average
    assert abs(inferred[-1] / inferred[0] - 1 / np.sqrt(2)) < 0.1, inferred
