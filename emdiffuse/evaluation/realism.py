"""How EM-like is a volume? Statistics that put the phantom beside real EM (``results/tables/realism``).

Why: a benchmark's conclusions hold only as far as its data behave like EM. The phantom once had
a third of real FIB-SEM's contrast and far too smooth a z axis, so cubic interpolation scored
40 dB on it against 26 dB on a real volume, and the isotropic table reversed. These statistics
make such gaps visible and testable:

* intensity: mean, std, and the Wasserstein-1 distance of the histogram to a reference volume's;
* lateral texture: the radially averaged power spectrum of XY planes and its log-log slope over
  ``SLOPE_BAND`` (cycles per pixel; EM images fall off as a power law), the gradient magnitude
  (mean, median, 90th percentile) and the noise level (Immerkaer's estimator);
* axial structure: the Pearson correlation of slices ``AXIAL_LAGS`` apart (1 for a z-constant
  volume, ~0 for white noise), and the difficulty of the isotropic task itself: the PSNR of cubic
  interpolation from thick sections of ``z_factor`` slices (the benchmark's own section model
  and cubic method), over the reconstructed slices.

Inputs are float volumes in [0, 1] as the workflow prepares them (percentile-normalised).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance

AXIAL_LAGS = (1, 2, 4, 6)
Z_FACTORS = (4, 6)
SLOPE_BAND = (0.04, 0.25)  # cycles per pixel: above the field-of-view scale, below the noise floor
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
_MAX_VALUES = 200_000  # histogram samples per volume (evenly strided)


def axial_correlation(volume: np.ndarray, lag: int) -> float:
    """Mean Pearson correlation of XY slices ``lag`` apart (each slice's mean removed)."""
    v = np.asarray(volume, dtype=np.float64)
    if not 1 <= lag < v.shape[0]:
        raise ValueError(f"lag {lag} needs a volume deeper than {lag} slices, got {v.shape[0]}")
    v = v - v.mean(axis=(1, 2), keepdims=True)
    a, b = v[:-lag], v[lag:]
    num = (a * b).sum(axis=(1, 2))
    den = np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)))
    valid = den > 0
    if not valid.any():
        return 1.0  # constant slices: every slice equals its neighbours
    return float(np.mean(num[valid] / den[valid]))


def radial_spectrum(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of 2D images (Hann-windowed, mean removed), averaged over
    images: (frequencies in cycles per pixel, power)."""
    images = np.asarray(images, dtype=np.float64)
    images = images[None] if images.ndim == 2 else images
    h, w = images.shape[-2:]
    window = np.outer(np.hanning(h), np.hanning(w))
    spectra = [np.abs(np.fft.fftshift(np.fft.fft2((im - im.mean()) * window))) ** 2 for im in images]
    power = np.mean(spectra, axis=0)
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    radius = np.hypot(fy, fx)
    bins = np.arange(1, min(h, w) // 2) / min(h, w)  # one bin per frequency step up to Nyquist
    index = np.digitize(radius, bins)
    sums = np.bincount(index.ravel(), power.ravel(), minlength=len(bins) + 1)
    counts = np.bincount(index.ravel(), minlength=len(bins) + 1)
    keep = slice(1, len(bins))
    freqs = (bins[:-1] + bins[1:]) / 2
    return freqs, sums[keep] / np.maximum(counts[keep], 1)


def spectrum_slope(freqs: np.ndarray, power: np.ndarray, band: tuple[float, float] = SLOPE_BAND) -> float:
    """Least-squares slope of log power against log frequency within ``band``."""
    sel = (freqs >= band[0]) & (freqs <= band[1]) & (power > 0)
    if sel.sum() < 3:
        raise ValueError(f"fewer than 3 spectrum bins in the band {band} (images too small?)")
    return float(np.polyfit(np.log(freqs[sel]), np.log(power[sel]), 1)[0])


def noise_sigma(image: np.ndarray) -> float:
    """Immerkaer's (1996) estimate of additive white-noise sigma from one 2D image."""
    image = np.asarray(image, dtype=np.float64)
    h, w = image.shape
    response = ndimage.convolve(image, _IMMERKAER)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).sum() / (6 * (h - 2) * (w - 2)))


