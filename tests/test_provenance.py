"""Rules rerun when the code they run changes, and only then."""

from __future__ import annotations

import pytest

from emdiffuse.provenance import GROUPS, _normalised, code_digest

SOURCE = '''"""Module docstring."""

def score(x):
    """What it does."""
    return x * 2  # doubled
'''


def test_comments_docstrings_and_layout_leave_the_digest_unchanged_code_changes_it(tmp_path):
    original, cosmetic, changed = (tmp_path / f"{n}.py" for n in ("a", "b", "c"))
    original.write_text(SOURCE)
    cosmetic.write_text('"""Another docstring."""\n\n\ndef score(x):\n    """Other words."""\n\n    return (x * 2)\n')
    changed.write_text(SOURCE.replace("x * 2", "x * 3"))
    assert _normalised(original) == _normalised(cosmetic) != _normalised(changed)


def test_digests_are_stable_and_differ_by_stage():
    assert code_digest("model", "tasks.image") == code_digest("tasks.image", "model")
    assert len({code_digest(g) for g in GROUPS}) == len(GROUPS)
    assert code_digest("model", "tasks.isotropic") != code_digest("model", "tasks.image")
    with pytest.raises(ValueError, match="no module emdiffuse.nonexistent"):
        code_digest("nonexistent")


#: modules no workflow result depends on: the command line, exports, the digests themselves
OUTSIDE_RESULTS = {"cli.py", "bmz.py", "provenance.py", "models/frozen.py", "models/official.py", "__main__.py"}
#: the plan reaches results only through each job's inputs and params, which Snakemake compares itself
PLANNING = "plan/"


def test_every_module_is_in_some_rules_digest(repo):
    """A new module belongs to a stage group or is named by the rules that run it: otherwise an edit
    to it would change results without rerunning anything."""
    import re

    from emdiffuse.provenance import PACKAGE, _files

    covered = set()
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        for call in re.findall(r"code_digest\(([^)]*)\)", smk.read_text()):
            covered |= {f for name in re.findall(r'"([\w.]+)"', call) for m in GROUPS.get(name, (name,)) for f in _files(m)}
    modules = {str(f.relative_to(PACKAGE)) for f in PACKAGE.rglob("*.py") if f.name != "__init__.py"}
    missing = sorted(m for m in modules - {str(f.relative_to(PACKAGE)) for f in covered} - OUTSIDE_RESULTS
                     if not m.startswith(PLANNING))
    assert not missing, f"in no rule's code digest: {missing}"


def test_every_rule_digests_the_package_modules_its_script_imports(repo):
    """A rule reruns when the module its script calls into changes: the modules a script imports from
    ``emdiffuse`` are in the rule's code digest (what those modules import in turn is the stage groups'
    business: ``data``, ``model``, ``score``, ``plots``)."""
    import ast
    import re

    from emdiffuse.provenance import PACKAGE, _files

    missing = []
    for smk in sorted((repo / "workflow" / "rules").glob("*.smk")):
        for rule, block in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(), flags=re.M | re.S):
            calls = re.findall(r"code_digest\(([^)]*)\)", block)
            script = re.search(r'script:\s*"\.\./scripts/([\w.]+)"', block)
            if not calls or not script:
                continue
            covered = {f for name in re.findall(r'"([\w.]+)"', calls[0]) for m in GROUPS.get(name, (name,))
                       for f in _files(m)}
            tree = ast.parse((repo / "workflow" / "scripts" / script.group(1)).read_text())
            imported = {node.module.removeprefix("emdiffuse.") for node in ast.walk(tree)
                        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("emdiffuse.")}
            # a package's names come from its __init__
            files = {m: _files(f"{m}.__init__" if (PACKAGE / m.replace(".", "/")).is_dir() else m) for m in imported}
            missing += [f"{rule}: {m}" for m in sorted(imported) if not set(files[m]) <= covered]
    assert not missing, f"a rule's script imports code its digest leaves out: {missing}"
