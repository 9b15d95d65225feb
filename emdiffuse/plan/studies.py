"""The two EMDiffuse studies: quality versus sampling steps (config ``sampling_study``) and the
difficulty-aware loss on and off (``loss_ablation``); logic in :mod:`emdiffuse.tasks.studies`."""

from __future__ import annotations

from ..config import ConfigError, derived_seed
from ..models.catalog import train_params
from ..tasks.studies.loss_ablation import ablation_params
from ..reporting.tables import describe_budget
from .base import Part

SAMPLING_OUTPUTS = ["results/tables/sampling.csv", "results/tables/sampling.md", "results/figures/sampling.png"]
ABLATION_OUTPUTS = ["results/tables/loss_ablation.csv", "results/tables/loss_ablation.md"]


def subset_path(study: dict, task: str, dataset: str) -> str:
    """The centre-cropped test subset a study scores (rule study_subset)."""
    return f"data/pairs/{task}/{dataset}/test_{study['images']}x{study['crop']}.npz"


class StudyPlan(Part):
    def __init__(self, config: dict):
        super().__init__(config)
        self.sampling = config.get("sampling_study")
        self.ablation = config.get("loss_ablation")

    def sampling_outputs(self) -> list[str]:
        """The quality-versus-steps table and figure (none when the config has no sampling_study)."""
        return list(SAMPLING_OUTPUTS) if self.sampling else []

    def ablation_outputs(self) -> list[str]:
        """The difficulty-aware loss on/off table (none when the config has no loss_ablation)."""
        return list(ABLATION_OUTPUTS) if self.ablation else []

    def outputs(self) -> list[str]:
        return self.sampling_outputs() + self.ablation_outputs()

    def required(self, key: str):
        """The input function of a study's own target: its outputs, or a clear error when the config
        has no block for it."""
        outputs = {"sampling_study": self.sampling_outputs, "loss_ablation": self.ablation_outputs}[key]

        def inputs(wildcards):
            if not outputs():
                raise ConfigError(f"this target needs a `{key}` block in the config (see config/README.md)")
            return outputs()

        return inputs

    def seed(self, name: str):
        """One seed per study, task and dataset: every sampler (or loss variant) gets the same noise."""

        def seed(wildcards):
            return derived_seed(self.config["seed"], wildcards.task, wildcards.dataset, name)

        return seed

    # --- the sampling study ---
    def sampling_subset(self, wildcards) -> str:
        return subset_path(self.sampling, wildcards.task, wildcards.dataset)

    def sampling_table_subset(self, wildcards) -> str:
        return subset_path(self.sampling, self.sampling["task"], self.sampling["dataset"])

    def sampling_params(self, wildcards) -> dict:
        """What a sampler's run depends on: the step counts, K and the metrics (not the sampler list)."""
        return {key: self.sampling[key] for key in ("steps", "samples", "metrics")}

    def sampling_settings(self, wildcards) -> dict:
        """The study's model's prediction settings in the config (its configured sampler and steps)."""
        return self.config["methods"][self.sampling["method"]].get("predict", {})

    def sampling_model(self, wildcards) -> str:
        return f"results/models/{wildcards.task}/{wildcards.dataset}/{self.sampling['method']}/model.pt"

    def sampling_runs(self, wildcards) -> list[str]:
        s = self.sampling
        return [f"results/sampling/{s['task']}/{s['dataset']}/{sampler}.csv" for sampler in s["samplers"]]

    def sampling_about(self, wildcards) -> dict:
        task, dataset, method = self.sampling["task"], self.sampling["dataset"], self.sampling["method"]
        return {
            "task": task,
            "dataset": dataset,
            "method": method,
            "model": f"results/models/{task}/{dataset}/{method}/model.pt",
            "crop": self.sampling["crop"],
            "seed": derived_seed(self.config["seed"], task, dataset, "sampling_study"),
        }

    # --- the loss ablation ---
    def _ablation_variant(self, variant: str) -> dict:
        return ablation_params(self.config["methods"]["emdiffuse"], self.ablation, variant)

    def ablation_method_params(self, wildcards) -> dict:
        """What the variant trains with: EMDiffuse's settings at the ablation budget, with the
        difficulty-aware loss on or off (its prediction settings: ablation_predict_settings)."""
        return train_params(self._ablation_variant(wildcards.variant))

    def ablation_predict_settings(self, wildcards) -> dict:
        """How the variant predicts: EMDiffuse's, and the loss-on variant also its difficulty map."""
        return self._ablation_variant(wildcards.variant)["predict"]

    def ablation_subset(self, wildcards) -> str:
        return subset_path(self.ablation, wildcards.task, wildcards.dataset)

    def ablation_inputs(self, wildcards) -> dict[str, str]:
        """Both variants' predictions and training histories, and the subset they are scored on."""
        task, dataset = self.ablation["task"], self.ablation["dataset"]
        root = f"results/loss_ablation/{task}/{dataset}"
        inputs = {"subset": subset_path(self.ablation, task, dataset)}
        for variant in ("on", "off"):
            inputs[f"predictions_{variant}"] = f"{root}/loss_{variant}/test.npz"
            inputs[f"history_{variant}"] = f"{root}/loss_{variant}/history.csv"
        return inputs

    def ablation_budget(self, wildcards) -> str:
        return describe_budget("emdiffuse", self._ablation_variant("on"))

    def ablation_about(self, wildcards) -> dict:
        return {key: self.ablation[key] for key in ("task", "dataset", "crop")}

    def ablation_metrics(self, wildcards) -> list[str]:
        return self.ablation["metrics"]
