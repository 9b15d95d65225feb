"""environment.yml and the per-rule conda envs name the same packages as pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml

# conda-forge names of PyPI packages where they differ
CONDA_NAMES = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
WORKFLOW_ONLY = {"snakemake"}  # the per-rule envs run inside Snakemake, they do not install it


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower()


def _env_packages(path) -> set[str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    names = set()
    for dep in deps:
        if isinstance(dep, dict):
            names |= {_name(d) for d in dep["pip"] if not d.startswith("-")}
        else:
            names.add(_name(dep))
    return names - {"python", "pip"}


def _pyproject(repo) -> tuple[set[str], set[str]]:
    meta = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    deps = {CONDA_NAMES.get(_name(d), _name(d)) for d in meta["dependencies"]}
    tests = {_name(d) for d in meta["optional-dependencies"]["test"]}
    return deps, tests


def test_environment_yml_matches_pyproject(repo):
    deps, tests = _pyproject(repo)
    assert _env_packages(repo / "environment.yml") == deps | tests


def test_rule_envs_cover_pyproject(repo):
    deps, _ = _pyproject(repo)
    envs = {p.stem: _env_packages(p) for p in (repo / "workflow" / "envs").glob("*.yaml")}
    assert set(envs) == {"data", "torch"}
    assert envs["data"] <= envs["torch"], "the torch env is a superset of the data env"
    assert envs["torch"] == deps - WORKFLOW_ONLY


def test_every_rule_names_an_existing_env(repo):
    rules = "".join(p.read_text() for p in (repo / "workflow" / "rules").glob("*.smk"))
    named = set(re.findall(r'"\.\./envs/([\w-]+)\.yaml"', rules))
    assert named == {"data", "torch"}
    for env in named:
        assert (repo / "workflow" / "envs" / f"{env}.post-deploy.sh").exists()


def _gpu_rules(repo) -> set[str]:
    """Rules whose resources declare `gpu` (inherited by `use rule ... as X` aliases)."""
    rules = set()
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        blocks = re.split(r"\n(?=rule |use rule )", text)
        gpu = {re.match(r"rule (\w+):", b).group(1) for b in blocks if b.startswith("rule ") and "gpu=" in b}
        aliases = {m.group(2) for b in blocks for m in [re.match(r"use rule (\w+) as (\w+)", b)] if m and m.group(1) in gpu}
        rules |= gpu | aliases
    return rules


def test_the_slurm_profile_routes_every_gpu_rule_with_its_threads(repo):
    profile = yaml.safe_load((repo / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    rules = _gpu_rules(repo)
    assert {"train", "predict", "train_volume", "predict_volume_sampled", "sampling_run", "transfer_predict"} <= rules
    for rule in rules:
        assert profile["set-resources"][rule]["slurm_partition"] == "gpu", rule
        assert "gpu" not in profile["set-resources"][rule], f"{rule}: the rule's own gpu (0 for input) must stand"
        assert profile["set-threads"][rule] > 1, rule
    workstation = yaml.safe_load((repo / "workflow" / "profiles" / "workstation" / "config.yaml").read_text())
    assert workstation["resources"] == {"gpu": 1}


def test_post_deploy_installs_the_package_from_the_repository_whatever_the_directory(repo, monkeypatch):
    from emdiffuse.config import export_repository

    monkeypatch.delenv("EMDIFFUSE_REPO", raising=False)
    export_repository()
    import os

    assert os.environ["EMDIFFUSE_REPO"] == str(repo.resolve())
    for script in (repo / "workflow" / "envs").glob("*.post-deploy.sh"):
        text = script.read_text()
        assert 'pip install --no-deps -e "${EMDIFFUSE_REPO' in text and "-e .\n" not in text
    assert "build='cuda*'" in (repo / "workflow" / "envs" / "torch.yaml").read_text()
