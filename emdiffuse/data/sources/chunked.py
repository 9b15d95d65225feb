"""Region reads from chunked arrays over HTTP: Zarr v2, N5 and Neuroglancer precomputed.

The public vEM volumes are terabytes; a benchmark crop is megabytes. Each reader fetches the
array's metadata, then only the chunks that overlap the requested region, with plain HTTP GETs
(no listing, no tensorstore or cloud-volume). Every array is presented in numpy (z, y, x) order.
"""

from __future__ import annotations

import bz2
import io
import itertools
import json
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numcodecs
import numpy as np
from numcodecs.compat import ensure_contiguous_ndarray

from .http import get_bytes, get_required

Chunk = Callable[[tuple[int, ...]], "np.ndarray | None"]


@dataclass(frozen=True)
class ChunkedArray:
    """A 3D chunked array: ``load(grid index zyx)`` gives a chunk (smaller at edges) or None when absent."""

    url: str
    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]
    dtype: np.dtype
    fill_value: object
    load: Chunk
    origin: tuple[int, int, int] = (0, 0, 0)  # voxel coordinate of element [0, 0, 0]


def read_region(array: ChunkedArray, offset, shape) -> np.ndarray:
    """The (z, y, x) region ``[offset, offset + shape)`` in the array's voxel coordinates."""
    offset, shape = np.asarray(offset, int), np.asarray(shape, int)
    stop, lo, chunks = offset + shape, np.asarray(array.origin), np.asarray(array.chunks)
    hi = lo + np.asarray(array.shape)
    if (offset < lo).any() or (stop > hi).any() or (shape <= 0).any():
        raise ValueError(
            f"{array.url}: region {offset.tolist()} + {shape.tolist()} is outside the array "
            f"(origin {lo.tolist()}, shape {list(array.shape)}, z, y, x)"
        )
    out = np.full(shape, array.fill_value, dtype=array.dtype)
    first, last = (offset - lo) // chunks, (stop - 1 - lo) // chunks
    for index in itertools.product(*(range(a, b + 1) for a, b in zip(first, last))):
        chunk = array.load(index)
        if chunk is None:
            continue
        start = lo + np.asarray(index) * chunks
        a, b = np.maximum(offset, start), np.minimum(stop, start + chunk.shape)
        out[_slices(a - offset, b - offset)] = chunk[_slices(a - start, b - start)]
    return out


def _slices(a, b) -> tuple[slice, ...]:
    return tuple(slice(int(i), int(j)) for i, j in zip(a, b))


