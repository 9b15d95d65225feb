"""Volumes for isotropic reconstruction: the output z grid, z interpolation, chunked processing, I/O.

Output grid (shared by every volume method and by evaluation). An anisotropic stack of ``Z``
sections with axial factor ``z`` (``degrade.anisotropic``) has section k centred at isotropic
z = p_k = k*z + (z-1)/2. A reconstruction holds the isotropic slices (integer z) from the first
to the last section centre, ``output_positions(Z, z)``: ``ceil(p_0) .. floor(p_{Z-1})``, i.e.
``(Z-1)*z + 1`` slices for odd z (including the slices at the section centres: a section is the
mean of z slices, not the slice at its centre, so those are predicted too) and ``(Z-1)*z`` for
even z (the centres fall between slices). No extrapolation beyond the outer sections. The ground
truth for evaluation is ``isotropic[output_positions(Z, z)]``, always whole slices.

Each output slice q belongs to the pair of sections (k, k+1) that brackets it
(``pair_offsets``), at ``offset = q - p_k`` isotropic slices from the lower one; the last pair also
owns q = p_{Z-1}. Pair-local methods (linear, vEMDiffuse) are therefore exactly chunkable.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from tqdm.auto import tqdm

from emdiffuse.data.degrade import anisotropic, anisotropic_positions
from emdiffuse.models.patches import SeededSampler
from emdiffuse.io import read_image, write_image

if TYPE_CHECKING:
    import torch

_FLOAT32_EXACT = 2**24  # largest pixel count whose flat indices float32 holds exactly


def make_anisotropic(volume: np.ndarray, z_factor: int, section_profile: str = "box") -> np.ndarray:
    """Thick sections from an isotropic volume (``degrade.anisotropic``; trailing slices dropped)."""
    return anisotropic(volume, z_factor, section_profile=section_profile)


def section_positions(n_sections: int, z_factor: int) -> np.ndarray:
    """Isotropic z of each section centre: k*z + (z-1)/2."""
    return anisotropic_positions(n_sections * z_factor, z_factor)


def output_positions(n_sections: int, z_factor: int) -> np.ndarray:
    """Isotropic slice indices a reconstruction of ``n_sections`` sections covers (module docstring)."""
    _check_factor(z_factor)
    if n_sections < 2:
        raise ValueError(f"need at least 2 sections to interpolate between, got {n_sections}")
    p = section_positions(n_sections, z_factor)
    return np.arange(math.ceil(p[0]), math.floor(p[-1]) + 1)


def pair_offsets(n_sections: int, z_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output slice: the lower section k of its bracketing pair and its offset q - p_k."""
    q = output_positions(n_sections, z_factor)
    p = section_positions(n_sections, z_factor)
    k = np.minimum((q - p[0]) // z_factor, n_sections - 2).astype(int)
    return k, q - p[k]


def isotropic_voxel(voxel_nm: tuple[float, float, float], z_factor: int) -> tuple[float, float, float]:
    """Voxel size (z, y, x nm) of a reconstruction of sections with voxel ``voxel_nm``: z divided by z_factor."""
    _check_factor(z_factor)
    z, y, x = (float(v) for v in voxel_nm)
    return (z / z_factor, y, x)


def interpolate_z(stack: np.ndarray, z_factor: int, positions: np.ndarray, kind: str) -> np.ndarray:
    """Sections (Z, y, x) evaluated at isotropic ``positions`` (clamped to the outer section centres).

    ``linear``: between the two bracketing sections. ``cubic``: Keys cubic convolution (a = -0.5,
    Catmull-Rom), the local cubic of image resizers, on the four nearest sections; beyond the ends
    the missing neighbour is extrapolated linearly (2 s_0 - s_1), so z-linear signals stay exact.
    Being local, both give identical results on any chunking with one section of context.
    """
    if kind not in ("linear", "cubic"):
        raise ValueError(f"interpolation kind must be 'linear' or 'cubic', got {kind!r}")
    stack = np.asarray(stack, np.float32)
    n = len(stack)
    if n < 2:
        raise ValueError(f"need at least 2 sections to interpolate between, got {n}")
    p = section_positions(n, z_factor)
    u = (np.clip(positions, p[0], p[-1]) - p[0]) / z_factor  # in section units
    k = np.minimum(np.floor(u).astype(int), n - 2)
    t = (u - k).astype(np.float32)
    if kind == "linear":
        return np.stack([(1 - ti) * stack[ki] + ti * stack[ki + 1] for ki, ti in zip(k, t)])
    ghost = np.concatenate([2 * stack[:1] - stack[1:2], stack, 2 * stack[-1:] - stack[-2:-1]])
    return np.stack([np.tensordot(_keys_weights(ti), ghost[ki : ki + 4], axes=1) for ki, ti in zip(k, t)])


def _keys_weights(t: float) -> np.ndarray:
    """Catmull-Rom weights of samples at -1, 0, 1, 2 for a point at t in [0, 1]."""
    t2, t3 = t * t, t * t * t
    return np.array([-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1,
                     -1.5 * t3 + 2 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2], np.float32)


def process_in_chunks(
    fn: Callable[[np.ndarray, int], dict[str, np.ndarray]],
    anisotropic: np.ndarray,
    chunk: int,
    z_factor: int,
    context: int = 0,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Run ``fn(sections, start)`` on overlapping runs of at most ``chunk`` sections and stitch.

    ``fn`` gets sections ``start .. start + n - 1`` (a sub-stack, plus ``context`` extra sections
    each side where the volume has them) and returns arrays on ``output_positions(n, z)`` of
    that sub-stack; ``start`` is the global index of its first section (for seeds). Neighbouring
    runs share their boundary section, so every pair is processed exactly once; a depth that is
    not a multiple of ``chunk`` just gives a shorter last run. Memory is bounded by the chunk.
    """
    return stitch(iter_chunks(fn, anisotropic, chunk, z_factor, context, progress))


def stitch(chunks) -> dict[str, np.ndarray]:
    """The outputs of (first slice, outputs) runs (:func:`iter_chunks`), concatenated along z."""
    pieces: dict[str, list[np.ndarray]] = {}
    for _, out in chunks:
        for key, value in out.items():
            pieces.setdefault(key, []).append(value)
    return {key: np.concatenate(v) for key, v in pieces.items()}


def chunk_runs(n: int, chunk: int) -> list[tuple[int, int]]:
    """The (first, last) section of each run of :func:`iter_chunks` over ``n`` sections: consecutive
    runs share their boundary section."""
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2 sections (one pair), got {chunk}")
    bounds = list(range(0, n - 1, chunk - 1)) + [n - 1]
    return list(zip(bounds[:-1], bounds[1:]))


def iter_chunks(fn, anisotropic, chunk: int, z_factor: int, context: int = 0, progress: bool = True,
                runs: range | None = None):
    """:func:`process_in_chunks` one run at a time: yields (index of the run's first output slice,
    its outputs). ``anisotropic`` may be lazy (a Zarr or memory-mapped stack): only a run's
    sections are read. ``runs``: only these runs (indices into :func:`chunk_runs`), e.g. one block
    of a restore split over jobs; each gives what it gives in the whole."""
    _check_factor(z_factor)
    n = len(anisotropic)
    q_all = output_positions(n, z_factor)
    every = chunk_runs(n, chunk)
    chosen = [every[i] for i in (runs if runs is not None else range(len(every)))]
    for a, b in tqdm(chosen, disable=not progress, desc="z chunks", dynamic_ncols=True):
        lo, hi = max(a - context, 0), min(b + context, n - 1)
        out = fn(anisotropic[lo : hi + 1], lo)
        q = output_positions(hi - lo + 1, z_factor) + lo * z_factor
        end = q_all[-1] + 1 if b == n - 1 else q_all[0] + (b * z_factor)  # next run owns p_b
        keep = (q >= q_all[0] + a * z_factor) & (q < end)
        for key, value in out.items():
            if len(value) != len(q):
                raise ValueError(f"chunk function returned {len(value)} slices for '{key}', expected {len(q)}")
        yield int(np.searchsorted(q_all, q[keep][0])), {key: value[keep] for key, value in out.items()}


def tiled_stack_apply(fn: Callable[[torch.Tensor], torch.Tensor], stack: np.ndarray, **tiling) -> np.ndarray:
    """``tiling.tiled_apply`` for a multi-channel image (C, H, W): fn maps (B, C, th, tw) -> (B, C', th, tw).

    tiled_apply tiles one channel, so it is given the image of flat pixel indices and the tiles of
    ``stack`` are gathered from them (reflection padding included); blending is tiled_apply's own.
    """
    import torch  # here, not at the top: planning a run reads this module's grid functions without torch

    from emdiffuse.models.tiling import tiled_apply

    h, w = stack.shape[1:]
    if h * w > _FLOAT32_EXACT:
        raise ValueError(f"lateral size {h}x{w} exceeds {_FLOAT32_EXACT} pixels; crop the volume laterally")
    index = np.arange(h * w, dtype=np.float32).reshape(h, w)

    def gather(tiles: torch.Tensor) -> torch.Tensor:
        flat = tiles[:, 0].round().long().numpy()
        return fn(torch.from_numpy(np.ascontiguousarray(stack[:, flat // w, flat % w].transpose(1, 0, 2, 3))))

    return tiled_apply(gather, index, **tiling)


class BlockSampler(SeededSampler):
    """Batches made from random isotropic blocks (depth, patch, patch) of a volume; deterministic for a seed.

    Each block gets a random lateral flip/rot90 (z untouched), then ``make(block, rng)`` turns it
    into one training sample (a tuple of arrays, stacked over the batch). ``state`` is the RNG
    state, so ``train.train_loop`` resumes with the exact same batches.
    """

    def __init__(self, volume: np.ndarray, depth: int, patch: int, batch_size: int, seed: int,
                 make: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, ...]]):
        if volume.ndim != 3 or volume.shape[0] < depth or min(volume.shape[1:]) < patch:
            raise ValueError(f"training volume {volume.shape} is smaller than a ({depth}, {patch}, {patch}) block")
        self.volume = np.asarray(volume, np.float32)
        self.depth, self.patch, self.batch_size, self.make = depth, patch, batch_size, make
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, ...]:
        samples = [self.make(self._block(), self.rng) for _ in range(self.batch_size)]
        return tuple(np.stack(parts).astype(np.float32) for parts in zip(*samples))

    def _block(self) -> np.ndarray:
        (d, h, w), rng, p = self.volume.shape, self.rng, self.patch
        z, y, x = rng.integers(d - self.depth + 1), rng.integers(h - p + 1), rng.integers(w - p + 1)
        block = np.rot90(self.volume[z : z + self.depth, y : y + p, x : x + p], rng.integers(4), axes=(1, 2))
        return np.ascontiguousarray(block[..., ::-1] if rng.random() < 0.5 else block)


def plane_views(volume: np.ndarray) -> dict[str, np.ndarray]:
    """The volume as stacks of 2D planes for per-plane metrics: xy (z, y, x), xz (y, z, x), yz (x, z, y).

    Views, not copies. XZ/YZ planes show the axial resolution that a reconstruction restores.
    """
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), got shape {volume.shape}")
    return {"xy": volume, "xz": volume.transpose(1, 0, 2), "yz": volume.transpose(2, 0, 1)}


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """A (z, y, x) float32 volume and its voxel size (nm) from a TIFF stack, a Zarr array or an OME-Zarr."""
    path = Path(path)
    array, voxel = read_image(path)
    return _volume(array, path), voxel


def _volume(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim != 3:
        raise ValueError(f"{path}: expected a (z, y, x) volume, got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def write_volume(path: str | os.PathLike, volume: np.ndarray, voxel_nm: tuple[float, float, float] | None) -> None:
    """Write a (z, y, x) volume: ``.tif``/``.tiff`` as an ImageJ stack, ``.zarr`` as OME-Zarr
    (``io.write_ome_zarr``: voxel size in nanometres, lateral pyramid); both atomic."""
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a (z, y, x) volume, got shape {volume.shape}")
    write_image(path, volume, voxel_nm)


def _check_factor(z_factor: int) -> None:
    if not isinstance(z_factor, (int, np.integer)) or z_factor < 2:
        raise ValueError(f"z_factor must be an int >= 2, got {z_factor!r}")
