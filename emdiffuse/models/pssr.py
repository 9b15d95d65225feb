"""PSSR (Fang et al. 2021): BPHO-Salk/PSSR's network in plain PyTorch.

PSSR builds ``BilinearWrapper(DynamicUnet(wnresnet34 body, blur, self_attention, last_cross, bottle,
norm_type=Weight))`` with fastai v1.0.55 (``utils/unet.py``, ``utils/resnet.py``). Points of the
reference code that a reader of the paper would not guess, kept here on purpose:

- the ResNet-34 blocks are PSSR's own ``ResBlock``: 1x1 conv + ReLU, then 3x3 conv (carrying the
  stride), identity through AvgPool2d + 1x1 conv when the shape changes; weight norm, no BN, no bias;
- the body is cut with ``cut=-2`` of a head of three modules (pool, flatten, linear), so it *keeps*
  ``AdaptiveAvgPool2d(1)``: the U-Net bottleneck is a global feature vector, and the deepest decoder
  block upsamples it (PixelShuffle, then nearest resize) to the layer-4 grid before the skip;
- DynamicUnet passes ``blur`` (not ``blur_final``) to every block, so all five blocks blur;
- with weight norm, fastai's ICNR init lands on the recomputed ``weight`` and is lost, as is
  ``init_cnn`` on the encoder: encoder convs keep PyTorch's default init, fastai's ``conv_layer``
  ones Kaiming-normal with zero bias.

The final PixelShuffle (to the input grid) is not blurred (fastai's ``blur=False`` default; older
fastai v1 releases blurred every PixelShuffle_ICNR). ``width_mult`` scales every channel count and
``layers`` sets the blocks per encoder stage (1 and ResNet-34's 3, 4, 6, 3 = the published network),
so tests and CPU runs can use small copies of the same architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from emdiffuse.models.rcan import Residual

STEM = (32, 32, 64)
STAGE_CHANNELS = (64, 128, 256, 512)
RESNET34_LAYERS = (3, 4, 6, 3)  # blocks per stage


def _encoder_conv(cin: int, cout: int, ks: int = 3, stride: int = 1, act: bool = True) -> nn.Sequential:
    """PSSR ``resnet.conv_layer``: weight-normed conv without bias, optional ReLU."""
    layers = [weight_norm(nn.Conv2d(cin, cout, ks, stride=stride, padding=ks // 2, bias=False))]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


def conv_layer(cin: int, cout: int, ks: int = 3, act: bool = True, self_attention: bool = False) -> nn.Sequential:
    """fastai ``conv_layer(norm_type=NormType.Weight)``: Kaiming-normal conv with zero bias, weight
    norm, ReLU, optional self-attention."""
    conv = nn.Conv2d(cin, cout, ks, padding=(ks - 1) // 2)
    nn.init.kaiming_normal_(conv.weight)
    nn.init.zeros_(conv.bias)
    layers = [weight_norm(conv)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    if self_attention:
        layers.append(SelfAttention(cout))
    return nn.Sequential(*layers)


def batchnorm(channels: int) -> nn.BatchNorm2d:
    """fastai ``batchnorm_2d``: weight 1, bias 1e-3."""
    bn = nn.BatchNorm2d(channels)
    nn.init.constant_(bn.bias, 1e-3)
    return bn


class EncoderBlock(nn.Module):
    """PSSR ``resnet.ResBlock`` with expansion 1."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.convs = nn.Sequential(_encoder_conv(cin, cout, 1), _encoder_conv(cout, cout, 3, stride, act=False))
        self.idconv = nn.Identity() if cin == cout else _encoder_conv(cin, cout, 1, act=False)
        self.pool = nn.Identity() if stride == 1 else nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(x) + self.idconv(self.pool(x)))


class Encoder(nn.Module):
    """``wnresnet34`` up to and including its global average pool; returns the five skips too.
    ``layers``: blocks per stage (ResNet-34: 3, 4, 6, 3)."""

    def __init__(self, n_in: int, width, layers=RESNET34_LAYERS):
        super().__init__()
        sizes = [n_in, *(width(c) for c in STEM)]
        self.stem = nn.Sequential(*[_encoder_conv(sizes[i], sizes[i + 1], stride=2 if i == 0 else 1) for i in range(3)])
        self.stages = nn.ModuleList()
        cin = sizes[-1]
        if len(layers) != len(STAGE_CHANNELS) or min(layers) < 1:
            raise ValueError(f"pssr.model.layers: {list(layers)} must be {len(STAGE_CHANNELS)} block counts >= 1")
        for i, (channels, blocks) in enumerate(zip(STAGE_CHANNELS, layers)):
            cout = width(channels)
            self.stages.append(nn.Sequential(*[EncoderBlock(cin if j == 0 else cout, cout, 2 if i and not j else 1)
                                               for j in range(blocks)]))
            cin = cout
        self.skip_channels = [sizes[-1], *(width(c) for c in STAGE_CHANNELS)]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.stem(x)
        skips = [h]
        h = F.max_pool2d(h, 3, stride=2, padding=1)
        for stage in self.stages:
            h = stage(h)
            skips.append(h)
        return skips, F.adaptive_avg_pool2d(h, 1)


