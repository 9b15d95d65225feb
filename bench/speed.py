"""EMDiffuse inference speed: our network and sampler against the official way of computing them.

Run from the repository root, e.g. ``.venv/bin/python bench/speed.py`` (a few minutes on 2 CPU
cores; ``--size 512`` or ``--steps 10`` for a quicker look). Prints

(a) seconds per network evaluation on a 1x2x256x256 input: the official-style reference network
    (``bench/reference_unet.py``; fp32, and under bf16 autocast + channels-last alone) and ours
    (fp32; bf16 autocast + channels-last), measured
    interleaved in one run (medians of wall and of process CPU time; under load only the CPU time
    of a 1-thread run is meaningful), the ratio ours/reference (issue target <= 0.3), and how far
    bf16 moves the output from fp32 with trained-like weights, checked against a stated tolerance
    (``BF16_TOLERANCE``);
(a') with ``--breakdown``: both networks' evaluation split by operator category (torch.profiler), and
    each category of ours as a share of the reference's whole evaluation;
(b) end to end: ``EMDiffuseMethod.predict`` on a ``--size`` square image with K samples and the
    official preset: dpmpp2m at each of ``--steps`` and ancestral at 2 steps (measured), and the
    official 1000-step ancestral sampler, EXTRAPOLATED by a straight line through those runs
    (timing it would take hours).

Timings share the machine with whatever else runs on it: the load average is printed with them.

What ours does differently from the reference (same weights, same function): bf16 autocast on
channels-last tensors, GroupNorm kept in bf16, fused scaled-dot-product attention, FiLM folded
into the GroupNorm affine when the batch shares one noise level (as in sampling), SiLU and the
residual add in place, and the up-sampling blocks' conv computed on the small image (16 instead
of 36 multiply-adds per output; ``unet.upsample_conv``). The convolutions then run close to the
CPU's bf16 peak: ~100 GFLOP per evaluation, about 0.28 of the reference's time on their own.
``--tuned-malloc`` sets glibc's mmap/trim thresholds to 1 GiB before anything is allocated (both
networks; ``emdiffuse.device.tune_allocator``, which the workflow's jobs and ``emdiffuse predict`` use):
with the default allocator the reference takes ~10^5 page faults per evaluation (ours
~6000), which costs it ~15 % of its time, so the ratio is lower than with a tuned allocator.
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

from emdiffuse.device import tune_allocator  # noqa: E402
from emdiffuse.models.methods import EMDiffuseMethod  # noqa: E402
from emdiffuse.models.unet import PRESETS, DiffusionUNet  # noqa: E402


BF16_TOLERANCE = {"max": 0.05, "rms": 0.01}  # |eps_hat(bf16) - eps_hat(fp32)| for unit-scale noise estimates


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_both(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


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
    ref_cl = ReferenceUNet(**OFFICIAL).eval().to(memory_format=torch.channels_last)
    ref_cl.load_state_dict(ref.state_dict())
    x = torch.randn(1, 2, 256, 256, generator=torch.Generator().manual_seed(seed))
    gamma = torch.tensor([0.5])

    def bf16(net):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x.contiguous(memory_format=torch.channels_last), gamma).float()
        return run

    # "reference bf16+CL": what autocast and channels-last alone do to the official computation
    variants = {"reference fp32": lambda: ref(x, gamma), "reference bf16+CL": bf16(ref_cl),
                "ours fp32": lambda: ours(x, gamma), "ours bf16+CL": bf16(ours_cl)}
    out = {name: fn() for name, fn in variants.items()}  # warm-up, and the outputs to compare
    err = (out["ours fp32"] - out["reference fp32"]).abs().max().item()
    assert err <= 1e-5, f"our network differs from the reference by {err:.3g} in fp32"
    times = {name: [] for name in variants}
    for _ in range(repeats):  # interleaved, so load changes hit every variant alike
        for name, fn in variants.items():
            times[name].append(timed_both(fn))
    med = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) for name, t in times.items()}
    diff = out["ours bf16+CL"] - out["ours fp32"]
    max_diff, rms = diff.abs().max().item(), diff.pow(2).mean().sqrt().item()
    ok = max_diff <= BF16_TOLERANCE["max"] and rms <= BF16_TOLERANCE["rms"]
    print(f"\n(a) one network evaluation, 1x2x256x256, {repeats} interleaved repeats, medians ({load()})")
    print(f"    output scale max|eps_hat| = {out['reference fp32'].abs().max():.3f}, std = "
          f"{out['reference fp32'].std():.3f}; ours vs reference in fp32: max|diff| = {err:.2e}")
    print(f"    bf16 vs fp32: max|diff| = {max_diff:.3e}, rms = {rms:.3e}: "
          f"{'within' if ok else 'OUTSIDE'} the tolerance max {BF16_TOLERANCE['max']}, rms {BF16_TOLERANCE['rms']}")
    print(f"    {'network':<20}{'s/eval':>10}{'/ref fp32':>10}{'cpu s':>10}{'/ref fp32':>10}")
    for name, t in med.items():
        print(f"    {name:<20}{t:>10.3f}{t / med['reference fp32']:>10.3f}"
              f"{cpu[name]:>10.3f}{cpu[name] / cpu['reference fp32']:>10.3f}")
    return med


# Operator categories of the breakdown (profiler keys, matched by substring).
CATEGORIES = {"convolution": ("conv", "mkldnn_convolution"), "group norm": ("group_norm",),
              "activation": ("silu", "sigmoid", "mul"), "attention": ("attention", "einsum", "bmm", "softmax"),
              "copies": ("cat", "copy_", "to_copy", "clone", "contiguous", "slice", "index"),
              "linear (embedding)": ("addmm", "linear"), "add": ("add",)}


def categorise(key: str) -> str:
    return next((name for name, parts in CATEGORIES.items() if any(p in key for p in parts)), "other")


@torch.no_grad()
def breakdown(repeats: int, seed: int) -> None:
    """Per-evaluation seconds by operator category (torch.profiler self CPU time of the calling thread,
    i.e. the op's wall time, parallel regions included), for the reference in fp32 and ours in
    bf16+CL: what is left to gain, and how much of the reference's time our convolutions alone take."""
    from torch.profiler import ProfilerActivity, profile

    ref, ours = networks(seed)
    ours.to(memory_format=torch.channels_last)
    x = torch.randn(1, 2, 256, 256, generator=torch.Generator().manual_seed(seed))
    gamma = torch.tensor([0.5])
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def ours_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ours(x_cl, gamma)

    totals = {}
    for name, fn in (("reference fp32", lambda: ref(x, gamma)), ("ours bf16+CL", ours_bf16)):
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                fn()
        by_cat: dict[str, float] = {}
        for event in prof.key_averages():
            cat = categorise(event.key)
            by_cat[cat] = by_cat.get(cat, 0.0) + event.self_cpu_time_total / 1e6 / repeats
        totals[name] = by_cat
    ref_total = sum(totals["reference fp32"].values())
    print(f"\n(a') per evaluation by operator category, torch.profiler, {repeats} evaluations each ({load()})")
    print(f"    {'category':<20}{'reference fp32 s':>18}{'ours bf16+CL s':>16}{'ours / ref total':>18}")
    for cat in [*CATEGORIES, "other"]:
        r, o = totals["reference fp32"].get(cat, 0.0), totals["ours bf16+CL"].get(cat, 0.0)
        print(f"    {cat:<20}{r:>18.4f}{o:>16.4f}{o / ref_total:>18.3f}")
    ours_total = sum(totals["ours bf16+CL"].values())
    print(f"    {'total':<20}{ref_total:>18.4f}{ours_total:>16.4f}{ours_total / ref_total:>18.3f}")


def end_to_end(size: int, samples: int, steps: list[int], seed: int, precision: str, tile: int, overlap: int,
               batch: int) -> None:
    _, ours = networks(seed)
    sample = {"sampler": "dpmpp2m", "samples": samples, "tile": tile, "overlap": overlap, "batch": batch,
              "precision": precision}
    method = EMDiffuseMethod({"model": {"preset": "official"}, "train": {"iterations": 1, "warmup": 1},
                              "predict": sample}, device=torch.device("cpu"), seed=seed)
    method.diffusion.net.load_state_dict(ours.state_dict())
    method.scale = 1
    image = np.random.default_rng(seed).random((1, size, size), dtype=np.float32)

    def run(sampler: str, n: int) -> float:
        return timed(lambda: method.predict(image, seed=seed, progress=False, sampler=sampler, steps=n))

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
    parser.add_argument("--breakdown", action="store_true", help="also profile both networks by operator category")
    parser.add_argument("--tuned-malloc", action="store_true", help="glibc mmap/trim thresholds 1 GiB (both networks)")
    args = parser.parse_args()
    if args.tuned_malloc and not tune_allocator():
        raise SystemExit("--tuned-malloc needs glibc")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads ({load()})")
    per_evaluation(args.repeats, args.seed)
    if args.breakdown:
        breakdown(args.repeats, args.seed)
    if args.size:
        end_to_end(args.size, args.samples, sorted(args.steps), args.seed, args.precision, args.tile, args.overlap,
                   args.batch)


if __name__ == "__main__":
    main()
