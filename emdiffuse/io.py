"""Reading and writing images, volumes and arrays; every write is atomic.

A crash mid-write must never leave a file that looks complete: each writer writes to a
temporary file in the target directory and renames it into place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``.<name>.partial-*``); rename it onto ``path`` only on
    success, with the permissions the umask gives a new file (mkstemp's are 0600). Partial files that
    a killed writer of the same path left behind are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_partials(path)
    fd, tmp = tempfile.mkstemp(
        prefix=_partial_prefix(path), suffix=suffix if suffix is not None else path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.partial-"


def _remove_partials(path: Path) -> None:
    import glob
    import shutil

    for stale in path.parent.glob(f"{glob.escape(_partial_prefix(path))}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz``; name the file and the missing key when one is absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as exc:  # zipfile/ValueError: a truncated or foreign file
        raise ValueError(f"{path}: not a readable .npz array file ({exc})") from exc
    missing = [k for k in required if k not in data]
    if missing:
        raise KeyError(f"{path}: missing arrays {missing}; found {sorted(data)}")
    return data


def write_tiff(path: str | os.PathLike, array: np.ndarray, voxel_nm: tuple[float, ...] | None = None) -> None:
    """Write a 2D image or a (z, y, x) stack as (ImageJ-compatible) TIFF with its voxel size in nm."""
    import tifffile

    array = array if hasattr(array, "shape") and hasattr(array, "dtype") else np.asarray(array)
    kwargs: dict = {"photometric": "minisblack"}  # never RGB, whatever the last axis's length
    if voxel_nm is not None:
        y_nm, x_nm = voxel_nm[-2], voxel_nm[-1]
        kwargs["resolution"] = (1.0 / x_nm, 1.0 / y_nm)
        metadata = {"unit": "nm"}
        if array.ndim == 3 and len(voxel_nm) == 3:
            metadata["spacing"] = voxel_nm[0]
            metadata["axes"] = "ZYX"
        kwargs["metadata"] = metadata
        kwargs["imagej"] = array.dtype in (np.uint8, np.uint16, np.float32)
    with atomic_path(path) as tmp:
        if isinstance(array, np.ndarray) or array.ndim == 2:
            tifffile.imwrite(tmp, np.asarray(array), **kwargs)
        else:  # a lazy (z, y, x) stack: one page in memory at a time
            pages = (np.asarray(array[i]) for i in range(array.shape[0]))
            tifffile.imwrite(tmp, pages, shape=array.shape, dtype=array.dtype, **kwargs)


def read_tiff(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a TIFF image or stack and its voxel size in nm (None when the file does not say)."""
    import tifffile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with tifffile.TiffFile(path) as tif:
            array = tif.asarray()
            # interleaved samples ("YXS"): RGB(A) pixels. A planar "SYX" stays z: tifffile writes
            # 3- and 4-slice float stacks that way unless told minisblack.
            interleaved = tif.series[0].axes.endswith("S")
            voxel = _tiff_voxel_nm(tif, array.ndim - interleaved)
    except (tifffile.TiffFileError, OSError, EOFError, ValueError) as exc:  # truncated: ValueError
        raise ValueError(f"{path}: not a readable TIFF ({exc})") from exc
    return (_grey(array, path) if interleaved else array), voxel


def _grey(array: np.ndarray, path: Path) -> np.ndarray:
    """A TIFF with samples per pixel (RGB, RGBA): read as grey when its colour channels are equal (EM
    saved by an image viewer); a colour image is refused rather than read as a stack of 3-pixel-wide
    images."""
    import warnings

    colour = array[..., :3]
    if colour.shape[-1] == 1 or all(np.array_equal(colour[..., 0], colour[..., c]) for c in range(1, colour.shape[-1])):
        warnings.warn(f"{path}: stored with {array.shape[-1]} samples per pixel (RGB/RGBA) whose colour channels "
                      "are equal: read as a grey image", stacklevel=3)
        return np.ascontiguousarray(colour[..., 0])
    raise ValueError(f"{path}: a colour image ({array.shape[-1]} samples per pixel with different channels); "
                     "EM is read as grey: save one channel (or a grey conversion) as a single-channel TIFF")


