"""Digests of the package code a workflow rule runs, for the rule's params.

Snakemake reruns a job whose params changed, but it does not see the package a script imports: without
these, a fixed bug in a metric or a sampler would leave every old result in place. A rule names the
code its results depend on (stage groups below, plus its own task module), so an edit reruns only the
jobs it can change. The digest is of each module's syntax tree without docstrings: a comment, a
docstring or a reformatting changes no result and reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

#: code shared by the rules of one stage (package sub-packages or modules, relative to ``emdiffuse``)
GROUPS = {
    "data": ("data", "io", "config"),
    "model": ("models", "device", "io", "budget", "config"),
    "score": ("evaluation", "reporting.tables", "reporting.markdown", "io", "device"),
    "plots": ("reporting.plots", "io"),
}


def code_digest(*names: str) -> str:
    """A short digest of the code of ``names`` (groups of :data:`GROUPS` or module names)."""
    modules = sorted({m for name in names for m in GROUPS.get(name, (name,))})
    files = sorted({f for m in modules for f in _files(m)})
    h = hashlib.sha1()
    for path in files:
        h.update(str(path.relative_to(PACKAGE)).encode())
        h.update(_normalised(path))
    return h.hexdigest()[:16]


def _files(module: str) -> list[Path]:
    path = PACKAGE.joinpath(*module.split("."))
    if path.is_dir():
        return sorted(path.rglob("*.py"))
    if path.with_suffix(".py").is_file():
        return [path.with_suffix(".py")]
    raise ValueError(f"code_digest: no module emdiffuse.{module} in {PACKAGE}")


@lru_cache(maxsize=None)
def _normalised(path: Path) -> bytes:
    """The module's syntax tree without docstrings (comments and layout are not in the tree)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False).encode()
