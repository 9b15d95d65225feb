"""PSSR: the network against the layer arithmetic of BPHO-Salk/PSSR + fastai v1 DynamicUnet, its
structure, and the method (one-cycle AdamW, fit/save/load/predict, resume after a kill)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from test_methods import CPU, QUIET, toy_pairs
from test_rcan import assert_resume_matches_uninterrupted, n_params

from emdiffuse.models.pssr import PSSRUNet, SelfAttention
from emdiffuse.models.registry import build_method, load_method

TINY = {"model": {"width_mult": 1 / 16},
        "train": {"iterations": 6, "batch_size": 2, "patch": 32, "checkpoint_every": 2},
        "predict": {"tile": 32, "overlap": 8}}

pytestmark = pytest.mark.usefixtures("one_thread")


def pssr_reference_count(n_in=1, n_out=1, width=1.0, layers=(3, 4, 6, 3)):
    """Parameters of ``wnres_unet_model(wnresnet34)`` from the reference layers. A weight-normed conv
    holds v (out x in x k x k) and g (out), plus a bias in fastai's ``conv_layer`` (not in PSSR's
    encoder); BatchNorm holds 2 x C; SelfAttention q, k (C x C/8), v (C x C) and gamma. ``width``
    scales every channel count of the encoder (the decoder follows from it), ``layers`` sets the
    blocks per stage (a CPU-size copy)."""
    c = lambda n: max(1, round(n * width))  # noqa: E731
    wn = lambda cin, cout, k, bias=True: cout * cin * k * k + cout + cout * bias  # noqa: E731
    total = wn(n_in, c(32), 3, False) + wn(c(32), c(32), 3, False) + wn(c(32), c(64), 3, False)  # stem
    stages = list(zip([c(64), c(64), c(128), c(256)], [c(64), c(128), c(256), c(512)], layers))
    for cin, cout, blocks in stages:
        total += wn(cin, cout, 1, False) * (cin != cout)  # idconv
        total += wn(cin, cout, 1, False) + (blocks - 1) * wn(cout, cout, 1, False) + blocks * wn(cout, cout, 3, False)
    bottom = c(512)
    total += 2 * bottom + wn(bottom, 2 * bottom, 3) + wn(2 * bottom, bottom, 3)  # BN + middle conv
    up = bottom
    for i, skip in enumerate([c(512), c(256), c(128), c(64), c(64)]):  # hooks: layer4..layer1, stem
        cin = up // 2 + skip
        nf = cin // 2 if i == 4 else cin
        total += wn(up, (up // 2) * 4, 1) + 2 * skip + wn(cin, nf, 3) + wn(nf, nf, 3)
        total += (2 * nf * (nf // 8) + nf * nf + 1) if i == 2 else 0
        up = nf
    n = up + n_in  # final PixelShuffle_ICNR, last_cross
    return total + wn(up, up * 4, 1) + wn(n, n // 2, 3) + wn(n // 2, n, 3) + wn(n, n_out, 1)


def test_parameter_count_matches_the_reference_layer_arithmetic():
    assert n_params(PSSRUNet(scale=2)) == pssr_reference_count() == 48_945_614
    assert n_params(PSSRUNet(scale=4, n_in=5)) == pssr_reference_count(n_in=5)  # PSSR's multi-frame input
    assert n_params(PSSRUNet(1, width_mult=0.25, layers=(2, 2, 2, 2))) == pssr_reference_count(width=0.25,
                                                                                                layers=(2, 2, 2, 2))


@pytest.mark.parametrize("name, count", [("config.yaml", 768_934), ("test.yaml", 157_248)])
def test_parameter_counts_of_the_shipped_cpu_sizes(repo, name, count):
    """The documented sizes of config/README.md (the same for both tasks: the scale adds no weights)."""
    model = yaml.safe_load((repo / "config" / name).read_text())["methods"]["pssr"]["model"]
    nets = [PSSRUNet(scale, **model) for scale in (1, 2)]
    layers = model.get("layers", (3, 4, 6, 3))
    assert [n_params(n) for n in nets] == [pssr_reference_count(width=model["width_mult"], layers=layers)] * 2
    assert n_params(nets[0]) == count


def test_layers_must_be_four_positive_counts():
    with pytest.raises(ValueError, match=r"pssr.model.layers: \[2, 2\]"):
        PSSRUNet(1, layers=(2, 2))


@pytest.mark.parametrize("scale,size", [(1, 64), (2, 32), (4, 16)])
def test_forward_shapes_and_the_global_pool_bottleneck(scale, size):
    net = PSSRUNet(scale, width_mult=1 / 16)
    x = torch.rand(2, 1, size, size)
    assert net(x).shape == (2, 1, size * scale, size * scale)
    skips, bottom = net.encoder(torch.rand(2, 1, 64, 64))
    assert [s.shape[-1] for s in skips] == [32, 16, 8, 4, 2] and bottom.shape[-2:] == (1, 1)


def test_structure_weight_norm_everywhere_attention_in_the_third_from_last_block():
    net = PSSRUNet(2, width_mult=1 / 8)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") and hasattr(m.parametrizations, "weight") for m in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.encoder.modules())
    assert [any(isinstance(m, SelfAttention) for m in b.modules()) for b in net.blocks] == [0, 0, 1, 0, 0]
    assert not any(isinstance(m, SelfAttention) for m in PSSRUNet(2, width_mult=1 / 8, self_attention=False).modules())


def test_self_attention_starts_as_identity():
    sa = SelfAttention(16)
    x = torch.randn(2, 16, 5, 5)
    torch.testing.assert_close(sa(x), x)
    sa.gamma.data.fill_(1.0)
    assert not torch.allclose(sa(x), x)


def test_the_input_is_bilinearly_upsampled_first():
    net2 = PSSRUNet(2, width_mult=1 / 16).eval()
    net1 = PSSRUNet(1, width_mult=1 / 16).eval()
    net1.load_state_dict(net2.state_dict())
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net2(x), net1(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)))


@pytest.mark.parametrize("scale", [1, 2])
def test_fit_save_load_predict(tmp_path, scale):
    inputs, targets = toy_pairs(n=4, size=32 // scale, scale=scale)
    method = build_method("pssr", TINY, device=CPU, seed=0)
    history = method.fit(inputs, targets, checkpoint_path=tmp_path / "c.pt", **QUIET)
    lrs = [h["lr"] for h in history]
    assert lrs[0] == pytest.approx(4e-4 / 25) and max(lrs) == pytest.approx(4e-4, rel=0.05) and lrs[-1] < 1e-5
    assert method.stats == pytest.approx((inputs.mean(), inputs.std()))
    method.save(tmp_path / "m.pt")
    loaded = load_method(tmp_path / "m.pt", device=CPU)
    images = toy_pairs(n=2, size=12)[0]  # smaller than a tile and not a multiple of 32 / scale
    a, b = method.predict(images, seed=0, progress=False), loaded.predict(images, seed=0, progress=False)
    assert a["prediction"].shape == (2, 12 * scale, 12 * scale) and set(a) == {"prediction"}
    np.testing.assert_array_equal(a["prediction"], b["prediction"])


def test_one_cycle_adamw_settings(tmp_path):
    inputs, targets = toy_pairs(n=4, size=32)
    method = build_method("pssr", TINY, device=CPU, seed=0)
    method.fit(inputs, targets, checkpoint_path=tmp_path / "c.pt", **QUIET)
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    group = ckpt["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 1e-3 and group["betas"][1] == 0.99
    assert (group["base_momentum"], group["max_momentum"]) == (0.85, 0.95)  # beta1 cycled 0.95 -> 0.85 -> 0.95
    assert ckpt["scheduler"]["total_steps"] == 6 and ckpt["scheduler"]["last_epoch"] == 6


def test_resume_after_a_kill_and_a_longer_cycle_is_another_run(monkeypatch, tmp_path):
    pairs = toy_pairs(n=4, size=16, scale=2)
    assert_resume_matches_uninterrupted(monkeypatch, tmp_path, "pssr", TINY, pairs)
    longer = {**TINY, "train": {**TINY["train"], "iterations": 8}}
    messages = []
    history = build_method("pssr", longer, device=CPU, seed=0).fit(*pairs, checkpoint_path=tmp_path / "a.pt",
                                                                    progress=False, log=messages.append)
    assert len(history) == 8 and "different run" in messages[0] and (tmp_path / "a.stale.pt").exists()


def test_params_errors():
    with pytest.raises(ValueError, match="pssr.train.batch_size: must be >= 2"):
        build_method("pssr", {"train": {"iterations": 1, "batch_size": 1}}, device=CPU, seed=0)
    with pytest.raises(ValueError, match=r"pssr.model: unknown key\(s\) \['width'\]"):
        build_method("pssr", {"model": {"width": 2}, "train": {"iterations": 1}}, device=CPU, seed=0)
