"""Kind ``bossdb``: a crop of a BossDB channel (FANC) through its official client, ``intern``.

BossDB serves cutouts through an authenticated REST API (anonymous reads use the public token);
``intern`` handles that and the blosc transport, so it is an optional dependency here.
Entry keys: ``uri`` (``bossdb://collection/experiment/channel``), ``resolution`` (default 0),
``crop`` {offset, shape} in (z, y, x) voxels, optional ``dtype`` and ``region_sha256``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...config import ConfigError
from .common import cached_region, crop_box, prepared, region_path

if TYPE_CHECKING:
    from ..datasets import Prepared

API = "https://api.bossdb.io/v1"


def bossdb_request(name: str, entry: dict) -> dict:
    """What the cutout asks for: the channel, resolution, (z, y, x) ranges and the REST cutout URL."""
    uri = entry["uri"]
    parts = uri.removeprefix("bossdb://").strip("/").split("/")
    if not uri.startswith("bossdb://") or len(parts) != 3:
        raise ConfigError(f"datasets.{name}.uri: '{uri}' is not bossdb://collection/experiment/channel")
    offset, shape = crop_box(name, entry)
    (z0, z1), (y0, y1), (x0, x1) = ((o, o + s) for o, s in zip(offset, shape))
    resolution = int(entry.get("resolution", 0))
    return {
        "uri": uri,
        "resolution": resolution,
        "zyx": ((z0, z1), (y0, y1), (x0, x1)),
        "cutout_url": f"{API}/cutout/{'/'.join(parts)}/{resolution}/{x0}:{x1}/{y0}:{y1}/{z0}:{z1}/",
    }


def _cutout(name: str, request: dict, path: Path) -> np.ndarray:
    try:
        from intern import array
    except ImportError as exc:
        raise ImportError(
            f"datasets.{name}: kind 'bossdb' reads {request['uri']} through the BossDB client: "
            f"pip install intern; or, offline, numpy.save the (z, y, x) region to {path.resolve()}"
        ) from exc
    (z0, z1), (y0, y1), (x0, x1) = request["zyx"]
    return np.asarray(array(request["uri"], resolution=request["resolution"])[z0:z1, y0:y1, x0:x1])


def fetch_bossdb(name: str, entry: dict, cache_dir: Path) -> dict[str, Path]:
    request = bossdb_request(name, entry)
    offset, shape = crop_box(name, entry)
    path = region_path(cache_dir, "volume", offset, shape)
    cached_region(
        name,
        path,
        request["cutout_url"],
        lambda: _cutout(name, request, path),
        offset,
        shape,
        entry.get("dtype"),
        entry.get("region_sha256"),
    )
    return {"volume": path}


def read_bossdb(name: str, entry: dict, cache_dir: Path, seed: int) -> Prepared:
    return prepared(name, entry, np.load(fetch_bossdb(name, entry, cache_dir)["volume"]), {})
