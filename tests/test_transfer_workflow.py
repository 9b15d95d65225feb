"""The transfer target in the workflow DAG (what each transfer job reads: tests/test_plan.py)."""

from __future__ import annotations

from test_workflow import planned_rules, snakemake


def test_table_transfer_builds_the_transfer_study_and_the_models_it_reuses(repo, tmp_path):
    """`table_transfer` on the default config: the transfer's own rules and the domain-A models they
    start from, no other table."""
    proc = snakemake(repo, "-n", "--cores", "1", "--directory", str(tmp_path),
                     f"--configfile={repo / 'config' / 'config.yaml'}", "table_transfer")
    rules = planned_rules(proc.stdout)
    assert {"transfer_one_pair", "transfer_finetune", "transfer_scratch", "transfer_predict", "transfer_evaluate",
            "transfer_table", "transfer_figure", "train"} <= rules
    assert not rules & {"table", "figure", "calibration", "timings", "phantom_figure", "train_volume"}
