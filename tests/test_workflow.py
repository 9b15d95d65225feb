"""The workflow itself: lint, a dry run of `all`, and a real end-to-end run on the tiny config."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import assert_figure_has_content

RULES = ["prepare_dataset", "make_pairs", "phantom_figure", "train", "predict", "evaluate", "figure", "table", "calibration",
         "timings", "all"]
RULES += ["transfer_one_pair", "transfer_test_pairs", "transfer_finetune", "transfer_scratch", "transfer_predict",
          "transfer_predict_reference",
          "transfer_evaluate", "transfer_table", "transfer_figure"]
ISOTROPIC_RULES = ["make_volume_pairs", "train_volume", "predict_volume", "predict_volume_sampled", "evaluate_volume",
                   "isotropic_table", "isotropic_figure", "train_segmenter", "segment_volumes", "segmentation_table",
                   "mito3d_figure"]
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


def assert_baselines_upsample_inside(root, config, table):
    """RCAN and PSSR ran on the low-resolution inputs and upsample inside the trained network (the
    upsampled-input methods CARE and EMDiffuse are checked by the table's shape checks); the table
    states the budgets the models actually got."""
    import torch

    from emdiffuse.models.registry import load_method

    pairs = np.load(root / "data" / "pairs" / "superres" / "phantom_neuropil" / "test.npz")
    factor = config["tasks"]["superres"]["pairs"]["factor"]
    assert pairs["targets"].shape[-1] == factor * pairs["inputs"].shape[-1]
    pooled = table[table["level"] == "all"].set_index("method")
    for name in ["rcan", "pssr"]:
        model = load_method(root / "results" / "models" / "superres" / "phantom_neuropil" / name / "model.pt",
                            device=torch.device("cpu"))
        with torch.no_grad():
            assert model.net(torch.rand(1, 1, 32, 32)).shape == (1, 1, 32 * factor, 32 * factor)
        pred = np.load(root / "results" / "predictions" / "superres" / "phantom_neuropil" / name / "test.npz")
        assert pred["prediction"].shape == pairs["targets"].shape
        train = config["methods"][name]["train"]
        assert pooled.loc[name, "iterations"] == train["iterations"] and pooled.loc[name, "train_seconds"] > 0
        assert (pooled.loc[name, "batch_size"], pooled.loc[name, "patch"]) == (train["batch_size"], train["patch"])
    assert np.isnan(pooled.loc["input", "iterations"])


def test_lint_is_clean(repo):
    proc = snakemake(repo, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_rules_are_snakefmt_clean(repo):
    proc = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "workflow"], cwd=repo, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"run `snakefmt workflow` (line length from pyproject.toml):\n{proc.stderr[-3000:]}"


def test_dry_run_of_all_lists_every_rule(repo, tmp_path):
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", "all")
    out = proc.stdout + proc.stderr
    stats = out[out.index("Job stats"):]
    for rule in RULES + ISOTROPIC_RULES + STUDY_RULES:
        assert f"\n{rule} " in stats, f"rule {rule} missing from the dry run of all"


@pytest.mark.parametrize("config", ["config.yaml", "paper.yaml"])
def test_planning_imports_no_torch(repo, tmp_path, config):
    """Parsing and planning read the method catalog, not the implementations: no torch (seconds per dry run)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), "-n",
           "--cores", "1", "--directory", str(tmp_path), f"--configfile={repo / 'config' / config}", "all"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "emdiffuse.models.catalog" in imported and "emdiffuse.tasks.isotropic" in imported  # the planning ran
    assert not {"torch", "emdiffuse.models.methods", "emdiffuse.models.volume_methods"} & imported


BLUR_ENTRY = """from emdiffuse.models.catalog import Entry

BLUR = Entry("blur_method:GaussianBlurMethod", {
    "type": "object", "additionalProperties": False,
    "properties": {"predict": {"type": "object", "additionalProperties": False,
                               "properties": {"sigma": {"type": "number", "exclusiveMinimum": 0, "default": 1.0}}}},
}, learned=False)
"""
BLUR_METHOD = """from scipy import ndimage

from emdiffuse.models.methods import Method


class GaussianBlurMethod(Method):
    name = "blur"

    def _predict(self, inputs, seed, progress, start, settings):
        sigma = settings["sigma"]
        return {"prediction": ndimage.gaussian_filter(inputs, (0, sigma, sigma))}
"""


