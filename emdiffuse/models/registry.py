"""Build and load methods by name: the classes named by ``models.catalog`` (a new method is its
module plus one catalog entry)."""

from __future__ import annotations

from pathlib import Path

import torch

from emdiffuse.models import catalog
from emdiffuse.models.lifecycle import read_checkpoint
from emdiffuse.models.methods import Method


def method_class(name: str, where: str = "method") -> type[Method]:
    """The image-to-image method class ``name`` (an error naming ``where`` if it is unknown)."""
    return catalog.image_method(name, where).load()


def build_method(name: str, params: dict, *, device: torch.device, seed: int) -> Method:
    """A fresh, unfitted method from its workflow-config params."""
    return method_class(name, "method")(params, device=device, seed=seed)


def load_method(path: str | Path, *, device: torch.device) -> Method:
    """Load any method file, dispatching on the ``method`` it records."""
    ckpt = read_checkpoint(path)
    return _restore(method_class(ckpt["method"], str(path)), ckpt, path, device)


def load_model_file(path: str | Path, *, device: torch.device):
    """Any model file the workflow writes, 2D method or volume method (read once)."""
    ckpt = read_checkpoint(path)
    if ckpt["method"] in catalog.VOLUME:
        return _restore(catalog.VOLUME[ckpt["method"]].load(), ckpt, path, device)
    return _restore(method_class(ckpt["method"], str(path)), ckpt, path, device)


def _restore(cls, ckpt: dict, path: str | Path, device: torch.device):
    try:
        return cls.from_checkpoint(ckpt, device=device)
    except RuntimeError as exc:  # load_state_dict: weights of another network size or preset
        raise ValueError(f"{path}: its weights do not fit the network its settings describe (an edited or "
                         f"mixed-up file?): {str(exc).splitlines()[0]}") from exc
