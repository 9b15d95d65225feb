"""Checks on a workflow config that a JSON schema cannot express (cross-references)."""

from __future__ import annotations

import zlib


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what was expected."""


def check_references(config: dict) -> None:
    """Every dataset and method a task names must be defined in the config (and the isotropic
    task's own cross-references hold: ``isotropic.check_isotropic``)."""
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
    from .isotropic import check_isotropic

    check_isotropic(config)


def derived_seed(seed: int, *names: str) -> int:
    """A stable per-job seed from the master seed and names (Python's hash() is salted per process)."""
    key = "/".join(names).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(key)) % (2**31 - 1)
