"""Isotropic volume reconstruction methods: anisotropic sections in, isotropic volume out.

Like ``methods.Method`` (validated params, fit with exact resume, single-file save/load) but on
volumes. ``fit`` takes the training volume, in [0, 1]: the isotropic volume for ``srunet3d`` and
``vemdiffuse_i`` (sections are simulated from it with ``degrade.anisotropic``), the ANISOTROPIC
volume itself for ``vemdiffuse_a`` (it never sees isotropic data); non-learned methods need no fit.
``predict`` takes (Z, y, x) sections and returns ``prediction`` (and ``uncertainty`` for K > 1
diffusion samples, the per-voxel std in [0, 1] units) on ``volumes.output_positions(Z, z)``:
``(Z-1)*z + 1`` slices for odd z, ``(Z-1)*z`` for even z. Prediction runs in z chunks of
``predict.chunk`` sections (``volumes.iter_chunks``), so memory is bounded for any depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from emdiffuse.data.degrade import anisotropic
from emdiffuse.models import catalog
from emdiffuse.models.lifecycle import Model, read_checkpoint
from emdiffuse.models.methods import DiffusionWeights
from emdiffuse.models.volumes import BlockSampler, interpolate_z, iter_chunks, output_positions, stitch, tiled_stack_apply


class VolumeMethod(Model):
    """Base class of the volume methods; subclasses set ``name`` and the hooks."""

    #: what ``fit`` learns from (``catalog.Entry.training_data``)
    training_data: str | None = "isotropic"

    def __init_subclass__(cls, **kwargs):
        """A volume method class with an entry in ``catalog.VOLUME`` takes its settings from there."""
        super().__init_subclass__(**kwargs)
        entry = catalog.VOLUME.get(cls.__dict__.get("name", ""))
        if entry is not None:
            cls.DEFAULTS, cls.learned, cls.training_data = entry.defaults, entry.learned, entry.training_data
            cls.SCHEMA = entry.schema

    def __init__(self, params: dict | None, *, z_factor: int, device: torch.device, seed: int):
        if not isinstance(z_factor, (int, np.integer)) or z_factor < 2:
            raise ValueError(f"{self.name}: z_factor must be an int >= 2, got {z_factor!r}")
        self.z_factor = int(z_factor)
        self._fitted = not self.learned
        super().__init__(params, device=device, seed=seed)

    @property
    def fitted(self) -> bool:
        return self._fitted

    def fit(self, volume: np.ndarray, *, checkpoint_path: str | Path, progress: bool = True,
            log: Callable = print) -> list[dict]:
        """Train on ``volume`` (see the module docstring), resuming from ``checkpoint_path``; return the history."""
        volume = _as_volume(volume, f"{self.name}.fit")
        if self.learned:
            self.history = self._fit(volume, Path(checkpoint_path), progress, log)
        self._fitted = True
        return self.history

    def predict(self, anisotropic: np.ndarray, *, seed: int, progress: bool = True, **overrides) -> dict[str, np.ndarray]:
        """Reconstruct (Z, y, x) sections in [0, 1] onto ``output_positions(Z, z_factor)``; clipped to
        [0, 1]. ``overrides``: ``predict`` settings for this call (``steps=10``, ``chunk=4``, ...)."""
        return stitch(self.predict_chunks(_as_volume(anisotropic, f"{self.name}.predict"), seed=seed,
                                          progress=progress, **overrides))

    def predict_chunks(self, sections, *, seed: int, progress: bool = True, transform=None,
                       runs: range | None = None, **overrides):
        """:meth:`predict` one z chunk (``predict.chunk`` sections) at a time: yields (index of the
        chunk's first output slice, its outputs). ``sections`` may be lazy (only a chunk's sections
        are read) and ``transform`` maps what is read to [0, 1] float32, so that a volume larger
        than memory is reconstructed chunk by chunk. ``runs``: only these chunks
        (``volumes.chunk_runs``), as one block of a restore split over jobs."""
        self._require_fitted()
        if len(sections.shape) != 3:
            raise ValueError(f"{self.name}.predict: expected a (z, y, x) volume, got shape {tuple(sections.shape)}")
        output_positions(len(sections), self.z_factor)  # validates the depth
        settings = self.predict_settings(overrides)

        def chunk_fn(sub, start: int) -> dict[str, np.ndarray]:
            sub = transform(sub) if transform is not None else sub
            return self._predict(_as_volume(sub, f"{self.name}.predict"), start, int(seed), progress, settings)

        for first, out in iter_chunks(chunk_fn, sections, settings["chunk"], self.z_factor,
                                      self._context(settings), progress, runs):
            out["prediction"] = np.clip(out["prediction"], 0.0, 1.0)
            yield first, {k: v.astype(np.float32) for k, v in out.items()}

    @classmethod
    def _holds(cls, ckpt: dict) -> bool:
        return "z_factor" in ckpt

    @classmethod
    def _init_fields(cls, ckpt: dict) -> dict:
        return {"z_factor": ckpt["z_factor"]}

    def _checkpoint_fields(self) -> dict:
        return {"z_factor": self.z_factor}

    def _restore_fields(self, ckpt: dict) -> None:
        self._fitted = True

    def _run_fields(self) -> dict:
        return {"z_factor": self.z_factor}

    # hooks
    def _fit(self, volume: np.ndarray, checkpoint_path: Path, progress: bool, log) -> list[dict]:
        return []

    def _context(self, settings: dict) -> int:
        """Sections of context each side of a z chunk."""
        return 0

    def _predict(self, sections: np.ndarray, start: int, seed: int, progress: bool,
                 settings: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError


def _as_volume(volume: np.ndarray, where: str) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{where}: expected a (z, y, x) volume, got shape {volume.shape}")
    return volume.astype(np.float32, copy=False)


class LinearMethod(VolumeMethod):
    """Linear interpolation between the two bracketing sections."""

    name = "linear"

    def _predict(self, sections, start, seed, progress, settings):
        positions = output_positions(len(sections), self.z_factor)
        return {"prediction": interpolate_z(sections, self.z_factor, positions, self.name)}


class CubicMethod(LinearMethod):
    """Cubic convolution (Catmull-Rom) over the four nearest sections (``volumes.interpolate_z``)."""

    name = "cubic"

    def _context(self, settings):
        return 1


class SRUNet3DMethod(VolumeMethod):
    """3D SR-UNet baseline (``srunet3d``): Adam lr 1e-4, batch 16, cubic-weighted MSE, data in [-1, 1].

    Training samples are random (sections * z, patch, patch) isotropic blocks, flipped/rotated
    laterally as officially, with their sections simulated by ``degrade.anisotropic``. Deviations:
    fixed iterations and a constant learning rate (the official LambdaLR multiplies the lr twice,
    and early stopping needs a validation split this benchmark does not hold out).
    Prediction tiles laterally and chunks along z with ``predict.context`` sections of context.
    """

    name = "srunet3d"

    def _build(self):
        from emdiffuse.models.srunet3d import SRUNet3D

        self.net = SRUNet3D(self.z_factor, self.params["model"]["width"]).to(self.device)

    def _fit(self, volume, checkpoint_path, progress, log):
        from emdiffuse.models.srunet3d import cubic_weighted_mse

        t, z = self.params["train"], self.z_factor
        if t["patch"] % 4:
            raise ValueError(f"srunet3d.train.patch: {t['patch']} must be a multiple of 4")

        def make(block, rng):
            sections = anisotropic(block, z, section_profile=t["section_profile"])
            reference = interpolate_z(sections, z, np.arange(len(block)), "cubic")
            return sections[None], block[None], reference[None]

        sampler = BlockSampler(volume, t["sections"] * z, t["patch"], t["batch_size"], self.seed, make)

        def loss_fn(batch):
            x, y, ref = (b * 2 - 1 for b in batch)
            return cubic_weighted_mse(self.net(x).float(), y, ref)

        return self._train(self.net, loss_fn, sampler, (volume,), checkpoint_path, progress, log).history

    def _state(self):
        return {"net": self.net.state_dict()}

    def _load_state(self, state):
        self.net.load_state_dict(state["net"])

    def _context(self, settings):
        return settings["context"]

    def _predict(self, sections, start, seed, progress, settings):
        p = settings
        self.net.eval()

        def fn(tiles):  # (B, n, th, tw) sections -> (B, n*z, th, tw) slices
            return (self.net(tiles[:, None].to(self.device) * 2 - 1)[:, 0] + 1) / 2

        full = tiled_stack_apply(fn, sections, tile=p["tile"], overlap=p["overlap"], batch=p["batch"], multiple=4)
        return {"prediction": full[output_positions(len(sections), self.z_factor)]}


class VEMDiffuseIMethod(DiffusionWeights, VolumeMethod):
    """vEMDiffuse-i: trained on an isotropic volume (``models.vemdiffuse``).

    Training as the official vEMDiffuse (schedules and Adam lr 5e-5 as EMDiffuse, EMA 0.9999, no
    warm-up, flips/rot90, each condition section blurred with p = 0.5). Prediction: K samples of
    every slice between each section pair, mean = ``prediction``, std = ``uncertainty`` (K > 1),
    EMA weights; the noise of pair k is seeded by (seed, k), so z chunking leaves it unchanged.
    """

    name = "vemdiffuse_i"

    def _build(self):
        from emdiffuse.models.diffusion import ConditionalDiffusion
        from emdiffuse.models.vemdiffuse import IndexedUNet, unet_kwargs

        model = dict(self.params["model"])
        self.cubic_condition = bool(model.pop("cubic_condition", False))
        kwargs = unet_kwargs(model, f"{self.name}.model")
        d = self.params["diffusion"]
        net = IndexedUNet(cubic_condition=self.cubic_condition, **kwargs)
        self.diffusion = ConditionalDiffusion(net, d["train_schedule"], d["test_schedule"],
                                              prediction=d["prediction"]).to(self.device)
        self.ema: torch.nn.Module | None = None
        self.multiple = 2 ** (len(kwargs["channel_mults"]) - 1)

    def training_stack(self, volume: np.ndarray) -> np.ndarray:
        """The stack whose z axis the model learns to fill in: the isotropic volume itself."""
        return volume

    def _fit(self, volume, checkpoint_path, progress, log):
        from emdiffuse.models.vemdiffuse import block_depth, condition, pair_sample

        t, z = self.params["train"], self.z_factor
        if t["patch"] % self.multiple:
            raise ValueError(f"{self.name}.train.patch: {t['patch']} must be a multiple of {self.multiple}")
        stack = self.training_stack(volume)
        depth = block_depth(z, self.cubic_condition)
        if len(stack) < depth:
            raise ValueError(f"{self.name}: its training stack has {len(stack)} slices along the axis it learns to "
                             f"fill in; a training block needs {depth} (z_factor {z} x "
                             f"{'four sections, model.cubic_condition' if self.cubic_condition else 'two sections'})")
        make = pair_sample(z, t["cond_blur_p"], t["section_profile"], self.cubic_condition)
        sampler = BlockSampler(stack, depth, t["patch"], t["batch_size"], self.seed, make)

        def loss_fn(batch):
            return self.diffusion.loss(condition(batch[0]), batch[1] * 2 - 1)

        result = self._train(self.diffusion, loss_fn, sampler, (stack,), checkpoint_path, progress, log,
                             warmup=t["warmup"], ema_decay=t["ema_decay"])
        self.ema = result.ema_model
        return result.history

    def _context(self, settings):
        # the cubic start and the cubic condition read a section each side
        return int(settings["init"] == "cubic" or self.cubic_condition)

    def _predict(self, sections, start, seed, progress, settings):
        from emdiffuse.models.vemdiffuse import sample_between

        p = settings
        model = self._sampling_model()
        out = sample_between(model, sections, start, self.z_factor, seed=seed, sampler=p["sampler"],
                             steps=p["steps"], samples=p["samples"], tile=p["tile"], overlap=p["overlap"],
                             batch=p["batch"], multiple=self.multiple, device=self.device, progress=progress,
                             precision=p["precision"], init=p["init"], z_noise=p["z_noise"],
                             cubic_condition=self.cubic_condition)
        if p["samples"] == 1:
            del out["uncertainty"]
        return out


class VEMDiffuseAMethod(VEMDiffuseIMethod):
    """vEMDiffuse-a: the vEMDiffuse-i machinery trained on the anisotropic volume alone.

    As the official ``vEMa_pre.py``: the sections (z, y, x) are re-sliced to (y, z, x), so the
    model learns to fill in z-spaced gaps along the finely sampled y axis (the "sections" along y
    are integrated over z rows like physical ones), then is applied along z. Training crops are
    (z, x) planes, so a stack with fewer than ``patch`` sections is mirrored along z up to
    ``patch`` (officially: duplicated).
    """

    name = "vemdiffuse_a"

    def training_stack(self, volume: np.ndarray) -> np.ndarray:
        """The anisotropic volume re-sliced to (y, z, x), z mirrored up to the patch size."""
        resliced = volume.transpose(1, 0, 2)
        short = self.params["train"]["patch"] - resliced.shape[1]
        return np.pad(resliced, ((0, 0), (0, max(short, 0)), (0, 0)), mode="symmetric")


def _method_class(name: str, where: str) -> type[VolumeMethod]:
    return catalog.volume_method(name, where).load()


def build_volume_method(name: str, params: dict, *, z_factor: int, device: torch.device, seed: int) -> VolumeMethod:
    """A fresh, unfitted volume method from its workflow-config params."""
    return _method_class(name, "volume method")(params, z_factor=z_factor, device=device, seed=seed)


def load_volume_method(path: str | Path, *, device: torch.device) -> VolumeMethod:
    """Load any volume-method file, dispatching on the ``method`` it records."""
    ckpt = read_checkpoint(path)
    return _method_class(ckpt["method"], str(path)).from_checkpoint(ckpt, device=device)
