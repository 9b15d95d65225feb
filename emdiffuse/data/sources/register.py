"""Registration of a noisy acquisition onto its ground truth, before patches are cut.

Two scans of the same region are offset by stage drift (a rigid sub-pixel shift) and, at short
dwell times, by small scan distortions; pixel-wise losses and metrics need them aligned. The
official pipeline uses ORB homographies and RAFT flow; here a phase-correlation shift, then
optionally TV-L1 optical flow for the residual warp.
"""

from __future__ import annotations

import numpy as np


def register_pair(
    moving: np.ndarray, fixed: np.ndarray, upsample: int = 50, optical_flow: bool = False
) -> tuple[np.ndarray, tuple[float, float]]:
    """Align ``moving`` onto ``fixed``; return the aligned float32 image and the (y, x) shift applied to it."""
    from scipy import ndimage
    from skimage.filters import window
    from skimage.registration import optical_flow_tvl1, phase_cross_correlation

    moving, fixed = np.asarray(moving, np.float32), np.asarray(fixed, np.float32)
    # A Hann window removes the edge discontinuity of non-periodic images, which biases the
    # sub-pixel peak; plain (not phase-whitened) correlation keeps smooth EM textures usable.
    hann = window("hann", fixed.shape)
    shift, _, _ = phase_cross_correlation(
        (fixed - fixed.mean()) * hann, (moving - moving.mean()) * hann, upsample_factor=upsample, normalization=None
    )
    aligned = ndimage.shift(moving, shift, order=3, mode="nearest")
    if optical_flow:
        from skimage.transform import warp

        flow_y, flow_x = optical_flow_tvl1(fixed, aligned)
        rows, cols = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in fixed.shape), indexing="ij")
        aligned = warp(aligned, np.array([rows + flow_y, cols + flow_x]), mode="edge", preserve_range=True)
    return aligned.astype(np.float32), (float(shift[0]), float(shift[1]))
