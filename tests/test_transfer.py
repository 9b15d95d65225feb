"""Transfer learning from one image pair: the pair extraction, fine-tuning, budgets and the table."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

import emdiffuse.models.train as train_module
from emdiffuse.config import ConfigError
from emdiffuse.plan import check_config
from emdiffuse.data.datasets import prepare, save_prepared
from emdiffuse.io import load_npz, save_npz
from emdiffuse.models.catalog import IMAGE
from emdiffuse.models.registry import build_method, load_method
from emdiffuse.data.pairs import check_pairing, split_slices
from emdiffuse.tasks.image.data import make_pairs
from emdiffuse.tasks import transfer

CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
SPLIT = {"test_fraction": 0.25, "gap": 2, "slice_step": 2}
TASKS = {
    "denoise": {"test_images": 2, "pairs": {"gt_dwell_us": 36.0, "dwell_us": [1.0, 4.0], "electrons_per_us": 20.0,
                                             "read_noise": 1.0}},
    "superres": {"test_images": 2, "pairs": {"factor": 2, "probe_sigma_px": 1.0, "gt_dwell_us": 36.0,
                                              "dwell_us": [2.0, 4.0], "electrons_per_us": 20.0, "read_noise": 1.0}},
}
# tiny networks (as tests/test_methods.py) with a checkpoint every 2 iterations
TINY = {
    "care": {"model": {"n_first": 4}, "train": {"iterations": 6, "batch_size": 4, "patch": 16, "checkpoint_every": 2}},
    "emdiffuse": {
        "model": {"preset": "tiny"},
        "diffusion": {"test_schedule": {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 100}},
        "train": {"iterations": 6, "batch_size": 4, "patch": 16, "warmup": 2, "ema_decay": 0.9,
                  "checkpoint_every": 2},
        "predict": {"steps": 2, "samples": 2, "tile": 16, "overlap": 4, "batch": 2},
    },
    "rcan": {"model": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 4},
             "train": {"iterations": 6, "batch_size": 4, "patch": 16, "checkpoint_every": 2},
             "predict": {"tile": 16, "overlap": 4}},
    "pssr": {"model": {"width_mult": 1 / 16}, "train": {"iterations": 6, "batch_size": 4, "patch": 32,
                                                         "checkpoint_every": 2},
             "predict": {"tile": 32, "overlap": 8}},
}
TINY["emdiffuse_v"] = TINY["emdiffuse"]  # the variant fine-tunes like the faithful model
LEARNED = [name for name, entry in IMAGE.items() if entry.learned]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def liver_pairs(tmp_path_factory):
    """Train and test pairs of a small liver phantom for both tasks, made by the workflow step."""
    root = tmp_path_factory.mktemp("liver")
    entry = {"kind": "phantom", "style": "liver", "shape": [16, 48, 48], "voxel_nm": [8, 8, 8]}
    save_prepared(prepare("liver", entry, seed=0), root / "v.tif", root / "l.npz", root / "a.npz")
    paths = {}
    for task, cfg in TASKS.items():
        paths[task] = (root / f"{task}_train.npz", root / f"{task}_test.npz")
        make_pairs(task, cfg, SPLIT, root / "v.tif", 3, *paths[task], root / f"{task}_calibration.npz")
    return paths


# --- one pair, test subset ------------------------------------------------------------------

@pytest.mark.parametrize("task", ["denoise", "superres"])
def test_one_pair_is_one_centre_crop_of_one_training_slice(liver_pairs, tmp_path, task):
    train_path, test_path = liver_pairs[task]
    factor = TASKS[task]["pairs"].get("factor", 1)
    transfer.extract_one_pair(train_path, {"slice": 1, "level": -1, "size": 32}, factor, tmp_path / "one.npz")
    one, train = load_npz(tmp_path / "one.npz"), load_npz(train_path)
    assert set(one) == set(train)  # the keys of every pair file
    assert one["inputs"].shape == (1, 32 // factor, 32 // factor) and one["targets"].shape == (1, 32, 32)
    assert len(one["level"]) == len(one["z"]) == 1
    train_z = np.unique(train["z"])
    assert one["z"][0] == train_z[1] and one["level"][0] == len(train["level_name"]) - 1
    # only the training split: the slice is a training slice, none of the test slices
    assert one["z"][0] in split_slices(16, **SPLIT)["train"]
    assert one["z"][0] not in load_npz(test_path)["z"]
    # the centre crop of exactly that image, on both grids (same field of view)
    (i,) = np.flatnonzero((train["z"] == one["z"][0]) & (train["level"] == one["level"][0]))
    np.testing.assert_array_equal(one["targets"][0], train["targets"][i, 8:40, 8:40])
    lo, hi = 8 // factor, 40 // factor
    np.testing.assert_array_equal(one["inputs"][0], train["inputs"][i, lo:hi, lo:hi])
    check_pairing(one["inputs"], one["targets"], factor, "one pair")  # still aligned


def test_one_pair_whole_image_and_rectangles(liver_pairs):
    train = load_npz(liver_pairs["superres"][0])
    whole = transfer.select_one_pair(train, slice_index=0, level=0, size=None, factor=2)
    assert whole["targets"].shape == (1, 48, 48) and whole["inputs"].shape == (1, 24, 24)
    rect = transfer.select_one_pair(train, slice_index=0, level=0, size=[16, 40], factor=2)
    assert rect["targets"].shape == (1, 16, 40) and rect["inputs"].shape == (1, 8, 20)


@pytest.mark.parametrize("kwargs, message", [
    ({"slice_index": 9, "level": 0, "size": 16}, r"transfer.pair.slice: 9 but .* has 5 training slices"),
    ({"slice_index": 0, "level": 2, "size": 16}, r"transfer.pair.level: level 2 but the task has 2 levels"),
    ({"slice_index": 0, "level": 0, "size": 64}, r"transfer.pair.size: 64x64 must fit in the 48x48"),
    ({"slice_index": 0, "level": 0, "size": 15}, r"multiple of the task's factor 2"),
])
def test_one_pair_errors_name_the_key(liver_pairs, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        transfer.select_one_pair(load_npz(liver_pairs["superres"][0]), factor=2, **kwargs)


def test_test_subset_picks_slices_and_levels(liver_pairs):
    test = load_npz(liver_pairs["denoise"][1])
    assert len(test["inputs"]) == 2 * 2
    sub = transfer.select_test_subset(test, images=1, levels=[-1])
    assert len(sub["inputs"]) == 1 and sub["level"][0] == 1 and list(sub["level_name"]) == list(test["level_name"])
    assert len(transfer.select_test_subset(test, images=5, levels=None)["inputs"]) == 4  # all of them
    with pytest.raises(ConfigError, match="transfer.test_levels"):
        transfer.select_test_subset(test, images=1, levels=[3])


# --- fine-tuning ------------------------------------------------------------------------------

def toy(n, size, scale=1, seed=0, shift=0.0):
    """target = smooth image; input = noisy (block-averaged for scale > 1) version; ``shift`` = another domain."""
    rng = np.random.default_rng(seed)
    clean = np.stack([gaussian_filter(rng.random((size * scale,) * 2), 2) for _ in range(n)])
    clean = ((clean - clean.min()) / np.ptp(clean) * 0.6 + 0.2 + shift).astype(np.float32)
    low = clean.reshape(n, size, scale, size, scale).mean((2, 4))
    return np.clip(low + rng.normal(0, 0.1, low.shape), 0, 1).astype(np.float32), clean


def flat_weights(method) -> torch.Tensor:
    net = method.diffusion if method.name.startswith("emdiffuse") else method.net
    return torch.cat([p.detach().flatten().clone() for p in net.parameters()])


@pytest.fixture(scope="module")
def domain_a(tmp_path_factory):
    """Each learned method fitted on domain A (denoising and x2) and saved."""
    root = tmp_path_factory.mktemp("domain_a")
    out = {}
    for name in LEARNED:
        for scale in (1, 2):
            method = build_method(name, TINY[name], device=CPU, seed=0)
            method.fit(*toy(6, 32 // scale, scale), checkpoint_path=root / f"{name}{scale}.ckpt", **QUIET)
            method.save(root / f"{name}{scale}.pt")
            out[name, scale] = root / f"{name}{scale}.pt"
    return out


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("name", LEARNED)
def test_finetuning_starts_from_the_domain_a_weights_and_changes_them(domain_a, tmp_path, name, scale):
    a = load_method(domain_a[name, scale], device=CPU)
    before = flat_weights(a)
    stats = getattr(a, "stats", None)
    one = toy(1, 32 // scale, scale, seed=5, shift=0.1)
    lr_key = IMAGE[name].lr_key
    lr = 1e-4
    history = a.finetune(*one, train={"iterations": 3, lr_key: lr}, seed=9, checkpoint_path=tmp_path / "ft.ckpt",
                         **QUIET)
    assert len(history) == 3 and a.params["train"][lr_key] == lr and a.seed == 9
    after = flat_weights(a)
    # Adam moves each weight by at most ~lr per step: far closer to A than a fresh network is
    step = (after - before).abs().max().item()
    assert 0 < step <= 3 * lr * 1.5
    fresh = build_method(name, TINY[name], device=CPU, seed=1)
    fresh.fit(*one, checkpoint_path=tmp_path / "fresh.ckpt", **QUIET)
    assert (flat_weights(fresh) - before).abs().max().item() > 10 * step
    if stats is not None:  # PSSR keeps the domain-A input statistics its weights were trained for
        assert a.stats == stats
    a.save(tmp_path / "ft.pt")
    again = load_method(tmp_path / "ft.pt", device=CPU)
    assert again.warm_start == a.warm_start is not None and again.history == history
    assert again.predict(one[0], seed=0, progress=False)["prediction"].shape == one[1].shape


class Killed(Exception):
    pass


def killing_tqdm(kill_at):
    """tqdm stand-in that 'kills' the run during iteration ``kill_at`` (after its step)."""
    class Bar:
        def __init__(self, *args, initial=0, **kwargs):
            self.n = initial

        def update(self, k=1):
            self.n += k
            if self.n == kill_at:
                raise Killed

        def set_postfix(self, *args, **kwargs):
            pass

        def close(self):
            pass

    return Bar


@pytest.mark.parametrize("name", ["care", "emdiffuse"])
def test_finetuning_resumes_exactly_after_a_kill(domain_a, tmp_path, monkeypatch, name):
    one = toy(1, 32, seed=5, shift=0.1)
    budget = {"iterations": 6, "checkpoint_every": 2}

    def run(ckpt):
        method = load_method(domain_a[name, 1], device=CPU)
        method.finetune(*one, train=budget, seed=9, checkpoint_path=ckpt, **QUIET)
        return method

    whole = run(tmp_path / "a.ckpt")
    monkeypatch.setattr(train_module, "tqdm", killing_tqdm(5))
    with pytest.raises(Killed):
        run(tmp_path / "b.ckpt")  # dies in iteration 5: the checkpoint holds iteration 4
    monkeypatch.undo()
    resumed = run(tmp_path / "b.ckpt")
    assert torch.equal(flat_weights(whole), flat_weights(resumed))
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]
    # a checkpoint is never resumed from other starting weights: it is kept aside, training starts afresh
    other = build_method(name, TINY[name], device=CPU, seed=1)
    other.fit(*toy(6, 32), checkpoint_path=tmp_path / "other.ckpt", **QUIET)
    lines = []
    other.finetune(*one, train=budget, seed=9, checkpoint_path=tmp_path / "b.ckpt", log=lines.append,
                   progress=False)
    assert (tmp_path / "b.stale.ckpt").exists() and any("different run" in line for line in lines)
    assert len(other.history) == budget["iterations"]


def test_emdiffuse_finetunes_the_ema_weights_it_samples_with(domain_a, tmp_path):
    a = load_method(domain_a["emdiffuse", 1], device=CPU)
    with torch.no_grad():
        for p in a.ema.parameters():
            p.add_(0.5)  # make the EMA weights unmistakable
    sampled = torch.cat([p.flatten().clone() for p in a.ema.parameters()])
    a.finetune(*toy(1, 32, seed=5), train={"iterations": 1, "lr": 1e-6, "ema_decay": None}, seed=0,
               checkpoint_path=tmp_path / "c", **QUIET)
    assert a.ema is None and (flat_weights(a) - sampled).abs().max() < 1e-5


def test_finetuning_errors(domain_a, tmp_path):
    care = load_method(domain_a["care", 1], device=CPU)
    with pytest.raises(ValueError, match=r"care.train: unknown key\(s\) \['lrr'\]"):
        care.finetune(*toy(1, 32), train={"lrr": 1}, seed=0, checkpoint_path=tmp_path / "c", **QUIET)
    with pytest.raises(ValueError, match="scale 2 but the model was trained for scale 1"):
        care.finetune(*toy(1, 16, 2), train={}, seed=0, checkpoint_path=tmp_path / "c", **QUIET)
    with pytest.raises(RuntimeError, match="fit"):
        build_method("care", TINY["care"], device=CPU, seed=0).finetune(
            *toy(1, 32), train={}, seed=0, checkpoint_path=tmp_path / "c", **QUIET)
    ref = build_method("input", {}, device=CPU, seed=0)
    ref.fit(*toy(1, 32), checkpoint_path="unused", **QUIET)
    with pytest.raises(ValueError, match="not a learned method"):
        ref.finetune(*toy(1, 32), train={}, seed=0, checkpoint_path=tmp_path / "c", **QUIET)


def test_finetune_step_reads_one_pair_and_writes_model_and_history(domain_a, tmp_path):
    inputs, targets = toy(1, 32, seed=5, shift=0.1)
    save_npz(tmp_path / "one.npz", inputs=inputs, targets=targets, level=np.zeros(1, np.int16),
             level_name=np.asarray(["1 us"]), z=np.zeros(1, np.int32))
    transfer.finetune(str(domain_a["care", 1]), tmp_path / "one.npz", {"iterations": 3}, 4,
                      tmp_path / "m" / "model.pt", tmp_path / "m" / "history.csv", progress=False)
    assert (tmp_path / "m" / "checkpoint.pt").exists()
    assert list(pd.read_csv(tmp_path / "m" / "history.csv")["iteration"]) == [1, 2, 3]
    assert load_method(tmp_path / "m" / "model.pt", device=CPU).warm_start is not None


# --- config: budgets and cross-references -------------------------------------------------------

def test_budgets_follow_the_config(default_config):
    cfg = copy.deepcopy(default_config)
    ft = cfg["transfer"]["finetune"]
    ft.update(iterations=40, lr_factor=0.25, overrides={"emdiffuse": {"iterations": 70, "warmup": 5}})
    care_lr = cfg["methods"]["care"]["train"]["lr"]
    assert transfer.finetune_train(cfg, "care") == {"iterations": 40, "lr": care_lr * 0.25}
    em = transfer.finetune_train(cfg, "emdiffuse")
    assert em["iterations"] == 70 and em["warmup"] == 5
    assert em["lr"] == cfg["methods"]["emdiffuse"]["train"]["lr"] * 0.25
    # scratch: the method's own recipe, for the fine-tuning iterations unless set
    scratch = transfer.scratch_params(cfg, "emdiffuse")
    assert scratch["train"]["iterations"] == 70 and scratch["train"]["lr"] == cfg["methods"]["emdiffuse"]["train"]["lr"]
    cfg["transfer"]["scratch"] = {"iterations": 33}
    assert transfer.scratch_params(cfg, "care")["train"]["iterations"] == 33
    assert cfg["methods"]["care"]["train"]["iterations"] == default_config["methods"]["care"]["train"]["iterations"]
    budgets = transfer.variant_budgets(cfg, "denoise")
    assert set(budgets["input"]) == {"reference"} and set(budgets["care"]) == set(transfer.VARIANTS)
    assert budgets["care"]["scratch"]["iterations"] == 33 and budgets["emdiffuse"]["finetune"]["iterations"] == 70
    assert "40 iterations" in budgets["care"]["finetune"]["budget"]
    cfg["transfer"]["finetune"]["overrides"] = {"care": {"iters": 3}}
    with pytest.raises(ConfigError, match=r"transfer.finetune.overrides.care: unknown train key\(s\) \['iters'\]"):
        transfer.check_transfer(cfg)


def test_pssr_learning_rate_key():
    cfg = {"transfer": {"finetune": {"iterations": 5, "lr_factor": 0.5}},
           "methods": {"pssr": {"train": {"iterations": 9}}}}
    assert transfer.finetune_train(cfg, "pssr") == {"iterations": 5, "max_lr": 2e-4}  # PSSR's own default 4e-4


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["transfer"].update(source="nowhere"), r"transfer.source names 'nowhere'"),
    (lambda c: c["transfer"].update(target="phantom_neuropil"),
     r"transfer.target: 'phantom_neuropil' is also the source"),
    (lambda c: c["tasks"].pop("superres"), r"transfer.tasks names 'superres'"),
    (lambda c: c["tasks"]["superres"].update(datasets=["phantom_liver"]),
     r"transfer.source: 'phantom_neuropil' is not in tasks.superres.datasets"),
    (lambda c: (c["tasks"]["denoise"].update(methods=["input", "care", "emdiffuse"]),
                c["transfer"].update(methods=["input", "care", "emdiffuse", "rcan"])),
     r"transfer.methods names 'rcan', which tasks.denoise.methods does not compare"),
])
def test_cross_references_name_the_key(default_config, mutate, message):
    bad = copy.deepcopy(default_config)
    mutate(bad)
    with pytest.raises(ConfigError, match=message):
        check_config(bad)


def test_methods_default_to_each_base_task(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["transfer"].pop("methods", None)
    cfg["tasks"]["superres"]["methods"] = ["input", "emdiffuse"]
    assert transfer.transfer_methods(cfg, "superres") == ["input", "emdiffuse"]
    cfg["transfer"]["methods"] = ["input", "care"]
    assert transfer.transfer_methods(cfg, "denoise") == ["input", "care"]
    assert transfer.figure_methods(["input", "care", "emdiffuse", "rcan"]) == ["emdiffuse", "care"]


# --- the table -------------------------------------------------------------------------------

def test_table_orders_rows_and_states_every_budget(default_config, liver_pairs, tmp_path):
    cfg = copy.deepcopy(default_config)
    cfg["transfer"]["metrics"] = ["PSNR"]
    rng = np.random.default_rng(0)
    csvs, one_pairs = [], []
    for task in cfg["transfer"]["tasks"]:
        one = tmp_path / f"{task}_one.npz"
        transfer.extract_one_pair(liver_pairs[task][0], {"slice": 0, "level": 0, "size": 32},
                                  TASKS[task]["pairs"].get("factor", 1), one)
        one_pairs.append(str(one))
        for method in ["input", "care", "emdiffuse"]:
            for variant in (["reference"] if method == "input" else ["scratch", "direct", "finetune"]):
                rows = pd.DataFrame({"task": task, "dataset": "phantom_liver", "method": method, "image": range(4),
                                     "level": [0, 1, 0, 1], "level_name": ["1 us", "4 us"] * 2,
                                     "PSNR": rng.normal(25, 1, 4), "variant": variant})
                csvs.append(tmp_path / f"{task}_{method}_{variant}.csv")
                rows.to_csv(csvs[-1], index=False)
    budgets = {k: v for t in cfg["transfer"]["tasks"] for k, v in transfer.variant_budgets(cfg, t).items()}
    transfer.table(csvs, one_pairs, cfg["transfer"], ["input", "care", "emdiffuse"], budgets,
                   tmp_path / "t.csv", tmp_path / "t.md")
    table = pd.read_csv(tmp_path / "t.csv")
    pooled = table[table["level"] == "all"]
    expected = [("input", "reference")] + [(m, v) for m in ("care", "emdiffuse") for v in transfer.VARIANTS]
    for task in cfg["transfer"]["tasks"]:
        rows = pooled[pooled["task"] == task]
        assert list(zip(rows["method"], rows["variant"])) == expected
        assert (rows["n"] == 4).all() and np.isfinite(rows["PSNR_mean"]).all()
    assert list(table["task"].unique()) == cfg["transfer"]["tasks"]
    assert set(table["source"]) == {"phantom_neuropil"} and set(table["target"]) == {"phantom_liver"}
    care = pooled[(pooled["method"] == "care") & (pooled["task"] == "denoise")].set_index("variant")["iterations"]
    assert care["direct"] == cfg["methods"]["care"]["train"]["iterations"]
    assert care["finetune"] == care["scratch"] == cfg["transfer"]["finetune"]["iterations"]
    md = (tmp_path / "t.md").read_text()
    assert "| denoise | all | emdiffuse | finetune | 4 |" in md
    assert "**care / scratch**" in md and "ground truth 32x32 px" in md and "input 16x16 px" in md


def test_figure_shows_every_variant_per_task_and_method(liver_pairs, tmp_path):
    spec = {}
    for task in TASKS:
        test = load_npz(liver_pairs[task][1])
        spec[task] = {"pairs": str(liver_pairs[task][1]), "methods": {}}
        for method in ["emdiffuse", "care"]:
            for variant in transfer.VARIANTS:
                path = tmp_path / f"{task}_{method}_{variant}.npz"
                save_npz(path, prediction=np.clip(test["targets"] + 0.05, 0, 1))
                spec[task]["methods"].setdefault(method, {})[variant] = str(path)
    transfer.figure(spec, {"image": 0, "inset": [200, 200, 64]}, "a", "b", tmp_path / "t.png")  # inset re-fitted
    import matplotlib.image

    image = matplotlib.image.imread(tmp_path / "t.png")
    assert image.shape[0] > image.shape[1] / 2  # 4 rows (2 tasks x 2 methods) of 5 panels
