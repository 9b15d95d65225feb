# Functions of the two EMDiffuse studies (config blocks `sampling_study` and `loss_ablation`);
# their rules are in sampling.smk and ablation.smk. Included before report.smk: final_outputs()
# (common.smk) adds study_outputs() to `all` and to the stage timings.

from emdiffuse.studies import check_studies
from emdiffuse.studies.loss_ablation import ablation_params
from emdiffuse.tables import describe_budget

check_studies(config)

SAMPLING = config.get("sampling_study")
ABLATION = config.get("loss_ablation")


def sampling_outputs():
    """The quality-versus-steps table and figure (none when the config has no sampling_study)."""
    if not SAMPLING:
        return []
    return [
        "results/tables/sampling.csv",
        "results/tables/sampling.md",
        "results/figures/sampling.png",
    ]


def ablation_outputs():
    """The difficulty-aware loss on/off table (none when the config has no loss_ablation)."""
    if not ABLATION:
        return []
    return ["results/tables/loss_ablation.csv", "results/tables/loss_ablation.md"]


def study_outputs():
    return sampling_outputs() + ablation_outputs()


def require_study(key, outputs):
    """Outputs of a study target; a clear error when its config block is missing."""

    def inputs(wildcards):
        if not outputs():
            raise ValueError(f"this target needs a `{key}` block in the config (see config/README.md)")
        return outputs()

    return inputs


def subset_path(study, task, dataset):
    """The centre-cropped test subset a study scores (rule study_subset)."""
    return f"data/pairs/{task}/{dataset}/test_{study['images']}x{study['crop']}.npz"


def study_seed(name):
    """One seed per study, task and dataset: every sampler (or loss variant) gets the same noise."""

    def seed(wildcards):
        return derived_seed(config["seed"], wildcards.task, wildcards.dataset, name)

    return seed


def sampling_subset(wildcards):
    return subset_path(SAMPLING, wildcards.task, wildcards.dataset)


def sampling_params(wildcards):
    """What a sampler's run depends on: the step counts, K and the metrics (not the sampler list)."""
    return {key: SAMPLING[key] for key in ("steps", "samples", "metrics")}


def sampling_settings(wildcards):
    """The study's model's prediction settings in the config (its configured sampler and steps)."""
    return config["methods"][SAMPLING["method"]].get("predict", {})


def sampling_model(wildcards):
    return f"results/models/{wildcards.task}/{wildcards.dataset}/{SAMPLING['method']}/model.pt"


def sampling_runs(wildcards):
    return expand(
        "results/sampling/{task}/{dataset}/{sampler}.csv",
        task=SAMPLING["task"],
        dataset=SAMPLING["dataset"],
        sampler=SAMPLING["samplers"],
    )


def sampling_about(wildcards):
    task, dataset = SAMPLING["task"], SAMPLING["dataset"]
    return {
        "task": task,
        "dataset": dataset,
        "method": SAMPLING["method"],
        "model": f"results/models/{task}/{dataset}/{SAMPLING['method']}/model.pt",
        "crop": SAMPLING["crop"],
        "seed": derived_seed(config["seed"], task, dataset, "sampling_study"),
    }


def ablation_method_params(wildcards):
    """What the variant trains with: EMDiffuse's settings at the ablation budget, with the
    difficulty-aware loss on or off (its prediction settings: ablation_predict_settings)."""
    return train_params(ablation_params(config["methods"]["emdiffuse"], ABLATION, wildcards.variant))


def ablation_predict_settings(wildcards):
    """How the variant predicts: EMDiffuse's, and the loss-on variant also its difficulty map."""
    return ablation_params(config["methods"]["emdiffuse"], ABLATION, wildcards.variant)["predict"]


def ablation_subset(wildcards):
    return subset_path(ABLATION, wildcards.task, wildcards.dataset)


def ablation_inputs(wildcards):
    """Both variants' predictions and training histories, and the subset they are scored on."""
    root = f"results/loss_ablation/{ABLATION['task']}/{ABLATION['dataset']}"
    inputs = {"subset": subset_path(ABLATION, ABLATION["task"], ABLATION["dataset"])}
    for variant in ("on", "off"):
        inputs[f"predictions_{variant}"] = f"{root}/loss_{variant}/test.npz"
        inputs[f"history_{variant}"] = f"{root}/loss_{variant}/history.csv"
    return inputs


def ablation_budget(wildcards):
    return describe_budget("emdiffuse", ablation_params(config["methods"]["emdiffuse"], ABLATION, "on"))


def ablation_about(wildcards):
    return {"task": ABLATION["task"], "dataset": ABLATION["dataset"], "crop": ABLATION["crop"]}


def ablation_metrics(wildcards):
    return ABLATION["metrics"]
