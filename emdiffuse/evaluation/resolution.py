"""Image resolution: decorrelation analysis (one image) and Fourier ring correlation (two images).

Decorrelation analysis (Descloux, Grussmayer & Radenovic, Nature Methods 16, 918-924, 2019) is a
NumPy port of the reference MATLAB ``funcs/getDcorr.m`` (the version with ``getDcorrLocalMax``
and the Fourier-domain Gaussian high-pass, commit 3008b7a) and the newest ``getDcorrLocalMax.m``
(5e-4 peak rule) of github.com/Ades91/ImDecorr, run as its ``main_imageDecorr.m`` does
(``apodImRect(image, 20)``, ``Nr = 50``, ``Ng = 10``, non-fast mode). Frequencies are
normalised: 1 is the Nyquist frequency. Deviations from that code, each on purpose:

- the image mean is subtracted after apodisation. That ``getDcorr.m`` keeps the zero
  frequency, so for an image in [0, 1] the mean dominates the unfiltered curve d0 and its
  amplitude A0; the ImageJ plugin and earlier MATLAB versions remove it, as here;
- each d(r) value is truncated to 3 decimals before the peak search (the 5e-4 rule is meant
  for such a quantised curve; the MATLAB versions read for this port do not round);
- no peak at all (pure noise, a constant image) gives ``resolution = nan`` and ``kc_max = 0``
  instead of MATLAB's fallback ``kcMax = r(2)``.

The ImageJ plugin, and NanoPyx which ports it, differ (power-of-2 padding, real-space Gaussian
high-pass, a 1e-3 peak rule): on Gaussian-blurred noise NanoPyx's resolution is within 3-11% of
this one, but on noisy natural images with shallow peaks the two can differ by up to 2x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal.windows import tukey

from .basic import check_pair

APODISATION_PIXELS = 20  # main_imageDecorr.m: apodImRect(image, 20)
MIN_AMPLITUDE = 0.05  # getDcorr.m: peaks lower than this are not physical
PEAK_SIGNIFICANCE = 5e-4  # getDcorrLocalMax.m: a peak must stand this far above the curve after it
G_MIN = 0.15  # getDcorr.m: narrowest high-pass Gaussian of the first pass
TUKEY_ALPHA = 0.25  # FRC window, as in the `frc` package and NanoPyx


@dataclass(frozen=True)
class DecorrResult:
    """Outcome of :func:`decorrelation_resolution`; curves are kept for plotting and checks."""

    resolution: float  # 2 * pixel_size / kc_max in pixel_size units; nan when no peak was found
    kc_max: float  # highest peak frequency among all curves (1 = Nyquist); 0 when none
    a0: float  # peak amplitude of the unfiltered curve d0 (a signal-to-noise proxy)
    radii: np.ndarray  # (curves, n_r) normalised frequency of each sample; row 0 is d0
    curves: np.ndarray  # (curves, n_r) d(r): d0, then the high-pass curves of passes 1 and 2
    peaks: np.ndarray  # (curves, 2) (frequency, amplitude) of each curve's peak


def _as_image(image: np.ndarray, name: str) -> np.ndarray:
    """float64 2D finite copy; unlike ``check_pair`` no clipping, noisy data may leave [0, 1]."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"{name}: expected a 2D image, got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return image


def apodise_edges(image: np.ndarray, n: int = APODISATION_PIXELS) -> np.ndarray:
    """Blend the outer ``n`` pixels into the image mean with a cosine (``apodImRect.m``).

    Without it the FFT sees the jump between opposite edges as a sharp cross of high
    frequencies, which decorrelation would read as resolution.
    """
    rows, cols = image.shape
    size = min(rows, cols)
    x = np.abs(np.linspace(-size / 2, size / 2, size))
    edge = x > size / 2 - n
    d = (-x - np.mean(-x[edge])) * edge
    d = (d - d.min()) / (d.max() - d.min()) * np.pi - np.pi / 2  # linmap(d, -pi/2, pi/2)
    d[~edge] = np.pi / 2
    profile = (np.sin(d) + 1) / 2
    mask = np.outer(_resize_profile(profile, rows), _resize_profile(profile, cols))
    mean = image.mean()
    return (image - mean) * mask + mean


def _resize_profile(profile: np.ndarray, length: int) -> np.ndarray:
    """1D bilinear resize with MATLAB ``imresize``'s pixel-centre mapping (edges replicated)."""
    scale = length / len(profile)
    x = (np.arange(1, length + 1) - 0.5) / scale + 0.5
    return np.interp(x, np.arange(1, len(profile) + 1), profile)


