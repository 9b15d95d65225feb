"""The generic, resumable training loop shared by every learned method.

A run killed at any point and restarted from its checkpoint ends with exactly the weights an
uninterrupted run ends with (bit-for-bit on the CPU): the checkpoint holds the model, EMA,
optimiser, schedulers, the patch sampler's RNG state, torch's RNG state and the loss history.
"""

from __future__ import annotations

import copy
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from emdiffuse import __version__
from emdiffuse.device import bf16_pays
from emdiffuse.io import atomic_path
from emdiffuse.models.patches import PatchSampler

CHECKPOINT_VERSION = 1


@dataclass
class TrainResult:
    model: nn.Module
    ema_model: nn.Module | None
    history: list[dict]


class ProgressSchedule:
    """A whole-run LR schedule laid out over the run's *progress* (0 to 1) instead of its iterations.

    ``scheduler`` is a torch scheduler built for ``resolution`` steps (e.g. a one-cycle); the
    training loop advances it to ``progress * resolution`` after every iteration, where progress
    is the larger of the share of iterations done and the share of the wall-clock budget used.
    This lets a schedule that must span the whole run (PSSR's one-cycle) span a ``seconds`` budget,
    whose number of iterations is unknown in advance.
    """

    def __init__(self, scheduler, resolution: int):
        self.scheduler, self.resolution, self.done = scheduler, int(resolution), 0

    def advance(self, progress: float) -> None:
        target = min(int(progress * self.resolution), self.resolution)
        while self.done < target:
            self.scheduler.step()
            self.done += 1

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(), "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.done = state["done"]


class LRSchedules:
    """The run's learning-rate schedules, stepped after every iteration: a linear warm-up over
    ``warmup`` iterations (official: GradualWarmupScheduler), a ReduceLROnPlateau on each epoch's
    mean training loss (``plateau = {"every": n, **kwargs}``; CARE, no validation set) and any
    torch scheduler built by ``scheduler(optimizer)`` (a :class:`ProgressSchedule` follows the run's
    progress instead). Each is checkpointed like the optimiser (:meth:`parts`)."""

    def __init__(self, opt: torch.optim.Optimizer, warmup: int, plateau: dict | None, scheduler):
        self.scheduler = scheduler(opt) if scheduler is not None else None
        self.warmup = warmup
        self.warm = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup)) if warmup else None
        self.every = plateau["every"] if plateau else None
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **{k: v for k, v in plateau.items()
                                                                            if k != "every"})
                        if plateau else None)

    def parts(self) -> dict:
        return {"warmup": self.warm, "plateau": self.plateau, "scheduler": self.scheduler}

    def step(self, it: int, history: list[dict], progress: float) -> None:
        if self.warm is not None and it < self.warmup:
            self.warm.step()
        if self.plateau is not None and it % self.every == 0:
            self.plateau.step(float(np.mean([h["loss"] for h in history[-self.every :]])))
        if isinstance(self.scheduler, ProgressSchedule):
            self.scheduler.advance(progress)
        elif self.scheduler is not None:
            self.scheduler.step()


