"""Isotropic reconstruction figures: XZ/YZ views of every volume, and 3D renders of segmented mitochondria."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from . import save_figure  # noqa: E402


def middle_planes(volume: np.ndarray) -> dict[str, np.ndarray]:
    """The XZ plane through the middle y and the YZ plane through the middle x, z pointing down."""
    _, h, w = volume.shape
    return {"XZ": volume[:, h // 2, :], "YZ": volume[:, :, w // 2]}


def reconstruction_figure(path: str, panels: list[tuple[str, np.ndarray]],
                          uncertainties: list[tuple[str, np.ndarray]], *, suptitle: str = "") -> None:
    """Two rows (XZ, YZ), one column per volume, then the uncertainty maps (magma). Every volume
    shares one grey scale: the 0.5-99.5th percentiles of the first (the ground truth)."""
    columns = panels + uncertainties
    shape = panels[0][1].shape
    for title, volume in columns:
        if volume.shape != shape:
            raise ValueError(f"figure panel '{title}' has shape {volume.shape}, expected {shape}")
    n = len(columns)
    aspect = shape[0] / max(shape[1], shape[2])
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n + 0.8, 2 * 2.0 * aspect + 0.9), squeeze=False,
                             layout="constrained")
    vmax = max([float(np.percentile(u, 99.5)) for _, u in uncertainties] + [1e-6])
    lo, hi = np.percentile(panels[0][1], [0.5, 99.5])  # one grey scale for every volume, from the first
    hi = hi if hi > lo else lo + 1e-6
    for col, (title, volume) in enumerate(columns):
        is_unc = col >= len(panels)
        for row, (view, plane) in enumerate(middle_planes(volume).items()):
            ax = axes[row, col]
            if is_unc:
                im = ax.imshow(plane, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(plane, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{view} (z down)", fontsize=8)
        if is_unc and col == n - 1:
            fig.colorbar(im, ax=axes[:, col], shrink=0.8, label="std of K samples")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    save_figure(fig, path, dpi=130)


def _render(ax, mask: np.ndarray, voxel_nm, step: int) -> int:
    """Marching-cubes surface of a binary mask on ``ax`` (3D axes); returns the triangle count."""
    from skimage.measure import marching_cubes

    if mask.sum() == 0 or mask.all():
        return 0
    padded = np.pad(mask.astype(np.float32), 1)  # closes surfaces cut by the volume's faces
    verts, faces, _, _ = marching_cubes(padded, 0.5, spacing=tuple(float(v) for v in voxel_nm), step_size=step)
    verts = verts - np.asarray(voxel_nm, float)  # undo the padding offset
    triangles = verts[faces][:, :, ::-1]  # (z, y, x) -> (x, y, z)
    ax.add_collection3d(Poly3DCollection(triangles, facecolors=_shade(triangles), edgecolor="none"))
    return len(faces)


def _shade(triangles: np.ndarray) -> np.ndarray:
    """Lambert shading of the triangles (x, y, z) from a fixed light, in a mitochondria red."""
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.array([0.4, -0.5, 0.77])
    level = 0.35 + 0.65 * np.abs(normals @ (light / np.linalg.norm(light)))
    base = np.array([0.85, 0.33, 0.31])
    return np.column_stack([np.clip(level[:, None] * base, 0, 1), np.ones(len(level))])


def mito_render_figure(path: str, panels: list[tuple[str, np.ndarray]], voxel_nm, *, suptitle: str = "",
                       step: int = 2) -> list[int]:
    """One 3D render per binary (z, y, x) mask (marching cubes, ``step`` voxels per cube), titled;
    returns the triangle count of each panel (0: nothing segmented)."""
    n = len(panels)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(3.3 * cols, 3.3 * rows))
    extent = np.array(panels[0][1].shape, float) * np.asarray(voxel_nm, float)  # z, y, x in nm
    counts = []
    for i, (title, mask) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d")
        count = _render(ax, mask, voxel_nm, step)
        counts.append(count)
        ax.set_xlim(0, extent[2])
        ax.set_ylim(0, extent[1])
        ax.set_zlim(0, extent[0])
        ax.set_box_aspect(tuple(extent[::-1].tolist()), zoom=1.25)  # a copy: matplotlib scales it in place
        ax.view_init(elev=25, azim=-60)
        ax.set_axis_off()
        ax.set_title(title if count else f"{title}\n(nothing segmented)", fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    save_figure(fig, path, dpi=130)
    return counts
