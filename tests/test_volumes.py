"""Volume helpers and the non-learned volume methods: output grid, z interpolation, chunking, I/O."""

import json

import numpy as np
import pytest
import torch

from emdiffuse.data.degrade import anisotropic_positions
from emdiffuse.models.catalog import VOLUME
from emdiffuse.models.volume_methods import CubicMethod, build_volume_method, load_volume_method
from emdiffuse.models.volumes import (
    BlockSampler, interpolate_z, isotropic_voxel, make_anisotropic, output_positions, pair_offsets, plane_views, process_in_chunks, read_volume, tiled_stack_apply, write_volume,
)

CPU = torch.device("cpu")


def ramp(depth=17, z_slope=0.04, shape=(20, 28)):
    """A volume linear in z (plus a lateral pattern that does not vary with z)."""
    lateral = np.random.default_rng(0).random(shape, dtype=np.float32) * 0.2
    return (0.1 + z_slope * np.arange(depth, dtype=np.float32)[:, None, None] + lateral).astype(np.float32)


@pytest.mark.parametrize("n,z,count,first", [(5, 3, 13, 1), (5, 4, 16, 2), (4, 6, 18, 3), (6, 5, 26, 2)])
def test_output_grid_spans_the_section_centres_on_whole_slices(n, z, count, first):
    q = output_positions(n, z)
    p = anisotropic_positions(n * z, z)
    assert len(q) == count == (n - 1) * z + z % 2 and q[0] == first
    assert q[0] >= p[0] and q[-1] <= p[-1] and np.all(np.diff(q) == 1)
    owner, offset = pair_offsets(n, z)
    np.testing.assert_allclose(p[owner] + offset, q)
    assert offset.min() >= 0 and offset.max() <= z


def test_output_grid_errors():
    with pytest.raises(ValueError, match="at least 2 sections"):
        output_positions(1, 3)
    with pytest.raises(ValueError, match="z_factor must be an int >= 2"):
        output_positions(4, 1)


@pytest.mark.parametrize("name", ["linear", "cubic"])
@pytest.mark.parametrize("z", [3, 4])
def test_interpolation_is_exact_on_a_z_linear_ramp(name, z):
    iso = ramp()
    sections = make_anisotropic(iso, z)  # a section of a ramp is the ramp at its centre
    pred = build_volume_method(name, {}, z_factor=z, device=CPU, seed=0).predict(sections, seed=0, progress=False)
    np.testing.assert_allclose(pred["prediction"], iso[output_positions(len(sections), z)], atol=1e-6)


def test_cubic_passes_through_the_sections_and_differs_from_linear_between():
    sections = np.random.default_rng(1).random((6, 4, 4), dtype=np.float32)
    q = output_positions(6, 3)
    cubic, linear = (interpolate_z(sections, 3, q, k) for k in ("cubic", "linear"))
    np.testing.assert_allclose(cubic[q % 3 == 1], sections, atol=1e-6)  # centres at 1, 4, 7, ...
    np.testing.assert_allclose(linear[q % 3 == 1], sections, atol=1e-6)
    assert not np.allclose(cubic, linear)


@pytest.mark.parametrize("name", ["linear", "cubic"])
@pytest.mark.parametrize("chunk", [2, 3, 4])
def test_chunked_prediction_equals_whole_volume_prediction(name, chunk):
    sections = np.random.default_rng(2).random((7, 9, 11), dtype=np.float32)  # 7 not a multiple of chunk
    whole = build_volume_method(name, {"predict": {"chunk": 100}}, z_factor=3, device=CPU, seed=0)
    chunked = build_volume_method(name, {"predict": {"chunk": chunk}}, z_factor=3, device=CPU, seed=0)
    np.testing.assert_array_equal(chunked.predict(sections, seed=0, progress=False)["prediction"],
                                  whole.predict(sections, seed=0, progress=False)["prediction"])


def test_process_in_chunks_gives_each_run_its_global_start_and_checks_lengths():
    sections = np.zeros((6, 2, 2), np.float32)
    starts = []

    def fn(sub, start):
        starts.append(start)
        q = output_positions(len(sub), 2) + start * 2  # global positions
        return {"q": np.broadcast_to(q[:, None, None], (len(q), 2, 2)).astype(np.float32)}

    out = process_in_chunks(fn, sections, chunk=3, z_factor=2, context=1, progress=False)
    np.testing.assert_array_equal(out["q"][:, 0, 0], output_positions(6, 2))
    assert starts == [0, 1, 3]
    with pytest.raises(ValueError, match="returned 1 slices"):
        process_in_chunks(lambda sub, start: {"p": sub[:1]}, sections, chunk=3, z_factor=2, progress=False)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
