"""Trained 2D methods as self-contained TorchScript modules (for the BioImage Model Zoo, ``emdiffuse.bmz``).

Each takes (B, 1, H, W) float32 intensities in [0, 1] and returns the restored (B, 1, H*s, W*s) in
[0, 1], as ``Method.predict`` does on one tile: the normalisation of CARE, RCAN and PSSR is built into
:class:`Restorer`; EMDiffuse's sampler, its chain, K and seed into :class:`DiffusionSampler`, which
also returns the K samples' std (the uncertainty map). Networks are traced (their control flow is
fixed); the wrappers are scripted, so sizes, percentiles and the seeded noise stay dynamic.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emdiffuse.models.care import CAREUNet
from emdiffuse.models.pssr import PSSRUNet
from emdiffuse.models.rcan import RCAN

#: the networks a :class:`Restorer` builds by name (its architecture file defines the same names)
NETWORKS = {"CAREUNet": CAREUNet, "RCAN": RCAN, "PSSRUNet": PSSRUNet}


def percentile(x: torch.Tensor, q: float) -> torch.Tensor:
    """Per-sample q-th percentile of (B, ...) as (B, 1, 1, 1), linear interpolation (``np.percentile``);
    by sorting, so no size limit (``torch.quantile`` refuses more than 2^24 values)."""
    values = torch.sort(x.reshape(x.shape[0], -1), dim=1).values
    pos = q / 100.0 * (values.shape[1] - 1)
    below = int(math.floor(pos))
    above = min(below + 1, values.shape[1] - 1)
    low = values[:, below]
    return (low + (pos - below) * (values[:, above] - low)).reshape(-1, 1, 1, 1)


class Restorer(nn.Module):
    """A feed-forward network with its method's normalisation: per-image percentiles mapped to 0 / 1
    and the output mapped back (CARE, RCAN-denoise), the training inputs' mean / std (PSSR), and the
    bilinear upsampling CARE applies to a low-resolution input; the output is clipped to [0, 1]."""

    def __init__(self, network: str, network_kwargs: dict, scale: int = 1, upsample_input: bool = False,
                 percentiles: Optional[List[float]] = None, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.net = NETWORKS[network](**network_kwargs)
        self.scale, self.upsample_input = int(scale), bool(upsample_input)
        self.normalize = percentiles is not None
        self.pmin, self.pmax = (float(p) for p in (percentiles or (0.0, 100.0)))
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = torch.zeros_like(x[:, :1, :1, :1]), torch.ones_like(x[:, :1, :1, :1])
        if self.normalize:
            low, high = percentile(x, self.pmin), percentile(x, self.pmax)
            x = (x - low) / (high - low + 1e-20)
        if self.upsample_input and self.scale > 1:
            x = F.interpolate(x, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        y = self.net((x - self.mean) / self.std) * self.std + self.mean
        if self.normalize:
            y = y * (high - low) + low
        return y.clamp(0.0, 1.0)


class DiffusionSampler(nn.Module):
    """EMDiffuse's sampling as one module: bilinear upsampling (super-resolution), K chains from one
    seeded CPU generator (the draws of ``ConditionalDiffusion.sample`` in the same order), their mean
    and std. ``chain`` is ``ConditionalDiffusion.chain``; every call restarts the generator, so the
    same input gives the same output."""

    def __init__(self, net: nn.Module, *, sampler: str, chain: dict, samples: int, seed: int, scale: int,
                 prediction: str, init_from_condition: bool, start_alpha_bar: float, clip_x0: bool = True):
        super().__init__()
        self.net, self.sampler, self.prediction = net, sampler, prediction
        self.samples, self.seed, self.scale = int(samples), int(seed), int(scale)
        self.init_from_condition, self.start_alpha_bar, self.clip_x0 = init_from_condition, start_alpha_bar, clip_x0
        empty = np.zeros(len(chain["abar"]))
        self.abar: List[float] = [float(v) for v in chain["abar"]]
        self.abar_next: List[float] = [float(v) for v in chain.get("abar_next", empty)]
        self.coef_x0: List[float] = [float(v) for v in chain.get("coef_x0", empty)]
        self.coef_xt: List[float] = [float(v) for v in chain.get("coef_xt", empty)]
        self.std: List[float] = [float(v) for v in chain.get("std", empty)]

    def _x0_and_eps(self, cond: torch.Tensor, x: torch.Tensor, a: float) -> Tuple[torch.Tensor, torch.Tensor]:
        gamma = torch.full([x.shape[0]], a, dtype=torch.float32, device=x.device)
        out = self.net(torch.cat([cond, x], dim=1), gamma)[:, :1].float()
        if self.prediction == "v":
            x0, eps = math.sqrt(a) * x - math.sqrt(1 - a) * out, math.sqrt(a) * out + math.sqrt(1 - a) * x
        else:
            x0, eps = math.sqrt(1 / a) * x - math.sqrt(1 / a - 1) * out, out
        if self.clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        return x0, eps

    def _noise(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator).to(like.device)

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.scale > 1:
            image = F.interpolate(image, scale_factor=float(self.scale), mode="bilinear", align_corners=False)
        b, k = image.shape[0], self.samples
        cond = (image * 2 - 1).repeat_interleave(k, 0)
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        x = self._noise(cond, generator)
        if self.init_from_condition:
            x = math.sqrt(self.start_alpha_bar) * cond + math.sqrt(1 - self.start_alpha_bar) * x
        x0 = x
        x0_prev, h_prev = x, 0.0
        last = len(self.abar) - 1
        for i in range(last + 1):
            a = self.abar[i]
            x0, eps = self._x0_and_eps(cond, x, a)
            if self.sampler == "ancestral":
                x = self.coef_x0[i] * x0 + self.coef_xt[i] * x
                if i < last:
                    x = x + self.std[i] * self._noise(x, generator)
            elif self.sampler == "ddim":  # eta = 0, as EMDiffuse samples
                a_next = self.abar_next[i]
                x = math.sqrt(a_next) * x0 + math.sqrt(max(1 - a_next, 0.0)) * eps
            elif self.abar_next[i] < 1.0:  # dpmpp2m; its last step ends at x0
                a_next = self.abar_next[i]
                h = 0.5 * math.log(a_next / (1 - a_next)) - 0.5 * math.log(a / (1 - a))
                d = x0 if i == 0 else x0 + (x0 - x0_prev) * (h / (2 * h_prev))
                x = math.sqrt((1 - a_next) / (1 - a)) * x - math.sqrt(a_next) * math.expm1(-h) * d
                x0_prev, h_prev = x0, h
        if self.sampler == "dpmpp2m":
            x = x0
        samples = ((x + 1) / 2).reshape(b, k, x.shape[2], x.shape[3])
        spread = samples.std(1, keepdim=True) if k > 1 else torch.zeros_like(samples[:, :1])
        return samples.mean(1, keepdim=True).clamp(0.0, 1.0), spread


def example_input(height: int, width: int) -> torch.Tensor:
    """A (1, 1, h, w) tracing example with image-like statistics (smooth structure plus noise)."""
    generator = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.rand(1, 1, height + 8, width + 8, generator=generator), 9, stride=1)
    return (x - x.min()) / (x.max() - x.min() + 1e-6)


def frozen_module(method, size: int, seed: int = 0) -> torch.jit.ScriptModule:
    """``method`` (a fitted 2D method) as a scripted module; networks traced on a ``size`` px input
    (on the target grid; a multiple of the method's size divisor). A diffusion model samples with
    the noise ``method.predict(..., seed=seed)`` gives its first image."""
    from emdiffuse.models.baselines import LowResInputMethod
    from emdiffuse.models.methods import CAREMethod, EMDiffuseMethod

    method._require_fitted()
    if isinstance(method, EMDiffuseMethod):
        return _frozen_sampler(method, size, seed)
    if not isinstance(method, (CAREMethod, LowResInputMethod)):
        raise ValueError(f"{method.name}: only trained networks can be exported (care, rcan, pssr, emdiffuse, "
                         f"emdiffuse_v)")
    restorer = Restorer(**restorer_kwargs(method))
    restorer.load_state_dict(restorer_state(method))
    restorer.eval()
    side = size if restorer.upsample_input else size // method.scale  # the grid the network sees
    with torch.no_grad():
        restorer.net = torch.jit.trace(restorer.net, (example_input(side, side),), check_trace=False)
    return torch.jit.script(restorer)


def restorer_kwargs(method) -> dict:
    """The :class:`Restorer` arguments (JSON values) that rebuild ``method``'s network and normalisation."""
    from emdiffuse.models.baselines import PSSRMethod, RCANMethod

    if isinstance(method, RCANMethod):
        percentiles = method._percentiles()
        return {"network": "RCAN", "network_kwargs": method.network_kwargs(), "scale": method.scale,
                "percentiles": list(percentiles) if percentiles else None}
    if isinstance(method, PSSRMethod):
        mean, std = method.stats
        return {"network": "PSSRUNet", "network_kwargs": method.network_kwargs(), "scale": method.scale,
                "mean": mean, "std": std}
    p = method.params["predict"]
    return {"network": "CAREUNet", "network_kwargs": dict(method.params["model"]), "scale": method.scale,
            "upsample_input": True, "percentiles": [p["pmin"], p["pmax"]]}


def restorer_state(method) -> dict:
    """``method``'s network weights under the :class:`Restorer`'s names."""
    return {f"net.{k}": v for k, v in method.net.state_dict().items()}


def _frozen_sampler(method, size: int, seed: int) -> torch.jit.ScriptModule:
    from emdiffuse.models.methods import image_seed

    s = method.params["predict"]
    model = copy.deepcopy(method._sampling_model()).cpu()
    steps = s["steps"]
    # The trace keeps the U-Net's one-noise-level path (one embedding row for the batch): the sampler
    # evaluates every batch at one level, so that path is the one it needs (its TracerWarnings say so).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        x = torch.cat([example_input(size, size) * 2 - 1] * 2, dim=1)
        net = torch.jit.trace(model.net.eval(), (x, torch.tensor([0.5])), check_trace=False)
    module = DiffusionSampler(
        net, sampler=s["sampler"], chain=model.chain(s["sampler"], steps), samples=s["samples"],
        seed=image_seed(seed, 0), scale=method.scale, prediction=model.prediction,
        init_from_condition=s["init"] == "condition", start_alpha_bar=model.start_alpha_bar(s["sampler"], steps))
    return torch.jit.script(module)
