"""Dataset sources against a loopback server serving files in each real format (no real host)."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import struct
import zipfile

import numpy as np
import pooch
import pytest
import tifffile
from scipy import ndimage

from emdiffuse.config import ConfigError
from emdiffuse.data.sources import (
    ChecksumError, SourceUnavailable, UnverifiedDownloadWarning, bossdb_request, fetch_all, register_pair, zenodo_stacks,
)
from emdiffuse.data.sources import http as source_http
from emdiffuse.data.sources.arrays import read_regions
from emdiffuse.data.sources.bossdb import fetch_bossdb
from emdiffuse.data.sources.files import fetch_http_file, read_http_file, read_zenodo

from loopback import closed_port_url, serve


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(source_http, "BACKOFF_S", 0.0)


@pytest.fixture
def www(tmp_path):
    (tmp_path / "www").mkdir()
    return tmp_path / "www"


@pytest.fixture
def server(www):
    with serve(www, lifetime_s=60) as srv:
        yield srv


def _smooth(shape, seed=0, dtype=np.uint8) -> np.ndarray:
    field = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2)
    field = (field - field.min()) / (field.max() - field.min())
    return (field * np.iinfo(dtype).max).astype(dtype)


# --- whole files: http_file ---------------------------------------------------------------------


@pytest.fixture
def ca1(www):
    """An EPFL-like pair: a uint8 (z, y, x) TIFF stack and its 0/255 mitochondria TIFF."""
    volume = _smooth((6, 24, 32))
    mito = np.where(volume > 128, 255, 0).astype(np.uint8)
    tifffile.imwrite(www / "testing.tif", volume)
    tifffile.imwrite(www / "testing_groundtruth.tif", mito)
    return volume, mito


def _file_entry(base: str, www, **extra) -> dict:
    def spec(name):
        return {"url": f"{base}/{name}", "hash": pooch.file_hash(str(www / name))}

    return {
        "kind": "http_file",
        "voxel_nm": [5, 5, 5],
        **spec("testing.tif"),
        "labels": {"mito": spec("testing_groundtruth.tif")},
        "crop": {"offset": [1, 4, 8], "shape": [4, 16, 16]},
        **extra,
    }


def test_http_file_downloads_verifies_caches_and_reads(server, www, ca1, tmp_path):
    volume, mito = ca1
    entry, cache = _file_entry(server.url, www), tmp_path / "raw" / "ca1"
    prepared = read_http_file("ca1", entry, cache, seed=0)
    crop = (slice(1, 5), slice(4, 20), slice(8, 24))
    assert prepared.volume.dtype == np.float32
    np.testing.assert_allclose(prepared.volume, volume[crop] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(prepared.labels["mito"], mito[crop] > 0)
    assert prepared.voxel_nm == (5.0, 5.0, 5.0)
    assert sorted(p.name for p in cache.iterdir()) == ["testing.tif", "testing_groundtruth.tif"]
    before = len(server.requests)
    read_http_file("ca1", entry, cache, seed=0)
    assert len(server.requests) == before  # cached and verified: no network


@pytest.mark.parametrize("url, filename", [("/a/..%2F..%2F..%2F..%2Fescaped.tif", "../../../../escaped.tif"),
                                           ("/a/folder/", ""), ("/a/..", ".."), ("/a/x%5C..%5Cy.tif", "x\\..\\y.tif")])
def test_a_download_never_writes_outside_its_cache(server, www, ca1, tmp_path, url, filename):
    entry, cache = _file_entry(server.url, www), tmp_path / "raw" / "ca1"
    entry["url"] = server.url + url
    with pytest.raises(ConfigError, match=f"dataset 'ca1': .* does not end in a plain file name \\({re.escape(repr(filename))}"):
        fetch_http_file("ca1", entry, cache)
    assert not list(tmp_path.rglob("escaped.tif")) and not server.requests


def test_corrupted_download_raises_and_caches_nothing(server, www, ca1, tmp_path):
    server.corrupt.add("/testing.tif")
    cache = tmp_path / "raw" / "ca1"
    with pytest.raises(ChecksumError, match="ca1"):
        fetch_http_file("ca1", _file_entry(server.url, www), cache)
    assert not (cache / "testing.tif").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith("testing.tif")]


def test_transient_errors_are_retried(server, www, ca1, tmp_path):
    server.fail["/testing.tif"] = 2
    fetch_http_file("ca1", _file_entry(server.url, www), tmp_path / "raw")
    assert server.paths().count("/testing.tif") == 3


def test_offline_error_names_dataset_url_and_staging_path(www, ca1, tmp_path):
    base = closed_port_url()
    cache = tmp_path / "raw" / "ca1"
    with pytest.raises(SourceUnavailable) as err:
        fetch_http_file("ca1", _file_entry(base, www), cache)
    message = str(err.value)
    assert "'ca1'" in message and f"{base}/testing.tif" in message
    assert str((cache / "testing.tif").resolve()) in message


def test_staged_files_are_used_offline(www, ca1, tmp_path):
    cache = tmp_path / "raw" / "ca1"
    cache.mkdir(parents=True)
    for name in ("testing.tif", "testing_groundtruth.tif"):
        (cache / name).write_bytes((www / name).read_bytes())
    paths = fetch_http_file("ca1", _file_entry(closed_port_url(), www), cache)
    assert paths["volume"] == cache / "testing.tif"


def test_partial_download_resumes_with_range(server, www, ca1, tmp_path):
    cache = tmp_path / "raw" / "ca1"
    cache.mkdir(parents=True)
    whole = (www / "testing.tif").read_bytes()
    (cache / "testing.tif.part").write_bytes(whole[:1000])
    fetch_http_file("ca1", _file_entry(server.url, www), cache)
    assert (cache / "testing.tif").read_bytes() == whole
    assert ("/testing.tif", "bytes=1000-") in server.requests
    assert not (cache / "testing.tif.part").exists()


def test_a_hash_is_required_unless_verify_is_false(server, www, ca1, tmp_path):
    entry = _file_entry(server.url, www, hash=None)
    with pytest.raises(ConfigError, match=r"datasets\.ca1\.hash"):
        fetch_http_file("ca1", entry, tmp_path / "raw")
    with pytest.warns(UnverifiedDownloadWarning, match="WITHOUT checksum"):
        fetch_http_file("ca1", {**entry, "verify": False}, tmp_path / "raw")


# --- Zenodo record and registration -------------------------------------------------------------


def test_register_pair_recovers_a_subpixel_shift():
    fixed = _smooth((128, 128), seed=3).astype(np.float32) / 255
    moving = ndimage.shift(fixed, (2.3, -1.7), order=3, mode="nearest")
    aligned, shift = register_pair(moving, fixed)
    np.testing.assert_allclose(shift, (-2.3, 1.7), atol=0.1)
    assert np.abs(aligned - fixed)[8:-8, 8:-8].mean() < 0.01


def _zenodo_record(www) -> tuple[dict, list[np.ndarray]]:
    """A zip laid out like EMDiffuse_dataset.zip: <subset>/<region>/<Tissue>__4w_0X.tif."""
    gts, buffer = [], io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for region in (2, 10, 3):
            gt = _smooth((80, 96), seed=region)
            noisy = ndimage.shift(gt.astype(np.float32), (1.5, -2.0), order=3, mode="nearest").astype(np.uint8)
            coarse = gt.astype(np.float32).reshape(40, 2, 48, 2).mean(axis=(1, 3))  # 2x the pixel size
            low = ndimage.shift(coarse, (0.75, 1.25), order=3, mode="nearest").astype(np.uint8)
            for tag, image in (("4w_09", gt), ("4w_04", noisy), ("2w_01", low)):
                tiff = io.BytesIO()
                tifffile.imwrite(tiff, image)
                archive.writestr(f"EMDiffuse_dataset/brain_train/{region}/Brain__{tag}.tif", tiff.getvalue())
            gts.append(gt)
    path = www / "records" / "123" / "files" / "EMDiffuse_dataset.zip"
    path.parent.mkdir(parents=True)
    path.write_bytes(buffer.getvalue())
    entry = {
        "kind": "zenodo",
        "record": 123,
        "file": "EMDiffuse_dataset.zip",
        "hash": pooch.file_hash(str(path), alg="md5").join(["md5:", ""]),
        "subset": "EMDiffuse_dataset/brain_train",
        "gt": "Brain__4w_09.tif",
        "inputs": {"0.5us": "Brain__4w_04.tif", "sr 1.5us": "Brain__2w_01.tif"},
        "border": 7,  # rounded up to 8, a multiple of the x2 factor
        "voxel_nm": [3.3, 3.3, 3.3],
    }
    return entry, [gts[0], gts[2], gts[1]]  # regions in natural order: 2, 3, 10


def test_zenodo_record_is_verified_unzipped_and_registered(server, www, tmp_path):
    entry, gts = _zenodo_record(www)
    entry["host"] = server.url
    cache = tmp_path / "raw" / "pairs"
    prepared = read_zenodo("pairs", entry, cache, seed=0)
    expected = np.stack([g[8:-8, 8:-8] for g in gts]) / 255.0
    np.testing.assert_allclose(prepared.volume, expected, atol=1e-6)
    assert (cache / "EMDiffuse_dataset.zip.unzip" / entry["subset"] / "10").is_dir()
    assert not list(cache.glob(".*partial"))
    targets, inputs = zenodo_stacks("pairs", entry, cache)
    assert inputs["0.5us"].shape == targets.shape
    assert np.abs(inputs["0.5us"] - targets).mean() < 0.01
    # the coarse scan stays on its own grid, registered onto the block-averaged ground truth
    assert inputs["sr 1.5us"].shape == (3, targets.shape[1] // 2, targets.shape[2] // 2)
    coarse_truth = targets.reshape(3, targets.shape[1] // 2, 2, -1, 2).mean(axis=(2, 4))
    assert np.abs(inputs["sr 1.5us"] - coarse_truth)[:, 2:-2, 2:-2].mean() < 0.01
    assert server.paths() == ["/records/123/files/EMDiffuse_dataset.zip"]  # once, then cached


def _paired_tiffs(tmp_path, shift=(1.5, -2.0), fields=(4, 11, 7)) -> tuple[dict, np.ndarray]:
    """A user's own acquisitions: a clean stack of fields, a shifted noisier one, a 2x coarser one."""
    gts = np.stack([_smooth((80, 96), seed=f) for f in fields])
    rng = np.random.default_rng(0)
    noisy = np.stack([ndimage.shift(g.astype(np.float32), shift, order=3, mode="nearest") for g in gts])
    noisy = np.clip(noisy + rng.normal(0, 8, noisy.shape), 0, 255).astype(np.uint8)
    coarse = gts.astype(np.float32).reshape(len(fields), 40, 2, 48, 2).mean(axis=(2, 4)).astype(np.uint8)
    for name, stack in (("clean", gts), ("noisy", noisy), ("coarse", coarse)):
        tifffile.imwrite(tmp_path / f"{name}.tif", stack, photometric="minisblack")
    entry = {"kind": "paired_tiff", "gt": str(tmp_path / "clean.tif"), "border": 8, "voxel_nm": [4, 4, 4],
             "inputs": {"1us": str(tmp_path / "noisy.tif"), "sr": str(tmp_path / "coarse.tif")}}
    return entry, gts


