"""Tiled inference: exact reconstruction, no seams, super-resolution scaling, clear errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emdiffuse.models.tiling import tiled_apply

SIZES = [(5, 7), (31, 50), (64, 64), (150, 97)]  # smaller than the tile, not multiples, several tiles


@pytest.mark.parametrize("shape", SIZES)
def test_identity_and_pixelwise_functions_are_reproduced(shape):
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    identity = tiled_apply(lambda t: t, image, tile=32, overlap=8, batch=3, multiple=8)
    assert identity.shape == (1, *shape)
    np.testing.assert_allclose(identity[0], image, atol=1e-6)
    two = tiled_apply(lambda t: torch.cat([t**2, 1 - t], 1), image, tile=32, overlap=8, batch=2, multiple=4)
    np.testing.assert_allclose(two, np.stack([image**2, 1 - image]), atol=1e-6)


def test_constant_image_has_no_seams():
    out = tiled_apply(lambda t: t, np.full((100, 77), 0.3, np.float32), tile=32, overlap=12, batch=4)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


@pytest.mark.parametrize("shape", [(9, 13), (70, 45)])
def test_scale_two_with_nearest_upsampling(shape):
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    out = tiled_apply(lambda t: F.interpolate(t, scale_factor=2, mode="nearest"), image,
                      tile=32, overlap=8, batch=2, scale=2, multiple=8)
    np.testing.assert_allclose(out[0], image.repeat(2, 0).repeat(2, 1), atol=1e-6)


def test_tiles_are_batched_and_sized_for_the_network():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape))
        return t

    tiled_apply(fn, np.zeros((100, 100), np.float32), tile=32, overlap=8, batch=3, multiple=16)
    assert all(s[0] <= 3 and s[2:] == (32, 32) for s in seen)
    tiled_apply(fn, np.zeros((20, 40), np.float32), tile=64, overlap=8, batch=3, multiple=16)
    assert seen[-1][2:] == (32, 48)  # padded to the next multiple of 16, not to the full tile


def test_errors():
    image = np.zeros((40, 40), np.float32)
    with pytest.raises(ValueError, match="multiple of 8"):
        tiled_apply(lambda t: t, image, tile=30, overlap=4, batch=1, multiple=8)
    with pytest.raises(ValueError, match="overlap"):
        tiled_apply(lambda t: t, image, tile=32, overlap=32, batch=1)
    with pytest.raises(ValueError, match="returned shape"):
        tiled_apply(lambda t: t[..., :-1], image, tile=32, overlap=4, batch=1)
