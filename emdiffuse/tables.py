"""Per-image metric rows and the paper-style tables aggregated from them.

The table code does not know which metrics exist: it reads them from the metric registry and
the per-image CSVs, so a new metric is one module plus one registry line.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metrics import METRICS, compute

ID_COLUMNS = ["task", "dataset", "method", "image", "level", "level_name"]


def evaluate_images(
    predictions: np.ndarray, targets: np.ndarray, level: np.ndarray, level_name: np.ndarray,
    metrics: list[str], *, task: str, dataset: str, method: str,
) -> pd.DataFrame:
    """One row per test image with every requested metric."""
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {predictions.shape} and targets {targets.shape} differ in shape")
    rows = []
    for i, (pred, gt) in enumerate(zip(predictions, targets)):
        row = {"task": task, "dataset": dataset, "method": method, "image": i,
               "level": int(level[i]), "level_name": str(level_name[level[i]])}
        row.update(compute(metrics, pred, gt))
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


def summarize(rows: pd.DataFrame, metrics: list[str], methods: list[str]) -> pd.DataFrame:
    """Mean, std, bootstrap 95% CI and count per (dataset, level, method); level 'all' pools levels."""
    pooled = rows.assign(level_name="all")
    records = []
    for frame in (pooled, rows):
        for (dataset, level_name, method), group in frame.groupby(["dataset", "level_name", "method"], sort=False):
            rec = {"dataset": dataset, "level": level_name, "method": method, "n": len(group)}
            for m in metrics:
                vals = group[m].to_numpy(dtype=np.float64)
                low, high = bootstrap_ci(vals)
                rec.update({f"{m}_mean": vals.mean(), f"{m}_std": vals.std(ddof=1) if len(vals) > 1 else 0.0,
                            f"{m}_ci_low": low, f"{m}_ci_high": high})
            records.append(rec)
    table = pd.DataFrame(records)
    order = {m: i for i, m in enumerate(methods)}
    levels = ["all"] + [lv for lv in dict.fromkeys(rows["level_name"]) if lv != "all"]
    table["_l"] = table["level"].map({lv: i for i, lv in enumerate(levels)})
    table["_m"] = table["method"].map(order)
    return table.sort_values(["dataset", "_l", "_m"]).drop(columns=["_l", "_m"]).reset_index(drop=True)


def to_markdown(table: pd.DataFrame, metrics: list[str], *, title: str, budgets: dict[str, str]) -> str:
    """A readable table: mean ± std [95% CI] per metric, best value per block in bold."""
    arrows = {m: ("↑" if METRICS[m].higher_is_better else "↓") for m in metrics}
    header = ["dataset", "level", "method", "n"] + [f"{m} {arrows[m]}" for m in metrics]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, block in table.groupby(["dataset", "level"], sort=False):
        best = {m: (block[f"{m}_mean"].max() if METRICS[m].higher_is_better else block[f"{m}_mean"].min())
                for m in metrics}
        for _, r in block.iterrows():
            cells = [r["dataset"], r["level"], r["method"], str(int(r["n"]))]
            for m in metrics:
                cell = f"{r[f'{m}_mean']:.4f} ± {r[f'{m}_std']:.4f}"
                if np.isfinite(r[f"{m}_ci_low"]):
                    cell += f" [{r[f'{m}_ci_low']:.4f}, {r[f'{m}_ci_high']:.4f}]"
                if r["method"] != "input" and np.isclose(r[f"{m}_mean"], best[m]):
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± std [bootstrap 95% CI of the mean] over test images; level 'all' pools the noise levels.",
              "", "Budgets:", ""]
    lines += [f"- **{method}**: {text}" for method, text in budgets.items()]
    return "\n".join(lines) + "\n"


def describe_budget(method: str, params: dict) -> str:
    """One line stating what a method was given: iterations, batch, patch, sampling."""
    train = params.get("train")
    if not train:
        return "not learned (reference)"
    text = f"{train['iterations']} iterations, batch {train['batch_size']}, patch {train['patch']}, lr {train['lr']:g}"
    sample = params.get("sample")
    if sample:
        text += f"; sampler {sample['sampler']}, {sample['steps']} steps, K={sample['samples']} samples"
    model = params.get("model", {})
    if "preset" in model:
        text += f"; network preset {model['preset']}"
    return text
