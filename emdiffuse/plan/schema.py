"""The schema the workflow validates its config against, built from the schema file and the
registries (so every name list and every method's settings are written once)."""

from __future__ import annotations

from pathlib import Path


SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def workflow_schema() -> dict:
    """The config schema: the schema file's structure, with every name list taken from its registry,
    the one source of each: every method's settings block and the method names from the method
    catalog (``emdiffuse/models/settings.yaml`` and the entries of other packages), the metrics from
    ``evaluation.METRICS``, the dataset kinds and their settings from ``data.datasets`` (``KINDS``,
    ``kinds.yaml``), the budget modes from ``budget.MODES``."""
    import yaml

    from ..budget import MODES
    from ..data.datasets import KINDS, KINDS_SCHEMA, kind_schemas
    from ..evaluation import METRICS
    from ..models.catalog import IMAGE, VOLUME, settings_document

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
    kinds = kind_schemas()
    if set(kinds["kinds"]) != set(KINDS):
        raise ValueError(f"{KINDS_SCHEMA}: blocks for {sorted(kinds['kinds'])}, readers for {sorted(KINDS)}: "
                         f"every dataset kind needs both")
    defs.update(kinds["$defs"])
    defs["dataset"]["allOf"] += [{"if": {"properties": {"kind": {"const": kind}}}, "then": block}
                                 for kind, block in kinds["kinds"].items()]
    props["budget"]["properties"]["mode"]["enum"] = list(MODES)
    return schema


def write_workflow_schema(directory: str | Path, schema: dict | None = None) -> Path:
    """``schema`` (default: :func:`workflow_schema`) as a file under ``directory``/.snakemake
    (Snakemake validates against a file), rewritten only when it changed, atomically (jobs on a
    cluster parse the workflow too)."""
    import json

    from ..io import write_text

    path = Path(directory) / ".snakemake" / "emdiffuse" / "config.schema.json"
    text = json.dumps(schema if schema is not None else workflow_schema(), indent=1)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return path


def check_schema(config: dict, schema: dict) -> None:
    """Validate ``config`` against ``schema`` as Snakemake's ``validate`` does (schema defaults filled
    in), but stop with one short message naming the key (Snakemake's prints the whole schema), and
    name a renamed settings block."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import best_match

    from ..config import RENAMED_BLOCKS, ConfigError

    for name, block in (config.get("methods") or {}).items():
        for old, new in RENAMED_BLOCKS.items():
            if isinstance(block, dict) and old in block:
                raise ConfigError(f"methods.{name}.{old}: renamed to methods.{name}.{new}")
    properties = Draft202012Validator.VALIDATORS["properties"]

    def with_defaults(validator, props, instance, subschema):
        for key, sub in props.items():
            if "default" in sub and isinstance(instance, dict):
                instance.setdefault(key, sub["default"])
        yield from properties(validator, props, instance, subschema)

    filling = validators.extend(Draft202012Validator, {"properties": with_defaults})
    error = best_match(filling(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "the config"
        raise ConfigError(f"{key}: {error.message}")