def test_a_method_of_another_package_runs_through_config_alone(repo, tmp_path, test_config):
    """A new method is one module plus one registration: here a package outside this repository, its
    method class and an entry point naming its catalog entry (its settings schema, from which its
    defaults and the config schema's block come); the workflow validates its settings, then trains,
    predicts and scores it like the built-in ones."""
    site = tmp_path / "site"
    (site / "blur_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "blur_entry.py").write_text(BLUR_ENTRY)
    (site / "blur_method.py").write_text(BLUR_METHOD)
    (site / "blur_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: blur-plugin\nVersion: 0.1\n")
    (site / "blur_plugin-0.1.dist-info" / "entry_points.txt").write_text("[emdiffuse.image_methods]\nblur = blur_entry:BLUR\n")
    config = {key: test_config[key] for key in ("seed", "datasets", "split", "methods", "budget", "figure")}
    config["tasks"] = {"denoise": {**test_config["tasks"]["denoise"], "methods": ["input", "blur"]}}
    config["methods"] = {"input": {}, "blur": {"predict": {"sigma": 1.5}}}
    cfg = tmp_path / "blur.yaml"
    cfg.write_text(yaml.safe_dump(config))
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), "--cores", "2",
           "--directory", str(work), f"--configfile={cfg}", "table_denoise"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(repo), os.environ.get("PYTHONPATH", "")])}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**config, "methods": {"input": {}, "blur": {"predict": {"sigma": -1}}}}))
    proc = subprocess.run([*cmd[:-2], f"--configfile={bad}", "-n", "table_denoise"], cwd=repo, capture_output=True,
                          text=True, env=env)
    out = proc.stdout + proc.stderr  # a dry run reports to stdout
    assert proc.returncode != 0 and "methods.blur.predict.sigma: -1 is less than or equal to the minimum of 0" in out
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-6000:]
    table = pd.read_csv(work / "results" / "tables" / "denoise.csv")
    pooled = table[table["level"] == "all"].set_index("method")
    assert set(pooled.index) == {"input", "blur"}
    assert pooled.loc["blur", "PSNR_mean"] > pooled.loc["input", "PSNR_mean"]  # smoothing shot noise helps


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


def readme_line(repo, marker):
    """The README's command line that contains ``marker``, as arguments after the snakemake executable."""
    lines = [line for line in (repo / "README.md").read_text().splitlines() if marker in line]
    assert lines, f"README.md has no command with {marker!r}"
    args = lines[0].split("#")[0].split()
    assert args[0].endswith("snakemake"), lines[0]
    return args[1:]


def planned_rules(out):
    """The rules of a dry run, from its job-stats table (what each job reads: tests/test_plan.py)."""
    stats = out[out.index("Job stats"):out.index("total")]
    return {line.split()[0] for line in stats.splitlines()[3:] if line.strip()}


def test_a_given_config_stands_alone_from_the_repository_root(repo, tmp_path, test_config):
    """The README's line, run from the repository root as a user does: the user's config is not merged
    into config/config.yaml (a config without the optional study blocks plans no study), and the paper
    config validates there too (the default's pair keys used to fail it)."""
    for block in ["transfer", "sampling_study", "loss_ablation"]:
        del test_config[block]
    mine = tmp_path / "my.yaml"
    mine.write_text(yaml.safe_dump(test_config))
    args = [a.replace("config/my.yaml", str(mine)) for a in readme_line(repo, "config/my.yaml")]
    out = snakemake(repo, "-n", "-F", *args, cwd=repo).stdout
    rules = planned_rules(out)
    assert "train" in rules and not {r for r in rules if r.startswith(("transfer", "sampling", "loss_ablation"))}
    assert "fibsem_medulla" not in out or "fibsem_medulla" in test_config["datasets"]
    default_rules = planned_rules(snakemake(repo, "-n", "-F", "--cores", "1", "all", cwd=repo).stdout)
    assert {"transfer_table", "sampling_table", "loss_ablation_table"} <= default_rules
    snakemake(repo, "-n", "--cores", "1", "fetch", "--configfile", "config/paper.yaml", cwd=repo)


def test_fetch_says_what_it_did_not_that_the_benchmark_finished(repo, tmp_path):
    proc = snakemake(repo, "--cores", "1", "--directory", str(tmp_path), f"--configfile={repo / 'config' / 'test.yaml'}",
                     "fetch")
    out = proc.stdout + proc.stderr
    assert "every remote dataset of the config is in data/raw/" in out and "benchmark finished" not in out


def test_table_target_builds_only_that_table(repo, tmp_path):
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", "table_denoise")
    out = proc.stdout + proc.stderr
    assert "rule table:" in out and "rule timings:" not in out and "rule phantom_figure:" not in out


