"""Kinds ``http_file`` (whole TIFF volumes over HTTPS), ``zenodo`` (a zip from a Zenodo record)
and ``paired_tiff`` (a user's own clean and degraded acquisitions of the same fields).

Downloads go through pooch with a pinned hash: a download is verified before it is renamed into
the cache, so a corrupted or truncated file never looks complete. Real pairs (``zenodo``,
``paired_tiff``) are registered alike (``register_fields``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...config import ConfigError
from ...io import read_tiff
from .common import crop_array, normalize, prepared, voxel_nm
from .http import cache_file, fetch_file, known_hash, url_filename
from .register import register_pair

if TYPE_CHECKING:
    from ..datasets import Prepared


def fetch_http_file(name: str, entry: dict, cache_dir: Path) -> dict[str, Path]:
    """Download the volume (``url``, ``hash``) and each label file (``labels.<class>.url``, ``.hash``)."""
    cache_dir = Path(cache_dir)
    files = {"volume": ("hash", entry)}
    files.update({label: (f"labels.{label}.hash", spec) for label, spec in entry.get("labels", {}).items()})
    return {
        key: fetch_file(name, spec["url"], known_hash(name, hash_key, spec, entry),
                        cache_file(name, cache_dir, url_filename(spec["url"]), spec["url"]))
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
    archive = fetch_file(name, spec["url"], known_hash(name, "hash", spec, entry),
                         cache_file(name, cache_dir, entry["file"], f"datasets.{name}.file"))
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
    """The ground-truth images of the configured regions stacked along z, with the real degraded
    acquisitions (``inputs``) registered onto them, for tasks whose pairs are ``source: real``."""
    from ..datasets import Prepared

    gts, acquisitions = zenodo_stacks(name, entry, cache_dir)
    return Prepared(gts, voxel_nm(entry), {}, acquisitions)


def zenodo_stacks(
    name: str, entry: dict, cache_dir: Path, with_inputs: bool = True
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Ground truth ``<subset>/<region>/<gt>`` per region and each real acquisition (``inputs``:
    level -> file name) registered onto it (``register_fields``). Regions are independent 2D
    fields of view, stacked along z."""
    root = fetch_zenodo(name, entry, cache_dir) / entry["subset"]
    regions = entry.get("regions") or sorted((p.name for p in root.iterdir() if p.is_dir()), key=_natural)
    if not regions:
        raise ConfigError(f"datasets.{name}.subset: no region folders under {root}")
    levels = entry["inputs"] if with_inputs else {}
    gts = [(_image(root / str(region) / entry["gt"]), root / str(region) / entry["gt"]) for region in regions]
    inputs = {level: [(_image(root / str(region) / filename), root / str(region) / filename) for region in regions]
              for level, filename in levels.items()}
    return register_fields(gts, inputs, entry)


def read_paired_tiff(name: str, entry: dict, cache_dir: Path, seed: int) -> Prepared:
    """A user's own pairs: ``gt`` a clean TIFF (a 2D image or a stack of fields) and ``inputs``
    (level -> TIFF of the same fields, at the same or an integer times coarser pixel size) with
    the degraded acquisitions, registered onto it; for tasks whose pairs are ``source: real``."""
    from ..datasets import Prepared, resolve_path

    def fields(key: str, given: str) -> list[tuple[np.ndarray, Path]]:
        path = resolve_path(f"datasets.{name}.{key}", given)
        stack = read_tiff(path)[0]
        if stack.ndim not in (2, 3):
            raise ConfigError(f"datasets.{name}.{key}: {path} has shape {stack.shape}; expected a 2D image or a "
                              f"(field, y, x) stack")
        return [(image, path) for image in (stack[None] if stack.ndim == 2 else stack)]

    gts = fields("gt", entry["gt"])
    inputs = {level: fields(f"inputs.{level}", given) for level, given in entry["inputs"].items()}
    for level, images in inputs.items():
        if len(images) != len(gts):
            raise ConfigError(f"datasets.{name}.inputs.{level}: {len(images)} field(s), the ground truth "
                              f"{entry['gt']} has {len(gts)}")
    gt, acquisitions = register_fields(gts, inputs, entry)
    return Prepared(gt, voxel_nm(entry), {}, acquisitions)


#: registration is refused below this correlation of the smoothed, aligned pair (unrelated fields
#: of EM score ~0 +- 0.03; real pairs, even at the shortest dwell, well above)
MIN_REGISTERED_CORRELATION = 0.2
#: ... and when the shift leaves less than this share of the field overlapping
MIN_OVERLAP = 0.75