def _local_max(d: np.ndarray) -> tuple[int, float]:
    """Index and amplitude of the highest peak that stands out from the rest of the curve
    (``getDcorrLocalMax.m``): a maximum at the end is dropped until one rises at least
    ``PEAK_SIGNIFICANCE`` above every later value; a maximum at the start is kept.
    """
    n = len(d)
    while n > 1:
        i = int(np.argmax(d[:n]))
        if i == 0 or (i < n - 1 and d[i] - d[i:n].min() >= PEAK_SIGNIFICANCE):
            break
        n -= 1
    i = int(np.argmax(d[:n]))
    return i, float(d[i])


class _Spectrum:
    """Amplitudes of the image spectrum inside the unit disc, sorted by radius.

    Because the normalised spectrum In = Ik / |Ik| has unit modulus, the correlation of a
    filtered spectrum Ik * w with In inside the disc of radius r reduces to
    sum(w |Ik|) / (||Ik * w|| * sqrt(#pixels)), which cumulative sums give for every r at once.
    """

    def __init__(self, image: np.ndarray):
        rows, cols = image.shape
        y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
        r2 = np.fft.ifftshift(x**2 + y**2)  # the FFT of an odd-sized image puts r = 0 at [0, 0]
        amplitude = np.abs(np.fft.fft2(image))
        inside = r2 < 1
        order = np.argsort(r2[inside], kind="stable")
        self.r2 = r2[inside][order]
        self.amplitude = amplitude[inside][order]
        self.count = np.cumsum(self.amplitude > 0)  # In = 0 where Ik = 0 (getDcorr.m: nan -> 0)

    def curve(self, radii: np.ndarray, g: float | None = None) -> np.ndarray:
        """d(r) at ``radii``, after the Fourier high-pass 1 - exp(-2 g^2 r^2) when ``g`` is given."""
        weighted = self.amplitude if g is None else self.amplitude * (1 - np.exp(-2 * g * g * self.r2))
        norm = np.sqrt(np.sum(weighted**2))
        n = np.searchsorted(self.r2, np.asarray(radii) ** 2, side="left")  # pixels with r^2 < radius^2
        numerator = np.concatenate([[0.0], np.cumsum(weighted)])[n]
        count = np.concatenate([[0], self.count])[n]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = numerator / (norm * np.sqrt(count))
        return np.trunc(np.nan_to_num(d, nan=0.0, posinf=0.0) * 1000) / 1000


