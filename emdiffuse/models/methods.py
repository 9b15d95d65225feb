"""One interface for every restoration method: validate params, fit, save, load, predict.

The workflow never branches on the method: each one fits on pair arrays (inputs (N, H, W),
targets (N, H', W') in [0, 1]), saves to a single ``.pt`` file and predicts
``{"prediction": (N, H', W') in [0, 1]}`` plus ``"uncertainty"`` for stochastic methods.

Learned methods see the input on the target grid: for super-resolution the whole input image is
upsampled first (CARE: linear, as CSBDeep's ``UpsamplingCARE``; EMDiffuse: bilinear, as the
official ``Resize``), so training patches and prediction tiles are in target pixels
(``patch``, ``tile`` and ``overlap`` are target-grid sizes, i.e. the network's input size).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from emdiffuse.models import catalog
from emdiffuse.models.care import CAREUNet, PercentileNormalizer, normalize_pairs
from emdiffuse.models.catalog import merge_params
from emdiffuse.models.lifecycle import Model, state_digest, training_budget
from emdiffuse.models.patches import PatchSampler, pair_scale
from emdiffuse.models.tiling import tiled_apply

def upsample(images: np.ndarray, factor: int, mode: str) -> np.ndarray:
    """(N, H, W) -> (N, H*f, W*f) by torch interpolation (pixel centres aligned, no corner pinning)."""
    if factor == 1:
        return images
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return F.interpolate(x, scale_factor=factor, mode=mode, align_corners=False)[:, 0].numpy()


def image_seed(seed: int, image: int) -> int:
    """The sampling generator's seed for the ``image``-th image of a prediction with ``seed``."""
    return int(np.random.SeedSequence([seed, image]).generate_state(1)[0])


class DiffusionWeights:
    """Checkpoint state of a diffusion model (``self.diffusion``) and its optional EMA copy
    (``self.ema``), shared by the image and the volume diffusion methods."""

    diffusion: torch.nn.Module
    ema: torch.nn.Module | None

    def _state(self) -> dict:
        return {"model": self.diffusion.state_dict(), "ema": None if self.ema is None else self.ema.state_dict()}

    def _load_state(self, state: dict) -> None:
        self.diffusion.load_state_dict(state["model"])
        if state["ema"] is not None:
            self.ema = copy.deepcopy(self.diffusion).eval().requires_grad_(False)
            self.ema.load_state_dict(state["ema"])

    def _sampling_model(self) -> torch.nn.Module:
        """The weights prediction samples with: the EMA's when there is one (official), in eval mode."""
        return (self.ema if self.ema is not None else self.diffusion).eval()


