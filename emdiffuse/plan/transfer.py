"""Transfer learning from one image pair: domain-A models applied directly, fine-tuned on one
domain-B pair, or trained from scratch on it (logic in :mod:`emdiffuse.tasks.transfer`)."""

from __future__ import annotations

from ..tasks import transfer as lib
from ..models.catalog import train_params
from .base import Part


class TransferPlan(Part):
    def __init__(self, config: dict):
        super().__init__(config)
        self.block = config.get("transfer")
        self.all_variants = [lib.REFERENCE, *lib.VARIANTS]

    @staticmethod
    def variant_outputs(variants: list[str] | None = None) -> dict[str, str]:
        """The prediction file of each variant a transfer_predict job writes, by variant (default:
        every variant of a learned method)."""
        return {
            v: f"results/predictions/transfer/{{task}}/{{target}}/{{method}}_{v}/test.npz"
            for v in (variants or lib.VARIANTS)
        }

    @staticmethod
    def reference_outputs() -> dict[str, str]:
        """The one prediction of the non-learned input (the table's reference row)."""
        return TransferPlan.variant_outputs([lib.REFERENCE])

    def outputs(self) -> list[str]:
        """The transfer table and figure (none when the config has no transfer block)."""
        if not self.block:
            return []
        return ["results/tables/transfer.csv", "results/tables/transfer.md", "results/figures/transfer.png"]

    @staticmethod
    def variants(method: str) -> list[str]:
        """The non-learned input is scored once (the reference row); learned methods in every variant."""
        return lib.VARIANTS if lib.learned(method) else [lib.REFERENCE]

    def source_model(self, wildcards) -> str:
        """The domain-A model: the base task's model of the source dataset (reused, not retrained)."""
        return f"results/models/{wildcards.task}/{self.block['source']}/{wildcards.method}/model.pt"

    def variant_models(self, wildcards) -> dict[str, str]:
        """The weights each variant of a method predicts with, by variant: the domain-A model (direct,
        and the input's reference row) and the ones trained on the single domain-B pair (finetune, scratch)."""
        models = {}
        for variant in self.variants(wildcards.method):
            if variant in ("direct", lib.REFERENCE):
                models[variant] = self.source_model(wildcards)
            else:
                models[variant] = (
                    f"results/models/transfer/{wildcards.task}/{wildcards.target}/{wildcards.method}_{variant}/model.pt"
                )
        return models

    def prediction(self, task: str, method: str, variant: str) -> str:
        return f"results/predictions/transfer/{task}/{self.block['target']}/{method}_{variant}/test.npz"

    def metric_files(self, wildcards) -> list[str]:
        """Per-image metrics of each task (every method x variant in one file)."""
        return [f"results/metrics/transfer/{task}/{self.block['target']}.csv" for task in self.block["tasks"]]

    def task_predictions(self, wildcards) -> list[list[str]]:
        """Every method x variant's prediction file of a task: [[method, variant, path], ...] (the
        evaluation's params; its inputs are the paths)."""
        return [
            [method, variant, self.prediction(wildcards.task, method, variant)]
            for method in lib.transfer_methods(self.config, wildcards.task)
            for variant in self.variants(method)
        ]

    def task_prediction_files(self, wildcards) -> list[str]:
        return [path for _, _, path in self.task_predictions(wildcards)]

    def one_pairs(self, wildcards) -> list[str]:
        """The one domain-B pair of each task, in the order of transfer.tasks."""
        return [f"data/pairs/transfer/{task}/{self.block['target']}/one_pair.npz" for task in self.block["tasks"]]

    def figure_spec(self, wildcards) -> dict:
        """What the transfer figure shows, as transfer.figure takes it: per task its test pairs and,
        for EMDiffuse and one baseline, every variant's predictions."""
        return {
            task: {
                "pairs": f"data/pairs/transfer/{task}/{self.block['target']}/test.npz",
                "methods": {
                    method: {variant: self.prediction(task, method, variant) for variant in lib.VARIANTS}
                    for method in lib.figure_methods(lib.transfer_methods(self.config, task))
                },
            }
            for task in self.block["tasks"]
        }

    def figure_files(self, wildcards) -> list[str]:
        """The files of :meth:`figure_spec` (the figure's inputs)."""
        return [
            path
            for spec in self.figure_spec(wildcards).values()
            for path in [spec["pairs"], *(p for variants in spec["methods"].values() for p in variants.values())]
        ]

    def methods(self, wildcards) -> list[str]:
        """Every method of the transfer table, in config order."""
        tasks = self.block["tasks"]
        return list(dict.fromkeys(m for t in tasks for m in lib.transfer_methods(self.config, t)))

    def budgets(self, wildcards) -> dict:
        return {k: v for t in self.block["tasks"] for k, v in lib.variant_budgets(self.config, t).items()}

    def finetune_train(self, wildcards) -> dict:
        return lib.finetune_train(self.config, wildcards.method)

    def scratch_params(self, wildcards) -> dict:
        return train_params(lib.scratch_params(self.config, wildcards.method))

    def predict_seed(self, wildcards) -> int:
        return lib.predict_seed(self.config, wildcards.task, wildcards.target, wildcards.method)
