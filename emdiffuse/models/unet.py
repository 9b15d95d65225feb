"""The EMDiffuse noise-prediction network: a guided-diffusion U-Net in Palette/SR3 form.

Re-implemented from Luchixiang/EMDiffuse ``models/guided_diffusion_modules/unet.py`` (itself
openai/guided-diffusion via Palette) with the settings EMDiffuse uses: FiLM scale-shift norm,
residual up/downsampling, a continuous noise-level (gamma) embedding and zero-initialised output
layers. Module names and parameter shapes mirror the official code, so an official checkpoint
(``*_Network.pth`` with its ``denoise_fn.`` prefix stripped) loads with ``strict=True``.

Attention placement follows the official/Palette convention: ``attn_res`` holds downsampling
factors ``ds`` (1, 2, 4, ...), not pixel resolutions. The official config has ``attn_res=[16]``
with four levels, where ``ds`` only reaches 8, so no encoder/decoder block gets attention and
self-attention exists only in the middle block (at 1/8 resolution: 32x32 for a 256 input).
guided-diffusion's own script converts resolutions with ``ds = image_size // res``; for a
256 image that gives ds = 16 as well, so both readings place no attention outside the middle.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PRESETS: dict[str, dict] = {
    # config/EMDiffuse-n.json and EMDiffuse-r.json (identical networks).
    "official": dict(in_channel=2, out_channel=1, inner_channel=32, channel_mults=(1, 2, 4, 8),
                     res_blocks=2, attn_res=(16,), dropout=0.2, num_head_channels=32,
                     image_size=256, norm_groups=32),
    # CPU-friendly: the official four levels (so the middle attention runs at 1/8 resolution,
    # as officially; at 1/4 it would cost 4x the tokens, squared) with half the width and
    # 1 res block: 2.8M parameters, ~0.2 s per 256x256 evaluation on 2 CPU cores.
    "cpu-small": dict(in_channel=2, out_channel=1, inner_channel=16, channel_mults=(1, 2, 4, 8),
                      res_blocks=1, attn_res=(16,), dropout=0.1, num_head_channels=32,
                      image_size=256, norm_groups=16),
    # Unit tests only.
    "tiny": dict(in_channel=2, out_channel=1, inner_channel=8, channel_mults=(1, 2),
                 res_blocks=1, attn_res=(), dropout=0.0, num_head_channels=8,
                 image_size=32, norm_groups=8),
}


NOISE_EMBEDDINGS = ("gamma", "log_snr")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def gamma_embedding(gamma: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of the continuous noise level, [cos | sin] as in the official code."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=gamma.device) / half)
    args = gamma.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a layer so each residual branch (and the output) starts as the identity / zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def _num_groups(channels: int, norm_groups: int) -> int:
    """``norm_groups`` if it divides ``channels``, else the largest divisor below it."""
    return next(g for g in range(min(norm_groups, channels), 0, -1) if channels % g == 0)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that is safe in reduced precision.

    float16 is normalised in float32 as in the official code. bfloat16 has float32's range and the
    kernels accumulate statistics in float32, so it stays bf16: the float32 round trip made
    normalisation ~9x slower and half the copies of a bf16 CPU forward pass.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(x, self.weight, self.bias)

    def normalize(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Group-normalise ``x`` with another per-channel affine (e.g. one with FiLM folded in)."""
        h = x.float() if x.dtype == torch.float16 else x
        out = F.group_norm(h, self.num_groups, weight.to(h.dtype), bias.to(h.dtype), self.eps)
        return out.to(x.dtype)


def normalization(channels: int, norm_groups: int) -> GroupNorm32:
    return GroupNorm32(_num_groups(channels, norm_groups), channels)


def norm_act(norm: GroupNorm32, x: torch.Tensor, scale: torch.Tensor | None = None,
             shift: torch.Tensor | None = None) -> torch.Tensor:
    """SiLU(FiLM(GroupNorm(x))) in as few passes over memory as the case allows (on the CPU about a
    third of an evaluation in bf16 goes to such element-wise passes, the rest to convolutions).

    ``scale``/``shift``: (B, C) or None. When one row serves the whole batch (the sampler evaluates
    a batch at one noise level, see :meth:`DiffusionUNet.forward`), FiLM is folded into the norm's
    affine, ``w (1 + scale)`` and ``b (1 + scale) + shift``, saving a pass. Without autograd SiLU
    overwrites the fresh norm output instead of allocating another tensor.
    """
    if scale is not None and scale.shape[0] == 1:
        gain = 1 + scale[0].float()
        h = norm.normalize(x, norm.weight.float() * gain, norm.bias.float() * gain + shift[0].float())
    else:
        h = norm(x)
        if scale is not None:
            scale, shift = scale.to(h.dtype)[..., None, None], shift.to(h.dtype)[..., None, None]
            h = torch.addcmul(shift, h, 1 + scale)  # one pass, keeps the memory format
    return F.silu(h, inplace=not torch.is_grad_enabled())


