"""The life of every model the package trains, written once: validated params, a build seeded by the
model's seed, training with exact resume, a one-file checkpoint, loading, and prediction whose
settings a caller may override for one call.

Image methods (:class:`~emdiffuse.models.methods.Method`), volume methods
(:class:`~emdiffuse.models.volume_methods.VolumeMethod`) and the segmenter
(:class:`~emdiffuse.tasks.segmentation.Segmenter`) are :class:`Model` subclasses. What differs between
them is what ``fit`` takes (pairs, a volume, a volume and its labels) and what the checkpoint records
besides the common fields (an image method's scale, a volume method's z factor): the hooks say it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from emdiffuse import __version__
from emdiffuse.config import RENAMED_BLOCKS
from emdiffuse.io import atomic_path
from emdiffuse.models.catalog import merge_params
from emdiffuse.models.train import TrainResult, train_loop

#: ``train`` keys that set only how long a run is: raising them continues a finished run
RUN_LENGTH = ("iterations", "seconds", "checkpoint_every")


def data_digest(*arrays: np.ndarray) -> str:
    """Fingerprint of the training data, so a checkpoint is never resumed on other data."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def state_digest(state: Any) -> str:
    """Fingerprint of a model's weights (nested dicts/lists of tensors and numbers)."""
    h = hashlib.sha1()

    def visit(obj: Any) -> None:
        if isinstance(obj, dict):
            for key in sorted(obj):
                h.update(str(key).encode())
                visit(obj[key])
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item)
        elif isinstance(obj, torch.Tensor):
            h.update(str((obj.dtype, tuple(obj.shape))).encode())
            h.update(obj.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(obj).encode())

    visit(state)
    return h.hexdigest()


