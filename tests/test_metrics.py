"""Pixel metrics, FSIM and the registry against hand-computed values and expected behaviour."""

import numpy as np
import pytest
import skimage.data
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from emdiffuse.evaluation import METRICS, compute
from emdiffuse.evaluation.basic import psnr, ssim
from emdiffuse.evaluation.fsim import fsim, fsim_batch


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return skimage.data.camera().astype(np.float64) / 255.0  # bundled with scikit-image, no download


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return np.clip(image + np.random.default_rng(seed).normal(0.0, sigma, image.shape), 0.0, 1.0)


# ---- PSNR ----
def test_psnr_hand_computed():
    gt = np.full((8, 8), 0.5)
    assert psnr(gt + 0.1, gt) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(1 / 0.01)
    pred = gt.copy()
    pred[0, 0] = 0.0  # MSE 0.25 / 64
    assert psnr(pred, gt) == pytest.approx(10 * np.log10(64 / 0.25))


def test_psnr_identical_is_inf_and_out_of_range_is_clipped():
    gt = np.full((8, 8), 1.0)
    assert psnr(gt, gt) == np.inf
    assert psnr(gt + 0.5, gt) == np.inf  # 1.5 is clipped to the data range


# ---- SSIM ----
def test_ssim_identical_is_one(camera):
    assert ssim(camera, camera) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_closed_form():
    # Constant images: no variance, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1), C1 = (0.01 * 1)^2.
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert ssim(np.full((32, 32), 0.25), np.full((32, 32), 0.5)) == pytest.approx(expected, rel=1e-9)


def test_ssim_uses_wang_settings(camera):
    pred = noisy(camera, 0.1)
    wang = structural_similarity(
        camera, pred, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(pred, camera) == pytest.approx(wang, abs=1e-12)
    assert abs(wang - structural_similarity(camera, pred, data_range=1.0)) > 1e-3  # skimage defaults differ


# ---- FSIM ----
def test_fsim_identical_is_exactly_one(camera):
    assert fsim(camera, camera) == 1.0


def test_fsim_decreases_with_noise(camera):
    scores = [fsim(noisy(camera, s), camera) for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert 0.0 < scores[-1] < 1.0


def test_fsim_decreases_with_blur(camera):
    scores = [fsim(gaussian_filter(camera, s), camera) for s in (0.5, 1.0, 2.0)]
    assert scores[0] < 1.0 and all(a > b for a, b in zip(scores, scores[1:])), scores


def test_fsim_symmetric(camera):
    pred = noisy(camera, 0.05)
    assert fsim(pred, camera) == pytest.approx(fsim(camera, pred), abs=1e-9)


def test_fsim_batch_matches_single(camera):
    gts = np.stack([camera[:256, :256], camera[256:, 256:]])
    preds = np.stack([noisy(g, 0.05, seed=i) for i, g in enumerate(gts)])
    assert np.allclose(fsim_batch(preds, gts), [fsim(p, g) for p, g in zip(preds, gts)], atol=1e-12)


# ---- input checks ----
def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        psnr(np.zeros((4, 5)), np.zeros((4, 6)))


@pytest.mark.parametrize("name", sorted(METRICS))
def test_every_metric_rejects_bad_input(name):
    fn = METRICS[name].fn
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((64, 64)), np.zeros((64, 65)))
    with pytest.raises(ValueError, match="2D"):
        fn(np.zeros((2, 64, 64)), np.zeros((2, 64, 64)))
    bad = np.zeros((64, 64))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, np.zeros((64, 64)))


# ---- registry ----
def test_registry_entries_are_consistent():
    assert {"PSNR", "SSIM", "LPIPS", "FSIM"} <= set(METRICS)
    for key, metric in METRICS.items():
        assert metric.name == key and callable(metric.fn) and metric.description
    assert not METRICS["LPIPS"].higher_is_better and METRICS["PSNR"].higher_is_better


def test_compute_returns_every_requested_metric(camera):
    gt = camera[:128, :128]
    names = ["FSIM", "PSNR", "SSIM", "LPIPS"]
    result = compute(names, noisy(gt, 0.05), gt)
    assert list(result) == names
    assert all(isinstance(v, float) and np.isfinite(v) for v in result.values())


def test_unknown_metric_lists_known_ones():
    with pytest.raises(KeyError, match=r"'NOPE'.*PSNR"):
        compute(["PSNR", "NOPE"], np.zeros((8, 8)), np.zeros((8, 8)))