def register_fields(
    gts: list[tuple[np.ndarray, Path]], inputs: dict[str, list[tuple[np.ndarray, Path]]], entry: dict
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Ground-truth fields and each level's acquisitions of them, registered, as float32 [0, 1]
    (field, y, x) stacks.

    An acquisition at a coarser pixel size (super-resolution inputs: an integer ``factor`` times
    smaller) is registered onto the ground truth block-averaged to its grid and stays on that grid.
    ``border`` ground-truth pixels are dropped at each edge (registration leaves them invalid) and
    every image is cut to the smallest common size, a multiple of each factor so coarse and fine
    cuts cover the same area. A pair that does not register (too little overlap, no correlation:
    another field, or the wrong file) stops with the file named.
    """
    norm, register = entry.get("normalize", {}), entry.get("register", {})
    gt_images = [normalize(image, norm) for image, _ in gts]
    aligned_inputs, factors = {level: [] for level in inputs}, {}
    for level, images in inputs.items():
        for gt, (image, path) in zip(gt_images, images, strict=True):
            moving = normalize(image, norm)
            factor = _scale_factor(moving.shape, gt.shape, path)
            if factors.setdefault(level, factor) != factor:
                raise ValueError(f"{path}: pixel size ratio x{factor} differs from x{factors[level]} in other fields")
            fixed = _block_mean(gt, factor)[: moving.shape[0], : moving.shape[1]]
            moving = moving[: fixed.shape[0], : fixed.shape[1]]
            aligned, shift = register_pair(moving, fixed, register.get("upsample", 50),
                                           register.get("optical_flow", False))
            _check_registered(aligned, fixed, shift, path)
            aligned_inputs[level].append(aligned)
    step = int(np.lcm.reduce([1, *factors.values()]))
    cut = _common_cut(gt_images, entry.get("border", 32), step)
    return np.stack([g[cut] for g in gt_images]), {
        level: np.stack([im[_coarse(cut, factors[level])] for im in ims]) for level, ims in aligned_inputs.items()
    }


def _check_registered(aligned: np.ndarray, fixed: np.ndarray, shift: tuple[float, float], path: Path) -> None:
    from scipy.ndimage import gaussian_filter

    overlap = np.prod([max(0.0, 1 - abs(d) / n) for d, n in zip(shift, fixed.shape)])
    if overlap < MIN_OVERLAP:
        raise ValueError(f"{path}: registered with a shift of ({shift[0]:.1f}, {shift[1]:.1f}) px, which leaves "
                         f"{overlap:.0%} of the field overlapping the ground truth (at least {MIN_OVERLAP:.0%} needed)")
    a, b = (gaussian_filter(x, 2.0).ravel() for x in (aligned, fixed))
    r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    if r < MIN_REGISTERED_CORRELATION:
        raise ValueError(f"{path}: after registration it correlates with the ground truth at r = {r:.2f} "
                         f"(< {MIN_REGISTERED_CORRELATION}): not an acquisition of the same field?")


def _scale_factor(coarse: tuple[int, int], fine: tuple[int, int], path: Path) -> int:
    """The integer pixel-size ratio between an acquisition and its ground truth (1 for denoising)."""
    factor = int(round(fine[1] / coarse[1]))
    if factor < 1 or any(abs(f / factor - c) > 1 for f, c in zip(fine, coarse)):
        raise ValueError(f"{path}: shape {coarse} is not an integer down-scaling of the ground truth {fine}")
    return factor


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """The image on a ``factor`` times coarser grid (each coarse pixel integrates factor^2 fine ones)."""
    h, w = (n - n % factor for n in image.shape)
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _image(path: Path) -> np.ndarray:
    image = read_tiff(path)[0]
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a 2D image, got shape {image.shape}")
    return image


def _common_cut(images: list[np.ndarray], border: int, step: int = 1) -> tuple[slice, slice]:
    """Same-size cut of every image without ``border`` pixels, starting and sized on multiples of ``step``."""
    h, w = np.min([im.shape for im in images], axis=0)
    start = -(-border // step) * step
    size_h, size_w = ((n - 2 * start) // step * step for n in (h, w))
    if min(size_h, size_w) <= 0:
        raise ValueError(f"images of {h}x{w} pixels are too small for a {border}-pixel border")
    return slice(start, start + size_h), slice(start, start + size_w)


def _coarse(cut: tuple[slice, slice], factor: int) -> tuple[slice, slice]:
    return tuple(slice(s.start // factor, s.stop // factor) for s in cut)


def _natural(name: str):
    return (0, int(name), "") if name.isdigit() else (1, 0, name)