def read_checkpoint(path: str | Path) -> dict:
    """Load a model file written by :meth:`Model.save`; clear errors for missing/foreign files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such method checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable method checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or not {"method", "params", "state"} <= set(ckpt):
        raise ValueError(f"{path}: not an emdiffuse method checkpoint (no 'method'/'params'/'state')")
    return ckpt


def write_checkpoint(path: str | Path, **fields) -> None:
    """Write a model file (atomically) that :func:`read_checkpoint` accepts."""
    with atomic_path(path) as tmp:
        torch.save({**fields, "emdiffuse_version": __version__}, tmp)


def training_budget(history: list[dict], batch_size: int | None, patch: int | None) -> dict:
    """Iterations done, training seconds and precision (from a training history), batch size and patch."""
    last = history[-1] if history else {"iteration": 0, "seconds": 0.0}
    return {"iterations": int(last["iteration"]), "seconds": float(last["seconds"]),
            "batch_size": batch_size, "patch": patch, "precision": last.get("precision", "fp32")}


@functools.cache
def _predict_validator(cls: type):
    """A validator of the ``predict`` block of ``cls.SCHEMA`` (built once per class: prediction
    settings are checked on every call with overrides); None where the schema has no such block."""
    schema = (cls.SCHEMA or {}).get("properties", {}).get("predict")
    if schema is None:
        return None
    from jsonschema import Draft202012Validator

    from .catalog import settings_document

    return Draft202012Validator({**schema, "$defs": settings_document()["$defs"]})


class Model:
    """Base class: subclasses set ``name``, ``DEFAULTS`` (or take them from the method catalog) and
    the ``_`` hooks; ``fit`` (whose data differ by kind) ends in :meth:`_train`."""

    name: str = ""
    learned: bool = True
    DEFAULTS: dict = {}
    #: the settings' JSON schema (from the method catalog): prediction settings are checked against it
    SCHEMA: dict | None = None
    #: the ``train`` key holding the (peak) learning rate, which fine-tuning may scale
    lr_key: str = "lr"
    #: params blocks renamed since files were written: old name -> new name (old files still load)
    RENAMED: dict[str, str] = RENAMED_BLOCKS

    def __init__(self, params: dict | None, *, device: torch.device, seed: int):
        params = params if params is not None else {}
        for old, new in self.RENAMED.items():
            if old in params and new in self.DEFAULTS:
                raise ValueError(f"{self.config_key}.{old}: renamed to {self.config_key}.{new}")
        self.params = merge_params(self.DEFAULTS, params, self.config_key)
        self.device, self.seed = torch.device(device), int(seed)
        self.history: list[dict] = []
        if "predict" in self.params:
            self._check_predict(self.params["predict"])
        with torch.random.fork_rng(devices=[]):  # the seed alone fixes the initial weights
            torch.manual_seed(self.seed)
            self._build()

    @property
    def config_key(self) -> str:
        """Where this model's settings live in the config (error messages name it)."""
        return self.name

    @property
    def fitted(self) -> bool:
        raise NotImplementedError

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: call fit() or load a checkpoint first")

    # --- prediction settings ---------------------------------------------------------------------

    def predict_settings(self, overrides: dict | None = None) -> dict:
        """The ``predict`` block with ``overrides`` for one call (unknown keys and invalid values are
        errors); the model's own settings are left as they are."""
        if not overrides:
            return self.params.get("predict", {})
        settings = merge_params(self.params.get("predict", {}), overrides, f"{self.config_key}.predict")
        self._check_predict(settings)
        return settings

    def _check_predict(self, settings: dict) -> None:
        """Refuse prediction settings this model cannot use, by its settings schema (the one the
        config is validated against; errors name ``<config_key>.predict.<key>``). Subclasses add
        what a schema cannot say."""
        validator = _predict_validator(type(self))
        if validator is None:
            return
        errors = sorted(validator.iter_errors(settings), key=lambda e: list(e.absolute_path))
        if errors:
            key = ".".join(str(p) for p in errors[0].absolute_path)
            raise ValueError(f"{self.config_key}.predict{'.' + key if key else ''}: {errors[0].message}")

    # --- training --------------------------------------------------------------------------------

    def _train(self, net: torch.nn.Module, loss_fn: Callable, sampler, data: tuple[np.ndarray, ...],
               checkpoint_path: str | Path, progress: bool, log: Callable, **options) -> TrainResult:
        """``train_loop`` on this model's ``train`` settings (``options`` add to or override them);
        a checkpoint resumes only for the same run on the same ``data`` (:meth:`_meta`)."""
        t = self.params["train"]
        settings = {"iterations": t["iterations"], "seconds": t.get("seconds"), "lr": t[self.lr_key],
                    "checkpoint_every": t["checkpoint_every"], "amp": t.get("amp", False)}
        return train_loop(net, loss_fn, sampler, checkpoint_path=checkpoint_path, device=self.device,
                          seed=self.seed, meta=self._meta(*data), progress=progress, log=log,
                          **{**settings, **options})

    def _meta(self, *data: np.ndarray) -> dict:
        """What a training checkpoint must match to be resumed: everything that shapes training
        except its length, so raising ``train.iterations`` (or ``train.seconds``) continues a
        finished run."""
        params = {k: v for k, v in self.params.items() if k != "predict"}
        params["train"] = {k: v for k, v in params["train"].items() if k not in RUN_LENGTH}
        return {"method": self.name, "params": params, "seed": self.seed, "data": data_digest(*data),
                **self._run_fields()}

    def _run_fields(self) -> dict:
        """What else identifies a training run (a volume method's z factor, a fine-tuning's start)."""
        return {}

    # --- checkpoint --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        self._require_fitted()
        write_checkpoint(path, method=self.name, params=self.params, seed=self.seed, state=self._state(),
                         history=self.history, **self._checkpoint_fields())

    def write_history(self, path: str | Path) -> None:
        """The training loss history as CSV (iteration, loss, lr, seconds), written atomically."""
        import pandas as pd

        with atomic_path(path) as tmp:
            pd.DataFrame(self.history, columns=["iteration", "loss", "lr", "seconds"]).to_csv(tmp, index=False)

    @classmethod
    def load(cls, path: str | Path, *, device: torch.device) -> "Model":
        ckpt = read_checkpoint(path)
        if ckpt["method"] != cls.name or not cls._holds(ckpt):
            raise ValueError(f"{path}: holds a {ckpt['method']!r} checkpoint, not {cls.name!r}")
        return cls.from_checkpoint(ckpt, device=device)

    @classmethod
    def from_checkpoint(cls, ckpt: dict, *, device: torch.device) -> "Model":
        params = dict(ckpt["params"])
        for old, new in cls.RENAMED.items():  # a file written before the rename
            if old in params and new not in params:
                params[new] = params.pop(old)
        model = cls(params, device=device, seed=ckpt["seed"], **cls._init_fields(ckpt))
        model.history = ckpt["history"]
        model._restore_fields(ckpt)
        model._load_state(ckpt["state"])
        return model

    @classmethod
    def _holds(cls, ckpt: dict) -> bool:
        """Is ``ckpt`` a file of this kind of model (beyond its name)?"""
        return True

    @classmethod
    def _init_fields(cls, ckpt: dict) -> dict:
        """Constructor arguments stored in the checkpoint besides params, device and seed."""
        return {}

    def _checkpoint_fields(self) -> dict:
        """What the checkpoint records besides params, seed, weights and history."""
        return {}

    def _restore_fields(self, ckpt: dict) -> None:
        """Restore what :meth:`_checkpoint_fields` recorded."""

    # --- hooks -------------------------------------------------------------------------------------

    def _build(self) -> None:
        """Create networks from ``self.params`` (under the model's seed)."""

    def _state(self) -> dict:
        return {}

    def _load_state(self, state: dict) -> None:
        """Restore what :meth:`_state` returned."""
