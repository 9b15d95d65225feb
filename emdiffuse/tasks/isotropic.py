"""The isotropic reconstruction task in the workflow: config helpers, the volume pairs, one function per step.

Files of a dataset (``data/pairs/isotropic/<dataset>/``):

- ``train_volume.tif`` + ``train_labels.npz``: the isotropic training volume (the z-range before
  the test range and ``split.gap``) and its label volumes;
- ``test_sections.tif``: the test z-range (the last ``test_sections * z_factor`` slices, laterally
  cropped to ``test_crop``) as thick sections (``volumes.make_anisotropic``), voxel z times z_factor;
- ``test_truth.tif`` + ``test_labels.npz``: the isotropic ground truth on
  ``volumes.output_positions`` (the slices a reconstruction covers) and its labels.

A dataset whose voxel is already anisotropic (serial-section data such as MICrONS or FANC) has
no isotropic ground truth: its last ``test_sections`` sections are the test sections as they are,
only methods that need no isotropic data (interpolation, vEMDiffuse-a) run on it, and it is
reconstructed but not scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..reporting import markdown
from ..config import ConfigError
from ..io import atomic_path, load_npz, save_npz, write_text

TASK = "isotropic"
#: a z voxel more than this many times the lateral one: the volume already consists of sections
ANISOTROPY = 1.5
#: metrics scored only on some plane orientations (the axial resolution shows in XZ/YZ)
PLANE_ONLY = {"resolution_ratio": ("xz", "yz")}
VIEWS = ("xy", "xz", "yz")


# --- config helpers (used by the plan, emdiffuse/plan/, and by check_isotropic) ---

def is_anisotropic_voxel(voxel_nm) -> bool:
    """True for serial-section data: z voxel above ``ANISOTROPY`` times the lateral one."""
    z, y, x = (float(v) for v in voxel_nm)
    return z > ANISOTROPY * max(y, x)


def is_scored(entry: dict) -> bool:
    """A dataset has an isotropic ground truth (is scored) unless its voxel is already anisotropic."""
    return not is_anisotropic_voxel(entry["voxel_nm"])


def z_factor_for(task_cfg: dict, dataset: str) -> int:
    """The dataset's axial factor: ``z_factor_by_dataset`` overrides the task's ``z_factor``."""
    return int(task_cfg.get("z_factor_by_dataset", {}).get(dataset, task_cfg["z_factor"]))


def method_entry(method: str):
    """The volume method's catalog entry (defaults, learned, training data; no torch)."""
    from ..models.catalog import VOLUME

    if method not in VOLUME:
        raise ConfigError(f"tasks.{TASK}.methods: {method!r} is not a volume method (known: {sorted(VOLUME)})")
    return VOLUME[method]


def dataset_methods(task_cfg: dict, entry: dict) -> list[str]:
    """The task's methods that can run on a dataset: on serial-section data (no isotropic volume)
    only those that learn from the sections themselves or not at all."""
    if is_scored(entry):
        return list(task_cfg["methods"])
    return [m for m in task_cfg["methods"] if method_entry(m).training_data != "isotropic"]


def learned(method: str) -> bool:
    return method_entry(method).learned


