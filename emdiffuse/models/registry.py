"""The method registry: a new method is one ``Method`` subclass plus one line here."""

from __future__ import annotations

from pathlib import Path

import torch

from emdiffuse.models.baselines import PSSRMethod, RCANMethod
from emdiffuse.models.methods import (CAREMethod, EMDiffuseMethod, EMDiffuseVMethod, InputMethod, Method,
                                      read_checkpoint, registry_entry)

METHODS: dict[str, type[Method]] = {
    "input": InputMethod,
    "care": CAREMethod,
    "emdiffuse": EMDiffuseMethod,
    "emdiffuse_v": EMDiffuseVMethod,
    "rcan": RCANMethod,
    "pssr": PSSRMethod,
}


def _method_class(name: str, where: str) -> type[Method]:
    return registry_entry(METHODS, name, where)


def build_method(name: str, params: dict, *, device: torch.device, seed: int) -> Method:
    """A fresh, unfitted method from its workflow-config params."""
    return _method_class(name, "method")(params, device=device, seed=seed)


def load_method(path: str | Path, *, device: torch.device) -> Method:
    """Load any method file, dispatching on the ``method`` it records."""
    ckpt = read_checkpoint(path)
    return _restore(_method_class(ckpt["method"], str(path)), ckpt, path, device)


def load_model_file(path: str | Path, *, device: torch.device):
    """Any model file the workflow writes, 2D method or volume method (read once)."""
    from emdiffuse.models.volume_methods import VOLUME_METHODS

    ckpt = read_checkpoint(path)
    if ckpt["method"] in VOLUME_METHODS:
        return _restore(VOLUME_METHODS[ckpt["method"]], ckpt, path, device)
    return _restore(_method_class(ckpt["method"], str(path)), ckpt, path, device)


def _restore(cls, ckpt: dict, path: str | Path, device: torch.device):
    try:
        return cls.from_checkpoint(ckpt, device=device)
    except RuntimeError as exc:  # load_state_dict: weights of another network size or preset
        raise ValueError(f"{path}: its weights do not fit the network its settings describe (an edited or "
                         f"mixed-up file?): {str(exc).splitlines()[0]}") from exc
