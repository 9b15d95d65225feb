"""Published EMDiffuse weights as this project's model file (``emdiffuse import-official``).

The official code (Luchixiang/EMDiffuse, Palette-based) saves ``<epoch>_Network.pth`` (raw weights,
what its test script samples with) and ``<epoch>_Network_ema.pth``: the state dict of a ``Network``
whose U-Net is ``denoise_fn`` (``module.`` in front when saved from DataParallel) beside the noise
schedule's buffers (``gammas``, ``posterior_mean_coef1``, ...). The U-Net here keeps the official
module names and shapes (``models.unet``), so the weights load strictly; the schedules are the
official ones (the ``diffusion`` defaults of ``models/settings.yaml``) and the buffers are dropped. The data mapping is the
official one as well: [0, 1] intensities to [-1, 1], super-resolution inputs upsampled bilinearly
by the scale before they are concatenated.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import torch

#: target / input pixel-size ratio of each task's official model (EMDiffuse-r: x2)
TASK_SCALES = {"denoise": 1, "superres": 2}


def official_unet_state(raw, source: str) -> dict[str, torch.Tensor]:
    """The U-Net's entries of an official ``Network`` state dict, without their prefixes."""
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ValueError(f"{source}: not a state dict (a mapping of names to tensors)")
    state = {}
    for key, value in raw.items():
        name = key.removeprefix("module.")
        if name.startswith("denoise_fn."):
            state[name.removeprefix("denoise_fn.")] = value
    if not state:
        raise ValueError(f"{source}: no 'denoise_fn.*' weights; expected an official EMDiffuse "
                         "<epoch>_Network.pth or <epoch>_Network_ema.pth")
    return state


def import_official(checkpoint: str | Path, task: str, output: str | Path, *, log=print):
    """Convert an official EMDiffuse-n/-r checkpoint into a model file that ``emdiffuse predict`` and
    ``transfer`` fine-tuning load like any trained ``emdiffuse`` model; returns the method."""
    from .registry import build_method

    if task not in TASK_SCALES:
        raise ValueError(f"task must be one of {sorted(TASK_SCALES)}, got {task!r}")
    checkpoint = Path(checkpoint)
    content = checkpoint.read_bytes()  # read once: loaded and fingerprinted
    try:
        raw = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{checkpoint}: not a readable PyTorch checkpoint ({exc})") from exc
    state = official_unet_state(raw, str(checkpoint))
    out = state.get("out.2.weight")
    if out is None:
        raise ValueError(f"{checkpoint}: no output convolution 'denoise_fn.out.2.weight'; not an EMDiffuse U-Net")
    difficulty = out.shape[0] == 2  # the difficulty-aware loss adds a log-scale output channel
    params = {"model": {"preset": "official"},
              "train": {"iterations": 0, "warmup": 0, "ema_decay": None, "difficulty_loss": difficulty}}
    method = build_method("emdiffuse", params, device=torch.device("cpu"), seed=0)
    try:
        method.diffusion.net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{checkpoint}: its U-Net does not match the official EMDiffuse network "
                         f"(config/EMDiffuse-n.json): {str(exc).splitlines()[0]}") from exc
    method.scale = TASK_SCALES[task]
    method.save(output)
    digest = hashlib.sha256(content).hexdigest()[:16]
    log(f"{checkpoint} (sha256 {digest}...): official EMDiffuse U-Net, {len(state)} tensors, "
        f"{'with' if difficulty else 'without'} the difficulty head, x{method.scale} -> {output}")
    return method
