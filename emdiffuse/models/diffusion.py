"""Conditional epsilon-prediction diffusion as in EMDiffuse (Palette/SR3), plus fast ODE samplers.

Re-implemented from Luchixiang/EMDiffuse ``models/EMDiffuse_network.py``:

* training uses the TRAIN schedule (official: linear beta 1e-6..1e-2, T = 2000) with SR3's
  continuous noise level: t ~ U{1..T-1}, gamma ~ U(alpha_bar[t], alpha_bar[t-1]) (0-based
  alpha_bar[i] = prod_{j<=i}(1 - beta_j)), loss = MSE(eps_hat, eps);
* sampling uses the separate TEST schedule (official: linear beta 1e-4..0.09, T = 1000).
  The net is always called with gamma = alpha_bar at the evaluated step, so any subsequence of
  the test schedule is a valid sampling grid.

Samplers (``SAMPLERS``):

* ``ancestral``: the official DDPM ``p_sample_loop``: posterior mean/variance, x0 clamped each
  step. ``steps=N`` follows the official ``--step N``: the test schedule is REBUILT with N steps
  and the same beta start/end, a different, coarser schedule (alpha_bar_T ~ 9e-5 at N = 200
  versus ~ 7e-21 at N = 1000), not a subsequence.
* ``ddim``: DDIM (Song et al. 2021), ``eta = 0`` deterministic, on ``steps`` timesteps of the
  test schedule within the trained noise range (see ``_timesteps``), ending with x0 at alpha_bar = 1.
* ``dpmpp2m``: DPM-Solver++(2M) (Lu et al. 2022; data prediction, multistep 2nd order) in
  log-SNR lambda = 0.5 log(abar / (1 - abar)), same timestep grid as ``ddim``.

Timestep grid (``spacing``) for ddim/dpmpp2m: ``"quadratic"`` (default; t_i = (T-1)(1 - i/(S-1))^2,
DDIM's "quad" skip) or ``"uniform"`` in t. On the official test schedule almost all of the log-SNR
range lies near t = 0 (alpha_bar = 0.99 at t ~ 14 of 1000), so uniform steps are too coarse where
fine detail forms: with an exact denoiser for Gaussian data of std 0.1, 50 uniform steps give a
sample std 0.62x (DDIM) and 1.05x (DPM-Solver++) the truth, 50 quadratic steps 0.92x and 1.02x.

Initialisation (``INITS``, ``x0_init``): ``"noise"`` starts every chain from pure noise, as
officially. ``"condition"`` starts it from the caller's estimate of the clean image (EMDiffuse: the
degraded input on the target grid) noised to the chain's first level, as in Come-Closer-Diffuse-
Faster (Chung et al., CVPR 2022). It matters for the short ancestral chains, whose first level is
far from pure noise (alpha_bar 0.39 at 20 steps, 0.63 at 10): from pure noise the network sees an
x_t with no signal in it, and its image's mean intensity drifts. The start then lacks the data's
own variance, so the samples spread less and the K-sample uncertainty is smaller (tested on a
Gaussian toy in ``tests/test_diffusion.py``).

``steps=None`` means every step of the test schedule. Every random draw uses ``generator``
(drawn on the generator's device, then moved), so a seed fixes the output whatever device the
network runs on.

``precision="bf16"`` runs only the network under autocast (bfloat16; float16 on CUDA without
bf16; MPS stays float32); "auto" does so only where that is faster than float32 (CUDA, CPUs with AMX or AVX512-BF16) on channels-last tensors; the sampler state (x_t, x0, the solver's
history) stays float32, so low precision enters only through the noise estimate.

``loss="aleatoric"``: the paper's difficulty-aware loss (see :func:`aleatoric_loss`); the net then
has twice the output channels, eps_hat and a per-pixel log-scale s, and sampling uses eps_hat only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

SAMPLERS = ("ancestral", "ddim", "dpmpp2m")
SPACINGS = ("quadratic", "uniform")
PRECISIONS = ("fp32", "bf16", "auto")
PREDICTIONS = ("eps", "v")
INITS = ("noise", "condition")
LOSSES = ("mse", "l1", "aleatoric")
# What the net predicts: the noise (official) or v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans &
# Ho 2022), whose clean-image estimate stays accurate at high noise where eps's is divided by ~0.
# The first official commit's difficulty map: s averaged at t = T_train / k (k = 2 ... 32), here at
# those of the levels its scale head trained on (alpha_bar >= DIFFICULTY_MIN_ALPHA_BAR).
DIFFICULTY_DIVISORS = (2, 4, 8, 16, 32)
DIFFICULTY_MIN_ALPHA_BAR = 0.08
LOG_SCALE_LIMIT = 5.0  # |s| <= 5: exp(-2s) within e^+-10
SCHEDULE_KEYS = ("kind", "start", "end", "steps")


def make_betas(kind: str, start: float, end: float, steps: int) -> np.ndarray:
    """Beta schedule (float64). ``cosine`` is Nichol & Dhariwal's (s = 8e-3); it ignores start/end."""
    if kind == "linear":
        return np.linspace(start, end, steps, dtype=np.float64)
    if kind == "cosine":
        f = np.cos((np.arange(steps + 1, dtype=np.float64) / steps + 8e-3) / (1 + 8e-3) * math.pi / 2) ** 2
        return np.minimum(1 - f[1:] / f[:-1], 0.999)
    raise ValueError(f"beta schedule kind must be 'linear' or 'cosine', got {kind!r}")


