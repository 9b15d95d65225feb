"""One place that picks the compute device, the thread count, the allocator and the seeds."""

from __future__ import annotations

import ctypes
import os
import random

import numpy as np
import torch


def pick_device(prefer: str = "auto") -> torch.device:
    """CUDA if present, then Apple MPS, else CPU; ``prefer`` forces one ("cpu", "cuda", "mps").
    The choice is logged; a forced device that is not there is an error."""
    available = {"cuda": torch.cuda.is_available, "cpu": lambda: True,
                 "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if prefer == "auto":
        device = torch.device(next(kind for kind in ("cuda", "mps", "cpu") if available[kind]()))
        if device.type == "cpu":
            _refuse_lost_gpu()
    else:
        try:
            device = torch.device(prefer)
        except RuntimeError as exc:
            raise ValueError(f"device {prefer!r}: expected auto, cpu, cuda or mps ({exc})") from exc
        if not available.get(device.type, lambda: True)():
            raise ValueError(f"device {prefer!r}: no {device.type.upper()} device is visible to this torch "
                             f"({torch.__version__}); use 'auto' or 'cpu'")
    _log_device(device)
    return device


ALLOW_CPU = "EMDIFFUSE_ALLOW_CPU_FALLBACK"


def _refuse_lost_gpu() -> None:
    """A job that was given a GPU (the scheduler set CUDA_VISIBLE_DEVICES) but whose torch cannot see
    one would run for days on the CPU: stop, unless ``EMDIFFUSE_ALLOW_CPU_FALLBACK=1``."""
    assigned = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if assigned in ("", "-1", "NoDevFiles") or os.environ.get(ALLOW_CPU) == "1":
        return
    raise RuntimeError(f"this job was given GPU(s) {assigned!r} (CUDA_VISIBLE_DEVICES) but torch "
                       f"{torch.__version__} sees none (a CPU-only build, or no driver): install a CUDA build of "
                       f"torch, or set {ALLOW_CPU}=1 to run on the CPU anyway")


def _log_device(device: torch.device) -> None:
    """Every job's log says where it ran."""
    import sys

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"emdiffuse: running on {name} (torch {torch.__version__})", file=sys.stderr)


def bf16_pays(device: torch.device) -> bool:
    """Whether bfloat16 autocast beats float32 on ``device``: on CUDA, and on a CPU with bf16 matrix or
    vector instructions (Intel AMX, AVX512-BF16). Without them bf16 is emulated: on a 2-core Xeon with
    neither, ``bench/sampling_precision.py`` measured 0.76 s per bf16 network evaluation against 0.25 s
    in float32 (cpu-small, 2 x 192^2, 1 thread). On a 2-core AVX512-BF16 EPYC without AMX (torch
    2.14.1, 2026-12-04): sampling 0.158 s bf16 against 0.298 s float32; training
    (``bench/train_speed.py --amp``) EMDiffuse cpu-small 1.33x, CARE 1.78x the float32 rate."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def set_threads(threads: int | None) -> None:
    """Use the rule's thread count for torch (Snakemake sets OMP_NUM_THREADS, torch must follow),
    and tune the allocator (:func:`tune_allocator`): every torch job starts here."""
    tune_allocator()
    if threads:
        torch.set_num_threads(int(threads))
        os.environ["OMP_NUM_THREADS"] = str(int(threads))


GLIBC_THRESHOLD = 1 << 30  # bytes; M_MMAP_THRESHOLD and M_TRIM_THRESHOLD


def tune_allocator() -> bool:
    """glibc: serve blocks below 1 GiB from the heap and keep freed memory for reuse (mallopt).

    By default glibc maps large blocks (a batch of activations on big tiles) afresh and unmaps them
    when freed, so every network evaluation faults its memory in again. Measured on 2 CPU cores
    (``bench/restore_1024.py``, 1024x1024, K = 2, ancestral 20, tile 272): 40.5 s -> 30.8 s with the
    default model, 169 s -> 110 s with the official network size. Peak memory is unchanged; freed
    memory stays with the process. Returns False (and changes nothing) without glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, GLIBC_THRESHOLD) and mallopt(m_trim_threshold, GLIBC_THRESHOLD))


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
