"""The difficulty-aware loss on and off (config ``loss_ablation``).

EMDiffuse trained twice at the same reduced budget and seed, once with the paper's heteroscedastic
loss and once with plain MSE, sampled alike, scored on the same test subset, with how well each
variant's uncertainty (and the loss-on variant's difficulty map) points at its errors.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ...reporting import markdown
from ...config import ConfigError
from ...io import atomic_path, load_npz, write_text
from ...data.pairs import PAIR_KEYS

LOSS_VARIANTS = {"on": True, "off": False}  # wildcard value -> train.difficulty_loss


def ablation_params(method_params: dict, ablation: dict, variant: str) -> dict:
    """EMDiffuse's config with the ablation's budget and the loss switched on or off.

    Only ``iterations`` and ``patch`` (and the loss) change, identically for both variants; the
    loss-on variant also predicts its difficulty map.
    """
    if variant not in LOSS_VARIANTS:
        raise ConfigError(f"loss_ablation: variant must be one of {list(LOSS_VARIANTS)}, got {variant!r}")
    params = copy.deepcopy(method_params)
    params["train"].update(iterations=int(ablation["iterations"]), patch=int(ablation["patch"]),
                           difficulty_loss=LOSS_VARIANTS[variant])
    params.setdefault("predict", {})["difficulty"] = LOSS_VARIANTS[variant]
    return params


def _pixel_spearman(maps: np.ndarray, errors: np.ndarray) -> float:
    """Mean over images of the per-pixel Spearman correlation between a map and the absolute error."""
    values = [spearmanr(m.ravel(), e.ravel()).statistic for m, e in zip(maps, errors)]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def ablation_self_assessment(pred: dict, targets: np.ndarray, rows: pd.DataFrame, threshold: float,
                             *, error_metric: str = "LPIPS", bad_quantile: float = 0.8) -> dict:
    """How well a variant's uncertainty (and difficulty map) flags its errors, image- and pixel-wise."""
    from ...evaluation.calibration import calibration_table

    errors = rows[error_metric].to_numpy(dtype=np.float64)
    abs_error = np.abs(pred["prediction"] - targets)
    out = {"reliability_mean": float("nan"), "flagged": 0, "spearman_reliability": float("nan"),
           "recall": float("nan"), "precision": float("nan"), "pixel_spearman_uncertainty": float("nan"),
           "difficulty_mean": float("nan"), "spearman_difficulty": float("nan"),
           "pixel_spearman_difficulty": float("nan")}
    if "uncertainty" in pred:
        cal = calibration_table(rows["reliability"].to_numpy(), errors, threshold,
                                float(np.quantile(errors, bad_quantile)))
        out.update(reliability_mean=float(rows["reliability"].mean()), flagged=int(rows["unreliable"].sum()),
                   spearman_reliability=cal["spearman"], recall=cal["recall"], precision=cal["precision"],
                   pixel_spearman_uncertainty=_pixel_spearman(pred["uncertainty"], abs_error))
    if "difficulty" in pred:
        per_image = pred["difficulty"].reshape(len(errors), -1).mean(axis=1)
        constant = np.ptp(per_image) == 0 or len(errors) < 3
        out.update(difficulty_mean=float(per_image.mean()),
                   spearman_difficulty=float("nan") if constant else float(spearmanr(per_image, errors).statistic),
                   pixel_spearman_difficulty=_pixel_spearman(pred["difficulty"], abs_error))
    return out


ASSESSMENT_COLUMNS = [
    ("reliability_mean", "reliability (mean)"), ("flagged", "flagged"),
    ("spearman_reliability", "Spearman(reliability, LPIPS)"), ("recall", "recall"), ("precision", "precision"),
    ("pixel_spearman_uncertainty", "pixel Spearman(std, abs error)"),
    ("spearman_difficulty", "Spearman(difficulty, LPIPS)"),
    ("pixel_spearman_difficulty", "pixel Spearman(difficulty, abs error)"),
    ("final_loss", "final training loss"), ("train_seconds", "training s"),
]


