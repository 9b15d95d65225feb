"""The config schema and the cross-reference checks stop bad configs with a message naming the key."""

from __future__ import annotations

import copy

import pytest
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError

from emdiffuse.config import ConfigError, derived_seed, drop_null_blocks
from emdiffuse.plan import check_config



@pytest.fixture(autouse=True)
def _in_repo(repo, monkeypatch):
    monkeypatch.chdir(repo)


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(repo, name, schema):
    import yaml

    config = yaml.safe_load((repo / "config" / name).read_text())
    validate(config, schema)
    check_config(config)


#: config mutations the schema refuses, and words its message must hold
BAD_VALUES = (
    "mutate, words",
    [
        (lambda c: c["methods"]["care"]["train"].update(iteratons=5), ["iteratons", "['methods']['care']['train']"]),
        (lambda c: c["methods"]["emdiffuse"]["predict"].update(sampler="euler"), ["euler", "sampler"]),
        (lambda c: c["datasets"]["phantom_neuropil"].update(style="kidney"), ["kidney"]),
        (lambda c: c["tasks"]["denoise"]["pairs"].update(dwell_us=[]), ["dwell_us"]),
        (lambda c: c.update(seed=-1), ["seed"]),
        (lambda c: c["split"].update(test_fraction=1.5), ["test_fraction"]),
        # a repeated method or dataset would be scored twice and narrow the confidence intervals
        (lambda c: c["tasks"]["denoise"].update(methods=["input", "care", "care"]), ["non-unique", "methods"]),
        (lambda c: c["tasks"]["superres"]["datasets"].append("phantom_neuropil"), ["non-unique", "datasets"]),
    ],
)


@pytest.mark.parametrize(*BAD_VALUES)
def test_the_concise_check_names_the_key_in_one_line(default_config, mutate, words):
    """What the workflow says first (Snakemake's own message prints the whole schema): the key's path
    and what is wrong, on one line."""
    from emdiffuse.plan.schema import check_schema, workflow_schema

    bad = copy.deepcopy(default_config)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        check_schema(bad, workflow_schema())
    message = str(err.value)
    assert "\n" not in message and "methods']" not in message, message
    assert all(word in message for word in words if "[" not in word), message


def test_a_renamed_block_is_named_before_the_schema_refuses_it(default_config):
    from emdiffuse.plan.schema import check_schema, workflow_schema

    default_config["methods"]["emdiffuse"]["sample"] = default_config["methods"]["emdiffuse"].pop("predict")
    with pytest.raises(ConfigError, match=r"^methods.emdiffuse.sample: renamed to methods.emdiffuse.predict$"):
        check_schema(default_config, workflow_schema())


@pytest.mark.parametrize(*BAD_VALUES)
def test_schema_names_the_bad_key(default_config, mutate, words, schema):
    bad = copy.deepcopy(default_config)
    mutate(bad)
    with pytest.raises(WorkflowError) as err:
        validate(bad, schema)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_are_refused_with_their_key(default_config, value, schema):
    default_config["methods"]["care"]["train"]["lr"] = value
    validate(default_config, schema)  # NaN and inf slip through every schema bound ...
    with pytest.raises(ConfigError, match=rf"methods\.care\.train\.lr: {value} is not a finite number"):
        check_config(default_config)  # ... so the Python checks refuse them


def test_every_learned_method_takes_checkpoint_every(default_config, schema):
    for name in ["care", "emdiffuse", "rcan", "pssr", "srunet3d", "vemdiffuse_i"]:
        default_config["methods"][name]["train"]["checkpoint_every"] = 50
    validate(default_config, schema)


def test_optional_blocks_may_be_null(default_config, schema):
    for block in ["sampling_study", "loss_ablation", "transfer"]:
        default_config[block] = None
    drop_null_blocks(default_config)
    assert not {"sampling_study", "loss_ablation", "transfer"} & set(default_config)
    validate(default_config, schema)
    check_config(default_config)


def test_task_naming_an_undefined_dataset(default_config):
    default_config["tasks"]["denoise"]["datasets"].append("nowhere")
    with pytest.raises(ConfigError, match=r"tasks\.denoise\.datasets names 'nowhere'"):
        check_config(default_config)


def test_task_naming_a_method_without_settings(default_config):
    del default_config["methods"]["care"]
    with pytest.raises(ConfigError, match=r"tasks\.denoise\.methods names 'care'"):
        check_config(default_config)


def test_real_pairs_need_datasets_with_those_acquisitions(default_config, schema):
    default_config["tasks"]["denoise"]["pairs"] = {"source": "real", "levels": ["1us"]}
    validate(default_config, schema)
    with pytest.raises(ConfigError, match=r"datasets\.phantom_neuropil .*has no real acquisitions"):
        check_config(default_config)
    default_config["datasets"]["phantom_neuropil"]["inputs"] = {"2us": "x.tif"}
    with pytest.raises(ConfigError, match=r"tasks\.denoise\.pairs\.levels names \['1us'\]"):
        check_config(default_config)


def test_real_pairs_need_their_levels(default_config, schema):
    default_config["tasks"]["denoise"]["pairs"] = {"source": "real"}
    with pytest.raises(WorkflowError, match="levels"):
        validate(default_config, schema)


def test_derived_seed_is_stable_and_distinct():
    assert derived_seed(0, "denoise", "a") == derived_seed(0, "denoise", "a")
    assert derived_seed(0, "denoise", "a") != derived_seed(0, "denoise", "b")
    assert derived_seed(0, "a") != derived_seed(1, "a")
    # fixed value: Python's salted hash() would change across processes, crc32 does not
    assert derived_seed(0, "x") == 2363233923 % (2**31 - 1)


