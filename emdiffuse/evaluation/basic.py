"""Input checks shared by every metric, and the pixel metrics PSNR and SSIM.

All metrics take ``(prediction, ground_truth)`` as 2D grey images on the data range [0, 1]
(``DATA_RANGE``); values outside it are clipped so that a model overshooting slightly is scored
on the same scale as the ground truth.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

DATA_RANGE = 1.0


def check_pair(prediction: np.ndarray, ground_truth: np.ndarray, ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Return both images as float64 clipped to [0, 1]; raise if shapes differ, are not ``ndim``-D or not finite."""
    pred = np.asarray(prediction, dtype=np.float64)
    gt = np.asarray(ground_truth, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    if pred.ndim != ndim:
        raise ValueError(f"expected {ndim}D images, got shape {pred.shape}")
    for name, arr in (("prediction", pred), ("ground truth", gt)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    return np.clip(pred, 0.0, DATA_RANGE), np.clip(gt, 0.0, DATA_RANGE)


def psnr(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(1 / MSE) on the [0, 1] range (inf for identical images)."""
    pred, gt = check_pair(prediction, ground_truth)
    if np.array_equal(pred, gt):
        return float("inf")
    return float(peak_signal_noise_ratio(gt, pred, data_range=DATA_RANGE))


def ssim(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    """Mean SSIM with the Wang et al. 2004 settings (11x11 Gaussian window, sigma 1.5, population covariance).

    skimage's defaults (7x7 uniform window, sample covariance) give different numbers from the
    reference MATLAB ``ssim_index.m`` that papers quote, hence the explicit arguments.
    """
    pred, gt = check_pair(prediction, ground_truth)
    return float(
        structural_similarity(
            gt, pred, data_range=DATA_RANGE, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )
