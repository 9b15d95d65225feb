"""The difficulty-aware (aleatoric) loss: its form at init, what the learned log-scale means, sampling."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from emdiffuse.models.diffusion import ConditionalDiffusion, aleatoric_loss
from emdiffuse.models.registry import build_method
from emdiffuse.models.unet import PRESETS, DiffusionUNet

TRAIN = {"kind": "linear", "start": 1e-6, "end": 1e-2, "steps": 2000}
TEST = {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 1000}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _aleatoric(init: str = "kaiming") -> ConditionalDiffusion:
    torch.manual_seed(0)
    net = DiffusionUNet(**dict(PRESETS["tiny"], out_channel=2, init=init))
    return ConditionalDiffusion(net, TRAIN, TEST, loss="aleatoric")


class EpsChannel(nn.Module):
    """The eps_hat channel of a two-headed net, as a plain one-channel eps net."""

    out_channel = 1

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, gamma):
        return self.net(x, gamma)[:, :1]


def test_loss_formula():
    """Plain MSE for the denoiser; the log-scale term only on items at alpha_bar >= 0.08, on the
    detached error (no gradient reaches eps_hat through it), with s clamped."""
    eps_hat, eps, s = torch.randn(3, 2, 1, 4, 4, generator=_gen(0)).unbind(0)
    gamma = torch.tensor([0.5, 0.01])
    mse = ((eps_hat - eps) ** 2).mean()
    head = (0.5 * (torch.exp(-2 * s[:1]) * (eps_hat[:1] - eps[:1]) ** 2 + 2 * s[:1])).mean()
    assert torch.allclose(aleatoric_loss(eps_hat, eps, s, gamma), mse + head)
    assert torch.allclose(aleatoric_loss(eps_hat, eps, s, torch.tensor([0.01, 0.01])), mse)
    eps_hat.requires_grad_(True)
    aleatoric_loss(eps_hat, eps, 100 * s, gamma).backward()
    torch.testing.assert_close(eps_hat.grad, torch.autograd.grad(((eps_hat - eps) ** 2).mean(), eps_hat)[0])
    big = aleatoric_loss(eps_hat.detach(), eps, torch.full_like(s, -50.0), torch.tensor([0.5, 0.5]))
    assert torch.isfinite(big) and big < 1e6  # clamped at s = -5


def test_at_init_the_loss_is_the_plain_mse_plus_half_of_it_where_the_head_trains():
    """s is zero-initialised even under kaiming init: at first the head term is half the MSE of the
    items it trains on."""
    model = _aleatoric("kaiming")
    assert model.out_channels == 1
    x = torch.randn(2, 2, 16, 16)
    assert model.net(x, torch.rand(2))[:, 1].abs().max() == 0
    plain = ConditionalDiffusion(EpsChannel(model.net), TRAIN, TEST, loss="mse")
    ratios = set()
    for seed in range(12):  # one item per batch: its noise level decides whether the head trains
        cond, target = torch.rand(2, 1, 1, 16, 16, generator=_gen(seed)) * 2 - 1
        ratio = model.loss(cond, target, _gen(seed)).item() / plain.loss(cond, target, _gen(seed)).item()
        ratios.add(round(ratio, 5))
    assert ratios == {1.0, 1.5}


def test_aleatoric_needs_an_even_number_of_output_channels():
    with pytest.raises(ValueError, match="2C output channels"):
        ConditionalDiffusion(DiffusionUNet(**PRESETS["tiny"]), TRAIN, TEST, loss="aleatoric")
    with pytest.raises(ValueError, match="aleatoric"):
        ConditionalDiffusion(DiffusionUNet(**PRESETS["tiny"]), TRAIN, TEST).difficulty(torch.zeros(1, 1, 8, 8),
                                                                                      torch.zeros(1, 1, 8, 8))


def _heteroscedastic_batch(gen: torch.Generator, n: int = 8, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth images; condition and target both carry noise of std 0.4 in the right half, none in the left."""
    clean = torch.nn.functional.interpolate(torch.rand(n, 1, 4, 4, generator=gen), size=size, mode="bilinear")
    sigma = torch.zeros(1, 1, size, size)
    sigma[..., size // 2:] = 0.4
    noisy = [clean * 1.2 - 0.6 + sigma * torch.randn(clean.shape, generator=gen) for _ in range(2)]
    return noisy[0].clamp(-1, 1), noisy[1].clamp(-1, 1)


def test_learned_log_scale_is_larger_where_the_error_is_larger():
    torch.manual_seed(0)
    model = _aleatoric("zero")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = _gen(0)
    for _ in range(100):
        cond, target = _heteroscedastic_batch(gen)
        loss = model.loss(cond, target, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cond, target = _heteroscedastic_batch(_gen(99), n=16)
    s = model.difficulty(cond, target, generator=_gen(5))
    assert s.shape == target.shape
    left, right = s[..., 2:6].mean().item(), s[..., 10:14].mean().item()  # away from the boundary
    assert right > left + 0.2, (left, right)  # ~0.5 after 100 steps, 0.6 after 200


def test_sampling_uses_the_eps_channel_and_shapes_are_right():
    model = _aleatoric()
    cond = torch.rand(3, 1, 16, 16) * 2 - 1
    x = model.sample(cond, sampler="dpmpp2m", steps=3, generator=_gen(0))
    assert x.shape == (3, 1, 16, 16) and x.dtype == torch.float32
    plain = ConditionalDiffusion(EpsChannel(model.net), TRAIN, TEST, loss="mse")
    assert torch.equal(x, plain.sample(cond, sampler="dpmpp2m", steps=3, generator=_gen(0)))
    assert model.difficulty(cond, x, generator=_gen(1)).shape == (3, 1, 16, 16)


def test_method_trains_with_difficulty_loss_and_predicts_a_difficulty_map(tmp_path):
    rng = np.random.default_rng(0)
    targets = np.stack([gaussian_filter(rng.random((24, 24)), 2) * 2 + 0.2 for _ in range(4)]).astype(np.float32)
    inputs = np.clip(targets + rng.normal(0, 0.1, targets.shape), 0, 1).astype(np.float32)
    params = {"model": {"preset": "tiny"}, "train": {"iterations": 3, "batch_size": 2, "patch": 16, "warmup": 1,
                                                     "difficulty_loss": True},
              "predict": {"steps": 2, "samples": 2, "tile": 16, "overlap": 4, "batch": 2, "difficulty": True}}
    method = build_method("emdiffuse", params, device=torch.device("cpu"), seed=0)
    assert method.diffusion.net.out_channel == 2
    method.fit(inputs, targets, checkpoint_path=tmp_path / "c.pt", progress=False, log=lambda *_: None)
    out = method.predict(inputs[:2, :20, :20], seed=0, progress=False)
    assert set(out) == {"prediction", "uncertainty", "difficulty"}
    assert all(v.shape == (2, 20, 20) and v.dtype == np.float32 for v in out.values())
    assert np.isfinite(out["difficulty"]).all()
    with pytest.raises(ValueError, match="predict.difficulty: needs train.difficulty_loss"):
        build_method("emdiffuse", {**params, "train": {**params["train"], "difficulty_loss": False}},
                     device=torch.device("cpu"), seed=0)