def _refine(kc: list[float], g: np.ndarray, r: np.ndarray, rows: int, n_g: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-pass Gaussian widths and radii around the best first-pass peak, as ``getDcorr.m``.

    ``kc[0]`` is the unfiltered peak and ``kc[i]`` the peak after filter ``g[i - 1]``; ties go to
    the last. The width bracket is [that filter, the next narrower one], except at the two
    narrowest filters where it is [the previous one, that filter] (an off-by-one kept from the
    MATLAB). The radii span [peak - one radius step, peak + 0.4].
    """
    i = len(kc) - 1 - int(np.argmax(kc[::-1]))
    if i == 0:
        lo, hi = rows, g[0]
    elif i >= len(g) - 1:
        lo, hi = g[i - 2], g[i - 1]
    else:
        lo, hi = g[i - 1], g[i]
    radii = np.linspace(max(kc[i] - (r[1] - r[0]), 0.0), min(kc[i] + 0.4, 1.0, r[-1]), len(r))
    return np.geomspace(lo, hi, n_g), radii


def decorrelation_resolution(image: np.ndarray, pixel_size: float = 1.0, *, n_r: int = 50, n_g: int = 10) -> DecorrResult:
    """Resolution of one image by decorrelation analysis: 2 * pixel_size / kc_max.

    kc_max is the highest frequency at which the image still correlates with its own
    phase-only (whitened) spectrum, searched over the unfiltered image and 2 x ``n_g``
    Gaussian high-pass filtered copies. Returns ``resolution = nan`` when no curve has a
    peak of amplitude >= 0.05 (pure noise, a constant image): the resolution is undefined.
    """
    image = _as_image(image, "decorrelation image")
    if min(image.shape) <= 2 * APODISATION_PIXELS:
        raise ValueError(f"decorrelation needs more than {2 * APODISATION_PIXELS} px per side, got shape {image.shape}")
    if n_r < 30 or n_g < 5:
        raise ValueError(f"decorrelation needs n_r >= 30 and n_g >= 5 (getDcorr.m minimums), got {n_r}, {n_g}")
    flat = np.ptp(image) <= 1e-12 * np.abs(image).max()  # constant up to rounding: no spectrum at all
    image = apodise_edges(image)
    image = image[: image.shape[0] - 1 + image.shape[0] % 2, : image.shape[1] - 1 + image.shape[1] % 2]
    spectrum = _Spectrum(np.zeros_like(image) if flat else image - image.mean())

    r = np.linspace(0, 1, n_r)
    radii, curves = [r], [spectrum.curve(r)]
    i0, a0 = _local_max(curves[0])
    k0 = r[i0]
    g = np.concatenate([[image.shape[0] / 4], np.geomspace(2 / k0 if k0 > 0 else max(image.shape) / 2, G_MIN, n_g)])
    passes = []
    for refinement in range(2):
        peaks = []
        for width in g:
            d = spectrum.curve(r, width)
            i, a = _local_max(d)
            radii.append(r)
            curves.append(d)
            peaks.append((r[i], a))
        passes.append(peaks)
        if refinement == 0:
            g, r = _refine([k0] + [p[0] for p in peaks], g, r, image.shape[0], n_g)

    # getDcorr.m writes pass 2 over the last pass-1 entry, so that one is not a final candidate
    candidates = np.array([(k0, a0)] + passes[0][:-1] + passes[1])
    valid = candidates[:, 1] >= MIN_AMPLITUDE
    kc_max = float(candidates[valid, 0].max()) if valid.any() else 0.0
    resolution = 2 * pixel_size / kc_max if kc_max > 0 else float("nan")
    all_peaks = np.array([(k0, a0)] + passes[0] + passes[1])
    return DecorrResult(resolution, kc_max, float(a0), np.array(radii), np.array(curves), all_peaks)


def resolution_ratio(prediction: np.ndarray, ground_truth: np.ndarray, pixel_size: float = 1.0) -> float:
    """Decorrelation resolution of the prediction over that of the ground truth, same crop and pixels.

    1 is ideal; > 1 means blurrier than the ground truth; < 1 means more high-frequency content
    than the ground truth (noise or hallucinated detail). nan when either resolution is undefined.
    The pixel size cancels; it is accepted so that callers can pass their calibration unchanged.
    """
    pred, gt = check_pair(prediction, ground_truth)
    return float(decorrelation_resolution(pred, pixel_size).resolution
                 / decorrelation_resolution(gt, pixel_size).resolution)


def frc_curve(image1: np.ndarray, image2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fourier ring correlation of two images of the same scene with independent noise.

    Each image has its mean removed and is multiplied by a separable Tukey window
    (alpha = 0.25) against edge artefacts. Rings are one frequency step (1 / min(H, W)) wide,
    up to Nyquist. Returns (frequency in cycles per pixel, FRC, pixels per ring); ring 0 is
    the zero frequency.
    """
    a, b = _as_image(image1, "FRC image 1"), _as_image(image2, "FRC image 2")
    if a.shape != b.shape:
        raise ValueError(f"FRC images differ in shape: {a.shape} and {b.shape}")
    rows, cols = a.shape
    window = np.outer(tukey(rows, TUKEY_ALPHA), tukey(cols, TUKEY_ALPHA))
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    side = min(rows, cols)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(cols), indexing="ij"))
    ring = np.rint(radius * side).astype(int).ravel()
    keep = ring <= side // 2
    ring = ring[keep]

    def ring_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(ring, values.ravel()[keep], minlength=side // 2 + 1)

    cross = ring_sum(np.real(fa * np.conj(fb)))
    with np.errstate(divide="ignore", invalid="ignore"):
        frc = cross / np.sqrt(ring_sum(np.abs(fa) ** 2) * ring_sum(np.abs(fb) ** 2))
    n_pixels = np.bincount(ring, minlength=side // 2 + 1)
    return np.arange(side // 2 + 1) / side, frc, n_pixels


def half_bit_threshold(n_pixels: np.ndarray) -> np.ndarray:
    """Half-bit FRC threshold for rings of ``n_pixels`` pixels (van Heel & Schatz 2005)."""
    s = 1 / np.sqrt(np.asarray(n_pixels, dtype=np.float64))
    return (0.2071 + 1.9102 * s) / (1.2071 + 0.9102 * s)


def frc_resolution(image1: np.ndarray, image2: np.ndarray, pixel_size: float = 1.0, threshold: str = "1/7") -> float:
    """1 / (first frequency where the FRC falls below the threshold), in pixel_size units.

    ``threshold`` is "1/7" (fixed 0.143) or "half-bit". The crossing is interpolated linearly
    between rings; no smoothing is applied. nan if the FRC never falls below the threshold
    (the resolution is finer than the sampling can show).
    """
    freqs, frc, n_pixels = frc_curve(image1, image2)
    if threshold == "1/7":
        limit = np.full_like(frc, 1 / 7)
    elif threshold == "half-bit":
        limit = half_bit_threshold(n_pixels)
    else:
        raise ValueError(f"threshold must be '1/7' or 'half-bit', got {threshold!r}")
    margin = np.nan_to_num(frc - limit, nan=-1.0)[1:]  # ring 0 (zero frequency) carries no resolution
    below = np.flatnonzero(margin < 0)
    if len(below) == 0:
        return float("nan")
    i = below[0] + 1
    if i == 1:
        return float(pixel_size / freqs[1])
    t = margin[i - 2] / (margin[i - 2] - margin[i - 1])
    return float(pixel_size / (freqs[i - 1] + t * (freqs[i] - freqs[i - 1])))