class EMA:
    """Exponential moving average of weights, updated every step (official decay 0.9999)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p, 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def train_loop(
    model: nn.Module,
    loss_fn: Callable[[tuple[torch.Tensor, torch.Tensor]], torch.Tensor],
    sampler: PatchSampler,
    *,
    iterations: int | None,
    lr: float,
    optimizer: str = "adam",
    adam_eps: float = 1e-8,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
    warmup: int = 0,
    ema_decay: float | None = None,
    plateau: dict | None = None,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    checkpoint_path: str | Path,
    checkpoint_every: int,
    device: torch.device,
    seed: int,
    seconds: float | None = None,
    amp: bool = False,
    meta: dict | None = None,
    callback: Callable[[int], None] | None = None,
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> TrainResult:
    """Train ``model`` on batches from ``sampler`` for ``iterations`` steps, resuming if possible.

    ``loss_fn`` gets ``(inputs, targets)`` tensors on ``device`` and returns a scalar loss.
    ``warmup``, ``plateau``, ``scheduler``: the learning-rate schedules (:class:`LRSchedules`;
    ``scheduler(optimizer)`` builds any torch scheduler: StepLR for RCAN, OneCycleLR for PSSR).
    ``seconds``: a wall-clock budget. Training stops after the first iteration whose cumulative
    training time (the history's ``seconds``, which a resumed run continues) reaches it, and
    checkpoints there, so a killed run still resumes and a finished one is not retrained.
    ``iterations`` is then a cap (None: none). Time lost between the last checkpoint and a kill
    is not counted. How many iterations fit depends on the machine: not reproducible.
    ``meta``: anything that must match for a checkpoint to be resumed (e.g. the method params);
    a checkpoint of a different run is never resumed: it is kept aside and training starts afresh.
    ``callback(iteration)`` runs after every step (and after its checkpoint, if any).
    ``amp``: mixed precision, see :func:`amp_dtype`; each history entry records the precision used.
    """
    from . import distributed

    checkpoint_path = Path(checkpoint_path)
    if iterations is None and seconds is None:
        raise ValueError("train_loop: give iterations, seconds or both")
    rank, processes = distributed.world()
    model.to(device)
    ema = EMA(model, ema_decay) if ema_decay is not None else None
    opt = _optimizer(model, optimizer, lr, adam_eps, betas, weight_decay)
    schedules = LRSchedules(opt, warmup, plateau, scheduler)
    autocast = amp_dtype(amp, device)
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast]
    scaler = torch.amp.GradScaler("cuda") if autocast == torch.float16 else None
    if precision != "fp32":  # "auto" resolves per machine: never resume a run in another precision
        meta = {**(meta or {}), "precision": precision}
    if processes > 1:  # a run on another number of devices is another run
        meta = {**(meta or {}), "processes": processes}
    parts = {"model": model, "optimizer": opt, **schedules.parts(), "scaler": scaler}
    if ema is not None:
        parts["ema"] = ema.model

    torch.manual_seed(seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    start, history = 0, []
    checkpoint = _resumable(checkpoint_path, meta, iterations, seconds, log) if rank == 0 else None
    if processes > 1 and distributed.broadcast(checkpoint is not None) and rank > 0:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)  # rank 0 kept it
    if checkpoint is not None:
        start, history = _restore(checkpoint, parts, sampler, device, rank)
        goal = f"/{iterations}" if iterations is not None else ""
        goal += f" (deadline {seconds:g} s, {history[-1]['seconds'] if history else 0.0:.1f} s done)" if seconds else ""
        log(f"{checkpoint_path}: resuming at iteration {start}{goal}")

    model.train()
    t0, seconds0 = time.perf_counter(), history[-1]["seconds"] if history else 0.0
    bar = tqdm(total=iterations, initial=start, disable=not progress or rank > 0, desc="train", dynamic_ncols=True)
    steps = range(start + 1, iterations + 1) if iterations is not None else itertools.count(start + 1)
    for it in steps:
        if seconds is not None and history and history[-1]["seconds"] >= seconds:
            break  # the deadline was reached (also: a resumed run that had already reached it)
        arrays = sampler.next()
        if processes > 1:  # every process drew the same global batch: each trains on its share
            if len(arrays[0]) % processes:
                raise ValueError(f"train.batch_size {len(arrays[0])} is not a multiple of the {processes} devices")
            arrays = tuple(a[rank::processes] for a in arrays)
        batch = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays)
        step_lr = opt.param_groups[0]["lr"]
        sync = (lambda: distributed.average_gradients(model.parameters())) if processes > 1 else None
        loss = _step(model, loss_fn, batch, opt, scaler, autocast, device, sync)
        if ema is not None:
            ema.update(model)
        elapsed = seconds0 + time.perf_counter() - t0
        if processes > 1:  # the same numbers on every process: the same scheduler and deadline decisions
            loss, elapsed = distributed.mean([loss, elapsed], device)
        history.append({"iteration": it, "loss": loss, "lr": step_lr, "seconds": elapsed, "precision": precision})
        schedules.step(it, history, _progress(it, iterations, elapsed, seconds))
        out_of_time = seconds is not None and history[-1]["seconds"] >= seconds
        if it % checkpoint_every == 0 or it == iterations or out_of_time:
            ranks = distributed.gather(_rng_state(device)) if processes > 1 else None
            if rank == 0:
                _save(checkpoint_path, it, parts, sampler, history, meta, device, ranks)
        bar.update()
        bar.set_postfix(loss=f"{loss:.4g}", lr=f"{step_lr:.3g}", refresh=False)
        if callback is not None:
            callback(it)
    bar.close()
    model.eval()
    return TrainResult(model, ema.model if ema is not None else None, history)


def _progress(it: int, iterations: int | None, elapsed: float, seconds: float | None) -> float:
    """Share of the run done: of its iterations, or of its seconds, whichever is further."""
    done = it / iterations if iterations else 0.0
    return min(1.0, max(done, elapsed / seconds if seconds else 0.0))


def _optimizer(model: nn.Module, name: str, lr: float, eps: float, betas, weight_decay: float) -> torch.optim.Optimizer:
    kwargs = {"lr": lr, "eps": eps, "betas": tuple(betas), "weight_decay": weight_decay}
    if name == "adam":
        return torch.optim.Adam(model.parameters(), **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), **kwargs)
    raise ValueError(f"optimizer {name!r}: expected 'adam' or 'adamw'")


AMP_MODES = (False, True, "auto")


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training with ``amp`` on ``device``; None is float32.

    True: bf16 (on CUDA without bf16, fp16 with loss scaling; on MPS float32). "auto": the same on
    CUDA; on the CPU bf16 where it has bf16 instructions (AMX or AVX512-BF16, :func:`bf16_pays`),
    where CPU autocast pays (``bench/train_speed.py --amp``, EMDiffuse cpu-small / CARE against
    float32: 1.5x / 2.6x on a 2-core AMX Xeon, 1.33x / 1.78x on a 2-core AVX512-BF16 EPYC); else float32.
    Weights, optimiser state and the loss stay float32 either way.
    """
    if amp not in AMP_MODES or not isinstance(amp, (bool, str)):
        raise ValueError(f"train.amp must be one of {AMP_MODES}, got {amp!r}")
    if not amp or device.type == "mps":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and (amp is True or bf16_pays(device)):
        return torch.bfloat16
    return None


def _step(model, loss_fn, batch, opt, scaler, autocast, device, sync=None) -> float:
    """One optimiser step; ``sync`` (several devices) averages the gradients before it."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
        loss = loss_fn(batch)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss is {loss.item()}; lower the learning rate or check the data")
    (loss if scaler is None else scaler.scale(loss)).backward()
    if sync is not None:
        sync()
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    return loss.item()


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    if "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def _save(path: Path, iteration: int, parts: dict, sampler: PatchSampler, history, meta, device,
          ranks: list[dict] | None = None) -> None:
    """``ranks``: every process's random state (several devices), each resumed with its own."""
    checkpoint = {
        "version": CHECKPOINT_VERSION,
        "emdiffuse_version": __version__,
        "iteration": iteration,
        "meta": meta,
        **{k: v.state_dict() for k, v in parts.items() if v is not None},
        "rng": {**_rng_state(device), "sampler": sampler.state},
        "history": history,
        **({"rng_ranks": ranks} if ranks is not None else {}),
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _resumable(path: Path, meta, iterations: int | None, seconds: float | None, log) -> dict | None:
    """The checkpoint at ``path`` if this run can continue it. One it cannot (unreadable, another
    format, written for other settings, or trained past this run's iterations or deadline) is kept
    aside as ``<name>.stale<suffix>`` and training starts afresh: changing a hyperparameter re-runs
    training without a manual clean-up, and nothing is deleted."""
    if not path.exists():
        return None
    why = None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        checkpoint, why = None, f"not a readable training checkpoint ({exc})"
    if why is None and (not isinstance(checkpoint, dict) or checkpoint.get("version") != CHECKPOINT_VERSION):
        why = f"not a version-{CHECKPOINT_VERSION} training checkpoint"
    elif why is None and checkpoint["meta"] != meta:
        why = f"written for a different run ({checkpoint['meta']!r}, now {meta!r})"
    elif why is None and iterations is not None and checkpoint["iteration"] > iterations:
        why = f"at iteration {checkpoint['iteration']}, beyond the requested {iterations}"
    elif why is None and seconds is not None and len(checkpoint["history"]) > 1 \
            and checkpoint["history"][-2]["seconds"] >= seconds:  # its deadline was passed before the last step
        why = f"{checkpoint['history'][-1]['seconds']:.1f} s of training, beyond the requested {seconds:g} s"
    if why is None:
        return checkpoint
    aside = path.with_name(f"{path.stem}.stale{path.suffix}")
    os.replace(path, aside)
    log(f"{path}: {why}; kept aside as {aside.name}, training afresh")
    return None


def _restore(checkpoint: dict, parts: dict, sampler: PatchSampler, device, rank: int = 0) -> tuple[int, list[dict]]:
    for key, part in parts.items():
        if part is not None:
            part.load_state_dict(checkpoint[key])
    _set_rng_state(checkpoint["rng_ranks"][rank] if "rng_ranks" in checkpoint else checkpoint["rng"], device)
    sampler.state = checkpoint["rng"]["sampler"]
    return checkpoint["iteration"], checkpoint["history"]
