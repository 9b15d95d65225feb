"""RCAN: the network against the reference code's layer arithmetic, and the method (variants,
step schedule, fit/save/load/predict, resume after a kill)."""

import numpy as np
import pytest
import torch
import yaml
from test_methods import CPU, QUIET, toy_pairs

from emdiffuse.models import lifecycle
from emdiffuse.models.registry import build_method, load_method
from emdiffuse.models.rcan import RCAN, ChannelAttention
from emdiffuse.models.train import train_loop

TINY = {"model": {"n_resgroups": 2, "n_resblocks": 1, "n_feats": 8, "reduction": 4},
        "train": {"iterations": 6, "batch_size": 2, "patch": 16, "lr_step": 2, "checkpoint_every": 2},
        "predict": {"tile": 16, "overlap": 4}}


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def rcan_reference_count(groups, blocks, c, reduction, scale, colors=1):
    """Parameters of yulunzhang/RCAN ``RCAN`` (without MeanShift), from its layers: 3x3 convs with bias."""
    conv = lambda cin, cout, k=3: cin * cout * k * k + cout  # noqa: E731
    rcab = 2 * conv(c, c) + conv(c, c // reduction, 1) + conv(c // reduction, c, 1)
    upsampler = {1: 0, 2: conv(c, 4 * c), 3: conv(c, 9 * c), 4: 2 * conv(c, 4 * c)}[scale]
    return conv(colors, c) + groups * (blocks * rcab + conv(c, c)) + conv(c, c) + upsampler + conv(c, colors)


def test_parameter_counts_match_the_reference_implementations():
    original = RCAN(10, 20, 64, 16, scale=2)
    assert n_params(original) == rcan_reference_count(10, 20, 64, 16, 2) == 15_442_337
    rgb = n_params(RCAN(10, 20, 64, 16, scale=2, n_colors=3))
    assert rgb == rcan_reference_count(10, 20, 64, 16, 2, colors=3) and round(rgb / 1e6, 1) == 15.4  # paper: 15.4M
    assert n_params(RCAN(5, 3, 32, 8, scale=1)) == rcan_reference_count(5, 3, 32, 8, 1) == 337_917  # 3D-RCAN, 2D


@pytest.mark.parametrize("name, counts", [("config.yaml", (38_313, 47_593)), ("test.yaml", (2_531, 4_867))])
def test_parameter_counts_of_the_shipped_cpu_sizes(repo, name, counts):
    """The documented sizes of config/README.md: denoising (no tail) and x2 super-resolution."""
    params = yaml.safe_load((repo / "config" / name).read_text())["methods"]["rcan"]
    method = build_method("rcan", params, device=CPU, seed=0)
    got = []
    for scale in (1, 2):
        method.scale = scale
        net = method._network()
        assert n_params(net) == rcan_reference_count(*(params["model"][k] for k in
                                                      ("n_resgroups", "n_resblocks", "n_feats", "reduction")), scale)
        got.append(n_params(net))
    assert tuple(got) == counts


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_forward_shapes(scale):
    net = RCAN(2, 2, 8, 4, scale=scale)
    assert net(torch.rand(2, 1, 10, 12)).shape == (2, 1, 10 * scale, 12 * scale)


def test_unsupported_scale_is_a_clear_error():
    with pytest.raises(ValueError, match="scale 5"):
        RCAN(1, 1, 8, 4, scale=5)


def test_channel_attention_rescales_each_channel_by_a_sigmoid_gate():
    ca = ChannelAttention(16, 4)
    x = torch.randn(3, 16, 9, 9)
    gate = ca.gate(x)
    assert gate.shape == (3, 16, 1, 1) and (gate > 0).all() and (gate < 1).all()
    torch.testing.assert_close(ca(x), x * gate)


def test_data_mean_and_range_wrap_the_network():
    """3D-RCAN standardisation: the net sees 2x - 1 and its output y is mapped back to (y + 1) / 2."""
    net = RCAN(1, 1, 8, 4, scale=1, data_mean=0.5, data_range=2.0)
    torch.nn.init.zeros_(net.tail[-1].weight)
    torch.nn.init.constant_(net.tail[-1].bias, -0.4)
    torch.testing.assert_close(net(torch.rand(1, 1, 4, 4)), torch.full((1, 1, 4, 4), 0.3))


def test_variant_follows_the_scale_and_unset_values_come_from_it():
    method = build_method("rcan", {"train": {"iterations": 1}}, device=CPU, seed=0)
    method.scale = 1
    assert n_params(method._network()) == 337_917 and method._train_value("lr_step") == 19_200
    assert method._percentiles() == (2.0, 99.9)
    method.scale = 2
    assert n_params(method._network()) == 15_442_337 and method._train_value("batch_size") == 16
    assert method._percentiles() is None
    method = build_method("rcan", {"variant": "denoise", "model": {"n_feats": 16}, "train": {"iterations": 1}},
                          device=CPU, seed=0)
    method.scale = 2
    assert n_params(method._network()) == rcan_reference_count(5, 3, 16, 8, 2)
    with pytest.raises(ValueError, match="rcan.variant: 'big'"):
        build_method("rcan", {"variant": "big", "train": {"iterations": 1}}, device=CPU, seed=0)


@pytest.mark.parametrize("scale", [1, 2])
def test_fit_save_load_predict(tmp_path, scale):
    inputs, targets = toy_pairs(n=4, size=32 // scale, scale=scale)
    method = build_method("rcan", TINY, device=CPU, seed=0)
    history = method.fit(inputs, targets, checkpoint_path=tmp_path / "c.pt", **QUIET)
    assert [h["lr"] for h in history] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5])  # halved every 2
    if scale == 1:  # 3D-RCAN: fixed 2x - 1 standardisation
        assert method.net.data_mean.item() == 0.5 and method.net.data_range == 2.0
    else:  # RCAN: MeanShift by the data mean at rgb_range 255
        assert method.net.data_mean.item() == pytest.approx(targets.mean()) and method.net.data_range == 255.0
    method.save(tmp_path / "m.pt")
    loaded = load_method(tmp_path / "m.pt", device=CPU)
    images = toy_pairs(n=2, size=12)[0]  # smaller than a tile
    a, b = method.predict(images, seed=0, progress=False), loaded.predict(images, seed=0, progress=False)
    assert a["prediction"].shape == (2, 12 * scale, 12 * scale) and set(a) == {"prediction"}
    np.testing.assert_array_equal(a["prediction"], b["prediction"])


