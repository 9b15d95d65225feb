"""Restoring a user's own images and volumes with a trained model: the path of ``emdiffuse predict``
(:mod:`emdiffuse.cli`) and of the block-wise restore (:mod:`.blockwise`).

Inputs are read lazily and mapped to [0, 1] (:func:`unit_range`); 2D models restore slice by slice,
volume models z chunk by z chunk; outputs are streamed into staged files (TIFF or OME-Zarr) beside an
uncertainty map and a reliability report, so an input larger than memory is restored in bounded memory.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..evaluation.calibration import flag_unreliable, reliability_score
from ..io import staged_output


#: values the input's percentiles are taken from: all of them up to this many, else evenly spaced slices
PERCENTILE_SAMPLE = 1 << 24


def unit_range(image, source: str):
    """A function mapping slabs of ``image`` to [0, 1] float32: 8-bit images are divided by 255 (as
    the official code loads them); others are mapped from their 0.1-99.9 percentiles (of the whole
    input, or of evenly spaced slices of one with more than ``PERCENTILE_SAMPLE`` values)."""
    from ..data.datasets import normalize_between, percentile_bounds

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


def output_voxel(voxel: tuple[float, ...] | None, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
    """The input's pixel size scaled to the output grid (super-resolution: x2 finer in y and x)."""
    if voxel is None:
        return None
    lateral = tuple(v * i / o for v, i, o in zip(voxel[-2:], in_shape[-2:], out_shape[-2:]))
    return (*voxel[:-2], *lateral)


#: flags that override a model's prediction settings, where its settings block has the key
SETTING_FLAGS = ("steps", "samples", "sampler", "tile", "overlap", "batch")


def setting_overrides(model, values: dict) -> dict:
    """``--steps`` ... ``--batch`` (``values``: flag -> value or None) as overrides of the model's
    ``predict`` settings; a flag the model has no use for (``--steps`` for CARE) is refused rather
    than ignored."""
    settings, overrides = model.params.get("predict", {}), {}
    for key in SETTING_FLAGS:
        value = values.get(key)
        if value is None:
            continue
        if key not in settings:
            raise ValueError(f"--{key}: {model.name} has no such setting (it takes: "
                             f"{', '.join(f'--{k}' for k in SETTING_FLAGS if k in settings) or 'none'})")
        overrides[key] = value
    return overrides


def restore_images(method, image, to_unit, voxel, output: Path, *, seed: int, overrides: dict, threshold: float) -> dict:
    """A 2D method on an image, or slice by slice on a stack (read and written one slice at a time);
    the pixel size follows the output grid."""
    stack = image.ndim == 3
    first = method.predict(to_unit(image[0] if stack else image[...])[None], seed=seed, progress=not stack,
                           **overrides)
    shape = first["prediction"].shape[1:]
    out_shape = (image.shape[0], *shape) if stack else shape
    voxel = output_voxel(voxel, image.shape, out_shape)

    def slabs():
        yield 0, first
        for i in tqdm(range(1, image.shape[0] if stack else 1), desc="slices", initial=1,
                      total=image.shape[0] if stack else 1, disable=not stack, dynamic_ncols=True):
            yield i, method.predict(to_unit(image[i])[None], seed=seed, progress=False, start=i, **overrides)

    return write_outputs(slabs(), out_shape, voxel, output, "uncertainty" in first, threshold)


def reconstruct_volume(model, image, to_unit, voxel, output: Path, *, seed: int, overrides: dict, threshold: float,
                       source: str) -> dict:
    """A volume method (vEMDiffuse-i/-a, SR-UNet) fills in the slices between the input's sections,
    z chunk by z chunk (``predict.chunk`` sections read at a time); the z spacing shrinks by its
    z-factor. Reliability is scored per output XY slice."""
    from ..models.volumes import isotropic_voxel, output_positions

    if image.ndim != 3:
        raise ValueError(f"{source}: {model.name} reconstructs a (z, y, x) stack of sections, got a 2D image")
    out_shape = (len(output_positions(image.shape[0], model.z_factor)), *image.shape[1:])
    chunks = model.predict_chunks(image, seed=seed, progress=True, transform=to_unit, **overrides)
    first = next(chunks)
    report = write_outputs(itertools.chain([first], chunks), out_shape,
                           isotropic_voxel(voxel, model.z_factor) if voxel is not None else None, output,
                           "uncertainty" in first[1], threshold)
    print(f"{model.name}: {image.shape[0]} sections -> {out_shape[0]} slices (x{model.z_factor} in z)")
    return report


def write_outputs(slabs, shape, voxel, output: Path, uncertain: bool, threshold: float) -> dict:
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
