"""The data steps of denoising and super-resolution: fetch a remote dataset, prepare its volume,
cut it into degraded train / test / calibration pairs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ...config import ConfigError
from ...io import load_npz, save_npz, write_text


def fetch_dataset(name: str, entry: dict, cache_dir: str, manifest_path: str) -> None:
    """Download (or read by region) a remote dataset into its cache; list what was cached."""
    import json

    from ...data.sources import FETCHERS

    paths = FETCHERS[entry["kind"]](name, entry, Path(cache_dir))
    paths = paths if isinstance(paths, (list, tuple)) else [paths]
    write_text(manifest_path, json.dumps({"dataset": name, "kind": entry["kind"],
                                          "files": [str(p) for p in paths]}, indent=2, default=str))


def prepare_dataset(name: str, entry: dict, seed: int, volume_path: str, labels_path: str,
                    acquisitions_path: str) -> None:
    from ...data.datasets import prepare, save_prepared

    save_prepared(prepare(name, entry, seed), volume_path, labels_path, acquisitions_path)


def make_pairs(task: str, task_cfg: dict, split_cfg: dict, volume_path: str, seed: int,
               train_path: str, test_path: str, calibration_path: str, *,
               acquisitions_path: str | None = None) -> None:
    """Cut the prepared volume into train, test and calibration slices (``calibration_images``
    from the gap between train and test; both centre-cropped to ``test_crop``) and degrade them as
    the task says, or, with
    ``pairs.source: real``, pair them with the dataset's real registered acquisitions."""
    from ...data.datasets import load_volume
    from ...data.pairs import PAIR_MAKERS, centre, centre_crop_pairs, real_pairs, split_slices, spread

    pairs_cfg = task_cfg["pairs"]
    volume, _ = load_volume(volume_path)
    if pairs_cfg.get("source") == "real":
        acquisitions = load_npz(acquisitions_path) if acquisitions_path else {}

        def make(volume, z, pairs_cfg, rng):
            return real_pairs(volume, acquisitions, z, pairs_cfg, f"tasks.{task}.pairs ({volume_path})")
    elif task in PAIR_MAKERS:
        make = PAIR_MAKERS[task]
        volume = crop_to_multiple(volume, int(pairs_cfg.get("factor", 1)))
    else:
        raise ConfigError(f"tasks.{task}: no pair generator for this task (known: {sorted(PAIR_MAKERS)})")
    slices = split_slices(volume.shape[0], **split_cfg)
    test_z = spread(slices["test"], task_cfg["test_images"])
    if len(test_z) < task_cfg["test_images"]:
        warnings.warn(f"tasks.{task}.test_images: {task_cfg['test_images']} asked, but {volume_path} has only "
                      f"{len(test_z)} test slices (test_fraction {split_cfg.get('test_fraction')}, slice_step "
                      f"{split_cfg.get('slice_step')}): scoring {len(test_z)}", stacklevel=2)
    calibration_z = centre(slices["held_out"], task_cfg.get("calibration_images", 1))
    if not len(calibration_z):
        raise ConfigError(f"split.gap: {split_cfg.get('gap')} leaves no held-out slice of {volume_path} between the "
                          f"training and test ranges to calibrate the reliability threshold on "
                          f"(tasks.{task}.calibration_images); use a gap of at least split.slice_step")
    rng = np.random.default_rng(seed)
    crop, factor = task_cfg.get("test_crop"), int(pairs_cfg.get("factor", 1))
    save_npz(train_path, **make(volume, slices["train"], pairs_cfg, rng))
    save_npz(test_path, **centre_crop_pairs(make(volume, test_z, pairs_cfg, rng), crop, factor))
    # after test, so train and test draw the same noise with or without calibration images
    save_npz(calibration_path, **centre_crop_pairs(make(volume, calibration_z, pairs_cfg, rng), crop, factor))


def crop_to_multiple(volume: np.ndarray, factor: int) -> np.ndarray:
    """Crop y and x to multiples of the super-resolution factor (a coarse pixel covers factor^2)."""
    h, w = volume.shape[-2:]
    return volume[..., : h - h % factor, : w - w % factor]
