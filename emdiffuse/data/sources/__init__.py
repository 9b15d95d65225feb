"""Real datasets: download (or read by region), cache, verify and prepare them.

Each kind is a pair: ``fetch_<kind>(name, entry, cache_dir)`` brings the data into ``cache_dir``
(verified, atomic, retried, resumable where HTTP allows) and returns the cached paths;
``read_<kind>(name, entry, cache_dir, seed)`` returns the prepared form. ``SOURCE_KINDS`` holds the
readers with the ``emdiffuse.data.datasets.KINDS`` signature, caching under ``data/raw/<dataset>/``;
``fetch_all`` fills the caches for a whole config (on a login node with internet, before compute
jobs, which then need no network).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

from .arrays import (
    fetch_n5_http, fetch_precomputed, fetch_zarr_http, read_n5_http, read_precomputed, read_zarr_http, read_zarr_local,
)
from .bossdb import bossdb_request, fetch_bossdb, read_bossdb
from .files import fetch_http_file, fetch_zenodo, read_http_file, read_paired_tiff, read_zenodo, zenodo_stacks
from .http import ChecksumError, SourceUnavailable, UnverifiedDownloadWarning
from .register import register_pair

RAW_ROOT = Path("data/raw")  # the workflow's cache root, relative to its working directory

FETCHERS: dict[str, Callable] = {
    "http_file": fetch_http_file,
    "zenodo": fetch_zenodo,
    "zarr_http": fetch_zarr_http,
    "n5_http": fetch_n5_http,
    "precomputed": fetch_precomputed,
    "bossdb": fetch_bossdb,
}

READERS: dict[str, Callable] = {
    "http_file": read_http_file,
    "zenodo": read_zenodo,
    "zarr_http": read_zarr_http,
    "n5_http": read_n5_http,
    "precomputed": read_precomputed,
    "bossdb": read_bossdb,
    "zarr_local": read_zarr_local,
    "paired_tiff": read_paired_tiff,
}


def _with_raw_cache(read: Callable, name: str, entry: dict, seed: int):
    return read(name, entry, RAW_ROOT / name, seed)


SOURCE_KINDS: dict[str, Callable] = {kind: functools.partial(_with_raw_cache, read) for kind, read in READERS.items()}


def fetch_all(config: dict, cache_root: str | Path = RAW_ROOT, names: list[str] | None = None) -> dict[str, object]:
    """Download every remote dataset of ``config`` (or only ``names``) into ``cache_root/<dataset>/``.

    Local kinds (phantom, tiff, zarr_local) need nothing; the result maps each fetched dataset to
    its cached paths.
    """
    datasets = config["datasets"]
    return {
        name: FETCHERS[entry["kind"]](name, entry, Path(cache_root) / name)
        for name, entry in datasets.items()
        if entry["kind"] in FETCHERS and (names is None or name in names)
    }


__all__ = [
    "SOURCE_KINDS",
    "FETCHERS",
    "READERS",
    "fetch_all",
    "register_pair",
    "bossdb_request",
    "zenodo_stacks",
    "SourceUnavailable",
    "ChecksumError",
    "UnverifiedDownloadWarning",
]
