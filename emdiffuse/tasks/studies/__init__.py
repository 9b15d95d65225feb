"""Two EMDiffuse studies beside the main tables (:mod:`.sampling`, :mod:`.loss_ablation`), and what
they share: the config check and the test subset they score (:func:`pair_subset`): ``images``
spread evenly over the test set (several slices and noise levels) and centre-cropped, to fit a CPU
budget.
"""

from __future__ import annotations

import numpy as np

from ...config import ConfigError
from ...io import load_npz, save_npz
from ...data.pairs import PAIR_KEYS
from ...models.patches import pair_scale


def pair_subset(pairs: dict, images: int, crop: int, *, where: str = "subset") -> dict:
    """``images`` pairs spread evenly over the test set, centre-cropped to ``crop`` target pixels.

    For super-resolution the input is cropped to ``crop / factor`` on the same centre, so the
    pair stays aligned. ``index`` records which test images were taken.
    """
    targets, inputs = pairs["targets"], pairs["inputs"]
    factor = pair_scale(inputs, targets)
    n = len(targets)
    if not 1 <= images <= n:
        raise ConfigError(f"{where}.images: {images}, but the test set has {n} images")
    if not factor <= crop <= min(targets.shape[-2:]) or crop % factor:
        raise ConfigError(f"{where}.crop: {crop} must be at most the test image side {min(targets.shape[-2:])} "
                          f"and a multiple of the super-resolution factor {factor}")
    index = np.unique(np.round(np.linspace(0, n - 1, images)).astype(int))
    size = crop // factor
    y0, x0 = ((s - size) // 2 for s in inputs.shape[-2:])
    return {
        "inputs": inputs[index, y0:y0 + size, x0:x0 + size],
        "targets": targets[index, y0 * factor:(y0 + size) * factor, x0 * factor:(x0 + size) * factor],
        "level": pairs["level"][index],
        "level_name": pairs["level_name"],
        "index": index,
    }


def check_studies(config: dict) -> None:
    """A study names an image-pair task and dataset of the config and a method with settings."""
    for key in ("sampling_study", "loss_ablation"):
        study = config.get(key)
        if study is None:
            continue
        image_tasks = {name: t for name, t in config.get("tasks", {}).items() if "pairs" in t}
        task = image_tasks.get(study["task"])
        if task is None:
            raise ConfigError(f"{key}.task: '{study['task']}' is not an image-pair task of this config "
                              f"(tasks with pairs: {sorted(image_tasks)})")
        if study["dataset"] not in task["datasets"]:
            raise ConfigError(f"{key}.dataset: '{study['dataset']}' is not among tasks.{study['task']}.datasets "
                              f"{task['datasets']}")
        method = study.get("method", "emdiffuse")
        if method not in config.get("methods", {}):  # trained by the task's train rule, in its table or not
            raise ConfigError(f"{key}.method: '{method}' has no settings under 'methods' (the study trains and "
                              f"samples its model on tasks.{study['task']})")
    ablation = config.get("loss_ablation")
    if ablation is not None and "LPIPS" not in ablation.get("metrics", ["LPIPS"]):
        raise ConfigError("loss_ablation.metrics: must include LPIPS (the self-assessment ranks images by it)")


def make_subset(pairs_path: str, images: int, crop: int, out_path: str, *, where: str = "subset") -> None:
    """Write the test subset a study scores (see :func:`pair_subset`)."""
    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    save_npz(out_path, **pair_subset(pairs, int(images), int(crop), where=where))
