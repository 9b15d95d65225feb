"""Quality versus sampling steps (config ``sampling_study``).

One trained model, a subset of its test set, every sampler x number of steps at one seed (every
setting starts from the same noise, so differences are the sampler's, not the draw's), scored with
the table metrics and timed (seconds of sampling per megapixel of output, K samples included). The
reference is the first sampler at its most steps; a setting *matches* it when it is worse by at
most a tolerance (issue: LPIPS 0.01, FSIM 0.005). Every chain starts from pure noise (official);
the default sampler also starts from the degraded input (``diffusion.INITS``) wherever its chain
starts above alpha_bar 0.01, and runs its configured setting at the other network precision
(bf16 vs fp32).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ...reporting import markdown
from ...config import ConfigError
from ...io import atomic_path, load_npz, write_text
from ...data.pairs import PAIR_KEYS
from ...models.patches import pair_scale

SUMMARY_KEYS = ["sampler", "init", "steps", "precision"]


INIT_MIN_ALPHA_BAR = 0.01  # init "condition" runs only where the chain starts above this


DEFAULT_TOLERANCE = {"LPIPS": 0.01, "FSIM": 0.005}  # issue 3: "LPIPS within 0.01, FSIM within 0.005"


def sampling_settings(sampler: str, steps: list[int], limit: int | None, default: dict,
                      start_alpha_bar) -> tuple[list[dict], list[int]]:
    """The (sampler, init, steps, precision) settings one sampler runs, and the step counts it cannot take.

    Every step count runs from pure noise (init "noise", official) at the configured precision. The
    configured (default) sampler also runs init "condition" wherever its chain starts above
    ``INIT_MIN_ALPHA_BAR`` (``start_alpha_bar(steps)``; below it both starts are pure noise in
    effect), and its configured steps and init at the other precision, so the table shows what bf16
    costs. ``limit`` is the sampler's most steps (None: any; see ``ConditionalDiffusion.max_steps``).
    """
    precision = default["precision"]
    runnable = [int(n) for n in steps if limit is None or n <= limit]
    settings = [{"sampler": sampler, "init": "noise", "steps": n, "precision": precision} for n in runnable]
    if sampler == default["sampler"]:
        settings += [{"sampler": sampler, "init": "condition", "steps": n, "precision": precision}
                     for n in runnable if start_alpha_bar(n) > INIT_MIN_ALPHA_BAR]
        for p in (precision, "fp32" if precision == "bf16" else "bf16"):
            extra = {"sampler": sampler, "init": default["init"], "steps": int(default["steps"]), "precision": p}
            if extra not in settings:
                settings.append(extra)
    return settings, [int(n) for n in steps if limit is not None and n > limit]


def sampling_rows(method, subset: dict, settings: list[dict], *, samples: int, seed: int, metrics: list[str],
                  task: str, dataset: str, progress: bool = True) -> pd.DataFrame:
    """Sample the subset under each setting and score it: one row per (setting, image).

    All subset images go through the sampler as one batch, as tiles do in prediction
    (``EMDiffuseMethod.sample_tiles``), from one generator seeded with ``seed`` per setting, so every
    setting starts from the same noise. ``seconds`` is the wall time of the setting (all images, K
    samples), ``s_per_mpix`` that time per megapixel of output. An untimed one-step run first pays
    the one-off costs.
    """
    import torch

    from ...models.methods import upsample
    from ...reporting.tables import evaluate_images

    targets = subset["targets"]
    tiles = torch.from_numpy(np.ascontiguousarray(upsample(subset["inputs"], method.scale, "bilinear")))[:, None]

    def run(setting: dict) -> np.ndarray:
        settings = method.predict_settings({**setting, "samples": int(samples), "difficulty": False})
        with torch.inference_mode():
            out = method.sample_tiles(tiles, torch.Generator().manual_seed(int(seed)), settings)
        return out[:, 0].clamp(0, 1).cpu().numpy()

    run(dict(settings[0], steps=1))  # warm-up
    frames = []
    for setting in tqdm(settings, desc=f"{settings[0]['sampler']} settings", disable=not progress):
        start = time.perf_counter()
        prediction = run(setting)
        seconds = time.perf_counter() - start
        rows = evaluate_images(prediction, targets, subset["level"], subset["level_name"], metrics,
                               task=task, dataset=dataset, method=method.name)
        frames.append(rows.assign(image=subset["index"], **setting, samples=int(samples), seconds=seconds,
                                  megapixels=targets.size / 1e6, s_per_mpix=seconds / (targets.size / 1e6)))
    return pd.concat(frames, ignore_index=True)


def skipped_rows(sampler: str, skipped: list[int], limit: int | None) -> pd.DataFrame:
    """Rows naming the step counts a sampler cannot take, so the table says why they are missing."""
    note = f"not run: {sampler} takes at most {limit} distinct steps inside the trained noise range"
    return pd.DataFrame([{"sampler": sampler, "steps": n, "note": note} for n in skipped],
                        columns=["sampler", "steps", "note"])


def sampling_summary(rows: pd.DataFrame, metrics: list[str], *, tolerance: dict[str, float]) -> tuple[pd.DataFrame, dict]:
    """Mean per setting, the difference to the reference and whether it matches it.

    The reference is the first sampler of ``rows`` at its most steps, at the precision and init most
    of its rows use. A setting matches when no toleranced metric is worse than the reference's by more
    than its tolerance (better is fine). Returns the table and the reference setting.
    """
    from ...evaluation import METRICS

    run = rows[rows["note"].isna()] if "note" in rows else rows
    first = run[run["sampler"] == run["sampler"].iloc[0]]
    reference = {"sampler": first["sampler"].iloc[0], "init": first["init"].mode().iloc[0],
                 "steps": int(first["steps"].max()), "precision": first["precision"].mode().iloc[0]}
    records = []
    for key, group in run.groupby(SUMMARY_KEYS, sort=False):
        rec = dict(zip(SUMMARY_KEYS, key), n=len(group), samples=int(group["samples"].iloc[0]),
                   seconds=float(group["seconds"].iloc[0]), s_per_mpix=float(group["s_per_mpix"].iloc[0]))
        for m in metrics:
            rec[f"{m}_mean"], rec[f"{m}_std"] = group[m].mean(), group[m].std(ddof=1) if len(group) > 1 else 0.0
        records.append(rec)
    table = pd.DataFrame(records)
    ref = table[(table[SUMMARY_KEYS] == pd.Series(reference)).all(axis=1)].iloc[0]
    matches = np.ones(len(table), bool)
    for m in metrics:
        table[f"{m}_delta"] = table[f"{m}_mean"] - ref[f"{m}_mean"]
        if m in tolerance:
            worse = -table[f"{m}_delta"] if METRICS[m].higher_is_better else table[f"{m}_delta"]
            matches &= (worse <= tolerance[m] + 1e-12).to_numpy()
    table["matches_reference"] = matches
    table["is_reference"] = (table[SUMMARY_KEYS] == pd.Series(reference)).all(axis=1)
    if "note" in rows:
        notes = rows[rows["note"].notna()][["sampler", "steps", "note"]].drop_duplicates()
        table = pd.concat([table, notes], ignore_index=True)
        table[["matches_reference", "is_reference"]] = table[["matches_reference", "is_reference"]].fillna(False)
    order = {s: i for i, s in enumerate(dict.fromkeys(rows["sampler"]))}
    other_init = table["init"].notna() & (table["init"] != reference["init"])
    other_precision = table["precision"].notna() & (table["precision"] != reference["precision"])
    table = table.assign(_s=table["sampler"].map(order), _i=other_init, _p=other_precision)
    table = table.sort_values(["_s", "_i", "_p", "steps"], ascending=[True, True, True, False])
    table = table.drop(columns=["_s", "_i", "_p"])
    return table.reset_index(drop=True), reference


def sampling_markdown(table: pd.DataFrame, reference: dict, metrics: list[str], *, tolerance: dict[str, float],
                      about: dict) -> str:
    """The quality-versus-steps table, the reference named, matching settings marked, caveats stated."""
    from ...evaluation import METRICS

    ref_name = f"{reference['sampler']}, {reference['steps']} steps ({reference['precision']}, init {reference['init']})"
    tol = ", ".join(f"{m} {t:g}" for m, t in tolerance.items())
    lines = [f"# Quality versus sampling steps: {about.get('method', 'emdiffuse')}, {about['task']} / {about['dataset']}", "",
             f"Model `{about['model']}`; {about['images']} test images (indices {about['index']}), centre crop "
             f"{about['crop']} px, K = {about['samples']} sample(s) per image, seed {about['seed']} (the same initial "
             f"noise for every setting). Reference: **{ref_name}**" + (
                 ", the official sampler at its documented length." if (reference["sampler"], reference["steps"])
                 == ("ancestral", 1000) else " (the first configured sampler at its most steps)."),
             "", f"✓: within the tolerance of the reference ({tol}; worse by at most that much, better is fine).",
             "", "init: how each chain starts: `noise` (pure noise, official) or `condition` (the degraded input "
             "noised to the chain's first level, as in Come-Closer-Diffuse-Faster); the official ancestral chain "
             "at N steps starts at alpha_bar 0.39 (N = 20), 0.10 (50), ~0 (200, 1000).",
             "", "Degraded input on the same crops (no restoration): "
             + ", ".join(f"{m} {v:.4f}" for m, v in about["input"].items()) + ".", ""]
    header = ["sampler", "init", "steps", "precision"] + [f"{m} {METRICS[m].arrow}" for m in metrics]
    header += [f"Δ{m}" for m in tolerance] + ["s/Mpx", "≈ ref"]
    rows = []
    for _, r in table.iterrows():
        if isinstance(r.get("note"), str):
            rows.append([r["sampler"], "—", str(int(r["steps"])), "—", *["—"] * (len(header) - 5), r["note"]])
            continue
        cells = [r["sampler"], r["init"], str(int(r["steps"])), r["precision"]]
        cells += [f"{r[f'{m}_mean']:.4f} ± {r[f'{m}_std']:.4f}" for m in metrics]
        cells += [f"{r[f'{m}_delta']:+.4f}" for m in tolerance]
        cells += [f"{r['s_per_mpix']:.1f}", "reference" if r["is_reference"] else "✓" if r["matches_reference"] else ""]
        rows.append(cells)
    lines += markdown.table(header, rows)
    lines += ["", *_sampling_findings(table, reference, metrics, about["input"]), "",
              "The images are a subset of the test set sized for the CPU budget (config `sampling_study`). Mean ± std "
              "over them; the ancestral sampler is stochastic, so with few images and small K its rows are single "
              "random draws and differences within the ± std are sampling noise. s/Mpx: wall time of the sampling "
              "(all K samples, network and "
              f"sampler) per megapixel of output on {about['threads']} thread(s), measured inside the job while other "
              "workflow jobs may run beside it: timings depend on machine load and are comparable within one run "
              "only. Every sampler's step takes one network evaluation, so time scales with steps."]
    return "\n".join(lines) + "\n"


def _sampling_findings(table: pd.DataFrame, reference: dict, metrics: list[str],
                       input_means: dict[str, float]) -> list[str]:
    """Plain-language lines: the fastest matching setting per sampler, what bf16 costs, and whether
    the reference itself is a good yardstick (beaten by shorter chains, or by the degraded input)."""
    from ...evaluation import METRICS

    run = table[table["note"].isna()] if "note" in table else table
    lines = []
    is_ref = run["is_reference"].astype(bool)
    ref = run[is_ref].iloc[0]

    def better(row, m, value):
        return row[f"{m}_mean"] > value if METRICS[m].higher_is_better else row[f"{m}_mean"] < value

    beats = [f"{r['sampler']} {int(r['steps'])} ({r['precision']}, init {r['init']})" for _, r in run[~is_ref].iterrows()
             if all(better(r, m, ref[f"{m}_mean"]) for m in metrics)]
    if beats:
        lines.append(f"- the reference is worse on every metric than: {', '.join(beats)}; 'within tolerance of the "
                     "reference' is then a weak test of quality")
    below = [m for m in metrics if not better(ref, m, input_means[m])]
    if below:
        lines.append(f"- the reference does not beat the degraded input on {', '.join(below)}")
    for (sampler, init), group in run[run["precision"] == reference["precision"]].groupby(["sampler", "init"],
                                                                                          sort=False):
        ok = group[group["matches_reference"] & ~group["is_reference"]]
        lines.append(f"- {sampler}, init {init}: " + (
            f"fewest steps within tolerance: {int(ok['steps'].min())}" if len(ok)
            else "no setting with fewer steps is within tolerance of the reference"))
    pairs = run.groupby(["sampler", "init", "steps"]).filter(lambda g: set(g["precision"]) == {"bf16", "fp32"})
    for (sampler, init, steps), g in pairs.groupby(["sampler", "init", "steps"], sort=False):
        bf, fp = g[g["precision"] == "bf16"].iloc[0], g[g["precision"] == "fp32"].iloc[0]
        deltas = ", ".join(f"{m} {bf[f'{m}_mean'] - fp[f'{m}_mean']:+.4f}" for m in metrics)
        lines.append(f"- precision, {sampler} {int(steps)} steps: bf16 - fp32 = {deltas}; time "
                     f"{bf['s_per_mpix'] / fp['s_per_mpix']:.2f}x of fp32")
    same = run[run["precision"] == reference["precision"]]
    inits = same.groupby(["sampler", "steps"]).filter(lambda g: g["init"].nunique() == 2)
    for (sampler, steps), g in inits.groupby(["sampler", "steps"], sort=False):
        cond, noise = g[g["init"] == "condition"].iloc[0], g[g["init"] == "noise"].iloc[0]
        deltas = ", ".join(f"{m} {cond[f'{m}_mean'] - noise[f'{m}_mean']:+.4f}" for m in metrics)
        lines.append(f"- init, {sampler} {int(steps)} steps: condition - noise = {deltas}")
    return lines


def sampling_run(model_path: str, subset_path: str, sampler: str, study: dict, seed: int, out_path: str, *,
                 task: str, dataset: str, threads: int | None = None, progress: bool = True,
                 settings: dict | None = None) -> None:
    """One sampler's rows of the quality-versus-steps table (every configured step count);
    ``settings``: the config's prediction settings of the model (its configured sampler), over the
    model file's."""
    import torch

    from ...device import pick_device, set_threads
    from ...models.diffusion import resolve_precision
    from ...models.registry import load_method

    set_threads(threads)
    method = load_method(model_path, device=pick_device())
    subset = load_npz(subset_path, required=PAIR_KEYS + ("index",))
    if subset["targets"].shape[-1] % method.multiple:
        raise ConfigError(f"sampling_study.crop: {subset['targets'].shape[-1]} must be a multiple of {method.multiple}")
    limit = method.diffusion.max_steps(sampler)
    configured = method.predict_settings(settings)
    configured = {**configured, "precision": resolve_precision(configured["precision"], method.device)}
    settings, skipped = sampling_settings(sampler, study["steps"], limit, configured,
                                          lambda n: method.diffusion.start_alpha_bar(sampler, n))
    rows = sampling_rows(method, subset, settings, samples=study["samples"], seed=seed, metrics=study["metrics"],
                         task=task, dataset=dataset, progress=progress) if settings else pd.DataFrame()
    if skipped:
        rows = pd.concat([rows, skipped_rows(sampler, skipped, limit)], ignore_index=True)
    rows["threads"] = torch.get_num_threads()
    with atomic_path(out_path) as tmp:
        rows.to_csv(tmp, index=False)


