"""Export a trained 2D model to the BioImage Model Zoo format (``emdiffuse export-bmz``).

The package describes (bioimageio.spec 0.5) one input, the degraded image, normalised per image from
its 0.1 / 99.9 percentiles to [0, 1] and clipped (as ``emdiffuse predict`` does for non-8-bit
images), and the restored image in [0, 1] (EMDiffuse also the K samples' std, the uncertainty map).
CARE, RCAN and PSSR carry their trained state dict with a self-contained architecture file (the
network's source and :class:`~emdiffuse.models.frozen.Restorer`) and a TorchScript conversion;
EMDiffuse a TorchScript module with its sampler, chain, K and seed built in
(:class:`~emdiffuse.models.frozen.DiffusionSampler`). Test tensors come from a real EM crop unless
one is given; the package is written with ``save_bioimageio_package`` and can be checked with
``bioimageio.core.test_model``.
"""

from __future__ import annotations

import inspect
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import torch

from emdiffuse.io import atomic_path, read_image

REAL_EM = Path(__file__).resolve().parent.parent / "resources" / "real-em" / "medulla_fibsem_10nm.tif"
EXPORTABLE = ("care", "rcan", "pssr", "emdiffuse", "emdiffuse_v")
INPUT_PERCENTILES = (0.1, 99.9)
#: CARE, RCAN, PSSR: one network evaluation, float32 round-off only
FEEDFORWARD_TOLERANCE = {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-4, "mismatched_elements_per_million": 10}
#: EMDiffuse: the sampler's chain carries round-off from step to step; on one machine the output
#: is bitwise reproducible (seeded CPU generator); other CPUs, thread counts or GPUs differ in the
#: network's summation order, which the chain's few steps amplify to at most ~1e-3 (measured:
#: 1 vs 2 threads, tests/test_bmz.py)
SAMPLER_TOLERANCE = {"relative_tolerance": 1e-2, "absolute_tolerance": 2e-3, "mismatched_elements_per_million": 1000}
CITATIONS = {
    "emdiffuse": ("Lu et al. (2024) Diffusion-based deep learning method for augmenting ultrastructural imaging "
                  "and volume electron microscopy. Nature Communications 15, 4677", "10.1038/s41467-024-49125-z"),
    "care": ("Weigert et al. (2018) Content-aware image restoration (CSBDeep)", "https://github.com/CSBDeep/CSBDeep"),
    "rcan": ("Zhang et al. (2018) RCAN; Chen et al. (2021) 3D-RCAN", "https://github.com/AiviaCommunity/3D-RCAN"),
    "pssr": ("Fang et al. (2021) Point-scanning super-resolution (PSSR)", "https://github.com/BPHO-Salk/PSSR"),
}


def export_bmz(model_path: str | Path, output: str | Path, *, test_image: np.ndarray | None = None,
               size: int = 64, seed: int = 0) -> Path:
    """Write ``output`` (.zip) for the model file ``model_path``; ``test_image`` (2D, on the input
    grid, any intensity range) is centre-cropped to ``size`` target pixels. A diffusion model samples
    with the noise ``emdiffuse predict --seed <seed>`` gives a one-tile image."""
    try:
        from bioimageio.spec import save_bioimageio_package
    except ImportError as exc:
        raise ValueError("export-bmz needs bioimageio.core: pip install 'emdiffuse[bmz]' (or the test extras)") from exc
    from emdiffuse.models.frozen import frozen_module
    from emdiffuse.models.registry import load_model_file

    output = Path(output)
    if output.suffix != ".zip":
        raise ValueError(f"{output}: the package is a .zip file")
    method = load_model_file(model_path, device=torch.device("cpu"))
    name = method.name
    if name not in EXPORTABLE:
        raise ValueError(f"{model_path}: a {name!r} model; export-bmz takes the 2D methods {list(EXPORTABLE)} "
                         f"(volume methods and the non-learned input are not exported)")
    multiple = input_multiple(method)
    side = size // method.scale
    if side < multiple or side % multiple:
        raise ValueError(f"size: {size} target px must be a multiple of {multiple * method.scale} for this model")
    module = frozen_module(method, size, seed=seed)
    test_input = _test_input(test_image, side, method.scale)
    normalised = torch.from_numpy(_unit_range(test_input))[None, None]
    with torch.no_grad():
        outputs = module(normalised)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    with tempfile.TemporaryDirectory() as tmp:
        files = _write_files(Path(tmp), method, module, test_input, outputs)
        descr = _description(method, files, multiple, name)
        with atomic_path(output) as partial:
            save_bioimageio_package(descr, output_path=partial)
    return output


