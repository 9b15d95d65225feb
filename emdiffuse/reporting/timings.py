"""Stage timings of a workflow run, from Snakemake's ``benchmark:`` files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import markdown
from ..io import write_text


def collect(root: str | Path) -> pd.DataFrame:
    """One row per benchmark TSV under ``root``: stage (rule), job (wildcards path), seconds, peak RSS."""
    root = Path(root)
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        rel = tsv.relative_to(root).with_suffix("")
        rows.append({
            "stage": rel.parts[0],
            "job": "/".join(rel.parts[1:]),
            "seconds": float(frame["s"].mean()),
            "max_rss_mb": float(pd.to_numeric(frame["max_rss"], errors="coerce").mean()),
        })
    return pd.DataFrame(rows, columns=["stage", "job", "seconds", "max_rss_mb"])


def to_markdown(jobs: pd.DataFrame) -> str:
    """Per-stage totals first (where the time goes), then every job."""
    total = jobs["seconds"].sum()
    stages = jobs.groupby("stage", sort=False).agg(jobs=("job", "size"), seconds=("seconds", "sum"),
                                                   max_rss_mb=("max_rss_mb", "max"))
    stages = stages.sort_values("seconds", ascending=False)
    lines = ["# Stage timings", "", f"Sum of job wall times: {total:.0f} s ({total / 60:.1f} min).", ""]
    lines += markdown.table(["stage", "jobs", "seconds", "share", "peak RSS (MB)"],
                            [[stage, str(int(r["jobs"])), f"{r['seconds']:.1f}", f"{r['seconds'] / total:.0%}",
                              f"{r['max_rss_mb']:.0f}"] for stage, r in stages.iterrows()])
    lines += ["", *markdown.table(["stage", "job", "seconds", "peak RSS (MB)"],
                                  [[r["stage"], r["job"], f"{r['seconds']:.1f}", f"{r['max_rss_mb']:.0f}"]
                                   for _, r in jobs.iterrows()])]
    return "\n".join(lines) + "\n"


def write_timings(benchmark_dir: str | Path, out_path: str | Path) -> None:
    """``timings.md`` of a run: :func:`to_markdown` of the benchmark files under ``benchmark_dir``."""
    write_text(out_path, to_markdown(collect(benchmark_dir)))
