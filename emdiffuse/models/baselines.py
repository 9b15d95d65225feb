"""The RCAN and PSSR baselines as workflow methods, each with its own published training recipe.

Unlike CARE and EMDiffuse, both networks take the *low-resolution* input and upsample inside
(RCAN's pixel-shuffle tail, PSSR's bilinear pre-upsampling), so patches and tiles are cut on the
input grid. ``train.patch`` and ``predict.tile``/``overlap`` are still target-grid sizes, as for
every method; they are divided by the scale here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emdiffuse.models.care import PercentileNormalizer, percentile_normalize
from emdiffuse.models.methods import Method
from emdiffuse.models.pssr import PSSRUNet
from emdiffuse.models.rcan import RCAN
from emdiffuse.models.patches import PatchSampler
from emdiffuse.models.tiling import tiled_apply
from emdiffuse.models.train import ProgressSchedule


class LowResInputMethod(Method):
    """Shared plumbing: the network is built once the scale is known (at fit or load), trained on
    dihedrally augmented input-grid patches and applied tile by tile on the input grid."""

    #: target-grid sizes must be multiples of this (PSSR: its encoder's stride 32)
    target_multiple = 1

    def _build(self):
        self.net: nn.Module | None = None

    def _network(self) -> nn.Module:
        """A fresh network for ``self.scale``."""
        raise NotImplementedError

    def _percentiles(self) -> tuple[float, float] | None:
        """Per-image percentile normalisation of inputs and targets, or None."""
        return None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _new_network(self) -> None:
        with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone, global RNG untouched
            torch.manual_seed(self.seed)
            self.net = self._network().to(self.device)

    def _size_multiple(self) -> int:
        """Target-grid sizes must be whole numbers of input pixels and of the network's stride."""
        return math.lcm(self.scale, self.target_multiple)

    def _input_size(self, size: int, key: str) -> int:
        step = self._size_multiple()
        if size % step:
            raise ValueError(f"{self.name}.{key}: {size} must be a multiple of {step} (scale {self.scale})")
        return size // self.scale

    def _normalized(self, inputs, targets):
        if self._percentiles() is None:
            return inputs, targets
        pmin, pmax = self._percentiles()
        return tuple(np.stack([percentile_normalize(a, pmin, pmax)[0] for a in arr]) for arr in (inputs, targets))

    def _sampler(self, x, y) -> PatchSampler:
        patch = self._input_size(self._train_value("patch"), "train.patch")
        return PatchSampler(x, y, patch, self._train_value("batch_size"), self.seed, augment=True)

    def _state(self):
        return {"net": self.net.state_dict()}

    def _load_state(self, state):
        self._new_network()
        self.net.load_state_dict(state["net"])
        self.net.eval()

    def _predict(self, inputs, seed, progress, start, settings):
        p = settings
        tile, overlap = self._input_size(p["tile"], "predict.tile"), p["overlap"] // self.scale
        normalizer = PercentileNormalizer(*self._percentiles()) if self._percentiles() else None
        self.net.eval()
        preds = []
        for image in inputs:
            x, lo_hi = normalizer.before(image) if normalizer else (image, None)
            y = tiled_apply(lambda t: self._forward(t.to(self.device)), x, tile=tile, overlap=overlap,
                            batch=p["batch"], scale=self.scale, multiple=self._size_multiple() // self.scale,
                            progress=progress)[0]
            preds.append(normalizer.after(y, lo_hi) if normalizer else y)
        return {"prediction": np.stack(preds)}


#: published settings of the two RCAN variants; ``None`` model/train params take these values
RCAN_VARIANTS = {
    # 3D-RCAN in 2D (rcan/model.py, train.py): 300 epochs x 256 steps at batch 1 (one GPU), lr halved
    # every 75 epochs; per-image percentile normalisation, x -> 2x - 1 inside the net, Keras init
    "denoise": {
        "model": {"n_resgroups": 5, "n_resblocks": 3, "n_feats": 32, "reduction": 8},
        "train": {"batch_size": 1, "patch": 256, "lr_step": 75 * 256},
        "net": {"data_mean": 0.5, "data_range": 2.0, "glorot_init": True},
        "mean_from_data": False, "percentiles": True,
    },
    # original RCAN (option.py): batch 16, HR patch 96 (the README's x2 runs), lr halved every
    # 200 epochs of 1000 batches; [0, 255] minus the data mean (MeanShift), PyTorch init
    "superres": {
        "model": {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},
        "train": {"batch_size": 16, "patch": 96, "lr_step": 200_000},
        "net": {"data_range": 255.0, "glorot_init": False},
        "mean_from_data": True, "percentiles": False,
    },
}


