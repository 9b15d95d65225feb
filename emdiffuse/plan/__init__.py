"""The workflow's plan: from a validated config, every job's inputs, params and the final targets.

The rules (``workflow/rules/*.smk``) declare only what Snakemake needs to see (file patterns, logs,
resources, the script); whatever depends on the config they look up in one :class:`Plan`, built once
when the workflow is parsed. A part per concern: :mod:`.image` (the 2D tasks), :mod:`.datasets`,
:mod:`.isotropic`, :mod:`.transfer`, :mod:`.studies`, :mod:`.restore`. Input and params functions
take Snakemake's ``wildcards`` (any object with the wildcard names as attributes), so they are
tested without Snakemake (``tests/test_plan.py``). Planning imports no torch: it reads the method
catalog, not the implementations.
"""

from __future__ import annotations

from .base import Part, alternatives
from .datasets import DatasetPlan
from .image import ImagePlan
from .isotropic import IsotropicPlan
from .restore import RestorePlan
from .studies import StudyPlan
from .transfer import TransferPlan

__all__ = ["Plan", "alternatives", "check_config"]


def check_config(config: dict) -> None:
    """What the schema cannot check (cross-references, values that need a registry), with voxel sizes
    filled in first: the config's own checks, then each task's and study's. Every check names the
    key and what was expected (:class:`emdiffuse.config.ConfigError`)."""
    from ..config import check_references
    from ..data.datasets import fill_voxel_sizes
    from ..tasks.isotropic import check_isotropic
    from ..tasks.studies import check_studies
    from ..tasks.transfer import check_transfer

    fill_voxel_sizes(config)
    for check in (check_references, check_image_methods, check_isotropic, check_transfer, check_studies):
        check(config)


def check_image_methods(config: dict) -> None:
    """Each image method's settings against its defaults (unknown or missing keys), before any job runs."""
    from ..config import ConfigError
    from ..models.catalog import image_method, merge_params

    named = {m for name, task in config.get("tasks", {}).items() if name != "isotropic" for m in task.get("methods", [])}
    for method in sorted(named | set((config.get("transfer") or {}).get("methods") or [])):
        try:
            merge_params(image_method(method, "methods").defaults, config["methods"].get(method, {}), f"methods.{method}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


class Plan(Part):
    """Every part of the workflow's plan for one config (validated against the schema first)."""

    def __init__(self, config: dict, reference_em: str):
        check_config(config)
        super().__init__(config)
        self.datasets = DatasetPlan(config, reference_em)
        self.image = ImagePlan(config)
        self.iso = IsotropicPlan(config)
        self.transfer = TransferPlan(config)
        self.studies = StudyPlan(config)
        self.restore = RestorePlan(config)

    @property
    def notes(self) -> list[str]:
        """What the config leaves out, said once when the workflow is parsed."""
        return self.iso.notes

    @property
    def tasks(self) -> list[str]:
        return list(self.config["tasks"])

    def wildcard_constraints(self) -> dict[str, str]:
        """The workflow-wide wildcard patterns (the isotropic task has its own rules)."""
        return {
            "task": alternatives(t for t in self.tasks if t != "isotropic"),
            "dataset": alternatives(self.config["datasets"]),
            "method": alternatives(self.config["methods"]),
            "split": "train|test",
            "target": alternatives(self.config["datasets"]),
            "variant": alternatives(self.transfer.all_variants),
        }

    def task_outputs(self, task: str) -> list[str]:
        """The table(s) and figure(s) of one task (the target ``table_<task>``)."""
        return self.iso.outputs() if task == "isotropic" else self.image.outputs(task)

    def final_outputs(self) -> list[str]:
        """Every table and figure of ``all``; the stage-timing summary is made after them."""
        outputs = [out for task in self.tasks for out in self.task_outputs(task)]
        outputs += self.transfer.outputs()
        outputs += self.datasets.phantom_outputs()
        outputs += self.datasets.realism_outputs()
        return outputs + self.studies.outputs()
