# Helpers of the isotropic reconstruction task (rules in isotropic.smk; logic in emdiffuse/isotropic.py).
import re

from snakemake.logging import logger

from emdiffuse import isotropic as iso

ISO = config["tasks"].get("isotropic")
ISO_DATASETS = ISO["datasets"] if ISO else []
# datasets with an isotropic ground truth (scored) / serial-section data (reconstructed only)
ISO_SCORED = [d for d in ISO_DATASETS if iso.is_scored(config["datasets"][d])]
ISO_SECTIONS_ONLY = [d for d in ISO_DATASETS if d not in ISO_SCORED]
ISO_METHODS = ISO["methods"] if ISO else []
ISO_LEARNED = [m for m in ISO_METHODS if iso.learned(m)]
ISO_SAMPLED = [m for m in ISO_METHODS if iso.is_sampled(m, config["methods"][m])]
ISO_SEGMENTED = iso.segmented_datasets(config)
if ISO and ISO.get("segmentation") and set(ISO_SCORED) - set(ISO_SEGMENTED):
    logger.info(
        f"tasks.isotropic: no segmentation mIoU or 3D render for {sorted(set(ISO_SCORED) - set(ISO_SEGMENTED))}: "
        f"no {ISO['segmentation']['classes']} labels (datasets.<name>.labels)"
    )


def alternatives(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def iso_methods(dataset):
    """The task's methods that run on this dataset (serial-section data: no isotropic training)."""
    return iso.dataset_methods(ISO, config["datasets"][dataset])


def iso_prediction(dataset, method):
    return f"results/predictions/isotropic/{dataset}/{method}/test.tif"


def iso_uncertainty(dataset, method):
    return f"results/predictions/isotropic/{dataset}/{method}/test_uncertainty.tif"


def isotropic_outputs():
    """The table and figure, the segmentation table and renders, and the reconstructions of
    serial-section datasets (which have no ground truth to score them against)."""
    outputs = []
    if ISO_SCORED:
        outputs += ["results/tables/isotropic.csv", "results/tables/isotropic.md"]
    outputs += [f"results/figures/isotropic_{d}.png" for d in ISO_DATASETS]
    if ISO_SEGMENTED:
        outputs += [
            "results/tables/segmentation.csv",
            "results/tables/segmentation.md",
            "results/figures/isotropic_mito3d.png",
        ]
    outputs += [iso_prediction(d, m) for d in ISO_SECTIONS_ONLY for m in iso_methods(d)]
    return outputs


def volume_z_factor(wildcards):
    return iso.z_factor_for(ISO, wildcards.dataset)


def volume_training_file(wildcards):
    """What a method learns from: the isotropic training volume, or (vEMDiffuse-a) ONLY the
    anisotropic test sections it reconstructs."""
    kind = iso.method_entry(wildcards.method).training_data
    name = {"isotropic": "train_volume", "sections": "test_sections"}[kind]
    return f"data/pairs/isotropic/{wildcards.dataset}/{name}.tif"


def volume_predict_params(wildcards):
    """A volume method's settings as prediction uses them: its `predict` block (and, for a method
    that does not learn, all it is built from)."""
    return config["methods"][wildcards.method]


def volume_train_params(wildcards):
    """The method's config without its predict block (changing how to predict must not retrain)."""
    return train_params(config["methods"][wildcards.method])


def volume_predict_inputs(wildcards):
    inputs = {"sections": f"data/pairs/isotropic/{wildcards.dataset}/test_sections.tif"}
    if iso.learned(wildcards.method):
        inputs["model"] = f"results/models/isotropic/{wildcards.dataset}/{wildcards.method}/model.pt"
    return inputs


def volume_sampled_methods(wildcards):
    """The dataset's methods that also write an uncertainty, in ``iso_methods`` order."""
    return [m for m in iso_methods(wildcards.dataset) if m in ISO_SAMPLED]


def volume_evaluate_inputs(wildcards):
    """The dataset's ground truth, every method's reconstruction (``iso_methods`` order) and the
    sampled methods' uncertainties (``volume_sampled_methods`` order)."""
    d = wildcards.dataset
    return {
        "truth": f"data/pairs/isotropic/{d}/test_truth.tif",
        "predictions": [iso_prediction(d, m) for m in iso_methods(d)],
        "uncertainties": [iso_uncertainty(d, m) for m in volume_sampled_methods(wildcards)],
    }


def volume_metric_files(wildcards):
    return [f"results/metrics/isotropic/{d}.csv" for d in ISO_SCORED]


def volume_budgets(wildcards):
    return {m: iso.budget(m, config["methods"][m]) for m in ISO_METHODS}


def volume_factors(wildcards):
    """Per dataset: its axial factor and what it turns the sections into."""
    out = {}
    for d in ISO_DATASETS:
        z, (vz, vy, vx) = iso.z_factor_for(ISO, d), config["datasets"][d]["voxel_nm"]
        section = vz * z if d in ISO_SCORED else vz
        out[d] = f"x{z}: {section:g} nm sections -> {section / z:g} nm slices ({vy:g} x {vx:g} nm pixels)"
    return out


def volume_unscored(wildcards):
    return {d: f"methods {', '.join(iso_methods(d))}" for d in ISO_SECTIONS_ONLY}


def volume_figure_methods(wildcards):
    return iso_methods(wildcards.dataset)


def volume_figure_inputs(wildcards):
    """Sections, ground truth (if any), every reconstruction and the uncertainty volumes."""
    d = wildcards.dataset
    methods = iso_methods(d)
    inputs = {
        "sections": f"data/pairs/isotropic/{d}/test_sections.tif",
        "predictions": [iso_prediction(d, m) for m in methods],
        "uncertainties": [iso_uncertainty(d, m) for m in methods if m in ISO_SAMPLED],
    }
    if d in ISO_SCORED:
        inputs["truth"] = f"data/pairs/isotropic/{d}/test_truth.tif"
    return inputs


def segment_methods(wildcards):
    return iso_methods(wildcards.dataset)


def segment_predictions(wildcards):
    return [iso_prediction(wildcards.dataset, m) for m in segment_methods(wildcards)]


def segmentation_scores(wildcards):
    return [f"results/segmentation/{d}/iou.csv" for d in ISO_SEGMENTED]


def segmentation_params(wildcards):
    return ISO["segmentation"]


def render_inputs(wildcards):
    d = ISO_SEGMENTED[0]
    return {"masks": f"results/segmentation/{d}/classes.npz", "scores": f"results/segmentation/{d}/iou.csv"}


def render_class(wildcards):
    """The class rendered in 3D: mitochondria, as in the paper (else the first class)."""
    classes = ISO["segmentation"]["classes"]
    return "mito" if "mito" in classes else classes[0]