def test_paired_tiffs_of_ones_own_are_registered_onto_the_clean_fields(tmp_path):
    from emdiffuse.data.datasets import prepare

    entry, gts = _paired_tiffs(tmp_path)
    prepared = prepare("mine", entry, seed=0)
    np.testing.assert_allclose(prepared.volume, gts[:, 8:-8, 8:-8] / 255.0, atol=1e-6)
    noisy = prepared.acquisitions["1us"]
    assert noisy.shape == prepared.volume.shape
    assert np.abs(noisy - prepared.volume).mean() < 0.04  # the shift is undone; the added noise stays
    assert prepared.acquisitions["sr"].shape == (3, 32, 40)  # the coarse scan stays on its own grid


@pytest.mark.parametrize("case, words", [
    ("other_field", "correlates with the ground truth at r ="),
    ("far", "overlapping the ground truth"),
    ("scale", "is not an integer down-scaling of the ground truth"),
    ("count", "datasets.mine.inputs.1us: 2 field(s), the ground truth"),
])
def test_paired_tiffs_that_do_not_register_stop_with_the_file_named(tmp_path, case, words):
    from emdiffuse.data.datasets import prepare

    entry, gts = _paired_tiffs(tmp_path, shift=(0, 30) if case == "far" else (1.5, -2.0))
    if case == "other_field":
        tifffile.imwrite(tmp_path / "noisy.tif", np.stack([_smooth((80, 96), seed=50 + i) for i in range(3)]),
                         photometric="minisblack")
    if case == "scale":
        tifffile.imwrite(tmp_path / "noisy.tif", np.stack([g[:53, :64] for g in gts]), photometric="minisblack")
    if case == "count":
        tifffile.imwrite(tmp_path / "noisy.tif", gts[:2], photometric="minisblack")
    with pytest.raises((ValueError, ConfigError), match=re.escape(words)) as err:
        prepare("mine", entry, seed=0)
    assert "noisy.tif" in str(err.value) or "1us" in str(err.value)


