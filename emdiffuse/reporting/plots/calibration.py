"""Calibration figure: per-image error against EMDiffuse's reliability score."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import save_figure
from ...evaluation.calibration import calibration_table  # noqa: E402


def calibration_figure(
    path: str, scores: np.ndarray, errors: np.ndarray, threshold: float, bad_error: float,
    labels: np.ndarray | None = None, *, error_name: str = "error",
    score_name: str = "reliability score (99th pct of sample std / prediction std)",
) -> dict:
    """Scatter of error vs score with the threshold and bad-error lines and the caught share,
    beside the recall/precision sweep over thresholds. ``labels`` (e.g. degradation level names)
    colour the points. Returns the :func:`calibration_table` it drew.
    """
    table = calibration_table(scores, errors, threshold, bad_error)
    scores, errors = np.asarray(scores, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    fig, (ax, sweep_ax) = plt.subplots(1, 2, figsize=(9, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    groups = np.full(len(scores), "") if labels is None else np.asarray(labels).astype(str)
    for group in dict.fromkeys(groups):
        sel = groups == group
        ax.scatter(scores[sel], errors[sel], s=12, alpha=0.7, label=group or None)
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.axhline(bad_error, color="tab:red", ls=":", lw=1, label=f"bad: {error_name} > {bad_error:.3g}")
    ax.set_xlabel(score_name)
    ax.set_ylabel(f"per-image {error_name}")
    ax.set_title(f"threshold {threshold:g} flags {table['flagged_share']:.0%}, catches "
                 f"{table['recall']:.0%} of bad (precision {table['precision']:.0%}); "
                 f"Spearman {table['spearman']:.2f} (p {table['spearman_p']:.2g})", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    sweep = table["sweep"]
    sweep_ax.plot(sweep["threshold"], sweep["recall"], label="recall")
    sweep_ax.plot(sweep["threshold"], sweep["precision"], label="precision")
    sweep_ax.axvline(threshold, color="k", ls="--", lw=1)
    sweep_ax.set_xlabel("threshold")
    sweep_ax.set_ylim(-0.02, 1.02)
    sweep_ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=150)
    return table