def _require_3d(url: str, shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ValueError(f"{url}: expected a 3D (z, y, x) array, got shape {list(shape)}")
    return tuple(int(s) for s in shape)


def open_zarr2(url: str) -> ChunkedArray:
    """A Zarr v2 array from its ``.zarray``: any numcodecs compressor and filters, C or F order."""
    meta = json.loads(get_required(f"{url}/.zarray"))
    if meta.get("zarr_format") != 2:
        raise ValueError(f"{url}/.zarray: zarr_format {meta.get('zarr_format')}, expected 2")
    dtype, chunks = np.dtype(meta["dtype"]), _require_3d(url, meta["chunks"])
    codecs = [numcodecs.get_codec(c) for c in (meta.get("filters") or [])]
    if meta.get("compressor"):
        codecs.append(numcodecs.get_codec(meta["compressor"]))
    separator = meta.get("dimension_separator", ".")

    def load(index):
        data = get_bytes(f"{url}/{separator.join(map(str, index))}")
        if data is None:
            return None
        for codec in reversed(codecs):
            data = codec.decode(data)
        flat = np.frombuffer(ensure_contiguous_ndarray(data), dtype=dtype)
        return flat.reshape(chunks, order=meta.get("order", "C"))

    fill = meta.get("fill_value")
    return ChunkedArray(url, _require_3d(url, meta["shape"]), chunks, dtype, 0 if fill is None else fill, load)


N5_CODECS: dict[str, Callable[[dict], Callable[[bytes], bytes]]] = {
    "raw": lambda c: bytes,
    "gzip": lambda c: lambda b: zlib.decompress(b, 15 if c.get("useZlib") else 31),
    "bzip2": lambda c: bz2.decompress,
    "xz": lambda c: lzma.decompress,
    "zstd": lambda c: numcodecs.Zstd().decode,
    "blosc": lambda c: numcodecs.Blosc().decode,
}


def open_n5(url: str) -> ChunkedArray:
    """An N5 array from its ``attributes.json``; N5 lists axes x, y, z, so every axis list is reversed."""
    attrs = json.loads(get_required(f"{url}/attributes.json"))
    compression = attrs.get("compression") or {"type": attrs.get("compressionType", "raw")}
    if compression["type"] not in N5_CODECS:
        raise ValueError(f"{url}/attributes.json: N5 compression '{compression['type']}' is not supported")
    decompress = N5_CODECS[compression["type"]](compression)
    dtype = np.dtype(attrs["dataType"]).newbyteorder(">")

    def load(index):
        data = get_bytes(f"{url}/{'/'.join(map(str, index[::-1]))}")
        return None if data is None else decode_n5_block(data, dtype, decompress, url)

    shape = _require_3d(url, attrs["dimensions"][::-1])
    return ChunkedArray(url, shape, _require_3d(url, attrs["blockSize"][::-1]), dtype.newbyteorder("="), 0, load)


def decode_n5_block(data: bytes, dtype: np.dtype, decompress, url: str) -> np.ndarray:
    """One N5 block: big-endian header (mode u16, ndim u16, size u32 x ndim, x first), then the data."""
    mode, ndim = struct.unpack(">HH", data[:4])
    if mode != 0:
        raise ValueError(f"{url}: N5 block mode {mode} (varlength/object) is not supported")
    size = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    flat = np.frombuffer(decompress(data[4 + 4 * ndim :]), dtype=dtype, count=int(np.prod(size)))
    return flat.reshape(size[::-1]).astype(dtype.newbyteorder("="))


def open_precomputed(url: str, scale_index: int = 0) -> ChunkedArray:
    """One scale of a Neuroglancer precomputed volume (unsharded; raw or jpeg chunks)."""
    info = json.loads(get_required(f"{url}/info"))
    scale = info["scales"][scale_index]
    if scale.get("sharding"):
        raise ValueError(f"{url}/info: scale {scale_index} is sharded, which this reader does not support")
    if info.get("num_channels", 1) != 1 or scale["encoding"] not in ("raw", "jpeg"):
        raise ValueError(
            f"{url}/info: need 1 channel and raw or jpeg encoding, got {info.get('num_channels')} "
            f"channels, '{scale['encoding']}'"
        )
    dtype = np.dtype(info["data_type"]).newbyteorder("<")
    size, origin = np.array(scale["size"][::-1]), np.array(scale["voxel_offset"][::-1])
    chunks = np.array(scale["chunk_sizes"][0][::-1])

    def load(index):
        lo = origin + np.asarray(index) * chunks
        hi = np.minimum(lo + chunks, origin + size)
        name = "_".join(f"{lo[a]}-{hi[a]}" for a in (2, 1, 0))  # file names list x, y, z
        data = get_bytes(f"{url}/{scale['key']}/{name}")
        return None if data is None else _decode_precomputed(data, scale["encoding"], tuple(hi - lo), dtype)

    native = dtype.newbyteorder("=")
    return ChunkedArray(url, _require_3d(url, size), _require_3d(url, chunks), native, 0, load, _require_3d(url, origin))


def _decode_precomputed(data: bytes, encoding: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """Raw chunks are x-fastest (Fortran x, y, z), i.e. C-order (z, y, x); jpeg stacks z slices along y."""
    if encoding == "jpeg":
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("L")).reshape(shape).astype(dtype)
    if data[:2] == b"\x1f\x8b" and len(data) != np.prod(shape) * dtype.itemsize:
        data = zlib.decompress(data, 31)  # gzip stored without a Content-Encoding header
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