class Method(Model):
    """Base class of the image-to-image methods; subclasses set ``name`` and the ``_`` hooks."""

    def __init_subclass__(cls, **kwargs):
        """A method class with an entry in ``catalog.IMAGE`` takes its settings from there."""
        super().__init_subclass__(**kwargs)
        entry = catalog.IMAGE.get(cls.__dict__.get("name", ""))
        if entry is not None:
            cls.DEFAULTS, cls.learned, cls.lr_key = entry.defaults, entry.learned, entry.lr_key
            cls.SCHEMA = entry.schema

    def __init__(self, params: dict | None, *, device: torch.device, seed: int):
        self.scale: int | None = None  # target/input size ratio, known after fit or load
        #: fingerprint of the weights training started from; None = fresh weights (see finetune)
        self.warm_start: str | None = None
        super().__init__(params, device=device, seed=seed)

    @property
    def fitted(self) -> bool:
        return self.scale is not None

    def fit(self, inputs: np.ndarray, targets: np.ndarray, *, checkpoint_path: str | Path,
            progress: bool = True, log: Callable = print) -> list[dict]:
        """Train on pairs (resuming from ``checkpoint_path`` if it exists); return the loss history."""
        self.scale, self.warm_start = pair_scale(inputs, targets), None
        inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)
        self.history = self._fit(inputs, targets, Path(checkpoint_path), progress, log)
        return self.history

    def finetune(self, inputs: np.ndarray, targets: np.ndarray, *, train: dict, seed: int,
                 checkpoint_path: str | Path, progress: bool = True, log: Callable = print) -> list[dict]:
        """Continue training this fitted method's weights on new pairs (transfer learning).

        The optimiser, LR schedule, warm-up and EMA start afresh, with ``train`` overriding keys of
        ``params["train"]`` (the fine-tuning budget: ``iterations``, the learning rate, ...); the
        weights start from those the method predicts with. Normalisation statistics learned from
        the source data (PSSR's mean/std, RCAN-superres's data mean) are kept, because the weights
        were trained for them; per-image percentile normalisation (CARE, RCAN-denoise) and
        EMDiffuse's fixed [-1, 1] mapping need none. A killed run resumes from ``checkpoint_path``
        like :meth:`fit`; the checkpoint also records which weights it started from.
        """
        self._require_fitted()
        if not self.learned:
            raise ValueError(f"{self.name}: not a learned method, there is nothing to fine-tune")
        scale = pair_scale(inputs, targets)
        if scale != self.scale:
            raise ValueError(f"{self.name}: fine-tuning pairs have scale {scale} but the model was trained "
                             f"for scale {self.scale}")
        self.params["train"] = merge_params(self.params["train"], train, f"{self.name}.train")
        self.seed = int(seed)
        self._warm_start()
        self.warm_start = state_digest(self._state())
        inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)
        self.history = self._fit(inputs, targets, Path(checkpoint_path), progress, log)
        return self.history

    def budget(self) -> dict:
        """The training budget this method actually got, from its history (so a ``seconds`` budget
        is reported as the iterations it bought): iterations done, training seconds, batch size
        and patch (target-grid pixels); empty for a method that is not learned."""
        if not self.learned:
            return {}
        return training_budget(self.history, self._train_value("batch_size"), self._train_value("patch"))

    def _train_value(self, key: str):
        """``params.train[key]`` as used in training (RCAN fills unset values from its variant)."""
        return self.params["train"][key]

    def predict(self, inputs: np.ndarray, *, seed: int, progress: bool = True, start: int = 0,
                **overrides) -> dict[str, np.ndarray]:
        """Restore (N, H, W) inputs in [0, 1]; ``prediction`` is clipped to [0, 1]. ``start``: the
        index of ``inputs[0]`` in a longer stack predicted slab by slab (it keys the sampling seeds,
        so slabs give what the whole stack gives). ``overrides``: ``predict`` settings for this call
        (``steps=50``, ``tile=512``, ...)."""
        self._require_fitted()
        if inputs.ndim != 3:
            raise ValueError(f"{self.name}: predict expects (N, H, W) inputs, got shape {inputs.shape}")
        settings = self.predict_settings(overrides)
        out = self._predict(np.asarray(inputs, np.float32), seed, progress, start, settings)
        out["prediction"] = np.clip(out["prediction"], 0.0, 1.0).astype(np.float32)
        return out

    def _run_fields(self) -> dict:
        return {} if self.warm_start is None else {"warm_start": self.warm_start}

    def _checkpoint_fields(self) -> dict:
        return {"scale": self.scale, "budget": self.budget(), "warm_start": self.warm_start}

    def _restore_fields(self, ckpt: dict) -> None:
        self.scale, self.warm_start = ckpt["scale"], ckpt.get("warm_start")

    # hooks
    def _warm_start(self) -> None:
        """Before fine-tuning: make the trained weights the ones prediction uses (e.g. the EMA)."""

    def _fit(self, inputs, targets, checkpoint_path: Path, progress: bool, log) -> list[dict]:
        return []

    def _predict(self, inputs: np.ndarray, seed: int, progress: bool, start: int,
                 settings: dict) -> dict[str, np.ndarray]:
        raise NotImplementedError