@pytest.mark.parametrize("task, levels, factor", [("denoise", ["0.5us"], 1), ("superres", ["sr 1.5us"], 2)])
def test_real_zenodo_acquisitions_become_the_task_pairs(server, www, tmp_path, monkeypatch, task, levels, factor):
    """prepare -> make_pairs with ``pairs.source: real``: the real registered scans are the inputs."""
    from emdiffuse.data.datasets import save_prepared
    from emdiffuse.io import load_npz
    from emdiffuse.data.pairs import check_pairing
    from emdiffuse.tasks.image.data import make_pairs

    entry, _ = _zenodo_record(www)
    entry["host"] = server.url
    prepared = read_zenodo("pairs", entry, tmp_path / "raw", seed=0)
    paths = {k: tmp_path / f"{k}.{ext}" for k, ext in (("volume", "tif"), ("labels", "npz"), ("acq", "npz"))}
    save_prepared(prepared, paths["volume"], paths["labels"], paths["acq"])
    pairs = {"source": "real", "levels": levels, **({"factor": factor} if factor > 1 else {})}
    make_pairs(task, {"test_images": 1, "pairs": pairs}, {"test_fraction": 0.34, "gap": 1, "slice_step": 1},
               paths["volume"], 0, tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "calibration.npz",
               acquisitions_path=paths["acq"])
    train, test = load_npz(tmp_path / "train.npz"), load_npz(tmp_path / "test.npz")
    assert list(train["z"]) == [0] and list(test["z"]) == [2]
    assert list(load_npz(tmp_path / "calibration.npz")["z"]) == [1]
    assert list(test["level_name"]) == levels
    np.testing.assert_array_equal(test["inputs"][0], prepared.acquisitions[levels[0]][2])
    np.testing.assert_array_equal(test["targets"][0], prepared.volume[2])
    check_pairing(train["inputs"], train["targets"], factor, "real pairs")  # aligned, right factor
    with pytest.raises(ValueError, match="no real acquisitions"):
        make_pairs(task, {"test_images": 1, "pairs": {**pairs, "levels": ["9us"]}},
                   {"test_fraction": 0.34, "gap": 1, "slice_step": 1}, paths["volume"], 0,
                   tmp_path / "x.npz", tmp_path / "y.npz", tmp_path / "z.npz", acquisitions_path=paths["acq"])


