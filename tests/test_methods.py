"""Every registered method: params validation, fit, save, load, predict, clear errors."""

import copy

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from emdiffuse.models.catalog import IMAGE
from emdiffuse.models.methods import CAREMethod
from emdiffuse.models.registry import build_method, load_method, method_class

CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
TINY = {
    "input": {},
    "care": {"model": {"n_first": 4}, "train": {"iterations": 10, "batch_size": 4, "patch": 16}},
    "emdiffuse": {
        "model": {"preset": "tiny"},
        "diffusion": {"test_schedule": {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 100}},
        "train": {"iterations": 10, "batch_size": 4, "patch": 16, "warmup": 3, "ema_decay": 0.9},
        "predict": {"sampler": "ddim", "steps": 3, "samples": 2, "tile": 16, "overlap": 4, "batch": 2},
    },
    "rcan": {"model": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 4},
             "train": {"iterations": 10, "batch_size": 4, "patch": 16}, "predict": {"tile": 16, "overlap": 4}},
    "pssr": {"model": {"width_mult": 1 / 16}, "train": {"iterations": 10, "batch_size": 4, "patch": 32},
             "predict": {"tile": 32, "overlap": 8}},
}
TINY["emdiffuse_v"] = TINY["emdiffuse"]


def toy_pairs(n=8, size=32, scale=1):
    """target = smooth image; input = noisy (and, for scale > 1, block-averaged) version of it."""
    rng = np.random.default_rng(0)
    clean = np.stack([gaussian_filter(rng.random((size * scale,) * 2), 2) for _ in range(n)])
    clean = ((clean - clean.min()) / np.ptp(clean) * 0.6 + 0.2).astype(np.float32)
    low = clean.reshape(n, size, scale, size, scale).mean((2, 4))
    return np.clip(low + rng.normal(0, 0.1, low.shape), 0, 1).astype(np.float32), clean


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Each method fitted once on the denoising toy and saved."""
    root = tmp_path_factory.mktemp("methods")
    inputs, targets = toy_pairs()
    out = {}
    for name in IMAGE:
        method = build_method(name, TINY[name], device=CPU, seed=0)
        history = method.fit(inputs, targets, checkpoint_path=root / f"{name}.ckpt", **QUIET)
        assert len(history) == (0 if not method.learned else 10)
        method.save(root / f"{name}.pt")
        out[name] = (method, root / f"{name}.pt")
    return out


@pytest.mark.parametrize("name", list(IMAGE))
def test_fit_save_load_predict(fitted, name):
    method, path = fitted[name]
    inputs = toy_pairs(n=2, size=24)[0]  # not a multiple of the training patch
    loaded = load_method(path, device=CPU)
    assert type(loaded) is type(method) and loaded.params == method.params
    a, b = method.predict(inputs, seed=1, progress=False), loaded.predict(inputs, seed=1, progress=False)
    assert a["prediction"].shape == inputs.shape and a["prediction"].dtype == np.float32
    assert 0 <= a["prediction"].min() and a["prediction"].max() <= 1
    np.testing.assert_array_equal(a["prediction"], b["prediction"])  # same seed, same output
    assert set(a) == ({"prediction", "uncertainty"} if name.startswith("emdiffuse") else {"prediction"})


def test_emdiffuse_uncertainty_and_seeds(fitted):
    method, _ = fitted["emdiffuse"]
    inputs = toy_pairs(n=1, size=20)[0]
    a, b = method.predict(inputs, seed=1, progress=False), method.predict(inputs, seed=2, progress=False)
    assert a["uncertainty"].shape == inputs.shape and (a["uncertainty"] >= 0).all() and a["uncertainty"].max() > 0
    assert not np.array_equal(a["prediction"], b["prediction"])


def test_emdiffuse_bf16_prediction_is_close_to_fp32(fitted):
    method, _ = fitted["emdiffuse"]
    inputs = toy_pairs(n=1, size=16)[0]
    assert method.params["predict"]["precision"] == "auto"  # the default
    bf16, fp32 = (method.predict(inputs, seed=1, progress=False, precision=p)["prediction"] for p in ("bf16", "fp32"))
    assert np.abs(bf16 - fp32).mean() < 0.01


def test_prediction_overrides_hold_for_one_call_and_are_checked(fitted):
    """``predict(..., steps=..)`` changes that call only; unknown keys and invalid values are refused
    with the config key they would have."""
    method, _ = fitted["emdiffuse"]
    inputs = toy_pairs(n=1, size=16)[0]
    before = copy.deepcopy(method.params)
    one = method.predict(inputs, seed=1, progress=False, steps=1, samples=1)
    assert "uncertainty" not in one and method.params == before
    assert np.array_equal(method.predict(inputs, seed=1, progress=False)["prediction"],
                          method.predict(inputs, seed=1, progress=False, **before["predict"])["prediction"])
    with pytest.raises(ValueError, match=r"emdiffuse.predict: unknown key\(s\) \['stepz'\]"):
        method.predict(inputs, seed=1, progress=False, stepz=3)
    with pytest.raises(ValueError, match="emdiffuse.predict.sampler: 'euler' is not one of"):
        method.predict(inputs, seed=1, progress=False, sampler="euler")
    with pytest.raises(ValueError, match="emdiffuse.predict.steps: 0 is less than the minimum of 1"):
        method.predict(inputs, seed=1, progress=False, steps=0)  # the settings schema's bounds, as in the config


def test_the_renamed_sample_block_is_named_in_the_error_and_old_files_still_load(fitted, tmp_path):
    method, _ = fitted["emdiffuse"]
    with pytest.raises(ValueError, match="emdiffuse.sample: renamed to emdiffuse.predict"):
        build_method("emdiffuse", {**TINY["emdiffuse"], "sample": {"steps": 2}}, device=torch.device("cpu"), seed=0)
    method.save(tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["params"]["sample"] = ckpt["params"].pop("predict")  # as written before the rename
    torch.save(ckpt, tmp_path / "old.pt")
    assert load_method(tmp_path / "old.pt", device=torch.device("cpu")).params["predict"] == method.params["predict"]


def test_input_method_is_identity_or_cubic_upsampling():
    method = build_method("input", {}, device=CPU, seed=0)
    inputs = np.broadcast_to((np.arange(16, dtype=np.float32) + 1) / 20, (2, 16, 16)).copy()  # a ramp in x
    method.fit(inputs, inputs, checkpoint_path="unused", **QUIET)
    np.testing.assert_array_equal(method.predict(inputs, seed=0)["prediction"], inputs)
    method.fit(inputs, np.zeros((2, 32, 32), np.float32), checkpoint_path="unused", **QUIET)
    pred = method.predict(inputs, seed=0)["prediction"]
    assert pred.shape == (2, 32, 32)
    ramp = ((np.arange(32) + 0.5) / 2 - 0.5 + 1) / 20  # the ramp at the pixel centres of the 2x grid
    # alignment check: a half-pixel shift would be off by 0.0125; the mirrored edge kink leaves < 1e-3
    np.testing.assert_allclose(pred[:, :, 8:-8], np.broadcast_to(ramp[8:-8], (2, 32, 16)), atol=1e-3)


@pytest.mark.parametrize("name", ["care", "emdiffuse", "rcan", "pssr"])
def test_super_resolution_pairs(tmp_path, name):
    inputs, targets = toy_pairs(n=4, size=16, scale=2)
    params = {**TINY[name], "train": {**TINY[name]["train"], "iterations": 2}}
    method = build_method(name, params, device=CPU, seed=0)
    method.fit(inputs, targets, checkpoint_path=tmp_path / "c.pt", **QUIET)
    assert method.predict(inputs[:1], seed=0, progress=False)["prediction"].shape == (1, 32, 32)


def test_raising_iterations_continues_training_other_changes_train_afresh(tmp_path):
    inputs, targets = toy_pairs(n=4, size=16)
    params = {"model": {"n_first": 4}, "train": {"iterations": 3, "batch_size": 2, "patch": 16}}
    first = build_method("care", params, device=CPU, seed=0).fit(inputs, targets, checkpoint_path=tmp_path / "c", **QUIET)
    params["train"]["iterations"] = 5
    longer = build_method("care", params, device=CPU, seed=0).fit(inputs, targets, checkpoint_path=tmp_path / "c", **QUIET)
    assert longer[:3] == first and len(longer) == 5
    params["train"]["lr"] = 1e-3
    messages = []
    other = build_method("care", params, device=CPU, seed=0).fit(inputs, targets, checkpoint_path=tmp_path / "c",
                                                                   progress=False, log=messages.append)
    assert len(other) == 5 and other[0]["lr"] != first[0]["lr"] and "different run" in messages[0]


def test_load_errors(fitted, tmp_path):
    with pytest.raises(ValueError, match="holds a 'care' checkpoint, not 'emdiffuse'"):
        method_class("emdiffuse").load(fitted["care"][1], device=CPU)
    with pytest.raises(FileNotFoundError, match="no such method checkpoint"):
        load_method(tmp_path / "missing.pt", device=CPU)
    (tmp_path / "corrupt.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="not a readable method checkpoint"):
        load_method(tmp_path / "corrupt.pt", device=CPU)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an emdiffuse method checkpoint"):
        load_method(tmp_path / "other.pt", device=CPU)
    torch.save({"method": "care", "params": {}, "state": Unpicklable()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match=r"not a readable method checkpoint \(UnpicklingError: Weights only load failed"):
        load_method(tmp_path / "code.pt", device=CPU)  # pickled code never runs
    assert not Unpicklable.ran


class Unpicklable:
    """Pickles to a call of its own: loading it with full pickle would run code."""

    ran = False

    def __reduce__(self):
        return (Unpicklable._run, ())

    @staticmethod
    def _run():
        Unpicklable.ran = True


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("care", {"train": {"iterations": 1, "lrr": 1}}, r"care.train: unknown key\(s\) \['lrr'\]"),
        ("care", {"train": {}}, "care.train.iterations: required key is missing"),
        ("care", {"train": {"iterations": 1, "normalize": {"pmin": 2}}}, "care.train.normalize: unknown"),
        ("emdiffuse", {**TINY["emdiffuse"], "model": {"preset": "huge"}}, "emdiffuse.model.preset: 'huge'"),
        ("emdiffuse", {**TINY["emdiffuse"], "model": {"width": 3}}, r"emdiffuse.model: unknown key\(s\) \['width'\]"),
        ("emdiffuse", {**TINY["emdiffuse"], "predict": {"sampler": "euler"}}, "emdiffuse.predict.sampler"),
        ("emdiffuse", {**TINY["emdiffuse"], "predict": {"precision": "fp16"}}, "emdiffuse.predict.precision"),
        ("emdiffuse", {**TINY["emdiffuse"], "predict": {"init": "zeros"}}, "emdiffuse.predict.init"),
        ("emdiffuse", {**TINY["emdiffuse"], "predict": {"samples": "two"}}, "emdiffuse.predict.samples: 'two' is not of type"),
        ("input", {"x": 1}, r"input: unknown key\(s\) \['x'\]"),
        ("unet", {}, r"unknown method 'unet'; known methods: \['care', 'emdiffuse', 'emdiffuse_v', 'input', 'pssr', 'rcan'\]"),
    ],
)
def test_params_validation(name, params, message):
    with pytest.raises(ValueError, match=message):
        build_method(name, params, device=CPU, seed=0)


def test_predict_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="fit"):
        CAREMethod(TINY["care"], device=CPU, seed=0).predict(np.zeros((1, 16, 16), np.float32), seed=0)


def test_emdiffuse_condition_init_starts_from_the_degraded_input(fitted, monkeypatch):
    """init "condition" hands the sampler the (K-repeated) condition as its clean-image start."""
    method = fitted["emdiffuse"][0]
    model, seen = method._sampling_model(), []
    original = type(model).sample

    def spy(self, cond, **kw):
        seen.append((cond, kw["x0_init"]))
        return original(self, cond, **kw)

    monkeypatch.setattr(type(model), "sample", spy)
    tiles = torch.rand(2, 1, 16, 16)
    method.sample_tiles(tiles, torch.Generator().manual_seed(0), method.predict_settings({"init": "condition"}))
    cond, start = seen[-1]
    assert start is cond and torch.equal(cond, (tiles * 2 - 1).repeat_interleave(2, 0))
    method.sample_tiles(tiles, torch.Generator().manual_seed(0), method.predict_settings({"init": "noise"}))
    assert seen[-1][1] is None


def test_emdiffuse_v_is_the_labelled_variant(fitted):
    """v-prediction, a head that keeps the mean, the log-SNR embedding and augmentation, recorded in
    the model file; the faithful emdiffuse keeps the official settings."""
    variant, faithful = fitted["emdiffuse_v"][0], fitted["emdiffuse"][0]
    assert variant.params["diffusion"]["prediction"] == "v" and faithful.params["diffusion"]["prediction"] == "eps"
    assert variant.params["model"] == {"preset": "tiny", "out_norm_groups": 4, "noise_embedding": "log_snr"}
    assert variant.diffusion.net.out[0].num_groups == 4 and faithful.diffusion.net.out[0].num_groups == 8
    assert variant.params["train"]["intensity_augment"] > 0 == faithful.params["train"]["intensity_augment"]


def test_intensity_augmentation_transforms_condition_and_target_alike():
    from emdiffuse.models.methods import intensity_augmented

    torch.manual_seed(0)
    target = torch.rand(8, 1, 16, 16) * 0.5 + 0.25
    cond, out = intensity_augmented(target.clone(), target.clone(), 0.2)
    torch.testing.assert_close(cond, out)  # the same transform for both
    assert not torch.allclose(out, target) and 0 <= out.min() and out.max() <= 1
    ratio = (out - out.mean((2, 3), keepdim=True)).std((2, 3)) / (target - target.mean((2, 3), keepdim=True)).std((2, 3))
    assert ((ratio > 0.79) & (ratio < 1.21)).all()  # contrast within [1 - 0.2, 1 + 0.2]
