"""FSIM (Zhang et al. 2011) through piq, the closest Python port of the reference MATLAB code.

Grey images use ``chromatic=False`` (for grey input FSIMc equals FSIM). float64 and the
[0, 1] range avoid piq's float32 rounding and its assertion on out-of-range values.
"""

from __future__ import annotations

import numpy as np
import piq
import torch

from .basic import DATA_RANGE, check_pair


def fsim(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    """FSIM of one grey image pair in [0, 1]; 1 means identical."""
    pred, gt = check_pair(prediction, ground_truth)
    return float(fsim_batch(pred[None], gt[None])[0])


def fsim_batch(predictions: np.ndarray, ground_truths: np.ndarray) -> np.ndarray:
    """FSIM of each pair of two ``(N, H, W)`` stacks."""
    pred, gt = check_pair(predictions, ground_truths, ndim=3)
    with torch.no_grad():
        scores = piq.fsim(
            torch.from_numpy(pred)[:, None],
            torch.from_numpy(gt)[:, None],
            data_range=DATA_RANGE,
            chromatic=False,
            reduction="none",
        )
    return scores.numpy()
