"""What every source shares: crops, normalisation, the prepared form and the region cache.

A region read from a remote array is cached as ``<key>_z..-.._y..-.._x..-...npy`` (the region is in
the name, so a changed crop can never reuse a stale file) with a JSON sidecar recording the url,
region, shape, dtype and sha256. A region staged by hand at that path is used as it is, after the
same shape, dtype and (when pinned) sha256 checks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import requests

from ...config import ConfigError
from ...io import atomic_path, write_text
from .http import ChecksumError, SourceUnavailable

if TYPE_CHECKING:  # emdiffuse.data.datasets registers these kinds, so import it only when used
    from ..datasets import Prepared

log = logging.getLogger(__name__)


def crop_box(name: str, entry: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``crop.offset`` and ``crop.shape`` as (z, y, x) integer tuples."""
    crop = entry.get("crop")
    if crop is None:
        raise ConfigError(f"datasets.{name}.crop: required for kind '{entry['kind']}' (offset and shape, z, y, x)")
    return tuple(int(v) for v in crop["offset"]), tuple(int(v) for v in crop["shape"])


def crop_array(name: str, array: np.ndarray, entry: dict) -> np.ndarray:
    """The configured crop of a whole downloaded volume (all of it when no crop is configured)."""
    if entry.get("crop") is None:
        return array
    offset, shape = crop_box(name, entry)
    if any(o < 0 or o + s > n for o, s, n in zip(offset, shape, array.shape)):
        raise ConfigError(
            f"datasets.{name}.crop: {list(offset)} + {list(shape)} is outside the volume {list(array.shape)}"
        )
    return array[tuple(slice(o, o + s) for o, s in zip(offset, shape))]


def normalize(array: np.ndarray, settings: dict) -> np.ndarray:
    """To float32 [0, 1]: ``scale`` divides by the integer dtype's maximum (the default for uint8 EM,
    as the official code reads 8-bit images); ``percentile`` maps [pmin, pmax] to [0, 1]."""
    method = settings.get("method", "scale" if array.dtype == np.uint8 else "percentile")
    if method == "scale":
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"normalize.method 'scale' needs integer data, got {array.dtype}")
        return (array.astype(np.float32) / np.iinfo(array.dtype).max).astype(np.float32)
    from ..datasets import percentile_normalize

    return percentile_normalize(array, settings.get("pmin", 0.1), settings.get("pmax", 99.9))


def prepared(name: str, entry: dict, volume: np.ndarray, labels: dict[str, np.ndarray]) -> Prepared:
    """The prepared form: normalised (z, y, x) float32 volume, voxel size, binary (label > 0) masks."""
    from ..datasets import Prepared

    if volume.ndim != 3:
        raise ConfigError(f"datasets.{name}: expected a (z, y, x) volume, got shape {volume.shape}")
    for label, mask in labels.items():
        if mask.shape != volume.shape:
            raise ConfigError(
                f"datasets.{name}.labels.{label}: shape {mask.shape} differs from the volume {volume.shape}"
            )
    try:
        volume = normalize(volume, entry.get("normalize", {}))
    except ValueError as exc:
        raise ConfigError(f"datasets.{name}: {exc}") from exc
    return Prepared(
        volume,
        voxel_nm(entry),
        {label: (mask > 0).astype(np.uint8) for label, mask in labels.items()},
    )


def voxel_nm(entry: dict) -> tuple[float, float, float]:
    return tuple(float(v) for v in entry["voxel_nm"])


def region_path(cache_dir: Path, key: str, offset, shape) -> Path:
    box = "_".join(f"{axis}{o}-{o + s}" for axis, o, s in zip("zyx", offset, shape))
    return Path(cache_dir) / f"{key}_{box}.npy"


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _verify(region: np.ndarray, where: str, shape, dtype: str | None, sha256: str | None) -> None:
    problems = []
    if region.shape != tuple(shape):
        problems.append(f"shape {region.shape} != {tuple(shape)}")
    if dtype and region.dtype != np.dtype(dtype):
        problems.append(f"dtype {region.dtype} != {dtype}")
    if sha256 and sha256_of(region) != sha256:
        problems.append(f"sha256 {sha256_of(region)} != {sha256}")
    if problems:
        raise ChecksumError(f"{where}: {'; '.join(problems)}")


def cached_region(
    name: str,
    path: Path,
    url: str,
    read: Callable[[], np.ndarray],
    offset,
    shape,
    dtype: str | None = None,
    sha256: str | None = None,
) -> Path:
    """Read a remote region once: verify it (shape, dtype, optional sha256), save it atomically."""
    if path.exists():
        try:
            _verify(np.load(path), str(path), shape, dtype, sha256)
            return path
        except ValueError as exc:  # wrong shape/dtype/sha256, or not a .npy file
            log.warning("%s: %s; reading the region again", path, exc)
    try:
        region = read()
    except requests.RequestException as exc:
        raise SourceUnavailable(
            f"dataset '{name}': cannot read {url} ({exc}). To work offline, stage the region by hand: "
            f"numpy.save the (z, y, x) {dtype or ''} array of shape {list(shape)} at offset {list(offset)} "
            f"to {path.resolve()}; a file there with the right shape and dtype is used without network access."
        ) from exc
    _verify(region, f"dataset '{name}': {url} region {list(offset)} + {list(shape)}", shape, dtype, sha256)
    with atomic_path(path) as tmp:
        np.save(tmp, region)
    sidecar = {"url": url, "offset": list(offset), "shape": list(shape), "dtype": str(region.dtype)}
    write_text(path.with_suffix(".json"), json.dumps({**sidecar, "sha256": sha256_of(region)}, indent=1) + "\n")
    return path
