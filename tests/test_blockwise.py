"""A restore split into blocks (one job each) and gathered equals the restore of the whole input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emdiffuse.tasks.blockwise import block_share, gather, restore_block
from emdiffuse.cli import main
from emdiffuse.io import read_image, write_tiff

@pytest.fixture
def model_path(tiny_diffusion_model):
    return tiny_diffusion_model


def test_block_shares_tile_the_units_and_too_many_blocks_are_named():
    shares = [block_share(7, b, 3, "slices", "restore.x") for b in range(3)]
    assert [list(s) for s in shares] == [[0, 1], [2, 3], [4, 5, 6]]
    with pytest.raises(ValueError, match=r"restore.x: 8 blocks, but the input has 7 slices"):
        block_share(7, 0, 8, "slices", "restore.x")


def test_three_blocks_gathered_equal_the_whole_restore(model_path, tmp_path):
    stack = (np.random.default_rng(1).random((5, 40, 36)) * 4000 + 300).astype(np.uint16)
    write_tiff(tmp_path / "in.tif", stack, voxel_nm=(30.0, 4.0, 4.0))
    blocks = [tmp_path / f"block{b}.npz" for b in range(3)]
    for b, path in enumerate(blocks):
        restore_block(model_path, tmp_path / "in.tif", b, 3, path, seed=5, settings={"steps": 2})
    gather(blocks, model_path, tmp_path / "in.tif", tmp_path / "gathered.zarr", threshold=0.9)
    assert main(["predict", "--model", str(model_path), "--input", str(tmp_path / "in.tif"), "--output",
                 str(tmp_path / "whole.zarr"), "--seed", "5", "--steps", "2"]) == 0
    for name in ("gathered", "gathered_uncertainty"):
        ours, voxel = read_image(tmp_path / f"{name}.zarr")
        whole, _ = read_image(tmp_path / f"{name.replace('gathered', 'whole')}.zarr")
        assert ours.shape == stack.shape and np.array_equal(ours, whole) and voxel == pytest.approx((30.0, 4.0, 4.0))
    report = json.loads((tmp_path / "gathered_reliability.json").read_text())
    whole_report = json.loads((tmp_path / "whole_reliability.json").read_text())
    assert report["blocks"] == 3 and report["reliability"] == whole_report["reliability"]
    # blocks from another split do not tile: refused, nothing written
    with pytest.raises(ValueError, match="do not tile the output"):
        gather([blocks[0], blocks[2]], model_path, tmp_path / "in.tif", tmp_path / "bad.zarr", threshold=0.9)
    assert not (tmp_path / "bad.zarr").exists()
