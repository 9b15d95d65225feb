"""Does EMDiffuse's self-assessed reliability flag its bad predictions?

EMDiffuse samples K outputs per input; the per-pixel std of those samples is the uncertainty
map, and its 99th percentile is the image's reliability score. The paper calls a prediction
unreliable when the score exceeds 0.12. Here the score is computed on the uncertainty map as
``EMDiffuseMethod.predict`` returns it: the std of samples in [0, 1] intensity units (the
std of the network's [-1, 1] outputs divided by 2). Which scale the paper's 0.12 refers to
is UNVERIFIED: on the [-1, 1] scale the same images would score twice as high.

The check is empirical: per-image error (LPIPS, 1 - FSIM, RMSE, ...) against score.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

PAPER_THRESHOLD = 0.12  # EMDiffuse paper; intensity scale unverified (see module docstring)


def reliability_score(uncertainty: np.ndarray) -> float:
    """99th percentile of the per-pixel std map (std of the K samples, [0, 1] intensity units)."""
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    if uncertainty.size == 0 or not np.isfinite(uncertainty).all():
        raise ValueError(f"uncertainty map must be non-empty and finite, got shape {uncertainty.shape}")
    return float(np.percentile(uncertainty, 99))


def flag_unreliable(scores: np.ndarray, threshold: float = PAPER_THRESHOLD) -> np.ndarray:
    """True where the reliability score exceeds the threshold (the prediction is deemed unreliable)."""
    return np.asarray(scores, dtype=np.float64) > threshold


def _catch_rates(flagged: np.ndarray, bad: np.ndarray) -> tuple[float, float, float]:
    """(share flagged, recall = bad caught / bad, precision = bad caught / flagged); nan when undefined."""
    caught = np.sum(flagged & bad)
    recall = caught / bad.sum() if bad.any() else float("nan")
    precision = caught / flagged.sum() if flagged.any() else float("nan")
    return float(flagged.mean()), float(recall), float(precision)


def calibration_table(scores: np.ndarray, errors: np.ndarray, threshold: float, bad_error: float) -> dict:
    """How well the score ranks the error and how well the threshold catches bad predictions.

    A prediction is bad when its error exceeds ``bad_error`` (e.g. a quantile of the per-image
    LPIPS, chosen by the caller). Ratios with an empty denominator (no bad image, nothing
    flagged) are nan, as is the Spearman correlation when either input is constant or there are
    fewer than 3 images. ``sweep`` gives the same rates for every distinct score as threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if scores.shape != errors.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"scores {scores.shape} and errors {errors.shape} must be equal-length non-empty 1D arrays")
    if not (np.isfinite(scores).all() and np.isfinite(errors).all()):
        raise ValueError("scores and errors must be finite")
    bad = errors > bad_error
    constant = np.ptp(scores) == 0 or np.ptp(errors) == 0
    spearman = float("nan") if constant or len(scores) < 3 else float(spearmanr(scores, errors).statistic)
    flagged_share, recall, precision = _catch_rates(flag_unreliable(scores, threshold), bad)
    thresholds = np.unique(scores)
    sweep = np.array([_catch_rates(flag_unreliable(scores, t), bad) for t in thresholds]).reshape(-1, 3)
    return {
        "n": len(scores), "threshold": float(threshold), "bad_error": float(bad_error),
        "spearman": spearman, "bad_share": float(bad.mean()), "flagged_share": flagged_share,
        "recall": recall, "precision": precision,
        "sweep": {"threshold": thresholds, "flagged_share": sweep[:, 0], "recall": sweep[:, 1],
                  "precision": sweep[:, 2]},
    }
