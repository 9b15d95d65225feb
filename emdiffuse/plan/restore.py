"""Block-wise restore of large stacks and volumes (config ``restore``; logic in :mod:`emdiffuse.tasks.blockwise`)."""

from __future__ import annotations

from .base import Part


class RestorePlan(Part):
    def __init__(self, config: dict):
        super().__init__(config)
        self.entries = config.get("restore") or {}

    def outputs(self) -> list[str]:
        return [f"results/restored/{name}.zarr" for name in self.entries]

    def entry(self, wildcards) -> dict:
        return self.entries[wildcards.name]

    def model(self, wildcards) -> str:
        return self.entries[wildcards.name]["model"]

    def image(self, wildcards) -> str:
        return self.entries[wildcards.name]["input"]

    def blocks(self, wildcards) -> list[str]:
        n = self.entries[wildcards.name]["blocks"]
        return [f"results/restored/{wildcards.name}/blocks/{block}.npz" for block in range(n)]