class InputMethod(Method):
    """The non-learned reference: the degraded input itself; for super-resolution, upsampled by
    cubic-spline interpolation (``scipy.ndimage.zoom(order=3)``, the cubic reference of the official
    repo's 3D-SR-UNet baseline) on the pixel-centre grid (``grid_mode``), edges mirrored."""

    name = "input"

    def _predict(self, inputs, seed, progress, start, settings):
        if self.scale == 1:
            return {"prediction": inputs}
        zoom = (1, self.scale, self.scale)
        return {"prediction": ndimage.zoom(inputs, zoom, order=3, grid_mode=True, mode="reflect")}


class CAREMethod(Method):
    """CARE with CSBDeep's defaults: L1 loss, Adam lr 4e-4 (eps 1e-7, Keras), batch 16, ReduceLROnPlateau
    (x0.5, patience 10 epochs of 400 steps), no augmentation, per-image percentile normalisation.

    Deviations (no validation split here): the plateau steps on each epoch's mean *training*
    loss and the final (not best-validation) weights are kept; no background-patch filter.
    """

    name = "care"

    def _build(self):
        self.net = CAREUNet(**self.params["model"]).to(self.device)

    def _fit(self, inputs, targets, checkpoint_path, progress, log):
        t, norm = self.params["train"], self.params["train"]["normalize"]
        x, y = normalize_pairs(inputs, targets, np.random.default_rng([self.seed, 1]),
                               (norm["pmin_low"], norm["pmin_high"]), (norm["pmax_low"], norm["pmax_high"]))
        sampler = PatchSampler(upsample(x, self.scale, "bilinear"), y, t["patch"], t["batch_size"], self.seed,
                               augment=False)

        def loss_fn(batch):
            return F.l1_loss(self.net(batch[0]).float(), batch[1])

        return self._train(self.net, loss_fn, sampler, (inputs, targets), checkpoint_path, progress, log,
                           adam_eps=1e-7, plateau=self._plateau()).history

    def _plateau(self) -> dict:
        """Keras ReduceLROnPlateau semantics: absolute min_delta 1e-4, and it reduces on the
        ``patience``-th bad epoch where torch waits for one more, hence ``patience - 1``."""
        t = self.params["train"]
        return {"factor": 0.5, "patience": max(t["plateau_patience"] - 1, 0), "threshold": 1e-4,
                "threshold_mode": "abs", "every": t["steps_per_epoch"]}

    def _state(self):
        return {"net": self.net.state_dict()}

    def _load_state(self, state):
        self.net.load_state_dict(state["net"])

    def _predict(self, inputs, seed, progress, start, settings):
        p = settings
        normalizer = PercentileNormalizer(p["pmin"], p["pmax"])
        self.net.eval()
        preds = []
        for image in inputs:
            x, lo_hi = normalizer.before(image)
            x = upsample(x[None], self.scale, "bilinear")[0]
            y = tiled_apply(lambda t: self.net(t.to(self.device)), x, tile=p["tile"], overlap=p["overlap"],
                            batch=p["batch"], multiple=2 ** self.params["model"]["n_depth"], progress=progress)
            preds.append(normalizer.after(y[0], lo_hi))
        return {"prediction": np.stack(preds)}


