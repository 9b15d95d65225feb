from pathlib import Path

from snakemake.utils import validate

from emdiffuse.budget import apply_budget
from emdiffuse.config import check_references, derived_seed, drop_null_blocks, export_repository, write_workflow_schema
from emdiffuse.datasets import fill_voxel_sizes
from emdiffuse.isotropic import is_anisotropic_voxel
from emdiffuse.models.catalog import IMAGE, VOLUME, train_params
from emdiffuse.provenance import code_digest
from emdiffuse.tables import describe_budget

export_repository()  # where the per-rule conda envs install the package from (envs/*.post-deploy.sh)
drop_null_blocks(config)
validate(config, schema=str(write_workflow_schema(Path.cwd())))  # the schema file, methods from the catalog
fill_voxel_sizes(config)
check_references(config)

# real EM images shipped with the workflow, to judge how EM-like the phantom looks
REFERENCE_EM = str(Path(workflow.basedir).parent / "resources" / "reference-em")
TASKS = list(config["tasks"])
DATASETS = list(config["datasets"])
METHODS = list(config["methods"])


wildcard_constraints:
    task="|".join(t for t in TASKS if t != "isotropic") or "(?!)",  # isotropic: own rules (isotropic.smk)
    dataset="|".join(DATASETS),
    method="|".join(METHODS),
    split="train|test",


def task_factor(wildcards):
    """Pixel-size ratio input / ground truth of a task's pairs (1 unless super-resolution)."""
    return config["tasks"][wildcards.task]["pairs"].get("factor", 1)


def task_outputs(task):
    """The table (CSV and Markdown) and the figure of one task, and its reliability
    calibration when a stochastic method (EMDiffuse) is compared."""
    if task == "isotropic":
        return isotropic_outputs()  # isotropic_common.smk
    outputs = [
        f"results/tables/{task}.csv",
        f"results/tables/{task}.md",
        f"results/figures/{task}.png",
    ]
    if any(is_sampled(m) for m in config["tasks"][task]["methods"]):
        outputs += [
            f"results/tables/{task}_calibration.md",
            f"results/figures/{task}_calibration.png",
        ]
    return outputs


def final_outputs():
    """Every table and figure; the stage-timing summary is made after them."""
    outputs = [out for task in TASKS for out in task_outputs(task)]
    outputs += transfer_outputs()
    if any(d["kind"] == "phantom" for d in config["datasets"].values()):
        outputs.append("results/figures/phantom.png")
    outputs += realism_outputs()
    return outputs + study_outputs()  # sampling study, loss ablation (studies_common.smk)


def metric_files(wildcards):
    """Per-image metric CSVs of the task: one per dataset, every method in it (EMDiffuse's rows
    with reliability scores)."""
    return expand(
        "results/metrics/{task}/{dataset}.csv",
        task=wildcards.task,
        dataset=config["tasks"][wildcards.task]["datasets"],
    )


def dataset_predictions(wildcards, split="test"):
    """Every method's predictions on one dataset (of its test or its held-out calibration pairs),
    in the task's method order."""
    return expand(
        "results/predictions/{task}/{dataset}/{method}/{split}.npz",
        task=wildcards.task,
        dataset=wildcards.dataset,
        method=config["tasks"][wildcards.task]["methods"],
        split=split,
    )


def dataset_calibrations(wildcards):
    return dataset_predictions(wildcards, "calibration")


def figure_predictions(wildcards):
    """Predictions shown in a task's figure: every method on every dataset, dataset by dataset."""
    task = config["tasks"][wildcards.task]
    return expand(
        "results/predictions/{task}/{dataset}/{method}/test.npz",
        task=wildcards.task,
        dataset=task["datasets"],
        method=task["methods"],
    )


def figure_pairs(wildcards):
    return expand(
        "data/pairs/{task}/{dataset}/test.npz",
        task=wildcards.task,
        dataset=config["tasks"][wildcards.task]["datasets"],
    )


def is_remote(name):
    from emdiffuse.sources import FETCHERS

    return config["datasets"][name]["kind"] in FETCHERS