def input_scores(subset: dict, metrics: list[str], *, task: str, dataset: str) -> dict[str, float]:
    """Mean scores of the degraded input itself on the subset (cubic upsampling for super-resolution,
    as the ``input`` method does): the floor any sampler setting, the reference included, should beat."""
    from ...models.registry import build_method
    from ...reporting.tables import evaluate_images

    baseline = build_method("input", {}, device="cpu", seed=0)
    baseline.scale = pair_scale(subset["inputs"], subset["targets"])  # all a non-learned method knows
    prediction = baseline.predict(subset["inputs"], seed=0, progress=False)["prediction"]
    rows = evaluate_images(prediction, subset["targets"], subset["level"], subset["level_name"], metrics,
                           task=task, dataset=dataset, method="input")
    return {m: float(rows[m].mean()) for m in metrics}


def sampling_table(run_csvs: list[str], subset_path: str, study: dict, about: dict, csv_path: str, md_path: str,
                   png_path: str) -> None:
    """Gather the samplers' rows into ``sampling.{csv,md}`` and the figure."""
    from ...reporting.plots.sampling import sampling_figure

    rows = pd.concat([pd.read_csv(p) for p in run_csvs], ignore_index=True)
    if "note" not in rows:
        rows["note"] = np.nan
    tolerance = {m: t for m, t in DEFAULT_TOLERANCE.items() if m in study["metrics"]}
    table, reference = sampling_summary(rows, study["metrics"], tolerance=tolerance)
    run = rows[rows["note"].isna()]
    subset = load_npz(subset_path, required=PAIR_KEYS + ("index",))
    about = dict(about, images=int(run["image"].nunique()), index=sorted(int(i) for i in run["image"].unique()),
                 samples=int(run["samples"].iloc[0]), threads=int(rows["threads"].iloc[0]),
                 input=input_scores(subset, study["metrics"], task=about["task"], dataset=about["dataset"]))
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text(md_path, sampling_markdown(table, reference, study["metrics"], tolerance=tolerance, about=about))
    sampling_figure(png_path, table, reference, study["metrics"], tolerance=tolerance,
                    title=f"EMDiffuse sampling: {about['task']} / {about['dataset']}")