def input_multiple(method) -> int:
    """Input sizes must be multiples of this (so that the target grid fits the network's strides)."""
    from emdiffuse.models.baselines import LowResInputMethod
    from emdiffuse.models.methods import CAREMethod

    if isinstance(method, LowResInputMethod):
        return method._size_multiple() // method.scale
    target = 2 ** method.params["model"]["n_depth"] if isinstance(method, CAREMethod) else method.multiple
    return math.lcm(target, method.scale) // method.scale


def _test_input(image: np.ndarray | None, side: int, scale: int) -> np.ndarray:
    """A centre crop of ``image`` (default: the shipped real FIB-SEM volume's middle slice,
    mean-pooled to the model's input grid), ``side`` px square, float32."""
    if image is None:
        volume, _ = read_image(REAL_EM)
        image = volume[len(volume) // 2].astype(np.float32)
        if scale > 1:
            h, w = (n // scale * scale for n in image.shape)
            image = image[:h, :w].reshape(h // scale, scale, w // scale, scale).mean((1, 3))
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or min(image.shape) < side:
        raise ValueError(f"test image: expected a 2D image of at least {side} x {side} px, got shape {image.shape}")
    y, x = ((n - side) // 2 for n in image.shape)
    return np.ascontiguousarray(image[y:y + side, x:x + side])


def _unit_range(image: np.ndarray) -> np.ndarray:
    """The package's preprocessing (scale_range per sample, eps 1e-6, then clip to [0, 1])."""
    low, high = np.percentile(image, INPUT_PERCENTILES)
    return np.clip((image - low) / (high - low + 1e-6), 0.0, 1.0).astype(np.float32)


def _write_files(tmp: Path, method, module, test_input: np.ndarray, outputs) -> dict[str, Path]:
    from emdiffuse.models.frozen import restorer_kwargs, restorer_state

    files = {"torchscript": tmp / "model.torchscript.pt", "input": tmp / "test_input.npy",
             "doc": tmp / "README.md"}
    module.save(str(files["torchscript"]))
    np.save(files["input"], test_input[None, None])
    for i, out in enumerate(outputs):
        files[f"output{i}"] = tmp / f"test_output_{i}.npy"
        np.save(files[f"output{i}"], out.numpy().astype(np.float32))
    if method.name in ("care", "rcan", "pssr"):
        files["weights"] = tmp / "weights.pt"
        torch.save(restorer_state(method), files["weights"])
        files["architecture"] = tmp / "architecture.py"
        files["architecture"].write_text(architecture_source(restorer_kwargs(method)["network"]))
    files["doc"].write_text(_documentation(method))
    return files


def architecture_source(network: str) -> str:
    """One importable file that defines ``Restorer`` and ``network`` with torch alone."""
    from emdiffuse.models import care, frozen, pssr, rcan

    modules = {"CAREUNet": [care], "RCAN": [rcan], "PSSRUNet": [rcan, pssr]}[network]
    keep = []
    for module in modules:
        keep += [line for line in inspect.getsource(module).splitlines()
                 if not line.startswith(("from __future__", "from emdiffuse"))]
    return "\n".join([
        "# Generated by emdiffuse export-bmz: the network and its normalisation wrapper, torch and numpy only.",
        "from __future__ import annotations", "import math", "from typing import List, Optional, Tuple",
        *keep, "", f"NETWORKS = {{{network!r}: {network}}}", "", "",
        inspect.getsource(frozen.percentile), "", inspect.getsource(frozen.Restorer)])


def _documentation(method) -> str:
    budget = method.budget()
    lines = [f"# {method.name} ({'super-resolution x%d' % method.scale if method.scale > 1 else 'denoising'})", "",
             "Exported by `emdiffuse export-bmz` from a model trained by the EMDiffuse benchmark workflow.", "",
             "- Input: one EM image, normalised per image from its 0.1 / 99.9 percentiles to [0, 1] and clipped.",
             f"- Output: the restored image in [0, 1], {method.scale}x the input size."]
    if method.name.startswith("emdiffuse"):
        s = method.params["predict"]
        lines += [f"- Sampling: {s['sampler']} sampler, {s['steps']} steps, init {s['init']}, mean of K = "
                  f"{s['samples']} samples; a second output is their per-pixel std (uncertainty, [0, 1] units). "
                  "The seed is built in: the same input gives the same output. Float32 throughout.",
                  "- Reliability: the project flags a prediction unreliable when its mean uncertainty relative "
                  "to its mean intensity exceeds a calibrated threshold (see the benchmark's README)."]
    lines += ["", "## Training", "", "```json", json.dumps({"params": method.params, "budget": budget}, indent=1,
                                                           default=str), "```", ""]
    return "\n".join(lines)


def _description(method, files: dict[str, Path], multiple: int, name: str):
    from bioimageio.spec.model import v0_5 as bmz

    size = bmz.ParameterizedSize(min=multiple, step=multiple)
    space_in = [bmz.SpaceInputAxis(id=bmz.AxisId(a), size=size, scale=1.0) for a in ("y", "x")]
    preprocessing = [
        bmz.ScaleRangeDescr(kwargs=bmz.ScaleRangeKwargs(axes=[bmz.AxisId("y"), bmz.AxisId("x")],
                                                        min_percentile=INPUT_PERCENTILES[0],
                                                        max_percentile=INPUT_PERCENTILES[1])),
        bmz.ClipDescr(kwargs=bmz.ClipKwargs(min=0.0, max=1.0))]
    inputs = [bmz.InputTensorDescr(
        id=bmz.TensorId("input"), description="degraded EM image (any intensity range)",
        axes=[bmz.BatchAxis(), bmz.ChannelAxis(channel_names=[bmz.Identifier("em")]), *space_in],
        test_tensor=bmz.FileDescr(source=files["input"]), preprocessing=preprocessing)]
    out_names = [("prediction", "restored image in [0, 1]")]
    if "output1" in files:
        out_names.append(("uncertainty", "std of the K samples, [0, 1] intensity units"))
    outputs = [bmz.OutputTensorDescr(
        id=bmz.TensorId(tid), description=text,
        axes=[bmz.BatchAxis(), bmz.ChannelAxis(channel_names=[bmz.Identifier(tid)]),
              *[bmz.SpaceOutputAxis(id=bmz.AxisId(a), scale=1.0 / method.scale,
                                    size=bmz.SizeReference(tensor_id=bmz.TensorId("input"), axis_id=bmz.AxisId(a)))
                for a in ("y", "x")]],
        test_tensor=bmz.FileDescr(source=files[f"output{i}"]))
        for i, (tid, text) in enumerate(out_names)]
    version = bmz.Version(torch.__version__.split("+")[0])
    sampler = name.startswith("emdiffuse")
    if sampler:
        weights = bmz.WeightsDescr(torchscript=bmz.TorchscriptWeightsDescr(source=files["torchscript"],
                                                                          pytorch_version=version))
    else:
        from emdiffuse.models.frozen import restorer_kwargs

        kwargs = restorer_kwargs(method)
        weights = bmz.WeightsDescr(
            pytorch_state_dict=bmz.PytorchStateDictWeightsDescr(
                source=files["weights"], pytorch_version=version,
                architecture=bmz.ArchitectureFromFileDescr(source=files["architecture"],
                                                           callable=bmz.Identifier("Restorer"), kwargs=kwargs)),
            torchscript=bmz.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=version,
                                                    parent="pytorch_state_dict"))
    text, ref = CITATIONS["emdiffuse" if sampler else name]
    cite = bmz.CiteEntry(text=text, doi=bmz.Doi(ref)) if ref.startswith("10.") else bmz.CiteEntry(text=text, url=ref)
    tolerance = SAMPLER_TOLERANCE if sampler else FEEDFORWARD_TOLERANCE
    task = "super-resolution" if method.scale > 1 else "denoising"
    return bmz.ModelDescr(
        name=f"{name} EM {task}".replace("_", " "),
        description=f"{name} for EM {task}, trained with the EMDiffuse benchmark workflow",
        authors=[bmz.Author(name="EMDiffuse benchmark contributors")], cite=[cite],
        license=bmz.LicenseId("MIT"), documentation=bmz.FileDescr(source=files["doc"]), tags=["electron-microscopy", task, name],
        inputs=inputs, outputs=outputs, weights=weights,
        config=bmz.Config(bioimageio=bmz.BioimageioConfig(
            reproducibility_tolerance=[bmz.ReproducibilityTolerance(**tolerance)])))
