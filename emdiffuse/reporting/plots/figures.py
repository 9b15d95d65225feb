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


def restoration_figure(path: str, rows: list[dict], *, inset: tuple[int, int, int], suptitle: str = "") -> None:
    """One row per dataset: its panels (each titled, same grey scale, with a zoomed inset) and, where
    given, the uncertainty map.

    Each row is ``{"label": str, "panels": [(title, image), ...], "uncertainty": array or None,
    "reliability": float or None}``. ``inset`` is (y, x, size) in the pixels of a row's last panel
    (the ground truth); panels on a coarser grid get the box scaled to their own size.
    """
    n = max(len(r["panels"]) + (r.get("uncertainty") is not None) for r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(3.0 * n, 3.3 * len(rows)), squeeze=False)
    for row, ax_row in zip(rows, axes):
        ref = row["panels"][-1][1].shape[0]
        for ax in ax_row:
            ax.axis("off")
        for ax, (title, image) in zip(ax_row, row["panels"]):
            ax.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            _inset(ax, image, inset, image.shape[0] / ref)
            ax.set_title(title, fontsize=10)
        ax_row[0].text(-0.08, 0.5, row["label"], transform=ax_row[0].transAxes, rotation=90,
                       ha="right", va="center", fontsize=11)
        uncertainty = row.get("uncertainty")
        if uncertainty is not None:
            ax = ax_row[len(row["panels"])]
            im = ax.imshow(uncertainty, cmap="magma", vmin=0,
                           vmax=max(float(np.percentile(uncertainty, 99.5)), 1e-6))
            title = "uncertainty (std of K samples)"
            if row.get("reliability") is not None:
                title += f"\nreliability score {row['reliability']:.2f}"
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
