from pathlib import Path

from snakemake.utils import validate

from emdiffuse.config import check_references, derived_seed
from emdiffuse.tables import describe_budget


validate(config, schema="../schemas/config.schema.yaml")
check_references(config)

# real EM images shipped with the workflow, to judge how EM-like the phantom looks
REFERENCE_EM = str(Path(workflow.basedir).parent / "resources" / "reference-em")
TASKS = list(config["tasks"])
DATASETS = list(config["datasets"])
METHODS = list(config["methods"])


wildcard_constraints:
    task="|".join(TASKS),
    dataset="|".join(DATASETS),
    method="|".join(METHODS),
    split="train|test",


def task_factor(wildcards):
    """Pixel-size ratio input / ground truth of a task's pairs (1 unless super-resolution)."""
    return config["tasks"][wildcards.task]["pairs"].get("factor", 1)


def task_outputs(task):
    """The table (CSV and Markdown) and the figure of one task, and its reliability
    calibration when a stochastic method (EMDiffuse) is compared."""
    outputs = [
        f"results/tables/{task}.csv",
        f"results/tables/{task}.md",
        f"results/figures/{task}.png",
    ]
    if "emdiffuse" in config["tasks"][task]["methods"]:
        outputs += [
            f"results/tables/{task}_calibration.md",
            f"results/figures/{task}_calibration.png",
        ]
    return outputs


def calibration_inputs(wildcards):
    """EMDiffuse's per-image metrics (with reliability scores) on every dataset of the task."""
    return expand(
        "results/metrics/{task}/{dataset}/emdiffuse.csv",
        task=wildcards.task,
        dataset=config["tasks"][wildcards.task]["datasets"],
    )


def final_outputs():
    """Every table and figure; the stage-timing summary is made after them."""
    outputs = [out for task in TASKS for out in task_outputs(task)]
    if any(d["kind"] == "phantom" for d in config["datasets"].values()):
        outputs.append("results/figures/phantom.png")
    return outputs + study_outputs()  # sampling study, loss ablation (studies_common.smk)


def metric_files(wildcards):
    """Per-image metric CSVs of every (dataset, method) the task names."""
    task = config["tasks"][wildcards.task]
    return expand(
        "results/metrics/{task}/{dataset}/{method}.csv",
        task=wildcards.task,
        dataset=task["datasets"],
        method=task["methods"],
    )


def figure_predictions(wildcards):
    """Predictions shown in a task's figure: its methods on its first dataset."""
    task = config["tasks"][wildcards.task]
    return {
        method: f"results/predictions/{wildcards.task}/{task['datasets'][0]}/{method}/test.npz"
        for method in task["methods"]
    }


def figure_pairs(wildcards):
    dataset = config["tasks"][wildcards.task]["datasets"][0]
    return f"data/pairs/{wildcards.task}/{dataset}/test.npz"


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


def phantom_volumes(wildcards):
    return [
        f"data/prepared/{name}/volume.tif"
        for name, entry in config["datasets"].items()
        if entry["kind"] == "phantom"
    ]


def method_params(wildcards):
    return config["methods"][wildcards.method]


def job_seed(wildcards):
    """A stable seed per job, derived from the master seed and the job's wildcards."""
    return derived_seed(config["seed"], *wildcards)


def task_budgets(wildcards):
    return {
        method: describe_budget(method, config["methods"][method])
        for method in config["tasks"][wildcards.task]["methods"]
    }


def gpus(wildcards):
    """Learned methods ask for a GPU (used when present); the reference needs none."""
    return 0 if wildcards.method == "input" else 1