# The official EMDiffuse / vEMDiffuse schedules (config/EMDiffuse-n.json): training and test noise levels.
def intensity_augmented(cond: torch.Tensor, target: torch.Tensor, strength: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random contrast factor in [1 - s, 1 + s] (about each pair's mean) and brightness shift
    in [-s, s] for a condition and its target, per batch item: EM brightness and contrast drift
    between acquisitions and datasets, and the model should follow the condition's, not learn one."""
    b = cond.shape[0]
    # drawn from torch's global generator, which train_loop seeds: reproducible
    contrast = 1 + strength * (2 * torch.rand(b, 1, 1, 1, device=cond.device) - 1)
    shift = strength * (2 * torch.rand(b, 1, 1, 1, device=cond.device) - 1)
    mean = cond.mean(dim=(1, 2, 3), keepdim=True)
    return tuple(((x - mean) * contrast + mean + shift).clamp(0, 1) for x in (cond, target))


HEAD_GROUPS_V = 4  # output-head GroupNorm groups of emdiffuse_v: 4 channels per group at cpu-small's 16

class EMDiffuseMethod(DiffusionWeights, Method):
    """EMDiffuse-n/-r: conditional diffusion (official schedules, MSE on noise, Adam lr 5e-5,
    linear warm-up, EMA 0.9999, input-only blur p = 0.5, flips/rot90), sampled K times per input.

    ``prediction`` is the per-pixel mean of the K samples; ``uncertainty`` is their per-pixel
    unbiased std (``torch.std``, as the official ``test()``) in [0, 1] intensity units, i.e. the
    std of the network's [-1, 1] outputs divided by 2 (omitted when K = 1). Sampling uses the
    EMA weights (the official test script uses the raw weights; set ``ema_decay: null`` for that).
    ``predict.batch`` tiles go through the sampler together, i.e. a network batch of batch x samples.

    ``train.difficulty_loss``: the paper's difficulty-aware (aleatoric) loss instead of plain MSE
    (:func:`~emdiffuse.models.diffusion.aleatoric_loss`); the U-Net gets a second, zero-initialised
    output channel, a per-pixel log-scale s. ``predict.difficulty`` then adds the output
    ``difficulty``: s averaged over five noise levels, on the K samples (log of the predicted noise
    error scale; higher = harder). ``predict.precision``: "bf16" runs the network in bfloat16
    autocast on channels-last tensors (sampler state float32), "fp32" is the exact path, "auto"
    (default) is bf16 where that is faster (CUDA, CPUs with AMX or AVX512-BF16), else fp32.
    """

    name = "emdiffuse"

    def _check_predict(self, settings):
        super()._check_predict(settings)
        if settings["difficulty"] and not self.params["train"]["difficulty_loss"]:
            raise ValueError(f"{self.config_key}.predict.difficulty: needs train.difficulty_loss: true")

    def _build(self):
        from emdiffuse.models.diffusion import ConditionalDiffusion
        from emdiffuse.models.unet import PRESETS, DiffusionUNet

        aleatoric = bool(self.params["train"]["difficulty_loss"])
        overrides = dict(self.params["model"])
        preset = overrides.pop("preset", "official")
        if preset not in PRESETS:
            raise ValueError(f"emdiffuse.model.preset: {preset!r} is not one of {sorted(PRESETS)}")
        allowed = set(inspect.signature(DiffusionUNet).parameters)
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ValueError(f"emdiffuse.model: unknown key(s) {unknown}; allowed: preset, {sorted(allowed)}")
        kwargs = {**PRESETS[preset], **overrides}
        if aleatoric:
            kwargs["out_channel"] *= 2  # eps_hat and the log-scale s
        net = DiffusionUNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
        d = self.params["diffusion"]
        self.diffusion = ConditionalDiffusion(net, d["train_schedule"], d["test_schedule"],
                                              loss="aleatoric" if aleatoric else "mse",
                                              prediction=d["prediction"]).to(self.device)
        self.ema: torch.nn.Module | None = None
        self.multiple = 2 ** (len(kwargs["channel_mults"]) - 1)

    def _fit(self, inputs, targets, checkpoint_path, progress, log):
        t = self.params["train"]
        if t["patch"] % self.multiple:
            raise ValueError(f"emdiffuse.models.train.patch: {t['patch']} must be a multiple of {self.multiple}")
        sampler = PatchSampler(upsample(inputs, self.scale, "bilinear"), targets, t["patch"], t["batch_size"],
                               self.seed, augment=True, input_blur_p=t["input_blur_p"])

        augment = float(t["intensity_augment"])

        def loss_fn(batch):
            cond, target = intensity_augmented(batch[0], batch[1], augment) if augment else batch[:2]
            return self.diffusion.loss(cond * 2 - 1, target * 2 - 1)

        result = self._train(self.diffusion, loss_fn, sampler, (inputs, targets), checkpoint_path, progress, log,
                             warmup=t["warmup"], ema_decay=t["ema_decay"])
        self.ema = result.ema_model
        return result.history

    def _warm_start(self):
        """Fine-tune the weights the model samples with: the EMA's when there is one (a fresh EMA
        then starts from them), so iteration 0 of fine-tuning is the directly applied model."""
        if self.ema is not None:
            self.diffusion.load_state_dict(self.ema.state_dict())
            self.ema = None

    def sample_tiles(self, tiles: torch.Tensor, generator: torch.Generator, settings: dict | None = None) -> torch.Tensor:
        """K samples of each (B, 1, h, w) condition tile in [0, 1] (on the target grid), drawn in one
        batch with the ``predict`` settings (``settings``: those of one call, see ``predict_settings``):
        (B, C, h, w) with C = mean, std over the K samples (zero when K = 1) and, with
        ``predict.difficulty``, the mean difficulty map."""
        s = settings if settings is not None else self.params["predict"]
        model = self._sampling_model()
        k = int(s["samples"])
        cond = (tiles.to(self.device) * 2 - 1).repeat_interleave(k, 0)
        x = model.sample(cond, sampler=s["sampler"], steps=s["steps"], generator=generator, precision=s["precision"],
                         x0_init=cond if s["init"] == "condition" else None)
        maps = [(x + 1) / 2]
        if s["difficulty"]:
            maps.append(model.difficulty(cond, x, generator=generator, precision=s["precision"]))
        maps = [m.reshape(len(tiles), k, *x.shape[-2:]) for m in maps]
        spread = maps[0].std(1) if k > 1 else torch.zeros_like(maps[0][:, 0])
        return torch.stack([maps[0].mean(1), spread, *(m.mean(1) for m in maps[1:])], 1)

    def _predict(self, inputs, seed, progress, start, settings):
        s = settings
        outputs = []
        for i, image in enumerate(inputs):
            # One CPU generator per image (an image's output does not depend on which others are
            # predicted); the sampler draws on it and moves the noise to the model's device, so a
            # seed gives the same noise on every device.
            generator = torch.Generator().manual_seed(image_seed(seed, start + i))
            cond = upsample(image[None], self.scale, "bilinear")[0]
            outputs.append(tiled_apply(lambda tiles, g=generator: self.sample_tiles(tiles, g, s), cond, tile=s["tile"],
                                       overlap=s["overlap"], batch=s["batch"], multiple=self.multiple,
                                       progress=progress))
        out = np.stack(outputs).astype(np.float32)
        result = {"prediction": out[:, 0]}
        if int(s["samples"]) > 1:
            result["uncertainty"] = out[:, 1]
        if s["difficulty"]:
            result["difficulty"] = out[:, 2]
        return result


class EMDiffuseVMethod(EMDiffuseMethod):
    """Not official: EMDiffuse with the repairs measured in the samplers issue, beside the faithful row.

    v-prediction (the clean-image estimate stays accurate at high noise, so DDIM and DPM-Solver++
    work), an output head with 4 channels per GroupNorm group (keeps a path for the image mean, so
    long and deterministic chains do not drift in brightness), a log-SNR noise-level embedding and
    brightness/contrast augmentation of condition and target alike. Every other setting as
    ``emdiffuse``; each can be overridden in the config.
    """

    name = "emdiffuse_v"

    def _build(self):
        # taken whole from the config (Free): a copy with the variant's network filled in
        model = self.params["model"] = dict(self.params["model"])
        model.setdefault("out_norm_groups", HEAD_GROUPS_V)
        model.setdefault("noise_embedding", "log_snr")
        super()._build()
