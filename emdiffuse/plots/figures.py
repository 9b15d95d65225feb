"""Paper-style restoration figures: input, baselines, EMDiffuse and ground truth with insets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from . import save_figure


def _inset(ax, image: np.ndarray, box: tuple[int, int, int], scale: float) -> None:
    """Draw the zoomed box in the lower-right corner of the panel, framed in yellow."""
    y, x, size = (int(round(v * scale)) for v in box)
    crop = image[y:y + size, x:x + size]
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), size, size, fill=False, ec="yellow", lw=1))
    sub = ax.inset_axes([0.55, 0.0, 0.45, 0.45])
    sub.imshow(crop, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    sub.set_xticks([])
    sub.set_yticks([])
    for spine in sub.spines.values():
        spine.set_edgecolor("yellow")


def restoration_figure(
    path: str, panels: list[tuple[str, np.ndarray]], *, inset: tuple[int, int, int],
    uncertainty: np.ndarray | None = None, reliability: float | None = None, suptitle: str = "",
) -> None:
    """One row of panels (each titled, same grey scale, with a zoomed inset) plus the uncertainty map.

    ``inset`` is (y, x, size) in the pixels of the last panel (the ground truth); panels on a
    coarser grid get the box scaled to their own size.
    """
    ref = panels[-1][1].shape[0]
    n = len(panels) + (uncertainty is not None)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.3), squeeze=False)
    axes = axes[0]
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        _inset(ax, image, inset, image.shape[0] / ref)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if uncertainty is not None:
        ax = axes[-1]
        im = ax.imshow(uncertainty, cmap="magma", vmin=0, vmax=max(float(np.percentile(uncertainty, 99.5)), 1e-6))
        title = "uncertainty (std of K samples)"
        if reliability is not None:
            title += f"\n99th pct = {reliability:.3f}"
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=150)
