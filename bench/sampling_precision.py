"""Sampling speed of EMDiffuse in float32 and bf16 autocast, side by side in one process.

Why: ``precision: auto`` samples in bf16 only where that is faster (``emdiffuse.device.bf16_pays``).
Prints seconds per network evaluation of each precision and their ratio on this machine.

    python bench/sampling_precision.py [--size 192] [--batch 2] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from emdiffuse.device import bf16_pays, pick_device, set_threads
from emdiffuse.models.diffusion import ConditionalDiffusion
from emdiffuse.models.unet import PRESETS, DiffusionUNet

SCHEDULES = ({"kind": "linear", "start": 1e-6, "end": 1e-2, "steps": 2000},
             {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 1000})


def seconds_per_eval(model: ConditionalDiffusion, cond: torch.Tensor, precision: str, steps: int) -> float:
    model.sample(cond, sampler="ancestral", steps=2, precision=precision)  # warm-up
    start = time.perf_counter()
    model.sample(cond, sampler="ancestral", steps=steps, precision=precision,
                 generator=torch.Generator().manual_seed(0))
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    args = parser.parse_args()
    set_threads(args.threads)
    device = pick_device()
    model = ConditionalDiffusion(DiffusionUNet(**PRESETS[args.preset]), *SCHEDULES).to(device)
    cond = torch.rand(args.batch, 1, args.size, args.size, device=device) * 2 - 1
    print(f"{platform.processor() or platform.machine()}, device {device}, {args.threads} thread(s), "
          f"{args.preset} at batch {args.batch} x {args.size}^2; bf16_pays: {bf16_pays(device)}")
    times = {p: seconds_per_eval(model, cond, p, args.steps) for p in ("fp32", "bf16")}
    for p, t in times.items():
        print(f"{p}: {t:.3f} s per network evaluation")
    print(f"bf16 / fp32 time: {times['bf16'] / times['fp32']:.2f}")


if __name__ == "__main__":
    main()