def test_table_isotropic_builds_its_table_segmentation_and_figures(repo, tmp_path):
    proc = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", "table_isotropic")
    rules = planned_rules(proc.stdout)
    assert {"isotropic_table", "isotropic_figure", "segmentation_table", "mito3d_figure"} <= rules
    assert not rules & {"table", "train", "timings", "phantom_figure"}


def test_bad_config_stops_with_the_key_named(repo, tmp_path, test_config):
    test_config["methods"]["care"]["train"]["batch_size"] = 0
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    proc = snakemake(repo, "-n", "--cores", "1", "--directory", str(tmp_path), f"--configfile={cfg}",
                     check=False)
    assert proc.returncode != 0
    assert "batch_size" in proc.stderr + proc.stdout


def assert_transfer_outputs(root, config):
    """transfer.csv: finite metrics for every task x method x variant (input: one reference row);
    each fine-tuning pair file holds exactly one pair, from the target's training slices."""
    t = config["transfer"]
    table = pd.read_csv(root / "results" / "tables" / "transfer.csv")
    pooled = table[table["level"] == "all"]
    for task in t["tasks"]:
        rows = pooled[pooled["task"] == task]
        methods = t.get("methods") or config["tasks"][task]["methods"]
        expected = [(m, v) for m in methods for v in (["reference"] if m == "input" else ["direct", "finetune", "scratch"])]
        assert list(zip(rows["method"], rows["variant"])) == expected
        assert_metrics_finite(rows, t["metrics"])
        assert (rows[rows["method"] != "input"]["iterations"] > 0).all()
        one = np.load(root / "data" / "pairs" / "transfer" / task / t["target"] / "one_pair.npz")
        assert one["inputs"].shape[0] == one["targets"].shape[0] == len(one["z"]) == len(one["level"]) == 1
        train_z = np.load(root / "data" / "pairs" / task / t["target"] / "train.npz")["z"]
        assert one["z"][0] in train_z
    assert "Budgets" in (root / "results" / "tables" / "transfer.md").read_text()
    assert_figure_has_content(root / "results" / "figures" / "transfer.png")


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
    assert "Budgets:" in md and "emdiffuse" in md and "Budget mode `own`" in md
    emdiffuse_its = test_config["methods"]["emdiffuse"]["train"]["iterations"]
    assert f"trained on phantom_neuropil: {emdiffuse_its} iterations in" in md
    assert "reliability (flagged)" in md and "`denoise_calibration.md`" in md
    calibration = (tmp_path / "results" / "tables" / "denoise_calibration.md").read_text()
    assert "recall" in calibration and "Spearman" in calibration and "paper score" in calibration
    assert "ranks errors?" in calibration
    verdicts = pd.read_csv(tmp_path / "results" / "tables" / "denoise_calibration.csv")
    assert set(verdicts["ranks_errors"]) <= {"yes", "not shown"} and verdicts["spearman_p"].between(0, 1).any()
    superres = pd.read_csv(tmp_path / "results" / "tables" / "superres.csv")
    assert list(superres[superres["level"] == "all"]["method"]) == test_config["tasks"]["superres"]["methods"]
    assert_baselines_upsample_inside(tmp_path, test_config, superres)
    realism = pd.read_csv(tmp_path / "results" / "tables" / "realism.csv").set_index("data")
    assert set(test_config["datasets"]) < set(realism.index) and (realism["kind"] == "real EM image (2D)").sum() == 4
    assert realism.loc["fibsem_medulla", "hist_w1"] == 0 and realism.loc["phantom_vem", "cubic_psnr_x4"] < 35
    for figure in ["denoise.png", "superres.png", "phantom.png", "denoise_calibration.png", "realism.png"]:
        assert_figure_has_content(tmp_path / "results" / "figures" / figure)
    assert "Stage timings" in (tmp_path / "results" / "tables" / "timings.md").read_text()
    study = test_config["sampling_study"]
    sampling = pd.read_csv(tmp_path / "results" / "tables" / "sampling.csv")
    run = sampling[sampling["note"].isna()] if "note" in sampling else sampling
    assert {(s, n) for s in study["samplers"] for n in study["steps"]} <= set(zip(run["sampler"], run["steps"]))
    assert np.isfinite(run[[f"{m}_mean" for m in study["metrics"]] + ["s_per_mpix"]].to_numpy(float)).all()
    assert set(run["precision"]) == {"bf16", "fp32"} and run["is_reference"].sum() == 1
    assert "Reference: **ancestral, 4 steps" in (tmp_path / "results" / "tables" / "sampling.md").read_text()
    assert_figure_has_content(tmp_path / "results" / "figures" / "sampling.png")
    ablation = pd.read_csv(tmp_path / "results" / "tables" / "loss_ablation.csv")
    assert list(ablation["method"]) == ["loss on", "loss off"]
    assert (ablation["n"] == test_config["loss_ablation"]["images"]).all()
    assert_metrics_finite(ablation, test_config["loss_ablation"]["metrics"])
    assert np.isfinite(ablation["reliability_mean"]).all()
    pred = np.load(tmp_path / "results" / "predictions" / "denoise" / "phantom_neuropil" / "emdiffuse" / "test.npz")
    assert pred["uncertainty"].shape == pred["prediction"].shape
    assert_transfer_outputs(tmp_path, test_config)
    check_isotropic_outputs(tmp_path, test_config)

    again = snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                      f"--configfile={repo / 'config' / 'test.yaml'}", "all")
    assert "Nothing to be done" in again.stdout + again.stderr
    # how to sample is not how to train: other prediction settings re-predict and never retrain
    resampled = copy.deepcopy(test_config)
    resampled["methods"]["emdiffuse"]["predict"]["steps"] += 1
    (tmp_path / "resampled.yaml").write_text(yaml.safe_dump(resampled, sort_keys=False))  # key order is in params
    jobs = planned_rules(snakemake(repo, "-n", "--cores", "2", "--directory", str(tmp_path),
                                   f"--configfile={tmp_path / 'resampled.yaml'}", "all").stdout)
    assert {"predict", "transfer_predict", "loss_ablation_predict"} <= jobs
    logged = (tmp_path / "logs" / "predict_volume_sampled" / "phantom_vem" / "vemdiffuse_i.log").read_text()
    configured = test_config["methods"]["vemdiffuse_i"]["predict"]
    assert all(f"'{key}': {value!r}" in logged for key, value in configured.items())  # the config's, not defaults
    assert not jobs & {"train", "transfer_scratch", "transfer_finetune", "loss_ablation_train"}
    # the HTML report (README): the workflow description and the captions of tables and figures
    report = tmp_path / "report.html"
    snakemake(repo, "--cores", "1", "--directory", str(tmp_path), f"--configfile={repo / 'config' / 'test.yaml'}",
              "--report", str(report))
    html = report.read_text(encoding="utf-8", errors="ignore")
    workflow_description = (repo / "workflow" / "report" / "workflow.rst").read_text().split("\n")[0].strip()
    assert workflow_description and workflow_description in html
    assert "denoise.csv" in html and "isotropic" in html and "loss_ablation" in html
    # block-wise restore (target restore, 2 jobs) equals emdiffuse predict on the whole input
    snakemake(repo, "--cores", "2", "--directory", str(tmp_path), f"--configfile={repo / 'config' / 'test.yaml'}",
              "restore")
    from emdiffuse.cli import main as cli
    from emdiffuse.io import read_image

    entry = test_config["restore"]["vem_sections"]
    assert cli(["predict", "--model", str(tmp_path / entry["model"]), "--input", str(tmp_path / entry["input"]),
                "--output", str(tmp_path / "whole.zarr"), "--seed", str(test_config["seed"])]) == 0
    blocks = read_image(tmp_path / "results" / "restored" / "vem_sections.zarr")[0]
    assert len(blocks) > len(read_image(tmp_path / entry["input"])[0])  # sections -> isotropic slices
    assert np.array_equal(blocks, read_image(tmp_path / "whole.zarr")[0])


