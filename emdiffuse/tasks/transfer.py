"""Transfer learning from a single image pair (the paper's tissue transfer).

A model trained on one tissue (domain A, ``transfer.source``) is compared on another tissue's
test set (domain B, ``transfer.target``) in three variants:

- ``direct``: the domain-A model applied as it is;
- ``finetune``: the domain-A model trained further on ONE image pair of domain B (a crop of one
  training slice at one noise level; the paper used about 3 megapixels), fresh optimiser;
- ``scratch``: a fresh model trained on that same pair with the same number of iterations, which
  isolates what the pre-training on A buys.

The non-learned ``input`` method (the degraded input, bicubic for super-resolution) appears once
per task as the ``reference`` row. Pair files keep the keys of every other pair file
(``inputs``, ``targets``, ``level``, ``level_name``, ``z``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting import markdown
from ..config import ConfigError, derived_seed
from ..io import load_npz, save_npz, write_text
from ..data.pairs import PAIR_KEYS as BASE_PAIR_KEYS

VARIANTS = ("direct", "finetune", "scratch")
REFERENCE = "reference"  # the variant name of the non-learned input method's row
VARIANT_TITLES = {"direct": "direct (A model)", "finetune": "fine-tuned (1 pair)", "scratch": "scratch (1 pair)"}
PAIR_KEYS = BASE_PAIR_KEYS + ("z",)  # the slice each pair came from


# --- the data: one training pair, and a test subset ------------------------------------------

def _level_index(level: int, names: np.ndarray, key: str) -> int:
    """A level index into the task's levels, negative counting from the end (as in Python)."""
    n = len(names)
    if not -n <= level < n:
        raise ConfigError(f"{key}: level {level} but the task has {n} levels ({', '.join(map(str, names))})")
    return level % n


