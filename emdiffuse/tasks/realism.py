"""The realism table and figure: how EM-like each prepared volume is, beside real EM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..io import write_text
from ..reporting import markdown


def realism(volume_paths: dict[str, str], kinds: dict[str, str], reference_dir: str, csv_path: str, md_path: str,
            png_path: str) -> None:
    """The realism table and figure: every dataset's prepared volume and the real reference images,
    histogram distances to the first real (non-phantom) volume (:mod:`emdiffuse.evaluation.realism`)."""
    from ..data.datasets import load_volume
    from ..io import atomic_path
    from ..reporting.plots.phantom import load_reference_em
    from ..reporting.plots.realism import realism_figure
    from ..evaluation.realism import realism_rows

    volumes = {name: (load_volume(path)[0], kinds[name]) for name, path in volume_paths.items()}
    real = [name for name, kind in kinds.items() if kind != "phantom"]
    if not real:
        raise ConfigError("realism: the config has no real (non-phantom) volume to compare the phantoms with")
    images = load_reference_em(reference_dir)
    rows = pd.DataFrame(realism_rows(volumes, images, real[0]))
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False)
    write_text(md_path, realism_markdown(rows, real[0]))
    realism_figure(png_path, {name: v for name, (v, _) in volumes.items()}, images)


def realism_markdown(rows: pd.DataFrame, reference: str) -> str:
    columns = [("std", "contrast (std)"), ("hist_w1", f"histogram W1 to {reference}"),
               ("spectrum_slope", "spectrum slope"), ("grad_mean", "mean |grad|"), ("noise_sigma", "noise sigma"),
               ("axial_corr_1", "z-corr 1"), ("axial_corr_2", "z-corr 2"), ("axial_corr_4", "z-corr 4"),
               ("axial_corr_6", "z-corr 6"), ("cubic_psnr_x4", "cubic PSNR x4 (dB)"),
               ("cubic_psnr_x6", "cubic PSNR x6 (dB)")]
    cells = [[r["data"], r["kind"], r["shape"],
              *("—" if not np.isfinite(r[c]) else f"{r[c]:.3f}" if "psnr" not in c else f"{r[c]:.1f}" for c, _ in columns)]
             for _, r in rows.iterrows()]
    lines = ["# Realism: the phantoms beside real EM", "",
             *markdown.table(["data", "kind", "shape", *(title for _, title in columns)], cells)]
    lines += ["", "Volumes as the workflow prepares them (percentile-normalised to [0, 1]); the 2D reference images "
              "normalised alike. Spectrum slope: log-log slope of the radially averaged power spectrum of XY planes "
              "over 0.04-0.25 cycles/pixel. Noise sigma: Immerkaer's estimate (the phantom is clean; a real volume's "
              "ground truth carries its detector noise). z-corr k: Pearson correlation of slices k apart. Cubic PSNR "
              "xk: cubic interpolation from sections of k slices against the slices it fills in, the isotropic "
              "task's own degradation (the phantom's 8 nm voxels make x4 sections 32 nm thick, the real volume's "
              "10 nm ones 40 nm). Logic: emdiffuse/evaluation/realism.py."]
    return "\n".join(lines) + "\n"