UNIT_NM = {"nm": 1.0, "nanometer": 1.0, "micron": 1000.0, "um": 1000.0, "\u00b5m": 1000.0, "microns": 1000.0,
           "micrometer": 1000.0, "angstrom": 0.1, "millimeter": 1e6}


def read_tiff_voxel(path: str | os.PathLike) -> tuple[float, float, float] | None:
    """The (z, y, x) voxel size in nm that a TIFF stack states (ImageJ resolution, spacing and unit),
    without reading its pixels; None unless it states all three in a known unit."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        ij = tif.imagej_metadata or {}
        tag_x, tag_y = tif.pages[0].tags.get("XResolution"), tif.pages[0].tags.get("YResolution")
        scale = UNIT_NM.get(str(ij.get("unit", "")).lower())
        if scale is None or "spacing" not in ij or tag_x is None or tag_y is None or not tag_x.value[0] or not tag_y.value[0]:
            return None
        return (float(ij["spacing"]) * scale, tag_y.value[1] / tag_y.value[0] * scale,
                tag_x.value[1] / tag_x.value[0] * scale)


def _tiff_voxel_nm(tif, ndim: int) -> tuple[float, ...] | None:
    page = tif.pages[0]
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if num == 0:
        return None
    x_nm = den / num
    tag_y = page.tags.get("YResolution")
    y_nm = tag_y.value[1] / tag_y.value[0] if tag_y is not None and tag_y.value[0] else x_nm
    if ndim == 3:
        ij = tif.imagej_metadata or {}
        return (float(ij.get("spacing", x_nm)), float(y_nm), float(x_nm))
    return (float(y_nm), float(x_nm))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh directory beside ``path`` that replaces ``path`` only when the block succeeds
    (directory formats like Zarr cannot be renamed over file by file)."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_partials(path)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(path), dir=path.parent))
    try:
        yield tmp / "out"
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp / "out", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_zarr(path: str | os.PathLike, array: np.ndarray, voxel_nm: tuple[float, ...] | None = None) -> None:
    """Write a bare Zarr (v2) array atomically, 2D chunks of at most 512², voxel size in its attributes."""
    import zarr

    with atomic_dir(path) as tmp:
        chunks = (1,) * (array.ndim - 2) + tuple(min(s, 512) for s in array.shape[-2:])
        z = zarr.create_array(store=str(tmp), shape=array.shape, dtype=array.dtype, chunks=chunks, zarr_format=2)
        z[...] = array
        if voxel_nm is not None:
            z.attrs["voxel_size_nm"] = [float(v) for v in voxel_nm]


#: the pyramid's coarsest level keeps at least this many pixels in y and x
PYRAMID_MIN_SIZE = 64


def write_ome_zarr(path: str | os.PathLike, array: np.ndarray, voxel_nm: tuple[float, ...] | None) -> None:
    """A 2D image or (z, y, x) volume as OME-Zarr 0.4 (ngff-zarr), atomically: the voxel size in
    nanometres and a multiscale pyramid, halved in y and x only (serial sections keep their z) down
    to ``PYRAMID_MIN_SIZE``, by block means. napari and Fiji (MoBIE / BigDataViewer) open it."""
    import dask.array as da
    import ngff_zarr as nz

    array = array if isinstance(array, (np.ndarray, da.Array)) else da.from_array(array, chunks=_slice_chunks(array.shape))
    if array.ndim not in (2, 3):
        raise ValueError(f"{path}: OME-Zarr output takes a 2D image or a (z, y, x) volume, got shape {array.shape}")
    dims = ["z", "y", "x"][-array.ndim:]
    scale = dict(zip(dims, (float(v) for v in voxel_nm))) if voxel_nm is not None else None
    units = {d: "nanometer" for d in dims} if voxel_nm is not None else None
    factors, f = [], 2
    while min(array.shape[-2:]) // f >= PYRAMID_MIN_SIZE:
        factors.append({**({"z": 1} if array.ndim == 3 else {}), "y": f, "x": f})
        f *= 2
    image = nz.to_ngff_image(array, dims=dims, scale=scale, axes_units=units, name=Path(path).stem)
    multiscales = nz.to_multiscales(image, scale_factors=factors, method=nz.Methods.DASK_BIN_SHRINK)
    with atomic_dir(path) as tmp:
        nz.to_ngff_zarr(str(tmp), multiscales, version="0.4")  # 0.4: what most viewers read today


def is_ome_zarr(path: Path) -> bool:
    """A Zarr group with OME ``multiscales`` metadata (v0.4: ``.zattrs``; v0.5: ``zarr.json``)."""
    import json

    for name in (".zattrs", "zarr.json"):
        meta = path / name
        if meta.is_file():
            attrs = json.loads(meta.read_text())
            attrs = attrs.get("attributes", attrs)  # zarr.json keeps them under "attributes"
            if "multiscales" in attrs or "multiscales" in attrs.get("ome", {}):
                return True
    return False


def read_ome_zarr(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """The full-resolution level of an OME-Zarr (0.4 or 0.5) as (z, y, x) or (y, x), and its voxel
    size in nm (None without a known length unit). Singleton channel/time axes are dropped."""
    data, voxel = open_ome_zarr(path)
    return np.asarray(data), voxel


def open_ome_zarr(path: str | os.PathLike):
    """:func:`read_ome_zarr`, lazily: a dask array that reads the chunks a slice needs."""
    import ngff_zarr as nz

    path = Path(path)
    try:
        image = nz.from_ngff_zarr(str(path)).images[0]
    except Exception as exc:
        raise ValueError(f"{path}: not a readable OME-Zarr ({type(exc).__name__}: {exc})") from exc
    data, dims = image.data, list(image.dims)
    for axis in [d for d in dims if d not in ("z", "y", "x")]:
        if data.shape[dims.index(axis)] != 1:
            raise ValueError(f"{path}: has {data.shape[dims.index(axis)]} entries along '{axis}'; "
                             f"expected one grey channel and time point")
        data = data[(slice(None),) * dims.index(axis) + (0,)]
        dims.remove(axis)
    units = image.axes_units or {}
    factors = [UNIT_NM.get(str(units.get(d, "")).lower()) for d in dims]
    voxel = None if None in factors else tuple(float(image.scale[d]) * f for d, f in zip(dims, factors))
    return data, voxel


def read_zarr(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Read a whole Zarr array (voxel size as :func:`write_zarr` writes it) or the full-resolution
    level of an OME-Zarr group."""
    data, voxel = open_zarr(path)
    return np.asarray(data[...]), voxel


