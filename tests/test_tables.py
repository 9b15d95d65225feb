"""Per-image metric rows, their aggregation and the stage-timing summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emdiffuse.reporting.timings import collect, to_markdown as timings_markdown
from emdiffuse.evaluation import METRICS
from emdiffuse.reporting.tables import (bootstrap_ci, describe_budget, evaluate_images, gain_cell, leads,
                                        leads_markdown, paired_gain, summarize, to_markdown, verdict)


def _rows(rng):
    frames = []
    for method, noise in [("input", 0.2), ("care", 0.05)]:
        gt = rng.random((4, 48, 48)).astype(np.float32)
        pred = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 1).astype(np.float32)
        frames.append(evaluate_images(pred, gt, np.array([0, 1, 0, 1]), np.array(["1 us", "4 us"]),
                                      ["PSNR", "SSIM"], task="denoise", dataset="ph", method=method))
    return pd.concat(frames, ignore_index=True)


def test_evaluate_images_one_row_per_image():
    rows = _rows(np.random.default_rng(0))
    assert len(rows) == 8
    assert set(rows.columns) >= {"task", "dataset", "method", "image", "level", "level_name", "PSNR", "SSIM"}
    assert rows.loc[rows.method == "care", "PSNR"].mean() > rows.loc[rows.method == "input", "PSNR"].mean()


def test_evaluate_images_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        evaluate_images(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), np.zeros(2, int), np.array(["a"]), ["PSNR"],
                        task="t", dataset="d", method="m")


def test_summarize_pools_levels_and_keeps_method_order():
    rows = _rows(np.random.default_rng(1))
    table = summarize(rows, ["PSNR", "SSIM"], ["input", "care"])
    assert list(table["level"].unique()) == ["all", "1 us", "4 us"]
    pooled = table[table.level == "all"]
    assert list(pooled["method"]) == ["input", "care"]
    assert list(pooled["n"]) == [4, 4]
    care = rows[rows.method == "care"]["PSNR"]
    assert pooled.iloc[1]["PSNR_mean"] == pytest.approx(care.mean())
    assert pooled.iloc[1]["PSNR_std"] == pytest.approx(care.std(ddof=1))
    assert pooled.iloc[1]["PSNR_ci_low"] <= care.mean() <= pooled.iloc[1]["PSNR_ci_high"]


def test_bootstrap_ci_covers_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(5, 1, 10)
    large = rng.normal(5, 1, 1000)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    assert bootstrap_ci(small) == bootstrap_ci(small)  # reproducible
    assert all(np.isnan(bootstrap_ci(np.array([1.0]))))


def test_gain_is_positive_when_better_under_each_metric_rule():
    np.testing.assert_allclose(METRICS["PSNR"].gain([21.0, 19.0], [20.0, 20.0]), [1.0, -1.0])
    np.testing.assert_allclose(METRICS["LPIPS"].gain([0.1, 0.3], [0.2, 0.2]), [0.1, -0.1])
    np.testing.assert_allclose(METRICS["resolution_ratio"].gain([0.9, 1.3, 1.05], [1.2, 1.2, 0.95]), [0.1, -0.1, 0.0],
                               atol=1e-12)


def _scored(values: dict[str, list[float]], metric: str = "LPIPS") -> pd.DataFrame:
    """Metric rows of methods scored on the same images (image i at level i % 2)."""
    return pd.DataFrame([{"dataset": "d", "method": m, "image": i, "level_name": f"{i % 2} us", metric: v}
                         for m, vs in values.items() for i, v in enumerate(vs)])


def test_paired_gain_sees_a_consistent_small_win_that_unpaired_intervals_hide():
    difficulty = np.random.default_rng(0).uniform(0.1, 0.5, 12)  # shared by both methods, image by image
    rows = _scored({"a": list(difficulty - 0.01), "b": list(difficulty), "input": list(difficulty + 0.3)})
    gain = paired_gain(rows, "LPIPS", "a", "b")
    assert gain["n"] == 12 and gain["wins"] == 12
    assert gain["mean"] == pytest.approx(0.01) and gain["ci_low"] == pytest.approx(0.01)
    assert verdict(gain["ci_low"], gain["ci_high"]) == "better"
    lo_a, hi_a = bootstrap_ci(difficulty - 0.01)
    assert lo_a < difficulty.mean() < hi_a  # unpaired, a's interval holds b's mean: a tie on the table
    assert verdict(-0.01, 0.02) == "tie" and verdict(-0.02, -0.01) == "worse" and verdict(np.nan, np.nan) == "—"
    assert gain_cell(gain) == "+0.0100 [+0.0100, +0.0100] 12/12 better"
    only_some = rows[~((rows.method == "b") & (rows.image < 4))]  # pairs need both: 8 left
    assert paired_gain(only_some, "LPIPS", "a", "b")["n"] == 8


def test_leads_pairs_each_sampled_method_with_the_best_other_method_per_metric():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.1, 0.5, 10)
    rcan = base - 0.04 + rng.normal(0, 0.05, 10)
    rows = pd.concat([_scored({"diff": list(base - 0.05), "care": list(base), "rcan": list(rcan),
                               "input": list(base + 0.5)}),
                      _scored({"diff": list(base + 0.2), "care": list(base + 0.1), "rcan": list(base + 0.3),
                               "input": list(base)}, "FSIM")], ignore_index=True)
    rows = rows.groupby(["dataset", "method", "image", "level_name"], as_index=False).first()
    table = leads(rows, ["LPIPS", "FSIM"], ["diff"])
    (r,) = table.itertuples()
    assert (r.dataset, r.level, r.method) == ("d", "all", "diff")
    assert r.LPIPS_vs == "rcan" and r.FSIM_vs == "rcan"  # best other by mean; the input never counts
    assert r.FSIM_gain == pytest.approx(-0.1) and r.FSIM_gain_wins == 0
    md = "\n".join(leads_markdown(table, ["LPIPS", "FSIM"]))
    assert "| d | diff | vs rcan: " in md and "0/10 worse" in md
    assert leads(rows, ["LPIPS"], []).empty and leads_markdown(leads(rows, ["LPIPS"], []), ["LPIPS"]) == []


def test_markdown_marks_best_and_states_budgets():
    rows = _rows(np.random.default_rng(2))
    table = summarize(rows, ["PSNR", "SSIM"], ["input", "care"])
    md = to_markdown(table, ["PSNR", "SSIM"], title="denoise", budgets={"care": "10 iterations"})
    assert "PSNR ↑" in md and "**" in md and "- **care**: 10 iterations" in md


def test_describe_budget():
    params = {"train": {"iterations": 5, "batch_size": 2, "patch": 32, "lr": 1e-4},
              "predict": {"sampler": "ddim", "steps": 20, "samples": 2}, "model": {"preset": "tiny"}}
    text = describe_budget("emdiffuse", params)
    assert "5 iterations" in text and "ddim, 20 steps, K=2" in text and "tiny" in text
    assert "started" not in text and describe_budget("input", {}) == "not learned (reference)"
    params["predict"]["init"] = "cubic"
    assert "ddim, 20 steps, K=2 samples, chains started from the cubic interpolation (not official)" in \
        describe_budget("vemdiffuse_i", params)


def test_timings_summary(tmp_path):
    for stage, job, seconds in [("train", "denoise/ph/care", 12.0), ("train", "denoise/ph/emdiffuse", 30.0),
                                ("predict", "denoise/ph/care", 2.0)]:
        path = tmp_path / stage / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s\th:m:s\tmax_rss\n" f"{seconds}\t0:00:{int(seconds)}\t100.5\n")
    jobs = collect(tmp_path)
    assert sorted(jobs["stage"]) == ["predict", "train", "train"]
    md = timings_markdown(jobs)
    assert "Sum of job wall times: 44 s" in md
    assert md.index("| train | 2 | 42.0 | 95% |") < md.index("| predict | 1 | 2.0 |")


def test_the_markdown_table_writer():
    from emdiffuse.reporting import markdown

    assert markdown.table(["a", "b"], [["1", "x"], [2, "y"]]) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2 | y |"]
    with pytest.raises(ValueError, match="a table row has 1 cells for 2 columns"):
        markdown.table(["a", "b"], [["1"]])