# --- chunked arrays read by region --------------------------------------------------------------

REGION = {"offset": [3, 5, 9], "shape": [10, 12, 14]}
SLICE = (slice(3, 13), slice(5, 17), slice(9, 23))


def _chunk_paths(requests: list[str], suffix: str) -> set[str]:
    return {p for p in requests if not p.endswith(suffix)}


@pytest.mark.parametrize("separator", [".", "/"])
def test_zarr_v2_region_fetches_only_overlapping_chunks(server, www, tmp_path, separator):
    import zarr

    data = _smooth((20, 30, 40))
    data[:8, :8, :8] = 0  # an all-fill chunk, which zarr does not store: a 404 read as fill_value
    array = zarr.create_array(
        store=str(www / "c.zarr" / "em" / "s0"), shape=data.shape, chunks=(8, 8, 8), dtype="uint8",
        zarr_format=2, chunk_key_encoding={"name": "v2", "separator": separator}, fill_value=0,
    )
    array[:] = data
    entry = {"kind": "zarr_http", "root": f"{server.url}/c.zarr", "array": "em/s0", "voxel_nm": [8, 8, 8],
             "crop": {"offset": [0, 0, 0], "shape": [10, 12, 14]}, "dtype": "uint8"}
    prepared = read_regions("kidney", entry, tmp_path / "raw", seed=0)
    np.testing.assert_allclose(prepared.volume, data[:10, :12, :14] / 255.0, atol=1e-6)
    expected = {f"/c.zarr/em/s0/{separator.join(map(str, i))}" for i in itertools.product(range(2), range(2), range(2))}
    assert _chunk_paths(server.paths(), ".zarray") == expected

    entry["crop"] = REGION
    np.testing.assert_allclose(read_regions("kidney", entry, tmp_path / "raw", seed=0).volume, data[SLICE] / 255.0, atol=1e-6)
    sidecar = json.loads(next((tmp_path / "raw").glob("volume_z3-13_y5-17_x9-23.json")).read_text())
    assert sidecar["shape"] == [10, 12, 14] and sidecar["dtype"] == "uint8" and len(sidecar["sha256"]) == 64