def open_zarr(path: str | os.PathLike):
    """:func:`read_zarr`, lazily: the array as stored (a dask array for an OME-Zarr)."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if is_ome_zarr(path):
        return open_ome_zarr(path)
    try:
        z = zarr.open_array(str(path), mode="r")
    except Exception as exc:
        raise ValueError(f"{path}: not a readable Zarr array or OME-Zarr ({exc})") from exc
    voxel = z.attrs.get("voxel_size_nm")
    return z, tuple(voxel) if voxel else None


MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".map", ".st")


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """An MRC image or stack (cryo-ET / FIB-SEM tools write it) and its voxel size in nm (the
    header states Angstrom; None when it states none)."""
    with _open_mrc(path) as mrc:
        return np.array(mrc.data), _mrc_voxel(mrc)


def _open_mrc(path: str | os.PathLike):
    """The file memory-mapped (``mrcfile.mmap``): its data are read when indexed."""
    import mrcfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return mrcfile.mmap(path, mode="r", permissive=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable MRC file ({type(exc).__name__}: {exc})") from exc


def _mrc_voxel(mrc) -> tuple[float, ...] | None:
    size = mrc.voxel_size
    voxel = tuple(float(v) / 10 for v in (size.z, size.y, size.x))[-mrc.data.ndim:]
    return voxel if all(v > 0 for v in voxel) else None


def _slice_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One slice, at most 512 x 512 px: the chunks staged and lazily converted outputs use."""
    return (1,) * (len(shape) - 2) + tuple(min(n, 512) for n in shape[-2:])


