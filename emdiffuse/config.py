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
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def workflow_schema() -> dict:
    """The config schema: the schema file's structure, with every name list taken from its registry,
    the one source of each: every method's settings block and the method names from the method
    catalog (``emdiffuse/models/settings.yaml`` and the entries of other packages), the metrics from
    ``evaluation.METRICS``, the dataset kinds from ``data.datasets.KINDS``, the budget modes from
    ``budget.MODES``."""
    import yaml

    from .budget import MODES
    from .data.datasets import KINDS
    from .evaluation import METRICS
    from .models.catalog import IMAGE, VOLUME, settings_document

    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    defs, props = schema["$defs"], schema["properties"]
    defs.update(settings_document()["$defs"])
    props["methods"]["properties"] = {name: entry.schema for name, entry in {**IMAGE, **VOLUME}.items()}
    defs["task_common"]["methods"]["items"] = {"enum": list(IMAGE)}
    props["transfer"]["properties"]["methods"]["items"] = {"enum": list(IMAGE)}
    defs["isotropic_task"]["properties"]["methods"]["items"] = {"enum": list(VOLUME)}
    props["sampling_study"]["properties"]["method"]["enum"] = [name for name, e in IMAGE.items() if e.sampled]
    defs["metric"]["enum"] = list(METRICS)
    defs["dataset"]["properties"]["kind"]["enum"] = sorted(KINDS)
    props["budget"]["properties"]["mode"]["enum"] = list(MODES)
    return schema


def write_workflow_schema(directory: str | Path) -> Path:
    """:func:`workflow_schema` as a file under ``directory``/.snakemake (Snakemake validates against a
    file), rewritten only when it changed, atomically (jobs on a cluster parse the workflow too)."""
    import json

    from .io import write_text

    path = Path(directory) / ".snakemake" / "emdiffuse" / "config.schema.json"
    text = json.dumps(workflow_schema(), indent=1)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return path


def drop_null_blocks(config: dict) -> None:
    """``sampling_study: null`` (etc.) means what leaving the block out means: skip that study."""
    for block in OPTIONAL_BLOCKS:
        if block in config and config[block] is None:
            del config[block]


def check_references(config: dict) -> None:
    """Every dataset and method a task names must be defined in the config; the ``budget`` block
    gives what its mode needs and nothing it would ignore; the isotropic task's own
    cross-references hold (``isotropic.check_isotropic``)."""
    from .budget import check_budget
    from .tasks.isotropic import check_isotropic

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
    _check_image_method_params(config)
    check_transfer_references(config)
    check_isotropic(config)


def _check_image_method_params(config: dict) -> None:
    """Each image method's settings against its defaults (unknown or missing keys), before any job runs."""
    from .models.catalog import image_method, merge_params

    named = {m for name, task in config.get("tasks", {}).items() if name != "isotropic" for m in task.get("methods", [])}
    for method in sorted(named | set((config.get("transfer") or {}).get("methods") or [])):
        try:
            merge_params(image_method(method, "methods").defaults, config["methods"].get(method, {}), f"methods.{method}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


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


def check_transfer_references(config: dict) -> None:
    """The transfer block reuses the base tasks' domain-A models: its source must be a dataset the
    base task trains on, and each method one the base task compares."""
    transfer = config.get("transfer")
    if not transfer:
        return
    datasets, tasks = config.get("datasets", {}), config.get("tasks", {})
    for key in ("source", "target"):
        if transfer[key] not in datasets:
            raise ConfigError(f"transfer.{key} names '{transfer[key]}', which is not defined under 'datasets' "
                              f"(defined: {sorted(datasets)})")
    if transfer["source"] == transfer["target"]:
        raise ConfigError(f"transfer.target: '{transfer['target']}' is also the source; transfer needs another dataset")
    for task in transfer["tasks"]:
        if task not in tasks:
            raise ConfigError(f"transfer.tasks names '{task}', which is not a task under 'tasks' "
                              f"(defined: {sorted(tasks)})")
        if transfer["source"] not in tasks[task]["datasets"]:
            raise ConfigError(f"transfer.source: '{transfer['source']}' is not in tasks.{task}.datasets, so there "
                              f"is no domain-A {task} model to transfer; add it there")
        for method in transfer.get("methods") or []:
            if method not in tasks[task]["methods"]:
                raise ConfigError(f"transfer.methods names '{method}', which tasks.{task}.methods does not "
                                  f"compare, so there is no domain-A model of it to reuse")


def derived_seed(seed: int, *names: str) -> int:
    """A stable per-job seed from the master seed and names (Python's hash() is salted per process)."""
    key = "/".join(names).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(key)) % (2**31 - 1)