@pytest.mark.workflow
def test_same_steps_budget_reaches_every_train_job(repo, tmp_path, test_config):
    """`budget: {mode: steps}` overrides each method's own iterations in the workflow's train jobs."""
    test_config["budget"] = {"mode": "steps", "steps": 3}
    cfg = tmp_path / "steps.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    models = "results/models/denoise/phantom_neuropil"
    snakemake(repo, "--cores", "2", "--directory", str(tmp_path), f"--configfile={cfg}",
              *(f"{models}/{m}/history.csv" for m in ["care", "rcan"]))
    for method in ["care", "rcan"]:
        assert list(pd.read_csv(tmp_path / models / method / "history.csv")["iteration"]) == [1, 2, 3]


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
    test_config.pop("transfer", None)  # it names the phantom datasets
    for study in ("sampling_study", "loss_ablation"):
        test_config[study]["dataset"] = "my_stack"
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    snakemake(repo, "--cores", "2", "--directory", str(tmp_path), f"--configfile={cfg}", "table_denoise")
    table = pd.read_csv(tmp_path / "results" / "tables" / "denoise.csv")
    assert set(table["dataset"]) == {"my_stack"}
    assert_metrics_finite(table[table["level"] == "all"], test_config["tasks"]["denoise"]["metrics"])