def remote_manifest(wildcards):
    """A remote dataset is prepared from its fetched cache; local kinds need no input."""
    if is_remote(wildcards.dataset):
        return f"data/raw/{wildcards.dataset}/manifest.json"
    return []


def dataset_entry(wildcards):
    return config["datasets"][wildcards.dataset]


def task_entry(wildcards):
    return config["tasks"][wildcards.task]


def task_metrics(wildcards):
    return config["tasks"][wildcards.task]["metrics"]


def task_methods(wildcards):
    return config["tasks"][wildcards.task]["methods"]


# the realism table compares every isotropic volume (the phantoms and the real volumes beside them)
REALISM_DATASETS = [
    name
    for name, entry in config["datasets"].items()
    if "voxel_nm" not in entry or not is_anisotropic_voxel(entry["voxel_nm"])
]


def realism_outputs():
    """The realism table and figure, when there is a phantom and a real volume to compare."""
    kinds = {config["datasets"][name]["kind"] for name in REALISM_DATASETS}
    if "phantom" not in kinds or kinds == {"phantom"}:
        return []
    return ["results/tables/realism.csv", "results/tables/realism.md", "results/figures/realism.png"]


def realism_volumes(wildcards):
    return [f"data/prepared/{name}/volume.tif" for name in REALISM_DATASETS]


def phantom_volumes(wildcards):
    return [
        f"data/prepared/{name}/volume.tif" for name, entry in config["datasets"].items() if entry["kind"] == "phantom"
    ]


def method_params(wildcards):
    """What a method trains with: its settings but `predict` (the prediction jobs take those), with the
    config-wide `budget` applied (same steps or seconds for all)."""
    return train_params(apply_budget(config["methods"][wildcards.method], config.get("budget")))


def predict_settings(wildcards):
    """How a method predicts: its config's `predict` block, over the settings its model file holds
    (so that other prediction settings re-predict without retraining)."""
    return config["methods"][wildcards.method].get("predict", {})


def train_priority(wildcards):
    """EMDiffuse trains longest (a diffusion model): its jobs start first, side by side, so the
    greedy scheduler fills the remaining cores with the short jobs instead of ending on a long one."""
    return 20 if wildcards.method in ("emdiffuse", "emdiffuse_v") else 10


def job_seed(wildcards):
    """A stable seed per job, derived from the master seed and the job's wildcards."""
    return derived_seed(config["seed"], *wildcards)


def task_budgets(wildcards):
    return {
        method: describe_budget(method, apply_budget(config["methods"][method], config.get("budget")))
        for method in config["tasks"][wildcards.task]["methods"]
    }


def task_models(wildcards):
    """Trained model files of the task: the tables report the budgets they actually got."""
    task = config["tasks"][wildcards.task]
    return expand(
        "results/models/{task}/{dataset}/{method}/model.pt",
        task=wildcards.task,
        dataset=task["datasets"],
        method=task["methods"],
    )


def gpus(wildcards):
    """Learned methods ask for a GPU (used when present); the non-learned ones need none."""
    return int(IMAGE[wildcards.method].learned)


def train_gpus(wildcards):
    """GPUs of a training job (2D or volume method): ``train_devices`` of the method (data-parallel
    within the job), else 1; none for a method that does not learn."""
    learned = (IMAGE.get(wildcards.method) or VOLUME[wildcards.method]).learned
    return int(learned) and int((config.get("train_devices") or {}).get(wildcards.method, 1))


def is_sampled(method):
    """Does the image method draw K samples (an uncertainty map, so a reliability calibration)?"""
    return "samples" in IMAGE[method].defaults.get("predict", {})


# --- transfer learning from one image pair (rules/transfer.smk; logic in emdiffuse/transfer.py) ---
import emdiffuse.transfer as transfer_lib

TRANSFER = config.get("transfer")
transfer_lib.check_transfer(config)


wildcard_constraints:
    target="|".join(DATASETS),
    variant="|".join([transfer_lib.REFERENCE, *transfer_lib.VARIANTS]),


def transfer_outputs():
    """The transfer table and figure (none when the config has no transfer block)."""
    if not TRANSFER:
        return []
    return ["results/tables/transfer.csv", "results/tables/transfer.md", "results/figures/transfer.png"]


