"""One function per workflow step: paths and config blocks in, files out.

The Snakemake scripts are thin adapters over these, so every step can be run and tested
without Snakemake (and the ``emdiffuse`` command reuses them).
"""

from __future__ import annotations

import warnings

from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting import markdown
from ..config import ConfigError
from ..io import load_npz, save_npz, write_text
from ..data.pairs import PAIR_KEYS


def fetch_dataset(name: str, entry: dict, cache_dir: str, manifest_path: str) -> None:
    """Download (or read by region) a remote dataset into its cache; list what was cached."""
    import json

    from ..data.sources import FETCHERS

    paths = FETCHERS[entry["kind"]](name, entry, Path(cache_dir))
    paths = paths if isinstance(paths, (list, tuple)) else [paths]
    write_text(manifest_path, json.dumps({"dataset": name, "kind": entry["kind"],
                                          "files": [str(p) for p in paths]}, indent=2, default=str))


def prepare_dataset(name: str, entry: dict, seed: int, volume_path: str, labels_path: str,
                    acquisitions_path: str) -> None:
    from ..data.datasets import prepare, save_prepared

    save_prepared(prepare(name, entry, seed), volume_path, labels_path, acquisitions_path)


def make_pairs(task: str, task_cfg: dict, split_cfg: dict, volume_path: str, seed: int,
               train_path: str, test_path: str, calibration_path: str, *,
               acquisitions_path: str | None = None) -> None:
    """Cut the prepared volume into train, test and calibration slices (``calibration_images``
    from the gap between train and test; both centre-cropped to ``test_crop``) and degrade them as
    the task says, or, with
    ``pairs.source: real``, pair them with the dataset's real registered acquisitions."""
    from ..data.datasets import load_volume
    from ..data.pairs import PAIR_MAKERS, centre, centre_crop_pairs, real_pairs, split_slices, spread

    pairs_cfg = task_cfg["pairs"]
    volume, _ = load_volume(volume_path)
    if pairs_cfg.get("source") == "real":
        acquisitions = load_npz(acquisitions_path) if acquisitions_path else {}

        def make(volume, z, pairs_cfg, rng):
            return real_pairs(volume, acquisitions, z, pairs_cfg, f"tasks.{task}.pairs ({volume_path})")
    elif task in PAIR_MAKERS:
        make = PAIR_MAKERS[task]
        volume = crop_to_multiple(volume, int(pairs_cfg.get("factor", 1)))
    else:
        raise ConfigError(f"tasks.{task}: no pair generator for this task (known: {sorted(PAIR_MAKERS)})")
    slices = split_slices(volume.shape[0], **split_cfg)
    test_z = spread(slices["test"], task_cfg["test_images"])
    if len(test_z) < task_cfg["test_images"]:
        warnings.warn(f"tasks.{task}.test_images: {task_cfg['test_images']} asked, but {volume_path} has only "
                      f"{len(test_z)} test slices (test_fraction {split_cfg.get('test_fraction')}, slice_step "
                      f"{split_cfg.get('slice_step')}): scoring {len(test_z)}", stacklevel=2)
    calibration_z = centre(slices["held_out"], task_cfg.get("calibration_images", 1))
    if not len(calibration_z):
        raise ConfigError(f"split.gap: {split_cfg.get('gap')} leaves no held-out slice of {volume_path} between the "
                          f"training and test ranges to calibrate the reliability threshold on "
                          f"(tasks.{task}.calibration_images); use a gap of at least split.slice_step")
    rng = np.random.default_rng(seed)
    crop, factor = task_cfg.get("test_crop"), int(pairs_cfg.get("factor", 1))
    save_npz(train_path, **make(volume, slices["train"], pairs_cfg, rng))
    save_npz(test_path, **centre_crop_pairs(make(volume, test_z, pairs_cfg, rng), crop, factor))
    # after test, so train and test draw the same noise with or without calibration images
    save_npz(calibration_path, **centre_crop_pairs(make(volume, calibration_z, pairs_cfg, rng), crop, factor))


def crop_to_multiple(volume: np.ndarray, factor: int) -> np.ndarray:
    """Crop y and x to multiples of the super-resolution factor (a coarse pixel covers factor^2)."""
    h, w = volume.shape[-2:]
    return volume[..., : h - h % factor, : w - w % factor]


