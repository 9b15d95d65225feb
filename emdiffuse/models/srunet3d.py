"""3D super-resolution U-Net (Heinrich et al., MICCAI 2017) as the official EMDiffuse repo re-implements it.

Re-implemented from Luchixiang/EMDiffuse ``3D-SR-Unet/model.py``: three levels of 32/64/128
channels (three 3x3x3 convs + ReLU each), lateral max-pooling (1, 2, 2) only, and transposed
convolutions (kernel 3, no activation) that bring every level to the output depth: the top
level's features are up-scaled by ``z`` along z directly and merged with the decoder's.
Officially z = 6 is split 2 (level 2) x 3 (level 1); here level 2 takes 2 when z is even and 1
otherwise, level 1 the rest, so any z works and z = 6 is the official network. As officially, a
kernel-3 transposed conv with stride > 3 leaves some output slices with bias only; the following
convs fill them in.

Output slice j of a d-section input is isotropic slice j of the block whose sections are the
input (section i covers slices i*z .. i*z + z - 1), so the net predicts d*z slices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, 3, padding=1)


def _up(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.ConvTranspose3d:
    return nn.ConvTranspose3d(cin, cout, 3, stride=stride, padding=1)


def _block(cin: int, cout: int) -> nn.ModuleList:
    return nn.ModuleList([_conv(cin, cout), _conv(cout, cout), _conv(cout, cout)])


def _run(block: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for conv in block:
        x = F.relu(conv(x))
    return x


class SRUNet3D(nn.Module):
    """(B, 1, d, H, W) sections in [-1, 1] -> (B, 1, d*z, H, W); H and W must be multiples of 4."""

    def __init__(self, z_factor: int, width: int = 32):
        super().__init__()
        if z_factor < 2:
            raise ValueError(f"SRUNet3D: z_factor must be >= 2, got {z_factor}")
        c1, c2, c3 = width, 2 * width, 4 * width
        self.z_factor = z_factor
        self.z_mid = 2 if z_factor % 2 == 0 else 1  # z up-scaling done at level 2
        self.enc1, self.enc2, self.enc3 = _block(1, c1), _block(c1, c2), _block(c2, c3)
        self.up1 = _up(c1, c1, (z_factor, 1, 1))
        self.up2 = _up(c2, c2, (self.z_mid, 1, 1))
        self.up3 = _up(c3, c2, (self.z_mid, 2, 2))
        self.dec2 = _block(2 * c2, c2)
        self.up4 = _up(c2, c1, (z_factor // self.z_mid, 2, 2))
        self.dec1 = _block(2 * c1, c1)
        self.final = _conv(c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if x.dim() != 5 or x.shape[1] != 1 or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"SRUNet3D: expected (B, 1, d, H, W) with H, W multiples of 4, got {tuple(x.shape)}")
        d, h, w = x.shape[2:]
        z, zm = self.z_factor, self.z_mid
        f1 = _run(self.enc1, x)
        f2 = _run(self.enc2, F.max_pool3d(f1, (1, 2, 2)))
        f3 = _run(self.enc3, F.max_pool3d(f2, (1, 2, 2)))
        skip1 = self.up1(f1, output_size=(d * z, h, w))
        skip2 = self.up2(f2, output_size=(d * zm, h // 2, w // 2))
        g2 = _run(self.dec2, torch.cat([self.up3(f3, output_size=(d * zm, h // 2, w // 2)), skip2], 1))
        g1 = _run(self.dec1, torch.cat([skip1, self.up4(g2, output_size=(d * z, h, w))], 1))
        return self.final(g1)


def cubic_weighted_mse(pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The official ``CubicWeightedPSNRLoss``: MSE weighted by w = e / (2 max e) + 0.5, e = (reference - target)^2.

    ``reference`` is the cubic interpolation of the input, so voxels that interpolation gets
    wrong weigh up to 1 and the rest 0.5; the max is over the whole batch, as officially (guarded
    against an all-zero error).
    """
    err = (reference - target) ** 2
    weight = err / (2 * err.max().clamp_min(1e-12)) + 0.5
    return ((pred - target) ** 2 * weight).mean()