def check_isotropic_outputs(root, config):
    """Every method x plane in the table with finite metrics (resolution ratio on XZ/YZ only), the
    reconstruction with its voxel size and uncertainty, and the mIoU table and renders."""
    from emdiffuse.models.volumes import read_volume

    task = config["tasks"]["isotropic"]
    table = pd.read_csv(root / "results" / "tables" / "isotropic.csv")
    assert [(p, m) for p, m in zip(table["plane"], table["method"])] == [
        (p, m) for p in ("xy", "xz", "yz") for m in task["methods"]]
    assert (table["n"] == task["planes_per_view"]).all()
    assert_metrics_finite(table, [m for m in task["metrics"] if m != "resolution_ratio"])
    assert_metrics_finite(table[table["plane"] != "xy"], ["resolution_ratio"])
    assert "n/a" in (root / "results" / "tables" / "isotropic.md").read_text()
    folder = root / "results" / "predictions" / "isotropic" / task["datasets"][0] / "vemdiffuse_a"
    pred, voxel = read_volume(folder / "test.tif")
    unc, _ = read_volume(folder / "test_uncertainty.tif")
    assert unc.shape == pred.shape and voxel == pytest.approx((8.0, 8.0, 8.0))
    seg = pd.read_csv(root / "results" / "tables" / "segmentation.csv")
    assert list(seg["volume"]) == ["ground truth", "anisotropic input", *task["methods"]]
    assert {"mIoU", "IoU_mito", "IoU_er", "IoU_background"} <= set(seg.columns)
    assert "background is NOT counted" in (root / "results" / "tables" / "segmentation.md").read_text()
    for figure in [f"isotropic_{task['datasets'][0]}.png", "isotropic_mito3d.png"]:
        assert_figure_has_content(root / "results" / "figures" / figure)


@pytest.mark.workflow
def test_own_paired_tiffs_train_and_score_through_config_alone(repo, tmp_path, test_config):
    """A microscopist's own clean and degraded TIFFs (one shifted noisy scan, one 2x coarser scan of
    the same fields) become the denoise and superres tasks' real pairs through a config entry."""
    import tifffile
    from scipy import ndimage

    from emdiffuse.data.phantom import generate_volume

    em, _ = generate_volume((14, 64, 64), 8.0, seed=3)
    rng = np.random.default_rng(0)
    clean = (em * 255).astype(np.uint8)
    noisy = np.stack([ndimage.shift(f.astype(np.float32), (1.0, -1.5), order=1, mode="nearest") for f in clean])
    noisy = np.clip(noisy + rng.normal(0, 20, noisy.shape), 0, 255).astype(np.uint8)
    coarse = clean.astype(np.float32).reshape(14, 32, 2, 32, 2).mean(axis=(2, 4)).astype(np.uint8)
    for name, stack in (("clean", clean), ("noisy", noisy), ("coarse", coarse)):
        tifffile.imwrite(tmp_path / f"{name}.tif", stack, photometric="minisblack")
    cfg = {k: v for k, v in test_config.items() if k not in ("transfer", "sampling_study", "loss_ablation")}
    cfg["datasets"] = {"mine": {"kind": "paired_tiff", "gt": str(tmp_path / "clean.tif"), "voxel_nm": [8, 8, 8],
                                "border": 4, "inputs": {"1us": str(tmp_path / "noisy.tif"),
                                                        "sr": str(tmp_path / "coarse.tif")}}}
    methods = ["input", "care", "emdiffuse"]
    common = {"datasets": ["mine"], "methods": methods, "metrics": ["PSNR", "LPIPS"], "test_images": 2}
    cfg["tasks"] = {"denoise": {**common, "pairs": {"source": "real", "levels": ["1us"]}},
                    "superres": {**common, "pairs": {"source": "real", "levels": ["sr"], "factor": 2}}}
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(repo, "--cores", "2", "--directory", str(tmp_path), f"--configfile={tmp_path / 'mine.yaml'}",
              "table_denoise", "table_superres")
    for task in ("denoise", "superres"):
        table = pd.read_csv(tmp_path / "results" / "tables" / f"{task}.csv")
        pooled = table[table["level"] == "all"]
        assert list(pooled["dataset"]) == ["mine"] * 3 and list(pooled["method"]) == methods
        assert (pooled["n"] == 2).all() and np.isfinite(pooled["LPIPS_mean"]).all()
    pairs = np.load(tmp_path / "data" / "pairs" / "superres" / "mine" / "test.npz")
    assert pairs["inputs"].shape[-1] * 2 == pairs["targets"].shape[-1] == 56  # 64 - 2 x 4 border, x2 coarser input
