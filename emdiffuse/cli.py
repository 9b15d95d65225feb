"""`emdiffuse` command: restore a user's own images with a trained model.

    emdiffuse predict --model results/models/denoise/phantom_neuropil/emdiffuse/model.pt \
        --input image.tif --output restored.tif --steps 20 --samples 2

writes the prediction, the uncertainty map (``<output>_uncertainty.<ext>``) and a JSON report
with each image's reliability score (``<output>_reliability.json``). A volume model (vEMDiffuse,
SR-UNet) turns a stack of sections into the isotropic volume between them.
``emdiffuse import-official`` turns a published EMDiffuse checkpoint into a model file.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

from tqdm.auto import tqdm

from .io import open_image, read_image, staged_output, write_text
from .evaluation.calibration import DEFAULT_THRESHOLD, flag_unreliable, reliability_score


#: values the input's percentiles are taken from: all of them up to this many, else evenly spaced slices
PERCENTILE_SAMPLE = 1 << 24


def unit_range(image, source: str):
    """A function mapping slabs of ``image`` to [0, 1] float32: 8-bit images are divided by 255 (as
    the official code loads them); others are mapped from their 0.1-99.9 percentiles (of the whole
    input, or of evenly spaced slices of one with more than ``PERCENTILE_SAMPLE`` values)."""
    from .data.datasets import normalize_between, percentile_bounds

    if image.dtype == np.uint8:
        return lambda slab: np.asarray(slab, dtype=np.float32) / 255.0
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(f"{source}: unsupported pixel type {image.dtype}; expected grey-level intensities")
    every = 1
    if image.ndim == 3:
        every = max(1, math.ceil(math.prod(image.shape) / PERCENTILE_SAMPLE))
    try:
        bounds = percentile_bounds(np.asarray(image[::every] if every > 1 else image[...]), 0.1, 99.9)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc} (nothing was written)") from exc

    def mapped(slab) -> np.ndarray:
        slab = np.asarray(slab)
        if every > 1 and not np.isfinite(slab).all():
            raise ValueError(f"{source}: holds values that are not finite (NaN or inf); fill or crop them first "
                             f"(nothing was written)")
        return normalize_between(slab, *bounds)

    return mapped


def sibling(path: Path, tag: str) -> Path:
    """``restored.tif`` -> ``restored_<tag>.tif`` (also for ``.zarr`` directories)."""
    return path.with_name(f"{path.stem}_{tag}{path.suffix}")


def check_outputs(input_path: Path, output: Path, *, overwrite: bool) -> None:
    """Before any computation: never write over the input, and over an existing output only with
    ``--overwrite`` (the prediction, its uncertainty map and its report)."""
    targets = [output, sibling(output, "uncertainty"), sibling(output, "reliability").with_suffix(".json")]
    if any(Path(input_path).resolve() == t.resolve() for t in targets):
        raise ValueError(f"--output {output}: the prediction or one of its companion files would replace the input "
                         f"{input_path}; choose another output path")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise ValueError(f"--output {output}: {', '.join(existing)} already exist(s); pass --overwrite to replace")


def output_voxel(voxel: tuple[float, ...] | None, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    """The input's pixel size scaled to the output grid (super-resolution: x2 finer in y and x)."""
    if voxel is None:
        return None
    lateral = tuple(v * i / o for v, i, o in zip(voxel[-2:], in_shape[-2:], out_shape[-2:]))
    return (*voxel[:-2], *lateral)


def check_paths(input_path: Path, output: Path) -> None:
    """A folder is an input or output only as a Zarr store: say so before any computation."""
    for flag, path in (("--input", input_path), ("--output", output)):
        if path.is_dir() and path.suffix != ".zarr":
            raise ValueError(f"{flag} {path}: a folder, expected an image file (.tif/.tiff/.mrc) or a .zarr store")
    if not output.parent.is_dir():
        raise ValueError(f"--output {output}: the folder {output.parent} does not exist")


#: flags that override a model's prediction settings, where its settings block has the key
SETTING_FLAGS = ("steps", "samples", "sampler", "tile", "overlap", "batch")


def setting_overrides(model, args: argparse.Namespace) -> dict:
    """``--steps`` ... ``--batch`` as overrides of the model's ``predict`` settings; a flag the model
    has no use for (``--steps`` for CARE) is refused rather than ignored."""
    settings, overrides = model.params.get("predict", {}), {}
    for key in SETTING_FLAGS:
        value = getattr(args, key, None)
        if value is None:
            continue
        if key not in settings:
            raise ValueError(f"--{key}: {model.name} has no such setting (it takes: "
                             f"{', '.join(f'--{k}' for k in SETTING_FLAGS if k in settings) or 'none'})")
        overrides[key] = value
    return overrides