def test_schema_knows_exactly_the_catalog_methods(schema):
    """The workflow's schema takes the method names from the catalog: every method has a block."""
    import json

    from emdiffuse.models.catalog import IMAGE, VOLUME

    generated = json.loads(open(schema).read())
    assert set(generated["properties"]["methods"]["properties"]) == set(IMAGE) | set(VOLUME)
    assert generated["$defs"]["task_common"]["methods"]["items"]["enum"] == list(IMAGE)
    assert generated["properties"]["transfer"]["properties"]["methods"]["items"]["enum"] == list(IMAGE)
    assert generated["$defs"]["isotropic_task"]["properties"]["methods"]["items"]["enum"] == list(VOLUME)
    for name, entry in {**IMAGE, **VOLUME}.items():  # each block is its entry's settings schema
        assert generated["properties"]["methods"]["properties"][name] == entry.schema, name


def test_every_name_list_comes_from_its_registry(schema):
    """Metric names, samplers, dataset kinds, budget modes and the sampled methods are written once,
    in their registries: the schema file holds no copy, the generated schema lists exactly them, and
    the samplers the settings name are the ones the diffusion code runs."""
    import json
    import re

    from emdiffuse.budget import MODES
    from emdiffuse.plan.schema import SCHEMA
    from emdiffuse.data.datasets import KINDS
    from emdiffuse.evaluation import METRICS
    from emdiffuse.models.catalog import settings_document
    from emdiffuse.models.diffusion import SAMPLERS

    lists = [{n.strip() for n in items.split(",")} for items in re.findall(r"enum: \[([^]]*)\]", SCHEMA.read_text())]
    for names in (METRICS, SAMPLERS, KINDS, MODES, ["emdiffuse", "emdiffuse_v"]):
        assert set(names) not in lists, f"the schema file repeats {sorted(names)}"
    generated = json.loads(open(schema).read())
    assert generated["$defs"]["metric"]["enum"] == list(METRICS)
    assert generated["$defs"]["sampler"]["enum"] == list(SAMPLERS) == settings_document()["$defs"]["sampler"]["enum"]
    assert set(generated["$defs"]["dataset"]["properties"]["kind"]["enum"]) == set(KINDS)
    # each dataset kind's settings block sits beside the readers (data/kinds.yaml), one per reader
    from emdiffuse.data.datasets import kind_schemas

    assert set(kind_schemas()["kinds"]) == set(KINDS) and "const: phantom" not in SCHEMA.read_text()
    kinds = [c["if"]["properties"]["kind"]["const"] for c in generated["$defs"]["dataset"]["allOf"][1:]]
    assert sorted(kinds) == sorted(KINDS)
    assert generated["properties"]["budget"]["properties"]["mode"]["enum"] == list(MODES)
    assert generated["properties"]["sampling_study"]["properties"]["method"]["enum"] == ["emdiffuse", "emdiffuse_v"]
    # the prediction choices the settings offer are the ones the code implements
    from emdiffuse.models import diffusion, vemdiffuse

    methods = settings_document()["methods"]
    for block, key, implemented in (("emdiffuse", "init", diffusion.INITS), ("emdiffuse", "precision", diffusion.PRECISIONS),
                                    ("vemdiffuse_i", "init", vemdiffuse.INITS), ("vemdiffuse_i", "z_noise", vemdiffuse.Z_NOISE)):
        assert set(methods[block]["properties"]["predict"]["properties"][key]["enum"]) == set(implemented), (block, key)


def test_method_defaults_come_from_the_settings_schema():
    """One source: a method's defaults are its schema's defaults (a variant's changed ones included),
    required keys without a default stay required, and blocks marked x-whole are taken whole."""
    from emdiffuse.models.catalog import IMAGE, REQUIRED, Free, settings_defaults

    v = IMAGE["emdiffuse_v"]
    assert v.schema["properties"]["diffusion"]["properties"]["prediction"]["default"] == "v"
    assert v.defaults["diffusion"]["prediction"] == "v" and IMAGE["emdiffuse"].defaults["diffusion"]["prediction"] == "eps"
    assert v.defaults["train"]["intensity_augment"] == 0.1 and v.defaults["train"]["warmup"] is REQUIRED
    assert isinstance(v.defaults["model"], Free) and v.defaults["model"] == {"preset": "official"}
    block = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer"}, "b": {"type": "number", "default": 0.5},
        "c": {"type": "object", "properties": {"d": {"type": "string", "default": "x"}}},
        "e": {"type": "object", "x-whole": True, "default": {"f": 1}}}}
    assert settings_defaults(block, "m") == {"a": REQUIRED, "b": 0.5, "c": {"d": "x"}, "e": {"f": 1}}
    assert isinstance(settings_defaults(block, "m")["e"], Free)
    block["properties"]["g"] = {"type": "integer"}
    with pytest.raises(ValueError, match="m.g: a setting needs a default or to be required"):
        settings_defaults(block, "m")


def test_unknown_methods_and_method_keys_are_named(default_config, schema):
    bad = copy.deepcopy(default_config)
    bad["tasks"]["denoise"]["methods"].append("noise2void")
    with pytest.raises(WorkflowError, match="noise2void"):
        validate(bad, schema)
    # also checked against the method's defaults before any job (`emdiffuse.plan.check_config`)
    default_config["methods"]["care"]["train"]["iteratons"] = 3
    with pytest.raises(ConfigError, match=r"methods.care.train: unknown key\(s\) \['iteratons'\]"):
        check_config(default_config)