@pytest.mark.parametrize("name", ["linear", "cubic"])
def test_odd_volume_round_trips_with_shape_and_voxel_size(tmp_path, suffix, name):
    iso = np.clip(ramp(), 0, 1)
    write_volume(tmp_path / f"aniso{suffix}", make_anisotropic(iso, 3), (24.0, 8.0, 8.0))
    sections, voxel = read_volume(tmp_path / f"aniso{suffix}")
    assert sections.shape == (5, 20, 28) and voxel == (24.0, 8.0, 8.0)
    pred = build_volume_method(name, {}, z_factor=3, device=CPU, seed=0).predict(sections, seed=0, progress=False)
    write_volume(tmp_path / f"pred{suffix}", pred["prediction"], isotropic_voxel(voxel, 3))
    back, voxel_back = read_volume(tmp_path / f"pred{suffix}")
    assert back.shape == (13, 20, 28) and voxel_back == (8.0, 8.0, 8.0) and back.dtype == np.float32


def test_ome_zarr_metadata(tmp_path):
    write_volume(tmp_path / "v.zarr", np.zeros((3, 4, 5), np.float32), (40.0, 8.0, 8.0))
    ms = json.loads((tmp_path / "v.zarr" / ".zattrs").read_text())["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [40.0, 8.0, 8.0]
    with pytest.raises(ValueError, match="expected a \\(z, y, x\\) volume"):
        write_volume(tmp_path / "flat.tif", np.zeros((4, 5), np.float32), None)


def test_tiled_stack_apply_reproduces_the_stack():
    stack = np.random.default_rng(3).random((3, 21, 37), dtype=np.float32)
    for tile in (8, 64):  # several tiles; one padded tile
        out = tiled_stack_apply(lambda t: t * 2, stack, tile=tile, overlap=2, batch=3, multiple=4)
        np.testing.assert_allclose(out, stack * 2, rtol=1e-6)


def test_plane_views():
    v = np.zeros((3, 4, 5))
    views = plane_views(v)
    assert views["xy"].shape == (3, 4, 5) and views["xz"].shape == (4, 3, 5) and views["yz"].shape == (5, 3, 4)
    assert np.shares_memory(views["yz"], v)


def test_block_sampler_is_deterministic_and_resumable():
    volume = np.random.default_rng(4).random((12, 10, 10), dtype=np.float32)

    def make(block, rng):
        return block[:1], block[1:] * rng.random()

    a = BlockSampler(volume, 6, 8, 3, seed=5, make=make)
    state = a.state
    first = a.next()
    assert first[0].shape == (3, 1, 8, 8) and first[1].shape == (3, 5, 8, 8)
    a.state = state
    np.testing.assert_array_equal(a.next()[1], first[1])
    np.testing.assert_array_equal(BlockSampler(volume, 6, 8, 3, seed=5, make=make).next()[1], first[1])
    with pytest.raises(ValueError, match="smaller than a"):
        BlockSampler(volume, 13, 8, 1, seed=0, make=make)


def test_registry_and_errors(tmp_path):
    assert set(VOLUME) == {"linear", "cubic", "srunet3d", "vemdiffuse_i", "vemdiffuse_a"}
    with pytest.raises(ValueError, match="unknown volume method 'bicubic'"):
        build_volume_method("bicubic", {}, z_factor=3, device=CPU, seed=0)
    with pytest.raises(ValueError, match=r"linear: unknown key\(s\) \['order'\]"):
        build_volume_method("linear", {"order": 1}, z_factor=3, device=CPU, seed=0)
    method = build_volume_method("linear", {}, z_factor=3, device=CPU, seed=0)
    with pytest.raises(ValueError, match="expected a \\(z, y, x\\) volume"):
        method.predict(np.zeros((4, 4), np.float32), seed=0)
    method.save(tmp_path / "linear.pt")
    assert load_volume_method(tmp_path / "linear.pt", device=CPU).z_factor == 3
    with pytest.raises(ValueError, match="holds a 'linear' checkpoint, not 'cubic'"):
        CubicMethod.load(tmp_path / "linear.pt", device=CPU)
