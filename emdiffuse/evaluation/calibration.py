"""Does EMDiffuse's self-assessed reliability flag its bad predictions?

EMDiffuse samples K outputs per input; the per-pixel std of those samples is the uncertainty
map. The paper's score is its 99th percentile, and a prediction is unreliable above 0.12. The
paper does not say on which intensity scale: the official code computes the std on the
network's [-1, 1] outputs, where every score is twice the [0, 1] value used here
(:func:`paper_score`; its threshold stays UNVERIFIED).

That score is not comparable across datasets. A diffusion model trained on noisy ground truth
regenerates the noise grain in every sample, so most of the per-pixel std is grain: on the real
FIB-SEM volume (ground-truth noise sigma ~0.036 in [0, 1]) the 99th percentile sat at 0.124-0.129
for all 48 denoising test images whatever their input noise (Spearman with LPIPS 0.16), above
0.12 for every one of them, while the cleaner phantom scored lower. :func:`reliability_score`
divides it by the prediction's own contrast (the std of the K-sample mean): dimensionless, the
same for any intensity scale or normalisation, and it ranks errors, since a harder input gives
both wider samples and a flatter mean (measured there: Spearman 0.78 with LPIPS, 0.88 with
1 - FSIM). The workflow flags on it (``reliability_threshold``) and reports both.

The check is empirical: per-image error (LPIPS, 1 - FSIM, RMSE, ...) against score.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import permutation_test, rankdata, spearmanr

DEFAULT_THRESHOLD = 0.9  # on reliability_score; how it was chosen: config/README.md (reliability_threshold)
PAPER_THRESHOLD = 0.12  # EMDiffuse paper, on paper_score; intensity scale unverified (see module docstring)


def paper_score(uncertainty: np.ndarray) -> float:
    """The paper's score: 99th percentile of the per-pixel std map (std of the K samples, [0, 1] units)."""
    uncertainty = np.asarray(uncertainty, dtype=np.float64)
    if uncertainty.size == 0 or not np.isfinite(uncertainty).all():
        raise ValueError(f"uncertainty map must be non-empty and finite, got shape {uncertainty.shape}")
    return float(np.percentile(uncertainty, 99))


def reliability_score(uncertainty: np.ndarray, prediction: np.ndarray) -> float:
    """The paper's score relative to the prediction's contrast: p99(std map) / std(prediction).

    Dimensionless, so one threshold means the same on every dataset; inf for a flat prediction."""
    prediction = np.asarray(prediction, dtype=np.float64)
    if prediction.shape != np.shape(uncertainty):
        raise ValueError(f"uncertainty {np.shape(uncertainty)} and prediction {prediction.shape} differ in shape")
    contrast = prediction.std() if np.ptp(prediction) > 0 else 0.0
    return paper_score(uncertainty) / contrast if contrast > 0 else float("inf")


def calibrated_threshold(uncertainties: np.ndarray, predictions: np.ndarray) -> float:
    """The largest :func:`reliability_score` of a model's predictions on held-out images of its own
    training distribution: a later prediction scoring above it is less certain than any of those.

    Needs no ground truth. On images like the held-out ones, about 1 / (n + 1) of n-image
    calibrations flag a prediction by chance; on shifted data (another tissue, noisier input) the
    scores rise and more are flagged. A threshold per model replaces one number for every task
    and dataset, which flagged all or none of a dataset's predictions (``config/README.md``)."""
    scores = [reliability_score(u, p) for u, p in zip(uncertainties, predictions, strict=True)]
    if not scores:
        raise ValueError("no held-out predictions to calibrate the reliability threshold on")
    return float(max(scores))


def flag_unreliable(scores: np.ndarray, threshold: float) -> np.ndarray:
    """True where the reliability score exceeds the threshold (the prediction is deemed unreliable)."""
    return np.asarray(scores, dtype=np.float64) > threshold


