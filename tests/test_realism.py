"""Realism statistics on inputs with known answers."""

import numpy as np
import pytest

from emdiffuse.evaluation import realism


def _power_law_image(size: int, exponent: float, seed: int = 0) -> np.ndarray:
    """Gaussian random image whose power spectrum falls as f^exponent."""
    rng = np.random.default_rng(seed)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) * f ** (exponent / 2)
    return np.real(np.fft.ifft2(spectrum))


def test_axial_correlation_of_white_noise_is_zero_and_of_a_z_constant_volume_one():
    noise = np.random.default_rng(0).random((12, 64, 64))
    assert all(abs(realism.axial_correlation(noise, lag)) < 0.02 for lag in realism.AXIAL_LAGS)
    constant_in_z = np.broadcast_to(np.random.default_rng(1).random((64, 64)), (12, 64, 64))
    assert realism.axial_correlation(constant_in_z, 4) == pytest.approx(1.0)
    assert realism.axial_correlation(np.zeros((8, 16, 16)), 1) == 1.0
    with pytest.raises(ValueError, match="lag 6"):
        realism.axial_correlation(noise[:5], 6)


@pytest.mark.parametrize("exponent", [-2.0, -3.0])
def test_spectrum_slope_recovers_a_power_law(exponent):
    images = np.stack([_power_law_image(256, exponent, seed) for seed in range(4)])
    assert realism.spectrum_slope(*realism.radial_spectrum(images)) == pytest.approx(exponent, abs=0.15)
    white = np.random.default_rng(0).random((256, 256))
    assert realism.spectrum_slope(*realism.radial_spectrum(white)) == pytest.approx(0.0, abs=0.15)


def test_noise_sigma_of_white_noise_and_of_a_smooth_image():
    rng = np.random.default_rng(0)
    assert realism.noise_sigma(0.05 * rng.standard_normal((256, 256))) == pytest.approx(0.05, rel=0.05)
    ramp = np.add.outer(np.arange(64.0), np.arange(64.0)) / 128
    assert realism.noise_sigma(ramp) == pytest.approx(0.0, abs=1e-9)


def test_cubic_psnr_is_exact_on_a_z_linear_volume_and_low_on_noise():
    z = np.linspace(0.2, 0.8, 48)[:, None, None]
    assert realism.cubic_psnr(np.broadcast_to(z, (48, 8, 8)), 4) > 100  # exact up to float32 rounding
    noise = np.random.default_rng(0).random((48, 16, 16))
    assert realism.cubic_psnr(noise, 4) < 12  # white noise: nothing to interpolate
    with pytest.raises(ValueError, match="4 sections"):
        realism.cubic_psnr(noise[:12], 4)


def test_statistics_of_a_volume_and_of_2d_images():
    rng = np.random.default_rng(0)
    volume = rng.random((20, 64, 64)).astype(np.float32)
    stats = realism.statistics(volume, reference=volume)
    assert stats["hist_w1"] == 0.0 and stats["std"] == pytest.approx(volume.std())
    assert np.isfinite([stats[f"axial_corr_{lag}"] for lag in realism.AXIAL_LAGS]).all()
    assert np.isfinite(stats["cubic_psnr_x4"]) and np.isnan(stats["cubic_psnr_x6"])  # 20 slices < 4 sections x 6
    image_stats = realism.statistics(volume[0], reference=volume)
    assert image_stats["hist_w1"] < 0.01 and np.isnan(image_stats["axial_corr_1"])
    assert np.isnan(image_stats["cubic_psnr_x4"])
