"""Realism figure: lateral power spectra and axial correlation curves of phantoms and real EM."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import save_figure  # noqa: E402
from ...evaluation.realism import SLOPE_BAND, axial_correlation, normalized, radial_spectrum  # noqa: E402

MAX_LAG = 8


def realism_figure(path: str, volumes: dict[str, np.ndarray], images: dict[str, np.ndarray]) -> None:
    """Left: radially averaged power spectra of XY planes (volumes solid, 2D reference images dashed),
    the slope band shaded. Right: correlation of slices 1..MAX_LAG apart for each volume."""
    fig, (spec_ax, z_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for name, volume in volumes.items():
        planes = volume[np.linspace(0, len(volume) - 1, min(16, len(volume))).astype(int)]
        spec_ax.loglog(*radial_spectrum(planes), label=name)
        lags = np.arange(1, min(MAX_LAG, len(volume) - 1) + 1)
        z_ax.plot(lags, [axial_correlation(volume, lag) for lag in lags], marker="o", label=name)
    for name, image in images.items():
        spec_ax.loglog(*radial_spectrum(normalized(image)), ls="--", lw=1, label=f"{name} (2D)")
    spec_ax.axvspan(*SLOPE_BAND, color="0.9", zorder=0)
    spec_ax.set(xlabel="spatial frequency (cycles / pixel)", ylabel="power", title="lateral power spectrum")
    z_ax.set(xlabel="slices apart", ylabel="correlation", title="axial correlation", ylim=(0, 1.02))
    spec_ax.legend(fontsize=6, frameon=False)
    z_ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=150)
