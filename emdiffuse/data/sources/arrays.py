"""Kinds ``zarr_http``, ``n5_http`` and ``precomputed``: a crop of a remote chunked array, plus labels.

Entry keys: ``root`` (the container's URL), ``array`` (path of the EM array inside it; none for
precomputed, whose ``scale`` index picks the mip), ``crop`` {offset, shape} in (z, y, x) voxels of
that array, optional ``dtype`` (checked), ``region_sha256`` (checked), and ``labels``: one entry
per class, {array, offset}, where ``offset`` is the crop's corner in the label array (default: the
EM crop offset, for labels on the EM grid; CellMap ground-truth crops start at [0, 0, 0]).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ...config import ConfigError
from .chunked import ChunkedArray, open_n5, open_precomputed, open_zarr2, read_region
from .common import cached_region, crop_box, prepared, region_path

if TYPE_CHECKING:
    from ..datasets import Prepared

Opener = Callable[[str, dict], ChunkedArray]

OPENERS: dict[str, Opener] = {
    "zarr_http": lambda url, entry: open_zarr2(url),
    "n5_http": lambda url, entry: open_n5(url),
    "precomputed": lambda url, entry: open_precomputed(url, entry.get("scale", 0)),
}


def _join(root: str, path: str | None) -> str:
    return root.rstrip("/") + ("/" + path.strip("/") if path else "")


def fetch_regions(name: str, entry: dict, cache_dir: Path) -> dict[str, Path]:
    """Cache the EM crop and each label crop as ``.npy``; only the overlapping chunks are fetched."""
    opener = OPENERS[entry["kind"]]
    offset, shape = crop_box(name, entry)
    items = {"volume": (entry.get("array"), offset, entry.get("dtype"), entry.get("region_sha256"))}
    for label, spec in entry.get("labels", {}).items():
        items[label] = (spec["array"], tuple(spec.get("offset", offset)), None, spec.get("region_sha256"))
    paths = {}
    for key, (array, corner, dtype, sha256) in items.items():
        url = _join(entry["root"], array)
        paths[key] = cached_region(
            name,
            region_path(cache_dir, key, corner, shape),
            url,
            lambda url=url, corner=corner: read_region(opener(url, entry), corner, shape),
            corner,
            shape,
            dtype,
            sha256,
        )
    return paths


def read_regions(name: str, entry: dict, cache_dir: Path, seed: int) -> Prepared:
    arrays = {key: np.load(path) for key, path in fetch_regions(name, entry, cache_dir).items()}
    return prepared(name, entry, arrays.pop("volume"), arrays)


fetch_zarr_http = fetch_n5_http = fetch_precomputed = fetch_regions
read_zarr_http = read_n5_http = read_precomputed = read_regions


def read_zarr_local(name: str, entry: dict, cache_dir: Path, seed: int) -> Prepared:
    """A crop of a local Zarr (v2 or v3) array, with label arrays from the same container."""
    import zarr

    offset, shape = crop_box(name, entry)

    def crop(array: str | None, corner) -> np.ndarray:
        path = _join(entry["root"], array)
        region = zarr.open_array(path, mode="r")[tuple(slice(o, o + s) for o, s in zip(corner, shape))]
        if region.shape != shape:  # zarr clips out-of-range slices silently
            raise ConfigError(f"datasets.{name}.crop: {list(corner)} + {list(shape)} is outside {path}")
        return region

    labels = {k: crop(spec["array"], spec.get("offset", offset)) for k, spec in entry.get("labels", {}).items()}
    return prepared(name, entry, crop(entry.get("array"), offset), labels)
