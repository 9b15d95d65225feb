"""Training speed: glibc's default allocator against ``emdiffuse.device.tune_allocator``, or (``--amp``)
float32 against bf16 autocast training (``train.amp: true``; both with the tuned allocator), or
(``--layout``) the network's memory layout in bf16 autocast training (tuned allocator): as now
(contiguous) against channels_last weights and inputs, and (``--compile``) the network under
``torch.compile`` (inductor).

The allocator can only be set up before a process allocates, so each measurement runs in its own
child process; the two settings alternate, ``--repeats`` times each, and the medians are printed
with their ratio. Run from the repository root on a quiet machine:

    .venv/bin/python bench/train_speed.py                       # EMDiffuse cpu-small, batch 8, patch 64, 1 thread
    .venv/bin/python bench/train_speed.py --preset official --patch 128 --iterations 20
    .venv/bin/python bench/train_speed.py --amp                 # fp32 vs bf16 autocast
    .venv/bin/python bench/train_speed.py --amp --method care --patch 48
    .venv/bin/python bench/train_speed.py --layout --patch 48 --iterations 60 --repeats 3
    .venv/bin/python bench/train_speed.py --layout --compile --patch 48 --iterations 60 --repeats 3

``--layout`` trains with the default config's EMDiffuse settings (lr 1e-3, warm-up 100, no EMA; CARE:
lr 4e-4). The layout is changed inside the child only, from outside the package: the network's
weights go to channels_last and its forward makes its input channels_last (the network then keeps
that layout), as sampling does (``diffusion._channels_last``). Before training each child runs one
untimed forward/backward step on a batch of the same shape (for ``compiled`` that is where the
compilation happens; its seconds are printed apart from the rate), and the rate is the steady one,
iterations 2 to N from the loss history's clock (without the set-up, e.g. ~1 s of importing
torch._dynamo on the optimiser's construction, which a compiled child has already paid, nor the
final checkpoint). Training reseeds torch, so the runs see the same data and noise: their losses
differ only by the numerics of the layout (printed: the mean of the last 10, the largest relative
difference from ``contiguous`` at any iteration), except that a compiled network draws its dropout
masks from inductor's own generator (another, equally seeded trajectory). The first compilation
took ~200 s; the inductor cache (``/tmp/torchinductor_$USER``) makes later ones ~4 s.

Measured on a 2-core AVX512-BF16 EPYC without AMX (torch 2.14.1, 2026-12-04; another job was using
the cores): 1 thread, contiguous 4.87 it/s, channels_last 0.59x, compiled 0.82x, compiled_cl 0.85x;
2 threads, channels_last about 0.5-0.7x. channels_last loses in training because GroupNorm in that
layout is far slower on the CPU (bf16 backward ~30x); sampling (no backward) still gains from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ALLOCATORS, PRECISIONS = ("default", "tuned"), ("fp32", "bf16")
LAYOUTS = ("contiguous", "channels_last", "compiled", "compiled_cl")


def child(args: argparse.Namespace) -> None:
    """Train once and print {"it_per_s": ...} on the last line."""
    if args.child != "default":
        from emdiffuse.device import tune_allocator

        if not tune_allocator():
            raise SystemExit("tune_allocator needs glibc")
    import numpy as np
    import torch

    from emdiffuse.models.registry import build_method

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    targets = rng.random((8, 4 * args.patch, 4 * args.patch), dtype=np.float32)
    inputs = np.clip(targets + rng.normal(0, 0.2, targets.shape), 0, 1).astype(np.float32)
    layout = args.child in LAYOUTS
    train = {"iterations": args.iterations, "batch_size": args.batch, "patch": args.patch,
             "checkpoint_every": 10**9, "amp": args.child == "bf16" or layout}
    if args.method == "emdiffuse" and layout:  # config/config.yaml's emdiffuse.train
        params = {"model": {"preset": args.preset}, "train": {**train, "lr": 1e-3, "warmup": 100, "ema_decay": None,
                                                              "difficulty_loss": False}}
    elif args.method == "emdiffuse":
        params = {"model": {"preset": args.preset}, "train": {**train, "warmup": 1, "difficulty_loss": False}}
    else:
        params = {"train": {**train, "lr": 4e-4}}
    method = build_method(args.method, params, device=torch.device("cpu"), seed=args.seed)
    warmup = _prepare_layout(method, args) if layout else None
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        history = method.fit(inputs, targets, checkpoint_path=os.path.join(tmp, "ckpt.pt"), progress=False,
                             log=lambda *a: None)
        seconds = time.perf_counter() - start
    if layout:  # the steady rate: from the end of iteration 1 to the end of the last (no set-up, no checkpoint)
        seconds = (history[-1]["seconds"] - history[0]["seconds"]) * args.iterations / (args.iterations - 1)
    print(json.dumps({"it_per_s": args.iterations / seconds, "warmup_s": warmup, "losses": [h["loss"] for h in history]}))


def _prepare_layout(method, args: argparse.Namespace) -> float:
    """Put the method's network in the child's layout (and compile it), then time one untimed
    forward/backward step under bf16 autocast (the compilation, for the compiled settings)."""
    import torch

    diffusion = getattr(method, "diffusion", None)
    net = diffusion.net if diffusion is not None else method.net
    if args.child in ("channels_last", "compiled_cl"):
        net.to(memory_format=torch.channels_last)
        forward = net.forward
        net.forward = lambda x, *rest: forward(x.contiguous(memory_format=torch.channels_last), *rest)
    if args.child.startswith("compiled"):
        net.compile()  # in place: the parameter names (state_dict, checkpoint) stay as they are
    channels = getattr(net, "in_channel", 1)
    x = torch.rand(args.batch, channels, args.patch, args.patch) * 2 - 1
    net.train()
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if diffusion is not None:
            loss = diffusion.loss(x[:, :1], x[:, 1:])  # as in training: per-item noise levels
        else:
            loss = net(x).float().abs().mean()
    loss.backward()
    seconds = time.perf_counter() - start
    net.zero_grad(set_to_none=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="emdiffuse", choices=("emdiffuse", "care"))
    parser.add_argument("--preset", default="cpu-small", help="EMDiffuse network preset")
    parser.add_argument("--amp", action="store_true", help="compare fp32 with bf16 autocast, not the allocators")
    parser.add_argument("--layout", action="store_true",
                        help="compare the network's memory layout (contiguous, channels_last) in bf16 autocast training")
    parser.add_argument("--compile", action="store_true",
                        help="with --layout: also torch.compile the network (contiguous and channels_last)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=ALLOCATORS + PRECISIONS + LAYOUTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    if args.amp and args.layout:
        parser.error("--amp and --layout: one comparison at a time")
    if args.compile and not args.layout:
        parser.error("--compile needs --layout")
    if args.layout:
        settings, what = LAYOUTS if args.compile else LAYOUTS[:2], "bf16"
    else:
        settings = PRECISIONS if args.amp else ALLOCATORS
        what = "precision (tuned allocator)" if args.amp else "allocator"
    rates, results = {s: [] for s in settings}, {s: [] for s in settings}
    for _ in range(args.repeats):
        for setting in settings:
            out = subprocess.run([sys.executable, *sys.argv, "--child", setting], check=True, capture_output=True,
                                 text=True).stdout
            results[setting].append(json.loads(out.strip().splitlines()[-1]))
            rates[setting].append(results[setting][-1]["it_per_s"])
    name = f"EMDiffuse {args.preset}" if args.method == "emdiffuse" else args.method.upper()
    print(f"{name}, batch {args.batch}, patch {args.patch}, {args.iterations} iterations, "
          f"{args.threads} thread(s), {args.repeats} alternating runs each (load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()) + ")")
    med = {s: statistics.median(r) for s, r in rates.items()}
    width = max(8, *map(len, settings))
    for s in settings:
        print(f"    {s:<{width}} {what} {med[s]:6.2f} it/s  (runs: {', '.join(f'{r:.2f}' for r in rates[s])})")
    if not args.layout:
        print(f"    {settings[1]} / {settings[0]}: {med[settings[1]] / med[settings[0]]:.3f}")
        return
    for s in settings[1:]:
        print(f"    {s} / {settings[0]}: {med[s] / med[settings[0]]:.3f}")
    # The same data and noise in every run: the losses differ by the numerics of the layout only. The
    # output layer starts at zero, so iteration 1's loss is the same everywhere; from iteration 2 on they drift.
    ref = results[settings[0]][0]["losses"]
    print(f"    untimed first step (compilation for compiled*, s, median); loss: mean of the last 10 iterations, "
          f"largest relative difference from {settings[0]}'s over the {len(ref)} iterations, runs alike?")
    for s in settings:
        warm = statistics.median(r["warmup_s"] for r in results[s])
        losses = results[s][0]["losses"]
        worst = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
        same = all(r["losses"] == losses for r in results[s])
        print(f"    {s:<{width}} {warm:7.2f} s   loss {statistics.mean(losses[-10:]):.6f}  max rel. diff {worst:.2e}  "
              f"{'bit-identical' if same else 'NOT identical'} across runs")


if __name__ == "__main__":
    main()
