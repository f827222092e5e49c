import numpy as np
import pytest
import torch
from scipy import ndimage

from noise2average.arrays.metrics import psnr
from noise2average.config import DenoiseConfig
from noise2average.nn.device import cpu_has_fast_bf16, resolve_policy
from noise2average.nn.engine import fit
from noise2average.nn.models import PRESETS, ModelConfig, MUNet, build_model
from noise2average.nn.patches import PatchSampler, block_centres, predict_volume
from noise2average.nn.strategies import image_targets
from noise2average.pipeline import denoise


def test_paper_preset_matches_published_size():
    model = build_model("paper")
    n_params = sum(p.numel() for p in model.parameters())
    assert 2.2e6 < n_params < 2.5e6  # "about 2.3 M parameters"
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 19  # 18 3x3x3 layers + the linear head
    # nested skips: blocks 6-9 take 2 x 64 channels
    assert [b[0].in_channels for b in model.blocks] == [1, 64, 64, 64, 64, 128, 128, 128, 128]


def test_munet_keeps_shape_and_is_residual_sized():
    model = MUNet(ModelConfig(in_channels=3, out_channels=3, width=4, n_blocks=3, batch_norm=True))
    x = torch.randn(2, 3, 12, 10, 8)
    assert model(x).shape == x.shape
    with pytest.raises(ValueError):
        ModelConfig(n_blocks=4)


def test_block_inference_does_not_depend_on_block_size():
    torch.manual_seed(0)
    model = MUNet(ModelConfig(width=4, n_blocks=3)).eval()
    vol = np.random.default_rng(0).standard_normal((1, 30, 26, 22)).astype(np.float32)
    mask = np.ones(vol.shape[1:], bool)
    policy = resolve_policy("cpu", "fp32")
    outs = [predict_volume(model, vol, mask, model.config.receptive_radius, policy.to_tensor,
                           block=b) for b in (12, 17, 64)]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-4)


def test_strategies_form_their_targets():
    a, b, c = (np.full((2, 2, 2), v, np.float32) for v in (1.0, 2.0, 6.0))
    cur = np.zeros((2, 2, 2), np.float32)
    assert all(t is cur for t in image_targets("n2a", [a, b], cur))
    n2n = image_targets("n2n", [a, b, c], cur)
    assert [float(t[0, 0, 0]) for t in n2n] == [4.0, 3.5, 1.5]  # mean of the others
    ref = np.ones((2, 2, 2), np.float32)
    assert all(t is ref for t in image_targets("supervised", [a, b], cur, ref))


def test_fit_learns_supervised_residual(phantom):
    reps, ref, mask = phantom
    torch.manual_seed(0)
    model = build_model("tiny")
    z = ((reps[0] - reps[0][mask].mean()) / reps[0][mask].std())[None]
    target = ((ref - reps[0][mask].mean()) / reps[0][mask].std())[None] - z
    sampler = PatchSampler([z], [target], mask, patch=16, batch=2)
    state = fit(model, sampler, 60, 3e-3, resolve_policy("cpu", "fp32"))
    assert np.mean(state.losses[-10:]) < 0.7 * np.mean(state.losses[:10])


def test_block_sampling_covers_the_mask_box(mni_crop):
    _, mask = mni_crop
    centres = block_centres(mask, 16)
    assert len(centres) > 8 and all(mask[tuple(c)] or True for c in centres)


def test_bf16_is_only_automatic_where_the_cpu_has_it():
    policy = resolve_policy("cpu", "auto")
    assert (policy.dtype == torch.bfloat16) == cpu_has_fast_bf16()
    assert resolve_policy("cpu", "fp32").dtype is None


def test_noise2average_beats_the_average(phantom):
    reps, ref, brain = phantom
    mask = brain.copy()
    mask[:, :, :8] = False  # the crop is all brain: leave a slab outside the mask
    avg = np.mean(reps, axis=0)
    cfg = DenoiseConfig(steps=15, iterations=2, threads=1, block_size=48)
    res = denoise(reps, mask, cfg)
    assert res.output.dtype == np.float32 and res.output.shape == ref.shape
    # both iterations ran; the last has a whole-volume result unless it lost on the slab
    assert len(res.history) == 2 and len(res.denoised) == 2
    assert len(res.iterations) == 2 - ("inferred_on" in res.history[-1])
    assert psnr(res.output, ref, mask) > psnr(avg, ref, mask) + 3.0
    # the field of view survives (``blend``): far from the mask the output is the average of
    # the registered repetitions, which differs from the plain one by the resampling only
    far, plain = res.output[:, :, :2].ravel(), avg[:, :, :2].ravel()
    assert np.corrcoef(far, plain)[0, 1] > 0.95 and abs(far.mean() / plain.mean() - 1) < 0.01


