"""Dataset registry: each ``kind`` is one small reader returning the same prepared form.

The prepared form is a float32 (z, y, x) volume in [0, 1], its voxel size in nm, a dict of
binary label volumes on the same grid (possibly empty) and, for paired data, a dict of real
degraded acquisitions registered onto the volume (slice for slice; on a coarser grid for
super-resolution inputs). Everything downstream is dataset-agnostic.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import ConfigError, derived_seed
from ..io import read_tiff, save_npz, write_tiff


@dataclass
class Prepared:
    volume: np.ndarray
    voxel_nm: tuple[float, float, float]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    acquisitions: dict[str, np.ndarray] = field(default_factory=dict)


def _phantom(name: str, entry: dict, seed: int) -> Prepared:
    from .phantom import generate_volume

    voxel = tuple(float(v) for v in entry["voxel_nm"])
    if len(set(voxel)) != 1:
        raise ConfigError(f"datasets.{name}.voxel_nm: a phantom is isotropic, got {list(voxel)}")
    em, labels = generate_volume(
        tuple(entry["shape"]), voxel_nm=voxel[0], style=entry["style"], seed=derived_seed(seed, name)
    )
    return Prepared(em.astype(np.float32), voxel, labels)


REPOSITORY = Path(__file__).resolve().parents[2]


def resolve_path(key: str, given: str) -> Path:
    """A dataset file: absolute, else relative to the working directory, else to the repository
    (so the data that ship in ``resources/`` are found when Snakemake runs with ``--directory``)."""
    path = Path(given)
    for candidate in ([path] if path.is_absolute() else [path, REPOSITORY / path]):
        if candidate.exists():
            return candidate
    raise ConfigError(f"{key}: {given} does not exist (relative paths are looked up in the "
                      f"working directory {Path.cwd()}, then in the repository {REPOSITORY})")


def _tiff(name: str, entry: dict, seed: int) -> Prepared:
    """A local (z, y, x) TIFF stack, percentile-normalised, with its label stacks (``labels``:
    class -> TIFF of the same shape, > 0 inside)."""
    path = resolve_path(f"datasets.{name}.path", entry["path"])
    volume, _ = read_tiff(path)
    if volume.ndim != 3:
        raise ConfigError(f"datasets.{name}.path: {path} has shape {volume.shape}; expected a (z, y, x) stack")
    labels = {}
    for label, given in entry.get("labels", {}).items():
        mask, _ = read_tiff(resolve_path(f"datasets.{name}.labels.{label}", given))
        if mask.shape != volume.shape:
            raise ConfigError(f"datasets.{name}.labels.{label}: {given} has shape {mask.shape}, the volume "
                              f"{volume.shape}")
        labels[label] = (mask > 0).astype(np.uint8)
    norm = entry.get("normalize", {})
    try:
        volume = percentile_normalize(volume, norm.get("pmin", 0.1), norm.get("pmax", 99.9))
    except ValueError as exc:
        raise ConfigError(f"datasets.{name}.path: {path}: {exc}") from exc
    return Prepared(volume, tuple(float(v) for v in entry["voxel_nm"]), labels)


def fill_voxel_sizes(config: dict) -> None:
    """A ``tiff`` dataset without ``voxel_nm`` takes the one its file states (ImageJ resolution, spacing
    and unit), so that the plan (isotropic or serial sections?) and every output know it."""
    from ..io import read_tiff_voxel

    for name, entry in config.get("datasets", {}).items():
        if entry.get("kind") == "tiff" and "voxel_nm" not in entry:
            stated = read_tiff_voxel(resolve_path(f"datasets.{name}.path", entry["path"]))
            if stated is None:
                raise ConfigError(f"datasets.{name}.voxel_nm: not given, and {entry['path']} does not state its "
                                  "voxel size (ImageJ resolution, spacing and unit): give [z, y, x] in nm")
            entry["voxel_nm"] = [round(v, 6) for v in stated]


def percentile_normalize(volume: np.ndarray, pmin: float, pmax: float) -> np.ndarray:
    """Map the [pmin, pmax] percentiles to [0, 1] and clip (robust to a few hot or dead pixels)."""
    return normalize_between(volume, *percentile_bounds(volume, pmin, pmax))


def percentile_bounds(values: np.ndarray, pmin: float, pmax: float) -> tuple[float, float]:
    """The [pmin, pmax] percentiles. Non-finite values are refused: one NaN makes every percentile,
    and so the whole volume, NaN."""
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ValueError(f"{bad} of {np.size(values)} values are not finite (NaN or inf); fill or crop them first")
    lo, hi = np.percentile(values, [pmin, pmax])
    if hi <= lo:
        raise ValueError(f"volume is constant between percentiles {pmin} and {pmax} ({lo})")
    return lo, hi


def normalize_between(volume: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``lo`` -> 0, ``hi`` -> 1, clipped."""
    return np.clip((volume.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def _kinds() -> dict[str, Callable[[str, dict, int], Prepared]]:
    from .sources import SOURCE_KINDS

    return {"phantom": _phantom, "tiff": _tiff, **SOURCE_KINDS}


KINDS = _kinds()
#: every kind's settings, in JSON Schema (the config schema's dataset blocks are built from it)
KINDS_SCHEMA = Path(__file__).with_name("kinds.yaml")


@functools.cache
def kind_schemas() -> dict:
    """``kinds.yaml``: the shared ``$defs`` and one settings block per dataset kind."""
    import yaml

    return yaml.safe_load(KINDS_SCHEMA.read_text(encoding="utf-8"))


def prepare(name: str, entry: dict, seed: int) -> Prepared:
    """Obtain a dataset through its kind's reader."""
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"datasets.{name}.kind: '{kind}' is not one of {sorted(KINDS)}")
    return KINDS[kind](name, entry, seed)


def save_prepared(prepared: Prepared, volume_path: str | Path, labels_path: str | Path,
                  acquisitions_path: str | Path) -> None:
    write_tiff(volume_path, prepared.volume.astype(np.float32), voxel_nm=prepared.voxel_nm)
    save_npz(labels_path, **{k: v.astype(np.uint8) for k, v in prepared.labels.items()})
    save_npz(acquisitions_path, **{k: v.astype(np.float32) for k, v in prepared.acquisitions.items()})


def load_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    volume, voxel = read_tiff(path)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a (z, y, x) volume, got shape {volume.shape}")
    return volume.astype(np.float32), voxel