def predict_command(args: argparse.Namespace) -> int:
    from .device import pick_device, seed_everything, set_threads
    from .models.registry import load_model_file
    from .models.volume_methods import VolumeMethod

    check_paths(args.input, Path(args.output))
    check_outputs(args.input, Path(args.output), overwrite=args.overwrite)
    device = pick_device(args.device)
    set_threads(args.threads)
    seed_everything(args.seed)
    image, voxel = open_image(args.input)
    if image.ndim not in (2, 3):
        raise ValueError(f"{args.input}: expected a 2D image or a (z, y, x) stack, got shape {image.shape}")
    to_unit = unit_range(image, str(args.input))
    model = load_model_file(args.model, device=device)
    restore = _reconstruct_volume if isinstance(model, VolumeMethod) else _restore_images
    output = Path(args.output)
    report = {"input": str(args.input), "model": str(args.model), "prediction": str(output)}
    report.update(restore(model, image, to_unit, voxel, output, args))
    write_text(sibling(output, "reliability").with_suffix(".json"), json.dumps(report, indent=2))
    print(f"wrote {output}")
    return 0


def _restore_images(method, image, to_unit, voxel, output: Path, args) -> dict:
    """A 2D method on an image, or slice by slice on a stack (read and written one slice at a time);
    the pixel size follows the output grid."""
    overrides = setting_overrides(method, args)
    stack = image.ndim == 3
    first = method.predict(to_unit(image[0] if stack else image[...])[None], seed=args.seed, progress=not stack,
                           **overrides)
    shape = first["prediction"].shape[1:]
    out_shape = (image.shape[0], *shape) if stack else shape
    voxel = output_voxel(voxel, image.shape, out_shape)

    def slabs():
        yield 0, first
        for i in tqdm(range(1, image.shape[0] if stack else 1), desc="slices", initial=1,
                      total=image.shape[0] if stack else 1, disable=not stack, dynamic_ncols=True):
            yield i, method.predict(to_unit(image[i])[None], seed=args.seed, progress=False, start=i, **overrides)

    return _write_outputs(slabs(), out_shape, voxel, output, "uncertainty" in first, args.threshold)


def _reconstruct_volume(model, image, to_unit, voxel, output: Path, args) -> dict:
    """A volume method (vEMDiffuse-i/-a, SR-UNet) fills in the slices between the input's sections,
    z chunk by z chunk (``predict.chunk`` sections read at a time); the z spacing shrinks by its
    z-factor. Reliability is scored per output XY slice."""
    from .data.volumes import isotropic_voxel, output_positions

    if image.ndim != 3:
        raise ValueError(f"{args.input}: {model.name} reconstructs a (z, y, x) stack of sections, got a 2D image")
    out_shape = (len(output_positions(image.shape[0], model.z_factor)), *image.shape[1:])
    chunks = model.predict_chunks(image, seed=args.seed, progress=True, transform=to_unit,
                                  **setting_overrides(model, args))
    first = next(chunks)
    report = _write_outputs(itertools.chain([first], chunks), out_shape,
                            isotropic_voxel(voxel, model.z_factor) if voxel is not None else None, output,
                            "uncertainty" in first[1], args.threshold)
    print(f"{model.name}: {image.shape[0]} sections -> {out_shape[0]} slices (x{model.z_factor} in z)")
    return report


