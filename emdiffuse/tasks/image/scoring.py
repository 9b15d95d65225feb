"""Score the restorations: per-image metrics, the task table with its paired comparisons, and the
reliability self-assessment's calibration table and figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...config import ConfigError
from ...data.pairs import PAIR_KEYS
from ...io import load_npz, write_text


def evaluate(task: str, dataset: str, predictions: dict[str, str], pairs_path: str, metrics: list[str],
             out_path: str, *, calibrations: dict[str, str]) -> None:
    """Per-image metrics of every method (``predictions``: method -> file) on one dataset; for
    stochastic methods also the reliability score and its flag, against the threshold their
    predictions of the held-out calibration images set (``calibrations``: method -> file)."""
    from ...io import atomic_path
    from ...evaluation.calibration import calibrated_threshold
    from ...reporting.tables import evaluate_images

    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    frames = []
    for method, path in predictions.items():
        pred = load_npz(path, required=("prediction",))
        threshold = None
        if "uncertainty" in pred:
            held_out = load_npz(calibrations[method], required=("prediction", "uncertainty"))
            threshold = calibrated_threshold(held_out["uncertainty"], held_out["prediction"])
            print(f"{method}: reliability threshold {threshold:.4f}, the highest score on "
                  f"{len(held_out['prediction'])} held-out image(s)")
        rows = evaluate_images(pred["prediction"], pairs["targets"], pairs["level"], pairs["level_name"], metrics,
                               task=task, dataset=dataset, method=method, uncertainty=pred.get("uncertainty"),
                               threshold=threshold)
        frames.append(rows if threshold is None else rows.assign(threshold=threshold))
    with atomic_path(out_path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


def table(task: str, metric_csvs: list[str], metrics: list[str], methods: list[str],
          budgets: dict[str, str], csv_path: str, md_path: str, *, threshold: float,
          model_paths: list[str] = (), budget: dict | None = None) -> None:
    """Summary CSV and Markdown of a task. ``budgets``: method -> what the config gave it; the
    budgets the trained models actually got are read from ``model_paths``
    (``.../{dataset}/{method}/model.pt``) into the CSV's budget columns and the Markdown, and
    ``budget`` (the config block) says how they were set."""
    from ...budget import describe_mode
    from ...io import atomic_path
    from ...reporting.tables import budget_columns, describe_trained, leads, leads_markdown, summarize, to_markdown

    rows = pd.concat([pd.read_csv(p) for p in metric_csvs], ignore_index=True)
    trained = trained_budgets(model_paths)
    summary = summarize(rows, metrics, methods)
    if model_paths:
        summary = budget_columns(summary, trained)
    sampled = rows.loc[rows["reliability"].notna(), "method"].unique() if "reliability" in rows else []
    lead = leads(rows, metrics, [m for m in methods if m in sampled])
    if len(lead):
        summary = summary.merge(lead, on=["dataset", "level", "method"], how="left")
    with atomic_path(csv_path) as tmp:
        summary.to_csv(tmp, index=False)
    budgets = {m: text + describe_trained({d: got for (d, mm), got in trained.items() if mm == m})
               for m, text in budgets.items()}
    note = describe_mode(budget) if budget is not None else None
    write_text(md_path, to_markdown(summary, metrics, title=f"{task}: restoration quality", budgets=budgets,
                                    threshold=threshold, budget_note=note,
                                    sections=[*_calibration_pointer(task, sampled), *leads_markdown(lead, metrics)]))


def _calibration_pointer(task: str, sampled) -> list[str]:
    """Where the table's flags are put to the test: they mean something only where the score ranks errors."""
    if not len(sampled):
        return []
    return [f"Whether the score ranks this task's errors at all, per dataset and tested against chance: "
            f"`{task}_calibration.md` (where it says \"not shown\", the flags are no evidence of a bad prediction)."]


def trained_budgets(model_paths: list[str]) -> dict[tuple[str, str], dict]:
    """(dataset, method) -> the budget a trained model got (:meth:`Method.budget`, stored in its
    file); the key comes from the workflow's ``results/models/{task}/{dataset}/{method}/model.pt``."""
    from ...models.lifecycle import read_checkpoint, training_budget

    out = {}
    for path in model_paths:
        ckpt = read_checkpoint(path)
        train = ckpt["params"].get("train")
        got = ckpt.get("budget")  # files from before budgets were recorded: the history and params
        if got is None and train:
            got = training_budget(ckpt["history"], train.get("batch_size"), train.get("patch"))
        out[(Path(path).parent.parent.name, Path(path).parent.name)] = got or {}
    return out


