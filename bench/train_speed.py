"""Training speed: glibc's default allocator against ``emdiffuse.device.tune_allocator``, or (``--amp``)
float32 against bf16 autocast training (``train.amp: true``; both with the tuned allocator).

The allocator can only be set up before a process allocates, so each measurement runs in its own
child process; the two settings alternate, ``--repeats`` times each, and the medians are printed
with their ratio. Run from the repository root on a quiet machine:

    .venv/bin/python bench/train_speed.py                       # EMDiffuse cpu-small, batch 8, patch 64, 1 thread
    .venv/bin/python bench/train_speed.py --preset official --patch 128 --iterations 20
    .venv/bin/python bench/train_speed.py --amp                 # fp32 vs bf16 autocast
    .venv/bin/python bench/train_speed.py --amp --method care --patch 48
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
    train = {"iterations": args.iterations, "batch_size": args.batch, "patch": args.patch,
             "checkpoint_every": 10**9, "amp": args.child == "bf16"}
    if args.method == "emdiffuse":
        params = {"model": {"preset": args.preset}, "train": {**train, "warmup": 1, "difficulty_loss": False}}
    else:
        params = {"train": {**train, "lr": 4e-4}}
    method = build_method(args.method, params, device=torch.device("cpu"), seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        method.fit(inputs, targets, checkpoint_path=os.path.join(tmp, "ckpt.pt"), progress=False, log=lambda *a: None)
        seconds = time.perf_counter() - start
    print(json.dumps({"it_per_s": args.iterations / seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="emdiffuse", choices=("emdiffuse", "care"))
    parser.add_argument("--preset", default="cpu-small", help="EMDiffuse network preset")
    parser.add_argument("--amp", action="store_true", help="compare fp32 with bf16 autocast, not the allocators")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=ALLOCATORS + PRECISIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    settings = PRECISIONS if args.amp else ALLOCATORS
    what = "precision (tuned allocator)" if args.amp else "allocator"
    rates = {s: [] for s in settings}
    for _ in range(args.repeats):
        for setting in settings:
            out = subprocess.run([sys.executable, *sys.argv, "--child", setting], check=True, capture_output=True,
                                 text=True).stdout
            rates[setting].append(json.loads(out.strip().splitlines()[-1])["it_per_s"])
    name = f"EMDiffuse {args.preset}" if args.method == "emdiffuse" else args.method.upper()
    print(f"{name}, batch {args.batch}, patch {args.patch}, {args.iterations} iterations, "
          f"{args.threads} thread(s), {args.repeats} alternating runs each (load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()) + ")")
    med = {s: statistics.median(r) for s, r in rates.items()}
    for s in settings:
        print(f"    {s:<8} {what} {med[s]:6.2f} it/s  (runs: {', '.join(f'{r:.2f}' for r in rates[s])})")
    print(f"    {settings[1]} / {settings[0]}: {med[settings[1]] / med[settings[0]]:.3f}")


if __name__ == "__main__":
    main()
