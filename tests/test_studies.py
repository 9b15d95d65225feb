"""The sampling study (quality versus steps) and the difficulty-aware loss ablation, on tiny models."""

import numpy as np
import pandas as pd
import pytest
import torch

from emdiffuse.tasks import studies
from emdiffuse.tasks.image import train_predict as steps
from emdiffuse.tasks.studies import loss_ablation, sampling
from emdiffuse.config import ConfigError
from emdiffuse.io import load_npz, save_npz
from emdiffuse.models.registry import build_method

from conftest import assert_figure_has_content
from test_methods import QUIET, TINY, toy_pairs

CPU = torch.device("cpu")
METRICS = ["LPIPS", "FSIM", "PSNR"]
STUDY = {"steps": [200, 4, 2], "samples": 1, "metrics": METRICS}  # 200 > the tiny schedule's ODE limit of 100


def _pairs(n=6, size=40, scale=1):
    inputs, targets = toy_pairs(n=n, size=size, scale=scale)
    level = np.arange(n, dtype=np.int16) % 2
    return {"inputs": inputs, "targets": targets, "level": level, "level_name": np.array(["low", "high"])}


@pytest.fixture(scope="module")
def study_files(tmp_path_factory):
    """A fitted tiny EMDiffuse model, the test pairs and a 2-image, 32-px subset of them."""
    root = tmp_path_factory.mktemp("studies")
    pairs = _pairs()
    params = {**TINY["emdiffuse"], "predict": {**TINY["emdiffuse"]["predict"], "sampler": "ancestral", "steps": 2,
                                                                "precision": "bf16"}}
    method = build_method("emdiffuse", params, device=CPU, seed=0)
    method.fit(pairs["inputs"], pairs["targets"], checkpoint_path=root / "ckpt.pt", **QUIET)
    method.save(root / "model.pt")
    save_npz(root / "test.npz", **pairs)
    studies.make_subset(root / "test.npz", 2, 32, root / "subset.npz")
    return root


def test_pair_subset_spreads_images_and_crops_the_centre():
    pairs = _pairs(n=7, size=20)
    sub = studies.pair_subset(pairs, 3, 8)
    assert list(sub["index"]) == [0, 3, 6]
    np.testing.assert_array_equal(sub["targets"], pairs["targets"][[0, 3, 6], 6:14, 6:14])
    np.testing.assert_array_equal(sub["inputs"], pairs["inputs"][[0, 3, 6], 6:14, 6:14])
    assert list(sub["level"]) == [0, 1, 0]


def test_pair_subset_keeps_super_resolution_pairs_aligned():
    pairs = _pairs(n=2, size=10, scale=2)  # inputs 10 px, targets 20 px
    sub = studies.pair_subset(pairs, 1, 8)
    assert sub["inputs"].shape == (1, 4, 4) and sub["targets"].shape == (1, 8, 8)
    np.testing.assert_array_equal(sub["inputs"][0], pairs["inputs"][0, 3:7, 3:7])
    np.testing.assert_array_equal(sub["targets"][0], pairs["targets"][0, 6:14, 6:14])


@pytest.mark.parametrize("images,crop,message", [(9, 8, "sampling_study.images: 9"), (1, 24, "sampling_study.crop: 24"),
                                                 (1, 7, "super-resolution factor 2")])
def test_pair_subset_errors_name_the_key(images, crop, message):
    with pytest.raises(ConfigError, match=message):
        studies.pair_subset(_pairs(n=2, size=10, scale=2), images, crop, where="sampling_study")


def test_settings_skip_what_a_sampler_cannot_take_and_add_the_other_precision_and_init():
    default = {"sampler": "dpmpp2m", "steps": 20, "precision": "bf16", "init": "condition"}
    start = {1000: 1e-20, 50: 0.005, 20: 0.39, 10: 0.63}.get
    settings, skipped = sampling.sampling_settings("dpmpp2m", [1000, 50, 20], 468, default, start)
    assert skipped == [1000]
    assert settings == [{"sampler": "dpmpp2m", "init": "noise", "steps": 50, "precision": "bf16"},
                        {"sampler": "dpmpp2m", "init": "noise", "steps": 20, "precision": "bf16"},
                        {"sampler": "dpmpp2m", "init": "condition", "steps": 20, "precision": "bf16"},
                        {"sampler": "dpmpp2m", "init": "condition", "steps": 20, "precision": "fp32"}]
    settings, skipped = sampling.sampling_settings("ancestral", [1000, 10], None, default, start)
    assert skipped == [] and [s["steps"] for s in settings] == [1000, 10]  # not the default sampler
    assert {s["precision"] for s in settings} == {"bf16"} and {s["init"] for s in settings} == {"noise"}


