"""The official EMDiffuse network, computed the way the official code computes it: the speed baseline.

Re-implemented (not copied) from Luchixiang/EMDiffuse at commit 79c8045,
``models/guided_diffusion_modules/unet.py`` and ``nn.py`` (guided-diffusion via Palette), with the
official EMDiffuse-n/-r config (inner 32, mults 1-2-4-8, 2 res blocks, ``attn_res=[16]`` so the only
attention is in the middle block at 1/8, dropout 0.2, heads of 32 channels, 32 groups, FiLM
scale-shift norm, residual up/downsampling, gamma embedding). What makes it the *official
execution* rather than just the official function:

* GroupNorm always normalises in float32 (``GroupNorm32``) and SiLU is ``x * sigmoid(x)``;
* attention is the legacy QKV form: Conv1d projections on (B, C, T), explicit einsum,
  softmax in float32, a second einsum (no fused scaled-dot-product kernel);
* fp32, contiguous NCHW.

Gradient checkpointing (a training-memory feature, a no-op under ``no_grad``) is left out.
Parameter names match the official ones, which :class:`emdiffuse.models.unet.DiffusionUNet`
mirrors, so ``DiffusionUNet(**PRESETS["official"]).load_state_dict(ref.state_dict())`` works and
both compute the same function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from emdiffuse.models.unet import gamma_embedding, zero_module

OFFICIAL = dict(in_channel=2, out_channel=1, inner_channel=32, channel_mults=(1, 2, 4, 8), res_blocks=2,
                attn_res=(16,), dropout=0.2, num_head_channels=32, groups=32)


class SiLU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class GroupNorm32(nn.GroupNorm):
    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class EmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ResBlock(nn.Module):
    def __init__(self, cin, emb_dim, dropout, cout=None, groups=32, up=False, down=False):
        super().__init__()
        cout = cout or cin
        self.in_layers = nn.Sequential(GroupNorm32(groups, cin), SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.resample = ((lambda t: F.interpolate(t, scale_factor=2, mode="nearest")) if up
                         else nn.AvgPool2d(2, 2) if down else None)
        self.emb_layers = nn.Sequential(SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_layers = nn.Sequential(GroupNorm32(groups, cout), SiLU(), nn.Dropout(dropout),
                                        zero_module(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip_connection = nn.Identity() if cout == cin else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        if self.resample is None:
            h = self.in_layers(x)
        else:
            h = self.resample(self.in_layers[:-1](x))
            x = self.resample(x)
            h = self.in_layers[-1](h)
        scale, shift = self.emb_layers(emb).type(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers[1:](h)


class AttentionBlock(nn.Module):
    def __init__(self, channels, head_channels, groups=32):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = GroupNorm32(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        length, ch = qkv.shape[-1], c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * ch, length).split(ch, dim=1)  # legacy: heads, then q/k/v
        s = ch ** -0.25
        weight = torch.einsum("bct,bcs->bts", q * s, k * s)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        h = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class ReferenceUNet(nn.Module):
    """The official UNet's forward pass for ``x = cat([cond, y_t])`` at noise level gamma (B,)."""

    def __init__(self, in_channel=2, out_channel=1, inner_channel=32, channel_mults=(1, 2, 4, 8), res_blocks=2,
                 attn_res=(16,), dropout=0.2, num_head_channels=32, groups=32):
        super().__init__()
        self.inner_channel = inner_channel
        emb = 4 * inner_channel
        self.cond_embed = nn.Sequential(nn.Linear(inner_channel, emb), SiLU(), nn.Linear(emb, emb))
        ch = channel_mults[0] * inner_channel
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channel, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(channel_mults):
            for _ in range(res_blocks):
                layers = [ResBlock(ch, emb, dropout, mult * inner_channel, groups)]
                ch = mult * inner_channel
                if ds in attn_res:
                    layers.append(AttentionBlock(ch, num_head_channels, groups))
                self.input_blocks.append(EmbedSequential(*layers))
                chans.append(ch)
            if level < len(channel_mults) - 1:
                self.input_blocks.append(EmbedSequential(ResBlock(ch, emb, dropout, ch, groups, down=True)))
                chans.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(ResBlock(ch, emb, dropout, groups=groups),
                                            AttentionBlock(ch, num_head_channels, groups),
                                            ResBlock(ch, emb, dropout, groups=groups))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb, dropout, mult * inner_channel, groups)]
                ch = mult * inner_channel
                if ds in attn_res:
                    layers.append(AttentionBlock(ch, num_head_channels, groups))
                if level and i == res_blocks:
                    layers.append(ResBlock(ch, emb, dropout, ch, groups, up=True))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(groups, ch), SiLU(), zero_module(nn.Conv2d(ch, out_channel, 3, padding=1)))

    def forward(self, x, gamma):
        emb = self.cond_embed(gamma_embedding(gamma.view(-1), self.inner_channel))
        h, skips = x.float(), []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


def trained_like_(net: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every weight with a seeded, non-zero, trained-like draw (kaiming fan-in for convs and
    linears, as official training initialises them, scaled by 0.5 so activations stay O(1) through the
    residual stack; small random biases and norm affines), so outputs and precision errors are realistic."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(net.named_parameters()):
            if p.dim() > 1:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 * math.sqrt(2.0 / fan_in))
            elif name.endswith("weight"):  # GroupNorm scale
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return net