def calibration(task: str, metric_csvs: list[str], csv_path: str, md_path: str, png_path: str, *,
                error_metric: str = "LPIPS", bad_quantile: float = 0.8) -> None:
    """Does the reliability score flag the worst predictions? Per-image error against score, per
    dataset (the phantom and real EM differ in difficulty) and pooled, for the workflow's score
    (relative to the prediction's contrast, flagged above each model's calibrated threshold) and
    the paper's (flagged above its fixed 0.12).

    A prediction counts as bad when its error is in the worst ``1 - bad_quantile`` of its
    dataset's images; the table says which share of those each threshold catches.
    """
    from ...io import atomic_path
    from ...evaluation import METRICS
    from ...evaluation.calibration import PAPER_THRESHOLD, RANK_TEST_LEVEL, rank_test, ranks_errors
    from ...reporting.plots.calibration import calibration_figure

    rows = pd.concat([pd.read_csv(p) for p in metric_csvs], ignore_index=True)
    if error_metric not in rows:
        raise ConfigError(f"tasks.{task}.metrics: the calibration needs {error_metric} per image")
    rows = rows[np.isfinite(rows[error_metric]) & rows["reliability"].notna()].copy()
    sign = -1.0 if METRICS[error_metric].higher_is_better else 1.0  # error: higher is worse
    rows["error"] = sign * rows[error_metric].to_numpy(dtype=np.float64)
    rows["bad_error"] = rows.groupby("dataset")["error"].transform(lambda e: np.quantile(e, bad_quantile))
    rows["threshold_paper"] = PAPER_THRESHOLD
    scores = {"reliability": ("score / contrast", "threshold", "unreliable"),
              "reliability_paper": ("paper score", "threshold_paper", "unreliable_paper")}
    summary = []
    for scope, group in [*rows.groupby(["dataset", "method"], sort=False), (("all", "all"), rows)]:
        bad = (group["error"] > group["bad_error"]).to_numpy()
        for column, (name, limit, flag) in scores.items():
            flagged = group[flag].astype(bool).to_numpy()
            limits = group[limit].unique()
            spearman, p_value = rank_test(group[column], group["error"])
            summary.append({"dataset": scope[0], "method": scope[1], "score": name,
                            "threshold": float(limits[0]) if len(limits) == 1 else float("nan"),
                            "n": len(group), "spearman": spearman, "spearman_p": p_value,
                            "ranks_errors": ranks_errors(spearman, p_value),
                            "score_min": float(group[column].min()), "score_max": float(group[column].max()),
                            "flagged_share": float(flagged.mean()),
                            "recall": float((flagged & bad).sum() / bad.sum()) if bad.any() else float("nan"),
                            "precision": float((flagged & bad).sum() / flagged.sum()) if flagged.any() else float("nan")})
    summary = pd.DataFrame(summary)
    with atomic_path(csv_path) as tmp:
        summary.to_csv(tmp, index=False)
    calibration_figure(png_path, (rows["reliability"] / rows["threshold"]).to_numpy(), rows["error"].to_numpy(), 1.0,
                       float(np.quantile(rows["error"], bad_quantile)),
                       labels=(rows["dataset"] + " " + rows["level_name"].astype(str)).to_numpy(),
                       error_name=error_metric if sign > 0 else f"-{error_metric}",
                       score_name="reliability score / the model's calibrated threshold")
    lines = [f"# {task}: reliability self-assessment", "",
             f"Per-image {error_metric} against two scores over the test images of each dataset: the workflow's "
             f"(99th percentile of the K-sample std map divided by the prediction's std, dimensionless; flagged above "
             f"the model's own threshold: its highest score on held-out images between the training and test "
             f"ranges, so about 1 / (n + 1) of images like those are flagged by chance and shifted or harder ones "
             f"more often) and the paper's (the 99th percentile alone in [0, 1] units, flagged above "
             f"{PAPER_THRESHOLD:g}; the paper does not say which intensity scale, the official code's [-1, 1] scale "
             f"doubles the score). Spearman: rank correlation of score and {error_metric} (higher = the score ranks "
             f"the errors); p: one-sided permutation test of it (how often a random pairing of the same scores and "
             f"errors ranks at least as well; with 6 images Spearman 0.6 happens about one time in eight); ranks "
             f"errors: yes where p < {RANK_TEST_LEVEL:g}, else not shown, and then the flags are not evidence "
             f"that a prediction is bad; bad = {error_metric} in the worst {1 - bad_quantile:.0%} of its dataset; "
             f"recall = bad images flagged / bad images; precision = bad among the flagged.", "",
             "| dataset | method | score | n | Spearman | p | ranks errors? | score range | flagged | recall | precision |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        limit = f"{r['threshold']:.3g}" if np.isfinite(r["threshold"]) else "each model's"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['score']} (> {limit}) | {r['n']} | "
                     f"{r['spearman']:.2f} | {_p_value(r['spearman_p'])} | {r['ranks_errors']} | {r['score_min']:.3f}-{r['score_max']:.3f} | {r['flagged_share']:.0%} | "
                     f"{_percent(r['recall'])} | {_percent(r['precision'])} |")
    write_text(md_path, "\n".join(lines) + "\n")


def _percent(value: float) -> str:
    return f"{value:.0%}" if np.isfinite(value) else "—"


def _p_value(value: float) -> str:
    return "—" if not np.isfinite(value) else "< 0.001" if value < 0.001 else f"{value:.3f}"