class RCANMethod(LowResInputMethod):
    """RCAN: L1 loss, Adam lr 1e-4 (0.9, 0.999, eps 1e-8), lr halved every ``train.lr_step``
    iterations, flips/rot90 augmentation. ``variant: auto`` picks ``denoise`` (3D-RCAN in 2D) for
    scale-1 pairs and ``superres`` (original RCAN with its x``scale`` tail) otherwise; any model or
    train value left at None comes from the variant (see ``RCAN_VARIANTS``). ``normalize``:
    3D-RCAN's per-image percentiles, used by the denoise variant only (at prediction the output
    is mapped back to the input's range, as CARE). The superres variant's mean is that of the
    training targets (RCAN subtracts the DIV2K mean).

    Deviations: no validation-based checkpoint selection; no 3D-RCAN foreground-patch filter.
    """

    name = "rcan"

    def _build(self):
        if self.params["variant"] not in ("auto", *RCAN_VARIANTS):
            raise ValueError(f"rcan.variant: {self.params['variant']!r} is not one of {['auto', *RCAN_VARIANTS]}")
        super()._build()

    def _variant(self) -> dict:
        name = self.params["variant"]
        return RCAN_VARIANTS[name if name != "auto" else "denoise" if self.scale == 1 else "superres"]

    def network_kwargs(self) -> dict:
        """The ``RCAN`` arguments of this variant and scale (JSON values)."""
        v = self._variant()
        model = {k: v["model"][k] if value is None else value for k, value in self.params["model"].items()}
        return {**model, "scale": self.scale, **v["net"]}

    def _network(self):
        return RCAN(**self.network_kwargs())

    def _train_value(self, key):
        value = self.params["train"][key]
        return self._variant()["train"][key] if value is None else value

    def _percentiles(self):
        n = self.params["normalize"]
        return (n["pmin"], n["pmax"]) if self._variant()["percentiles"] else None

    def _fit(self, inputs, targets, checkpoint_path, progress, log):
        lr_step = self._train_value("lr_step")
        x, y = self._normalized(inputs, targets)
        if self.warm_start is None:  # fine-tuning keeps the trained network and its data mean
            self._new_network()
            if self._variant()["mean_from_data"]:
                self.net.data_mean.fill_(float(y.mean()))
        return self._train(self.net, lambda batch: F.l1_loss(self.net(batch[0]).float(), batch[1]),
                           self._sampler(x, y), (inputs, targets), checkpoint_path, progress, log,
                           scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, lr_step, gamma=0.5)).history


#: with a ``seconds`` budget PSSR's one-cycle is laid out over this many steps of the run's progress
CYCLE_RESOLUTION = 1000


class PSSRMethod(LowResInputMethod):
    """PSSR as trained by ``BPHO-Salk/PSSR`` ``train.py`` with fastai v1 defaults: MSE on mean/std
    normalised x and y, AdamW (betas 0.9/0.99, decoupled wd 1e-3), ``fit_one_cycle`` = OneCycleLR
    (max lr 4e-4 from the README, div 25, pct 0.3, cosine, final lr max/25e4, beta1 cycled
    0.95 -> 0.85 -> 0.95), dihedral augmentation, batch 8, optional mixed precision.

    Deviations: the normalisation statistics are those of all training inputs (fastai takes one
    batch); no rotate/zoom augmentation; patch 256 (PSSR: 512 HR tiles) so 256-px denoising pairs
    fit. One cycle spans ``train.iterations``, so a longer run is a different run (not a resume);
    with a ``train.seconds`` budget it spans the run's progress (share of the seconds used, or of
    the iteration cap if that comes first). ``model.width_mult`` and ``model.layers`` (blocks per
    ResNet stage) shrink the network for CPU runs; the defaults are the published ResNet-34.
    """

    name = "pssr"
    target_multiple = 32

    def _build(self):
        if self.params["train"]["batch_size"] < 2:
            raise ValueError("pssr.train.batch_size: must be >= 2 (BatchNorm on the 1x1 bottleneck needs a batch)")
        super()._build()
        self.stats = (0.0, 1.0)  # mean, std of the training inputs

    def network_kwargs(self) -> dict:
        """The ``PSSRUNet`` arguments of this scale (JSON values)."""
        return {"scale": self.scale, **self.params["model"]}

    def _network(self):
        return PSSRUNet(**self.network_kwargs())

    def _forward(self, x):
        mean, std = self.stats
        return self.net((x - mean) / std) * std + mean

    def _meta(self, *data):
        meta = super()._meta(*data)
        for key in ("iterations", "seconds"):  # the cycle spans the run: a longer one is another run
            meta["params"]["train"][key] = self.params["train"][key]
        return meta

    def _fit(self, inputs, targets, checkpoint_path, progress, log):
        t = self.params["train"]
        if self.warm_start is None:  # fine-tuning keeps the trained network and its input statistics
            self.stats = (float(inputs.mean()), float(inputs.std()) or 1.0)
            self._new_network()
        mean, std = self.stats

        def one_cycle(opt):
            steps = t["iterations"] if t["seconds"] is None else CYCLE_RESOLUTION
            cycle = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=t["max_lr"], total_steps=steps, pct_start=t["pct_start"],
                div_factor=t["div_factor"], final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95)
            return cycle if t["seconds"] is None else ProgressSchedule(cycle, steps)

        return self._train(self.net, lambda batch: F.mse_loss(self.net(batch[0]).float(), batch[1]),
                           self._sampler((inputs - mean) / std, (targets - mean) / std), (inputs, targets),
                           checkpoint_path, progress, log, optimizer="adamw", betas=(0.9, 0.99),
                           weight_decay=t["weight_decay"], scheduler=one_cycle).history

    def _state(self):
        return {**super()._state(), "stats": list(self.stats)}

    def _load_state(self, state):
        self.stats = tuple(state["stats"])
        super()._load_state(state)
