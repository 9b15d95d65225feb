"""The config-wide training budget: same steps or same seconds for every learned method, the
deadline in the training loop (and its resume), and the tables reporting what each model got."""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import torch
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError
from test_methods import CPU, QUIET, toy_pairs
from test_rcan import Killed, fit_killed_at
from test_train import pairs
from torch import nn

from emdiffuse.tasks.image import scoring as steps
from emdiffuse.budget import apply_budget, check_budget, describe_mode
from emdiffuse.config import ConfigError
from emdiffuse.plan import check_config
from emdiffuse.models.registry import build_method, load_method
from emdiffuse.models.patches import PatchSampler
from emdiffuse.reporting.tables import describe_budget, evaluate_images
from emdiffuse.models.train import ProgressSchedule, train_loop

LEARNED = ["care", "emdiffuse", "rcan", "pssr"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_own_mode_leaves_every_method_as_configured(default_config):
    for params in default_config["methods"].values():
        assert apply_budget(params, {"mode": "own"}) is params
        assert apply_budget(params, None) is params


def test_steps_mode_sets_the_same_iterations_for_every_learned_method(test_config, tmp_path):
    budget = {"mode": "steps", "steps": 3}
    assert apply_budget(test_config["methods"]["input"], budget) == {}
    inputs, targets = toy_pairs(n=4, size=32)
    for name in LEARNED:
        params = test_config["methods"][name]
        before = copy.deepcopy(params)
        given = apply_budget(params, budget)
        assert given["train"] == {**params["train"], "iterations": 3}  # only the length changes
        assert params == before  # the config itself is not mutated
        method = build_method(name, given, device=CPU, seed=0)
        history = method.fit(inputs, targets, checkpoint_path=tmp_path / f"{name}.pt", **QUIET)
        assert [h["iteration"] for h in history] == [1, 2, 3]
        assert method.budget()["iterations"] == 3


def test_seconds_mode_sets_a_deadline_and_an_optional_cap(default_config):
    for name in LEARNED:
        train = apply_budget(default_config["methods"][name], {"mode": "seconds", "seconds": 30})["train"]
        assert train["seconds"] == 30.0 and train["iterations"] is None
        capped = apply_budget(default_config["methods"][name], {"mode": "seconds", "seconds": 30, "steps": 50})
        assert capped["train"]["iterations"] == 50


@pytest.mark.parametrize("budget, message", [
    ({"mode": "steps"}, "budget.steps: required when budget.mode is 'steps'"),
    ({"mode": "seconds", "steps": 5}, "budget.seconds: required when budget.mode is 'seconds'"),
    ({"mode": "own", "steps": 5}, "budget.steps: set, but budget.mode is 'own'"),
    ({"seconds": 60}, "budget.seconds: set, but budget.mode is 'own'"),
    ({"mode": "steps", "steps": 5, "seconds": 60}, "budget.seconds: set, but budget.mode is 'steps'"),
])
def test_inconsistent_budgets_are_config_errors(default_config, budget, message):
    default_config["budget"] = budget
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        check_config(default_config)


def test_consistent_budgets_pass_and_the_schema_checks_values(default_config, repo, monkeypatch, schema):
    for budget in [{"mode": "own"}, {"mode": "steps", "steps": 5}, {"mode": "seconds", "seconds": 2.5},
                   {"mode": "seconds", "seconds": 2.5, "steps": 100}]:
        check_budget({"budget": budget})
    monkeypatch.chdir(repo)
    default_config["budget"] = {"mode": "minutes"}
    with pytest.raises(WorkflowError, match="minutes"):
        validate(default_config, schema)
    default_config["budget"] = {"mode": "steps", "steps": 0}
    with pytest.raises(WorkflowError, match="steps"):
        validate(default_config, schema)


def slow_run(path, *, seconds, iterations=None, kill_at=None, log=lambda *_: None):
    """A tiny training whose every step takes >= 20 ms, so a deadline falls between steps."""
    torch.manual_seed(0)
    model = nn.Conv2d(1, 1, 3, padding=1)

    def loss_fn(batch):
        time.sleep(0.02)
        return ((model(batch[0]) - batch[1]) ** 2).mean()

    def callback(it):
        if it == kill_at:
            raise Killed

    return train_loop(model, loss_fn, PatchSampler(*pairs(), patch=8, batch_size=2, seed=1), iterations=iterations,
                      seconds=seconds, lr=1e-2, checkpoint_path=path, checkpoint_every=3, device=CPU, seed=5,
                      meta={"run": 1}, callback=callback, progress=False, log=log)


def test_seconds_budget_stops_at_the_deadline_and_the_history_says_how_far(tmp_path):
    result = slow_run(tmp_path / "a.pt", seconds=0.3)
    times = [h["seconds"] for h in result.history]
    assert [h["iteration"] for h in result.history] == list(range(1, len(times) + 1))
    assert times[-1] >= 0.3 > times[-2]  # stopped after the first step that reached the deadline
    assert 3 <= len(times) <= 16  # >= 20 ms a step
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    assert ckpt["iteration"] == len(times)  # checkpointed at the deadline, not only every 3
    again = slow_run(tmp_path / "a.pt", seconds=0.3)
    assert again.history == result.history  # a finished run is not retrained
    messages = []
    shorter = slow_run(tmp_path / "a.pt", seconds=0.1, log=messages.append)  # trained past it: not silently reused
    assert "beyond the requested 0.1 s" in messages[0] and shorter.history[-1]["seconds"] < times[-1]
    assert len(slow_run(tmp_path / "b.pt", seconds=100.0, iterations=4).history) == 4  # the cap comes first


def test_seconds_budget_resumes_after_a_kill(tmp_path):
    with pytest.raises(Killed):
        slow_run(tmp_path / "c.pt", seconds=0.4, kill_at=4)  # last checkpoint at 3
    messages = []
    resumed = slow_run(tmp_path / "c.pt", seconds=0.4, log=messages.append)
    assert "resuming at iteration 3 (deadline 0.4 s" in messages[0]
    times = [h["seconds"] for h in resumed.history]
    assert [h["iteration"] for h in resumed.history] == list(range(1, len(times) + 1))
    assert times == sorted(times) and times[-1] >= 0.4 > times[-2]


def test_progress_schedule_equals_per_iteration_stepping():
    def lrs(progress_driven):
        opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
        cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
        sched = ProgressSchedule(cycle, 10) if progress_driven else cycle
        out = []
        for it in range(1, 11):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.advance(it / 10) if progress_driven else sched.step()
        return out

    assert lrs(True) == lrs(False)


def test_pssr_one_cycle_spans_a_seconds_budget_and_resumes(monkeypatch, tmp_path):
    params = {"model": {"width_mult": 1 / 16, "layers": [1, 1, 1, 1]},
              "train": {"iterations": None, "seconds": 1.0, "batch_size": 2, "patch": 32, "checkpoint_every": 2},
              "predict": {"tile": 32, "overlap": 8}}
    data = toy_pairs(n=4, size=32)
    method = build_method("pssr", params, device=CPU, seed=0)
    history = method.fit(*data, checkpoint_path=tmp_path / "a.pt", **QUIET)
    lrs = np.array([h["lr"] for h in history])
    peak = int(np.argmax(lrs))
    assert lrs[0] == pytest.approx(4e-4 / 25) and 0 < peak < len(lrs) - 1  # warms up, then anneals
    assert lrs[-1] < 0.2 * lrs.max() and history[-1]["seconds"] >= 1.0
    assert method.budget() == {"iterations": len(history), "seconds": history[-1]["seconds"], "batch_size": 2,
                               "patch": 32, "precision": "fp32"}
    fit_killed_at(monkeypatch, "pssr", params, data, tmp_path / "b.pt", kill_at=3)
    messages = []
    resumed = build_method("pssr", params, device=CPU, seed=0)
    resumed.fit(*data, checkpoint_path=tmp_path / "b.pt", progress=False, log=messages.append)
    assert "resuming at iteration 2" in messages[0] and resumed.history[-1]["seconds"] >= 1.0


def test_tables_report_the_budgets_the_models_got(tmp_path, test_config):
    inputs, targets = toy_pairs(n=4, size=32)
    level, level_name = np.zeros(len(inputs), int), np.array(["1 us"])
    budget = {"mode": "steps", "steps": 4}
    csvs, models, texts = [], [], {}
    for name in ["input", "rcan"]:
        params = apply_budget(test_config["methods"][name], budget)
        method = build_method(name, params, device=CPU, seed=0)
        method.fit(inputs, targets, checkpoint_path=tmp_path / f"{name}.ckpt", **QUIET)
        models.append(tmp_path / "models" / "denoise" / "toy" / name / "model.pt")
        models[-1].parent.mkdir(parents=True)
        method.save(models[-1])
        pred = method.predict(inputs, seed=0, progress=False)["prediction"]
        csvs.append(tmp_path / f"{name}.csv")
        evaluate_images(pred, targets, level, level_name, ["PSNR"], task="denoise", dataset="toy",
                        method=name).to_csv(csvs[-1], index=False)
        texts[name] = describe_budget(name, params)
    got = load_method(models[1], device=CPU).history
    steps.table("denoise", csvs, ["PSNR"], ["input", "rcan"], texts, tmp_path / "t.csv", tmp_path / "t.md",
                threshold=0.12, model_paths=[str(m) for m in models], budget=budget)
    table = pd.read_csv(tmp_path / "t.csv")
    assert (table.groupby("method")["iterations"].nunique(dropna=False) == 1).all()  # on every level's row
    table = table[table["level"] == "all"].set_index("method")
    assert table.loc["rcan", "iterations"] == 4 and table.loc["rcan", "train_seconds"] == got[-1]["seconds"] > 0
    assert (table.loc["rcan", "batch_size"], table.loc["rcan", "patch"]) == (2, 32)
    assert np.isnan(table.loc["input", "iterations"])
    md = (tmp_path / "t.md").read_text()
    assert "Budget mode `steps`: every learned method got the same 4 optimiser steps." in md
    assert "- **rcan**: 4 iterations, batch 2, patch 32; trained on toy: 4 iterations in" in md
    assert "- **input**: not learned (reference)" in md


def test_seconds_budgets_are_described_as_not_reproducible():
    params = apply_budget({"train": {"iterations": 10, "batch_size": 8, "patch": 64, "lr": 1e-3}},
                          {"mode": "seconds", "seconds": 90})
    assert describe_budget("care", params).startswith("90 s of training, batch 8, patch 64")
    assert "not reproducible across machines" in describe_mode({"mode": "seconds", "seconds": 90})
    assert "capped at 5 iterations" in describe_mode({"mode": "seconds", "seconds": 90, "steps": 5})
