"""The package's layers (docs/CONVENTIONS.md): a module imports from its own layer and below."""

from __future__ import annotations

import ast

from emdiffuse.provenance import PACKAGE

#: lower numbers are used by higher ones, never the reverse
LAYERS = {"config": 0, "io": 0, "device": 0, "budget": 0, "provenance": 0, "data": 1, "models": 2, "evaluation": 2,
          "reporting": 3, "tasks": 4, "plan": 5, "cli": 6, "bmz": 6, "__main__": 6}


def imported_modules(path, parts):
    """Every ``emdiffuse.*`` module a file imports (at the top or inside functions)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["emdiffuse", *parts[:-1]][: len(parts) - (node.level - 1)]
                yield ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_modules_import_only_their_own_layer_and_below():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        layer = parts[0].removesuffix(".py")
        if layer == "__init__":
            continue
        assert layer in LAYERS, f"emdiffuse/{parts[0]}: a new top-level module or package needs a layer in LAYERS"
        for module in imported_modules(path, parts):
            target = module.split(".")[1] if module.startswith("emdiffuse.") else None
            if target and LAYERS.get(target, 0) > LAYERS[layer]:
                upward.append(f"{'/'.join(parts)} imports {module}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