def test_region_checks_dtype_and_sha256(server, www, tmp_path):
    import zarr

    zarr.create_array(store=str(www / "c.zarr"), shape=(8, 8, 8), chunks=(4, 4, 4), dtype="uint16", zarr_format=2)[:] = 7
    entry = {"kind": "zarr_http", "root": f"{server.url}/c.zarr", "voxel_nm": [8, 8, 8],
             "crop": {"offset": [0, 0, 0], "shape": [4, 4, 4]}, "dtype": "uint8"}
    with pytest.raises(ChecksumError, match="dtype uint16 != uint8"):
        read_regions("x", entry, tmp_path / "a", seed=0)
    with pytest.raises(ChecksumError, match="sha256"):
        read_regions("x", {**entry, "dtype": "uint16", "region_sha256": "0" * 64}, tmp_path / "b", seed=0)
    assert not list((tmp_path / "b").glob("*.npy"))


def test_region_offline_error_then_staged_region_is_used(tmp_path):
    root = f"{closed_port_url()}/c.zarr"
    entry = {"kind": "zarr_http", "root": root, "array": "em/s0", "voxel_nm": [8, 8, 8], "crop": REGION, "dtype": "uint8"}
    with pytest.raises(SourceUnavailable) as err:
        read_regions("liver", entry, tmp_path, seed=0)
    staged = tmp_path / "volume_z3-13_y5-17_x9-23.npy"
    assert "'liver'" in str(err.value) and f"{root}/em/s0" in str(err.value) and str(staged.resolve()) in str(err.value)
    np.save(staged, np.full((10, 12, 14), 255, np.uint8))
    assert read_regions("liver", entry, tmp_path, seed=0).volume.min() == 1.0


