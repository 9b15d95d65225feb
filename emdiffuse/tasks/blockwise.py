"""Restore a large stack or volume as independent blocks, one job each (one GPU each on a cluster),
then gather them into one file: the same result as ``emdiffuse predict`` on the whole input.

A block is a share of the work as ``emdiffuse predict`` streams it: consecutive slices for a 2D
method, consecutive z chunks of sections (``predict.chunk``, with their context) for a volume
method. Every block maps intensities with the whole input's percentiles, and sampling seeds are
keyed by the global slice (2D) or section pair (volume), so a block's output is exactly its part of
the whole restore. Each block is a workflow output written atomically: a killed run redoes only the
blocks it had not finished (config key ``restore``, target ``restore``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import load_npz, open_image, save_npz, write_text
from .restore import output_voxel, setting_overrides, sibling, unit_range, write_outputs


def block_share(n: int, block: int, blocks: int, what: str, where: str) -> range:
    """Block ``block`` of ``blocks`` over ``n`` units (slices or z chunks): contiguous, near-equal."""
    if not 0 < blocks <= n:
        raise ValueError(f"{where}: {blocks} blocks, but the input has {n} {what} to share (1 to {n} blocks)")
    return range(block * n // blocks, (block + 1) * n // blocks)


def restore_block(model_path: str | Path, input_path: str | Path, block: int, blocks: int, out_path: str | Path,
                  *, seed: int, settings: dict | None = None, where: str = "restore", threads: int | None = None) -> None:
    """Restore block ``block`` of ``blocks`` of the input and save it (``first``: its first output slice)."""
    from ..device import pick_device, seed_everything, set_threads
    from ..models.registry import load_model_file
    from ..models.volume_methods import VolumeMethod
    from ..models.volumes import chunk_runs

    set_threads(threads)
    seed_everything(seed)
    image, _ = open_image(input_path)
    if image.ndim != 3:
        raise ValueError(f"{where}.input: {input_path} has shape {image.shape}; a block-wise restore needs a (z, y, x) stack")
    to_unit = unit_range(image, str(input_path))
    model = load_model_file(model_path, device=pick_device())
    overrides = setting_overrides(model, settings or {})
    if isinstance(model, VolumeMethod):
        chunk = model.predict_settings(overrides)["chunk"]
        runs = chunk_runs(image.shape[0], chunk)
        share = block_share(len(runs), block, blocks, f"z chunks of {chunk} sections", where)
        slabs = list(model.predict_chunks(image, seed=seed, transform=to_unit, runs=share, **overrides))
    else:
        share = block_share(image.shape[0], block, blocks, "slices", where)
        slabs = [(i, model.predict(to_unit(image[i])[None], seed=seed, progress=False, start=i, **overrides))
                 for i in share]
    keys = slabs[0][1].keys()
    save_npz(out_path, first=np.int64(slabs[0][0]), **{k: np.concatenate([out[k] for _, out in slabs]) for k in keys})
    print(f"{where}: block {block + 1} of {blocks}: output slices {slabs[0][0]} to "
          f"{slabs[0][0] + sum(len(out['prediction']) for _, out in slabs) - 1}")


def gather(block_paths: list[str | Path], model_path: str | Path, input_path: str | Path, output: str | Path,
           *, threshold: float) -> None:
    """Write the blocks, in order, into one prediction (and uncertainty) file, TIFF or OME-Zarr by
    its name, with the reliability report beside it, as ``emdiffuse predict`` writes them."""
    from ..models.lifecycle import read_checkpoint
    from ..models.volumes import isotropic_voxel, output_positions

    image, voxel = open_image(input_path)
    z_factor = read_checkpoint(model_path).get("z_factor")
    first_block = load_npz(block_paths[0], required=("first", "prediction"))
    plane = first_block["prediction"].shape[1:]
    if z_factor:  # a volume method: the slices between the sections
        shape = (len(output_positions(image.shape[0], int(z_factor))), *plane)
        voxel = isotropic_voxel(voxel, int(z_factor)) if voxel is not None else None
    else:
        shape = (image.shape[0], *plane)
        voxel = output_voxel(voxel, image.shape, shape)

    def slabs():
        expected = 0
        for i, path in enumerate(block_paths):
            part = first_block if i == 0 else load_npz(path, required=("first", "prediction"))
            if int(part["first"]) != expected:
                raise ValueError(f"{path}: starts at output slice {int(part['first'])}, expected {expected}: "
                                 "the blocks do not tile the output (from another input or block count?)")
            expected += len(part["prediction"])
            yield int(part["first"]), {k: v for k, v in part.items() if k != "first"}
        if expected != shape[0]:
            raise ValueError(f"the blocks hold {expected} output slices, the input gives {shape[0]}")

    output = Path(output)
    report = {"input": str(input_path), "model": str(model_path), "prediction": str(output), "blocks": len(block_paths)}
    report.update(write_outputs(slabs(), shape, voxel, output, "uncertainty" in first_block, threshold))
    write_text(sibling(output, "reliability").with_suffix(".json"), json.dumps(report, indent=2))
