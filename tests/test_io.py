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
