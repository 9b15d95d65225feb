"""The task figure (input, every method, ground truth and uncertainty of one test image per dataset)
and the phantom beside real EM."""

from __future__ import annotations

from pathlib import Path

from ...config import ConfigError
from ...data.pairs import PAIR_KEYS
from ...io import load_npz


def figure(task: str, predictions: dict[str, dict[str, str]], pairs: dict[str, str], figure_cfg: dict,
           out_path: str) -> None:
    """Input, each method and the ground truth for one test image of each dataset (one row per
    dataset: the phantom beside real EM), plus EMDiffuse's uncertainty."""
    from ...evaluation.calibration import reliability_score
    from ...reporting.plots.figures import restoration_figure

    i = figure_cfg["image"]
    rows = []
    for dataset, methods in predictions.items():
        pair = load_npz(pairs[dataset], required=PAIR_KEYS)
        if i >= len(pair["inputs"]):
            raise ConfigError(f"figure.image: {i} but the {dataset} test set has {len(pair['inputs'])} images")
        factor = pair["targets"].shape[-1] // pair["inputs"].shape[-1]
        panels = [("input" if factor == 1 else f"input (x{factor} pixel size)", pair["inputs"][i])]
        uncertainty = reliability = None
        for method, path in methods.items():
            if method == "input" and factor == 1:
                continue  # the same image as the input panel
            pred = load_npz(path, required=("prediction",))
            panels.append(("bicubic" if method == "input" else method, pred["prediction"][i]))
            if "uncertainty" in pred and uncertainty is None:
                uncertainty = pred["uncertainty"][i]
                reliability = reliability_score(uncertainty, pred["prediction"][i])
        panels.append(("ground truth", pair["targets"][i]))
        level = str(pair["level_name"][pair["level"][i]])
        rows.append({"label": f"{dataset} ({level})", "panels": panels, "uncertainty": uncertainty,
                     "reliability": reliability})
    restoration_figure(out_path, rows, inset=tuple(figure_cfg["inset"]), suptitle=f"{task}: test image {i}")


def phantom_figure(volume_paths: list[str], reference_dir: str, out_path: str) -> None:
    from ...data.datasets import load_volume
    from ...reporting.plots.phantom import load_reference_em, phantom_figure as draw

    volumes = {Path(p).parent.name: load_volume(p)[0] for p in volume_paths}
    draw(out_path, volumes, load_reference_em(reference_dir))
