"""Train a method on its pairs and restore the test and calibration inputs with it (also the steps
the studies and transfer learning run on their own pairs)."""

from __future__ import annotations

from pathlib import Path

from ...data.pairs import PAIR_KEYS
from ...io import load_npz, save_npz


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
    from ...data.pairs import check_pairing

    pairs = load_npz(pairs_path, required=PAIR_KEYS)
    check_pairing(pairs["inputs"], pairs["targets"], factor, str(pairs_path))
    from ...models.distributed import run

    run(_train_rank, devices, method, params, pairs_path, seed, model_path, history_path, threads, progress)


def _train_rank(rank: int, devices: int, method: str, params: dict, pairs_path: str, seed: int, model_path: str,
                history_path: str, threads: int | None, progress: bool) -> None:
    """One process of :func:`train` (the only one on one device); rank 0 writes the outputs."""
    from ...device import seed_everything, set_threads
    from ...models.distributed import rank_device
    from ...models.registry import build_method

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
    from ...device import pick_device, seed_everything, set_threads
    from ...models.registry import load_method

    set_threads(threads)
    device, models = pick_device(), {}
    for model_path, pairs_path, out_path in zip(model_paths, pairs_paths, out_paths, strict=True):
        pairs = load_npz(pairs_path, required=PAIR_KEYS)
        if model_path not in models:
            models[model_path] = load_method(model_path, device=device)
        seed_everything(seed)
        save_npz(out_path, **models[model_path].predict(pairs["inputs"], seed=seed, progress=progress,
                                                        **(settings or {})))
