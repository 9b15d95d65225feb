"""The transfer-learning figure: like the paper's transfer panels, one row per (task, method)
with the domain-B input, the directly applied domain-A model, the fine-tuned and the
from-scratch model, and the ground truth, each with the same zoomed inset."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import save_figure
from .figures import _inset  # noqa: E402


def fit_inset(inset: tuple[int, int, int], shape: tuple[int, int]) -> tuple[int, int, int]:
    """The configured (y, x, size) box if it lies inside ``shape``, else a centred quarter-size box."""
    y, x, size = inset
    if y + size <= shape[0] and x + size <= shape[1]:
        return inset
    size = max(min(shape) // 4, 1)
    return ((shape[0] - size) // 2, (shape[1] - size) // 2, size)


def transfer_figure(path: str, rows: list[tuple[str, list[tuple[str, np.ndarray]]]], *,
                    inset: tuple[int, int, int], suptitle: str = "") -> None:
    """A grid: each row is (row label, panels); the last panel of each row is its ground truth,
    whose pixels the ``inset`` box is given in (coarser panels get it scaled)."""
    n_cols = max(len(panels) for _, panels in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.6 * n_cols, 2.8 * len(rows)), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        ref = panels[-1][1].shape
        box = fit_inset(inset, ref)
        for c, ax in enumerate(axes[r]):
            ax.axis("off")
            if c >= len(panels):
                continue
            title, image = panels[c]
            ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            _inset(ax, image, box, image.shape[0] / ref[0])
            ax.set_title(title, fontsize=9)
        axes[r][0].text(-0.08, 0.5, label, transform=axes[r][0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