def test_blend_weights_ramp_from_the_mask_edge():
    from noise2average.arrays.masking import blend_weights

    mask = np.zeros((9, 9, 9), bool)
    mask[:4] = True
    w = blend_weights(mask, width=3)
    assert np.all(w[:4] == 1) and np.all(w[7:] == 0)
    np.testing.assert_allclose(w[4:7, 4, 4], [0.75, 0.5, 0.25])
    assert np.array_equal(blend_weights(mask, width=0), mask.astype(np.float32))


def test_outside_blend_fades_the_result_into_the_plain_average(mni_crop):
    from noise2average.arrays.masking import BLEND_WIDTH
    from noise2average.arrays.simulate import SimulationConfig, simulate

    t1, head = mni_crop
    reps, _, _ = simulate(t1, head, (1.0, 1.0, 1.0), SimulationConfig(sigma=0.05, seed=3))
    mask = ndimage.binary_erosion(head, iterations=4)  # a tight mask inside the head
    kw = dict(method="pretrained", output_from="average", threads=1, block_size=48,
              precision="fp32")
    blend = denoise(reps, mask, DenoiseConfig(**kw)).output
    zero = denoise(reps, mask, DenoiseConfig(outside="zero", **kw)).output
    mean = np.mean(reps, axis=0)
    distance = ndimage.distance_transform_edt(~mask)
    # the same network pass inside; its box grows by the rim, which the U-Net barely sees
    np.testing.assert_allclose(blend[mask], zero[mask], atol=2e-3 * mean[mask].max())
    far = distance >= BLEND_WIDTH + 1
    np.testing.assert_allclose(blend[far], mean[far], rtol=1e-6)
    # the step from denoised to noisy shrinks with the distance from the mask
    change = [np.abs(blend - mean)[(distance == d) & head].mean() for d in (1, 2, 3)]
    assert change[0] > change[1] > change[2] > 0, change
    assert np.all(zero[~mask] == 0)


def test_three_repetitions_and_noise2noise(mni_crop):
    from noise2average.arrays.simulate import SimulationConfig, simulate

    t1, mask = mni_crop
    reps, ref, _ = simulate(t1, mask, (1.0, 1.0, 1.0), SimulationConfig(sigma=0.08, reps=3, seed=5))
    res = denoise(reps, mask, DenoiseConfig(method="n2n", steps=5, threads=1, outside="average"))
    assert len(res.denoised) == 3 and len(res.iterations) == 1
    assert psnr(res.output, ref, mask) > psnr(np.mean(reps, 0), ref, mask) + 1.0
    np.testing.assert_allclose(res.output[~mask], np.mean(reps, 0)[~mask], rtol=1e-5)


def test_resume_after_an_iteration_gives_the_same_result(phantom):
    reps, _, mask = phantom
    cfg = DenoiseConfig(steps=4, iterations=2, threads=1, block_size=48, seed=7,
                        output_tuning="none")  # resuming is under test, not the tuning
    states = []
    full = denoise(reps, mask, cfg, on_iteration=states.append)
    resumed = denoise(reps, mask, cfg, resume=states[0])
    np.testing.assert_allclose(resumed.output, full.output, atol=1e-5)
    assert [h["iteration"] for h in resumed.history] == [1, 2]


def test_supervised_needs_a_reference(phantom):
    from noise2average.errors import InputError

    reps, _, mask = phantom
    with pytest.raises(InputError, match="reference"):
        denoise(reps, mask, DenoiseConfig(method="supervised", steps=1))


@pytest.mark.parametrize("bad", [dict(iterations=0), dict(steps=-1), dict(lr=0),
                                 dict(method="bm3d"), dict(outside="nan")])
def test_config_rejects_bad_values(bad):
    from noise2average.errors import InputError

    with pytest.raises(InputError):
        DenoiseConfig(**bad)


def test_presets_are_named():
    assert set(PRESETS) >= {"paper", "cpu", "tiny"}
