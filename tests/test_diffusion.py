"""Conditional diffusion: schedules, loss, sampler semantics and exactness on a Gaussian toy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emdiffuse.models.diffusion import (
    PRECISIONS, SAMPLERS, ConditionalDiffusion, alpha_bars, make_betas, resolve_precision,
)
from emdiffuse.models.unet import PRESETS, DiffusionUNet

TRAIN = {"kind": "linear", "start": 1e-6, "end": 1e-2, "steps": 2000}
TEST = {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 1000}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny_diffusion(init: str = "kaiming") -> ConditionalDiffusion:
    torch.manual_seed(0)
    return ConditionalDiffusion(DiffusionUNet(**dict(PRESETS["tiny"], init=init)), TRAIN, TEST)


class GaussianOracle(nn.Module):
    """Exact eps-prediction when every target pixel is x0 ~ N(mu, s^2), independent of the condition."""

    out_channel = 1

    def __init__(self, mu: float, s: float):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x, gamma):
        y, g = x[:, 1:].double(), gamma.double().view(-1, 1, 1, 1)
        x0_mean = self.mu + g.sqrt() * self.s**2 * (y - g.sqrt() * self.mu) / (g * self.s**2 + 1 - g)
        return ((y - g.sqrt() * x0_mean) / (1 - g).sqrt()).float()


class GammaRecorder(nn.Module):
    out_channel = 1

    def __init__(self):
        super().__init__()
        self.gammas: list[float] = []

    def forward(self, x, gamma):
        self.gammas.append(gamma[0].item())
        return torch.zeros_like(x[:, 1:])


def test_schedule_endpoints():
    assert alpha_bars(TRAIN)[-1] == pytest.approx(4.386e-5, rel=1e-3)
    assert alpha_bars(TEST)[-1] == pytest.approx(6.60e-21, rel=1e-2)
    assert alpha_bars(dict(TEST, steps=200))[-1] == pytest.approx(9.20e-5, rel=1e-2)
    betas = make_betas("linear", 1e-4, 0.09, 1000)
    assert betas.dtype == np.float64 and betas[0] == 1e-4 and betas[-1] == 0.09
    cosine = make_betas("cosine", 0, 0, 1000)
    assert 0 < cosine.min() and cosine.max() <= 0.999
    with pytest.raises(ValueError, match="linear"):
        make_betas("quad", 1e-4, 0.02, 10)
    with pytest.raises(ValueError, match="steps"):
        alpha_bars({"kind": "linear", "start": 1e-4, "end": 0.02})


def test_loss_is_finite_reproducible_and_backpropagates():
    model = _tiny_diffusion()
    cond, target = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    loss = model.loss(cond, target, generator=_gen(0))
    assert torch.isfinite(loss) and loss.ndim == 0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.net.out[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert model.loss(cond, target, _gen(0)) == model.loss(cond, target, _gen(0))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_shape_and_seeding(sampler):
    model = _tiny_diffusion()
    cond = (torch.rand(1, 1, 16, 16) * 2 - 1).expand(3, -1, -1, -1)  # K = 3 copies
    a = model.sample(cond, sampler=sampler, steps=4, generator=_gen(1))
    b = model.sample(cond, sampler=sampler, steps=4, generator=_gen(1))
    c = model.sample(cond, sampler=sampler, steps=4, generator=_gen(2))
    assert a.shape == (3, 1, 16, 16) and a.abs().max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # the K copies are independent samples


def test_sampling_restores_train_mode_and_rejects_unknown_sampler():
    model = _tiny_diffusion().train()
    model.sample(torch.zeros(1, 1, 8, 8), sampler="ddim", steps=2)
    assert model.net.training
    with pytest.raises(ValueError, match="ancestral.*ddim.*dpmpp2m"):
        model.sample(torch.zeros(1, 1, 8, 8), sampler="euler")
    with pytest.raises(ValueError, match="spacing"):
        model.sample(torch.zeros(1, 1, 8, 8), spacing="karras")
    with pytest.raises(ValueError, match="steps"):
        model.sample(torch.zeros(1, 1, 8, 8), sampler="ddim", steps=1001)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_noise_groups_share_every_draw_within_a_group(sampler):
    model = _tiny_diffusion()
    cond = (torch.rand(1, 1, 16, 16) * 2 - 1).expand(4, -1, -1, -1)
    out = model.sample(cond, sampler=sampler, steps=4, eta=1.0, generator=_gen(1),
                       noise_groups=torch.tensor([5, 5, 2, 2]))
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], out[3]) and not torch.equal(out[0], out[2])
    with pytest.raises(ValueError, match="noise_groups has shape"):
        model.sample(cond, sampler=sampler, steps=4, noise_groups=torch.zeros(3, dtype=torch.long))


def test_ddim_eta_adds_seeded_noise():
    model = _tiny_diffusion()
    cond = torch.rand(2, 1, 8, 8) * 2 - 1
    a, b = (model.sample(cond, sampler="ddim", steps=4, eta=1.0, generator=_gen(3)) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, model.sample(cond, sampler="ddim", steps=4, generator=_gen(3)))


def test_ancestral_steps_rebuild_the_schedule_like_official_step_flag():
    model = ConditionalDiffusion(GammaRecorder(), TRAIN, TEST)
    model.sample(torch.zeros(1, 1, 4, 4), sampler="ancestral", steps=200)
    np.testing.assert_allclose(model.net.gammas, alpha_bars(dict(TEST, steps=200))[::-1], rtol=1e-6)


@pytest.mark.parametrize("sampler,spacing", [("ddim", "quadratic"), ("ddim", "uniform"),
                                             ("dpmpp2m", "quadratic")])
def test_ode_samplers_use_a_subsequence_of_the_full_test_schedule(sampler, spacing):
    """...starting at the noisiest test level inside the trained range (alpha_bar >= train minimum)."""
    model = ConditionalDiffusion(GammaRecorder(), TRAIN, TEST)
    model.sample(torch.zeros(1, 1, 4, 4), sampler=sampler, steps=50, spacing=spacing)
    full = alpha_bars(TEST)
    trained = full[full >= alpha_bars(TRAIN).min()]
    assert 0 < len(trained) < len(full)
    gammas = np.array(model.net.gammas)
    assert len(gammas) == 50 and np.all(np.diff(gammas) > 0)
    assert np.isclose(full[:, None], gammas[None], rtol=1e-6).any(axis=0).all()
    assert gammas[0] == pytest.approx(trained[-1], rel=1e-5) and gammas[-1] == pytest.approx(full[0])


def _exact_ancestral_moments(mu: float, s: float, betas: np.ndarray) -> tuple[float, float]:
    """Mean and variance of the official ancestral chain under the exact oracle (all maps are affine)."""
    abar = np.cumprod(1 - betas)
    abar_prev = np.append(1.0, abar[:-1])
    c0, ct = betas * np.sqrt(abar_prev) / (1 - abar), (1 - abar_prev) * np.sqrt(1 - betas) / (1 - abar)
    noise_var = betas * (1 - abar_prev) / (1 - abar)
    m, v = 0.0, 1.0
    for i in reversed(range(len(betas))):
        k = np.sqrt(abar[i]) * s**2 / (abar[i] * s**2 + 1 - abar[i])  # d E[x0|x_t] / d x_t
        slope = c0[i] * k + ct[i]
        m = slope * m + c0[i] * mu * (1 - k * np.sqrt(abar[i]))
        v = slope**2 * v + (noise_var[i] if i > 0 else 0.0)
    return m, v


MU, S = 0.1, 0.25  # |x0| > 1 is 3.6 sigma away: clipping does not matter
TOY_COND = torch.zeros(1, 1, 128, 128)  # 16384 pixels: std error of the variance ~1.1 %


def _toy_moments(sampler: str, steps: int | None) -> tuple[float, float]:
    model = ConditionalDiffusion(GaussianOracle(MU, S), TRAIN, TEST)
    y = model.sample(TOY_COND, sampler=sampler, steps=steps, generator=_gen(0)).double()
    return y.mean().item(), y.var().item()


def test_ancestral_matches_the_exact_chain_and_the_target():
    """A perfect denoiser: the official sampler's output is the exact discrete chain's (tight) and,
    because the posterior variance ignores Var[x0 | x_t], a little narrower than the data
    (variance 0.944 s^2 at N = 1000; 0.88 s^2 at s = 0.1 and 0.78 at N = 200, s = 0.1)."""
    mean, var = _toy_moments("ancestral", None)
    exact_mean, exact_var = _exact_ancestral_moments(MU, S, make_betas(**TEST))
    assert exact_mean == pytest.approx(MU) and exact_var / S**2 == pytest.approx(0.944, abs=0.005)
    assert abs(mean - MU) < 0.03 * S
    assert var == pytest.approx(exact_var, rel=0.04)
    assert var == pytest.approx(S**2, rel=0.09)


@pytest.mark.parametrize("sampler,steps,rel_var", [("ddim", 50, 0.15), ("ddim", 200, 0.05),
                                                   ("dpmpp2m", 50, 0.05)])
def test_ode_samplers_recover_the_target_distribution(sampler, steps, rel_var):
    """The probability-flow ODE maps N(0, 1) to the data; DDIM is first order, DPM-Solver++ second."""
    mean, var = _toy_moments(sampler, steps)
    assert abs(mean - MU) < 0.03 * S
    assert var == pytest.approx(S**2, rel=rel_var)


def test_training_reduces_the_loss_on_identity_task():
    torch.manual_seed(0)
    model = ConditionalDiffusion(DiffusionUNet(**PRESETS["tiny"]), TRAIN, TEST)
    images = F.interpolate(torch.rand(64, 1, 4, 4), size=16, mode="bilinear") * 2 - 1
    eval_images = images[:16]

    def eval_loss() -> float:
        with torch.no_grad():
            return model.loss(eval_images, eval_images, generator=_gen(123)).item()

    before = eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = _gen(0)
    for _ in range(150):
        batch = images[torch.randint(0, len(images), (8,), generator=gen)]
        loss = model.loss(batch, batch, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.6 * before, (before, after)


class PrecisionRecorder(nn.Module):
    """Records, per call, the input dtype, whether autocast is on, and input/weight memory formats."""

    out_channel = 1

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.calls: list[tuple] = []

    def forward(self, x, gamma):
        cl = torch.channels_last
        self.calls.append((x.dtype, torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=cl),
                           self.conv.weight.is_contiguous(memory_format=cl)))
        return torch.zeros_like(x[:, 1:], dtype=torch.bfloat16 if self.calls[-1][1] else x.dtype)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_runs_only_the_network_in_low_precision(precision):
    model = ConditionalDiffusion(PrecisionRecorder(), TRAIN, TEST)
    x = model.sample(torch.zeros(2, 1, 8, 8), sampler="dpmpp2m", steps=3, generator=_gen(0), precision=precision)
    low = resolve_precision(precision, torch.device("cpu")) == "bf16"
    assert x.dtype == torch.float32
    assert model.net.calls == [(torch.float32, low, low, low)] * 3
    assert model.net.conv.weight.is_contiguous()  # the weights are back in the default layout
    with pytest.raises(ValueError, match="precision"):
        model.sample(torch.zeros(1, 1, 8, 8), precision="fp16")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bf16_samples_stay_close_to_fp32(sampler):
    model = _tiny_diffusion()
    cond = torch.rand(2, 1, 16, 16, generator=_gen(4)) * 2 - 1
    a, b = (model.sample(cond, sampler=sampler, steps=4, generator=_gen(1), precision=p) for p in ("fp32", "bf16"))
    assert b.dtype == torch.float32 and (a - b).abs().mean() < 0.03  # 0.003-0.012 measured


@pytest.mark.parametrize("steps", [200, 50])
def test_ancestral_with_fewer_steps_is_the_exact_rebuilt_chain(steps):
    """``--step N`` rebuilds the schedule; the sampler is still exactly that shorter chain."""
    mean, var = _toy_moments("ancestral", steps)
    exact_mean, exact_var = _exact_ancestral_moments(MU, S, make_betas(**dict(TEST, steps=steps)))
    assert abs(mean - exact_mean) < 0.03 * S
    assert var == pytest.approx(exact_var, rel=0.04)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m"])
def test_ode_samplers_converge_to_the_target_with_more_steps(sampler):
    """The variance error shrinks as steps grow (the study's 10 / 20 / 50 steps), means stay right."""
    errors = []
    for steps in (10, 20, 50):
        mean, var = _toy_moments(sampler, steps)
        assert abs(mean - MU) < 0.03 * S
        errors.append(abs(var / S**2 - 1))
    assert errors[0] > errors[1] > errors[2]


def test_max_steps_per_sampler():
    model = ConditionalDiffusion(GammaRecorder(), TRAIN, TEST)
    assert model.max_steps("ancestral") is None
    limit = model.max_steps("ddim")
    assert limit == model.max_steps("dpmpp2m") == int(np.sum(alpha_bars(TEST) >= alpha_bars(TRAIN).min())) == 468
    model.sample(torch.zeros(1, 1, 4, 4), sampler="ddim", steps=limit)
    with pytest.raises(ValueError, match="steps must be in"):
        model.sample(torch.zeros(1, 1, 4, 4), sampler="dpmpp2m", steps=limit + 1)
    with pytest.raises(ValueError, match="sampler"):
        model.max_steps("euler")


def test_condition_init_removes_the_short_chains_bias_and_narrows_the_spread():
    """A 10-step official chain starts at alpha_bar 0.63, not at pure noise. With a perfect denoiser
    for x0 ~ N(0.5, 0.5^2), samples from N(0, 1) keep part of x_T's zero mean (0.35 here); from
    x0_init at the target mean the mean is right but the spread is too narrow (variance 0.17 vs
    0.25): x_T then lacks the data's own variance."""
    mu, s = 0.5, 0.5
    model = ConditionalDiffusion(GaussianOracle(mu, s), TRAIN, TEST)
    assert model.start_alpha_bar("ancestral", 10) == pytest.approx(0.6278, abs=1e-4)
    assert model.start_alpha_bar("ancestral", 1000) == pytest.approx(6.60e-21, rel=1e-2)
    assert model.start_alpha_bar("ddim", 20) == pytest.approx(model.train_alpha_bar.min(), rel=0.2)
    guess = torch.full_like(TOY_COND, mu)

    def draw(steps, x0_init=None):
        return model.sample(TOY_COND, sampler="ancestral", steps=steps, generator=_gen(0), clip_x0=False,
                            x0_init=x0_init).double()

    from_noise, from_guess = draw(10), draw(10, guess)
    assert from_noise.mean().item() < mu - 0.1
    assert abs(from_guess.mean().item() - mu) < 0.03 * s
    assert from_guess.var().item() < 0.8 * s**2 < from_noise.var().item()
    # where the chain starts at pure noise the guess does not matter
    torch.testing.assert_close(draw(1000), draw(1000, guess))
    with pytest.raises(ValueError, match="x0_init has shape"):
        model.sample(TOY_COND, sampler="ancestral", steps=10, x0_init=guess[:, :, :4])


def test_auto_precision_is_bf16_only_where_it_pays(monkeypatch):
    """auto: bf16 on CUDA and on CPUs with AMX or AVX512-BF16, float32 on other CPUs (where bf16 is
    emulated, 2-3x slower)."""
    import emdiffuse.device

    cpu = torch.device("cpu")
    for amx, avx512_bf16, expected in ((True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert emdiffuse.device.bf16_pays(cpu) is (expected == "bf16")
        assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)


class GaussianVOracle(GaussianOracle):
    """The same exact posterior as ``GaussianOracle``, expressed as v = sqrt(g) eps - sqrt(1 - g) x0."""

    def forward(self, x, gamma):
        y, g = x[:, 1:].double(), gamma.double().view(-1, 1, 1, 1)
        eps = super().forward(x, gamma).double()
        x0 = (y - (1 - g).sqrt() * eps) / g.sqrt()
        return (g.sqrt() * eps - (1 - g).sqrt() * x0).float()


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("steps", [10, 20, 50])
def test_v_prediction_samples_like_eps_prediction_with_an_exact_predictor(sampler, steps):
    """Every sampler sees the net only through (x0, eps): the same exact posterior as v or as eps
    gives the same samples (up to float32), with the target's mean wherever the chain starts at
    pure noise (short ancestral chains start at alpha_bar 0.6-0.4 from noise, biased by design)."""
    eps_model = ConditionalDiffusion(GaussianOracle(MU, S), TRAIN, TEST)
    v_model = ConditionalDiffusion(GaussianVOracle(MU, S), TRAIN, TEST, prediction="v")
    a, b = (m.sample(TOY_COND, sampler=sampler, steps=steps, generator=_gen(0)) for m in (eps_model, v_model))
    assert (a - b).abs().max() < 1e-3
    if v_model.start_alpha_bar(sampler, steps) < 0.01:
        assert abs(b.double().mean().item() - MU) < 0.03 * S


def test_v_prediction_loss_targets_v():
    """At gamma -> 1 the v target is -x0 ... and the loss is the MSE to sqrt(g) eps - sqrt(1 - g) x0."""
    class Zero(nn.Module):
        out_channel = 1

        def forward(self, x, gamma):
            return torch.zeros_like(x[:, 1:])

    target = torch.full((4, 1, 8, 8), 0.5)
    loss_v = ConditionalDiffusion(Zero(), TRAIN, TEST, prediction="v").loss(torch.zeros_like(target), target, _gen(0))
    loss_eps = ConditionalDiffusion(Zero(), TRAIN, TEST).loss(torch.zeros_like(target), target, _gen(0))
    assert loss_eps.item() == pytest.approx(1.0, abs=0.1)  # E[eps^2]
    assert 0 < loss_v.item() < 1.2 and loss_v.item() != pytest.approx(loss_eps.item())
    with pytest.raises(ValueError, match="prediction"):
        ConditionalDiffusion(Zero(), TRAIN, TEST, prediction="x0")
