"""CARE (Weigert et al. 2018): a PyTorch port of CSBDeep's 2D U-Net and its normalisation.

Mirrors ``csbdeep/internals/nets.py`` ``custom_unet`` + ``blocks.py`` ``unet_block`` so the
baseline matches what CSBDeep users get: same widths, 'same' padding, ReLU, no BatchNorm,
max-pool 2, nearest upsampling, concat [up, skip], Glorot-uniform weights with zero bias, a
1x1 linear head and the residual ``+ input`` before the final (linear) activation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class CAREUNet(nn.Module):
    """CSBDeep ``custom_unet`` for 2D; defaults are CSBDeep's ``Config`` defaults.

    Widths with base f: down level n has two convs of f*2^n; the bottom has f*2^depth then
    f*2^(depth-1); up level n has f*2^n then f*2^max(0, n-1). Every U-Net conv keeps its ReLU.
    """

    def __init__(self, n_depth=2, kern_size=5, n_first=32, residual=True, n_channel_in=1, n_channel_out=1):
        super().__init__()
        if residual and n_channel_in != n_channel_out:
            raise ValueError(f"residual CARE needs n_channel_in == n_channel_out, got {n_channel_in}, {n_channel_out}")
        self.n_depth, self.residual = n_depth, residual
        conv = lambda cin, cout: nn.Conv2d(cin, cout, kern_size, padding=kern_size // 2)  # noqa: E731
        width = lambda n: n_first * 2**n  # noqa: E731
        self.down = nn.ModuleList()
        cin = n_channel_in
        for n in range(n_depth):
            self.down.append(nn.ModuleList([conv(cin, width(n)), conv(width(n), width(n))]))
            cin = width(n)
        self.middle = nn.ModuleList([conv(cin, width(n_depth)), conv(width(n_depth), width(max(0, n_depth - 1)))])
        cin = width(max(0, n_depth - 1))
        self.up = nn.ModuleList()
        for n in reversed(range(n_depth)):
            self.up.append(nn.ModuleList([conv(cin + width(n), width(n)), conv(width(n), width(max(0, n - 1)))]))
            cin = width(max(0, n - 1))
        self.head = nn.Conv2d(cin, n_channel_out, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)  # Keras glorot_uniform: same fan_in/fan_out
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = 2**self.n_depth
        if x.shape[-1] % k or x.shape[-2] % k:
            raise ValueError(f"CARE input size {tuple(x.shape[-2:])} must be divisible by 2**n_depth = {k}")
        skips, h = [], x
        for convs in self.down:
            h = _convs(convs, h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = _convs(self.middle, h)
        for convs, skip in zip(self.up, reversed(skips)):
            h = _convs(convs, torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skip], 1))
        out = self.head(h)
        return out + x if self.residual else out


def _convs(convs: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    for c in convs:
        h = F.relu(c(h))
    return h


def percentile_normalize(x: np.ndarray, pmin: float, pmax: float, eps: float = 1e-20) -> tuple[np.ndarray, float, float]:
    """CSBDeep ``normalize``: map the pmin/pmax percentiles of ``x`` to 0/1 (no clipping).

    Returns the normalised image and the (low, high) values so the mapping can be undone.
    """
    lo, hi = np.percentile(x, [pmin, pmax])
    return ((x - lo) / (hi - lo + eps)).astype(np.float32), float(lo), float(hi)


def normalize_pairs(inputs: np.ndarray, targets: np.ndarray, rng: np.random.Generator, pmin_range, pmax_range):
    """CSBDeep training normalisation (``norm_percentiles``): per image draw pmin ~ U(pmin_range),
    pmax ~ U(pmax_range) once and normalise the input and the target each by its own percentiles."""
    xs, ys = [], []
    for x, y in zip(inputs, targets):
        pmin, pmax = rng.uniform(*pmin_range), rng.uniform(*pmax_range)
        xs.append(percentile_normalize(x, pmin, pmax)[0])
        ys.append(percentile_normalize(y, pmin, pmax)[0])
    return np.stack(xs), np.stack(ys)


class PercentileNormalizer:
    """CSBDeep prediction normaliser ``PercentileNormalizer(2, 99.8, do_after=True)``: normalise
    the input, and map the network output back to the input's intensity range."""

    def __init__(self, pmin: float = 2.0, pmax: float = 99.8):
        self.pmin, self.pmax = pmin, pmax

    def before(self, x: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        xn, lo, hi = percentile_normalize(x, self.pmin, self.pmax)
        return xn, (lo, hi)

    @staticmethod
    def after(y: np.ndarray, lo_hi: tuple[float, float]) -> np.ndarray:
        lo, hi = lo_hi
        return (y * (hi - lo) + lo).astype(np.float32)
