"""The transfer rules in the workflow DAG: what the fine-tuning job reads, and the table_transfer target."""

from __future__ import annotations

import re

import yaml

from test_workflow import snakemake


def dry_run_jobs(repo, tmp_path, configfile, target):
    """Every job of a dry run as (rule, {"input": [...], "output": [...]}), parsed from its printout."""
    proc = snakemake(repo, "-n", "--cores", "1", "--directory", str(tmp_path), f"--configfile={configfile}", target)
    jobs = []
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", proc.stdout + proc.stderr):
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if rule:
            files = {key: [f.strip() for f in value.split(",")]
                     for key, value in re.findall(r"^\s+(input|output): (.*)$", block, re.M)}
            jobs.append((rule.group(1), files))
    return jobs


def test_finetuning_reads_only_the_domain_a_model_and_one_domain_b_pair(repo, tmp_path, default_config):
    """Dry run of `table_transfer` on the default config: each fine-tuning job's inputs are exactly
    the base task's model of the source dataset and the one-pair file of the target, and that file
    is cut from the target's training pairs alone."""
    jobs = dry_run_jobs(repo, tmp_path, repo / "config" / "config.yaml", "table_transfer")
    t = default_config["transfer"]
    finetunes = [files for rule, files in jobs if rule == "transfer_finetune"]
    expected = {(task, m) for task in t["tasks"] for m in t.get("methods") or default_config["tasks"][task]["methods"]
                if m != "input"}
    assert len(finetunes) == len(expected) > 0
    for files in finetunes:
        task, method = re.match(r"results/models/transfer/(\w+)/\w+/(\w+)_finetune/", files["output"][0]).groups()
        assert (task, method) in expected
        assert sorted(files["input"]) == sorted([
            f"data/pairs/transfer/{task}/{t['target']}/one_pair.npz",
            f"results/models/{task}/{t['source']}/{method}/model.pt",
        ])
    one_pair_jobs = {files["output"][0]: files["input"] for rule, files in jobs if rule == "transfer_one_pair"}
    assert one_pair_jobs == {f"data/pairs/transfer/{task}/{t['target']}/one_pair.npz":
                             [f"data/pairs/{task}/{t['target']}/train.npz"] for task in t["tasks"]}
    scratch = [files["input"] for rule, files in jobs if rule == "transfer_scratch"]
    assert scratch and all(len(i) == 1 and i[0].endswith("one_pair.npz") for i in scratch)
    # the target: only the transfer's own rules, the A models and the data they need
    rules = {rule for rule, _ in jobs}
    assert {"transfer_table", "transfer_figure", "transfer_evaluate", "train"} <= rules
    assert not rules & {"table", "figure", "calibration", "timings", "phantom_figure"}


def test_a_config_without_transfer_plans_no_transfer_job(repo, tmp_path, test_config):
    test_config.pop("transfer")
    cfg = tmp_path / "no_transfer.yaml"
    cfg.write_text(yaml.safe_dump(test_config))
    rules = {rule for rule, _ in dry_run_jobs(repo, tmp_path, cfg, "all")}
    assert "table" in rules and not any(rule.startswith("transfer") for rule in rules)
