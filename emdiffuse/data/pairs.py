"""Training and test pairs for each task, cut from a prepared volume.

Whole z-ranges are held out for testing, with a gap of unused slices between the ranges, so a
structure seen in training never reappears in the test set (the paper holds out whole
regions, not patches).
"""

from __future__ import annotations

import numpy as np

from .degrade import probe_blur_downsample, scan_line_jitter, shot_noise


def split_slices(depth: int, *, test_fraction: float, gap: int, slice_step: int) -> dict[str, np.ndarray]:
    """Train slices from the start of the stack, test slices from its end, ``gap`` apart; the gap's
    own slices (``held_out``: in neither set) calibrate the reliability threshold."""
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
        "held_out": np.arange(train_stop, test_start, slice_step),
        "test": np.arange(test_start, depth, slice_step),
    }


def centre(indices: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` middle entries of ``indices`` (all if there are fewer): the held-out slices
    farthest from both the training and the test range."""
    start = max(0, (len(indices) - count) // 2)
    return indices[start : start + count]


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """``count`` indices spread evenly over ``indices`` (all of them if there are fewer)."""
    if count >= len(indices):
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]


def denoise_pairs(volume: np.ndarray, z: np.ndarray, pairs: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Noisy/clean pairs: a long dwell is the ground truth, each short dwell one input level.

    The ground truth is itself a (long) acquisition, as in the paper, not the noise-free phantom.
    """
    return _acquire(volume, z, pairs, rng, lambda clean: clean)


def superres_pairs(volume: np.ndarray, z: np.ndarray, pairs: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Low-/high-resolution pairs: the input is acquired at ``factor`` x the pixel size (probe
    blur, detector integration over the coarse pixel) with a short dwell, the ground truth at the
    fine pixel size with a long dwell (paper: 6.6 nm at 1.5-4 us vs 3.3 nm at 36 us)."""
    factor, sigma = int(pairs["factor"]), float(pairs["probe_sigma_px"])
    return _acquire(volume, z, pairs, rng, lambda clean: probe_blur_downsample(clean, factor, probe_sigma_px=sigma))


def _acquire(volume, z, pairs, rng, optics) -> dict[str, np.ndarray]:
    """Ground truth at the long dwell; one input per short dwell through ``optics`` and the detector."""
    noise = {"electrons_per_us": pairs["electrons_per_us"], "read_noise": pairs["read_noise"]}
    jitter = float(pairs.get("jitter_px", 0.0))
    inputs, targets, levels, zs = [], [], [], []
    for zi in z:
        clean = volume[zi]
        gt = shot_noise(clean, pairs["gt_dwell_us"], rng=rng, **noise)
        seen = optics(clean)
        for level, dwell in enumerate(pairs["dwell_us"]):
            noisy = shot_noise(seen, dwell, rng=rng, **noise)
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


PAIR_MAKERS = {"denoise": denoise_pairs, "superres": superres_pairs}
#: what every pair file holds (docs/CONVENTIONS.md); the transfer pairs add the slice index "z"
PAIR_KEYS = ("inputs", "targets", "level", "level_name")


def real_pairs(volume: np.ndarray, acquisitions: dict[str, np.ndarray], z: np.ndarray, pairs: dict,
               source: str) -> dict[str, np.ndarray]:
    """Pairs of real acquisitions (``pairs.levels``, registered when the dataset was prepared)
    with the volume's slices as ground truth: the paper's own noisy/clean or low/high-resolution scans.

    Every level must be on the grid the task expects (``pairs.factor`` times coarser for
    super-resolution, the ground truth's grid otherwise).
    """
    levels, factor = list(pairs["levels"]), int(pairs.get("factor", 1))
    missing = [level for level in levels if level not in acquisitions]
    if missing:
        raise ValueError(f"{source}: no real acquisitions {missing} (this dataset has {sorted(acquisitions)}); "
                         f"check the task's pairs.levels against the dataset's inputs")
    h, w = volume.shape[1] // factor, volume.shape[2] // factor
    for level in levels:
        if acquisitions[level].shape != (len(volume), h, w):
            raise ValueError(f"{source}: acquisition '{level}' has shape {acquisitions[level].shape}, expected "
                             f"{(len(volume), h, w)} for pairs.factor {factor}")
    zs = np.repeat(np.asarray(z), len(levels))
    index = np.tile(np.arange(len(levels)), len(z))
    return {
        "inputs": np.stack([acquisitions[levels[k]][zi] for zi, k in zip(zs, index)]).astype(np.float32),
        "targets": volume[zs, : h * factor, : w * factor].astype(np.float32),
        "level": index.astype(np.int16),
        "level_name": np.asarray(levels),
        "z": zs.astype(np.int32),
    }


def centre_crop_pairs(pairs: dict[str, np.ndarray], crop, factor: int = 1) -> dict[str, np.ndarray]:
    """Pairs cut to a centred lateral crop of at most ``crop`` (y, x) ground-truth pixels, so that
    prediction and scoring cost stay bounded on large planes (smaller planes are kept whole). The
    crop's corner and size are multiples of ``factor``, so the input keeps exactly the same field."""
    if crop is None:
        return pairs
    h, w = pairs["targets"].shape[-2:]
    ch, cw = (min(int(c), s) // factor * factor for c, s in zip(crop, (h, w)))
    y, x = (h - ch) // 2 // factor * factor, (w - cw) // 2 // factor * factor
    return {**pairs,
            "targets": pairs["targets"][:, y : y + ch, x : x + cw],
            "inputs": pairs["inputs"][:, y // factor : (y + ch) // factor, x // factor : (x + cw) // factor]}


def check_pairing(inputs: np.ndarray, targets: np.ndarray, factor: int, source: str) -> None:
    """Refuse pairs whose size ratio is not ``factor`` or whose images are misaligned.

    Alignment: the target, block-averaged to the input grid, must match the input within half an
    input pixel (phase correlation on the mean over images, robust to the input noise).
    """
    from skimage.registration import phase_cross_correlation

    n, h, w = inputs.shape
    if targets.shape != (n, h * factor, w * factor):
        raise ValueError(
            f"{source}: inputs {inputs.shape} and targets {targets.shape} are not a x{factor} pairing "
            f"(expected targets of shape {(n, h * factor, w * factor)})"
        )
    coarse = targets.reshape(n, h, factor, w, factor).mean(axis=(2, 4))
    shift, _, _ = phase_cross_correlation(coarse.mean(0), inputs.mean(0), upsample_factor=10, normalization=None)
    if np.max(np.abs(shift)) > 0.5:
        raise ValueError(
            f"{source}: inputs and targets are misaligned by {tuple(round(float(s), 2) for s in shift)} "
            f"input pixels (y, x); register the pairs first"
        )
