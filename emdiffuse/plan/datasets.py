"""Datasets: which are fetched, what preparing one needs, the phantom and realism figures."""

from __future__ import annotations

from ..tasks.isotropic import is_anisotropic_voxel
from .base import Part


class DatasetPlan(Part):
    def __init__(self, config: dict, reference_em: str):
        super().__init__(config)
        #: real EM images shipped with the workflow, to judge how EM-like the phantom looks
        self.reference_em = reference_em
        #: the realism table compares every isotropic volume (the phantoms and the real ones beside them)
        self.realism_datasets = [
            name
            for name, entry in config["datasets"].items()
            if "voxel_nm" not in entry or not is_anisotropic_voxel(entry["voxel_nm"])
        ]

    def is_remote(self, name: str) -> bool:
        from ..data.sources import FETCHERS

        return self.config["datasets"][name]["kind"] in FETCHERS

    def fetch_outputs(self) -> list[str]:
        """The cache manifest of every remote dataset (the target ``fetch``)."""
        return [f"data/raw/{name}/manifest.json" for name in self.config["datasets"] if self.is_remote(name)]

    def remote_manifest(self, wildcards) -> list[str] | str:
        """A remote dataset is prepared from its fetched cache; local kinds need no input."""
        if self.is_remote(wildcards.dataset):
            return f"data/raw/{wildcards.dataset}/manifest.json"
        return []

    def entry(self, wildcards) -> dict:
        return self.config["datasets"][wildcards.dataset]

    def phantom_volumes(self, wildcards) -> list[str]:
        return [
            f"data/prepared/{name}/volume.tif"
            for name, entry in self.config["datasets"].items()
            if entry["kind"] == "phantom"
        ]

    def phantom_outputs(self) -> list[str]:
        if any(d["kind"] == "phantom" for d in self.config["datasets"].values()):
            return ["results/figures/phantom.png"]
        return []

    def realism_outputs(self) -> list[str]:
        """The realism table and figure, when there is a phantom and a real volume to compare."""
        kinds = set(self.realism_kinds().values())
        if "phantom" not in kinds or kinds == {"phantom"}:
            return []
        return ["results/tables/realism.csv", "results/tables/realism.md", "results/figures/realism.png"]

    def realism_volumes(self, wildcards) -> list[str]:
        return [f"data/prepared/{name}/volume.tif" for name in self.realism_datasets]

    def realism_kinds(self) -> dict[str, str]:
        return {name: self.config["datasets"][name]["kind"] for name in self.realism_datasets}
