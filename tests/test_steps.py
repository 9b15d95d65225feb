"""Workflow steps that combine several files: evaluation of every method, the reliability
calibration, the task figure."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from emdiffuse.io import save_npz
from emdiffuse.tasks.image.scoring import calibration, evaluate
from emdiffuse.tasks.image.figures import figure


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
    """Sampled methods are flagged against the highest score of their own held-out predictions."""
    from emdiffuse.evaluation.calibration import reliability_score

    targets = _pairs(tmp_path / "pairs.npz", 32)
    _predictions(tmp_path / "care.npz", targets, 1)
    _predictions(tmp_path / "emdiffuse.npz", targets, 2, uncertainty=True)
    held_out = _pairs(tmp_path / "cal_pairs.npz", 32, n=3, seed=9)
    _predictions(tmp_path / "care_cal.npz", held_out, 3)
    _predictions(tmp_path / "emdiffuse_cal.npz", held_out, 4, uncertainty=True)
    out = tmp_path / "metrics.csv"
    evaluate("denoise", "phantom", {"care": str(tmp_path / "care.npz"), "emdiffuse": str(tmp_path / "emdiffuse.npz")},
             str(tmp_path / "pairs.npz"), ["PSNR"], str(out),
             calibrations={"care": str(tmp_path / "care_cal.npz"), "emdiffuse": str(tmp_path / "emdiffuse_cal.npz")})
    rows = pd.read_csv(out)
    assert list(rows["method"]) == ["care", "care", "emdiffuse", "emdiffuse"]
    assert rows["PSNR"].between(20, 40).all()
    assert rows.loc[rows["method"] == "care", ["reliability", "threshold"]].isna().all().all()
    emd = rows[rows["method"] == "emdiffuse"]
    assert emd["reliability"].notna().all()
    cal = np.load(tmp_path / "emdiffuse_cal.npz")
    expected = max(reliability_score(u, p) for u, p in zip(cal["uncertainty"], cal["prediction"]))
    assert emd["threshold"].tolist() == pytest.approx([expected] * 2)
    assert (emd["unreliable"] == (emd["reliability"] > expected)).all()


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


def test_calibration_reports_each_dataset_and_both_scores(tmp_path):
    """A score that ranks the errors of one dataset gets Spearman 1 there, whatever the other
    dataset does; each dataset's model has its own calibrated threshold; the paper's score is
    reported beside it with its fixed threshold."""
    rows = []
    for dataset, reliability, threshold in (("phantom", np.linspace(0.2, 0.8, 10), 0.5),
                                            ("real", np.linspace(0.8, 0.2, 10), 0.7)):
        rows.append(pd.DataFrame({"task": "denoise", "dataset": dataset, "method": "emdiffuse", "image": range(10),
                                  "level": 0, "level_name": "1us", "LPIPS": np.linspace(0.1, 0.3, 10),
                                  "reliability": reliability, "unreliable": reliability > threshold,
                                  "threshold": threshold,
                                  "reliability_paper": np.full(10, 0.13), "unreliable_paper": True}))
    paths = []
    for i, frame in enumerate(rows):
        paths.append(str(tmp_path / f"{i}.csv"))
        frame.to_csv(paths[-1], index=False)
    out = tmp_path / "cal"
    calibration("denoise", paths, f"{out}.csv", f"{out}.md", f"{out}.png")
    table = pd.read_csv(f"{out}.csv").set_index(["dataset", "score"])
    assert table.loc[("phantom", "score / contrast"), "spearman"] == pytest.approx(1.0)
    assert table.loc[("real", "score / contrast"), "spearman"] == pytest.approx(-1.0)
    assert table.loc[("phantom", "score / contrast"), "ranks_errors"] == "yes"  # p = 1 / 10000
    assert table.loc[("real", "score / contrast"), "ranks_errors"] == "not shown"
    assert table.loc[("phantom", "score / contrast"), "recall"] == 1.0  # the worst 2 of 10 score above 0.5
    assert table.loc[("real", "paper score"), "flagged_share"] == 1.0  # 0.13 > 0.12 everywhere
    assert np.isnan(table.loc[("real", "paper score"), "spearman"])  # a constant score ranks nothing
    assert set(table.index.get_level_values("dataset")) == {"phantom", "real", "all"}
    assert table.loc[("real", "score / contrast"), "flagged_share"] == 0.2  # 0.8 and 0.73 above 0.7
    assert np.isnan(table.loc[("all", "score / contrast"), "threshold"])  # pooled: each model its own
    md = (tmp_path / "cal.md").read_text()
    assert "| phantom | emdiffuse | score / contrast (> 0.5) | 10 | 1.00 | < 0.001 | yes |" in md
    assert "| real | emdiffuse | score / contrast (> 0.7) | 10 | -1.00 | 1.000 | not shown |" in md
    assert "| all | all | score / contrast (> each model's) | 20 |" in md
    assert imread(f"{out}.png").shape[0] > 100


def test_the_model_file_keeps_the_configs_prediction_settings_and_predict_overrides_them(tmp_path):
    """Training takes the config's prediction settings only to store them (``emdiffuse predict`` then
    samples as the benchmark did); the prediction step's settings win over the stored ones."""
    import torch

    from emdiffuse.io import save_npz
    from emdiffuse.models.registry import load_method
    from emdiffuse.tasks.image.train_predict import predict, train

    rng = np.random.default_rng(0)
    clean = rng.random((4, 16, 16)).astype(np.float32)
    pairs = tmp_path / "pairs.npz"
    save_npz(pairs, inputs=clean, targets=clean, level=np.zeros(4, np.int16), level_name=np.array(["n"]))
    params = {"model": {"preset": "tiny"}, "train": {"iterations": 1, "batch_size": 2, "patch": 16, "warmup": 0}}
    train("emdiffuse", params, str(pairs), 0, str(tmp_path / "model.pt"), str(tmp_path / "history.csv"),
          progress=False, predict={"steps": 3, "samples": 1, "tile": 16, "overlap": 0})
    stored = load_method(tmp_path / "model.pt", device=torch.device("cpu")).params["predict"]
    assert (stored["steps"], stored["samples"]) == (3, 1)
    predict([str(tmp_path / "model.pt")], [str(pairs)], 0, [str(tmp_path / "p.npz")], progress=False,
            settings={"samples": 2})
    assert np.load(tmp_path / "p.npz")["uncertainty"].shape == clean.shape  # K = 2 from the settings
