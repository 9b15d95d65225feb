"""End to end: restore one 1024x1024 image with K samples on the CPU (tiling included) and print the seconds.

Issue target: under 2 minutes with K = 2 on 2 quiet cores, with a sampler/steps setting whose quality matches
the official 1000-step ancestral sampler (LPIPS within 0.01, FSIM within 0.005): the default workflow's
``results/tables/sampling.md`` says which settings do. Run from the repository root on a quiet machine:

    .venv/bin/python bench/restore_1024.py --model results/models/denoise/phantom_neuropil/emdiffuse/model.pt
    .venv/bin/python bench/restore_1024.py --model ... --sampler ancestral --steps 20   # another setting
    .venv/bin/python bench/restore_1024.py --model ... --tile 272 --overlap 16          # 16 tiles instead of 25

    .venv/bin/python bench/restore_1024.py --preset official                            # the paper's network size

(On the default model the sampling table finds ancestral at 20 to 200 steps within tolerance of the
1000-step reference, and no ddim/dpmpp2m setting; 20 steps cost 1000 tile-sample evaluations at K = 2 with
256-px tiles. On that CPU-budget model the 1000-step chain is itself poor: see the table's findings and
``bench/noise_levels.py``.)

The path is the one ``emdiffuse predict`` takes (``EMDiffuseMethod.predict``: tiles, K samples per tile
batch, blending, uncertainty). Sampler, steps, K, tile, overlap, tile batch and precision default to the
model's own (the config's ``methods.emdiffuse.predict``); any of them can be overridden. Without ``--model``
a network of ``--preset`` size with trained-like weights and the default config's sampling settings stands
in (time does not depend on the weights). Without
``--input`` the image is a seeded smooth random field plus noise: the timing does not depend on content.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_unet import trained_like_  # noqa: E402

from emdiffuse.device import set_threads  # noqa: E402
from emdiffuse.io import read_image  # noqa: E402
from emdiffuse.models.methods import EMDiffuseMethod  # noqa: E402
from emdiffuse.models.registry import load_method  # noqa: E402
from emdiffuse.models.unet import PRESETS  # noqa: E402

SAMPLE_KEYS = ("sampler", "steps", "samples", "tile", "overlap", "batch", "precision", "init")


def stand_in_model(preset: str, seed: int) -> EMDiffuseMethod:
    """EMDiffuse of a network preset with seeded trained-like weights and the default config's sampling settings."""
    params = {"model": {"preset": preset}, "train": {"iterations": 1, "warmup": 1, "difficulty_loss": False},
              "sample": {"sampler": "ancestral", "steps": 20, "samples": 2, "tile": 256, "overlap": 32, "batch": 4}}
    method = EMDiffuseMethod(params, device=torch.device("cpu"), seed=seed)
    trained_like_(method.diffusion.net, seed)
    method.scale = 1
    return method


def test_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random((size, size)), 4)
    image = (image - image.min()) / np.ptp(image) * 0.6 + 0.2
    return np.clip(image + rng.normal(0, 0.1, image.shape), 0, 1).astype(np.float32)


def n_tiles(shape: tuple[int, int], tile: int, overlap: int) -> int:
    """Tiles as ``tiling.tiled_apply`` lays them out (origins every tile - overlap, the last flush)."""
    count = 1
    for size in shape:
        starts = list(range(0, max(size - tile, 0) + 1, tile - overlap))
        count *= len(starts) + (starts[-1] + tile < size)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained EMDiffuse model.pt (default: a --preset stand-in)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small", help="the stand-in's network size")
    parser.add_argument("--input", help="a 2D TIFF/Zarr image (default: a synthetic one)")
    parser.add_argument("--size", type=int, default=1024, help="side of the synthetic image")
    parser.add_argument("--sampler", choices=("ancestral", "ddim", "dpmpp2m"))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--samples", type=int, help="K")
    parser.add_argument("--tile", type=int)
    parser.add_argument("--overlap", type=int)
    parser.add_argument("--batch", type=int, help="tiles sampled together (network batch = batch x K)")
    parser.add_argument("--precision", choices=("bf16", "fp32"))
    parser.add_argument("--init", choices=("noise", "condition"), help="chain start (predict.init)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    set_threads(args.threads)  # and the allocator, as the workflow's jobs and `emdiffuse predict` do
    method = load_method(args.model, device=torch.device("cpu")) if args.model else stand_in_model(args.preset, args.seed)
    if not isinstance(method, EMDiffuseMethod):
        raise SystemExit(f"{args.model}: not an EMDiffuse model")
    s = method.predict_settings({k: getattr(args, k) for k in SAMPLE_KEYS if getattr(args, k) is not None})
    image = read_image(args.input)[0] if args.input else test_image(args.size, args.seed)
    if image.ndim != 2:
        raise SystemExit(f"{args.input}: expected a 2D image, got shape {image.shape}")
    tiles = n_tiles(tuple(n * method.scale for n in image.shape), s["tile"], s["overlap"])
    print(f"torch {torch.__version__}, {args.threads} threads; image {image.shape[0]}x{image.shape[1]}; "
          f"model {args.model or args.preset + ' stand-in'}")
    print("settings: " + ", ".join(f"{k} {s[k]}" for k in SAMPLE_KEYS) + f"; ~{tiles} tiles")
    load0 = os.getloadavg()
    start = time.perf_counter()
    out = method.predict(image[None], seed=args.seed, progress=True, **s)
    seconds = time.perf_counter() - start
    evaluations = tiles * s["samples"] * s["steps"]
    print(f"restored in {seconds:.1f} s ({seconds / 60:.2f} min); {evaluations} tile-sample evaluations, "
          f"{seconds / evaluations * 1e3:.1f} ms each; target < 120 s on 2 quiet cores")
    print(f"reliability score {np.percentile(out.get('uncertainty', np.zeros(1)), 99):.4f}; load average before "
          f"{load0[0]:.2f}, after {os.getloadavg()[0]:.2f} (a loaded machine makes the time meaningless)")


if __name__ == "__main__":
    main()
