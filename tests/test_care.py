"""CARE port: architecture size, shapes, init, normalisation, and that a short run denoises."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from emdiffuse.models.care import CAREUNet, PercentileNormalizer, normalize_pairs, percentile_normalize


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def test_parameter_count_matches_csbdeep_default():
    # depth 2, 32 first filters, 5x5: 32,32 | 64,64 | bottom 128,64 | up 64,32 | up 32,32 | 1x1 -> 1
    expected = (
        conv(5, 1, 32) + conv(5, 32, 32)          # down level 0:    832 + 25632
        + conv(5, 32, 64) + conv(5, 64, 64)       # down level 1:  51264 + 102464
        + conv(5, 64, 128) + conv(5, 128, 64)     # bottom:       204928 + 204864
        + conv(5, 64 + 64, 64) + conv(5, 64, 32)  # up level 1:   204864 + 51232 (concat [up, skip])
        + conv(5, 32 + 32, 32) + conv(5, 32, 32)  # up level 0:    51232 + 25632
        + conv(1, 32, 1)                          # 1x1 linear head: 33
    )
    assert expected == 922_977
    assert sum(p.numel() for p in CAREUNet().parameters()) == expected


@pytest.mark.parametrize("depth,size", [(1, 10), (2, 32), (3, 24)])
def test_forward_shapes(depth, size):
    net = CAREUNet(n_depth=depth, kern_size=3, n_first=4)
    assert net(torch.rand(2, 1, size, size + 2**depth)).shape == (2, 1, size, size + 2**depth)


def test_glorot_init_zero_bias_and_no_identity_at_init():
    torch.manual_seed(0)
    net = CAREUNet(n_first=8)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in, fan_out = m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
            assert torch.all(m.bias == 0)
    x = torch.rand(1, 1, 16, 16)
    assert not torch.allclose(net(x), x)  # residual, but the Glorot head is not zero


def test_size_not_divisible_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*n_depth = 4"):
        CAREUNet(n_first=4)(torch.rand(1, 1, 18, 16))


def test_percentile_normalisation_and_do_after_round_trip():
    x = np.random.default_rng(0).normal(5, 2, (64, 64)).astype(np.float32)
    xn, lo, hi = percentile_normalize(x, 2, 99.8)
    assert np.isclose(np.percentile(xn, 2), 0, atol=1e-6) and np.isclose(np.percentile(xn, 99.8), 1, atol=1e-5)
    norm = PercentileNormalizer()
    xn, lo_hi = norm.before(x)
    np.testing.assert_allclose(norm.after(xn, lo_hi), x, rtol=1e-5, atol=1e-5)


def test_training_normalisation_uses_each_image_own_percentiles():
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 16, 16)), 10 + 5 * rng.random((3, 16, 16))
    xn, yn = normalize_pairs(x, y, np.random.default_rng(1), (1, 3), (99.5, 99.9))
    assert xn.shape == x.shape and 0.9 < yn.max() < 1.1 and -0.1 < yn.min() < 0.1
    xn2, _ = normalize_pairs(x, y, np.random.default_rng(1), (1, 3), (99.5, 99.9))
    np.testing.assert_array_equal(xn, xn2)


def test_short_care_run_denoises(tmp_path):
    from emdiffuse.models.registry import build_method

    rng = np.random.default_rng(0)
    clean = np.stack([gaussian_filter(rng.random((32, 32)), 2) for _ in range(8)])
    clean = ((clean - clean.min()) / np.ptp(clean) * 0.6 + 0.2).astype(np.float32)
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    params = {"model": {"n_first": 8},
              "train": {"iterations": 80, "batch_size": 8, "patch": 32, "lr": 2e-3, "steps_per_epoch": 20}}
    care = build_method("care", params, device=torch.device("cpu"), seed=0)
    care.fit(noisy, clean, checkpoint_path=tmp_path / "ckpt.pt", progress=False, log=lambda *_: None)
    pred = care.predict(noisy, seed=0, progress=False)["prediction"]
    assert np.abs(pred - clean).mean() < 0.7 * np.abs(noisy - clean).mean()
