"""The isotropic task (vEMDiffuse-i/-a and baselines) and its segmentation mIoU."""

from __future__ import annotations

from ..tasks import isotropic as iso
from ..models.catalog import train_params
from .base import Part


class IsotropicPlan(Part):
    def __init__(self, config: dict):
        super().__init__(config)
        self.task = task = config["tasks"].get("isotropic")
        self.datasets = task["datasets"] if task else []
        #: datasets with an isotropic ground truth (scored) / serial-section data (reconstructed only)
        self.scored = [d for d in self.datasets if iso.is_scored(config["datasets"][d])]
        self.sections_only = [d for d in self.datasets if d not in self.scored]
        self.methods = task["methods"] if task else []
        self.learned = [m for m in self.methods if iso.learned(m)]
        self.sampled = [m for m in self.methods if iso.is_sampled(m, config["methods"][m])]
        self.unsampled = [m for m in self.methods if m not in self.sampled]
        self.segmented = iso.segmented_datasets(config)
        self.metrics = task["metrics"] if task else []
        self.test_sections = task["test_sections"] if task else 0
        self.test_crop = task.get("test_crop") if task else None
        self.planes_per_view = task.get("planes_per_view", 16) if task else 16
        self.classes = task["segmentation"]["classes"] if self.segmented else []

    @property
    def notes(self) -> list[str]:
        unsegmented = sorted(set(self.scored) - set(self.segmented))
        if not (self.task and self.task.get("segmentation") and unsegmented):
            return []
        return [
            f"tasks.isotropic: no segmentation mIoU or 3D render for {unsegmented}: "
            f"no {self.task['segmentation']['classes']} labels (datasets.<name>.labels)"
        ]

    def dataset_methods(self, dataset: str) -> list[str]:
        """The task's methods that run on this dataset (serial-section data: no isotropic training)."""
        return iso.dataset_methods(self.task, self.config["datasets"][dataset])

    @staticmethod
    def prediction(dataset: str, method: str) -> str:
        return f"results/predictions/isotropic/{dataset}/{method}/test.tif"

    @staticmethod
    def uncertainty(dataset: str, method: str) -> str:
        return f"results/predictions/isotropic/{dataset}/{method}/test_uncertainty.tif"

    def outputs(self) -> list[str]:
        """The table and figure, the segmentation table and renders, and the reconstructions of
        serial-section datasets (which have no ground truth to score them against)."""
        outputs = []
        if self.scored:
            outputs += ["results/tables/isotropic.csv", "results/tables/isotropic.md"]
        outputs += [f"results/figures/isotropic_{d}.png" for d in self.datasets]
        if self.segmented:
            outputs += [
                "results/tables/segmentation.csv",
                "results/tables/segmentation.md",
                "results/figures/isotropic_mito3d.png",
            ]
        outputs += [self.prediction(d, m) for d in self.sections_only for m in self.dataset_methods(d)]
        return outputs

    def z_factor(self, wildcards) -> int:
        return iso.z_factor_for(self.task, wildcards.dataset)

    def training_file(self, wildcards) -> str:
        """What a method learns from: the isotropic training volume, or (vEMDiffuse-a) ONLY the
        anisotropic test sections it reconstructs."""
        kind = iso.method_entry(wildcards.method).training_data
        name = {"isotropic": "train_volume", "sections": "test_sections"}[kind]
        return f"data/pairs/isotropic/{wildcards.dataset}/{name}.tif"

    def train_params(self, wildcards) -> dict:
        """The method's config without its predict block (changing how to predict must not retrain)."""
        return train_params(self.config["methods"][wildcards.method])

    def predict_params(self, wildcards) -> dict:
        """A volume method's settings as prediction uses them: its `predict` block (and, for a method
        that does not learn, all it is built from)."""
        return self.config["methods"][wildcards.method]

    def predict_gpus(self, wildcards) -> int:
        """Learned volume methods ask for a GPU; interpolation needs none."""
        return int(iso.learned(wildcards.method))

    def predict_inputs(self, wildcards) -> dict[str, str]:
        inputs = {"sections": f"data/pairs/isotropic/{wildcards.dataset}/test_sections.tif"}
        if iso.learned(wildcards.method):
            inputs["model"] = f"results/models/isotropic/{wildcards.dataset}/{wildcards.method}/model.pt"
        return inputs

    def methods_of(self, wildcards) -> list[str]:
        return self.dataset_methods(wildcards.dataset)

    def sampled_methods(self, wildcards) -> list[str]:
        """The dataset's methods that also write an uncertainty, in ``dataset_methods`` order."""
        return [m for m in self.dataset_methods(wildcards.dataset) if m in self.sampled]

    def evaluate_inputs(self, wildcards) -> dict:
        """The dataset's ground truth, every method's reconstruction (``dataset_methods`` order) and the
        sampled methods' uncertainties (``sampled_methods`` order)."""
        d = wildcards.dataset
        return {
            "truth": f"data/pairs/isotropic/{d}/test_truth.tif",
            "predictions": [self.prediction(d, m) for m in self.dataset_methods(d)],
            "uncertainties": [self.uncertainty(d, m) for m in self.sampled_methods(wildcards)],
        }

    def metric_files(self, wildcards) -> list[str]:
        return [f"results/metrics/isotropic/{d}.csv" for d in self.scored]

    def budgets(self, wildcards) -> dict[str, str]:
        return {m: iso.budget(m, self.config["methods"][m]) for m in self.methods}

    def factors(self, wildcards) -> dict[str, str]:
        """Per dataset: its axial factor and what it turns the sections into."""
        out = {}
        for d in self.datasets:
            z, (vz, vy, vx) = iso.z_factor_for(self.task, d), self.config["datasets"][d]["voxel_nm"]
            section = vz * z if d in self.scored else vz
            out[d] = f"x{z}: {section:g} nm sections -> {section / z:g} nm slices ({vy:g} x {vx:g} nm pixels)"
        return out

    def unscored(self, wildcards) -> dict[str, str]:
        return {d: f"methods {', '.join(self.dataset_methods(d))}" for d in self.sections_only}

    def figure_inputs(self, wildcards) -> dict:
        """Sections, ground truth (if any), every reconstruction and the uncertainty volumes."""
        d = wildcards.dataset
        methods = self.dataset_methods(d)
        inputs = {
            "sections": f"data/pairs/isotropic/{d}/test_sections.tif",
            "predictions": [self.prediction(d, m) for m in methods],
            "uncertainties": [self.uncertainty(d, m) for m in methods if m in self.sampled],
        }
        if d in self.scored:
            inputs["truth"] = f"data/pairs/isotropic/{d}/test_truth.tif"
        return inputs

    def segment_predictions(self, wildcards) -> list[str]:
        return [self.prediction(wildcards.dataset, m) for m in self.dataset_methods(wildcards.dataset)]

    def segmentation_scores(self, wildcards) -> list[str]:
        return [f"results/segmentation/{d}/iou.csv" for d in self.segmented]

    def segmentation(self, wildcards) -> dict:
        return self.task["segmentation"]

    def render_inputs(self, wildcards) -> dict[str, str]:
        d = self.segmented[0]
        return {"masks": f"results/segmentation/{d}/classes.npz", "scores": f"results/segmentation/{d}/iou.csv"}

    def render_class(self, wildcards) -> str:
        """The class rendered in 3D: mitochondria, as in the paper (else the first class)."""
        classes = self.task["segmentation"]["classes"]
        return "mito" if "mito" in classes else classes[0]
