"""Every method the workflow knows, by name, without importing torch.

Planning a run (parsing the workflow, checking a config, writing a table's budget line) needs a
method's default settings, whether it learns, which data a volume method trains on and which key
holds its learning rate; only the jobs that train or predict need its implementation, imported
from ``Entry.implementation`` when they ask for it. A method class takes these settings from its
entry (``Method.__init_subclass__``, ``VolumeMethod.__init_subclass__``), so they are written once.
A new method is its module plus one entry here; a method of another package is its module plus an
entry point (group ``emdiffuse.image_methods`` or ``emdiffuse.volume_methods``) naming its ``Entry``.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any

REQUIRED = object()  # marks a params key that has no default


class Free(dict):
    """A params subtree taken whole (its consumer validates it), not merged key by key."""


def merge_params(defaults: dict, given: Any, where: str) -> dict:
    """Defaults overlaid with ``given``; unknown or missing keys are errors naming their path."""
    if not isinstance(given, dict):
        raise ValueError(f"{where}: expected a mapping, got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(defaults)}")
    merged = {}
    for key, default in defaults.items():
        path = f"{where}.{key}"
        if isinstance(default, dict) and not isinstance(default, Free):
            merged[key] = merge_params(default, given.get(key, {}), path)
        elif key in given:
            merged[key] = given[key]
        elif default is REQUIRED:
            raise ValueError(f"{path}: required key is missing")
        else:
            merged[key] = copy.deepcopy(dict(default) if isinstance(default, Free) else default)
    return merged


def registry_entry(table: dict, name: str, where: str, what: str = "method"):
    """``table[name]``, or an error naming ``where`` and the known names (method registries)."""
    if name not in table:
        raise ValueError(f"{where}: unknown {what} {name!r}; known {what}s: {sorted(table)}")
    return table[name]


@dataclass(frozen=True)
class Entry:
    """One method: where its class lives (``"module:Class"``) and what planning needs of it."""

    implementation: str
    defaults: dict
    learned: bool = True
    #: volume methods: "isotropic" (an isotropic training volume), "sections" (the anisotropic
    #: volume it reconstructs) or None (not learned); the workflow picks the training file by it
    training_data: str | None = None
    #: the ``train`` key holding the (peak) learning rate, which fine-tuning may scale
    lr_key: str = "lr"

    def load(self) -> type:
        """The method class (imports its module, and with it torch)."""
        module, name = self.implementation.split(":")
        return getattr(importlib.import_module(module), name)


OFFICIAL_DIFFUSION = {
    "train_schedule": Free({"kind": "linear", "start": 1e-6, "end": 1e-2, "steps": 2000}),
    "test_schedule": Free({"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 1000}),
    "prediction": "eps",
}

_EMDIFFUSE = {
    "model": Free({"preset": "official"}),
    "diffusion": OFFICIAL_DIFFUSION,
    "train": {
        "iterations": REQUIRED, "seconds": None, "batch_size": 16, "patch": 256, "lr": 5e-5, "warmup": REQUIRED,
        "ema_decay": 0.9999, "input_blur_p": 0.5, "checkpoint_every": 1000, "amp": False,
        "difficulty_loss": True, "intensity_augment": 0.0,
    },
    "predict": {"sampler": "ancestral", "steps": 20, "samples": 2, "tile": 256, "overlap": 32, "batch": 4,
               "precision": "auto", "difficulty": False, "init": "noise"},
}

#: image-to-image methods (denoise and superres tasks); their classes document the settings
IMAGE: dict[str, Entry] = {
    "input": Entry("emdiffuse.models.methods:InputMethod", {}, learned=False),
    "care": Entry("emdiffuse.models.methods:CAREMethod", {
        "model": {"n_depth": 2, "kern_size": 5, "n_first": 32, "residual": True},
        "train": {
            "iterations": REQUIRED, "seconds": None, "batch_size": 16, "patch": 128, "lr": 4e-4,
            "plateau_patience": 10, "steps_per_epoch": 400, "checkpoint_every": 1000, "amp": False,
            "normalize": {"pmin_low": 1.0, "pmin_high": 3.0, "pmax_low": 99.5, "pmax_high": 99.9},
        },
        "predict": {"pmin": 2.0, "pmax": 99.8, "tile": 256, "overlap": 32, "batch": 4},
    }),
    "emdiffuse": Entry("emdiffuse.models.methods:EMDiffuseMethod", _EMDIFFUSE),
    "emdiffuse_v": Entry("emdiffuse.models.methods:EMDiffuseVMethod", {
        **_EMDIFFUSE,
        "diffusion": {**OFFICIAL_DIFFUSION, "prediction": "v"},
        "train": {**_EMDIFFUSE["train"], "intensity_augment": 0.1},
    }),
    "rcan": Entry("emdiffuse.models.baselines:RCANMethod", {
        "variant": "auto",
        "model": {"n_resgroups": None, "n_resblocks": None, "n_feats": None, "reduction": None, "res_scale": 1.0},
        "train": {"iterations": REQUIRED, "seconds": None, "batch_size": None, "patch": None, "lr": 1e-4,
                  "lr_step": None, "checkpoint_every": 1000, "amp": False},
        "normalize": {"pmin": 2.0, "pmax": 99.9},
        "predict": {"tile": 256, "overlap": 32, "batch": 4},
    }),
    "pssr": Entry("emdiffuse.models.baselines:PSSRMethod", {
        "model": {"width_mult": 1.0, "layers": [3, 4, 6, 3], "blur": True, "self_attention": True},
        "train": {"iterations": REQUIRED, "seconds": None, "batch_size": 8, "patch": 256, "max_lr": 4e-4,
                  "div_factor": 25.0, "pct_start": 0.3, "weight_decay": 1e-3, "checkpoint_every": 1000, "amp": False},
        "predict": {"tile": 256, "overlap": 32, "batch": 4},
    }, lr_key="max_lr"),
}

_VEMDIFFUSE = {
    "model": Free({"preset": "official"}),
    "diffusion": OFFICIAL_DIFFUSION,
    "train": {"iterations": REQUIRED, "batch_size": 16, "patch": 256, "lr": 5e-5, "warmup": 0,
              "ema_decay": 0.9999, "cond_blur_p": 0.5, "checkpoint_every": 1000, "amp": False,
              "section_profile": "box"},
    "predict": {"sampler": "ddim", "steps": 20, "samples": 2, "tile": 256, "overlap": 32, "batch": 1,
                "chunk": 16, "precision": "auto", "init": "noise", "z_noise": "independent"},
}
_INTERPOLATION = {"predict": {"chunk": 64}}

#: volume methods (isotropic task); every one has a ``predict.chunk`` (sections per z chunk)
VOLUME: dict[str, Entry] = {
    "linear": Entry("emdiffuse.models.volume_methods:LinearMethod", _INTERPOLATION, learned=False),
    "cubic": Entry("emdiffuse.models.volume_methods:CubicMethod", _INTERPOLATION, learned=False),
    "srunet3d": Entry("emdiffuse.models.volume_methods:SRUNet3DMethod", {
        "model": {"width": 32},
        "train": {"iterations": REQUIRED, "batch_size": 16, "patch": 64, "sections": 8, "lr": 1e-4,
                  "checkpoint_every": 1000, "section_profile": "box", "amp": False},
        "predict": {"chunk": 8, "context": 4, "tile": 128, "overlap": 16, "batch": 1},
    }, training_data="isotropic"),
    "vemdiffuse_i": Entry("emdiffuse.models.volume_methods:VEMDiffuseIMethod", _VEMDIFFUSE,
                          training_data="isotropic"),
    "vemdiffuse_a": Entry("emdiffuse.models.volume_methods:VEMDiffuseAMethod", _VEMDIFFUSE,
                          training_data="sections"),
}


def _plugins(group: str, builtin: dict[str, Entry]) -> dict[str, Entry]:
    """Methods that other installed packages register under the entry-point ``group``: a name and
    an :class:`Entry` in a module that does not import torch (planning loads it)."""
    from importlib.metadata import entry_points

    found = {}
    for point in entry_points(group=group):
        entry = point.load()
        where = f"entry point {point.name} = {point.value} (group {group})"
        if not isinstance(entry, Entry):
            raise TypeError(f"{where}: expected an emdiffuse.models.catalog.Entry, got {type(entry).__name__}")
        if point.name in builtin or point.name in found:
            raise ValueError(f"{where}: a method named {point.name!r} is already registered")
        found[point.name] = entry
    return found


IMAGE.update(_plugins("emdiffuse.image_methods", {**IMAGE, **VOLUME}))  # one namespace: config["methods"]
VOLUME.update(_plugins("emdiffuse.volume_methods", {**IMAGE, **VOLUME}))


def image_method(name: str, where: str) -> Entry:
    return registry_entry(IMAGE, name, where)


def volume_method(name: str, where: str) -> Entry:
    return registry_entry(VOLUME, name, where, "volume method")