def train(method: str, params: dict, pairs_path: str, seed: int, model_path: str, history_path: str,
          *, factor: int = 1, threads: int | None = None, progress: bool = True, devices: int = 1,
          predict: dict | None = None) -> None:
    """Fit a method on the training pairs.

    Training checkpoints go to ``checkpoint.pt`` beside the model, which Snakemake never
    deletes, so a killed run resumes where it stopped. ``devices`` > 1: data-parallel over that
    many GPUs (:mod:`emdiffuse.models.distributed`; gloo processes on a machine without CUDA).
    ``predict``: the config's prediction settings, stored in the model file (so that ``emdiffuse
    predict`` samples as the benchmark did) under those ``params`` give; not a training dependency.
    """
    if predict:
        params = {**params, "predict": {**predict, **params.get("predict", {})}}
    from ..data.pairs import check_pairing

    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    check_pairing(pairs["inputs"], pairs["targets"], factor, str(pairs_path))
    from ..models.distributed import run

    run(_train_rank, devices, method, params, pairs_path, seed, model_path, history_path, threads, progress)


def _train_rank(rank: int, devices: int, method: str, params: dict, pairs_path: str, seed: int, model_path: str,
                history_path: str, threads: int | None, progress: bool) -> None:
    """One process of :func:`train` (the only one on one device); rank 0 writes the outputs."""
    from ..device import seed_everything, set_threads
    from ..models.distributed import rank_device
    from ..models.registry import build_method

    set_threads(threads)
    seed_everything(seed)
    device = rank_device(rank, devices)
    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    model = build_method(method, params, device=device, seed=seed)
    model.fit(pairs["inputs"], pairs["targets"], checkpoint_path=Path(model_path).with_name("checkpoint.pt"),
              progress=progress)
    if rank == 0:
        model.save(model_path)
        model.write_history(history_path)


def predict(model_paths: list[str], pairs_paths: list[str], seed: int, out_paths: list[str], *,
            threads: int | None = None, progress: bool = True, settings: dict | None = None) -> None:
    """Restore every input of each (model, pairs) job in one process (a model's test and held-out
    calibration pairs, or the transfer variants of one method); stochastic methods also write their
    uncertainty maps. Every job gets the same seed, so variants differ only in their weights; each
    model file is loaded once. ``settings``: prediction settings over those of the model files."""
    from ..device import pick_device, seed_everything, set_threads
    from ..models.registry import load_method

    set_threads(threads)
    device, models = pick_device(), {}
    for model_path, pairs_path, out_path in zip(model_paths, pairs_paths, out_paths, strict=True):
        pairs = load_npz(pairs_path, required=PAIR_KEYS)
        if model_path not in models:
            models[model_path] = load_method(model_path, device=device)
        seed_everything(seed)
        save_npz(out_path, **models[model_path].predict(pairs["inputs"], seed=seed, progress=progress,
                                                        **(settings or {})))


