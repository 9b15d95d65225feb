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
def schema(tmp_path_factory) -> str:
    """The schema the workflow validates against: the schema file with the catalog's method names."""
    from emdiffuse.config import write_workflow_schema

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
