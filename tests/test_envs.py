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


def test_a_dry_run_with_the_slurm_profile_sends_every_gpu_job_to_the_gpu_partition(repo, tmp_path):
    """The SLURM plugin's own dry run of the paper config (the profile without conda, absent here):
    every job that asks for a GPU goes to the GPU partition; the non-learned methods ask for none; a
    method given several training GPUs (train_devices) asks for them."""
    import subprocess
    import sys

    profile = yaml.safe_load((repo / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    profile.pop("software-deployment-method")
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    config = yaml.safe_load((repo / "config" / "paper.yaml").read_text())
    config["train_devices"] = {"emdiffuse": 4, "vemdiffuse_i": 2}
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), "-n", "--profile",
           str(tmp_path / "profile"), "--configfile", str(tmp_path / "paper.yaml"), "--directory", str(tmp_path / "w"),
           "all"]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=\[\w{3} \w{3} )", proc.stdout):  # one job per block, each after its timestamp
        rule = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        fields = {key: re.search(rf"^    {key}: (.*)$", block, re.M) for key in ("wildcards", "resources")}
        if rule:
            jobs.append((rule.group(1), *(dict(re.findall(r"(\w+)=([^,]+)", f.group(1))) if f else {}
                                          for f in fields.values())))
    gpu_jobs = [(rule, w, r) for rule, w, r in jobs if int(r.get("gpu", 0)) > 0]
    assert len(gpu_jobs) > 30 and all(r["slurm_partition"] == "gpu" for _, _, r in gpu_jobs)
    assert all(int(r.get("gpu", 0)) == 0 for _, w, r in jobs if w.get("method") in ("input", "linear", "cubic"))
    trains = {(w["task"], w["dataset"], w["method"]): int(r["gpu"]) for rule, w, r in jobs if rule == "train"}
    assert {g for (_, _, m), g in trains.items() if m == "emdiffuse"} == {4}
    assert {g for (_, _, m), g in trains.items() if m in ("care", "rcan", "pssr")} == {1}
    volumes = {(w["dataset"], w["method"]): int(r["gpu"]) for rule, w, r in jobs if rule == "train_volume"}
    assert {g for (_, m), g in volumes.items() if m == "vemdiffuse_i"} == {2}
    assert {g for (_, m), g in volumes.items() if m != "vemdiffuse_i"} == {1}