def _catch_rates(flagged: np.ndarray, bad: np.ndarray) -> tuple[float, float, float]:
    """(share flagged, recall = bad caught / bad, precision = bad caught / flagged); nan when undefined."""
    caught = np.sum(flagged & bad)
    recall = caught / bad.sum() if bad.any() else float("nan")
    precision = caught / flagged.sum() if flagged.any() else float("nan")
    return float(flagged.mean()), float(recall), float(precision)


def rank_correlation(scores: np.ndarray, errors: np.ndarray) -> float:
    """Spearman correlation of score and error (does the score rank the errors?); nan when either
    is constant or there are fewer than 3 images."""
    scores, errors = np.asarray(scores, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    if len(scores) < 3 or np.ptp(scores) == 0 or np.ptp(errors) == 0:
        return float("nan")
    return float(spearmanr(scores, errors).statistic)


RANK_TEST_LEVEL = 0.05  # one-sided permutation test of the rank correlation


def rank_test(scores: np.ndarray, errors: np.ndarray, *, resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
    """Spearman correlation of score and error and its one-sided permutation p-value: how often
    pairing the errors with the scores at random ranks them at least as well. With a handful of
    images a large coefficient arises by chance (six images: 0.6 about one time in eight), so the
    coefficient alone does not show that a score ranks errors. Exact for up to 7 images (at most
    ``resamples`` orderings), else ``resamples`` random orderings from ``seed``; nan where
    :func:`rank_correlation` is."""
    rho = rank_correlation(scores, errors)
    if not np.isfinite(rho):
        return rho, float("nan")
    ranked = rankdata(scores)
    ranked = (ranked - ranked.mean()) / np.linalg.norm(ranked - ranked.mean())

    def statistic(err: np.ndarray, axis: int = -1) -> np.ndarray:  # Spearman with the fixed scores
        r = rankdata(err, axis=axis)
        r = r - r.mean(axis=axis, keepdims=True)
        return (r @ ranked) / np.linalg.norm(r, axis=axis)

    test = permutation_test((np.asarray(errors, dtype=np.float64),), statistic, permutation_type="pairings",
                            vectorized=True, n_resamples=resamples, alternative="greater",
                            rng=np.random.default_rng(seed))
    return rho, float(test.pvalue)


def ranks_errors(spearman: float, p_value: float) -> str:
    """The verdict a table prints: "yes" where the score ranks the errors beyond chance
    (:data:`RANK_TEST_LEVEL`), "not shown" otherwise (no evidence, which is not evidence against)."""
    return "yes" if np.isfinite(p_value) and p_value < RANK_TEST_LEVEL and spearman > 0 else "not shown"


def calibration_table(scores: np.ndarray, errors: np.ndarray, threshold: float, bad_error: float) -> dict:
    """How well the score ranks the error and how well the threshold catches bad predictions.

    A prediction is bad when its error exceeds ``bad_error`` (e.g. a quantile of the per-image
    LPIPS, chosen by the caller). Ratios with an empty denominator (no bad image, nothing
    flagged) are nan, as is the Spearman correlation when either input is constant or there are
    fewer than 3 images; ``spearman_p`` is its :func:`rank_test` p-value. ``sweep`` gives the same
    rates for every distinct score as threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if scores.shape != errors.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"scores {scores.shape} and errors {errors.shape} must be equal-length non-empty 1D arrays")
    if not (np.isfinite(scores).all() and np.isfinite(errors).all()):
        raise ValueError("scores and errors must be finite")
    bad = errors > bad_error
    spearman, p_value = rank_test(scores, errors)
    flagged_share, recall, precision = _catch_rates(flag_unreliable(scores, threshold), bad)
    thresholds = np.unique(scores)
    sweep = np.array([_catch_rates(flag_unreliable(scores, t), bad) for t in thresholds]).reshape(-1, 3)
    return {
        "n": len(scores), "threshold": float(threshold), "bad_error": float(bad_error),
        "spearman": spearman, "spearman_p": p_value, "bad_share": float(bad.mean()), "flagged_share": flagged_share,
        "recall": recall, "precision": precision,
        "sweep": {"threshold": thresholds, "flagged_share": sweep[:, 0], "recall": sweep[:, 1],
                  "precision": sweep[:, 2]},
    }
