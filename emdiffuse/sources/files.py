"""Kinds ``http_file`` (whole TIFF volumes over HTTPS) and ``zenodo`` (a zip from a Zenodo record).

Both go through pooch with a pinned hash: a download is verified before it is renamed into the
cache, so a corrupted or truncated file never looks complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import ConfigError
from ..io import read_tiff
from .common import crop_array, normalize, prepared, voxel_nm
from .http import fetch_file, known_hash, url_filename
from .register import register_pair

if TYPE_CHECKING:
    from ..datasets import Prepared


def fetch_http_file(name: str, entry: dict, cache_dir: Path) -> dict[str, Path]:
    """Download the volume (``url``, ``hash``) and each label file (``labels.<class>.url``, ``.hash``)."""
    cache_dir = Path(cache_dir)
    files = {"volume": ("hash", entry)}
    files.update({label: (f"labels.{label}.hash", spec) for label, spec in entry.get("labels", {}).items()})
    return {
        key: fetch_file(name, spec["url"], known_hash(name, hash_key, spec, entry), cache_dir / url_filename(spec["url"]))
        for key, (hash_key, spec) in files.items()
    }


def read_http_file(name: str, entry: dict, cache_dir: Path, seed: int) -> Prepared:
    """The configured crop of the downloaded (z, y, x) TIFF stack and of its label stacks."""
    paths = fetch_http_file(name, entry, cache_dir)
    arrays = {key: crop_array(name, read_tiff(path)[0], entry) for key, path in paths.items()}
    return prepared(name, entry, arrays.pop("volume"), arrays)


def zenodo_url(entry: dict) -> str:
    return f"{entry.get('host', 'https://zenodo.org')}/records/{entry['record']}/files/{entry['file']}?download=1"


def fetch_zenodo(name: str, entry: dict, cache_dir: Path) -> Path:
    """Download the record's file (md5 from Zenodo, or sha256) and unzip it; return the extracted folder."""
    spec = {"url": zenodo_url(entry), "hash": entry.get("hash")}
    archive = fetch_file(name, spec["url"], known_hash(name, "hash", spec, entry), Path(cache_dir) / entry["file"])
    return _unzipped(archive)


def _unzipped(archive: Path) -> Path:
    """Extract through pooch.Unzip into a temporary folder renamed into place, so a crash mid-way
    never leaves a folder that looks complete; extract again when the archive is newer."""
    import pooch

    target = archive.with_name(archive.name + ".unzip")
    if target.exists() and target.stat().st_mtime >= archive.stat().st_mtime:
        return target
    partial = archive.with_name(f".{archive.name}.unzip.partial")
    shutil.rmtree(partial, ignore_errors=True)
    pooch.Unzip(extract_dir=str(partial))(str(archive), "download", None)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target


def read_zenodo(name: str, entry: dict, cache_dir: Path, seed: int) -> Prepared:
    """The ground-truth images of the configured regions, stacked along z (labels: none)."""
    from ..datasets import Prepared

    gts, _ = zenodo_stacks(name, entry, cache_dir, with_inputs=False)
    return Prepared(gts, voxel_nm(entry), {})


def zenodo_stacks(
    name: str, entry: dict, cache_dir: Path, with_inputs: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Ground truth ``<subset>/<region>/<gt>`` per region and each real noisy acquisition
    (``inputs``: level -> file name) registered onto it, as float32 [0, 1] (z, y, x) stacks.

    Regions are independent 2D fields of view, stacked along z; ``border`` pixels are dropped at
    each edge (registration leaves them invalid), and every image is cut to the smallest common size.
    """
    root = fetch_zenodo(name, entry, cache_dir) / entry["subset"]
    regions = entry.get("regions") or sorted((p.name for p in root.iterdir() if p.is_dir()), key=_natural)
    if not regions:
        raise ConfigError(f"datasets.{name}.subset: no region folders under {root}")
    norm, register = entry.get("normalize", {}), entry.get("register", {})
    levels = entry["inputs"] if with_inputs else {}
    gts, inputs = [], {level: [] for level in levels}
    for region in map(str, regions):
        gt = normalize(_image(root / region / entry["gt"]), norm)
        gts.append(gt)
        for level, filename in levels.items():
            moving = normalize(_image(root / region / filename), norm)
            aligned, _ = register_pair(moving, gt, register.get("upsample", 50), register.get("optical_flow", False))
            inputs[level].append(aligned)
    cut = _common_cut(gts, entry.get("border", 32))
    return np.stack([g[cut] for g in gts]), {level: np.stack([im[cut] for im in ims]) for level, ims in inputs.items()}


def _image(path: Path) -> np.ndarray:
    image = read_tiff(path)[0]
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a 2D image, got shape {image.shape}")
    return image


def _common_cut(images: list[np.ndarray], border: int) -> tuple[slice, slice]:
    h, w = np.min([im.shape for im in images], axis=0)
    if min(h, w) <= 2 * border:
        raise ValueError(f"images of {h}x{w} pixels are too small for a {border}-pixel border")
    return slice(border, h - border), slice(border, w - border)


def _natural(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)