def _write_outputs(slabs, shape, voxel, output: Path, uncertain: bool, threshold: float) -> dict:
    """Stream (first slice, outputs) slabs into the prediction (and uncertainty) files; score each
    slice's reliability as it passes. A 2D ``shape`` is one image, written as 2D."""
    keys = ["prediction", *(["uncertainty"] if uncertain else [])]
    paths = {"prediction": output, "uncertainty": sibling(output, "uncertainty")}
    scores = []
    with contextlib.ExitStack() as stack:
        staged = {key: stack.enter_context(staged_output(paths[key], shape, voxel)) for key in keys}
        for i, out in slabs:
            for key in keys:
                if len(shape) == 2:
                    staged[key][...] = out[key][0]
                else:
                    staged[key][i:i + len(out[key])] = out[key]
            if uncertain:
                scores += [reliability_score(u, p) for u, p in zip(out["uncertainty"], out["prediction"])]
    if not uncertain:
        return {}
    flags = flag_unreliable(np.asarray(scores), threshold)
    print(f"reliability (99th percentile of the uncertainty / the prediction's std): max {max(scores):.4f}; "
          f"{int(flags.sum())} of {len(flags)} image(s) above the threshold {threshold}")
    return {"uncertainty": str(paths["uncertainty"]), "threshold": threshold,
            "reliability": [float(s) for s in scores], "unreliable": [bool(f) for f in flags]}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse then names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emdiffuse", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("predict", help="restore an image or stack, or reconstruct a volume, with a trained model")
    pr.add_argument("--model", required=True, type=Path,
                    help="model.pt written by the workflow's train or train_volume rule (or by import-official)")
    pr.add_argument("--input", required=True, type=Path,
                    help="2D image or (z, y, x) stack: TIFF, Zarr / OME-Zarr or MRC; for a volume model, its sections")
    pr.add_argument("--output", required=True, type=Path,
                    help="where to write the prediction: .tif, or .zarr for OME-Zarr with a pyramid")
    pr.add_argument("--steps", type=positive_int, help="sampling steps (diffusion models)")
    pr.add_argument("--samples", type=positive_int, help="K samples averaged (diffusion models)")
    pr.add_argument("--sampler", choices=["ancestral", "ddim", "dpmpp2m"], help="sampler (diffusion models)")
    pr.add_argument("--tile", type=positive_int, help="tile size in pixels (memory is bounded by the tile)")
    pr.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in pixels (blended)")
    pr.add_argument("--batch", type=positive_int, help="tiles per network call")
    pr.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                    help=f"reliability threshold on the score relative to the prediction's contrast (default "
                         f"{DEFAULT_THRESHOLD}; the paper's 0.12 applies to its own score, also reported)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    pr.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    pr.set_defaults(func=predict_command)
    im = sub.add_parser("import-official", help="turn a published EMDiffuse checkpoint into a model file")
    im.add_argument("--checkpoint", required=True, type=Path,
                    help="official <epoch>_Network.pth or <epoch>_Network_ema.pth (Luchixiang/EMDiffuse)")
    im.add_argument("--task", required=True, choices=["denoise", "superres"],
                    help="EMDiffuse-n (denoise) or EMDiffuse-r (superres, x2)")
    im.add_argument("--output", required=True, type=Path, help="model file to write (model.pt)")
    im.set_defaults(func=import_command)

    ex = sub.add_parser("export-bmz", help="package a trained 2D model for the BioImage Model Zoo")
    ex.add_argument("--model", required=True, type=Path, help="model file (care, rcan, pssr, emdiffuse, emdiffuse_v)")
    ex.add_argument("--output", required=True, type=Path, help="package to write (.zip)")
    ex.add_argument("--test-image", type=Path,
                    help="2D image (or stack: its middle slice) on the model's input grid for the package's test "
                         "tensors (default: the shipped real FIB-SEM volume, pooled to the input grid)")
    ex.add_argument("--size", type=positive_int, default=64, help="test tensor side on the target grid, px")
    ex.add_argument("--seed", type=int, default=0,
                    help="a diffusion model's built-in seed (as emdiffuse predict --seed)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing package")
    ex.set_defaults(func=export_command)
    return p


def export_command(args: argparse.Namespace) -> int:
    from .bmz import export_bmz

    if not args.model.is_file():
        raise ValueError(f"--model {args.model}: no such file")
    if args.output.exists() and not args.overwrite:
        raise ValueError(f"--output {args.output}: exists (pass --overwrite to replace it)")
    image = None
    if args.test_image is not None:
        image, _ = read_image(args.test_image)
        image = image[len(image) // 2] if image.ndim == 3 else image
    path = export_bmz(args.model, args.output, test_image=image, size=args.size, seed=args.seed)
    print(f"wrote {path}")
    return 0


def import_command(args: argparse.Namespace) -> int:
    from .models.official import import_official

    if not args.checkpoint.is_file():
        raise ValueError(f"--checkpoint {args.checkpoint}: no such file")
    if not args.output.parent.is_dir():
        raise ValueError(f"--output {args.output}: the folder {args.output.parent} does not exist")
    import_official(args.checkpoint, args.task, args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (OSError, ValueError, KeyError) as exc:  # OSError: missing files, a full disk, no permission
        print(f"emdiffuse {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
