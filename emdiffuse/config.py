"""Checks on a workflow config that a JSON schema cannot express (cross-references)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


def export_repository() -> None:
    """Tell child processes (the conda envs' post-deploy scripts, which Snakemake runs from a copy
    under .snakemake/conda/) which repository to install the package from, whatever --directory."""
    import os

    os.environ["EMDIFFUSE_REPO"] = str(Path(__file__).resolve().parents[1])


OPTIONAL_BLOCKS = ("sampling_study", "loss_ablation", "transfer", "restore")
#: method settings blocks renamed since configs and model files were written: old name -> new name
RENAMED_BLOCKS = {"sample": "predict"}


def drop_null_blocks(config: dict) -> None:
    """``sampling_study: null`` (etc.) means what leaving the block out means: skip that study."""
    for block in OPTIONAL_BLOCKS:
        if block in config and config[block] is None:
            del config[block]


def check_references(config: dict) -> None:
    """Every dataset and method a task names must be defined in the config; the ``budget`` block
    gives what its mode needs and nothing it would ignore. The checks of each task and study are
    their modules' (all run by :func:`emdiffuse.plan.check_config`)."""
    from .budget import check_budget

    check_finite(config)
    check_budget(config)
    datasets = config.get("datasets", {})
    methods = config.get("methods", {})
    for task, entry in config.get("tasks", {}).items():
        for name in entry.get("datasets", []):
            if name not in datasets:
                raise ConfigError(
                    f"tasks.{task}.datasets names '{name}', which is not defined under 'datasets' "
                    f"(defined: {sorted(datasets)})"
                )
        for name in entry.get("methods", []):
            if name not in methods:
                raise ConfigError(
                    f"tasks.{task}.methods names '{name}', which has no settings under 'methods' "
                    f"(defined: {sorted(methods)})"
                )
        if entry.get("pairs", {}).get("source") == "real":
            _check_real_pairs(task, entry, datasets)


def check_finite(value, key: str = "") -> None:
    """No NaN or infinity anywhere (YAML's .nan and .inf pass every schema bound: NaN compares false)."""
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_finite(v, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: {value} is not a finite number")


def _check_real_pairs(task: str, entry: dict, datasets: dict) -> None:
    """Real pairs need datasets that carry real acquisitions with the named levels."""
    pairs = entry["pairs"]
    if task == "superres" and "factor" not in pairs:
        raise ConfigError(f"tasks.{task}.pairs.factor: real super-resolution pairs need the pixel-size ratio")
    for name in entry.get("datasets", []):
        inputs = datasets[name].get("inputs")
        if not inputs:
            raise ConfigError(
                f"tasks.{task}.pairs.source is 'real' but datasets.{name} (kind '{datasets[name].get('kind')}') "
                f"has no real acquisitions ('inputs'); use simulated pairs for it"
            )
        missing = [level for level in pairs["levels"] if level not in inputs]
        if missing:
            raise ConfigError(f"tasks.{task}.pairs.levels names {missing}, not among datasets.{name}.inputs "
                              f"({sorted(inputs)})")


def derived_seed(seed: int, *names: str) -> int:
    """A stable per-job seed from the master seed and names (Python's hash() is salted per process)."""
    key = "/".join(names).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(key)) % (2**31 - 1)
