"""Random aligned training patches from pair arrays.

The official EMDiffuse data pipeline (``data/dataset.py``) crops aligned patches, flips and
rotates input and target together and blurs the *input only* (PIL ``GaussianBlur(radius=3)``,
p = 0.5) so the network does not learn to trust fine input texture. PIL's ``radius`` is the
standard deviation of its (box-approximated) Gaussian, so the equivalent here is
``scipy.ndimage.gaussian_filter(sigma=3, mode="nearest")`` (PIL extends edge pixels too).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: sigma equivalent to the official PIL ``GaussianBlur(radius=3)`` (PIL's radius is the std).
OFFICIAL_BLUR_SIGMA = 3.0


def pair_scale(inputs: np.ndarray, targets: np.ndarray) -> int:
    """Integer factor between target and input grids (1: denoising, 2: x2 super-resolution)."""
    if inputs.ndim != 3 or targets.ndim != 3:
        raise ValueError(f"pairs must be (N, H, W) arrays; got inputs {inputs.shape}, targets {targets.shape}")
    if len(inputs) != len(targets):
        raise ValueError(f"inputs and targets differ in count: {len(inputs)} vs {len(targets)}")
    (h, w), (th, tw) = inputs.shape[1:], targets.shape[1:]
    if th % h or tw % w or th // h != tw // w:
        raise ValueError(f"target size {th}x{tw} is not an integer multiple of input size {h}x{w}")
    return th // h


class SeededSampler:
    """A batch source whose NumPy generator state is saved in training checkpoints, so a resumed
    run draws exactly the batches an uninterrupted one would."""

    rng: np.random.Generator

    @property
    def state(self) -> dict:
        return self.rng.bit_generator.state

    @state.setter
    def state(self, value: dict) -> None:
        self.rng.bit_generator.state = value


class PatchSampler(SeededSampler):
    """Draw batches of aligned (input, target) patches; deterministic for a seed.

    ``state`` gets/sets the RNG state so an interrupted training run resumes with the exact
    same sequence of batches.
    """

    def __init__(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        patch: int,
        batch_size: int,
        seed: int,
        augment: bool = True,
        input_blur_p: float = 0.0,
        input_blur_sigma: float = OFFICIAL_BLUR_SIGMA,
    ):
        self.scale = pair_scale(inputs, targets)
        h, w = inputs.shape[1:]
        if patch > min(h, w):
            raise ValueError(f"patch {patch} is larger than the input images ({h}x{w})")
        self.inputs = np.asarray(inputs, dtype=np.float32)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.patch, self.batch_size = patch, batch_size
        self.augment, self.input_blur_p, self.input_blur_sigma = augment, input_blur_p, input_blur_sigma
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """One batch: inputs (B, 1, p, p) and targets (B, 1, p*s, p*s), float32."""
        pairs = [self._one() for _ in range(self.batch_size)]
        inp = np.stack([p[0] for p in pairs])[:, None]
        tgt = np.stack([p[1] for p in pairs])[:, None]
        return inp, tgt

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        p, s, rng = self.patch, self.scale, self.rng
        i = rng.integers(len(self.inputs))
        h, w = self.inputs.shape[1:]
        y, x = rng.integers(h - p + 1), rng.integers(w - p + 1)
        inp = self.inputs[i, y : y + p, x : x + p]
        tgt = self.targets[i, y * s : (y + p) * s, x * s : (x + p) * s]
        if self.augment:
            k, flip = rng.integers(4), rng.random() < 0.5
            inp, tgt = (flip_rot(a, k, flip) for a in (inp, tgt))
        if self.input_blur_p and rng.random() < self.input_blur_p:
            inp = gaussian_filter(inp, self.input_blur_sigma, mode="nearest")
        return np.ascontiguousarray(inp), np.ascontiguousarray(tgt)


def flip_rot(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    a = np.rot90(a, k)
    return a[::-1] if flip else a
