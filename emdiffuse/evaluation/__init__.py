"""Evaluation: the metric registry (below), the reliability calibration (:mod:`.calibration`) and
how EM-like a volume is (:mod:`.realism`).

Metric registry: table code iterates over names and never knows which metrics exist.

A new metric is one module plus one line in ``METRICS`` (naming its function, imported when used). Every ``fn`` takes
``(prediction, ground_truth)`` as 2D float images in [0, 1] (data range 1.0), checks shape and
finiteness, clips to [0, 1] and returns a float.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str  # column name in tables
    function: str  # "<module of this package>:<function>", (prediction, ground_truth) -> score; imported
    # on first use, so that planning the workflow (tables, captions) never imports torch (LPIPS, FSIM)
    higher_is_better: bool
    description: str
    ideal: float | None = None  # set when neither extreme is best: the table favours the closest value

    @property
    def fn(self) -> Callable[[np.ndarray, np.ndarray], float]:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    def best(self, values: np.ndarray) -> float:
        """The best of ``values`` under this metric's rule (nan-safe)."""
        values = np.asarray(values, dtype=np.float64)
        if self.ideal is not None:
            return float(values[np.nanargmin(np.abs(values - self.ideal))])
        return float(np.nanmax(values) if self.higher_is_better else np.nanmin(values))

    def gain(self, values, reference) -> np.ndarray:
        """How much better ``values`` are than ``reference`` (elementwise; positive = better, in the
        metric's units): the difference, its sign set by the metric's direction; with an ideal
        value, how much closer to it."""
        values, reference = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
        if self.ideal is not None:
            return np.abs(reference - self.ideal) - np.abs(values - self.ideal)
        return values - reference if self.higher_is_better else reference - values

    @property
    def arrow(self) -> str:
        if self.ideal is not None:
            return f"→{self.ideal:g}"
        return "↑" if self.higher_is_better else "↓"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("PSNR", "basic:psnr", True, "peak signal-to-noise ratio in dB on the [0, 1] range"),
        Metric("SSIM", "basic:ssim", True, "structural similarity, Wang et al. 2004 settings"),
        Metric("LPIPS", "lpips:lpips_distance", False, "learned perceptual distance, AlexNet v0.1 (Zhang et al. 2018)"),
        Metric("FSIM", "fsim:fsim", True, "feature similarity, phase congruency + gradient (Zhang et al. 2011)"),
        Metric("resolution_ratio", "resolution:resolution_ratio", False,
               "decorrelation resolution pred / GT (Descloux 2019): 1 ideal, >1 blurrier, <1 noise or invented detail",
               ideal=1.0),
    )
}


def get(name: str) -> Metric:
    """The registered metric ``name``; the KeyError lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known metrics: {sorted(METRICS)}") from None


def compute(names: list[str], prediction: np.ndarray, ground_truth: np.ndarray) -> dict[str, float]:
    """Score one (prediction, ground truth) pair with each named metric, in the order given."""
    metrics = [get(name) for name in names]  # fail on a bad name before any slow metric runs
    return {m.name: m.fn(prediction, ground_truth) for m in metrics}
