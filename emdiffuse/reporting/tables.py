"""Per-image metric rows and the paper-style tables aggregated from them.

The table code does not know which metrics exist: it reads them from the metric registry and
the per-image CSVs, so a new metric is one module plus one registry line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import markdown
from ..evaluation import METRICS, compute
from ..evaluation.calibration import DEFAULT_THRESHOLD, PAPER_THRESHOLD, flag_unreliable, paper_score, reliability_score

ID_COLUMNS = ["task", "dataset", "method", "image", "level", "level_name"]


def evaluate_images(
    predictions: np.ndarray, targets: np.ndarray, level: np.ndarray, level_name: np.ndarray,
    metrics: list[str], *, task: str, dataset: str, method: str,
    uncertainty: np.ndarray | None = None, threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """One row per test image with every requested metric; with an uncertainty map, also the
    image's reliability score (relative to its contrast), whether it is flagged unreliable (score
    above ``threshold``), and the paper's score and flag (:mod:`emdiffuse.evaluation.calibration`)."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ in shape")
    rows = []
    for i, (pred, gt) in enumerate(zip(predictions, targets)):
        row = {"task": task, "dataset": dataset, "method": method, "image": i,
               "level": int(level[i]), "level_name": str(level_name[level[i]])}
        row.update(compute(metrics, pred, gt))
        if uncertainty is not None:
            score, paper = reliability_score(uncertainty[i], pred), paper_score(uncertainty[i])
            row.update(reliability=score, unreliable=bool(flag_unreliable(score, threshold)),
                       reliability_paper=paper, unreliable_paper=bool(flag_unreliable(paper, PAPER_THRESHOLD)))
        rows.append(row)
    return pd.DataFrame(rows)


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean (fixed seed: tables are reproducible)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


PAIR_KEY = ["level_name", "image"]  # one image of one task level (or one plane of one view)


def paired_gain(rows: pd.DataFrame, metric: str, method: str, reference: str) -> dict[str, float]:
    """``method``'s gain over ``reference`` on ``metric`` (``Metric.gain``: positive = better), paired
    image by image over the images both scored in ``rows``: its mean, bootstrap 95% CI, the images
    won and their count. Why paired: methods scored on the same images share each image's
    difficulty, so a real difference can hide inside their unpaired CIs, and a tie shows as one."""
    def scores(name):
        return rows[rows["method"] == name].set_index(PAIR_KEY)[metric].astype(np.float64)

    both = pd.concat([scores(method), scores(reference)], axis=1, join="inner").dropna()
    gain = METRICS[metric].gain(both.iloc[:, 0], both.iloc[:, 1])
    low, high = bootstrap_ci(gain)
    return {"mean": float(gain.mean()) if len(gain) else float("nan"), "ci_low": low, "ci_high": high,
            "wins": int((gain > 0).sum()), "n": int(len(gain))}


def verdict(low: float, high: float) -> str:
    """better / worse when the gain's CI lies on one side of zero, else tie (— without a CI)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "—"
    return "better" if low > 0 else "worse" if high < 0 else "tie"


def gain_cell(stats: dict[str, float]) -> str:
    """+mean [CI] wins/n verdict, e.g. ``+0.0015 [+0.0005, +0.0026] 11/16 better``."""
    if not np.isfinite(stats["n"]) or not stats["n"]:
        return "—"
    cell = f"{stats['mean']:+.4f}"
    if np.isfinite(stats["ci_low"]):
        cell += f" [{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}]"
    return f"{cell} {int(stats['wins'])}/{int(stats['n'])} {verdict(stats['ci_low'], stats['ci_high'])}"


GAIN_FIELDS = {"mean": "gain", "ci_low": "gain_ci_low", "ci_high": "gain_ci_high", "wins": "gain_wins", "n": "gain_n"}


def gain_columns(metric: str, gain: dict[str, float]) -> dict[str, float]:
    """``paired_gain``'s numbers as CSV columns ``<metric>_gain``, ``_gain_ci_low``, ... ``_gain_n``."""
    return {f"{metric}_{column}": gain[key] for key, column in GAIN_FIELDS.items()}


def gain_from_columns(r: pd.Series, metric: str) -> dict[str, float]:
    return {key: r[f"{metric}_{column}"] for key, column in GAIN_FIELDS.items()}


def leads(rows: pd.DataFrame, metrics: list[str], contenders: list[str]) -> pd.DataFrame:
    """Does each contender lead? Per dataset (levels pooled) and metric, its paired gain
    (``paired_gain``) over the best other method by mean (the degraded input left out), named in
    ``<metric>_vs``: the comparison behind a claim such as "EMDiffuse leads LPIPS"."""
    records = []
    for dataset, frame in rows[rows["method"] != "input"].groupby("dataset", sort=False):
        for method in (c for c in contenders if c in set(frame["method"])):
            rec = {"dataset": dataset, "level": "all", "method": method}
            for m in metrics:
                means = frame[frame["method"] != method].groupby("method")[m].mean().dropna()
                if len(means):
                    rival = means.index[np.isclose(means.to_numpy(), METRICS[m].best(means.to_numpy()))][0]
                    rec.update({f"{m}_vs": rival, **gain_columns(m, paired_gain(frame, m, method, rival))})
            records.append(rec)
    return pd.DataFrame(records)


