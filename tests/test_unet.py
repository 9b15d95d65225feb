"""The EMDiffuse U-Net: shapes, official layout, initialisation, mixed precision."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emdiffuse.models.unet import PRESETS, AttentionBlock, DiffusionUNet, count_parameters


def _attention_names(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if isinstance(m, AttentionBlock)]


@pytest.mark.parametrize("preset,size", [("tiny", (16, 16)), ("tiny", (8, 24)),
                                         ("cpu-small", (16, 16)), ("cpu-small", (24, 40))])
def test_output_shape(preset, size):
    net = DiffusionUNet(**PRESETS[preset])
    out = net(torch.randn(3, 2, *size), torch.rand(3))
    assert out.shape == (3, 1, *size)


def test_size_not_divisible_raises():
    net = DiffusionUNet(**PRESETS["cpu-small"])  # 4 levels: needs multiples of 8
    with pytest.raises(ValueError, match="divisible by 8"):
        net(torch.randn(1, 2, 16, 18), torch.rand(1))


def test_official_layout_attention_only_in_middle():
    """attn_res=[16] with 4 levels: ds only reaches 8, so the middle block has the only attention."""
    net = DiffusionUNet(**PRESETS["official"])
    assert _attention_names(net) == ["middle_block.1"]
    assert net.middle_block[1].num_heads == 256 // 32
    # verified equal to a transcription of the official module (strict state-dict load, same output)
    assert count_parameters(net) == 15_677_345


def test_attn_res_is_a_downsampling_factor():
    net = DiffusionUNet(**dict(PRESETS["tiny"], attn_res=(2,)))  # level 1 of 2 (ds = 2)
    assert _attention_names(net) == ["input_blocks.3.1", "middle_block.1",
                                     "output_blocks.0.1", "output_blocks.1.1"]


def test_output_is_zero_at_init():
    net = DiffusionUNet(**PRESETS["tiny"])
    assert torch.count_nonzero(net(torch.randn(2, 2, 16, 16), torch.rand(2))) == 0


def test_gamma_changes_output_once_layers_are_nonzero():
    """gamma enters through the (zero-initialised) residual branches, so perturb all zero layers."""
    net = DiffusionUNet(**PRESETS["tiny"]).eval()
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.any():
            nn.init.normal_(m.weight, std=0.05)
    x = torch.randn(2, 2, 16, 16)
    out_low, out_high = net(x, torch.full((2,), 0.1)), net(x, torch.full((2,), 0.9))
    assert (out_low - out_high).abs().max() > 1e-3


def test_kaiming_init_matches_official_training_and_is_nonzero():
    net = DiffusionUNet(**dict(PRESETS["tiny"], init="kaiming"))
    assert net.out[-1].weight.abs().sum() > 0 and net.out[-1].bias.abs().sum() == 0
    with pytest.raises(ValueError, match="init"):
        DiffusionUNet(**dict(PRESETS["tiny"], init="xavier"))


def test_loads_official_conv1d_attention_weights():
    net = DiffusionUNet(**PRESETS["tiny"])
    state = {k: (v[..., 0] if k.startswith("middle_block.1.") and v.dim() == 4 else v)
             for k, v in net.state_dict().items()}
    assert state["middle_block.1.qkv.weight"].dim() == 3
    DiffusionUNet(**PRESETS["tiny"]).load_state_dict(state, strict=True)


def test_bf16_autocast_channels_last_close_to_fp32():
    torch.manual_seed(0)
    net = DiffusionUNet(**dict(PRESETS["cpu-small"], init="kaiming")).eval()
    x, gamma = torch.randn(2, 2, 32, 32), torch.tensor([0.2, 0.8])
    with torch.no_grad():
        ref = net(x, gamma)
        net_cl = net.to(memory_format=torch.channels_last)
        x_cl = x.to(memory_format=torch.channels_last)
        out_cl = net_cl(x_cl, gamma)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = net_cl(x_cl, gamma)
    assert torch.allclose(out_cl, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    rel = (out_bf16.float() - ref).norm() / ref.norm()
    assert out_bf16.shape == ref.shape and rel < 0.05


def test_zero_init_outputs_zeroes_only_the_given_channels():
    net = DiffusionUNet(**dict(PRESETS["tiny"], out_channel=2, init="kaiming")).eval()
    net.zero_init_outputs(1)
    out = net(torch.randn(2, 2, 16, 16), torch.rand(2))
    assert out[:, 0].abs().max() > 0 and out[:, 1].abs().max() == 0


def test_official_reference_weights_load_and_compute_the_same_function(repo):
    """bench/reference_unet.py runs the official architecture the official way (fp32 GroupNorm, einsum
    attention on Conv1d projections); its state dict loads strictly into ours, same outputs."""
    spec = importlib.util.spec_from_file_location("reference_unet", repo / "bench" / "reference_unet.py")
    ref_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_module)
    ref = ref_module.trained_like_(ref_module.ReferenceUNet(**ref_module.OFFICIAL)).eval()
    ours = DiffusionUNet(**PRESETS["official"]).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x, gamma = torch.randn(2, 2, 32, 32), torch.tensor([0.3, 0.9])
    with torch.no_grad():
        expected, out = ref(x, gamma), ours(x, gamma)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def _reference_module(repo):
    spec = importlib.util.spec_from_file_location("reference_unet", repo / "bench" / "reference_unet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_inference_shortcuts_compute_the_training_function(repo, layout):
    """Without autograd the net folds FiLM into the norm when the batch shares one noise level, runs
    SiLU and the residual add in place and convolves up-sampling blocks on the small image; with
    autograd it runs the plain official sequence. Both give the official function (fp32)."""
    ref_module = _reference_module(repo)
    net = ref_module.trained_like_(DiffusionUNet(**PRESETS["cpu-small"]), seed=3).eval().to(memory_format=layout)
    x = torch.randn(3, 2, 64, 64).contiguous(memory_format=layout)
    for gamma in (torch.tensor([0.4]), torch.full((3,), 0.4), torch.tensor([0.1, 0.5, 0.9])):
        with torch.enable_grad():
            expected = net(x, gamma).detach()
        with torch.no_grad():
            out = net(x, gamma)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="gamma has 2 values for a batch of 3"):
        net(x, torch.rand(2))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [True, False])
def test_upsample_conv_equals_conv_of_the_upsampled_image(layout, bias):
    from emdiffuse.models.unet import upsample_conv

    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, bias=bias)
    h = torch.randn(2, 6, 7, 9).contiguous(memory_format=layout)
    with torch.no_grad():
        expected = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = upsample_conv(conv, h)
    assert out.shape == (2, 5, 14, 18) and out.is_contiguous(memory_format=layout)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_head_groups_and_log_snr_embedding_options():
    """Off by default (official); the variant's head keeps channels together and its embedding
    separates noise levels near alpha_bar 1 that the official gamma sinusoid barely tells apart."""
    torch.manual_seed(0)
    kw = dict(PRESETS["tiny"], init="kaiming")
    official, variant = DiffusionUNet(**kw), DiffusionUNet(**kw, out_norm_groups=2, noise_embedding="log_snr")
    assert official.out[0].num_groups == 8 and variant.out[0].num_groups == 2
    x = torch.randn(1, 2, 16, 16)
    near_one = torch.tensor([0.999]), torch.tensor([0.99999])
    with torch.no_grad():
        d_official = (official(x, near_one[0]) - official(x, near_one[1])).abs().mean()
        variant.load_state_dict(official.state_dict(), strict=False)
        d_variant = (variant(x, near_one[0]) - variant(x, near_one[1])).abs().mean()
    assert d_variant > 10 * d_official
    with pytest.raises(ValueError, match="noise_embedding"):
        DiffusionUNet(**kw, noise_embedding="sigma")
