"""Data-parallel training (several devices in one job), run here as two gloo processes on the CPU."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emdiffuse.io import save_npz
from emdiffuse.models.registry import load_method
from emdiffuse.tasks.image.train_predict import train

CARE = {"model": {"n_depth": 1, "kern_size": 3, "n_first": 4}, "train": {"iterations": 4, "batch_size": 4, "patch": 16}}
EMDIFFUSE = {"model": {"preset": "tiny"},
             "train": {"iterations": 4, "batch_size": 4, "patch": 16, "lr": 1e-4, "warmup": 0, "ema_decay": 0.9,
                       "checkpoint_every": 2},
             "predict": {"steps": 2, "samples": 1, "tile": 32, "overlap": 8}}


@pytest.fixture
def pairs(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.random((6, 32, 32)).astype(np.float32)
    noisy = np.clip(clean + 0.2 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
    path = tmp_path / "pairs.npz"
    save_npz(path, inputs=noisy, targets=clean, level=np.zeros(6, np.int16), level_name=np.array(["n"]))
    return path


def weights(path):
    return {k: v.clone() for k, v in load_method(path, device=torch.device("cpu")).net.state_dict().items()}


def run(tmp_path, name, method, params, pairs, devices):
    out = tmp_path / name
    out.mkdir()
    train(method, params, str(pairs), 3, str(out / "model.pt"), str(out / "history.csv"), threads=1, progress=False,
          devices=devices)
    return out


def test_two_processes_train_like_one_device_on_the_global_batch(tmp_path, pairs):
    one = run(tmp_path, "one", "care", CARE, pairs, 1)
    two = run(tmp_path, "two", "care", CARE, pairs, 2)
    a, b = weights(one / "model.pt"), weights(two / "model.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    losses = [pd.read_csv(d / "history.csv")["loss"].to_numpy() for d in (one, two)]
    assert np.allclose(*losses, rtol=1e-4)


def test_a_killed_two_process_run_resumes_exactly(tmp_path, pairs):
    whole = run(tmp_path, "whole", "emdiffuse", EMDIFFUSE, pairs, 2)
    half = {**EMDIFFUSE, "train": {**EMDIFFUSE["train"], "iterations": 2}}
    resumed = run(tmp_path, "resumed", "emdiffuse", half, pairs, 2)
    train("emdiffuse", EMDIFFUSE, str(pairs), 3, str(resumed / "model.pt"), str(resumed / "history.csv"), threads=1,
          progress=False, devices=2)  # continues from the checkpoint at iteration 2
    a = load_method(whole / "model.pt", device=torch.device("cpu")).diffusion.state_dict()
    b = load_method(resumed / "model.pt", device=torch.device("cpu")).diffusion.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(pd.read_csv(resumed / "history.csv")) == 4


VEMDIFFUSE = {"model": {"preset": "tiny"},
              "train": {"iterations": 4, "batch_size": 2, "patch": 16, "checkpoint_every": 2}}


@pytest.fixture
def volume(tmp_path):
    from emdiffuse.models.volumes import write_volume

    path = tmp_path / "train.tif"
    write_volume(path, np.random.default_rng(1).random((12, 24, 24)).astype(np.float32), (8.0, 8.0, 8.0))
    return path


def run_volume(tmp_path, name, method, params, volume, devices):
    from emdiffuse.tasks.isotropic import train_volume

    out = tmp_path / name
    out.mkdir(exist_ok=True)
    train_volume(method, params, 2, str(volume), 3, str(out / "model.pt"), str(out / "history.csv"), threads=1,
                 progress=False, devices=devices)
    return out


def volume_state(path):
    from emdiffuse.models.volume_methods import load_volume_method

    model = load_volume_method(path, device=torch.device("cpu"))
    return model.diffusion.state_dict()


def test_a_killed_two_process_vemdiffuse_run_resumes_exactly(tmp_path, volume):
    """A volume method's training job on two processes (vEMDiffuse-i), killed after iteration 2 and
    restarted, ends with the weights of an uninterrupted two-process run."""
    whole = run_volume(tmp_path, "whole", "vemdiffuse_i", VEMDIFFUSE, volume, 2)
    half = {**VEMDIFFUSE, "train": {**VEMDIFFUSE["train"], "iterations": 2}}
    run_volume(tmp_path, "resumed", "vemdiffuse_i", half, volume, 2)
    resumed = run_volume(tmp_path, "resumed", "vemdiffuse_i", VEMDIFFUSE, volume, 2)  # from the checkpoint at 2
    a, b = volume_state(whole / "model.pt"), volume_state(resumed / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(pd.read_csv(resumed / "history.csv")) == 4
