"""Acquisition degradations: noise statistics, resampling geometry, section positions."""

import numpy as np
import pytest

from emdiffuse.data.degrade import (
    anisotropic, anisotropic_positions, probe_blur_downsample, scan_line_jitter, shot_noise,
)


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_shot_noise_follows_poisson_gaussian_on_flat_image():
    level, e_per_us, dwell, read = 0.4, 50.0, 2.0, 3.0
    gain = e_per_us * dwell
    clean = np.full((256, 256), level, np.float32)
    noisy = shot_noise(clean, dwell, electrons_per_us=e_per_us, read_noise=read, rng=np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert 0 <= noisy.min() and noisy.max() <= 1
    expected_var = level / gain + (read / gain) ** 2
    assert abs(noisy.mean() - level) < 4 * np.sqrt(expected_var / clean.size)
    assert np.var(noisy - clean) == pytest.approx(expected_var, rel=0.05)


def test_longer_dwell_gives_higher_psnr_and_is_reproducible():
    clean = np.tile(np.linspace(0.2, 0.8, 128, dtype=np.float32), (128, 1))
    kw = dict(electrons_per_us=20.0, read_noise=2.0)
    psnr = [_psnr(shot_noise(clean, d, **kw, rng=np.random.default_rng(1)), clean) for d in (0.5, 1, 2, 4, 36)]
    assert np.all(np.diff(psnr) > 0)
    a = shot_noise(clean, 1.0, **kw, rng=np.random.default_rng(5))
    b = shot_noise(clean, 1.0, **kw, rng=np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_shot_noise_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dwell_us"):
        shot_noise(np.zeros((4, 4)), 0.0, electrons_per_us=10, read_noise=1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shot_noise(np.full((4, 4), 2.0), 1.0, electrons_per_us=10, read_noise=1, rng=np.random.default_rng(0))


def test_probe_blur_downsample_shape_mean_and_divisibility():
    rng = np.random.default_rng(0)
    image = rng.random((64, 96)).astype(np.float32)
    low = probe_blur_downsample(image, 4, probe_sigma_px=1.0)
    assert low.shape == (16, 24) and low.dtype == np.float32
    assert low.mean() == pytest.approx(image.mean(), abs=1e-3)
    # without blur it is exactly the block mean the detector integrates
    assert np.allclose(probe_blur_downsample(image, 2, probe_sigma_px=0)[0, 0], image[:2, :2].mean())
    stack = np.stack([image, image])
    assert probe_blur_downsample(stack, 2, probe_sigma_px=0.5).shape == (2, 32, 48)
    with pytest.raises(ValueError, match=r"\(64, 96\).*factor 5"):
        probe_blur_downsample(image, 5, probe_sigma_px=1.0)


def test_anisotropic_depth_and_ramp_positions():
    depth, k = 40, 6
    ramp = np.broadcast_to(np.arange(depth, dtype=np.float32)[:, None, None], (depth, 8, 8))
    positions = anisotropic_positions(depth, k)
    for profile in ("box", "gaussian"):
        out = anisotropic(ramp, k, section_profile=profile)
        assert out.shape == (depth // k, 8, 8)
        # a z-linear ramp integrates to its value at the section centre
        assert np.allclose(out[:, 0, 0], positions, atol=1e-4)
    assert np.allclose(positions, [2.5, 8.5, 14.5, 20.5, 26.5, 32.5])


def test_gaussian_sections_weight_the_centre():
    volume = np.zeros((6, 2, 2), np.float32)
    volume[0] = 1.0  # an edge slice of the section
    assert anisotropic(volume, 6, section_profile="gaussian")[0, 0, 0] < anisotropic(volume, 6)[0, 0, 0]


def test_anisotropic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="3D"):
        anisotropic(np.zeros((6, 6)), 2)
    with pytest.raises(ValueError, match="section_profile"):
        anisotropic(np.zeros((6, 4, 4)), 2, section_profile="sinc")
    with pytest.raises(ValueError, match="smaller than z_factor"):
        anisotropic(np.zeros((3, 4, 4)), 6)


def test_scan_line_jitter_shifts_rows_and_keeps_mean():
    h, w = 64, 128
    x = np.arange(w, dtype=np.float32)
    image = np.tile(0.5 + 0.3 * np.sin(2 * np.pi * x / 32), (h, 1)).astype(np.float32)
    out = scan_line_jitter(image, 2.0, rng=np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.mean() == pytest.approx(image.mean(), abs=0.01)
    # recover each row's shift from the phase of the sinusoid: non-zero, bounded, smooth in y
    centre = slice(8, w - 8)
    carrier = np.exp(-2j * np.pi * x[centre] / 32)
    phase = np.angle(np.sum((out[:, centre] - 0.5) * carrier, axis=1) / np.sum((image[0, centre] - 0.5) * carrier))
    shifts = -phase * 32 / (2 * np.pi)
    assert 1.0 < np.max(np.abs(shifts)) <= 2.0 + 0.05
    assert np.corrcoef(shifts[:-1], shifts[1:])[0, 1] > 0.8
    stack = scan_line_jitter(np.stack([image, image]), 1.0, rng=np.random.default_rng(1))
    assert stack.shape == (2, h, w) and not np.array_equal(stack[0], stack[1])
    assert np.array_equal(scan_line_jitter(image, 0.0, rng=np.random.default_rng(0)), image)
