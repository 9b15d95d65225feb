"""Phantom vs real EM figure: judge by eye (and by histogram) how EM-like the phantom looks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emdiffuse.io import read_tiff
from emdiffuse.reporting.plots import save_figure


def load_reference_em(folder) -> dict[str, np.ndarray]:
    """Read every ``*.tif`` of ``folder`` into float32 [0, 1], keyed by file stem."""
    folder = Path(folder)
    files = sorted(folder.glob("*.tif"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.tif reference images")
    out = {}
    for path in files:
        image, _ = read_tiff(path)
        if np.issubdtype(image.dtype, np.integer):
            image = image / np.iinfo(image.dtype).max
        out[path.stem] = np.clip(image, 0, 1).astype(np.float32)
    return out


def phantom_figure(path: str, volumes: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    """XY and XZ slice of each phantom volume beside the reference images, plus histograms.

    All panels share one grey scale (0..1) and one pixel scale per panel, so contrast and texture
    compare directly; the bottom row overlays intensity histograms of phantoms and references.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for name, vol in volumes.items():
        panels.append((f"{name} XY (z={vol.shape[0] // 2})", vol[vol.shape[0] // 2]))
        panels.append((f"{name} XZ (y={vol.shape[1] // 2})", vol[:, vol.shape[1] // 2, :]))
    panels += [(f"real: {name}", img) for name, img in reference.items()]

    ncol = len(panels)
    fig = plt.figure(figsize=(2.6 * ncol, 2.6 * 2 + 0.6), constrained_layout=True)
    grid = fig.add_gridspec(2, ncol, height_ratios=[2.6, 1.6])
    for k, (title, image) in enumerate(panels):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    bins = np.linspace(0, 1, 101)
    span = max(ncol // max(len(volumes), 1), 1)
    for k, (name, vol) in enumerate(volumes.items()):
        ax = fig.add_subplot(grid[1, k * span:min((k + 1) * span, ncol)])
        ax.hist(vol.ravel(), bins=bins, density=True, histtype="step", lw=1.5, color="k", label=f"phantom {name}")
        for ref_name, img in reference.items():
            ax.hist(img.ravel(), bins=bins, density=True, histtype="step", ls="--", lw=0.8, label=ref_name)
        ax.set_title(f"intensity histogram: {name} vs real", fontsize=8)
        ax.set_xlabel("intensity", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=5)
    save_figure(fig, path, dpi=150)