def transfer_variants(method):
    """The non-learned input is scored once (the reference row); learned methods in every variant."""
    return transfer_lib.VARIANTS if transfer_lib.learned(method) else [transfer_lib.REFERENCE]


def transfer_source_model(wildcards):
    """The domain-A model: the base task's model of the source dataset (reused, not retrained)."""
    return f"results/models/{wildcards.task}/{TRANSFER['source']}/{wildcards.method}/model.pt"


def transfer_variant_models(wildcards):
    """The weights each variant of a method predicts with, by variant: the domain-A model (direct,
    and the input's reference row) and the ones trained on the single domain-B pair (finetune, scratch)."""
    models = {}
    for variant in transfer_variants(wildcards.method):
        if variant in ("direct", transfer_lib.REFERENCE):
            models[variant] = transfer_source_model(wildcards)
        else:
            models[variant] = (
                f"results/models/transfer/{wildcards.task}/{wildcards.target}/{wildcards.method}_{variant}/model.pt"
            )
    return models


def transfer_predictions(task, method, variant):
    return f"results/predictions/transfer/{task}/{TRANSFER['target']}/{method}_{variant}/test.npz"


def transfer_metric_files(wildcards):
    """Per-image metrics of each task (every method x variant in one file)."""
    return [f"results/metrics/transfer/{task}/{TRANSFER['target']}.csv" for task in TRANSFER["tasks"]]


def transfer_task_predictions(wildcards):
    """Every method x variant's prediction file of a task: [[method, variant, path], ...] (the
    evaluation's params; its inputs are the paths)."""
    return [
        [method, variant, transfer_predictions(wildcards.task, method, variant)]
        for method in transfer_lib.transfer_methods(config, wildcards.task)
        for variant in transfer_variants(method)
    ]


def transfer_task_prediction_files(wildcards):
    return [path for _, _, path in transfer_task_predictions(wildcards)]


def transfer_one_pairs(wildcards):
    """The one domain-B pair of each task, in the order of transfer.tasks."""
    return [f"data/pairs/transfer/{task}/{TRANSFER['target']}/one_pair.npz" for task in TRANSFER["tasks"]]


def transfer_figure_spec(wildcards):
    """What the transfer figure shows, as transfer.figure takes it: per task its test pairs and,
    for EMDiffuse and one baseline, every variant's predictions."""
    return {
        task: {
            "pairs": f"data/pairs/transfer/{task}/{TRANSFER['target']}/test.npz",
            "methods": {
                method: {variant: transfer_predictions(task, method, variant) for variant in transfer_lib.VARIANTS}
                for method in transfer_lib.figure_methods(transfer_lib.transfer_methods(config, task))
            },
        }
        for task in TRANSFER["tasks"]
    }


def transfer_figure_files(wildcards):
    """The files of :func:`transfer_figure_spec` (the figure's inputs)."""
    return [
        path
        for spec in transfer_figure_spec(wildcards).values()
        for path in [spec["pairs"], *(p for variants in spec["methods"].values() for p in variants.values())]
    ]


def transfer_methods_all(wildcards):
    """Every method of the transfer table, in config order."""
    return list(dict.fromkeys(m for t in TRANSFER["tasks"] for m in transfer_lib.transfer_methods(config, t)))


def transfer_budgets(wildcards):
    return {k: v for t in TRANSFER["tasks"] for k, v in transfer_lib.variant_budgets(config, t).items()}


def transfer_finetune_train(wildcards):
    return transfer_lib.finetune_train(config, wildcards.method)


def transfer_scratch_params(wildcards):
    return train_params(transfer_lib.scratch_params(config, wildcards.method))


def transfer_predict_seed(wildcards):
    return transfer_lib.predict_seed(config, wildcards.task, wildcards.target, wildcards.method)


# --- block-wise restore (rules/restore.smk; logic in emdiffuse/blockwise.py) ---
RESTORE = config.get("restore") or {}


def restore_entry(wildcards):
    return RESTORE[wildcards.name]


def restore_blocks(wildcards):
    n = RESTORE[wildcards.name]["blocks"]
    return [f"results/restored/{wildcards.name}/blocks/{block}.npz" for block in range(n)]
