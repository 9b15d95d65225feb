"""The 2D tasks (denoise, superres): pairs -> train -> predict -> evaluate -> table, figure, calibration."""

from __future__ import annotations

from ..models.catalog import IMAGE
from ..reporting.tables import describe_budget
from .base import Part

#: the diffusion models train longest: their jobs start first (see :meth:`ImagePlan.train_priority`)
LONGEST = ("emdiffuse", "emdiffuse_v")


class ImagePlan(Part):
    def task(self, wildcards) -> dict:
        return self.config["tasks"][wildcards.task]

    def outputs(self, task: str) -> list[str]:
        """The table (CSV and Markdown) and the figure of one task, and its reliability
        calibration when a stochastic method (EMDiffuse) is compared."""
        outputs = [f"results/tables/{task}.csv", f"results/tables/{task}.md", f"results/figures/{task}.png"]
        if any(IMAGE[m].sampled for m in self.config["tasks"][task]["methods"]):
            outputs += [f"results/tables/{task}_calibration.md", f"results/figures/{task}_calibration.png"]
        return outputs

    def metrics(self, wildcards) -> list[str]:
        return self.task(wildcards)["metrics"]

    def methods(self, wildcards) -> list[str]:
        return self.task(wildcards)["methods"]

    def datasets(self, wildcards) -> list[str]:
        return self.task(wildcards)["datasets"]

    def metric_files(self, wildcards) -> list[str]:
        """Per-image metric CSVs of the task: one per dataset, every method in it (EMDiffuse's rows
        with reliability scores)."""
        return [f"results/metrics/{wildcards.task}/{d}.csv" for d in self.datasets(wildcards)]

    def predictions(self, wildcards, split: str = "test") -> list[str]:
        """Every method's predictions on one dataset (of its test or its held-out calibration pairs),
        in the task's method order."""
        root = f"results/predictions/{wildcards.task}/{wildcards.dataset}"
        return [f"{root}/{m}/{split}.npz" for m in self.methods(wildcards)]

    def calibrations(self, wildcards) -> list[str]:
        return self.predictions(wildcards, "calibration")

    def figure_predictions(self, wildcards) -> list[str]:
        """Predictions shown in a task's figure: every method on every dataset, dataset by dataset."""
        return [
            f"results/predictions/{wildcards.task}/{d}/{m}/test.npz"
            for d in self.datasets(wildcards)
            for m in self.methods(wildcards)
        ]

    def figure_pairs(self, wildcards) -> list[str]:
        return [f"data/pairs/{wildcards.task}/{d}/test.npz" for d in self.datasets(wildcards)]

    def models(self, wildcards) -> list[str]:
        """Trained model files of the task: the tables report the budgets they actually got."""
        return [
            f"results/models/{wildcards.task}/{d}/{m}/model.pt"
            for d in self.datasets(wildcards)
            for m in self.methods(wildcards)
        ]

    def budgets(self, wildcards) -> dict[str, str]:
        return {m: describe_budget(m, self.budgeted(m)) for m in self.methods(wildcards)}

    def train_priority(self, wildcards) -> int:
        """EMDiffuse trains longest (a diffusion model): its jobs start first, side by side, so the
        greedy scheduler fills the remaining cores with the short jobs instead of ending on a long one."""
        return 20 if wildcards.method in LONGEST else 10
