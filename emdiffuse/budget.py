"""One training budget for every learned method: the config key ``budget``.

``mode: own`` (the default) trains each method for its own ``train.iterations``; ``steps`` gives
every learned method the same number of optimiser steps (``budget.steps``); ``seconds`` the same
wall-clock training time (``budget.seconds``, with ``budget.steps`` as an optional iteration cap).
Batch size, patch, learning rate and schedule stay each method's own: a same-budget comparison
equalises the length of training, not the recipe. The tables report what each method actually got
(:meth:`emdiffuse.models.methods.Method.budget`), since a seconds budget buys a different number of
iterations on every machine.
"""

from __future__ import annotations

from .config import ConfigError

MODES = ("own", "steps", "seconds")


def check_budget(config: dict) -> None:
    """The values a mode needs are given, and none that it would silently ignore."""
    budget = config.get("budget") or {}
    mode = budget.get("mode", "own")
    if mode not in MODES:
        raise ConfigError(f"budget.mode: {mode!r} is not one of {list(MODES)}")
    needs = {"own": (), "steps": ("steps",), "seconds": ("seconds",)}[mode]
    unused = {"own": ("steps", "seconds"), "steps": ("seconds",), "seconds": ()}[mode]
    for key in needs:
        if budget.get(key) is None:
            raise ConfigError(f"budget.{key}: required when budget.mode is {mode!r}")
    for key in unused:
        if budget.get(key) is not None:
            raise ConfigError(f"budget.{key}: set, but budget.mode is {mode!r}, which ignores it "
                              f"(use mode {'steps' if key == 'steps' else 'seconds'} or remove budget.{key})")


def apply_budget(params: dict, budget: dict | None) -> dict:
    """A method's config params with the config-wide budget applied (a new dict; not-learned
    methods, which have no ``train`` block, and ``mode: own`` are returned unchanged)."""
    mode = (budget or {}).get("mode", "own")
    if mode == "own" or "train" not in params:
        return params
    train = dict(params["train"])
    if mode == "steps":
        train["iterations"] = int(budget["steps"])
    else:  # seconds: the deadline stops training; steps, if given, caps it
        train["iterations"] = budget.get("steps")
        train["seconds"] = float(budget["seconds"])
    return {**params, "train": train}


def describe_mode(budget: dict | None) -> str:
    """One sentence for a table: how the budgets were set, and whether the run is reproducible."""
    budget = budget or {}
    mode = budget.get("mode", "own")
    if mode == "own":
        return "Budget mode `own`: each learned method trained for its own configured iterations."
    if mode == "steps":
        return f"Budget mode `steps`: every learned method got the same {budget['steps']} optimiser steps."
    cap = f" (capped at {budget['steps']} iterations)" if budget.get("steps") else ""
    return (f"Budget mode `seconds`: every learned method got the same {budget['seconds']:g} s of training{cap}. "
            "How many iterations that buys depends on the machine and its load, so these numbers are "
            "not reproducible across machines (or runs).")
