"""Figures of the benchmark; each module draws one kind, ``save_figure`` writes them all."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, dpi: int = 150) -> None:
    """Write ``fig`` atomically in the format the file name says, then free it."""
    import matplotlib.pyplot as plt

    from ...io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[-1])
    plt.close(fig)
