"""The benchmark scripts run and print what the README quotes (tiny settings; timings are not checked)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emdiffuse.io import save_npz
from emdiffuse.models.registry import build_method

from test_methods import QUIET, TINY, toy_pairs

REPO = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    inputs, targets = toy_pairs(n=4, size=32)
    method = build_method("emdiffuse", TINY["emdiffuse"], device=torch.device("cpu"), seed=0)
    method.fit(inputs, targets, checkpoint_path=root / "ckpt.pt", **QUIET)
    method.save(root / "model.pt")
    save_npz(root / "pairs.npz", inputs=inputs, targets=targets)
    return root


def test_noise_levels_prints_every_level_and_each_chain(tiny_model):
    out = bench("noise_levels.py", "--model", str(tiny_model / "model.pt"), "--pairs", str(tiny_model / "pairs.npz"),
                "--steps", "5", "2", "--threads", "1")
    table = [line.split() for line in out.splitlines() if line.strip() and line.split()[0][0].isdigit()]
    assert [float(row[0]) for row in table] == [1e-4, 1e-3, 1e-2, 0.1, 0.3, 0.6, 0.9, 0.99]
    assert "ancestral    5 steps" in out and "ancestral    2 steps" in out and "target means" in out


def test_restore_1024_restores_with_the_models_settings_and_overrides(tiny_model):
    out = bench("restore_1024.py", "--model", str(tiny_model / "model.pt"), "--size", "48", "--steps", "2",
                "--threads", "1")
    assert "settings: sampler ddim, steps 2, samples 2, tile 16, overlap 4" in out
    assert "restored in" in out and "tile-sample evaluations" in out


def test_train_speed_compares_both_allocators_in_child_processes():
    out = bench("train_speed.py", "--preset", "tiny", "--patch", "16", "--iterations", "2", "--repeats", "1")
    assert "default  allocator" in out and "tuned    allocator" in out and "tuned / default:" in out


def test_speed_compares_the_reference_and_ours_on_the_same_weights():
    out = bench("speed.py", "--size", "0", "--repeats", "1", "--threads", "1", "--breakdown")
    rows = {line.split()[0] + " " + line.split()[1] for line in out.splitlines() if line.startswith("    ") and
            line.split()[0] in ("reference", "ours")}
    assert rows == {"reference fp32", "reference bf16+CL", "ours fp32", "ours bf16+CL"}
    assert "within the tolerance" in out  # bf16 close to fp32; fp32 equality is asserted inside the script
    breakdown = out.split("by operator category")[1].splitlines()
    shares = {line[:24].strip(): float(line.split()[-1]) for line in breakdown[2:] if line.startswith("    ")}
    assert {"convolution", "group norm", "total"} <= set(shares) and shares["convolution"] > 0
    assert shares["total"] == pytest.approx(sum(v for k, v in shares.items() if k != "total"), abs=0.01)


def test_train_speed_compares_fp32_and_bf16_training():
    out = bench("train_speed.py", "--amp", "--method", "care", "--patch", "16", "--iterations", "2", "--repeats", "1")
    assert "CARE, batch 8, patch 16" in out and "fp32     precision" in out and "bf16 / fp32:" in out
