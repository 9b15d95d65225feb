"""EMDiffuse inference speed: our network and sampler against the official way of computing them.

Run from the repository root, e.g. ``.venv/bin/python bench/speed.py`` (a few minutes on 2 CPU
cores; ``--size 512`` or ``--steps 10`` for a quicker look). Prints

(a) seconds per network evaluation on a 1x2x256x256 input: the official-style reference network
    (``bench/reference_unet.py``, fp32) and ours (fp32; bf16 autocast + channels-last), measured
    interleaved in one run (medians), the ratio ours/reference (issue target <= 0.3), and how far
    bf16 moves the output from fp32 with trained-like weights;
(b) end to end: ``EMDiffuseMethod.predict`` on a ``--size`` square image with K samples and the
    official preset: dpmpp2m at each of ``--steps`` and ancestral at 2 steps (measured), and the
    official 1000-step ancestral sampler, EXTRAPOLATED by a straight line through those runs
    (timing it would take hours).

Timings share the machine with whatever else runs on it: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_unet import OFFICIAL, ReferenceUNet, trained_like_  # noqa: E402

from emdiffuse.models.methods import EMDiffuseMethod  # noqa: E402
from emdiffuse.models.unet import PRESETS, DiffusionUNet  # noqa: E402


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def networks(seed: int) -> tuple[torch.nn.Module, DiffusionUNet]:
    """The reference net with trained-like weights and ours holding the very same weights."""
    ref = trained_like_(ReferenceUNet(**OFFICIAL), seed).eval()
    ours = DiffusionUNet(**PRESETS["official"]).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


@torch.no_grad()
def per_evaluation(repeats: int, seed: int) -> dict[str, float]:
    ref, ours = networks(seed)
    ours_cl = DiffusionUNet(**PRESETS["official"]).eval()
    ours_cl.load_state_dict(ref.state_dict())
    ours_cl.to(memory_format=torch.channels_last)
    x = torch.randn(1, 2, 256, 256, generator=torch.Generator().manual_seed(seed))
    gamma = torch.tensor([0.5])

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ours_cl(x.contiguous(memory_format=torch.channels_last), gamma).float()

    variants = {"reference fp32": lambda: ref(x, gamma), "ours fp32": lambda: ours(x, gamma), "ours bf16+CL": bf16}
    out = {name: fn() for name, fn in variants.items()}  # warm-up, and the outputs to compare
    err = (out["ours fp32"] - out["reference fp32"]).abs().max().item()
    assert err <= 1e-5, f"our network differs from the reference by {err:.3g} in fp32"
    times = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved, so load changes hit every variant alike
        for name, fn in variants.items():
            times[name].append(timed(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n(a) one network evaluation, 1x2x256x256, {repeats} interleaved repeats, medians ({load()})")
    print(f"    output scale max|eps_hat| = {out['reference fp32'].abs().max():.3f}; "
          f"ours vs reference in fp32: max|diff| = {err:.2e}; "
          f"bf16 vs fp32: max|diff| = {(out['ours bf16+CL'] - out['ours fp32']).abs().max():.3e}, "
          f"rms = {(out['ours bf16+CL'] - out['ours fp32']).pow(2).mean().sqrt():.3e}")
    print(f"    {'network':<16}{'s/eval':>10}{'ours/ref':>10}")
    for name, t in med.items():
        print(f"    {name:<16}{t:>10.3f}{t / med['reference fp32']:>10.3f}")
    return med


def end_to_end(size: int, samples: int, steps: list[int], seed: int, precision: str, tile: int, overlap: int,
               batch: int) -> None:
    _, ours = networks(seed)
    sample = {"sampler": "dpmpp2m", "samples": samples, "tile": tile, "overlap": overlap, "batch": batch,
              "precision": precision}
    method = EMDiffuseMethod({"model": {"preset": "official"}, "train": {"iterations": 1, "warmup": 1},
                              "sample": sample}, device=torch.device("cpu"), seed=seed)
    method.diffusion.net.load_state_dict(ours.state_dict())
    method.scale = 1
    image = np.random.default_rng(seed).random((1, size, size), dtype=np.float32)

    def run(sampler: str, n: int) -> float:
        method.params["sample"].update(sampler=sampler, steps=n)
        return timed(lambda: method.predict(image, seed=seed, progress=False))

    print(f"\n(b) end to end: {size}x{size} image, K={samples}, official preset, {precision}, "
          f"{torch.get_num_threads()} threads, tile {tile} overlap {overlap} batch {batch} "
          f"(network batch {batch * samples}) ({load()})")
    rows = [(f"dpmpp2m {n} steps", n, run("dpmpp2m", n)) for n in steps]
    rows.append(("ancestral 2 steps", 2, run("ancestral", 2)))
    per_step, overhead = np.polyfit([n for _, n, _ in rows], [t for *_, t in rows], 1)  # t = overhead + n * per_step
    print(f"    {'sampler':<24}{'seconds':>10}")
    for name, _, t in rows:
        print(f"    {name:<24}{t:>10.1f}")
    print(f"    {'ancestral 1000 steps':<24}{overhead + 1000 * per_step:>10.0f}   EXTRAPOLATED: least-squares "
          f"line through the rows above, {per_step:.2f} s/step x 1000 + {overhead:.1f} s ({load()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per network variant")
    parser.add_argument("--size", type=int, default=1024, help="end-to-end image side (0: skip part b)")
    parser.add_argument("--samples", type=int, default=2, help="K samples per input")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20], help="dpmpp2m step counts to time")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4, help="tiles sampled together")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads ({load()})")
    per_evaluation(args.repeats, args.seed)
    if args.size:
        end_to_end(args.size, args.samples, sorted(args.steps), args.seed, args.precision, args.tile, args.overlap,
                   args.batch)


if __name__ == "__main__":
    main()