def leads_markdown(table: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The section of ``leads``: per contender and dataset, vs whom and by how much on each metric."""
    if table.empty:
        return []
    rows = [[r["dataset"], r["method"]] + [f"vs {r[f'{m}_vs']}: {gain_cell(gain_from_columns(r, m))}"
                                           if isinstance(r.get(f"{m}_vs"), str) else "—" for m in metrics]
            for _, r in table.iterrows()]
    return ["", "## Does it lead? Paired with the best other method", "",
            "Per metric, the gain of each sampled method over the best other method by mean (levels pooled, the "
            "input left out), image by image (positive = better, in the metric's units; resolution_ratio: closer "
            "to 1): mean [bootstrap 95% CI] images won / images; better or worse where the CI excludes 0, else tie.",
            "", *markdown.table(["dataset", "method"] + metrics, rows)]


def _stats(metric: str, values: np.ndarray) -> dict[str, float]:
    """Mean, std and bootstrap CI over the finite values (a metric may be undefined on an image,
    e.g. the resolution of a structureless crop); ``<metric>_undefined`` counts the others."""
    finite = values[np.isfinite(values)]
    low, high = bootstrap_ci(finite)
    return {f"{metric}_mean": finite.mean() if len(finite) else float("nan"),
            f"{metric}_std": finite.std(ddof=1) if len(finite) > 1 else 0.0,
            f"{metric}_ci_low": low, f"{metric}_ci_high": high,
            f"{metric}_undefined": int(len(values) - len(finite))}


def summarize(rows: pd.DataFrame, metrics: list[str], methods: list[str]) -> pd.DataFrame:
    """Mean, std, bootstrap 95% CI and count per (dataset, level, method); level 'all' pools levels."""
    pooled = rows.assign(level_name="all")
    records = []
    for frame in (pooled, rows):
        for (dataset, level_name, method), group in frame.groupby(["dataset", "level_name", "method"], sort=False):
            rec = {"dataset": dataset, "level": level_name, "method": method, "n": len(group)}
            for m in metrics:
                rec.update(_stats(m, group[m].to_numpy(dtype=np.float64)))
            if "reliability" in group and group["reliability"].notna().any():
                rec.update(reliability_mean=group["reliability"].mean(),
                           unreliable_n=int(group["unreliable"].astype(bool).sum()))
                if "threshold" in group:  # calibrated per model (``tasks.image.scoring.evaluate``)
                    rec["threshold"] = float(group["threshold"].max())
                if "reliability_paper" in group:
                    rec.update(reliability_paper_mean=group["reliability_paper"].mean(),
                               unreliable_paper_n=int(group["unreliable_paper"].astype(bool).sum()))
            records.append(rec)
    table = pd.DataFrame(records)
    order = {m: i for i, m in enumerate(methods)}
    levels = ["all"] + [lv for lv in dict.fromkeys(rows["level_name"]) if lv != "all"]
    table["_l"] = table["level"].map({lv: i for i, lv in enumerate(levels)})
    table["_m"] = table["method"].map(order)
    return table.sort_values(["dataset", "_l", "_m"]).drop(columns=["_l", "_m"]).reset_index(drop=True)


def metric_cell(r: pd.Series, m: str, best: float) -> str:
    """mean ± std [95% CI] of one metric, in bold where it is the block's best."""
    cell = f"{r[f'{m}_mean']:.4f} ± {r[f'{m}_std']:.4f}"
    if np.isfinite(r[f"{m}_ci_low"]):
        cell += f" [{r[f'{m}_ci_low']:.4f}, {r[f'{m}_ci_high']:.4f}]"
    if r["method"] != "input" and np.isclose(r[f"{m}_mean"], best):
        cell = f"**{cell}**"
    if r.get(f"{m}_undefined", 0):
        cell += f" ({int(r[f'{m}_undefined'])} undefined)"
    return cell


def to_markdown(table: pd.DataFrame, metrics: list[str], *, title: str, budgets: dict[str, str],
                threshold: float = DEFAULT_THRESHOLD, budget_note: str | None = None,
                sections: list[str] = ()) -> str:
    """A readable table: mean ± std [95% CI] per metric, best value per block in bold; ``sections``
    (Markdown lines, e.g. ``leads_markdown``) follow its notes."""
    reliability = "reliability_mean" in table
    header = ["dataset", "level", "method", "n"] + [f"{m} {METRICS[m].arrow}" for m in metrics]
    paper = "reliability_paper_mean" in table
    flags = reliability_columns(table)
    header += [h for h, _, _ in flags]
    rows = []
    for _, block in table.groupby(["dataset", "level"], sort=False):
        learned = block[block["method"] != "input"]
        best = {m: METRICS[m].best(learned[f"{m}_mean"]) if len(learned) else np.nan for m in metrics}
        for _, r in block.iterrows():
            cells = [r["dataset"], r["level"], r["method"], str(int(r["n"]))]
            rows.append(cells + [metric_cell(r, m, best[m]) for m in metrics] + reliability_cells(r, flags))
    lines = [f"# {title}", "", *markdown.table(header, rows)]
    lines += ["", "Mean ± std [bootstrap 95% CI of the mean] over test images; level 'all' pools the noise levels;",
              "bold: best learned method. (k undefined): images where the metric is undefined (left out)."]
    if reliability:
        lines += [f"Reliability: 99th percentile of the K-sample std map divided by the prediction's std (its "
                  f"contrast), dimensionless, mean over images; (flagged): {_flag_rule(table, threshold)}."]
    if paper:
        lines += [f"Paper score: the 99th percentile alone, in [0, 1] intensity units (the official code's [-1, 1] "
                  f"scale doubles it); (flagged): above the paper's {PAPER_THRESHOLD:g}, whose scale is unpublished."]
    lines += list(sections)
    lines += ["", "Budgets:", ""] + ([budget_note, ""] if budget_note else [])
    lines += [f"- **{method}**: {text}" for method, text in budgets.items()]
    return "\n".join(lines) + "\n"


def _flag_rule(table: pd.DataFrame, threshold: float) -> str:
    """What (flagged) means: above each model's calibrated threshold (listed), else the fixed one."""
    if "threshold" not in table or table["threshold"].isna().all():
        return f"images above the threshold {threshold:g}"
    calibrated = table.dropna(subset=["threshold"]).drop_duplicates(["dataset", "method"])
    listed = "; ".join(f"{r['dataset']} {r['method']} {r['threshold']:.3f}" for _, r in calibrated.iterrows())
    return (f"images scoring above their model's threshold, the highest score of its predictions on held-out "
            f"images between the training and test ranges ({listed})")


def _flag_cell(r: pd.Series, score: str, flagged: str) -> str:
    """Mean score and (flagged / n), or a dash for a method without samples."""
    if not np.isfinite(r.get(score, np.nan)):
        return "—"
    return f"{r[score]:.3f} ({int(r[flagged])}/{int(r['n'])})"


#: the self-assessment columns a table may hold: (header, mean score column, flagged count column)
RELIABILITY_COLUMNS = (("reliability (flagged)", "reliability_mean", "unreliable_n"),
                       ("paper score (flagged)", "reliability_paper_mean", "unreliable_paper_n"))


def reliability_columns(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The self-assessment columns of a summary (none where no method draws samples)."""
    return [c for c in RELIABILITY_COLUMNS if c[1] in table]


def reliability_cells(r: pd.Series, columns: list[tuple[str, str, str]]) -> list[str]:
    return [_flag_cell(r, score, flagged) for _, score, flagged in columns]


def describe_budget(method: str, params: dict, trained: dict[str, dict] | None = None) -> str:
    """One line stating what a method was given (iterations or seconds, batch, patch, sampling)
    and, from ``trained`` (dataset -> :meth:`Method.budget` of the trained model), what it got."""
    train = params.get("train")
    if not train:
        return "not learned (reference)"
    if train.get("seconds") is None:
        asked = f"{train['iterations']} iterations"
    else:
        asked = f"{train['seconds']:g} s of training" + (f" (cap {train['iterations']} iterations)"
                                                         if train["iterations"] else "")
    given = {"batch": train.get("batch_size"), "patch": train.get("patch"), "lr": train.get("lr")}
    text = ", ".join([asked] + [f"{k} {v:g}" for k, v in given.items() if v is not None])  # unset: method default
    sample = params.get("predict") or {}
    if "sampler" in sample:
        text += f"; sampler {sample['sampler']}, {sample['steps']} steps, K={sample['samples']} samples"
        if sample.get("init", "noise") != "noise":
            start = {"condition": "the condition", "cubic": "the cubic interpolation"}[sample["init"]]
            text += f", chains started from {start} (not official)"
    model = params.get("model", {})
    if "preset" in model:
        text += f"; network preset {model['preset']}"
    if model.get("cubic_condition"):
        text += ", also conditioned on the cubic interpolation of four sections (not official)"
    return text + describe_trained(trained or {})


def describe_trained(trained: dict[str, dict]) -> str:
    """What training actually got per dataset (dataset -> :meth:`Method.budget`), appended to a
    budget line; empty for a method that is not learned."""
    return "".join(f"; trained on {dataset}: {got['iterations']} iterations in {got['seconds']:.1f} s, "
                   f"batch {got['batch_size']}, patch {got['patch']}, {got.get('precision', 'fp32')}"
                   for dataset, got in trained.items() if got)


BUDGET_COLUMNS = ["iterations", "train_seconds", "batch_size", "patch", "precision"]


def budget_columns(table: pd.DataFrame, trained: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """The table with the budget each (dataset, method) actually got as columns (empty for the
    non-learned reference)."""
    def value(row, key):
        got = trained.get((row["dataset"], row["method"])) or {}
        return got.get("seconds" if key == "train_seconds" else key, np.nan)

    return table.assign(**{key: [value(r, key) for _, r in table.iterrows()] for key in BUDGET_COLUMNS})
