"""Quality-versus-steps figure: each metric and the sampling time against the number of steps."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ...io import atomic_path  # noqa: E402
from ...evaluation import METRICS  # noqa: E402


def sampling_figure(path: str, table: pd.DataFrame, reference: dict, metrics: list[str], *,
                    tolerance: dict[str, float], title: str = "") -> None:
    """One panel per metric (log-x steps, one line per sampler and chain initialisation at the
    reference precision, dotted for the non-reference init, the other precision as open markers, the
    reference value dashed with its tolerance band) and one panel of seconds per megapixel (log-log)."""
    run = table[table["note"].isna()] if "note" in table else table
    base = run[run["precision"] == reference["precision"]]
    other = run[run["precision"] != reference["precision"]]
    ref = run[run["is_reference"]].iloc[0]
    n = len(metrics) + 1
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4))
    colors = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(run["sampler"]))}
    for ax, column in zip(axes, [*metrics, "s_per_mpix"]):
        key = column if column == "s_per_mpix" else f"{column}_mean"
        for (sampler, init), group in base.groupby(["sampler", "init"], sort=False):
            group = group.sort_values("steps")
            style = "o-" if init == reference["init"] else "^:"
            ax.plot(group["steps"], group[key], style, color=colors[sampler], ms=4, label=f"{sampler}, init {init}")
        for _, r in other.iterrows():
            ax.plot(r["steps"], r[key], "s", mfc="none", color=colors[r["sampler"]], ms=7,
                    label=f"{r['sampler']} {r['precision']}")
        if column != "s_per_mpix":
            ax.axhline(ref[key], color="k", ls="--", lw=0.8)
            if column in tolerance:
                sign = -1 if METRICS[column].higher_is_better else 1
                ax.axhspan(ref[key], ref[key] + sign * tolerance[column], color="0.85", zorder=0)
            ax.set_ylabel(f"{column} {METRICS[column].arrow}")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("seconds per megapixel")
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0].legend(fontsize=7, frameon=False)
    axes[0].set_title(f"dashed: {reference['sampler']} {reference['steps']} steps; grey: tolerance", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