def test_sizes_must_fit_the_scale(tmp_path):
    inputs, targets = toy_pairs(n=2, size=16, scale=2)
    params = {**TINY, "train": {**TINY["train"], "patch": 15}}
    with pytest.raises(ValueError, match="rcan.train.patch: 15 must be a multiple of 2"):
        build_method("rcan", params, device=CPU, seed=0).fit(inputs, targets, checkpoint_path=tmp_path / "c", **QUIET)


class Killed(Exception):
    pass


def fit_killed_at(monkeypatch, name, params, pairs, path, kill_at):
    """Fit ``name``, raising Killed after iteration ``kill_at`` (as a kill would, between checkpoints)."""

    def loop(*args, **kwargs):
        def callback(it):
            if it == kill_at:
                raise Killed
        return train_loop(*args, callback=callback, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(lifecycle, "train_loop", loop)
        build_method(name, params, device=CPU, seed=0).fit(*pairs, checkpoint_path=path, **QUIET)


def assert_resume_matches_uninterrupted(monkeypatch, tmp_path, name, params, pairs):
    whole = build_method(name, params, device=CPU, seed=0)
    whole.fit(*pairs, checkpoint_path=tmp_path / "a.pt", **QUIET)
    fit_killed_at(monkeypatch, name, params, pairs, tmp_path / "b.pt", kill_at=3)  # last checkpoint at 2
    messages = []
    resumed = build_method(name, params, device=CPU, seed=0)
    resumed.fit(*pairs, checkpoint_path=tmp_path / "b.pt", progress=False, log=messages.append)
    assert "resuming at iteration 2/" in messages[0]
    sa, sb = whole.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [(h["loss"], h["lr"]) for h in whole.history] == [(h["loss"], h["lr"]) for h in resumed.history]


@pytest.mark.parametrize("scale", [1, 2])
def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(monkeypatch, tmp_path, scale):
    pairs = toy_pairs(n=4, size=32 // scale, scale=scale)
    assert_resume_matches_uninterrupted(monkeypatch, tmp_path, "rcan", TINY, pairs)
