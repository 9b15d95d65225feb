"""`emdiffuse import-official`: a checkpoint of the official layout becomes a model file that
computes the official network's function and restores images through the CLI."""

import importlib.util

import numpy as np
import pytest
import tifffile
import torch

from emdiffuse.cli import main
from emdiffuse.models.registry import load_method

SCHEDULE_BUFFERS = ("gammas", "sqrt_recip_gammas", "sqrt_recipm1_gammas", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2")


@pytest.fixture(scope="module")
def reference(repo):
    """bench/reference_unet.py: the official U-Net, run the official way, with trained-like weights."""
    spec = importlib.util.spec_from_file_location("reference_unet", repo / "bench" / "reference_unet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.trained_like_(module.ReferenceUNet(**module.OFFICIAL)).eval()


def official_network_state(unet: torch.nn.Module, *, data_parallel: bool = False) -> dict:
    """What the official code saves as <epoch>_Network.pth: denoise_fn.* beside the schedule buffers."""
    prefix = "module." if data_parallel else ""
    state = {f"{prefix}denoise_fn.{k}": v for k, v in unet.state_dict().items()}
    state.update({f"{prefix}{name}": torch.rand(1000) for name in SCHEDULE_BUFFERS})
    return state


@pytest.mark.parametrize("data_parallel", [False, True])
def test_an_official_checkpoint_imports_to_the_same_network(reference, tmp_path, capsys, data_parallel):
    ckpt = tmp_path / "2720_Network.pth"
    torch.save(official_network_state(reference, data_parallel=data_parallel), ckpt)
    assert main(["import-official", "--checkpoint", str(ckpt), "--task", "denoise",
                 "--output", str(tmp_path / "model.pt")]) == 0
    assert "without the difficulty head" in capsys.readouterr().out
    method = load_method(tmp_path / "model.pt", device=torch.device("cpu"))
    assert method.name == "emdiffuse" and method.scale == 1
    x, gamma = torch.randn(2, 2, 32, 32), torch.tensor([0.3, 0.9])
    with torch.no_grad():
        expected, out = reference(x, gamma), method.diffusion.net.eval()(x, gamma)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_an_imported_superres_model_restores_an_image_through_the_cli(reference, tmp_path):
    ckpt = tmp_path / "ema.pth"
    torch.save(official_network_state(reference), ckpt)
    assert main(["import-official", "--checkpoint", str(ckpt), "--task", "superres",
                 "--output", str(tmp_path / "model.pt")]) == 0
    image = (np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "low.tif", image)
    assert main(["predict", "--model", str(tmp_path / "model.pt"), "--input", str(tmp_path / "low.tif"),
                 "--output", str(tmp_path / "high.tif"), "--steps", "2", "--samples", "2"]) == 0
    out = tifffile.imread(tmp_path / "high.tif")
    assert out.shape == (48, 48) and np.isfinite(out).all()


@pytest.mark.parametrize("content,words", [
    ("garbage", "not a readable PyTorch checkpoint"),
    ("other_net", "no 'denoise_fn.*' weights"),
    ("narrow", "does not match the official EMDiffuse network"),
])
def test_a_checkpoint_that_is_not_official_emdiffuse_is_named(reference, tmp_path, capsys, content, words):
    ckpt = tmp_path / "x.pth"
    if content == "garbage":
        ckpt.write_bytes(b"not a checkpoint")
    elif content == "other_net":
        torch.save({"conv.weight": torch.zeros(3, 3)}, ckpt)
    else:
        state = official_network_state(reference)
        state["denoise_fn.out.2.bias"] = torch.zeros(3)
        torch.save(state, ckpt)
    assert main(["import-official", "--checkpoint", str(ckpt), "--task", "denoise",
                 "--output", str(tmp_path / "model.pt")]) == 2
    err = capsys.readouterr().err
    assert str(ckpt) in err and words in err and not (tmp_path / "model.pt").exists()