def _attention_conv(cin: int, cout: int) -> nn.Conv1d:
    """fastai v1 ``conv1d``: 1x1, no bias, Kaiming-normal, spectral norm."""
    conv = nn.Conv1d(cin, cout, 1, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    return spectral_norm(conv)


class SelfAttention(nn.Module):
    """fastai v1 ``SelfAttention`` (SAGAN): query/key to C/8, value to C, output gamma * attended + x, gamma 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.query, self.key = _attention_conv(channels, channels // 8), _attention_conv(channels, channels // 8)
        self.value = _attention_conv(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        f, g, h = self.query(flat), self.key(flat), self.value(flat)
        beta = F.softmax(torch.bmm(f.transpose(1, 2), g), dim=1)
        return (self.gamma * torch.bmm(h, beta) + flat).view_as(x)


class PixelShuffleICNR(nn.Module):
    """fastai v1 ``PixelShuffle_ICNR``: 1x1 conv to 4 nf, ReLU, PixelShuffle(2), optional blur
    (replication-pad the top/left, 2x2 average) against checkerboard artefacts."""

    def __init__(self, cin: int, cout: int, blur: bool):
        super().__init__()
        self.conv = conv_layer(cin, cout * 4, ks=1)
        self.blur = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)) if blur else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(F.pixel_shuffle(self.conv(x), 2))


class UnetBlock(nn.Module):
    """fastai v1 ``UnetBlock``: upsample, BN on the skip, ReLU(concat), two conv layers."""

    def __init__(self, up_channels: int, skip_channels: int, final: bool, blur: bool, self_attention: bool):
        super().__init__()
        self.shuf = PixelShuffleICNR(up_channels, up_channels // 2, blur)
        self.bn = batchnorm(skip_channels)
        cin = up_channels // 2 + skip_channels
        self.out_channels = cin // 2 if final else cin
        self.conv1 = conv_layer(cin, self.out_channels)
        self.conv2 = conv_layer(self.out_channels, self.out_channels, self_attention=self_attention)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # to the skip's size (the pooled bottleneck is 1 px): always called, the identity where the
        # sizes agree, so that a traced network (BioImage Model Zoo export) follows every input size
        up = F.interpolate(self.shuf(up), skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(F.relu(torch.cat([up, self.bn(skip)], 1))))


class PSSRUNet(nn.Module):
    """PSSR's ``BilinearWrapper(DynamicUnet(wnresnet34))`` for ``scale``-x super-resolution
    (scale 1: the same U-Net without pre-upsampling, for denoising).

    Takes (B, n_in, h, w) and returns (B, n_out, h*scale, w*scale); h*scale and w*scale should be
    multiples of 32 (the encoder's stride).
    """

    def __init__(self, scale: int, n_in: int = 1, n_out: int = 1, blur: bool = True, self_attention: bool = True,
                 width_mult: float = 1.0, layers=RESNET34_LAYERS):
        super().__init__()
        self.scale = scale
        width = lambda c: max(1, round(c * width_mult))  # noqa: E731
        self.encoder = Encoder(n_in, width, tuple(layers))
        skips = self.encoder.skip_channels[::-1]
        ni = skips[0]
        self.bn = batchnorm(ni)
        self.middle = nn.Sequential(conv_layer(ni, 2 * ni), conv_layer(2 * ni, ni))
        self.blocks = nn.ModuleList()
        for i, skip in enumerate(skips):
            self.blocks.append(UnetBlock(ni, skip, final=i == len(skips) - 1, blur=blur,
                                         self_attention=self_attention and i == len(skips) - 3))
            ni = self.blocks[-1].out_channels
        self.final_shuf = PixelShuffleICNR(ni, ni, blur=False)
        ni += n_in  # last_cross: the (upsampled) input is concatenated
        self.res = Residual(conv_layer(ni, ni // 2), conv_layer(ni // 2, ni))  # res_block(bottle=True)
        self.head = conv_layer(ni, n_out, ks=1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        skips, h = self.encoder(x)
        h = self.middle(F.relu(self.bn(h)))
        for block, skip in zip(self.blocks, reversed(skips)):
            h = block(h, skip)
        return self.head(self.res(torch.cat([self.final_shuf(h), x], 1)))
