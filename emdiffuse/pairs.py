"""Training and test pairs for each task, cut from a prepared volume.

Whole z-ranges are held out for testing, with a gap of unused slices between the ranges, so a
structure seen in training never reappears in the test set (the paper holds out whole
regions, not patches).
"""

from __future__ import annotations

import numpy as np

from .data.degrade import scan_line_jitter, shot_noise


def split_slices(depth: int, *, test_fraction: float, gap: int, slice_step: int) -> dict[str, np.ndarray]:
    """Train slices from the start of the stack, test slices from its end, ``gap`` apart."""
    n_test = max(1, int(round(depth * test_fraction)))
    test_start = depth - n_test
    train_stop = test_start - gap
    if train_stop < 1:
        raise ValueError(
            f"a volume of depth {depth} leaves no training slices with split.test_fraction={test_fraction} "
            f"and split.gap={gap}"
        )
    return {
        "train": np.arange(0, train_stop, slice_step),
        "test": np.arange(test_start, depth, slice_step),
    }


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """``count`` indices spread evenly over ``indices`` (all of them if there are fewer)."""
    if count >= len(indices):
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def denoise_pairs(volume: np.ndarray, z: np.ndarray, pairs: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Noisy/clean pairs: a long dwell is the ground truth, each short dwell one input level.

    The ground truth is itself a (long) acquisition, as in the paper, not the noise-free phantom.
    """
    noise = {"electrons_per_us": pairs["electrons_per_us"], "read_noise": pairs["read_noise"]}
    jitter = float(pairs.get("jitter_px", 0.0))
    inputs, targets, levels, zs = [], [], [], []
    for zi in z:
        clean = volume[zi]
        gt = shot_noise(clean, pairs["gt_dwell_us"], rng=rng, **noise)
        for level, dwell in enumerate(pairs["dwell_us"]):
            noisy = shot_noise(clean, dwell, rng=rng, **noise)
            if jitter > 0:
                noisy = scan_line_jitter(noisy, jitter, rng=rng)
            inputs.append(noisy)
            targets.append(gt)
            levels.append(level)
            zs.append(zi)
    return {
        "inputs": np.stack(inputs).astype(np.float32),
        "targets": np.stack(targets).astype(np.float32),
        "level": np.asarray(levels, dtype=np.int16),
        "level_name": np.asarray([f"{d:g} us" for d in pairs["dwell_us"]]),
        "z": np.asarray(zs, dtype=np.int32),
    }
