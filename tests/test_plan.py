"""The workflow's plan (emdiffuse/plan/) without Snakemake: targets, what each job reads and gets."""

from __future__ import annotations

import re

import pytest
from jsonschema import validate

from emdiffuse.config import ConfigError, drop_null_blocks
from emdiffuse.plan.schema import workflow_schema
from emdiffuse.plan import Plan


class Wildcards(dict):
    """What Snakemake passes to input and params functions: attributes by name, values in order."""

    __getattr__ = dict.__getitem__

    def __iter__(self):
        return iter(self.values())


def make_plan(config: dict, repo) -> Plan:
    """A plan as the workflow builds it: null blocks dropped, validated, then planned."""
    drop_null_blocks(config)
    validate(config, workflow_schema())
    return Plan(config, reference_em=str(repo / "resources" / "reference-em"))


def test_the_default_targets_are_every_table_and_figure(repo, default_config):
    outputs = make_plan(default_config, repo).final_outputs()
    tables = {re.match(r"results/tables/(\w+)\.md$", o).group(1) for o in outputs if o.endswith(".md")}
    assert tables == {"denoise", "superres", "denoise_calibration", "superres_calibration", "isotropic",
                      "segmentation", "transfer", "realism", "sampling", "loss_ablation"}
    figures = {o for o in outputs if o.startswith("results/figures/")}
    assert {"results/figures/phantom.png", "results/figures/isotropic_fibsem_medulla.png",
            "results/figures/isotropic_phantom_vem_liver.png", "results/figures/isotropic_mito3d.png"} <= figures
    assert len(outputs) == len(set(outputs))


def test_vemdiffuse_a_learns_from_the_anisotropic_sections_only(repo, default_config):
    """vEMDiffuse-a's training file is the test sections it reconstructs (never the isotropic volume
    or the ground truth); interpolation is not learned, so it has no training job."""
    plan = make_plan(default_config, repo)
    assert plan.iso.learned == ["srunet3d", "vemdiffuse_i", "vemdiffuse_a"]
    for d in default_config["tasks"]["isotropic"]["datasets"]:
        def training(method):
            return plan.iso.training_file(Wildcards(dataset=d, method=method))

        assert training("vemdiffuse_a") == f"data/pairs/isotropic/{d}/test_sections.tif"
        assert training("vemdiffuse_i") == training("srunet3d") == f"data/pairs/isotropic/{d}/train_volume.tif"
        assert "model" not in plan.iso.predict_inputs(Wildcards(dataset=d, method="cubic"))


def test_transfer_reuses_the_source_models_and_scores_input_once(repo, default_config):
    plan = make_plan(default_config, repo)
    t = default_config["transfer"]
    w = Wildcards(task="denoise", target=t["target"], method="emdiffuse")
    source = f"results/models/denoise/{t['source']}/emdiffuse/model.pt"
    assert plan.transfer.source_model(w) == source
    assert plan.transfer.variant_models(w) == {
        "direct": source,
        "finetune": f"results/models/transfer/denoise/{t['target']}/emdiffuse_finetune/model.pt",
        "scratch": f"results/models/transfer/denoise/{t['target']}/emdiffuse_scratch/model.pt",
    }
    assert plan.transfer.variant_models(Wildcards(task="denoise", target=t["target"], method="input")) == {
        "reference": f"results/models/denoise/{t['source']}/input/model.pt"}
    rows = plan.transfer.task_predictions(w)
    assert [(m, v) for m, v, _ in rows] == [("input", "reference"), *((m, v) for m in ("care", "emdiffuse")
                                                                      for v in ("direct", "finetune", "scratch"))]
    assert plan.transfer.one_pairs(w) == [f"data/pairs/transfer/{task}/{t['target']}/one_pair.npz"
                                          for task in t["tasks"]]


def test_optional_blocks_left_out_plan_nothing_of_theirs(repo, test_config):
    for block in ("transfer", "sampling_study", "loss_ablation"):
        test_config[block] = None
    plan = make_plan(test_config, repo)
    outputs = plan.final_outputs()
    assert not [o for o in outputs if re.search(r"transfer|sampling|loss_ablation", o)]
    with pytest.raises(ConfigError, match="needs a `sampling_study` block"):
        plan.studies.required("sampling_study")(Wildcards())


def test_training_params_leave_out_the_prediction_settings(repo, default_config):
    """Other prediction settings re-predict without retraining: the training jobs never get them."""
    plan = make_plan(default_config, repo)
    w = Wildcards(task="denoise", dataset="phantom_neuropil", method="emdiffuse")
    assert "predict" not in plan.method_params(w) and plan.predict_settings(w)["samples"] == 2
    assert "predict" not in plan.iso.train_params(Wildcards(dataset="fibsem_medulla", method="vemdiffuse_i"))
    assert "predict" in plan.iso.predict_params(Wildcards(dataset="fibsem_medulla", method="vemdiffuse_i"))


def test_job_seeds_follow_the_wildcards(repo, default_config):
    plan = make_plan(default_config, repo)
    care = Wildcards(task="denoise", dataset="phantom_neuropil", method="care")
    assert plan.job_seed(care) == plan.job_seed(Wildcards(care))
    assert plan.job_seed(care) != plan.job_seed(Wildcards(care, method="rcan"))


def test_wildcard_constraints_match_exactly_the_configured_names(repo, default_config):
    constraints = make_plan(default_config, repo).wildcard_constraints()
    assert re.fullmatch(constraints["task"], "denoise") and not re.fullmatch(constraints["task"], "isotropic")
    assert re.fullmatch(constraints["dataset"], "fibsem_medulla")
    assert not re.fullmatch(constraints["dataset"], "fibsem_medulla_2")
    assert re.fullmatch(constraints["variant"], "reference")


def test_serial_section_data_is_reconstructed_not_scored(repo, test_config):
    """A dataset with anisotropic voxels has no ground truth: its reconstructions are targets of
    their own, and it gets no table rows, training or segmentation."""
    test_config["datasets"]["serial"] = {"kind": "phantom", "style": "liver", "shape": [24, 64, 64],
                                         "voxel_nm": [16, 8, 8]}
    test_config["tasks"]["isotropic"]["datasets"].append("serial")
    plan = make_plan(test_config, repo)
    assert "serial" in plan.iso.sections_only and "serial" not in plan.iso.scored + plan.iso.segmented
    methods = plan.iso.dataset_methods("serial")
    assert "vemdiffuse_i" not in methods and "vemdiffuse_a" in methods
    assert {plan.iso.prediction("serial", m) for m in methods} <= set(plan.final_outputs())
    assert "results/metrics/isotropic/serial.csv" not in plan.iso.metric_files(Wildcards())