def evaluate(task: str, dataset: str, predictions: dict[str, str], pairs_path: str, metrics: list[str],
             out_path: str, *, calibrations: dict[str, str]) -> None:
    """Per-image metrics of every method (``predictions``: method -> file) on one dataset; for
    stochastic methods also the reliability score and its flag, against the threshold their
    predictions of the held-out calibration images set (``calibrations``: method -> file)."""
    from ..io import atomic_path
    from ..evaluation.calibration import calibrated_threshold
    from ..reporting.tables import evaluate_images

    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    frames = []
    for method, path in predictions.items():
        pred = load_npz(path, required=("prediction",))
        threshold = None
        if "uncertainty" in pred:
            held_out = load_npz(calibrations[method], required=("prediction", "uncertainty"))
            threshold = calibrated_threshold(held_out["uncertainty"], held_out["prediction"])
            print(f"{method}: reliability threshold {threshold:.4f}, the highest score on "
                  f"{len(held_out['prediction'])} held-out image(s)")
        rows = evaluate_images(pred["prediction"], pairs["targets"], pairs["level"], pairs["level_name"], metrics,
                               task=task, dataset=dataset, method=method, uncertainty=pred.get("uncertainty"),
                               threshold=threshold)
        frames.append(rows if threshold is None else rows.assign(threshold=threshold))
    with atomic_path(out_path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


def table(task: str, metric_csvs: list[str], metrics: list[str], methods: list[str],
          budgets: dict[str, str], csv_path: str, md_path: str, *, threshold: float,
          model_paths: list[str] = (), budget: dict | None = None) -> None:
    """Summary CSV and Markdown of a task. ``budgets``: method -> what the config gave it; the
    budgets the trained models actually got are read from ``model_paths``
    (``.../{dataset}/{method}/model.pt``) into the CSV's budget columns and the Markdown, and
    ``budget`` (the config block) says how they were set."""
    from ..budget import describe_mode
    from ..io import atomic_path
    from ..reporting.tables import budget_columns, describe_trained, leads, leads_markdown, summarize, to_markdown

    rows = pd.concat([pd.read_csv(p) for p in metric_csvs], ignore_index=True)
    trained = trained_budgets(model_paths)
    summary = summarize(rows, metrics, methods)
    if model_paths:
        summary = budget_columns(summary, trained)
    sampled = rows.loc[rows["reliability"].notna(), "method"].unique() if "reliability" in rows else []
    lead = leads(rows, metrics, [m for m in methods if m in sampled])
    if len(lead):
        summary = summary.merge(lead, on=["dataset", "level", "method"], how="left")
    with atomic_path(csv_path) as tmp:
        summary.to_csv(tmp, index=False)
    budgets = {m: text + describe_trained({d: got for (d, mm), got in trained.items() if mm == m})
               for m, text in budgets.items()}
    note = describe_mode(budget) if budget is not None else None
    write_text(md_path, to_markdown(summary, metrics, title=f"{task}: restoration quality", budgets=budgets,
                                    threshold=threshold, budget_note=note, sections=leads_markdown(lead, metrics)))


def trained_budgets(model_paths: list[str]) -> dict[tuple[str, str], dict]:
    """(dataset, method) -> the budget a trained model got (:meth:`Method.budget`, stored in its
    file); the key comes from the workflow's ``results/models/{task}/{dataset}/{method}/model.pt``."""
    from ..models.lifecycle import read_checkpoint, training_budget

    out = {}
    for path in model_paths:
        ckpt = read_checkpoint(path)
        train = ckpt["params"].get("train")
        got = ckpt.get("budget")  # files from before budgets were recorded: the history and params
        if got is None and train:
            got = training_budget(ckpt["history"], train.get("batch_size"), train.get("patch"))
        out[(Path(path).parent.parent.name, Path(path).parent.name)] = got or {}
    return out


def calibration(task: str, metric_csvs: list[str], csv_path: str, md_path: str, png_path: str, *,
                error_metric: str = "LPIPS", bad_quantile: float = 0.8) -> None:
    """Does the reliability score flag the worst predictions? Per-image error against score, per
    dataset (the phantom and real EM differ in difficulty) and pooled, for the workflow's score
    (relative to the prediction's contrast, flagged above each model's calibrated threshold) and
    the paper's (flagged above its fixed 0.12).

    A prediction counts as bad when its error is in the worst ``1 - bad_quantile`` of its
    dataset's images; the table says which share of those each threshold catches.
    """
    from ..io import atomic_path
    from ..evaluation import METRICS
    from ..evaluation.calibration import PAPER_THRESHOLD, rank_correlation
    from ..reporting.plots.calibration import calibration_figure

    rows = pd.concat([pd.read_csv(p) for p in metric_csvs], ignore_index=True)
    if error_metric not in rows:
        raise ConfigError(f"tasks.{task}.metrics: the calibration needs {error_metric} per image")
    rows = rows[np.isfinite(rows[error_metric]) & rows["reliability"].notna()].copy()
    sign = -1.0 if METRICS[error_metric].higher_is_better else 1.0  # error: higher is worse
    rows["error"] = sign * rows[error_metric].to_numpy(dtype=np.float64)
    rows["bad_error"] = rows.groupby("dataset")["error"].transform(lambda e: np.quantile(e, bad_quantile))
    rows["threshold_paper"] = PAPER_THRESHOLD
    scores = {"reliability": ("score / contrast", "threshold", "unreliable"),
              "reliability_paper": ("paper score", "threshold_paper", "unreliable_paper")}
    summary = []
    for scope, group in [*rows.groupby(["dataset", "method"], sort=False), (("all", "all"), rows)]:
        bad = (group["error"] > group["bad_error"]).to_numpy()
        for column, (name, limit, flag) in scores.items():
            flagged = group[flag].astype(bool).to_numpy()
            limits = group[limit].unique()
            summary.append({"dataset": scope[0], "method": scope[1], "score": name,
                            "threshold": float(limits[0]) if len(limits) == 1 else float("nan"),
                            "n": len(group), "spearman": rank_correlation(group[column], group["error"]),
                            "score_min": float(group[column].min()), "score_max": float(group[column].max()),
                            "flagged_share": float(flagged.mean()),
                            "recall": float((flagged & bad).sum() / bad.sum()) if bad.any() else float("nan"),
                            "precision": float((flagged & bad).sum() / flagged.sum()) if flagged.any() else float("nan")})
    summary = pd.DataFrame(summary)
    with atomic_path(csv_path) as tmp:
        summary.to_csv(tmp, index=False)
    calibration_figure(png_path, (rows["reliability"] / rows["threshold"]).to_numpy(), rows["error"].to_numpy(), 1.0,
                       float(np.quantile(rows["error"], bad_quantile)),
                       labels=(rows["dataset"] + " " + rows["level_name"].astype(str)).to_numpy(),
                       error_name=error_metric if sign > 0 else f"-{error_metric}",
                       score_name="reliability score / the model's calibrated threshold")
    lines = [f"# {task}: reliability self-assessment", "",
             f"Per-image {error_metric} against two scores over the test images of each dataset: the workflow's "
             f"(99th percentile of the K-sample std map divided by the prediction's std, dimensionless; flagged above "
             f"the model's own threshold: its highest score on held-out images between the training and test "
             f"ranges, so about 1 / (n + 1) of images like those are flagged by chance and shifted or harder ones "
             f"more often) and the paper's (the 99th percentile alone in [0, 1] units, flagged above "
             f"{PAPER_THRESHOLD:g}; the paper does not say which intensity scale, the official code's [-1, 1] scale "
             f"doubles the score). Spearman: rank correlation of score and {error_metric} (higher = the score ranks "
             f"the errors); bad = {error_metric} in the worst {1 - bad_quantile:.0%} of its dataset; recall = bad "
             f"images flagged / bad images; precision = bad among the flagged.", "",
             "| dataset | method | score | n | Spearman | score range | flagged | recall | precision |",
             "|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        limit = f"{r['threshold']:.3g}" if np.isfinite(r["threshold"]) else "each model's"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['score']} (> {limit}) | {r['n']} | "
                     f"{r['spearman']:.2f} | {r['score_min']:.3f}-{r['score_max']:.3f} | {r['flagged_share']:.0%} | "
                     f"{_percent(r['recall'])} | {_percent(r['precision'])} |")
    write_text(md_path, "\n".join(lines) + "\n")


def _percent(value: float) -> str:
    return f"{value:.0%}" if np.isfinite(value) else "—"


def figure(task: str, predictions: dict[str, dict[str, str]], pairs: dict[str, str], figure_cfg: dict,
           out_path: str) -> None:
    """Input, each method and the ground truth for one test image of each dataset (one row per
    dataset: the phantom beside real EM), plus EMDiffuse's uncertainty."""
    from ..evaluation.calibration import reliability_score
    from ..reporting.plots.figures import restoration_figure

    i = figure_cfg["image"]
    rows = []
    for dataset, methods in predictions.items():
        pair = load_npz(pairs[dataset], required=PAIR_KEYS)
        if i >= len(pair["inputs"]):
            raise ConfigError(f"figure.image: {i} but the {dataset} test set has {len(pair['inputs'])} images")
        factor = pair["targets"].shape[-1] // pair["inputs"].shape[-1]
        panels = [("input" if factor == 1 else f"input (x{factor} pixel size)", pair["inputs"][i])]
        uncertainty = reliability = None
        for method, path in methods.items():
            if method == "input" and factor == 1:
                continue  # the same image as the input panel
            pred = load_npz(path, required=("prediction",))
            panels.append(("bicubic" if method == "input" else method, pred["prediction"][i]))
            if "uncertainty" in pred and uncertainty is None:
                uncertainty = pred["uncertainty"][i]
                reliability = reliability_score(uncertainty, pred["prediction"][i])
        panels.append(("ground truth", pair["targets"][i]))
        level = str(pair["level_name"][pair["level"][i]])
        rows.append({"label": f"{dataset} ({level})", "panels": panels, "uncertainty": uncertainty,
                     "reliability": reliability})
    restoration_figure(out_path, rows, inset=tuple(figure_cfg["inset"]), suptitle=f"{task}: test image {i}")


def phantom_figure(volume_paths: list[str], reference_dir: str, out_path: str) -> None:
    from ..data.datasets import load_volume
    from ..reporting.plots.phantom import load_reference_em, phantom_figure as draw

    volumes = {Path(p).parent.name: load_volume(p)[0] for p in volume_paths}
    draw(out_path, volumes, load_reference_em(reference_dir))


def realism(volume_paths: dict[str, str], kinds: dict[str, str], reference_dir: str, csv_path: str, md_path: str,
            png_path: str) -> None:
    """The realism table and figure: every dataset's prepared volume and the real reference images,
    histogram distances to the first real (non-phantom) volume (:mod:`emdiffuse.evaluation.realism`)."""
    from ..data.datasets import load_volume
    from ..io import atomic_path
    from ..reporting.plots.phantom import load_reference_em
    from ..reporting.plots.realism import realism_figure
    from ..evaluation.realism import realism_rows

    volumes = {name: (load_volume(path)[0], kinds[name]) for name, path in volume_paths.items()}
    real = [name for name, kind in kinds.items() if kind != "phantom"]
    if not real:
        raise ConfigError("realism: the config has no real (non-phantom) volume to compare the phantoms with")
    images = load_reference_em(reference_dir)
    rows = pd.DataFrame(realism_rows(volumes, images, real[0]))
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False)
    write_text(md_path, realism_markdown(rows, real[0]))
    realism_figure(png_path, {name: v for name, (v, _) in volumes.items()}, images)


