"""Every method the workflow knows, by name, without importing torch.

Planning a run (parsing the workflow, checking a config, writing a table's budget line) needs a
method's settings schema and defaults, whether it learns, which data a volume method trains on and
which key holds its learning rate; only the jobs that train or predict need its implementation,
imported from ``Entry.implementation`` when they ask for it. A method's settings are one JSON-schema
block (``settings.yaml`` beside this module for the built-in ones): the workflow's config schema
takes it, and its defaults are derived from it (:func:`settings_defaults`); a method class takes them
from its entry (``Method.__init_subclass__``, ``VolumeMethod.__init_subclass__``), so they are
written once. A new method is its module plus one entry here (and its block); a method of another
package is its module plus an entry point (group ``emdiffuse.image_methods`` or
``emdiffuse.volume_methods``) naming its ``Entry``, settings block included.
"""

from __future__ import annotations

import copy
import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
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


def train_params(params: dict) -> dict:
    """What training depends on: a method's settings but the ``predict`` block (changing how to
    predict must not retrain; the prediction jobs take it from the config)."""
    return {k: v for k, v in params.items() if k != "predict"}


def registry_entry(table: dict, name: str, where: str, what: str = "method"):
    """``table[name]``, or an error naming ``where`` and the known names (method registries)."""
    if name not in table:
        raise ValueError(f"{where}: unknown {what} {name!r}; known {what}s: {sorted(table)}")
    return table[name]


SETTINGS = Path(__file__).with_name("settings.yaml")


@functools.cache
def settings_document() -> dict:
    """``settings.yaml``: the shared ``$defs`` and the built-in methods' settings blocks."""
    import yaml

    return yaml.safe_load(SETTINGS.read_text(encoding="utf-8"))


def resolve(node: dict) -> dict:
    """A schema node with its local ``$ref`` (``#/$defs/...`` of ``settings.yaml``) followed."""
    while "$ref" in node:
        target = settings_document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def settings_defaults(block: dict, where: str) -> dict:
    """The defaults of a settings block for :func:`merge_params`: each key's ``default``, a nested
    block's own defaults, ``REQUIRED`` for a required key without one; a block marked ``x-whole``
    is taken whole (:class:`Free`). A key with neither default nor ``required`` is an error."""
    node = resolve(block)
    required = set(node.get("required", []))
    out = {}
    for key, raw in node.get("properties", {}).items():
        sub, path = resolve(raw), f"{where}.{key}"
        if "default" in raw or "default" in sub:
            value = copy.deepcopy(raw["default"] if "default" in raw else sub["default"])
            out[key] = Free(value) if raw.get("x-whole", sub.get("x-whole")) else value
        elif sub.get("type") == "object" and "properties" in sub:
            out[key] = settings_defaults(sub, path)
        elif key in required:
            out[key] = REQUIRED
        else:
            raise ValueError(f"{path}: a setting needs a default or to be required (settings schema)")
    return out


def with_defaults(block: dict, changes: dict) -> dict:
    """A copy of a settings block whose defaults ``changes`` replaces (nested blocks are inlined)."""
    node = copy.deepcopy(resolve(block))
    for key, value in changes.items():
        raw = node["properties"][key]
        sub = resolve(raw)
        if isinstance(value, dict) and "properties" in sub and not sub.get("x-whole"):
            node["properties"][key] = with_defaults(sub, value)
        else:
            node["properties"][key] = {**raw, "default": value}
    return node


@dataclass(frozen=True)
class Entry:
    """One method: where its class lives (``"module:Class"``) and what planning needs of it."""

    implementation: str
    #: its settings schema: the name of a block of ``settings.yaml`` or the block itself (another
    #: package's method); keys, types, descriptions and defaults
    settings: str | dict
    learned: bool = True
    #: volume methods: "isotropic" (an isotropic training volume), "sections" (the anisotropic
    #: volume it reconstructs) or None (not learned); the workflow picks the training file by it
    training_data: str | None = None
    #: the ``train`` key holding the (peak) learning rate, which fine-tuning may scale
    lr_key: str = "lr"
    #: defaults that differ from those of ``settings`` (a variant of another method)
    changed_defaults: dict = field(default_factory=dict)
    description: str | None = None

    @functools.cached_property
    def schema(self) -> dict:
        """The JSON schema of the method's config block (the workflow validates against it)."""
        block = settings_document()["methods"][self.settings] if isinstance(self.settings, str) else self.settings
        block = with_defaults(block, self.changed_defaults)
        return {**block, "description": self.description} if self.description else block

    @functools.cached_property
    def defaults(self) -> dict:
        """The method's default params (:func:`merge_params` overlays a config on them)."""
        return settings_defaults(self.schema, self.implementation)

    @property
    def sampled(self) -> bool:
        """Does the method draw K samples per input (an uncertainty map, a reliability score)?"""
        return "samples" in self.defaults.get("predict", {})

    def load(self) -> type:
        """The method class (imports its module, and with it torch)."""
        module, name = self.implementation.split(":")
        return getattr(importlib.import_module(module), name)


#: image-to-image methods (denoise and superres tasks); their classes document the settings
IMAGE: dict[str, Entry] = {
    "input": Entry("emdiffuse.models.methods:InputMethod", "input", learned=False),
    "care": Entry("emdiffuse.models.methods:CAREMethod", "care"),
    "emdiffuse": Entry("emdiffuse.models.methods:EMDiffuseMethod", "emdiffuse"),
    "emdiffuse_v": Entry("emdiffuse.models.methods:EMDiffuseVMethod", "emdiffuse",
                         changed_defaults={"diffusion": {"prediction": "v"}, "train": {"intensity_augment": 0.1}},
                         description="not official: EMDiffuse with v-prediction, an output head that keeps the image "
                                     "mean, a log-SNR noise embedding and intensity augmentation (its defaults); the "
                                     "faithful row is emdiffuse"),
    "rcan": Entry("emdiffuse.models.baselines:RCANMethod", "rcan"),
    "pssr": Entry("emdiffuse.models.baselines:PSSRMethod", "pssr", lr_key="max_lr"),
}

#: volume methods (isotropic task); every one has a ``predict.chunk`` (sections per z chunk)
VOLUME: dict[str, Entry] = {
    "linear": Entry("emdiffuse.models.volume_methods:LinearMethod", "linear", learned=False),
    "cubic": Entry("emdiffuse.models.volume_methods:CubicMethod", "linear", learned=False,
                   description="cubic (Catmull-Rom) interpolation along z (isotropic task)"),
    "srunet3d": Entry("emdiffuse.models.volume_methods:SRUNet3DMethod", "srunet3d", training_data="isotropic"),
    "vemdiffuse_i": Entry("emdiffuse.models.volume_methods:VEMDiffuseIMethod", "vemdiffuse_i",
                          training_data="isotropic"),
    "vemdiffuse_a": Entry("emdiffuse.models.volume_methods:VEMDiffuseAMethod", "vemdiffuse_i",
                          training_data="sections",
                          description="vEMDiffuse-a: learns from the anisotropic sections it reconstructs"),
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