def _write_n5(root, data: np.ndarray, block: tuple, compression: str, skip=()) -> None:
    """N5 per the spec: attributes.json lists x, y, z; blocks at x/y/z with a big-endian header."""
    root.mkdir(parents=True)
    attrs = {"dimensions": list(data.shape[::-1]), "blockSize": list(block[::-1]),
             "dataType": data.dtype.name, "compression": {"type": compression}}
    (root / "attributes.json").write_text(json.dumps(attrs))
    grid = [range(-(-n // b)) for n, b in zip(data.shape, block)]
    for index in itertools.product(*grid):
        if index in skip:
            continue
        part = data[tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block))]
        payload = part.astype(part.dtype.newbyteorder(">")).tobytes()  # C order (z, y, x) = x fastest
        header = struct.pack(">HH", 0, 3) + struct.pack(">3I", *part.shape[::-1])
        path = root.joinpath(*map(str, index[::-1]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header + (gzip.compress(payload) if compression == "gzip" else payload))


@pytest.mark.parametrize("compression", ["raw", "gzip"])
def test_n5_region_is_zyx(server, www, tmp_path, compression):
    data = _smooth((17, 21, 26), dtype=np.uint16)  # odd sizes: truncated edge blocks
    _write_n5(www / "t.n5" / "em" / "s0", data, (4, 8, 8), compression, skip={(1, 1, 1)})
    entry = {"kind": "n5_http", "root": f"{server.url}/t.n5", "array": "em/s0", "voxel_nm": [8, 8, 8],
             "crop": REGION, "dtype": "uint16", "normalize": {"method": "scale"},
             "labels": {"mito": {"array": "em/s0"}}}
    expected = data.copy()
    expected[4:8, 8:16, 8:16] = 0  # the missing block reads as the fill value
    prepared = read_regions("tcell", entry, tmp_path / "raw", seed=0)
    np.testing.assert_allclose(prepared.volume, expected[SLICE] / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(prepared.labels["mito"], expected[SLICE] > 0)


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_precomputed_region(server, www, tmp_path, encoding):
    from PIL import Image

    data, origin, chunk = _smooth((12, 40, 36)), np.array([100, 60, 20]), np.array([4, 16, 16])  # z, y, x
    scale = {"key": "8_8_40", "size": list(data.shape[::-1]), "voxel_offset": origin[::-1].tolist(),
             "chunk_sizes": [chunk[::-1].tolist()], "encoding": encoding, "resolution": [8, 8, 40]}
    layer = www / "minnie" / "em"
    (layer / "8_8_40").mkdir(parents=True)
    (layer / "info").write_text(json.dumps({"type": "image", "data_type": "uint8", "num_channels": 1, "scales": [scale]}))
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(data.shape, chunk))):
        lo = np.asarray(index) * chunk
        hi = np.minimum(lo + chunk, data.shape)
        part = data[tuple(slice(a, b) for a, b in zip(lo, hi))]
        if encoding == "jpeg":
            buffer = io.BytesIO()
            Image.fromarray(part.reshape(-1, part.shape[2])).save(buffer, format="JPEG", quality=100)
            body = buffer.getvalue()
        else:  # x fastest; one chunk gzip-compressed as served without a Content-Encoding header
            body = gzip.compress(part.tobytes()) if index == (1, 1, 1) else part.tobytes()
        name = "_".join(f"{origin[a] + lo[a]}-{origin[a] + hi[a]}" for a in (2, 1, 0))
        (layer / "8_8_40" / name).write_bytes(body)
    entry = {"kind": "precomputed", "root": f"{server.url}/minnie/em", "voxel_nm": [40, 8, 8],
             "crop": {"offset": (origin + [3, 5, 9]).tolist(), "shape": [6, 20, 14]}}
    prepared = read_regions("minnie", entry, tmp_path / "raw", seed=0)
    expected = data[3:9, 5:25, 9:23] / 255.0
    np.testing.assert_allclose(prepared.volume, expected, atol=1e-6 if encoding == "raw" else 0.03)
    assert len(_chunk_paths(server.paths(), "/info")) == 3 * 2 * 2  # z 3..9 spans chunks 0-4, 4-8, 8-12


def test_fetch_all_fills_the_caches_of_remote_datasets_only(server, www, tmp_path):
    import zarr

    zarr.create_array(store=str(www / "c.zarr"), shape=(8, 8, 8), chunks=(8, 8, 8), dtype="uint8", zarr_format=2)[:] = 1
    config = {"datasets": {
        "phantom": {"kind": "phantom", "style": "liver", "shape": [8, 8, 8], "voxel_nm": [8, 8, 8]},
        "remote": {"kind": "zarr_http", "root": f"{server.url}/c.zarr", "voxel_nm": [8, 8, 8],
                   "crop": {"offset": [0, 0, 0], "shape": [4, 4, 4]}},
    }}
    fetched = fetch_all(config, tmp_path / "raw")
    assert list(fetched) == ["remote"]
    assert fetched["remote"]["volume"] == tmp_path / "raw" / "remote" / "volume_z0-4_y0-4_x0-4.npy"


def test_zarr_local_through_the_registry(tmp_path):
    import zarr

    from emdiffuse.data.sources import SOURCE_KINDS

    data = _smooth((10, 20, 30))
    zarr.create_array(store=str(tmp_path / "v.zarr" / "em"), shape=data.shape, chunks=(5, 10, 10), dtype="uint8")[:] = data
    entry = {"kind": "zarr_local", "root": str(tmp_path / "v.zarr"), "array": "em", "voxel_nm": [8, 8, 8],
             "crop": {"offset": [1, 2, 3], "shape": [4, 5, 6]}, "labels": {"cells": {"array": "em"}}}
    prepared = SOURCE_KINDS["zarr_local"]("local", entry, 0)
    np.testing.assert_allclose(prepared.volume, data[1:5, 2:7, 3:9] / 255.0, atol=1e-6)
    assert prepared.labels["cells"].shape == (4, 5, 6)
    with pytest.raises(ConfigError, match="outside"):
        SOURCE_KINDS["zarr_local"]("local", {**entry, "crop": {"offset": [8, 0, 0], "shape": [4, 5, 6]}}, 0)


# --- BossDB -------------------------------------------------------------------------------------

FANC = {"kind": "bossdb", "uri": "bossdb://phelps_hildebrand_graham2021/FANC/em", "voxel_nm": [45, 4.3, 4.3],
        "crop": {"offset": [1196, 115837, 22996], "shape": [64, 256, 256]}}


def test_bossdb_request():
    request = bossdb_request("fanc", FANC)
    assert request["zyx"] == ((1196, 1260), (115837, 116093), (22996, 23252))
    assert request["cutout_url"] == (
        "https://api.bossdb.io/v1/cutout/phelps_hildebrand_graham2021/FANC/em/0/22996:23252/115837:116093/1196:1260/"
    )
    with pytest.raises(ConfigError, match="datasets.fanc.uri"):
        bossdb_request("fanc", {**FANC, "uri": "bossdb://FANC/em"})


def test_bossdb_without_client_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "intern", None)
    with pytest.raises(ImportError, match="pip install intern"):
        fetch_bossdb("fanc", FANC, tmp_path)