class EmbedBlock(nn.Module):
    """Marker for layers whose forward takes the noise embedding as a second argument."""


class EmbedSequential(nn.Sequential):
    """Sequential that hands the embedding to the layers that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for layer in self:
            x = layer(x, emb) if isinstance(layer, EmbedBlock) else layer(x)
        return x


class ResBlock(EmbedBlock):
    """Residual block with FiLM (scale-shift) conditioning; optionally resamples by 2 (resblock_updown)."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channel: int | None = None,
                 norm_groups: int = 32, up: bool = False, down: bool = False):
        super().__init__()
        out_channel = out_channel or channels
        self.in_layers = nn.Sequential(normalization(channels, norm_groups), nn.SiLU(),
                                       nn.Conv2d(channels, out_channel, 3, padding=1))
        self.resample = _upsample if up else _downsample if down else None
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channel))
        self.out_layers = nn.Sequential(normalization(out_channel, norm_groups), nn.SiLU(),
                                        nn.Dropout(dropout),
                                        zero_module(nn.Conv2d(out_channel, out_channel, 3, padding=1)))
        self.skip_connection = (nn.Identity() if out_channel == channels
                                else nn.Conv2d(channels, out_channel, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # noqa: D102
        norm, _, conv = self.in_layers
        h = norm_act(norm, x)
        if self.resample is _upsample and not torch.is_grad_enabled():
            h, x = upsample_conv(conv, h), self.resample(x)  # the same function, 2.25x fewer multiply-adds
        else:
            if self.resample is not None:  # resample after the activation, before the conv (official order)
                h, x = self.resample(h), self.resample(x)
            h = conv(h)
        scale, shift = self.emb_layers(emb).chunk(2, dim=1)
        out_norm, _, dropout, out_conv = self.out_layers
        h = out_conv(dropout(norm_act(out_norm, h, scale, shift)))
        skip = self.skip_connection(x)
        return skip + h if torch.is_grad_enabled() else h.add_(skip)  # h is fresh: no new tensor


def _phase_weights(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) -> (4 O, I, 2, 2): for each output phase (a, b) of a 3x3 convolution on a x2
    nearest-upsampled image, the taps folded onto the 2x2 source window they read (summed where
    two taps land on the same source pixel). Phase order (0, 0), (0, 1), (1, 0), (1, 1)."""
    def fold(w: torch.Tensor, dim: int) -> list[torch.Tensor]:
        t0, t1, t2 = w.unbind(dim)
        return [torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)]  # phase 0: rows i-1, i; 1: i, i+1

    return torch.cat([col for row in fold(weight, 2) for col in fold(row, 3)], 0)


def upsample_conv(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
    """``conv(nearest_upsample_x2(h))`` for a 3x3, padding-1 conv, without the upsampled tensor.

    Each output phase of the high-resolution conv reads a 2x2 window of ``h``, so one 2x2 conv with
    4x the output channels on the small image computes all four (16 instead of 36 multiply-adds per
    output pixel and channel, the official up-sampling blocks' costliest layer); the phases are then
    interleaved. Equal to the direct form up to float rounding (the folded taps are summed first).
    """
    b, _, height, width = h.shape
    out_channels = conv.out_channels
    y = F.conv2d(h, _phase_weights(conv.weight), None, padding=1)  # (B, 4 O, H + 1, W + 1)
    layout = torch.channels_last if h.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((b, out_channels, 2 * height, 2 * width), dtype=y.dtype, device=y.device, memory_format=layout)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[:, :, dy::2, dx::2] = y[:, k * out_channels:(k + 1) * out_channels, dy:dy + height, dx:dx + width]
    return out if conv.bias is None else out.add_(conv.bias.to(out.dtype).view(1, -1, 1, 1))


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def _downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=2, stride=2)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all pixels, via scaled_dot_product_attention.

    The qkv channel layout is the official "legacy" one (heads first, then q/k/v inside each
    head) so official weights load unchanged; 1x1 Conv2d replaces the official Conv1d (the same
    weights with one more singleton dimension, converted on load).
    """

    def __init__(self, channels: int, num_head_channels: int, norm_groups: int = 32):
        super().__init__()
        if channels % num_head_channels:
            raise ValueError(f"attention: channels {channels} not divisible by "
                             f"num_head_channels {num_head_channels}")
        self.num_heads = channels // num_head_channels
        self.norm = normalization(channels, norm_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        b, c, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, self.num_heads, 3 * c // self.num_heads, height * width)
        q, k, v = qkv.transpose(-1, -2).chunk(3, dim=-1)  # each (b, heads, tokens, head_channels)
        h = F.scaled_dot_product_attention(q, k, v)
        h = h.transpose(-1, -2).reshape(b, c, height, width)
        return x + self.proj_out(h)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept the official Conv1d weights (out, in, 1) for the 1x1 Conv2d layers."""
        for name in ("qkv.weight", "proj_out.weight"):
            w = state_dict.get(prefix + name)
            if w is not None and w.dim() == 3:
                state_dict[prefix + name] = w[..., None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DiffusionUNet(nn.Module):
    """Predicts the noise in ``x = cat([condition, noisy_target])`` at continuous noise level gamma.

    ``init="zero"`` (default) keeps guided-diffusion's zero-initialised residual/output layers.

    Two options, off by default (official), for the non-official ``emdiffuse_v`` variant:
    ``out_norm_groups`` sets the output head's GroupNorm groups (official: one channel per group,
    i.e. instance norm, which removes every feature map's mean, so the output barely follows a
    uniform shift of the input and long or deterministic chains let the image mean drift);
    ``noise_embedding="log_snr"`` embeds log(gamma / (1 - gamma)) instead of gamma itself, whose
    sinusoid (frequencies <= 1) hardly tells noise levels apart near either end.
    ``init="kaiming"`` reproduces what official EMDiffuse training actually does
    (``BaseNetwork.init_weights``): kaiming_normal(fan_in) on every conv/linear weight and zero
    biases, which also overwrites the zero-initialised layers.
    """

    def __init__(self, in_channel: int = 2, out_channel: int = 1, inner_channel: int = 32,
                 channel_mults: tuple[int, ...] = (1, 2, 4, 8), res_blocks: int = 2,
                 attn_res: tuple[int, ...] = (16,), dropout: float = 0.2, num_head_channels: int = 32,
                 image_size: int = 256, norm_groups: int = 32, init: str = "zero",
                 out_norm_groups: int | None = None, noise_embedding: str = "gamma"):
        super().__init__()
        if noise_embedding not in NOISE_EMBEDDINGS:
            raise ValueError(f"DiffusionUNet: noise_embedding must be one of {NOISE_EMBEDDINGS}, got {noise_embedding!r}")
        self.noise_embedding = noise_embedding
        self.in_channel, self.out_channel = in_channel, out_channel
        self.inner_channel, self.image_size = inner_channel, image_size
        self.channel_mults, self.attn_res = tuple(channel_mults), tuple(attn_res)
        emb_dim = 4 * inner_channel
        self.cond_embed = nn.Sequential(nn.Linear(inner_channel, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))

        def res(cin: int, cout: int | None = None, **kw) -> ResBlock:
            return ResBlock(cin, emb_dim, dropout, cout, norm_groups, **kw)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, num_head_channels, norm_groups)

        ch = int(channel_mults[0] * inner_channel)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channel, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mults):
            for _ in range(res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * inner_channel))]
                ch = int(mult * inner_channel)
                if ds in self.attn_res:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mults) - 1:
                self.input_blocks.append(EmbedSequential(res(ch, down=True)))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(res(ch), attn(ch), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(mult * inner_channel))]
                ch = int(mult * inner_channel)
                if ds in self.attn_res:
                    layers.append(attn(ch))
                if level and i == res_blocks:
                    layers.append(res(ch, up=True))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(normalization(ch, out_norm_groups or norm_groups), nn.SiLU(),
                                 zero_module(nn.Conv2d(ch, out_channel, 3, padding=1)))
        if init == "kaiming":
            self._kaiming_init()
        elif init != "zero":
            raise ValueError(f"DiffusionUNet: init must be 'zero' or 'kaiming', got {init!r}")

    def _kaiming_init(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                nn.init.zeros_(m.bias)

    @torch.no_grad()
    def zero_init_outputs(self, start: int) -> None:
        """Zero the output layer for channels ``start:``, so they predict exactly 0 at first whatever
        ``init`` did (the aleatoric log-scale head starts at s = 0, i.e. as plain MSE)."""
        conv = self.out[-1]
        conv.weight[start:].zero_()
        conv.bias[start:].zero_()

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channel, H, W) = cat([condition, noisy_target], 1); gamma: (B,) alpha-bar in (0, 1].

        Returns the predicted noise, (B, out_channel, H, W).
        """
        self._check_input(x)
        gamma = gamma.reshape(-1)
        if gamma.numel() != x.shape[0] and gamma.numel() != 1:
            raise ValueError(f"DiffusionUNet: gamma has {gamma.numel()} values for a batch of {x.shape[0]}")
        if bool((gamma == gamma[0]).all()):  # one noise level for the batch (sampling): one embedding row,
            gamma = gamma[:1]                 # broadcast, which lets each block fold FiLM into its norm
        level = gamma if self.noise_embedding == "gamma" else torch.logit(gamma.float(), eps=1e-7)
        emb = self.cond_embed(gamma_embedding(level, self.inner_channel))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        norm, _, conv = self.out
        return conv(norm_act(norm, h))

    def _check_input(self, x: torch.Tensor) -> None:
        factor = 2 ** (len(self.channel_mults) - 1)
        if x.dim() != 4 or x.shape[1] != self.in_channel:
            raise ValueError(f"DiffusionUNet: expected input (B, {self.in_channel}, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"DiffusionUNet: H and W must be divisible by {factor} "
                             f"(2**(levels-1) for {len(self.channel_mults)} levels), "
                             f"got {tuple(x.shape[-2:])}")
