"""Atomic writes: the umask's permissions, and no partial files left by a killed writer."""

import os
import stat

import numpy as np
import pytest

from emdiffuse.io import atomic_path, save_npz, write_tiff, write_zarr


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("write", [lambda p: write_tiff(p / "a.tif", np.zeros((8, 8), np.float32)),
                                   lambda p: save_npz(p / "a.npz", x=np.zeros(3))])
def test_written_files_get_the_umask_permissions_not_mkstemp_0600(tmp_path, umask_022, write):
    write(tmp_path)
    (path,) = [p for p in tmp_path.iterdir()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_killed_write_leaves_a_recognisable_partial_that_the_next_write_removes(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "o.tif") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # an exception: cleaned at once
    (tmp_path / ".o.tif.partial-abc.tif").write_bytes(b"left by a SIGKILL")
    (tmp_path / ".o.zarr.partial-def").mkdir()
    (tmp_path / ".other.tif.partial-x.tif").write_bytes(b"another file's")
    write_tiff(tmp_path / "o.tif", np.zeros((8, 8), np.float32))
    write_zarr(tmp_path / "o.zarr", np.zeros((8, 8), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tif.partial-x.tif", "o.tif", "o.zarr"]


def test_ome_zarr_round_trips_the_volume_and_voxel_size_with_a_lateral_pyramid(tmp_path):
    import json

    from emdiffuse.io import read_zarr, write_ome_zarr
    from emdiffuse.models.volumes import read_volume, write_volume

    volume = np.random.default_rng(0).random((5, 300, 260)).astype(np.float32)
    write_volume(tmp_path / "v.zarr", volume, (40.0, 8.0, 8.0))
    attrs = json.loads((tmp_path / "v.zarr" / ".zattrs").read_text())
    datasets = attrs["multiscales"][0]["datasets"]
    scales = [next(t["scale"] for t in d["coordinateTransformations"] if t["type"] == "scale") for d in datasets]
    assert scales == [[40.0, 8.0, 8.0], [40.0, 16.0, 16.0], [40.0, 32.0, 32.0]]  # down to >= 64 px, z kept
    array, voxel = read_volume(tmp_path / "v.zarr")
    np.testing.assert_array_equal(array, volume)
    assert voxel == (40.0, 8.0, 8.0)
    write_ome_zarr(tmp_path / "i.zarr", volume[0, :50, :40], None)  # 2D, no pixel size, no pyramid
    image, size = read_zarr(tmp_path / "i.zarr")
    np.testing.assert_array_equal(image, volume[0, :50, :40])
    assert size is None


def test_an_ome_zarr_0_5_of_another_tool_is_read_at_full_resolution_in_nanometres(tmp_path):
    import ngff_zarr as nz

    from emdiffuse.io import read_image

    data = np.random.default_rng(1).random((1, 4, 128, 96)).astype(np.float32)  # (c, z, y, x)
    image = nz.to_ngff_image(data, dims=["c", "z", "y", "x"], scale={"c": 1.0, "z": 0.03, "y": 0.005, "x": 0.005},
                             axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    nz.to_ngff_zarr(str(tmp_path / "o.zarr"), nz.to_multiscales(image, scale_factors=[2]), version="0.5")
    array, voxel = read_image(tmp_path / "o.zarr")
    np.testing.assert_array_equal(array, data[0])
    assert voxel == pytest.approx((30.0, 5.0, 5.0))


def test_an_mrc_stack_is_read_with_its_voxel_size_in_nanometres(tmp_path):
    import mrcfile

    from emdiffuse.io import read_image

    data = np.random.default_rng(2).random((3, 20, 24)).astype(np.float32)
    with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (40.0, 40.0, 300.0)  # x, y, z in Angstrom
    array, voxel = read_image(tmp_path / "tomo.mrc")
    np.testing.assert_array_equal(array, data)
    assert voxel == pytest.approx((30.0, 4.0, 4.0))
    (tmp_path / "bad.mrc").write_bytes(b"not an mrc file at all" * 20)
    with pytest.raises(ValueError, match="bad.mrc: not a readable MRC file"):
        read_image(tmp_path / "bad.mrc")