def open_image(path: str | os.PathLike):
    """:func:`read_image`, lazily: an array whose slices are read when indexed (a TIFF through
    tifffile's Zarr view of its pages, Zarr and OME-Zarr arrays as stored, MRC memory-mapped), so
    a stack larger than memory is processed slice by slice. Small or interleaved (RGB) TIFFs are
    read whole."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _open_tiff(Path(path))
    if suffix == ".zarr":
        return open_zarr(path)
    if suffix in MRC_SUFFIXES:
        mrc = _open_mrc(path)  # stays open while its data are in use
        return mrc.data, _mrc_voxel(mrc)
    return read_image(path)  # names the supported formats


#: TIFFs up to this size are read whole (tifffile's per-page Zarr view pays off for large stacks)
LAZY_TIFF_BYTES = 1 << 28


def _open_tiff(path: Path):
    import tifffile
    import zarr

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            small = series.size * series.dtype.itemsize <= LAZY_TIFF_BYTES
            if small or series.axes.endswith("S") or not series.axes or series.axes[-2:] != "YX":
                return read_tiff(path)
            voxel = _tiff_voxel_nm(tif, len(series.shape))
        return zarr.open_array(tifffile.imread(path, aszarr=True), mode="r"), voxel
    except (tifffile.TiffFileError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable TIFF ({exc})") from exc


@contextlib.contextmanager
def staged_output(path: str | os.PathLike, shape: tuple[int, ...], voxel_nm: tuple[float, ...] | None):
    """A float32 Zarr array to fill slab by slab (staged in a temporary folder beside ``path``),
    written to ``path`` (:func:`write_image`: TIFF or OME-Zarr) chunk by chunk when the block
    succeeds; nothing at ``path`` changes if it fails. Memory is bounded by a slab, not the output."""
    import shutil

    import zarr

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".stage")
    _remove_partials(staging)  # left by a killed run
    stage = Path(tempfile.mkdtemp(prefix=_partial_prefix(staging), dir=path.parent))
    try:
        array = zarr.create_array(store=str(stage / "stage.zarr"), shape=shape, dtype=np.float32,
                                  chunks=_slice_chunks(shape), zarr_format=2)
        yield array
        write_image(path, array, voxel_nm)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """A 2D image or (z, y, x) stack from TIFF, Zarr / OME-Zarr or MRC, chosen by the file name."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        return read_tiff(path)
    if suffix == ".zarr":
        return read_zarr(path)
    if suffix in MRC_SUFFIXES:
        return read_mrc(path)
    raise ValueError(f"{path}: unsupported format '{suffix}'; expected .tif, .tiff, .zarr or "
                     f"{', '.join(MRC_SUFFIXES)}")


def write_image(path: str | os.PathLike, array: np.ndarray, voxel_nm: tuple[float, ...] | None = None) -> None:
    """TIFF, or OME-Zarr for a ``.zarr`` path (with a pyramid), by the file name."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        write_tiff(path, array, voxel_nm)
    elif suffix == ".zarr":
        write_ome_zarr(path, array, voxel_nm)
    else:
        raise ValueError(f"{path}: unsupported format '{suffix}'; expected .tif, .tiff or .zarr")