def ablation_markdown(table: pd.DataFrame, assessment: pd.DataFrame, metrics: list[str], *, budget: str,
                      about: dict, threshold: float, sections: list[str] = ()) -> str:
    """The metric table (as the task tables; ``sections``: the paired on-versus-off comparison)
    followed by the self-assessment per variant."""
    from ...reporting.tables import to_markdown

    text = to_markdown(table, metrics, title=f"Difficulty-aware loss on / off: EMDiffuse, {about['task']} / "
                       f"{about['dataset']}", budgets={m: budget for m in table["method"].unique()},
                       threshold=threshold, sections=sections)
    lines = ["", f"Both variants: same seed, data, budget and sampling; {about['images']} test images (indices "
             f"{about['index']}), centre crop {about['crop']} px. 'loss on' trains with the paper's difficulty-aware "
             "loss (per-pixel log-scale head, mean(0.5 [exp(-2s) (eps - eps_hat)^2 + 2s])), 'loss off' with plain MSE "
             "on the noise. The two training losses are on different scales and not comparable.", "",
             "## Self-assessment", "",
             f"Reliability: 99th percentile of the K-sample std map; flagged above {threshold:g}; recall: share of the "
             "variant's worst 20 % images (LPIPS) the threshold flags; precision: share of flagged images among those "
             "worst. Pixel Spearman: per image, "
             "between the map and |prediction - ground truth|, averaged. Difficulty: the loss-on variant's predicted "
             "log error scale (higher = harder), mean over the image.", ""]
    rows = []
    for _, r in assessment.iterrows():
        cells = [r["method"]]
        for key, _ in ASSESSMENT_COLUMNS:
            v = r[key]
            cells.append("—" if pd.isna(v) else f"{int(v)}/{int(r['n'])}" if key == "flagged"
                         else f"{v:.1f}" if key == "train_seconds" else f"{v:.4f}")
        rows.append(cells)
    lines += markdown.table(["variant", *(name for _, name in ASSESSMENT_COLUMNS)], rows)
    return text + "\n".join(lines) + "\n"


def loss_ablation(predictions: dict[str, str], histories: dict[str, str], subset_path: str, metrics: list[str],
                  budget: str, about: dict, csv_path: str, md_path: str, *, threshold: float) -> None:
    """Score both variants on the subset; write the metric table and the self-assessment summary."""
    from ...reporting.tables import evaluate_images, leads, leads_markdown, summarize

    subset = load_npz(subset_path, required=PAIR_KEYS + ("index",))
    frames, assessment = [], []
    for variant, path in predictions.items():
        name = f"loss {variant}"
        pred = load_npz(path, required=("prediction",))
        rows = evaluate_images(pred["prediction"], subset["targets"], subset["level"], subset["level_name"], metrics,
                               task=about["task"], dataset=about["dataset"], method=name,
                               uncertainty=pred.get("uncertainty"), threshold=threshold)
        history = pd.read_csv(histories[variant])
        record = {"method": name, "n": len(rows), **ablation_self_assessment(pred, subset["targets"], rows, threshold),
                  "final_loss": float(history["loss"].tail(50).mean()), "train_seconds": float(history["seconds"].iloc[-1])}
        frames.append(rows)
        assessment.append(record)
    names = [f"loss {v}" for v in predictions]
    rows = pd.concat(frames, ignore_index=True)
    table, lead = summarize(rows, metrics, names), leads(rows, metrics, ["loss on"])  # on, paired with off
    assessment = pd.DataFrame(assessment)
    pooled = table[table["level"] == "all"].merge(assessment.drop(columns=["n", "reliability_mean"]), on="method")
    if len(lead):
        pooled = pooled.merge(lead, on=["dataset", "level", "method"], how="left")
    with atomic_path(csv_path) as tmp:
        pooled.to_csv(tmp, index=False)
    about = dict(about, images=len(subset["targets"]), index=[int(i) for i in subset["index"]])
    write_text(md_path, ablation_markdown(table, assessment, metrics, budget=budget, about=about,
                                          threshold=threshold, sections=leads_markdown(lead, metrics)))