def merged_params(method: str, params: dict) -> dict:
    """The method's defaults overlaid with its config entry (errors name the config key)."""
    from ..models.catalog import merge_params

    try:
        return merge_params(method_entry(method).defaults, params, f"methods.{method}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def is_sampled(method: str, params: dict) -> bool:
    """Does prediction draw K > 1 samples (and so write an uncertainty volume)?"""
    predict = {**method_entry(method).defaults.get("predict", {}), **params.get("predict", {})}
    return int(predict.get("samples", 1)) > 1


def has_labels(entry: dict, classes: list[str]) -> bool:
    """Can the dataset's prepared labels.npz hold these classes? (phantom: always; others: by config)."""
    if entry["kind"] == "phantom":
        from ..data.phantom import LABELS

        return set(classes) <= set(LABELS)
    return set(classes) <= set(entry.get("labels", {}))


def segmented_datasets(config: dict) -> list[str]:
    """Datasets of the task that get the segmentation mIoU: scored, with the classes' labels."""
    task_cfg = config["tasks"].get(TASK, {})
    seg = task_cfg.get("segmentation")
    if not seg:
        return []
    return [d for d in task_cfg["datasets"]
            if is_scored(config["datasets"][d]) and has_labels(config["datasets"][d], seg["classes"])]


def budget(method: str, params: dict) -> str:
    """The table's budget line of a volume method (training, network and sampling)."""
    from ..reporting.tables import describe_budget

    p = merged_params(method, params)
    if not learned(method):
        return "not learned (interpolation along z)"
    data = {"isotropic": "isotropic training volume", "sections": "the test sections themselves"}
    text = describe_budget(method, {"train": p["train"], "model": p["model"], "predict": p["predict"]})
    return f"{text}; trained on {data[method_entry(method).training_data]}"


def check_isotropic(config: dict) -> None:
    """What the schema cannot say about the isotropic task: overrides name its datasets, factors
    fit serial-section voxels, method params are known keys, segmentation classes have labels."""
    task_cfg = config.get("tasks", {}).get(TASK)
    if not task_cfg:
        return
    where = f"tasks.{TASK}"
    for name in task_cfg.get("z_factor_by_dataset", {}):
        if name not in task_cfg["datasets"]:
            raise ConfigError(f"{where}.z_factor_by_dataset names '{name}', which is not in {where}.datasets")
    for name in task_cfg["datasets"]:
        entry, z = config["datasets"][name], z_factor_for(task_cfg, name)
        if not is_scored(entry):
            vz, vy, vx = (float(v) for v in entry["voxel_nm"])
            if abs(vz / z - max(vy, vx)) > 0.15 * max(vy, vx):  # 30 nm sections x4: 7.5 nm slices from 10 nm pixels
                key = (f"{where}.z_factor_by_dataset.{name}" if name in task_cfg.get("z_factor_by_dataset", {})
                       else f"{where}.z_factor (for {name}; override per dataset in {where}.z_factor_by_dataset)")
                raise ConfigError(
                    f"{key}: {z} turns {vz:g} nm sections into {vz / z:g} nm slices, "
                    f"far from the {max(vy, vx):g} nm lateral pixel (datasets.{name}.voxel_nm); set the factor "
                    f"to about {round(vz / max(vy, vx))}")
            if not dataset_methods(task_cfg, entry):
                raise ConfigError(f"{where}.methods: none can run on serial-section dataset '{name}'")
        if "resolution_ratio" in task_cfg.get("metrics", []) and is_scored(entry):
            _check_depth_for_resolution(where, task_cfg["test_sections"], z, name)
    for method in task_cfg["methods"]:
        merged_params(method, config["methods"].get(method, {}))
    seg = task_cfg.get("segmentation")
    if seg:
        for name in task_cfg["datasets"]:
            entry = config["datasets"][name]
            if is_scored(entry) and entry["kind"] != "phantom" and entry.get("labels") and not has_labels(entry, seg["classes"]):
                raise ConfigError(f"{where}.segmentation.classes: {seg['classes']} but datasets.{name}.labels "
                                  f"has {sorted(entry['labels'])}")


def _check_depth_for_resolution(where: str, sections: int, z: int, name: str) -> None:
    """XZ/YZ planes are as tall as the reconstruction is deep; the resolution ratio's decorrelation
    analysis needs more rows than its apodisation border takes (found before any job runs)."""
    from ..evaluation.resolution import APODISATION_PIXELS
    from ..models.volumes import output_positions

    depth = len(output_positions(sections, z))
    if depth <= 2 * APODISATION_PIXELS:
        need = next(n for n in range(sections, 10 * sections + 20) if len(output_positions(n, z)) > 2 * APODISATION_PIXELS)
        raise ConfigError(f"{where}.test_sections: {sections} sections x{z} ({name}) reconstruct {depth} slices, too few "
                          f"for the resolution ratio on XZ/YZ planes (more than {2 * APODISATION_PIXELS} needed): use "
                          f">= {need}, or drop resolution_ratio from {where}.metrics")


# --- pairs ---------------------------------------------------------------------------------------

def centre_crop(volume: np.ndarray, crop: tuple[int, int] | None, where: str) -> np.ndarray:
    """The centred lateral (y, x) crop of a (z, y, x) array; None keeps the whole plane."""
    if crop is None:
        return volume
    (h, w), (ch, cw) = volume.shape[1:], crop
    if ch > h or cw > w:
        raise ConfigError(f"{where}: crop {ch}x{cw} is larger than the volume's {h}x{w} planes")
    y, x = (h - ch) // 2, (w - cw) // 2
    return volume[:, y : y + ch, x : x + cw]


def volume_pairs(volume: np.ndarray, labels: dict[str, np.ndarray], voxel_nm, *, z_factor: int,
                 test_sections: int, gap: int, test_crop=None) -> dict:
    """The task's arrays from a prepared volume (module docstring); ``train_range``/``test_range`` are
    the z-ranges (start, stop) of the prepared volume each comes from.

    Serial-section data (anisotropic ``voxel_nm``) gives only ``sections`` (its last ones)."""
    from ..models.volumes import isotropic_voxel, make_anisotropic, output_positions

    where = f"tasks.{TASK}"
    depth, t, z = volume.shape[0], int(test_sections), int(z_factor)
    voxel = tuple(float(v) for v in voxel_nm)
    if is_anisotropic_voxel(voxel):
        if depth < 2:
            raise ConfigError(f"{where}: a serial-section volume needs at least 2 sections, got {depth}")
        start = max(depth - t, 0)
        return {"sections": centre_crop(volume[start:], test_crop, f"{where}.test_crop"),
                "sections_voxel": voxel, "test_range": (start, depth)}
    test_start = depth - t * z
    train_stop = test_start - gap
    if train_stop < 2 * z:
        raise ConfigError(
            f"{where}.test_sections: {t} sections of {z} slices plus split.gap {gap} leave {max(train_stop, 0)} "
            f"of the volume's {depth} slices for training; at least {2 * z} are needed")
    crop = lambda a: centre_crop(a[test_start:], test_crop, f"{where}.test_crop")  # noqa: E731
    q = output_positions(t, z)
    test = crop(volume)
    return {
        "train": volume[:train_stop], "train_labels": {k: v[:train_stop] for k, v in labels.items()},
        "sections": make_anisotropic(test, z), "sections_voxel": (voxel[0] * z, *voxel[1:]),
        "truth": test[q], "truth_labels": {k: crop(v)[q] for k, v in labels.items()},
        "voxel": isotropic_voxel((voxel[0] * z, *voxel[1:]), z),
        "train_range": (0, train_stop), "test_range": (test_start, depth),
    }


def make_volume_pairs(volume_path: str, labels_path: str | None, *, z_factor: int, test_sections: int, gap: int,
                      test_crop, sections_path: str, train_path: str | None = None,
                      train_labels_path: str | None = None, truth_path: str | None = None,
                      truth_labels_path: str | None = None) -> None:
    """Write the task's files for one dataset (serial-section data: only the sections)."""
    from ..models.volumes import read_volume, write_volume

    volume, voxel = read_volume(volume_path)
    if voxel is None:
        raise ValueError(f"{volume_path}: no voxel size in the file")
    labels = load_npz(labels_path) if labels_path else {}
    pairs = volume_pairs(volume, labels, voxel, z_factor=z_factor, test_sections=test_sections, gap=gap,
                         test_crop=tuple(test_crop) if test_crop else None)
    if ("truth" in pairs) != (truth_path is not None):
        raise ValueError(f"{volume_path}: voxel {voxel} is {'isotropic' if 'truth' in pairs else 'anisotropic'}, "
                         "which does not match the outputs requested (config voxel_nm and the file disagree?)")
    write_volume(sections_path, pairs["sections"], pairs["sections_voxel"])
    if truth_path is not None:
        write_volume(train_path, pairs["train"], voxel)
        save_npz(train_labels_path, **pairs["train_labels"])
        write_volume(truth_path, pairs["truth"], pairs["voxel"])
        save_npz(truth_labels_path, **pairs["truth_labels"])
    print(f"{volume_path}: train z {pairs.get('train_range')}, test z {pairs['test_range']}, "
          f"sections {pairs['sections'].shape} at {pairs['sections_voxel']} nm")


# --- train / predict -------------------------------------------------------------------------------

def train_volume(method: str, params: dict, z_factor: int, volume_path: str, seed: int, model_path: str,
                 history_path: str, *, predict: dict | None = None, threads: int | None = None,
                 progress: bool = True, devices: int = 1) -> None:
    """Fit a learned volume method on its one training file (isotropic volume or the test sections);
    checkpoints go beside the model so a killed run resumes. ``predict``: the config's prediction
    settings, stored in the model file so that ``emdiffuse predict`` samples as the benchmark did
    (not a training dependency: the workflow passes them outside the rule's params). ``devices`` > 1:
    data-parallel over that many GPUs (:mod:`emdiffuse.models.distributed`; gloo processes without CUDA)."""
    from ..models.distributed import run

    run(_train_volume_rank, devices, method, {**params, "predict": predict or {}}, z_factor, volume_path, seed,
        model_path, history_path, threads, progress)


def _train_volume_rank(rank: int, devices: int, method: str, params: dict, z_factor: int, volume_path: str,
                       seed: int, model_path: str, history_path: str, threads: int | None, progress: bool) -> None:
    """One process of :func:`train_volume` (the only one on one device); rank 0 writes the outputs."""
    from ..device import seed_everything, set_threads
    from ..models.distributed import rank_device
    from ..models.volume_methods import build_volume_method
    from ..models.volumes import read_volume

    set_threads(threads)
    seed_everything(seed)
    volume, _ = read_volume(volume_path)
    model = build_volume_method(method, params, z_factor=z_factor, device=rank_device(rank, devices), seed=seed)
    model.fit(volume, checkpoint_path=Path(model_path).with_name("checkpoint.pt"), progress=progress)
    if rank == 0:
        model.save(model_path)
        model.write_history(history_path)


def load_for_prediction(method: str, params: dict, z_factor: int, model_path: str | None, seed: int):
    """The fitted method (built, for one that does not learn) and the config's ``predict`` settings
    to predict with: those of the config, not the model file's (so they never need retraining)."""
    from ..device import pick_device
    from ..models.catalog import merge_params
    from ..models.volume_methods import build_volume_method, load_volume_method

    settings = merge_params(method_entry(method).defaults.get("predict", {}), params.get("predict", {}),
                            f"methods.{method}.predict")
    if model_path is None:
        return build_volume_method(method, params, z_factor=z_factor, device=pick_device(), seed=seed), settings
    model = load_volume_method(model_path, device=pick_device())
    if model.name != method or model.z_factor != z_factor:
        raise ValueError(f"{model_path}: holds {model.name} for z_factor {model.z_factor}, "
                         f"expected {method} for z_factor {z_factor}")
    return model, settings


def predict_volume(method: str, params: dict, z_factor: int, model_path: str | None, sections_path: str,
                   seed: int, out_path: str, uncertainty_path: str | None = None, *,
                   threads: int | None = None, progress: bool = True) -> None:
    """Reconstruct the test sections; TIFFs with the isotropic voxel size (and the K-sample std)."""
    from ..device import seed_everything, set_threads
    from ..models.volumes import isotropic_voxel, read_volume, write_volume

    set_threads(threads)
    seed_everything(seed)
    sections, voxel = read_volume(sections_path)
    model, settings = load_for_prediction(method, params, z_factor, model_path, seed)
    print(f"{method}: predicting with {settings}")
    out = model.predict(sections, seed=seed, progress=progress, **settings)
    if ("uncertainty" in out) != (uncertainty_path is not None):
        raise ValueError(f"{method}: prediction {'has' if 'uncertainty' in out else 'has no'} uncertainty "
                         f"but the rule {'did not ask for' if uncertainty_path is None else 'asked for'} one")
    iso = isotropic_voxel(voxel, z_factor) if voxel is not None else None
    write_volume(out_path, out["prediction"], iso)
    if uncertainty_path is not None:
        write_volume(uncertainty_path, out["uncertainty"], iso)


def stretch_nearest(sections: np.ndarray, z_factor: int) -> np.ndarray:
    """The sections on the reconstruction grid by nearest neighbour along z: what the acquisition
    shows before any reconstruction (each section repeated over the slices closest to it)."""
    from ..models.volumes import output_positions, section_positions

    q = output_positions(len(sections), z_factor)
    p = section_positions(len(sections), z_factor)
    k = np.clip(np.round((q - p[0]) / z_factor).astype(int), 0, len(sections) - 1)
    return np.asarray(sections)[k]


# --- evaluation ------------------------------------------------------------------------------------

def plane_metrics(metrics: list[str], view: str) -> list[str]:
    return [m for m in metrics if view in PLANE_ONLY.get(m, VIEWS)]


def evaluate_planes(prediction: np.ndarray, truth: np.ndarray, metrics: list[str], planes_per_view: int, *,
                    dataset: str, method: str, uncertainty: np.ndarray | None = None,
                    threshold: float = 0.12) -> pd.DataFrame:
    """One row per scored plane of each view (XY, XZ, YZ; ``planes_per_view`` spread evenly), with
    the view's metrics (``PLANE_ONLY``); ``level_name`` is the view and ``image`` the plane index."""
    from ..data.pairs import spread
    from ..reporting.tables import evaluate_images
    from ..models.volumes import plane_views

    if prediction.shape != truth.shape:
        raise ValueError(f"{method}: reconstruction {prediction.shape} and ground truth {truth.shape} differ in shape")
    pred_v, truth_v = plane_views(prediction), plane_views(truth)
    unc_v = plane_views(uncertainty) if uncertainty is not None else {}
    frames = []
    for view in VIEWS:
        idx = spread(np.arange(len(truth_v[view])), planes_per_view)
        rows = evaluate_images(pred_v[view][idx], truth_v[view][idx], np.zeros(len(idx), int), np.array([view]),
                               plane_metrics(metrics, view), task=TASK, dataset=dataset, method=method,
                               uncertainty=unc_v[view][idx] if view in unc_v else None, threshold=threshold)
        frames.append(rows.assign(image=idx))
    return pd.concat(frames, ignore_index=True)


def evaluate_volumes(dataset: str, predictions: dict[str, str], truth_path: str, metrics: list[str],
                     planes_per_view: int, out_path: str, *, uncertainties: dict[str, str] | None = None,
                     threshold: float = 0.12) -> None:
    """Every method's reconstruction of one dataset (``predictions``: method -> TIFF; ``uncertainties``
    for the sampled ones) scored plane by plane into one CSV: one job per dataset, since the metric
    imports cost more than scoring one volume."""
    from ..models.volumes import read_volume

    truth, uncertainties = read_volume(truth_path)[0], uncertainties or {}
    frames = []
    for method, path in predictions.items():
        uncertainty = read_volume(uncertainties[method])[0] if method in uncertainties else None
        frames.append(evaluate_planes(read_volume(path)[0], truth, metrics, planes_per_view, dataset=dataset,
                                      method=method, uncertainty=uncertainty, threshold=threshold))
    with atomic_path(out_path) as tmp:
        pd.concat(frames, ignore_index=True).to_csv(tmp, index=False)


def summarize_planes(rows: pd.DataFrame, metrics: list[str], methods: list[str]) -> pd.DataFrame:
    """``tables.summarize`` per (dataset, plane, method); planes are not pooled."""
    from ..reporting.tables import summarize

    table = summarize(rows, metrics, methods)  # planes in the order of the rows: xy, xz, yz
    return table[table["level"] != "all"].rename(columns={"level": "plane"}).reset_index(drop=True)


def references(rows: pd.DataFrame) -> dict[str, str]:
    """Per dataset, the method a learned one must beat: the interpolation (not learned) with the highest
    mean PSNR over the scored planes (cubic, where configured); datasets without one are left out."""
    refs = {}
    for dataset, frame in rows.groupby("dataset", sort=False):
        fixed = frame[~frame["method"].map(learned)]
        if len(fixed):
            by = "PSNR" if "PSNR" in fixed and fixed["PSNR"].notna().any() else None
            refs[dataset] = (fixed.groupby("method")[by].mean().idxmax() if by else fixed["method"].iloc[-1])
    return refs


def paired_with_reference(rows: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each learned method's gain over its dataset's reference (``references``) per plane and metric,
    paired plane by plane (``tables.paired_gain``): columns ``<metric>_gain`` (mean, positive = better),
    ``_gain_ci_low``/``_gain_ci_high`` (bootstrap 95%), ``_gain_wins`` of ``_gain_n`` planes."""
    from ..reporting.tables import gain_columns, paired_gain

    records = []
    for dataset, reference in references(rows).items():
        frame = rows[rows["dataset"] == dataset]
        for (plane, method), _ in frame.groupby(["level_name", "method"], sort=False):
            if learned(method):
                rec = {"dataset": dataset, "plane": plane, "method": method, "reference": reference}
                for m in plane_metrics(metrics, plane):
                    rec.update(gain_columns(m, paired_gain(frame[frame["level_name"] == plane], m, method, reference)))
                records.append(rec)
    return pd.DataFrame(records) if records else pd.DataFrame(columns=["dataset", "plane", "method", "reference"])


def _paired_markdown(paired: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The paired comparison's section: one row per learned method and plane, a gain cell per metric."""
    from ..reporting.tables import gain_cell, gain_from_columns

    if paired.empty:
        return []
    header = ["dataset", "plane", "method", "vs"] + [f"{m} gain" for m in metrics]
    rows = []
    for _, r in paired.iterrows():
        cells = [r["dataset"], r["plane"].upper(), r["method"], r["reference"]]
        for m in metrics:
            scored = m in plane_metrics(metrics, r["plane"])
            cells.append(gain_cell(gain_from_columns(r, m)) if scored else "n/a")
        rows.append(cells)
    return ["", "## Paired with the strongest interpolation", "",
            "Gain of each learned method over the interpolation with the highest PSNR, on the same planes "
            "(positive = better, in the metric's units; resolution_ratio: closer to 1): mean [bootstrap 95% CI of the "
            "plane-by-plane gain] planes won / planes; better or worse where the CI excludes 0, else tie. Pairing "
            "removes the planes' shared difficulty, so these intervals are narrower than the table's.",
            "", *markdown.table(header, rows)]


def _best(metric: str, values: pd.Series) -> float:
    from ..evaluation import METRICS

    finite = values[np.isfinite(values.to_numpy(dtype=np.float64))]
    return METRICS[metric].best(finite) if len(finite) else float("nan")


def planes_markdown(table: pd.DataFrame, metrics: list[str], *, budgets: dict[str, str], factors: dict[str, str],
                    unscored: dict[str, str], threshold: float, paired: pd.DataFrame | None = None) -> str:
    """mean ± std [95% CI] per metric and plane, best learned-or-not method per block in bold; then
    the learned methods' paired gains over the strongest interpolation (``paired_with_reference``)."""
    from ..evaluation import METRICS
    from ..evaluation.calibration import PAPER_THRESHOLD
    from ..reporting.tables import metric_cell, reliability_cells, reliability_columns

    reliability = "reliability_mean" in table
    header = ["dataset", "plane", "method", "n"] + [f"{m} {METRICS[m].arrow}" for m in metrics]
    flags = reliability_columns(table)
    header += [h for h, _, _ in flags]
    rows = []
    for (_, plane), block in table.groupby(["dataset", "plane"], sort=False):
        scored = plane_metrics(metrics, plane)
        best = {m: _best(m, block[f"{m}_mean"]) for m in scored}
        for _, r in block.iterrows():
            cells = [r["dataset"], plane.upper(), r["method"], str(int(r["n"]))]
            cells += [metric_cell(r, m, best[m]) if m in scored else "n/a" for m in metrics]
            rows.append(cells + reliability_cells(r, flags))
    lines = [f"# {TASK}: reconstruction quality per plane", "", *markdown.table(header, rows)]
    lines += ["", "Mean ± std [bootstrap 95% CI of the mean] over the scored planes of the test volume (n per view,",
              "spread evenly); bold: best method. n/a: " + ", ".join(f"{m} is scored on {'/'.join(v).upper()} only"
                                                                 for m, v in PLANE_ONLY.items() if m in metrics) + "."]
    if reliability:
        lines += [f"Reliability: 99th percentile of the K-sample std map per plane divided by the plane's std (its "
                  f"contrast); (flagged): above {threshold:g}. Paper score: the 99th percentile alone ([0, 1] units), "
                  f"flagged above the paper's {PAPER_THRESHOLD:g}."]
    if paired is not None:
        lines += _paired_markdown(paired, metrics)
    lines += ["", "Axial factors (sections -> isotropic slices):", ""]
    lines += [f"- **{d}**: {text}" for d, text in factors.items()]
    if unscored:
        lines += ["", "Reconstructed but not scored (serial-section data, no isotropic ground truth):", ""]
        lines += [f"- **{d}**: {text}" for d, text in unscored.items()]
    lines += ["", "Budgets:", ""]
    lines += [f"- **{method}**: {text}" for method, text in budgets.items()]
    return "\n".join(lines) + "\n"


def isotropic_table(metric_csvs: list[str], metrics: list[str], methods: list[str], budgets: dict[str, str],
                    factors: dict[str, str], unscored: dict[str, str], csv_path: str, md_path: str, *,
                    threshold: float) -> None:
    rows = pd.concat([pd.read_csv(p) for p in metric_csvs], ignore_index=True)
    table, paired = summarize_planes(rows, metrics, methods), paired_with_reference(rows, metrics)
    with atomic_path(csv_path) as tmp:
        table.merge(paired, on=["dataset", "plane", "method"], how="left").to_csv(tmp, index=False)
    write_text(md_path, planes_markdown(table, metrics, budgets=budgets, factors=factors, unscored=unscored,
                                        threshold=threshold, paired=paired))


def isotropic_figure(sections_path: str, truth_path: str | None, predictions: dict[str, str],
                     uncertainties: dict[str, str], z_factor: int, dataset: str, out_path: str) -> None:
    """XZ and YZ views through the middle of the test volume: ground truth, the sections stretched
    by nearest neighbour, every reconstruction, and the K-sample uncertainty of stochastic methods."""
    from ..reporting.plots.isotropic import reconstruction_figure
    from ..models.volumes import read_volume

    sections, voxel = read_volume(sections_path)
    panels = [("ground truth", read_volume(truth_path)[0])] if truth_path else []
    panels.append((f"anisotropic input (x{z_factor}, nearest)", stretch_nearest(sections, z_factor)))
    panels += [(method, read_volume(path)[0]) for method, path in predictions.items()]
    spread_maps = [(f"{method} uncertainty", read_volume(path)[0]) for method, path in uncertainties.items()]
    z_nm = f", sections {voxel[0]:g} nm" if voxel else ""
    reconstruction_figure(out_path, panels, spread_maps,
                          suptitle=f"{TASK}: {dataset}, x{z_factor} axial factor{z_nm}")
