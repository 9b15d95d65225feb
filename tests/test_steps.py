"""Workflow steps that combine several files: evaluation of every method, the task figure."""

import numpy as np
import pandas as pd
from matplotlib.image import imread

from emdiffuse.io import save_npz
from emdiffuse.steps import evaluate, figure


def _pairs(path, size, n=2, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.random((n, size, size), dtype=np.float32)
    save_npz(path, inputs=np.clip(targets + 0.1 * rng.standard_normal(targets.shape), 0, 1).astype(np.float32),
             targets=targets, level=np.zeros(n, dtype=np.int64), level_name=np.array(["1us"]))
    return targets


def _predictions(path, targets, seed, uncertainty=False):
    rng = np.random.default_rng(seed)
    arrays = {"prediction": np.clip(targets + 0.05 * rng.standard_normal(targets.shape), 0, 1).astype(np.float32)}
    if uncertainty:
        arrays["uncertainty"] = np.full_like(targets, 0.01)
    save_npz(path, **arrays)


def test_evaluate_scores_every_method_of_a_dataset_in_one_table(tmp_path):
    targets = _pairs(tmp_path / "pairs.npz", 32)
    _predictions(tmp_path / "care.npz", targets, 1)
    _predictions(tmp_path / "emdiffuse.npz", targets, 2, uncertainty=True)
    out = tmp_path / "metrics.csv"
    evaluate("denoise", "phantom", {"care": str(tmp_path / "care.npz"), "emdiffuse": str(tmp_path / "emdiffuse.npz")},
             str(tmp_path / "pairs.npz"), ["PSNR"], str(out), threshold=0.12)
    rows = pd.read_csv(out)
    assert list(rows["method"]) == ["care", "care", "emdiffuse", "emdiffuse"]
    assert rows["PSNR"].between(20, 40).all()
    assert rows.loc[rows["method"] == "care", "reliability"].isna().all()
    assert rows.loc[rows["method"] == "emdiffuse", "reliability"].notna().all()


def test_figure_has_one_row_per_dataset(tmp_path):
    paths = {}
    for seed, (dataset, size) in enumerate([("phantom", 64), ("real", 48)]):
        targets = _pairs(tmp_path / f"{dataset}_pairs.npz", size, seed=seed)
        _predictions(tmp_path / f"{dataset}_emd.npz", targets, seed, uncertainty=True)
        paths[dataset] = {"emdiffuse": str(tmp_path / f"{dataset}_emd.npz")}
    pairs = {d: str(tmp_path / f"{d}_pairs.npz") for d in paths}
    cfg = {"image": 0, "inset": [8, 8, 16]}
    figure("denoise", {"phantom": paths["phantom"]}, pairs, cfg, str(tmp_path / "one.png"))
    figure("denoise", paths, pairs, cfg, str(tmp_path / "two.png"))
    one, two = imread(tmp_path / "one.png"), imread(tmp_path / "two.png")
    assert one.shape[1] == two.shape[1]
    assert two.shape[0] > 1.7 * one.shape[0]