def select_one_pair(pairs: dict[str, np.ndarray], *, slice_index: int, level: int, size, factor: int,
                    source: str = "pairs") -> dict[str, np.ndarray]:
    """The single fine-tuning pair: training slice ``slice_index`` (among the distinct training
    slices, in z order) at input level ``level``, centre-cropped to ``size`` ground-truth pixels
    (an int for a square, ``[h, w]``, or None for the whole image). The input crop covers exactly
    the same field of view (``size / factor`` input pixels)."""
    slices = np.unique(pairs["z"])
    if not 0 <= slice_index < len(slices):
        raise ConfigError(f"transfer.pair.slice: {slice_index} but {source} has {len(slices)} training slices "
                          f"(0..{len(slices) - 1})")
    li = _level_index(level, pairs["level_name"], "transfer.pair.level")
    (i,) = np.flatnonzero((pairs["z"] == slices[slice_index]) & (pairs["level"] == li))
    th, tw = pairs["targets"].shape[-2:]
    h, w = (th, tw) if size is None else (size, size) if np.isscalar(size) else tuple(size)
    if h > th or w > tw or h % factor or w % factor:
        raise ConfigError(f"transfer.pair.size: {h}x{w} must fit in the {th}x{tw} images of {source} and be a "
                          f"multiple of the task's factor {factor}")
    y, x = ((th - h) // 2 // factor) * factor, ((tw - w) // 2 // factor) * factor  # on the input grid too
    return {
        "inputs": pairs["inputs"][i:i + 1, y // factor:(y + h) // factor, x // factor:(x + w) // factor].copy(),
        "targets": pairs["targets"][i:i + 1, y:y + h, x:x + w].copy(),
        "level": pairs["level"][i:i + 1].copy(),
        "level_name": pairs["level_name"],
        "z": pairs["z"][i:i + 1].copy(),
    }


def select_test_subset(pairs: dict[str, np.ndarray], *, images: int, levels: list[int] | None) -> dict[str, np.ndarray]:
    """``images`` test slices spread over the test set, each at the ``levels`` given (indices into
    the task's levels; None = all), in the test set's order."""
    from ..data.pairs import spread

    chosen_z = spread(np.unique(pairs["z"]), images)
    level_ids = (np.arange(len(pairs["level_name"])) if levels is None else
                 [_level_index(lv, pairs["level_name"], "transfer.test_levels") for lv in levels])
    keep = np.isin(pairs["z"], chosen_z) & np.isin(pairs["level"], level_ids)
    return {k: (v if k == "level_name" else v[keep]) for k, v in pairs.items()}


# --- budgets: what each variant is trained with ------------------------------------------------

def _entry(method: str):
    """The method's catalog entry (defaults, learned, learning-rate key; no torch)."""
    from ..models.catalog import image_method

    return image_method(method, f"transfer: method {method!r}")


def transfer_methods(config: dict, task: str) -> list[str]:
    """The methods compared for a base task: ``transfer.methods``, else the base task's own."""
    return list(config["transfer"].get("methods") or config["tasks"][task]["methods"])


def learned(method: str) -> bool:
    return _entry(method).learned


def finetune_train(config: dict, method: str) -> dict:
    """Overrides of the method's ``train`` block for fine-tuning: the fine-tuning iterations, the
    method's own learning rate times ``lr_factor``, then ``overrides.<method>`` (which win)."""
    ft, cls = config["transfer"]["finetune"], _entry(method)
    own = config["methods"][method].get("train", {})
    defaults = cls.defaults.get("train", {})
    lr = own.get(cls.lr_key, defaults.get(cls.lr_key))
    train = {"iterations": ft["iterations"]}
    if lr is not None:
        train[cls.lr_key] = float(lr) * float(ft.get("lr_factor", 1.0))
    extra = (ft.get("overrides") or {}).get(method, {})
    unknown = sorted(set(extra) - set(defaults))
    if unknown:
        raise ConfigError(f"transfer.finetune.overrides.{method}: unknown train key(s) {unknown}; "
                          f"allowed: {sorted(defaults)}")
    return {**train, **extra}


def scratch_params(config: dict, method: str) -> dict:
    """The method's own params, trained for ``scratch.iterations`` (default: its fine-tuning iterations)."""
    params = copy.deepcopy(config["methods"][method])
    iterations = (config["transfer"].get("scratch") or {}).get("iterations")
    params.setdefault("train", {})["iterations"] = iterations or finetune_train(config, method)["iterations"]
    return params


def finetune_params(config: dict, method: str) -> dict:
    """The method's params with the fine-tuning overrides merged into ``train`` (for describing)."""
    params = copy.deepcopy(config["methods"][method])
    params["train"] = {**params.get("train", {}), **finetune_train(config, method)}
    return params


def variant_budgets(config: dict, task: str) -> dict[str, dict[str, dict]]:
    """``{method: {variant: {"iterations": n, "budget": text}}}`` for a task's transfer table."""
    from ..reporting.tables import describe_budget

    t = config["transfer"]
    out = {}
    for method in transfer_methods(config, task):
        if not learned(method):
            out[method] = {REFERENCE: {"iterations": 0, "budget": "not learned (reference)"}}
            continue
        own, ft, scratch = config["methods"][method], finetune_params(config, method), scratch_params(config, method)
        out[method] = {
            "direct": {"iterations": own["train"]["iterations"],
                       "budget": f"trained on {t['source']} only: {describe_budget(method, own)}"},
            "finetune": {"iterations": ft["train"]["iterations"],
                         "budget": f"{t['source']} model + one {t['target']} pair: {describe_budget(method, ft)}"},
            "scratch": {"iterations": scratch["train"]["iterations"],
                        "budget": f"fresh weights, the same pair: {describe_budget(method, scratch)}"},
        }
    return out


def _check_references(config: dict) -> None:
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


def check_transfer(config: dict) -> None:
    """The transfer block's cross-references, and its budget keys (they need the method registry)."""
    if not config.get("transfer"):
        return
    _check_references(config)
    for task in config["transfer"]["tasks"]:
        for method in transfer_methods(config, task):
            if learned(method):
                finetune_train(config, method)


def predict_seed(config: dict, task: str, target: str, method: str) -> int:
    """One sampling seed per (task, method) for every variant, so the variants differ only in weights."""
    return derived_seed(config["seed"], "transfer", task, target, method)


# --- workflow steps ------------------------------------------------------------------------

def extract_one_pair(train_path: str, pair_cfg: dict, factor: int, out_path: str) -> None:
    """Write the one fine-tuning pair of domain B, taken from its *training* pairs only."""
    pairs = load_npz(train_path, required=PAIR_KEYS)
    one = select_one_pair(pairs, slice_index=pair_cfg["slice"], level=pair_cfg["level"], size=pair_cfg.get("size"),
                          factor=factor, source=str(train_path))
    h, w = one["targets"].shape[-2:]
    print(f"one pair from {train_path}: z={int(one['z'][0])}, level {one['level_name'][one['level'][0]]}, "
          f"{h}x{w} ground-truth pixels ({h * w / 1e6:.3f} MP)")
    save_npz(out_path, **one)


def extract_test_subset(test_path: str, images: int, levels: list[int] | None, out_path: str) -> None:
    pairs = load_npz(test_path, required=PAIR_KEYS)
    subset = select_test_subset(pairs, images=images, levels=levels)
    print(f"{len(subset['inputs'])} of the {len(pairs['inputs'])} test pairs of {test_path}")
    save_npz(out_path, **subset)


def finetune(model_path: str, pairs_path: str, train: dict, seed: int, out_model: str, out_history: str, *,
             factor: int = 1, threads: int | None = None, progress: bool = True) -> None:
    """Fine-tune a trained method on the pairs of ``pairs_path`` (resumable like ``tasks.image.train_predict.train``)."""
    from ..device import pick_device, seed_everything, set_threads
    from ..models.registry import load_method
    from ..data.pairs import check_pairing

    set_threads(threads)
    seed_everything(seed)
    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    check_pairing(pairs["inputs"], pairs["targets"], factor, str(pairs_path))
    model = load_method(model_path, device=pick_device())
    model.finetune(pairs["inputs"], pairs["targets"], train=train, seed=seed,
                   checkpoint_path=Path(out_model).with_name("checkpoint.pt"), progress=progress)
    model.save(out_model)
    model.write_history(out_history)


def evaluate(task: str, target: str, predictions: dict[tuple[str, str], str], pairs_path: str, metrics: list[str],
             out_path: str, *, threshold: float) -> None:
    """Per-image metrics of every method x variant of a task on the target's test subset, in one
    job (one metric-model load instead of one per variant); rows as ``tasks.image.scoring.evaluate`` writes
    them, plus the ``variant`` column."""
    from ..io import atomic_path
    from ..reporting.tables import evaluate_images

    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    frames = []
    for (method, variant), path in predictions.items():
        pred = load_npz(path, required=("prediction",))
        rows = evaluate_images(pred["prediction"], pairs["targets"], pairs["level"], pairs["level_name"], metrics,
                               task=task, dataset=target, method=method, uncertainty=pred.get("uncertainty"),
                               threshold=threshold)
        frames.append(rows.assign(variant=variant))
    with atomic_path(out_path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


def summarize_transfer(rows: pd.DataFrame, metrics: list[str], tasks: list[str], methods: list[str]) -> pd.DataFrame:
    """``tables.summarize`` per (task, variant), in the order task, level ('all' first), method, variant."""
    from ..reporting.tables import summarize

    parts = []
    for (task, variant), group in rows.groupby(["task", "variant"], sort=False):
        part = summarize(group, metrics, methods)
        part.insert(0, "task", task)
        part.insert(4, "variant", variant)
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    levels = ["all"] + [lv for lv in dict.fromkeys(rows["level_name"]) if lv != "all"]
    keys = {"task": tasks, "level": levels, "method": methods, "variant": [REFERENCE, *VARIANTS]}
    order = [table[col].map({v: i for i, v in enumerate(values)}) for col, values in keys.items()]
    return table.iloc[np.lexsort(order[::-1])].reset_index(drop=True)


def to_markdown(table: pd.DataFrame, metrics: list[str], *, title: str, setup: list[str], budgets: dict) -> str:
    """Mean ± std [95% CI] per metric for every task x level x method x variant; the best learned
    row of each (task, level) block in bold; then the setup and every variant's budget."""
    from ..evaluation import METRICS
    from ..reporting.tables import metric_cell

    header = ["task", "level", "method", "variant", "n"] + [f"{m} {METRICS[m].arrow}" for m in metrics]
    rows = []
    for _, block in table.groupby(["task", "level"], sort=False):
        learned_rows = block[block["method"] != "input"]
        best = {m: METRICS[m].best(learned_rows[f"{m}_mean"]) if np.isfinite(learned_rows[f"{m}_mean"]).any()
                else np.nan for m in metrics}
        for _, r in block.iterrows():
            cells = [r["task"], r["level"], r["method"], r["variant"], str(int(r["n"]))]
            rows.append(cells + [metric_cell(r, m, best[m]) for m in metrics])
    lines = [f"# {title}", "", *setup, "", *markdown.table(header, rows)]
    lines += ["", "Mean ± std [bootstrap 95% CI of the mean] over the target's test images; level 'all' pools "
              "the levels; bold: best learned row per task and level. (k undefined): images where the metric "
              "is undefined (left out).", "", "Budgets (iterations: optimiser steps of that variant's own "
              "training; direct = the domain-A training):", ""]
    for method, variants in budgets.items():
        lines += [f"- **{method} / {variant}**: {b['budget']}" for variant, b in variants.items()]
    return "\n".join(lines) + "\n"


def pair_description(path: str) -> str:
    one = load_npz(path, required=PAIR_KEYS)
    (h, w), (ih, iw) = one["targets"].shape[-2:], one["inputs"].shape[-2:]
    return (f"z={int(one['z'][0])}, level {one['level_name'][one['level'][0]]}, input {ih}x{iw} px, "
            f"ground truth {h}x{w} px ({h * w / 1e6:.3f} MP)")


def table(metric_csvs: list[str], one_pairs: list[str], transfer_cfg: dict, methods: list[str], budgets: dict,
          csv_path: str, md_path: str) -> None:
    """The transfer table (CSV and Markdown) from the per-image metric CSVs of every variant;
    ``one_pairs``: each task's fine-tuning pair, in the order of ``transfer_cfg["tasks"]``."""
    tasks = list(transfer_cfg["tasks"])
    from ..io import atomic_path

    rows = pd.concat([pd.read_csv(p) for p in metric_csvs], ignore_index=True)
    metrics = transfer_cfg["metrics"]
    summary = summarize_transfer(rows, metrics, tasks, methods)
    summary = summary.rename(columns={"dataset": "target"})
    summary.insert(1, "source", transfer_cfg["source"])
    flat = {(m, v): b for m, variants in budgets.items() for v, b in variants.items()}
    key = list(zip(summary["method"], summary["variant"]))
    summary["iterations"] = [flat[k]["iterations"] for k in key]
    summary["budget"] = [flat[k]["budget"] for k in key]
    with atomic_path(csv_path) as tmp:
        summary.to_csv(tmp, index=False)
    setup = [f"Domain A (training): {transfer_cfg['source']}; domain B (test): {transfer_cfg['target']}. "
             "Fine-tuning and scratch training see ONE domain-B training pair:", ""]
    setup += [f"- {task}: {pair_description(path)}" for task, path in zip(tasks, one_pairs)]
    write_text(md_path, to_markdown(summary, metrics, title="transfer: one-pair fine-tuning to a new tissue",
                                    setup=setup, budgets=budgets))


def figure(task_inputs: dict[str, dict], figure_cfg: dict, source: str, target: str, out_path: str) -> None:
    """Input, direct, fine-tuned, scratch and ground truth on one domain-B test image, one row per
    (task, method). ``task_inputs[task] = {"pairs": test pairs path, "methods": {method: {variant: path}}}``."""
    from ..reporting.plots.transfer import transfer_figure

    rows = []
    for task, spec in task_inputs.items():
        pairs = load_npz(spec["pairs"], required=PAIR_KEYS)
        i = figure_cfg["image"] if figure_cfg["image"] < len(pairs["inputs"]) else 0
        level = pairs["level_name"][pairs["level"][i]]
        for method, paths in (spec["methods"] or {"no learned method": {}}).items():
            panels = [("input", pairs["inputs"][i])]
            panels += [(VARIANT_TITLES[v], load_npz(paths[v], required=("prediction",))["prediction"][i])
                       for v in VARIANTS if v in paths]
            panels.append(("ground truth", pairs["targets"][i]))
            rows.append((f"{task} ({level})\n{method}", panels))
    transfer_figure(out_path, rows, inset=tuple(figure_cfg["inset"]),
                    suptitle=f"transfer {source} → {target}: test image of domain B")


def figure_methods(methods: list[str]) -> list[str]:
    """EMDiffuse and the first learned baseline (the paper's transfer panels show two methods)."""
    learned_methods = [m for m in methods if learned(m)]
    baselines = [m for m in learned_methods if m != "emdiffuse"]
    return [m for m in learned_methods if m == "emdiffuse"] + baselines[:1]