def realism_markdown(rows: pd.DataFrame, reference: str) -> str:
    columns = [("std", "contrast (std)"), ("hist_w1", f"histogram W1 to {reference}"),
               ("spectrum_slope", "spectrum slope"), ("grad_mean", "mean |grad|"), ("noise_sigma", "noise sigma"),
               ("axial_corr_1", "z-corr 1"), ("axial_corr_2", "z-corr 2"), ("axial_corr_4", "z-corr 4"),
               ("axial_corr_6", "z-corr 6"), ("cubic_psnr_x4", "cubic PSNR x4 (dB)"),
               ("cubic_psnr_x6", "cubic PSNR x6 (dB)")]
    cells = [[r["data"], r["kind"], r["shape"],
              *("—" if not np.isfinite(r[c]) else f"{r[c]:.3f}" if "psnr" not in c else f"{r[c]:.1f}" for c, _ in columns)]
             for _, r in rows.iterrows()]
    lines = ["# Realism: the phantoms beside real EM", "",
             *markdown.table(["data", "kind", "shape", *(title for _, title in columns)], cells)]
    lines += ["", "Volumes as the workflow prepares them (percentile-normalised to [0, 1]); the 2D reference images "
              "normalised alike. Spectrum slope: log-log slope of the radially averaged power spectrum of XY planes "
              "over 0.04-0.25 cycles/pixel. Noise sigma: Immerkaer's estimate (the phantom is clean; a real volume's "
              "ground truth carries its detector noise). z-corr k: Pearson correlation of slices k apart. Cubic PSNR "
              "xk: cubic interpolation from sections of k slices against the slices it fills in, the isotropic "
              "task's own degradation (the phantom's 8 nm voxels make x4 sections 32 nm thick, the real volume's "
              "10 nm ones 40 nm). Logic: emdiffuse/evaluation/realism.py."]
    return "\n".join(lines) + "\n"


def timings(benchmark_dir: str, out_path: str) -> None:
    from ..reporting.timings import collect, to_markdown

    write_text(out_path, to_markdown(collect(benchmark_dir)))
