"""Where a trained EMDiffuse model is accurate: its clean-image estimate per noise level, and what
the ancestral sampler makes of each test crop at a few chain lengths.

Why: on CPU-budget models the official 1000-step chain scores below the noisy input (see
``results/tables/sampling.md``) while 20-50 steps do well. This prints the evidence: the x0
estimate from a correctly noised target at alpha_bar 1e-4 ... 0.99 (the long chains start near 0,
the short ones at 0.1-0.4) and, per crop, the PSNR and mean intensity of ancestral samples. For a
model trained with the difficulty-aware loss it also prints how that loss weights each level.
Run from the repository root after the default workflow:

    .venv/bin/python bench/noise_levels.py --model results/models/denoise/phantom_neuropil/emdiffuse/model.pt \\
        --pairs data/pairs/denoise/phantom_neuropil/test_8x64.npz --steps 1000 50 20
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from emdiffuse.device import set_threads
from emdiffuse.io import load_npz
from emdiffuse.models.methods import EMDiffuseMethod, upsample
from emdiffuse.models.registry import load_method

ALPHA_BARS = (1e-4, 1e-3, 1e-2, 0.1, 0.3, 0.6, 0.9, 0.99)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


@torch.no_grad()
def x0_by_level(model, cond: torch.Tensor, target: torch.Tensor, seed: int) -> None:
    """eps MSE and the PSNR of the clipped x0 estimate when the net sees the target noised to each level;
    for a model trained with the difficulty-aware loss also its mean log-scale s and the weight
    exp(-2s) that loss gives the level's noise error (at the optimum exp(2s) = the error's MSE)."""
    generator = torch.Generator().manual_seed(seed)
    aleatoric = model.loss_name == "aleatoric"
    with model._network("fp32", cond.device) as net:
        print(f"{'alpha_bar':>10}{'eps MSE':>10}{'x0 PSNR':>10}" + (f"{'mean s':>10}{'weight':>10}" if aleatoric else ""))
        for abar in ALPHA_BARS:
            noise = torch.randn(target.shape, generator=generator)
            x = math.sqrt(abar) * target + math.sqrt(1 - abar) * noise
            out = net(torch.cat([cond, x], dim=1), torch.full((len(x),), abar))
            eps, log_scale = out[:, :model.out_channels], out[:, model.out_channels:]
            x0 = ((x - math.sqrt(1 - abar) * eps) / math.sqrt(abar)).clamp(-1, 1)
            line = (f"{abar:>10g}{float(((eps - noise) ** 2).mean()):>10.4f}"
                    f"{psnr(((x0 + 1) / 2).numpy(), ((target + 1) / 2).numpy()):>10.2f}")
            if aleatoric:
                line += f"{float(log_scale.mean()):>+10.2f}{float(torch.exp(-2 * log_scale).mean()):>10.0f}"
            print(line)


def _means(images: np.ndarray) -> str:
    return "[" + ", ".join(f"{m:.2f}" for m in images.mean(axis=(1, 2), dtype=np.float64)) + "]"


@torch.no_grad()
def chains(model, cond: torch.Tensor, targets: np.ndarray, steps: list[int], seed: int) -> None:
    """Per crop: PSNR and mean intensity of one ancestral sample per chain length (bf16, as the workflow)."""
    print(f"\ntarget means {_means(targets)}")
    for n in steps:
        out = model.sample(cond, sampler="ancestral", steps=n, generator=torch.Generator().manual_seed(seed),
                           precision="bf16")
        images = ((out[:, 0] + 1) / 2).clamp(0, 1).numpy()
        scores = [round(psnr(p, t), 1) for p, t in zip(images, targets)]
        alpha_bar_start = float(np.prod(1 - np.linspace(model.test_schedule["start"], model.test_schedule["end"], n)))
        print(f"ancestral {n:>4} steps (starts at alpha_bar {alpha_bar_start:.2g}): PSNR {scores}, "
              f"mean {_means(images)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a trained EMDiffuse model.pt")
    parser.add_argument("--pairs", required=True, help="an npz of test pairs (inputs, targets), e.g. a study subset")
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 50, 20])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)
    method = load_method(args.model, device=torch.device("cpu"))
    if not isinstance(method, EMDiffuseMethod):
        raise SystemExit(f"{args.model}: not an EMDiffuse model")
    pairs = load_npz(args.pairs, required=("inputs", "targets"))
    cond = torch.from_numpy(np.ascontiguousarray(upsample(pairs["inputs"], method.scale, "bilinear")))[:, None] * 2 - 1
    model = method._sampling_model()
    x0_by_level(model, cond, torch.from_numpy(pairs["targets"])[:, None] * 2 - 1, args.seed)
    chains(model, cond, pairs["targets"], args.steps, args.seed)


if __name__ == "__main__":
    main()
