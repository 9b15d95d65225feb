"""BioImage Model Zoo export: frozen modules restore as the methods do, packages pass bioimageio.core's test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emdiffuse.bmz import SAMPLER_TOLERANCE, export_bmz
from emdiffuse.cli import main
from emdiffuse.models.frozen import frozen_module
from emdiffuse.models.registry import build_method

RNG = np.random.default_rng(0)
TARGETS = RNG.random((2, 64, 64), dtype=np.float32)
LOW_RES = TARGETS.reshape(2, 32, 2, 32, 2).mean((2, 4))
TINY = {
    "care": {"model": {"n_depth": 1, "n_first": 8}, "train": {"iterations": 2, "batch_size": 2, "patch": 32}},
    "rcan": {"model": {"n_resgroups": 1, "n_resblocks": 1, "n_feats": 8, "reduction": 4},
             "train": {"iterations": 2, "batch_size": 2, "patch": 32}},
    "pssr": {"model": {"width_mult": 0.125}, "train": {"iterations": 2, "batch_size": 2, "patch": 64}},
}


def _diffusion(sampler: str, init: str = "noise") -> dict:
    return {"model": {"preset": "tiny"}, "predict": {"sampler": sampler, "steps": 4, "samples": 2, "tile": 128,
                                                    "precision": "fp32", "init": init},
            "train": {"iterations": 2, "warmup": 1, "difficulty_loss": False, "patch": 32, "batch_size": 2}}


def _trained(name: str, params: dict, inputs: np.ndarray, tmp_path):
    method = build_method(name, params, device=torch.device("cpu"), seed=0)
    method.fit(inputs, TARGETS, checkpoint_path=tmp_path / f"{name}.ckpt", progress=False, log=lambda *a: None)
    return method


CASES = [("care", TINY["care"], LOW_RES), ("care", TINY["care"], TARGETS), ("rcan", TINY["rcan"], TARGETS),
         ("rcan", TINY["rcan"], LOW_RES), ("pssr", TINY["pssr"], LOW_RES),
         ("emdiffuse", _diffusion("ancestral"), TARGETS), ("emdiffuse", _diffusion("ancestral", "condition"), LOW_RES),
         ("emdiffuse_v", _diffusion("ddim"), TARGETS), ("emdiffuse_v", _diffusion("dpmpp2m"), LOW_RES)]


@pytest.mark.parametrize("name,params,inputs", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_the_frozen_module_restores_as_the_method_at_any_size(name, params, inputs, tmp_path):
    """Traced at 64 px, run at 64 and at 96 x 128 target px: the method's own prediction (one tile), same seed."""
    method = _trained(name, params, inputs, tmp_path)
    module = frozen_module(method, 64)
    scale = method.scale
    other = np.pad(inputs[0], ((0, 96 // scale - inputs.shape[1]), (0, 128 // scale - inputs.shape[2])), mode="reflect")
    for image in (inputs[0], other):
        expected = method.predict(image[None], seed=0, progress=False)
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(image))[None, None])
        out = out if isinstance(out, tuple) else (out,)
        assert out[0].shape == (1, 1, image.shape[0] * scale, image.shape[1] * scale)
        np.testing.assert_allclose(out[0][0, 0].numpy(), expected["prediction"][0], atol=2e-6)
        if "uncertainty" in expected:
            np.testing.assert_allclose(out[1][0, 0].numpy(), expected["uncertainty"][0], atol=2e-6)


@pytest.mark.parametrize("name,params,inputs", [CASES[0], CASES[4], CASES[6]], ids=["care-x2", "pssr-x2", "emdiffuse-x2"])
def test_an_exported_package_passes_bioimageio_core_test(name, params, inputs, tmp_path):
    from bioimageio.core import test_model

    _trained(name, params, inputs, tmp_path).save(tmp_path / "model.pt")
    assert main(["export-bmz", "--model", str(tmp_path / "model.pt"), "--output", str(tmp_path / "pkg.zip")]) == 0
    summary = test_model(tmp_path / "pkg.zip")
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed


def test_the_built_in_seed_is_the_seed_of_emdiffuse_predict(tmp_path):
    method = _trained("emdiffuse", _diffusion("ancestral"), TARGETS, tmp_path)
    expected = method.predict(TARGETS[:1], seed=5, progress=False)["prediction"]
    with torch.no_grad():
        out = frozen_module(method, 64, seed=5)(torch.from_numpy(TARGETS[:1, None]))[0]
    np.testing.assert_allclose(out[0, 0].numpy(), expected[0], atol=2e-6)
    assert not np.allclose(expected, method.predict(TARGETS[:1], seed=0, progress=False)["prediction"])


def test_the_sampler_stays_within_its_stated_tolerance_across_thread_counts(tmp_path):
    method = _trained("emdiffuse", _diffusion("ancestral"), TARGETS, tmp_path)
    module = frozen_module(method, 64)
    image = torch.from_numpy(TARGETS[:1, None])
    threads = torch.get_num_threads()
    outputs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.no_grad():
                outputs.append(module(image)[0].numpy())
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(outputs[1], outputs[0], atol=SAMPLER_TOLERANCE["absolute_tolerance"],
                               rtol=SAMPLER_TOLERANCE["relative_tolerance"])


def test_export_refuses_what_it_cannot_package(tmp_path, capsys):
    method = _trained("care", TINY["care"], TARGETS, tmp_path)
    method.save(tmp_path / "care.pt")
    with pytest.raises(ValueError, match="multiple of 2"):
        export_bmz(tmp_path / "care.pt", tmp_path / "a.zip", size=63)
    with pytest.raises(ValueError, match=r"\.zip"):
        export_bmz(tmp_path / "care.pt", tmp_path / "a.tar")
    with pytest.raises(ValueError, match="test image"):
        export_bmz(tmp_path / "care.pt", tmp_path / "a.zip", test_image=np.zeros((16, 16), np.float32))
    identity = build_method("input", {}, device=torch.device("cpu"), seed=0)
    identity.fit(TARGETS, TARGETS, checkpoint_path=tmp_path / "input.ckpt")
    identity.save(tmp_path / "input.pt")
    with pytest.raises(ValueError, match="export-bmz takes the 2D methods"):
        export_bmz(tmp_path / "input.pt", tmp_path / "a.zip")
    (tmp_path / "b.zip").write_bytes(b"kept")
    assert main(["export-bmz", "--model", str(tmp_path / "care.pt"), "--output", str(tmp_path / "b.zip")]) == 2
    assert "exists" in capsys.readouterr().err and (tmp_path / "b.zip").read_bytes() == b"kept"
    assert not list(tmp_path.glob("*partial*"))
