"""RCAN (Zhang et al. 2018), following yulunzhang/RCAN ``RCAN_TrainCode/code/model/rcan.py`` and
``model/common.py``; with ``scale=1`` and no upsampler it is the 2D form of 3D-RCAN
(AiviaCommunity/3D-RCAN ``rcan/model.py``, Chen et al. 2021).

head conv -> G residual groups (B RCABs + conv + short skip) -> conv + long skip -> tail
(``Upsampler``: log2(s) x [conv C->4C, PixelShuffle(2)], or conv C->9C, PixelShuffle(3); then conv
to ``n_colors``). RCAN's ``MeanShift`` (subtract the DIV2K RGB mean at ``rgb_range`` 255) becomes
``(x - data_mean) * data_range`` on the way in and its inverse on the way out, which also covers
3D-RCAN's ``2x - 1`` standardisation (``data_mean=0.5, data_range=2``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _conv(cin: int, cout: int, kernel: int = 3) -> nn.Conv2d:
    """RCAN ``default_conv``: 'same' padding, with bias."""
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


class ChannelAttention(nn.Module):
    """RCAN ``CALayer``: global average pool, 1x1 conv C->C/r, ReLU, 1x1 conv C/r->C, sigmoid, multiply."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        if channels // reduction < 1:
            raise ValueError(f"channel attention: {channels} channels cannot be reduced by {reduction}")
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), _conv(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            _conv(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class RCAB(nn.Module):
    """Residual channel attention block: x + res_scale * CA(conv(ReLU(conv(x)))).

    ``res_scale`` is 3D-RCAN's ``residual_scaling``; the original RCAB ignores its own (always 1)."""

    def __init__(self, channels: int, reduction: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.ReLU(inplace=True), _conv(channels, channels),
                                  ChannelAttention(channels, reduction))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class Residual(nn.Sequential):
    """A sequence of modules with an identity skip around it (RCAN's short and long skips)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


def upsampler(scale: int, channels: int) -> list[nn.Module]:
    """RCAN ``common.Upsampler`` (no BN, no activation); empty for scale 1 (3D-RCAN)."""
    if scale == 1:
        return []
    if scale & (scale - 1) == 0:
        return [m for _ in range(int(math.log2(scale))) for m in (_conv(channels, 4 * channels), nn.PixelShuffle(2))]
    if scale == 3:
        return [_conv(channels, 9 * channels), nn.PixelShuffle(3)]
    raise ValueError(f"RCAN upsampler: scale {scale} is not 1, 3 or a power of 2")


class RCAN(nn.Module):
    """RCAN(G, B, C, r, scale); published sizes: original 10 x 20 x 64, r 16; 3D-RCAN 5 x 3 x 32, r 8.

    ``glorot_init``: Keras' glorot-uniform weights and zero biases (3D-RCAN is Keras); otherwise
    PyTorch's default initialisation, as the original RCAN. ``data_mean`` is a buffer so a mean
    measured on the training data is saved with the weights.
    """

    def __init__(self, n_resgroups: int, n_resblocks: int, n_feats: int, reduction: int, scale: int,
                 n_colors: int = 1, res_scale: float = 1.0, data_mean: float = 0.5, data_range: float = 2.0,
                 glorot_init: bool = False):
        super().__init__()
        groups = [Residual(*[RCAB(n_feats, reduction, res_scale) for _ in range(n_resblocks)], _conv(n_feats, n_feats))
                  for _ in range(n_resgroups)]
        self.head = _conv(n_colors, n_feats)
        self.body = Residual(*groups, _conv(n_feats, n_feats))
        self.tail = nn.Sequential(*upsampler(scale, n_feats), _conv(n_feats, n_colors))
        self.register_buffer("data_mean", torch.tensor(float(data_mean)))
        self.data_range = float(data_range)
        if glorot_init:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head((x - self.data_mean) * self.data_range)
        return self.tail(self.body(h)) / self.data_range + self.data_mean
