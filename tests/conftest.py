"""Shared fixtures: repository paths and the two configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.fixture
def test_config() -> dict:
    return yaml.safe_load((REPO / "config" / "test.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_diffusion_model(tmp_path_factory) -> Path:
    """A tiny EMDiffuse model file (2 iterations) for the command-line and restore tests."""
    import numpy as np
    import torch

    from emdiffuse.models.registry import build_method

    params = {
        "model": {"preset": "tiny"},
        "train": {"iterations": 2, "batch_size": 2, "patch": 16, "lr": 1e-4, "warmup": 0, "ema_decay": 0.9},
        "predict": {"sampler": "ddim", "steps": 2, "samples": 2, "tile": 32, "overlap": 8, "batch": 2},
    }
    root = tmp_path_factory.mktemp("model")
    x = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    method = build_method("emdiffuse", params, device=torch.device("cpu"), seed=0)
    method.fit(x, x, checkpoint_path=root / "ckpt.pt", progress=False)
    method.save(root / "model.pt")
    return root / "model.pt"


@pytest.fixture(scope="session")
def schema(tmp_path_factory) -> str:
    """The schema the workflow validates against: the schema file with the catalog's method names."""
    from emdiffuse.plan.schema import write_workflow_schema

    return str(write_workflow_schema(tmp_path_factory.mktemp("schema")))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test runs torch on one thread: tiny networks gain nothing from threads and lose a lot
    when the cores are shared (two tests took 140-150 s without it, 6-16 s with it). Tests of
    threading set their own count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_figure_has_content(path, min_ink: float = 0.03) -> None:
    """A figure file that shows something: a PNG of which at least ``min_ink`` of the pixels differ
    from the white background (two empty titled axes draw 1.7%; the calibration scatter 4.4%), not
    a blank or failed plot."""
    from matplotlib.image import imread

    image = imread(path)[..., :3]
    ink = float((image.min(axis=-1) < 0.9).mean())
    assert ink >= min_ink, f"{path}: only {ink:.1%} of the pixels are drawn on"
