"""What every part of the plan shares: the config, job seeds, GPU requests, method settings."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..budget import apply_budget
from ..config import derived_seed
from ..models.catalog import IMAGE, VOLUME, train_params


def alternatives(names: Iterable[str]) -> str:
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


class Part:
    """A part of the plan: functions of Snakemake's wildcards over one config."""

    def __init__(self, config: dict):
        self.config = config

    def job_seed(self, wildcards) -> int:
        """A stable seed per job, derived from the master seed and the job's wildcards."""
        return derived_seed(self.config["seed"], *wildcards)

    def task_factor(self, wildcards) -> int:
        """Pixel-size ratio input / ground truth of a task's pairs (1 unless super-resolution)."""
        return self.config["tasks"][wildcards.task]["pairs"].get("factor", 1)

    def budgeted(self, method: str) -> dict:
        """A method's settings with the config-wide ``budget`` applied (same steps or seconds for all)."""
        return apply_budget(self.config["methods"][method], self.config.get("budget"))

    def method_params(self, wildcards) -> dict:
        """What a method trains with: its budgeted settings but `predict` (the prediction jobs take
        those)."""
        return train_params(self.budgeted(wildcards.method))

    def predict_settings(self, wildcards) -> dict:
        """How a method predicts: its config's `predict` block, over the settings its model file holds
        (so that other prediction settings re-predict without retraining)."""
        return self.config["methods"][wildcards.method].get("predict", {})

    def gpus(self, wildcards) -> int:
        """Learned image methods ask for a GPU (used when present); the non-learned ones need none."""
        return int(IMAGE[wildcards.method].learned)

    def train_gpus(self, wildcards) -> int:
        """GPUs of a training job (2D or volume method): ``train_devices`` of the method (data-parallel
        within the job), else 1; none for a method that does not learn."""
        learned = (IMAGE.get(wildcards.method) or VOLUME[wildcards.method]).learned
        return int(learned) and int((self.config.get("train_devices") or {}).get(wildcards.method, 1))
