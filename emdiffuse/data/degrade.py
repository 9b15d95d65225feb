"""Acquisition degradations: what a shorter dwell, a coarser pixel or thick sections do to a clean image.

Every parameter is an argument (the values come from the config) and every random draw goes
through the ``numpy.random.Generator`` passed in, so pairs are reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def shot_noise(
    clean: np.ndarray, dwell_us: float, *, electrons_per_us: float, read_noise: float, rng: np.random.Generator
) -> np.ndarray:
    """Poisson-Gaussian detector: counts ~ Poisson(clean * gain) + N(0, read_noise), gain = electrons_per_us * dwell.

    ``clean`` in [0, 1] is the detector yield; the result is rescaled by the same gain, so its
    mean is ``clean`` and its variance ``clean / gain + (read_noise / gain) ** 2`` (before clipping
    to [0, 1]). The paper pairs a 36 us ground truth with 0.5 to 4 us inputs.
    """
    clean = np.asarray(clean)
    if dwell_us <= 0 or electrons_per_us <= 0:
        raise ValueError(f"dwell_us and electrons_per_us must be > 0, got {dwell_us} and {electrons_per_us}")
    if read_noise < 0:
        raise ValueError(f"read_noise must be >= 0 counts, got {read_noise}")
    if clean.size and (np.nanmin(clean) < 0 or np.nanmax(clean) > 1):
        raise ValueError("clean image must be in [0, 1]")
    gain = electrons_per_us * dwell_us
    counts = rng.poisson(clean.astype(np.float64) * gain).astype(np.float64)
    if read_noise > 0:
        counts += rng.normal(0.0, read_noise, clean.shape)
    return np.clip(counts / gain, 0.0, 1.0).astype(np.float32)


def scan_line_jitter(image: np.ndarray, max_shift_px: float, *, rng: np.random.Generator) -> np.ndarray:
    """Shift each fast-scan line (row) by a sub-pixel amount, smoothly correlated between rows.

    The shift profile is a smoothed random walk scaled to peak at ``max_shift_px``; rows are
    resampled with linear interpolation (edges clamp). A stack gets an independent profile per slice.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be 2D (y, x) or a 3D stack (z, y, x), got shape {image.shape}")
    if max_shift_px < 0:
        raise ValueError(f"max_shift_px must be >= 0, got {max_shift_px}")
    if image.ndim == 3:
        return np.stack([scan_line_jitter(s, max_shift_px, rng=rng) for s in image])
    h, w = image.shape
    shifts = ndimage.gaussian_filter1d(rng.standard_normal(h), sigma=max(h / 32, 1.0), mode="reflect")
    peak = np.max(np.abs(shifts))
    shifts = shifts * (max_shift_px / peak) if peak > 0 else np.zeros(h)
    if w == 1:
        return image.copy()
    x = np.clip(np.arange(w)[None, :] - shifts[:, None], 0, w - 1)  # row content moves by +shift
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    t = (x - x0).astype(np.float32)
    rows = np.arange(h)[:, None]
    return (1 - t) * image[rows, x0] + t * image[rows, x0 + 1]


def probe_blur_downsample(image: np.ndarray, factor: int, *, probe_sigma_px: float) -> np.ndarray:
    """Low-resolution acquisition: Gaussian probe (sigma in high-res pixels), then block mean.

    The block mean is the detector integrating the signal over each low-res pixel (a box filter
    plus decimation), which also anti-aliases. Works on (H, W) or a stack (..., H, W); noise is the
    caller's (``shot_noise``).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dims (H, W), got shape {image.shape}")
    if not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    if probe_sigma_px < 0:
        raise ValueError(f"probe_sigma_px must be >= 0, got {probe_sigma_px}")
    h, w = image.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"image shape {image.shape}: H and W must be divisible by factor {factor}")
    if probe_sigma_px > 0:
        sigma = [0.0] * (image.ndim - 2) + [probe_sigma_px, probe_sigma_px]
        image = ndimage.gaussian_filter(image, sigma, mode="reflect")
    blocks = image.reshape(*image.shape[:-2], h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1)).astype(np.float32)


def anisotropic(volume: np.ndarray, z_factor: int = 6, *, section_profile: str = "box") -> np.ndarray:
    """Thick sections from an isotropic volume: integrate ``z_factor`` slices, keep one per section.

    Output slice k integrates input slices ``k*z_factor .. k*z_factor + z_factor - 1`` (a section
    starts at slice k*z_factor), so it sits at z = k*z_factor + (z_factor - 1) / 2 on the isotropic
    grid (see ``anisotropic_positions``). ``box``: equal weights (a physical section); ``gaussian``:
    weights exp(-d^2 / 2 s^2) with FWHM = z_factor, d the distance to the section centre, over the
    same slices. Trailing slices that do not fill a section are dropped: depth // z_factor outputs.
    """
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), got shape {volume.shape}")
    if not isinstance(z_factor, (int, np.integer)) or z_factor < 1:
        raise ValueError(f"z_factor must be a positive int, got {z_factor!r}")
    n = volume.shape[0] // z_factor
    if n == 0:
        raise ValueError(f"volume depth {volume.shape[0]} is smaller than z_factor {z_factor}")
    d = np.arange(z_factor) - (z_factor - 1) / 2
    if section_profile == "box":
        weights = np.ones(z_factor)
    elif section_profile == "gaussian":
        weights = np.exp(-0.5 * (d / (z_factor / 2.3548)) ** 2)
    else:
        raise ValueError(f"section_profile must be 'box' or 'gaussian', got {section_profile!r}")
    weights = (weights / weights.sum()).astype(np.float32)
    sections = volume[: n * z_factor].reshape(n, z_factor, *volume.shape[1:])
    return np.tensordot(weights, sections, axes=([0], [1])).astype(np.float32)


def anisotropic_positions(depth: int, z_factor: int) -> np.ndarray:
    """Fractional z (isotropic-grid slice index) of each output slice of ``anisotropic``."""
    if depth < 0 or z_factor < 1:
        raise ValueError(f"need depth >= 0 and z_factor >= 1, got {depth} and {z_factor}")
    return np.arange(depth // z_factor) * z_factor + (z_factor - 1) / 2
