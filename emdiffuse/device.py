"""One place that picks the compute device, the thread count and the seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def pick_device(prefer: str = "auto") -> torch.device:
    """CUDA if present, then Apple MPS, else CPU; ``prefer`` forces one ("cpu", "cuda", "mps")."""
    if prefer != "auto":
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_threads(threads: int | None) -> None:
    """Use the rule's thread count for torch (Snakemake sets OMP_NUM_THREADS, torch must follow)."""
    if threads:
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
