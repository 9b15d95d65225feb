"""The workflow itself: lint, a dry run of `all`, and a real end-to-end run on the tiny config."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

RULES = ["prepare_dataset", "make_pairs", "phantom_figure", "train", "predict", "evaluate", "figure", "table", "calibration",
         "timings", "all"]
STUDY_RULES = ["study_subset", "sampling_run", "sampling_table", "loss_ablation_train", "loss_ablation_predict",
               "loss_ablation_table"]


def snakemake(repo, *args, cwd=None, check=True):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), *args]
    proc = subprocess.run(cmd, cwd=cwd or repo, capture_output=True, text=True)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def assert_metrics_finite(table, metrics):
    """Every method x metric present and finite, except that the decorrelation resolution may be
    undefined on structureless output (a barely trained tiny model): then the table must say so
    for every image rather than report a number."""
    for metric in metrics:
        values = table[f"{metric}_mean"].to_numpy()
        defined = table[f"{metric}_undefined"].to_numpy() < table["n"].to_numpy()
        assert np.isfinite(values[defined]).all(), f"{metric} has non-finite means: {values}"
        if metric != "resolution_ratio":
            assert defined.all(), f"{metric} undefined for some method: {values}"


def test_lint_is_clean(repo):
    proc = snakemake(repo, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_dry_run_of_all_lists_every_rule(repo, tmp_path):
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", "all")
    out = proc.stdout + proc.stderr
    stats = out[out.index("Job stats"):]
    for rule in RULES + STUDY_RULES:
        assert f"\n{rule} " in stats, f"rule {rule} missing from the dry run of all"


@pytest.mark.parametrize("target,rules", [("table_sampling", ["sampling_run", "sampling_table", "study_subset"]),
                                          ("table_loss_ablation", ["loss_ablation_train", "loss_ablation_table"])])
def test_study_targets_build_only_their_study(repo, tmp_path, target, rules):
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", target)
    out = proc.stdout + proc.stderr
    assert all(f"rule {rule}:" in out for rule in rules)
    assert "rule table:" not in out and "rule timings:" not in out


def test_study_target_without_its_config_block_says_so(repo, tmp_path, test_config):
    del test_config["sampling_study"]
    cfg = tmp_path / "nostudy.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    proc = snakemake(repo, "-n", "--cores", "1", "--directory", str(tmp_path), f"--configfile={cfg}", "table_sampling",
                     check=False)
    assert proc.returncode != 0 and "needs a `sampling_study` block" in proc.stdout + proc.stderr


def test_dry_run_of_the_paper_config(repo, tmp_path):
    """The paper-scale config on the real datasets validates and plans fetch -> prepare -> ... -> tables."""
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'paper.yaml'}", "all")
    out = proc.stdout + proc.stderr
    for rule in ["fetch_dataset", "prepare_dataset", "train", "predict", "table"]:
        assert f"\n{rule} " in out[out.index("Job stats"):]


def test_table_target_builds_only_that_table(repo, tmp_path):
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", "table_denoise")
    out = proc.stdout + proc.stderr
    assert "rule table:" in out and "rule timings:" not in out and "rule phantom_figure:" not in out


def test_bad_config_stops_with_the_key_named(repo, tmp_path, test_config):
    test_config["methods"]["care"]["train"]["batch_size"] = 0
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    proc = snakemake(repo, "-n", "--cores", "1", "--directory", str(tmp_path), f"--configfile={cfg}",
                     check=False)
    assert proc.returncode != 0
    assert "batch_size" in proc.stderr + proc.stdout


@pytest.mark.workflow
def test_tiny_workflow_end_to_end(repo, tmp_path, test_config):
    snakemake(repo, "--cores", "2", "--directory", str(tmp_path), f"--configfile={repo / 'config' / 'test.yaml'}",
              "all")
    task = test_config["tasks"]["denoise"]
    table = pd.read_csv(tmp_path / "results" / "tables" / "denoise.csv")
    pooled = table[table["level"] == "all"]
    assert list(pooled["method"]) == task["methods"]
    assert_metrics_finite(pooled, task["metrics"])
    expected_n = task["test_images"] * len(task["pairs"]["dwell_us"])
    assert (pooled["n"] == expected_n).all()
    md = (tmp_path / "results" / "tables" / "denoise.md").read_text()
    assert "Budgets:" in md and "emdiffuse" in md
    assert "reliability (flagged)" in md
    calibration = (tmp_path / "results" / "tables" / "denoise_calibration.md").read_text()
    assert "recall" in calibration and "spearman" in calibration
    superres = pd.read_csv(tmp_path / "results" / "tables" / "superres.csv")
    assert list(superres[superres["level"] == "all"]["method"]) == test_config["tasks"]["superres"]["methods"]
    for figure in ["denoise.png", "superres.png", "phantom.png", "denoise_calibration.png"]:
        assert (tmp_path / "results" / "figures" / figure).stat().st_size > 10_000
    assert "Stage timings" in (tmp_path / "results" / "tables" / "timings.md").read_text()
    study = test_config["sampling_study"]
    sampling = pd.read_csv(tmp_path / "results" / "tables" / "sampling.csv")
    run = sampling[sampling["note"].isna()] if "note" in sampling else sampling
    assert {(s, n) for s in study["samplers"] for n in study["steps"]} <= set(zip(run["sampler"], run["steps"]))
    assert np.isfinite(run[[f"{m}_mean" for m in study["metrics"]] + ["s_per_mpix"]].to_numpy(float)).all()
    assert set(run["precision"]) == {"bf16", "fp32"} and run["is_reference"].sum() == 1
    assert "Reference: **ancestral, 4 steps" in (tmp_path / "results" / "tables" / "sampling.md").read_text()
    assert (tmp_path / "results" / "figures" / "sampling.png").stat().st_size > 10_000
    ablation = pd.read_csv(tmp_path / "results" / "tables" / "loss_ablation.csv")
    assert list(ablation["method"]) == ["loss on", "loss off"]
    assert (ablation["n"] == test_config["loss_ablation"]["images"]).all()
    assert_metrics_finite(ablation, test_config["loss_ablation"]["metrics"])
    assert np.isfinite(ablation["reliability_mean"]).all()
    pred = np.load(tmp_path / "results" / "predictions" / "denoise" / "phantom_neuropil" / "emdiffuse" / "test.npz")
    assert pred["uncertainty"].shape == pred["prediction"].shape

    again = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                      f"--configfile={repo / 'config' / 'test.yaml'}", "all")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.workflow
def test_new_dataset_through_config_alone(repo, tmp_path, test_config):
    """A user's own TIFF stack becomes a dataset by one config entry; the whole table is built on it."""
    from emdiffuse.data.phantom import generate_volume
    from emdiffuse.io import write_tiff

    volume, _ = generate_volume((24, 64, 64), voxel_nm=8.0, style="liver", seed=5)
    write_tiff(tmp_path / "my_stack.tif", (volume * 255).astype(np.uint8), voxel_nm=(8.0, 8.0, 8.0))
    test_config["datasets"] = {"my_stack": {"kind": "tiff", "path": str(tmp_path / "my_stack.tif"),
                                            "voxel_nm": [8, 8, 8]}}
    test_config["tasks"] = {"denoise": dict(test_config["tasks"]["denoise"], datasets=["my_stack"])}
    for study in ("sampling_study", "loss_ablation"):
        test_config[study]["dataset"] = "my_stack"
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    snakemake(repo, "--cores", "2", "--directory", str(tmp_path), f"--configfile={cfg}", "table_denoise")
    table = pd.read_csv(tmp_path / "results" / "tables" / "denoise.csv")
    assert set(table["dataset"]) == {"my_stack"}
    assert_metrics_finite(table[table["level"] == "all"], test_config["tasks"]["denoise"]["metrics"])