def alpha_bars(schedule: dict) -> np.ndarray:
    """Cumulative product of (1 - beta) for a schedule dict {kind, start, end, steps}."""
    missing = [k for k in SCHEDULE_KEYS if k not in schedule]
    if missing:
        raise ValueError(f"diffusion schedule {schedule} is missing keys {missing}; "
                         f"expected {list(SCHEDULE_KEYS)}")
    return np.cumprod(1.0 - make_betas(schedule["kind"], schedule["start"], schedule["end"],
                                       int(schedule["steps"])))


def aleatoric_loss(eps_hat: torch.Tensor, eps: torch.Tensor, s: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """The difficulty-aware loss: plain noise MSE for the denoiser, plus the heteroscedastic (Kendall
    & Gal 2017) term 0.5 [exp(-2s) e^2 + 2s] for the per-pixel log-scale s (phi = exp(s)).

    The term is the first official commit's ``mse_var_loss(eps_hat, eps, s, weight=2)``
    (Luchixiang/EMDiffuse, models/loss.py), the paper's ||eps - eps_hat||^2 / phi^2 + log phi^2
    halved; per pixel it is minimised at exp(2s) = E[e^2], so exp(s) estimates the local error
    scale. As that commit trained the scale head (on a frozen denoiser), s learns from the DETACHED
    error e and only at noise levels alpha_bar >= ``DIFFICULTY_MIN_ALPHA_BAR``: letting exp(-2s)
    weight the denoiser's own error reweighted it ~450x toward high noise and diverged. Computed in
    float32 with s clamped to +-``LOG_SCALE_LIMIT`` (under bf16 autocast it spiked).
    """
    eps_hat, eps = eps_hat.float(), eps.float()
    s = s.float().clamp(-LOG_SCALE_LIMIT, LOG_SCALE_LIMIT)
    error = (eps_hat - eps) ** 2
    head = 0.5 * (torch.exp(-2 * s) * error.detach() + 2 * s)
    trained = (gamma.float() >= DIFFICULTY_MIN_ALPHA_BAR).view(-1, *[1] * (s.dim() - 1)).expand_as(head)
    return error.mean() + (head * trained).sum() / trained.sum().clamp(min=1)


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None,
           groups: torch.Tensor | None = None) -> torch.Tensor:
    """Standard normal noise of ``shape``; with ``groups`` (one integer per batch item), one draw per
    group, shared by its items."""
    device = generator.device if generator is not None else like.device
    if groups is None:
        return torch.randn(shape, generator=generator, device=device).to(like.device)
    unique, index = torch.unique(groups.cpu(), return_inverse=True)
    draws = torch.randn((len(unique), *shape[1:]), generator=generator, device=device)
    return draws[index.to(device)].to(like.device)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The low-precision dtype ``precision="bf16"`` uses on ``device``; None: stay float32 (MPS)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" else None


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16": "auto" is bf16 where it pays (:func:`~emdiffuse.device.bf16_pays`)."""
    from emdiffuse.device import bf16_pays

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_pays(device) else "fp32"
    return precision


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Sample with dropout off, then restore the caller's train/eval mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@contextlib.contextmanager
def _channels_last(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Channels-last weights for the duration (where bf16 convolutions are fastest), then back."""
    if not enabled:
        yield
        return
    module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(memory_format=torch.contiguous_format)


class ConditionalDiffusion(nn.Module):
    """Wraps a noise- (or v-) prediction net ``net(cat([cond, y_t], 1), gamma)`` with training loss
    and samplers; every sampler sees the net through (x0, eps) estimates, whatever it predicts."""

    def __init__(self, net: nn.Module, train_schedule: dict, test_schedule: dict, loss: str = "mse",
                 out_channels: int | None = None, prediction: str = "eps"):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.net, self.loss_name, self.prediction = net, loss, prediction
        self.train_schedule, self.test_schedule = dict(train_schedule), dict(test_schedule)
        self.train_alpha_bar = alpha_bars(self.train_schedule)
        self.test_alpha_bar = alpha_bars(self.test_schedule)
        net_channels = getattr(net, "out_channel", None)
        if loss == "aleatoric":
            if not net_channels or net_channels % 2:
                raise ValueError(f"loss 'aleatoric' needs a net with 2C output channels (eps_hat, s), "
                                 f"got out_channel={net_channels}")
            net_channels //= 2
            net.zero_init_outputs(net_channels)  # s = 0: training starts as (half) plain MSE
        self.out_channels = out_channels or net_channels

    def forward(self, cond: torch.Tensor, target: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Same as :meth:`loss` (so DDP and hooks see a normal forward)."""
        return self.loss(cond, target, generator)

    def loss(self, cond: torch.Tensor, target: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Official SR3/Palette objective; cond and target are (B, C, H, W) in [-1, 1]."""
        b = target.shape[0]
        device = generator.device if generator is not None else target.device
        t = torch.randint(1, len(self.train_alpha_bar), (b,), generator=generator, device=device)
        u = torch.rand(b, generator=generator, device=device)
        table = torch.as_tensor(self.train_alpha_bar, dtype=torch.float32, device=device)
        gamma = (table[t - 1] + (table[t] - table[t - 1]) * u).to(target.device)
        noise = _randn(target.shape, target, generator)
        out = self.net(torch.cat([cond, _noised(target, gamma, noise)], dim=1), gamma).float()
        if self.prediction == "v":
            g = gamma.view(-1, *[1] * (target.dim() - 1))
            noise = g.sqrt() * noise - (1 - g).sqrt() * target  # the v target
        if self.loss_name == "aleatoric":
            eps_hat, log_scale = out.chunk(2, dim=1)
            return aleatoric_loss(eps_hat, noise, log_scale, gamma)
        return (F.mse_loss if self.loss_name == "mse" else F.l1_loss)(out, noise)

    @contextlib.contextmanager
    def _network(self, precision: str, device: torch.device):
        """The net in eval mode as ``f(x, gamma) -> float32``; at "bf16" it runs under autocast on
        channels-last tensors while everything outside it stays float32."""
        dtype = autocast_dtype(device) if resolve_precision(precision, device) == "bf16" else None

        def run(x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
            if dtype is None:
                return self.net(x, gamma).float()
            with torch.autocast(device.type, dtype=dtype):
                return self.net(x.contiguous(memory_format=torch.channels_last), gamma).float()

        with _eval_mode(self.net), _channels_last(self.net, dtype is not None):
            yield run

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, *, sampler: str = "ddim", steps: int | None = None,
               generator: torch.Generator | None = None, clip_x0: bool = True, progress: bool = False,
               eta: float = 0.0, spacing: str = "quadratic", precision: str = "fp32",
               x0_init: torch.Tensor | None = None, noise_groups: torch.Tensor | None = None) -> torch.Tensor:
        """Draw one sample per batch item (pass K copies of a condition for K samples), in [-1, 1].

        ``eta`` only affects ddim; ``spacing`` only ddim and dpmpp2m (see the module docstring).
        ``x0_init``: start from that estimate of the clean image noised to the chain's first level,
        sqrt(abar_T) x0_init + sqrt(1 - abar_T) z, instead of from pure noise z (see INITS).
        ``noise_groups``: one integer per batch item; items of a group get the same noise at every
        draw (initial and per step), so chains with related conditions stay alike where the
        conditions agree (vEMDiffuse: the slices of one gap).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if spacing not in SPACINGS:
            raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1 (or None for the full test schedule), got {steps}")
        channels = self.out_channels or cond.shape[1]
        if noise_groups is not None and noise_groups.shape != (cond.shape[0],):
            raise ValueError(f"noise_groups has shape {tuple(noise_groups.shape)}, expected ({cond.shape[0]},)")
        x = _randn((cond.shape[0], channels, *cond.shape[2:]), cond, generator, noise_groups)
        if x0_init is not None:
            if x0_init.shape != x.shape:
                raise ValueError(f"x0_init has shape {tuple(x0_init.shape)}, the samples {tuple(x.shape)}")
            abar_start = self.start_alpha_bar(sampler, steps, spacing)
            x = math.sqrt(abar_start) * x0_init.float() + math.sqrt(1 - abar_start) * x
        chain = self.chain(sampler, steps, spacing)
        with self._network(precision, cond.device) as net:
            pred_fn = self._predictor(net, cond.float())
            if sampler == "ancestral":
                return self._ancestral(pred_fn, x, chain, generator, clip_x0, progress, noise_groups)
            if sampler == "ddim":
                return self._ddim(pred_fn, x, chain, generator, clip_x0, progress, eta, noise_groups)
            return self._dpmpp2m(pred_fn, x, chain, clip_x0, progress)

    @torch.no_grad()
    def difficulty(self, cond: torch.Tensor, x0: torch.Tensor, *, generator: torch.Generator | None = None,
                   precision: str = "fp32") -> torch.Tensor:
        """The difficulty map: predicted log-scale s averaged over t = T_train / k, k in DIFFICULTY_DIVISORS,
        at the levels the scale head trained on (alpha_bar >= DIFFICULTY_MIN_ALPHA_BAR).

        As in the first official commit, but our s head shares the denoiser and sees y_t, so y_t is
        ``x0`` (e.g. the samples) noised to each level with seeded noise. Same shape as ``x0``.
        """
        if self.loss_name != "aleatoric":
            raise ValueError("difficulty needs a model trained with loss='aleatoric'")
        maps = []
        levels = [float(self.train_alpha_bar[len(self.train_alpha_bar) // k]) for k in DIFFICULTY_DIVISORS]
        with self._network(precision, cond.device) as net:
            for level in [a for a in levels if a >= DIFFICULTY_MIN_ALPHA_BAR] or levels[-1:]:
                gamma = torch.full((x0.shape[0],), level, device=x0.device)
                y = _noised(x0.float(), gamma, _randn(x0.shape, x0, generator))
                maps.append(net(torch.cat([cond.float(), y], dim=1), gamma)[:, self.out_channels:])
        return torch.stack(maps).mean(0)

    def start_alpha_bar(self, sampler: str, steps: int | None, spacing: str = "quadratic") -> float:
        """alpha_bar of the level a chain starts at: of the rebuilt ``steps``-step schedule for
        ancestral (official ``--step``: 0.39 at 20 steps, 7e-21 at 1000), of the first timestep
        for ddim/dpmpp2m."""
        if sampler == "ancestral":
            return float(np.prod(1 - self._ancestral_betas(steps)))
        return float(self.test_alpha_bar[self._timesteps(steps, spacing)[0]])

    def _ancestral_betas(self, steps: int | None) -> np.ndarray:
        sched = self.test_schedule
        return make_betas(sched["kind"], sched["start"], sched["end"], int(steps or sched["steps"]))

    def max_steps(self, sampler: str) -> int | None:
        """The most steps ``sampler`` can take: None (any number) for ancestral, which rebuilds its
        schedule; for ddim/dpmpp2m the number of test-schedule levels inside the trained noise
        range (468 on the official schedules), see :meth:`_timesteps`."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        return None if sampler == "ancestral" else self._ode_levels()

    def _ode_levels(self) -> int:
        """Test-schedule levels at or above the training schedule's lowest alpha_bar (all if none)."""
        return int(np.sum(self.test_alpha_bar >= self.train_alpha_bar.min())) or len(self.test_alpha_bar)

    def _timesteps(self, steps: int | None, spacing: str) -> np.ndarray:
        """``steps`` distinct test-schedule indices from T-1 down to 0, where T-1 is the noisiest test
        level the network was trained on (alpha_bar >= the training schedule's minimum).

        The official test schedule goes far beyond it (alpha_bar_T ~ 7e-21 vs 4.4e-5): there the
        x0 estimate divides by sqrt(alpha_bar) ~ 1e-10 and saturates, which the stochastic ancestral
        sampler washes out over many steps but a deterministic few-step solver cannot. Starting at
        alpha_bar ~ 4e-5 from pure noise drops a signal of amplitude sqrt(alpha_bar) < 0.007.
        """
        T = self._ode_levels()
        steps = T if steps is None else int(steps)
        if not 1 <= steps <= T:
            raise ValueError(f"steps must be in [1, {T}] (test schedule length), got {steps}")
        frac = np.linspace(1.0, 0.0, steps)
        t = np.floor((T - 1) * (frac**2 if spacing == "quadratic" else frac) + 0.5).astype(int)
        # rounding merges steps where the grid is denser than 1; keep them distinct
        return np.maximum(t, np.arange(steps - 1, -1, -1))

    def _predictor(self, net, cond: torch.Tensor):
        """pred(x, abar) -> (x0_hat, eps_hat) from the net's prediction channels (not the log-scale
        ones): eps-prediction derives x0 (dividing by sqrt(abar)), v-prediction derives both stably."""
        channels = self.out_channels

        def pred(x: torch.Tensor, abar: float) -> tuple[torch.Tensor, torch.Tensor]:
            gamma = torch.full((x.shape[0],), abar, dtype=torch.float32, device=x.device)
            out = net(torch.cat([cond, x], dim=1), gamma)[:, :channels]
            if self.prediction == "v":
                a, s = math.sqrt(abar), math.sqrt(1 - abar)
                return a * x - s * out, a * out + s * x
            return math.sqrt(1 / abar) * x - math.sqrt(1 / abar - 1) * out, out

        return pred

    @staticmethod
    def _x0_and_eps(pred_fn, x, abar: float, clip_x0: bool):
        """Predicted clean image and noise; when x0 is clipped, eps is made consistent with it."""
        x0, eps = pred_fn(x, abar)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
        return x0, eps

    def chain(self, sampler: str, steps: int | None, spacing: str = "quadratic") -> dict[str, np.ndarray]:
        """The noise levels a sampler visits, in the order it visits them (float64): ``abar`` (and for
        ddim/dpmpp2m ``abar_next``, ending at 1); for ancestral also the posterior coefficients of
        x0 and x_t and the posterior std. The exported sampler (``emdiffuse.models.frozen``) runs
        the same chain."""
        if sampler == "ancestral":
            betas = self._ancestral_betas(steps)
            abar = np.cumprod(1 - betas)
            abar_prev = np.append(1.0, abar[:-1])
            coefs = {"abar": abar, "coef_x0": betas * np.sqrt(abar_prev) / (1 - abar),
                     "coef_xt": (1 - abar_prev) * np.sqrt(1 - betas) / (1 - abar),
                     "std": np.sqrt(np.maximum(betas * (1 - abar_prev) / (1 - abar), 1e-20))}  # posterior, log-clipped
            return {k: v[::-1].copy() for k, v in coefs.items()}
        abar = self.test_alpha_bar[self._timesteps(steps, spacing)]
        return {"abar": abar, "abar_next": np.append(abar[1:], 1.0)}

    def _ancestral(self, pred_fn, x, chain, generator, clip_x0, progress, groups):
        last = len(chain["abar"]) - 1
        for i in tqdm(range(last + 1), disable=not progress, desc="ancestral"):
            x0, _ = pred_fn(x, chain["abar"][i])  # eps-prediction: the official sqrt(1/abar) x - sqrt(1/abar - 1) eps
            if clip_x0:
                x0 = x0.clamp(-1, 1)
            x = chain["coef_x0"][i] * x0 + chain["coef_xt"][i] * x
            if i < last:
                x = x + chain["std"][i] * _randn(x.shape, x, generator, groups)
        return x

    def _ddim(self, pred_fn, x, chain, generator, clip_x0, progress, eta, groups):
        for a, a_next in tqdm(list(zip(chain["abar"], chain["abar_next"])), disable=not progress, desc="ddim"):
            x0, eps = self._x0_and_eps(pred_fn, x, a, clip_x0)
            sigma = eta * math.sqrt((1 - a_next) / (1 - a) * (1 - a / a_next))
            x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next - sigma**2, 0.0)) * eps
            if sigma > 0:
                x = x + sigma * _randn(x.shape, x, generator, groups)
        return x

    def _dpmpp2m(self, pred_fn, x, chain, clip_x0, progress):
        x0_prev, h_prev = None, None
        for a, a_next in tqdm(list(zip(chain["abar"], chain["abar_next"])), disable=not progress, desc="dpmpp2m"):
            x0, _ = self._x0_and_eps(pred_fn, x, a, clip_x0)
            if a_next < 1.0:  # the last step ends at sigma = 0, where the solution is x0 itself
                h = _log_snr(a_next) - _log_snr(a)
                d = x0 if x0_prev is None else x0 + (x0 - x0_prev) * (h / (2 * h_prev))
                x = math.sqrt((1 - a_next) / (1 - a)) * x - math.sqrt(a_next) * math.expm1(-h) * d
                x0_prev, h_prev = x0, h
        return x0


def _noised(x0: torch.Tensor, gamma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """y_gamma = sqrt(gamma) x0 + sqrt(1 - gamma) noise, gamma per batch item."""
    g = gamma.view(-1, *[1] * (x0.dim() - 1))
    return g.sqrt() * x0 + (1 - g).sqrt() * noise


def _log_snr(abar: float) -> float:
    """lambda = log(alpha / sigma) = 0.5 log(abar / (1 - abar))."""
    return 0.5 * math.log(abar / (1 - abar))
