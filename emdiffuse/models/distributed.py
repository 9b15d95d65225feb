"""Data-parallel training on several GPUs within one job, for the paper-scale models.

One process per device (:func:`spawn`); every process draws the same global batch from the same
seeded sampler and trains on its share (``batch[rank::world]``), and the gradients are averaged
across processes before every optimiser step (what DistributedDataParallel does, done explicitly
because a method's loss calls its networks directly). The run therefore follows single-device
training on the global batch up to float rounding and the diffusion noise, which each process draws
from its own stream, and up to losses with batch-wide statistics, which each process takes over its
share (SR-UNet's cubic weighting divides by the batch's largest error). Loss and elapsed time are
averaged across processes, so every process takes the same scheduler and deadline decisions. Rank 0
alone writes checkpoints (with every rank's random state, so a killed run resumes exactly), the model
file and the history.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def devices_for(gpus: int) -> int:
    """Processes for a job given ``gpus`` GPUs (its ``gpu`` resource): one per visible GPU asked
    for, one on a machine without CUDA. More asked for than are visible is an error."""
    if gpus <= 1 or not torch.cuda.is_available():
        return 1
    visible = torch.cuda.device_count()
    if gpus > visible:
        raise RuntimeError(f"the job asks for {gpus} GPUs (resources gpu) but this torch sees {visible}")
    return gpus


def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run(fn, devices: int, *args) -> None:
    """``fn(rank, devices, *args)``: in this process for one device, else in :func:`spawn`'s processes."""
    if devices > 1:
        spawn(fn, devices, *args)
    else:
        fn(0, 1, *args)


def rank_device(rank: int, devices: int) -> torch.device:
    """The device process ``rank`` of ``devices`` trains on (one device: the usual pick)."""
    from ..device import pick_device

    if devices == 1:
        return pick_device()
    return torch.device(f"cuda:{rank}" if torch.cuda.is_available() else "cpu")


def spawn(fn, devices: int, *args) -> None:
    """Run ``fn(rank, devices, *args)`` in ``devices`` processes joined in one process group (NCCL
    on CUDA, gloo on the CPU, which the tests use); process ``rank`` trains on ``cuda:rank``."""
    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port on this machine for the group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(devices, port, fn, args), nprocs=devices, join=True)


def _worker(rank: int, devices: int, port: int, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=devices)
    try:
        fn(rank, devices, *args)
    finally:
        dist.destroy_process_group()


def average_gradients(parameters) -> None:
    """Every process's gradients replaced by their mean over processes (one flat all-reduce)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def mean(values: list[float], device: torch.device) -> list[float]:
    """The mean of each value over processes (identical on every process afterwards)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()


def gather(obj) -> list:
    """``obj`` of every process, in rank order, on every process."""
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every process."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
