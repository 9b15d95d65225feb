"""vEMDiffuse: diffusion that fills in the slices between two thick sections (Lu et al. 2024).

Re-implemented from Luchixiang/EMDiffuse ``models/vEMDiffuse_network.py`` and
``guided_diffusion_modules/unet_3d.py``: the condition is the two bounding sections, the target
one intermediate slice, and the U-Net also embeds *which* slice (sinusoidal embedding -> its own
2-layer MLP, like the noise level). All intermediate slices of a pair are sampled in one batch,
each with its own index and independent noise.

The index is the slice's offset from the lower section centre in isotropic slices (see
``emdiffuse.models.volumes``): 1 .. z-1 in the official keep-every-z-th-slice setting; here the sections
are integrated like real ones, so it runs over 0 .. z (odd z) or 0.5 .. z - 0.5 (even z), and the
sinusoidal embedding takes it as a real number.

Deviation, by composition: ``DiffusionUNet`` has no index input, so ``IndexedUNet`` wraps it
and *adds* the index embedding to the noise embedding (a forward hook on the public
``cond_embed``) instead of concatenating it and doubling each ResBlock's embedding projection.
The official code carries the additive form as a commented-out alternative (``emb = emb +
channel_emb``). The index reaches the wrapper as a constant extra condition channel, so
``ConditionalDiffusion`` drives it unchanged.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn
from tqdm.auto import tqdm

from emdiffuse.data.degrade import anisotropic
from emdiffuse.models.methods import image_seed
from emdiffuse.models.unet import PRESETS, DiffusionUNet, gamma_embedding
from emdiffuse.models.patches import OFFICIAL_BLUR_SIGMA
from emdiffuse.models.volumes import interpolate_z, output_positions, pair_offsets, tiled_stack_apply


class IndexedUNet(nn.Module):
    """eps(cat([lower, upper, index_plane, (cubic,) noisy]), gamma): a DiffusionUNet (3 or 4 input
    channels) whose noise embedding gets a learned embedding of the index (the constant value of
    ``index_plane``). ``cubic_condition``: also conditioned on the cubic interpolation of the four
    nearest sections at the slice (not official: the official net sees the two sections only)."""

    def __init__(self, cubic_condition: bool = False, **unet_kwargs):
        super().__init__()
        extra = int(cubic_condition)
        self.unet = DiffusionUNet(in_channel=3 + extra, out_channel=1, **unet_kwargs)
        inner = self.unet.inner_channel
        self.index_embed = nn.Sequential(nn.Linear(inner, 4 * inner), nn.SiLU(), nn.Linear(4 * inner, 4 * inner))
        self.in_channel, self.out_channel = 4 + extra, 1

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:  # noqa: D102
        emb = self.index_embed(gamma_embedding(x[:, 2, 0, 0].float(), self.unet.inner_channel))
        hook = self.unet.cond_embed.register_forward_hook(lambda _m, _i, out: out + emb.to(out.dtype))
        try:
            return self.unet(torch.cat([x[:, :2], x[:, 3:]], dim=1), gamma)
        finally:
            hook.remove()


def unet_kwargs(model: dict, where: str) -> dict:
    """DiffusionUNet arguments from ``{"preset": name, **overrides}`` (channels are fixed here)."""
    overrides = dict(model)
    preset = overrides.pop("preset", "official")
    if preset not in PRESETS:
        raise ValueError(f"{where}.preset: {preset!r} is not one of {sorted(PRESETS)}")
    allowed = set(inspect.signature(DiffusionUNet).parameters) - {"in_channel", "out_channel"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: preset, {sorted(allowed)}")
    kwargs = {k: v for k, v in {**PRESETS[preset], **overrides}.items() if k not in ("in_channel", "out_channel")}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def pair_sample(z_factor: int, blur_p: float, section_profile: str, cubic_condition: bool = False):
    """``BlockSampler.make`` for an isotropic block of ``block_depth`` slices: its two middle sections
    (each blurred with probability ``blur_p``, independently, as officially), the offset plane, (the
    cubic interpolation of all four sections at the target, with ``cubic_condition``) and one random
    slice between the two sections' centres (both ends included) as the target."""
    low = (z_factor - 1) / 2 + (z_factor if cubic_condition else 0)  # the lower section's centre

    def make(block: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        sections = anisotropic(block, z_factor, section_profile=section_profile)
        q = int(rng.integers(math.ceil(low), math.floor(low + z_factor) + 1))
        pair = sections[1:3] if cubic_condition else sections
        cond = [gaussian_filter(s, OFFICIAL_BLUR_SIGMA, mode="nearest") if rng.random() < blur_p else s for s in pair]
        cond.append(np.full_like(sections[0], q - low))
        if cubic_condition:
            cond.append(interpolate_z(sections, z_factor, np.array([q]), "cubic")[0])
        return np.stack(cond), block[q][None]

    return make


def block_depth(z_factor: int, cubic_condition: bool) -> int:
    """Isotropic slices a training block needs: two sections, or four for the cubic condition."""
    return (4 if cubic_condition else 2) * z_factor


Z_NOISE = ("independent", "shared")
# Chain starts (``predict.init``): pure noise (official), or an interpolation of the sections at
# each slice's position noised to the chain's first level (Come-Closer-Diffuse-Faster): "condition"
# the linear one between the slice's two sections, "cubic" the cubic convolution over the four
# nearest (``volumes.interpolate_z``; needs one section of context each side of a z chunk).
INITS = ("noise", "condition", "cubic")
INIT_INTERPOLATION = {"condition": "linear", "cubic": "cubic"}


def condition(batch_cond: torch.Tensor) -> torch.Tensor:
    """Sections (and the cubic interpolation) to [-1, 1]; the index plane stays in slice units."""
    return torch.cat([batch_cond[:, :2] * 2 - 1, batch_cond[:, 2:3], batch_cond[:, 3:] * 2 - 1], dim=1)


@torch.no_grad()
def sample_between(model, sections: np.ndarray, start: int, z_factor: int, *, seed: int, sampler: str,
                   steps: int, samples: int, tile: int, overlap: int, batch: int, multiple: int,
                   device: torch.device, progress: bool = False, precision: str = "fp32",
                   init: str = "noise", z_noise: str = "independent",
                   cubic_condition: bool = False) -> dict[str, np.ndarray]:
    """Mean and std of ``samples`` draws of every output slice between ``sections`` (Z, y, x) in [0, 1].

    Pair k's slices go through the sampler together (each with its index, ``samples`` copies,
    fresh noise from the generator of pair ``start + k``), tiled laterally; ``start`` is the global
    index of ``sections[0]``. The slice at the last section centre (odd z) is sampled on its own
    (generator ``start + Z - 1``), so no batch depends on where a z chunk ends. ``precision``: the
    network's (``ConditionalDiffusion.sample``; "bf16" autocast, the sampler state stays float32).
    ``init``: "noise" starts each chain from pure noise, as officially; "condition" / "cubic" from
    the linear / cubic interpolation of the sections at the slice's position (``INITS``). The
    interpolation uses every section given, so with "cubic" pass one section of context each side
    (the gaps it adds are sampled too; the caller drops them).
    ``z_noise="shared"``: the slices of one gap (same tile, same sample k) share their noise, initial
    and per step, so what the sampler invents continues from slice to slice instead of flickering
    (streaks in XZ/YZ); "independent": fresh noise per slice, as officially (``Z_NOISE``).
    ``cubic_condition``: the model also takes the cubic interpolation at each slice (``IndexedUNet``;
    one section of context each side, as for the cubic start).
    """
    if z_noise not in Z_NOISE:
        raise ValueError(f"z_noise must be one of {Z_NOISE}, got {z_noise!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    owner, offsets = pair_offsets(len(sections), z_factor)
    positions = output_positions(len(sections), z_factor)
    # per-slice images tiled with the sections: the interpolations the chains start from and the
    # cubic condition (one and the same image for init "cubic")
    start_kind = INIT_INTERPOLATION.get(init)  # None: chains start from noise
    kinds = list(dict.fromkeys([k for k in (start_kind, "cubic" if cubic_condition else None) if k]))
    extras = [interpolate_z(sections, z_factor, positions, kind) for kind in kinds]
    group = owner + (offsets >= z_factor)
    means, stds = [], []
    for g in tqdm(np.unique(group), disable=not progress, desc="pairs", leave=False):
        k = min(g, len(sections) - 2)
        offs = torch.as_tensor(offsets[group == g], dtype=torch.float32)
        n = len(offs)
        # one generator per section pair (global index), so chunking never changes the noise
        generator = torch.Generator().manual_seed(image_seed(seed, start + int(g)))

        def fn(tiles: torch.Tensor) -> torch.Tensor:  # channels: the two sections, then n per extra
            b, _, h, w = tiles.shape
            tiles = tiles.to(device) * 2 - 1
            pairs = tiles[:, :2].repeat_interleave(n * samples, 0)
            index = offs.to(device).repeat_interleave(samples).repeat(b)[:, None, None, None].expand(-1, 1, h, w)
            # batch order (tile, slice, sample), as pairs and index
            per_slice = {kind: tiles[:, 2 + i * n : 2 + (i + 1) * n].reshape(b * n, 1, h, w).repeat_interleave(samples, 0)
                         for i, kind in enumerate(kinds)}
            x0_init = per_slice[start_kind] if start_kind else None
            cond = torch.cat([pairs, index, *([per_slice["cubic"]] if cubic_condition else [])], 1)
            groups = None
            if z_noise == "shared":  # batch order (tile, slice, sample): one draw per (tile, sample)
                groups = (torch.arange(b)[:, None, None] * samples + torch.arange(samples)).expand(b, n, samples)
                groups = groups.reshape(-1)
            x = model.sample(cond, sampler=sampler, steps=steps, generator=generator,
                             precision=precision, x0_init=x0_init, noise_groups=groups)
            x = ((x.float() + 1) / 2).reshape(b, n, samples, h, w)
            spread = x.std(2) if samples > 1 else torch.zeros_like(x[:, :, 0])
            return torch.cat([x.mean(2), spread], 1)

        stack = np.concatenate([sections[k : k + 2], *(extra[group == g] for extra in extras)])
        out = tiled_stack_apply(fn, stack, tile=tile, overlap=overlap, batch=batch, multiple=multiple)
        means.append(out[:n])
        stds.append(out[n:])
    return {"prediction": np.concatenate(means), "uncertainty": np.concatenate(stds)}