def _run(root, sampler, seed=3, name=None):
    out = root / f"{name or sampler}.csv"
    sampling.sampling_run(root / "model.pt", root / "subset.npz", sampler, STUDY, seed, out, task="denoise",
                         dataset="toy", threads=1, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(study_files):
    return [_run(study_files, sampler) for sampler in ("ancestral", "ddim", "dpmpp2m")]


def test_sampling_runs_cover_every_sampler_and_steps_and_are_seeded(study_files, runs):
    rows = pd.concat([pd.read_csv(p) for p in runs], ignore_index=True)
    run = rows[rows["note"].isna()]
    # the model samples with ancestral 2 steps from noise in bf16: ancestral gets the fp32 row at 2 steps,
    # and the condition init where its chain starts above alpha_bar 0.01 (4 and 2 steps, not 200)
    expected = {("ancestral", "noise", 200, "bf16"), ("ancestral", "noise", 4, "bf16"),
                ("ancestral", "noise", 2, "bf16"), ("ancestral", "noise", 2, "fp32"),
                ("ancestral", "condition", 4, "bf16"), ("ancestral", "condition", 2, "bf16"),
                ("ddim", "noise", 4, "bf16"), ("ddim", "noise", 2, "bf16"),
                ("dpmpp2m", "noise", 4, "bf16"), ("dpmpp2m", "noise", 2, "bf16")}
    keys = ["sampler", "init", "steps", "precision"]
    assert set(map(tuple, run[keys].to_numpy().tolist())) == expected
    assert (run.groupby(keys).size() == 2).all()  # both subset images
    assert np.isfinite(run[METRICS + ["seconds", "s_per_mpix"]].to_numpy(dtype=float)).all()
    assert (run["s_per_mpix"] > 0).all() and (run["megapixels"] == 2 * 32 * 32 / 1e6).all()
    notes = rows[rows["note"].notna()]
    assert set(zip(notes["sampler"], notes["steps"])) == {("ddim", 200), ("dpmpp2m", 200)}
    assert notes["note"].str.contains("at most 100").all()
    first = pd.read_csv(runs[0])[METRICS]
    again = pd.read_csv(_run(study_files, "ancestral", name="again"))[METRICS]
    other_seed = pd.read_csv(_run(study_files, "ancestral", seed=4, name="other"))[METRICS]
    pd.testing.assert_frame_equal(first, again)  # same seed, same numbers
    assert not np.allclose(first.to_numpy(float), other_seed.to_numpy(float))


def test_sampling_table_marks_the_reference_and_writes_the_figure(study_files, runs, tmp_path):
    about = {"task": "denoise", "dataset": "toy", "model": "model.pt", "crop": 32, "seed": 3}
    sampling.sampling_table(runs, study_files / "subset.npz", STUDY, about, tmp_path / "s.csv", tmp_path / "s.md",
                           tmp_path / "s.png")
    table = pd.read_csv(tmp_path / "s.csv")
    ref = table[table["is_reference"]]
    assert len(ref) == 1 and ref.iloc[0][["sampler", "steps"]].tolist() == ["ancestral", 200]
    assert ref.iloc[0]["LPIPS_delta"] == 0 and ref.iloc[0]["matches_reference"]
    md = (tmp_path / "s.md").read_text()
    assert "Reference: **ancestral, 200 steps (bf16, init noise)**" in md and "| reference |" in md
    assert "not run: ddim takes at most 100" in md and "precision, ancestral 2 steps: bf16 - fp32" in md
    assert "- init, ancestral 4 steps: condition - noise = LPIPS" in md
    assert_figure_has_content(tmp_path / "s.png")
    subset = load_npz(study_files / "subset.npz")
    psnr_input = sampling.input_scores(subset, ["PSNR"], task="denoise", dataset="toy")["PSNR"]
    mse = ((subset["inputs"] - subset["targets"]) ** 2).mean(axis=(1, 2))
    assert psnr_input == pytest.approx(float(np.mean(10 * np.log10(1 / mse))), rel=1e-4)
    assert "Degraded input on the same crops (no restoration): LPIPS" in md


def test_findings_say_when_the_reference_is_a_weak_yardstick():
    rows = pd.DataFrame({"sampler": "ancestral", "init": "noise", "steps": [1000, 50, 20], "precision": "bf16",
                         "samples": 1,
                         "seconds": 1.0, "s_per_mpix": 1.0, "LPIPS": [0.30, 0.20, 0.35], "PSNR": [14.0, 25.0, 24.0]})
    table, reference = sampling.sampling_summary(rows, ["LPIPS", "PSNR"], tolerance={"LPIPS": 0.01})
    lines = sampling._sampling_findings(table, reference, ["LPIPS", "PSNR"], {"LPIPS": 0.9, "PSNR": 17.0})
    assert "- the reference is worse on every metric than: ancestral 50 (bf16, init noise); 'within" in lines[0]
    assert "- the reference does not beat the degraded input on PSNR" in lines
    good = sampling._sampling_findings(table, reference, ["LPIPS", "PSNR"], {"LPIPS": 0.9, "PSNR": 10.0})
    assert not any("degraded input" in line for line in good)


def test_matching_means_worse_by_at_most_the_tolerance():
    rows = pd.DataFrame({"sampler": ["ancestral", "ancestral", "ddim", "ddim", "ddim"],
                         "init": "noise", "steps": [1000, 10, 50, 20, 10], "precision": "bf16", "samples": 1,
                         "seconds": 1.0,
                         "s_per_mpix": 1.0, "LPIPS": [0.30, 0.25, 0.309, 0.30, 0.32],
                         "FSIM": [0.80, 0.70, 0.796, 0.81, 0.80]})
    table, reference = sampling.sampling_summary(rows, ["LPIPS", "FSIM"], tolerance=sampling.DEFAULT_TOLERANCE)
    assert reference == {"sampler": "ancestral", "init": "noise", "steps": 1000, "precision": "bf16"}
    match = dict(zip(zip(table["sampler"], table["steps"]), table["matches_reference"]))
    # better LPIPS but FSIM 0.1 worse; within both; better on both; LPIPS 0.02 worse
    assert match == {("ancestral", 1000): True, ("ancestral", 10): False, ("ddim", 50): True, ("ddim", 20): True,
                     ("ddim", 10): False}


def test_ablation_params_change_only_the_loss_and_the_budget():
    params = {**TINY["emdiffuse"], "train": dict(TINY["emdiffuse"]["train"]), "predict": dict(TINY["emdiffuse"]["predict"])}
    ablation = {"iterations": 7, "patch": 8}
    on, off = (loss_ablation.ablation_params(params, ablation, v) for v in ("on", "off"))
    assert on["train"]["difficulty_loss"] and not off["train"]["difficulty_loss"]
    assert on["predict"]["difficulty"] and not off["predict"]["difficulty"]
    for variant in (on, off):
        assert variant["train"]["iterations"] == 7 and variant["train"]["patch"] == 8
        assert variant["model"] == params["model"] and variant["diffusion"] == params["diffusion"]
    strip = lambda p: {**p, "train": {k: v for k, v in p["train"].items() if k != "difficulty_loss"},
                       "predict": {k: v for k, v in p["predict"].items() if k != "difficulty"}}
    assert strip(on) == strip(off)
    assert "difficulty_loss" not in params["train"]  # the config is not modified
    with pytest.raises(ConfigError, match="variant"):
        loss_ablation.ablation_params(params, ablation, "maybe")


def test_loss_ablation_wiring_trains_predicts_and_summarises(study_files, tmp_path):
    """The workflow's chain on tiny models: train both variants, predict the subset, score both."""
    save_npz(tmp_path / "train.npz", **_pairs())
    predictions, histories = {}, {}
    for variant in ("on", "off"):
        params = loss_ablation.ablation_params(TINY["emdiffuse"], {"iterations": 6, "patch": 16}, variant)
        model, history = tmp_path / variant / "model.pt", tmp_path / variant / "history.csv"
        steps.train("emdiffuse", params, tmp_path / "train.npz", 11, model, history, progress=False)
        predictions[variant], histories[variant] = tmp_path / variant / "test.npz", history
        steps.predict([model], [study_files / "subset.npz"], 5, [predictions[variant]], progress=False)
    assert "difficulty" in load_npz(predictions["on"]) and "difficulty" not in load_npz(predictions["off"])
    about = {"task": "denoise", "dataset": "toy", "crop": 32}
    loss_ablation.loss_ablation(predictions, histories, study_files / "subset.npz", METRICS, "6 iterations", about,
                          tmp_path / "a.csv", tmp_path / "a.md", threshold=0.12)
    table = pd.read_csv(tmp_path / "a.csv")
    assert list(table["method"]) == ["loss on", "loss off"] and (table["n"] == 2).all()
    assert np.isfinite(table[[f"{m}_mean" for m in METRICS] + ["reliability_mean", "final_loss"]].to_numpy(float)).all()
    assert np.isfinite(table.loc[0, "pixel_spearman_difficulty"]) and np.isnan(table.loc[1, "pixel_spearman_difficulty"])
    md = (tmp_path / "a.md").read_text()
    assert "## Self-assessment" in md and "| loss on |" in md and "| loss off |" in md
    assert table.loc[0, "PSNR_vs"] == "loss off" and table.loc[0, "PSNR_gain_n"] == 2  # on, paired with off
    assert table.loc[0, "PSNR_gain"] == pytest.approx(table.loc[0, "PSNR_mean"] - table.loc[1, "PSNR_mean"])
    assert "## Does it lead?" in md and "| toy | loss on | vs loss off: " in md


def test_study_config_errors_name_the_key(default_config):
    studies.check_studies(default_config)
    bad = dict(default_config, sampling_study=dict(default_config["sampling_study"], dataset="phantom_liver"))
    with pytest.raises(ConfigError, match="sampling_study.dataset: 'phantom_liver'"):
        studies.check_studies(bad)
    bad = dict(default_config, loss_ablation=dict(default_config["loss_ablation"], task="isotropic"))
    with pytest.raises(ConfigError, match="loss_ablation.task: 'isotropic'"):
        studies.check_studies(bad)
    bad = dict(default_config, loss_ablation=dict(default_config["loss_ablation"], metrics=["PSNR"]))
    with pytest.raises(ConfigError, match="loss_ablation.metrics"):
        studies.check_studies(bad)
