"""Tiled inference for images of any size.

Networks see fixed-size tiles (the official code trains and tests on 256-px patches and ships
no stitching; the authors stitched externally). Here tiles overlap and are blended with a
raised-cosine window so there are no seams, and only ``batch`` tiles go through the network at
a time so memory stays bounded whatever the image size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: np.ndarray,
    *,
    tile: int,
    overlap: int,
    batch: int,
    scale: int = 1,
    multiple: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Apply ``fn`` ((B, 1, th, tw) -> (B, C, th*scale, tw*scale)) to a (H, W) image; return (C, H*s, W*s).

    Tiles are ``tile`` px (a multiple of ``multiple``) with ``overlap`` px shared between
    neighbours. An image side shorter than the tile is reflection-padded only up to the next
    multiple of ``multiple`` (and the tile shrunk to it); padding is cropped from the output.
    Overlaps are blended with a separable window that is positive everywhere, normalised by
    the summed weights, so an identity ``fn`` reproduces the image exactly.
    """
    if image.ndim != 2:
        raise ValueError(f"tiled_apply expects a 2D image, got shape {image.shape}")
    if tile % multiple:
        raise ValueError(f"tile {tile} must be a multiple of {multiple} (the network's size divisor)")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile={tile})")
    h, w = image.shape
    th, tw = (min(tile, -(-n // multiple) * multiple) for n in (h, w))
    oh, ow = min(overlap, th // 2), min(overlap, tw // 2)  # a shrunk tile is the only one on its axis
    padded = np.pad(image, ((0, max(th - h, 0)), (0, max(tw - w, 0))), mode="reflect").astype(np.float32)
    corners = [(y, x) for y in _starts(padded.shape[0], th, oh) for x in _starts(padded.shape[1], tw, ow)]
    window = np.outer(_window(th * scale, oh * scale), _window(tw * scale, ow * scale)).astype(np.float32)

    out, weight = None, np.zeros((padded.shape[0] * scale, padded.shape[1] * scale), np.float32)
    with torch.inference_mode():
        for i in tqdm(range(0, len(corners), batch), disable=not progress, desc="tiles", dynamic_ncols=True):
            chunk = corners[i : i + batch]
            tiles = torch.from_numpy(np.stack([padded[y : y + th, x : x + tw] for y, x in chunk])[:, None])
            result = fn(tiles).float().cpu().numpy()
            expected = (len(chunk), th * scale, tw * scale)
            if result.ndim != 4 or (result.shape[0], *result.shape[2:]) != expected:
                raise ValueError(f"tile function returned shape {result.shape}, expected (B, C, {expected[1]}, {expected[2]})")
            if out is None:
                out = np.zeros((result.shape[1], *weight.shape), np.float32)
            for (y, x), r in zip(chunk, result):
                region = np.s_[y * scale : (y + th) * scale, x * scale : (x + tw) * scale]
                out[(slice(None), *region)] += r * window
                weight[region] += window
    return out[:, : h * scale, : w * scale] / weight[: h * scale, : w * scale]


def _starts(length: int, size: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length) with at least ``overlap`` shared; the last one flush with the end."""
    starts = list(range(0, max(length - size, 0) + 1, size - overlap))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def _window(n: int, ramp: int) -> np.ndarray:
    """1 in the middle, raised-cosine ramps of ``ramp`` px at both ends, never zero."""
    w = np.ones(n)
    if ramp:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        w[:ramp], w[n - ramp :] = np.minimum(w[:ramp], r), np.minimum(w[n - ramp :], r[::-1])
    return w