def gradient_stats(images: np.ndarray) -> dict[str, float]:
    """Mean, median and 90th percentile of the lateral gradient magnitude (per pixel)."""
    images = np.asarray(images, dtype=np.float64)
    images = images[None] if images.ndim == 2 else images
    gy, gx = np.gradient(images, axis=(-2, -1))
    magnitude = np.hypot(gy, gx)
    return {"grad_mean": float(magnitude.mean()), "grad_p50": float(np.median(magnitude)),
            "grad_p90": float(np.percentile(magnitude, 90))}


def cubic_psnr(volume: np.ndarray, z_factor: int) -> float:
    """PSNR (data range 1) of cubic interpolation from thick sections of ``z_factor`` slices against
    the slices it reconstructs: the isotropic task's own degradation and cubic baseline."""
    from ..models.volumes import interpolate_z, make_anisotropic, output_positions

    volume = np.asarray(volume, dtype=np.float32)
    sections = make_anisotropic(volume, z_factor)
    if len(sections) < 4:
        raise ValueError(f"cubic PSNR at z-factor {z_factor} needs at least 4 sections, the volume gives "
                         f"{len(sections)} ({volume.shape[0]} slices)")
    q = output_positions(len(sections), z_factor)
    mse = float(np.mean((interpolate_z(sections, z_factor, q, "cubic").astype(np.float64) - volume[q]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def _values(a: np.ndarray) -> np.ndarray:
    flat = np.asarray(a, dtype=np.float64).ravel()
    return flat[:: max(1, flat.size // _MAX_VALUES)]


def _lateral_planes(volume: np.ndarray, count: int = 16) -> np.ndarray:
    return volume[np.linspace(0, volume.shape[0] - 1, min(count, volume.shape[0])).astype(int)]


def statistics(data: np.ndarray, reference: np.ndarray | None = None) -> dict[str, float]:
    """Every statistic of a (z, y, x) volume, or of a stack of unrelated 2D images when ``data`` is
    2D or ``axial`` statistics do not apply (then they are nan). ``reference``: the volume the
    histogram distance is measured to."""
    data = np.asarray(data, dtype=np.float32)
    volume = data.ndim == 3 and data.shape[0] > 1
    planes = _lateral_planes(data) if data.ndim == 3 else data[None]
    out = {"mean": float(data.mean()), "std": float(data.std()),
           "hist_w1": float(wasserstein_distance(_values(data), _values(reference))) if reference is not None
           else float("nan")}
    out["spectrum_slope"] = float(np.mean([spectrum_slope(*radial_spectrum(p)) for p in planes]))
    out.update(gradient_stats(planes))
    out["noise_sigma"] = float(np.mean([noise_sigma(p) for p in planes]))
    for lag in AXIAL_LAGS:
        out[f"axial_corr_{lag}"] = axial_correlation(data, lag) if volume and data.shape[0] > lag else float("nan")
    for z in Z_FACTORS:
        out[f"cubic_psnr_x{z}"] = cubic_psnr(data, z) if volume and data.shape[0] >= 4 * z else float("nan")
    return out


def normalized(image: np.ndarray, percentiles: tuple[float, float] = (0.1, 99.9)) -> np.ndarray:
    """Percentile normalisation to [0, 1], as the workflow prepares real volumes."""
    image = np.asarray(image, dtype=np.float32)
    low, high = np.percentile(image, percentiles)
    return np.clip((image - low) / max(float(high - low), 1e-6), 0, 1)


def realism_rows(volumes: dict[str, tuple[np.ndarray, str]], images: dict[str, np.ndarray],
                 reference: str) -> list[dict]:
    """One row of :func:`statistics` per volume (name -> (volume, kind)) and per 2D reference image
    (percentile-normalised first), histogram distances measured to the volume ``reference``."""
    if reference not in volumes:
        raise ValueError(f"realism reference {reference!r} is not among the volumes {sorted(volumes)}")
    ref = volumes[reference][0]
    rows = [{"data": name, "kind": kind, "shape": "x".join(map(str, v.shape)), **statistics(v, ref)}
            for name, (v, kind) in volumes.items()]
    rows += [{"data": name, "kind": "real EM image (2D)", "shape": "x".join(map(str, im.shape)),
              **statistics(normalized(im), ref)} for name, im in images.items()]
    return rows
