"""`emdiffuse predict` on a user's TIFF and Zarr files, and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from emdiffuse.cli import main
from emdiffuse.io import read_tiff, read_zarr, write_tiff, write_zarr
from emdiffuse.evaluation.calibration import DEFAULT_THRESHOLD
from emdiffuse.models.registry import build_method

@pytest.fixture
def model_path(tiny_diffusion_model):
    return tiny_diffusion_model


def test_predict_tiff_stack_writes_prediction_uncertainty_and_report(model_path, tmp_path):
    stack = (np.random.default_rng(1).random((2, 40, 36)) * 255).astype(np.uint8)
    write_tiff(tmp_path / "in.tif", stack, voxel_nm=(30.0, 4.0, 4.0))
    out = tmp_path / "out.tif"
    assert main(["predict", "--model", str(model_path), "--input", str(tmp_path / "in.tif"), "--output", str(out),
                 "--steps", "2", "--samples", "2"]) == 0
    pred, voxel = read_tiff(out)
    assert pred.shape == stack.shape and voxel == pytest.approx((30.0, 4.0, 4.0))
    unc, _ = read_tiff(tmp_path / "out_uncertainty.tif")
    assert unc.shape == stack.shape and (unc >= 0).all()
    report = json.loads((tmp_path / "out_reliability.json").read_text())
    assert len(report["reliability"]) == 2 and report["threshold"] == DEFAULT_THRESHOLD
    assert report["reliability"][0] == pytest.approx(np.percentile(unc[0], 99) / pred[0].std(), rel=1e-4)


def test_predict_zarr_image(model_path, tmp_path):
    image = np.random.default_rng(2).random((32, 48)).astype(np.float32) * 1000
    write_zarr(tmp_path / "in.zarr", image, voxel_nm=(5.0, 5.0))
    assert main(["predict", "--model", str(model_path), "--input", str(tmp_path / "in.zarr"),
                 "--output", str(tmp_path / "out.zarr"), "--samples", "2"]) == 0
    pred, voxel = read_zarr(tmp_path / "out.zarr")
    assert pred.shape == image.shape and voxel == (5.0, 5.0)
    assert 0.0 <= pred.min() and pred.max() <= 1.0
    assert (tmp_path / "out.zarr" / ".zattrs").exists()  # OME-Zarr: napari and Fiji open it as is


def test_predict_reads_the_ome_zarr_the_workflow_writes(model_path, tmp_path):
    from emdiffuse.models.volumes import write_volume

    stack = np.random.default_rng(3).random((2, 40, 36)).astype(np.float32)
    write_volume(tmp_path / "sections.zarr", stack, (30.0, 4.0, 4.0))
    assert main(["predict", "--model", str(model_path), "--input", str(tmp_path / "sections.zarr"),
                 "--output", str(tmp_path / "out.zarr"), "--samples", "2"]) == 0
    pred, voxel = read_zarr(tmp_path / "out.zarr")
    assert pred.shape == stack.shape and voxel == pytest.approx((30.0, 4.0, 4.0))
    unc, _ = read_zarr(tmp_path / "out_uncertainty.zarr")
    assert unc.shape == stack.shape


@pytest.mark.parametrize("name, content, words", [
    ("bad.tif", b"this is not a tiff", "not a readable TIFF"),
    ("image.png", b"\x89PNG", "unsupported format '.png'"),
    ("missing.tif", None, "no such file"),
])
def test_bad_input_gives_a_clear_error(model_path, tmp_path, capsys, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["predict", "--model", str(model_path), "--input", str(path), "--output",
                 str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert words in err and str(path) in err
    assert not (tmp_path / "o.tif").exists()


def _truncated_tiff(path):
    write_tiff(path, np.random.default_rng(0).random((4, 64, 64), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:40000])


def _colour_tiff(path):
    grey = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    tifffile.imwrite(path, np.stack([grey, grey[::-1], grey], -1), photometric="rgb")


@pytest.mark.parametrize("make, words", [(_truncated_tiff, "not a readable TIFF (failed to read"),
                                         (_colour_tiff, "a colour image (3 samples per pixel")])
def test_truncated_and_colour_tiffs_are_refused_with_the_file_named(model_path, tmp_path, capsys, make, words):
    path = tmp_path / "in.tif"
    make(path)
    assert main(["predict", "--model", str(model_path), "--input", str(path), "--output",
                 str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert words in err and str(path) in err and not (tmp_path / "o.tif").exists()


def test_an_rgb_tiff_of_grey_em_is_restored_as_one_grey_image(model_path, tmp_path):
    grey = np.random.default_rng(0).integers(0, 255, (32, 48), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([grey] * 3, -1), photometric="rgb")
    with pytest.warns(UserWarning, match="colour channels are equal: read as a grey image"):
        assert main(["predict", "--model", str(model_path), "--input", str(tmp_path / "rgb.tif"), "--output",
                     str(tmp_path / "o.tif"), "--steps", "2", "--samples", "1"]) == 0
    assert read_tiff(tmp_path / "o.tif")[0].shape == (32, 48)


def test_bad_model_file_gives_a_clear_error(tmp_path, capsys):
    (tmp_path / "m.pt").write_bytes(b"garbage")
    write_tiff(tmp_path / "in.tif", np.zeros((32, 32), np.uint8))
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "o.tif")]) == 2
    assert "not a readable method checkpoint" in capsys.readouterr().err


def test_predict_never_writes_over_its_input_and_asks_before_overwriting(model_path, tmp_path, capsys):
    image = (np.random.default_rng(3).random((32, 32)) * 255).astype(np.uint8)
    write_tiff(tmp_path / "a.tif", image)
    before = (tmp_path / "a.tif").read_bytes()
    args = ["predict", "--model", str(model_path), "--input", str(tmp_path / "a.tif"), "--steps", "2"]
    assert main(args + ["--output", str(tmp_path / "a.tif")]) == 2
    assert main(args + ["--output", str(tmp_path / "a.tif"), "--overwrite"]) == 2  # not even with --overwrite
    assert "would replace the input" in capsys.readouterr().err
    assert (tmp_path / "a.tif").read_bytes() == before
    assert main(args + ["--output", str(tmp_path / "b.tif")]) == 0
    assert main(args + ["--output", str(tmp_path / "b.tif")]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(args + ["--output", str(tmp_path / "b.tif"), "--overwrite"]) == 0


@pytest.mark.parametrize("flag, value, words", [("--samples", "0", "argument --samples: expected an integer >= 1, got 0"),
                                               ("--threads", "-2", "argument --threads: expected an integer >= 1"),
                                               ("--steps", "x", "argument --steps: expected an integer >= 1, got 'x'")])
def test_bad_numbers_are_refused_by_flag(model_path, tmp_path, capsys, flag, value, words):
    write_tiff(tmp_path / "in.tif", np.zeros((32, 32), np.uint8))
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", str(model_path), "--input", str(tmp_path / "in.tif"), "--output",
              str(tmp_path / "o.tif"), flag, value])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def _nan_image(path):
    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    image[3, 4] = np.nan
    write_tiff(path, image)


@pytest.mark.parametrize("case, words", [
    ("nan", "1 of 1024 values are not finite (NaN or inf)"),
    ("constant", "volume is constant between percentiles"),
    ("input folder", "--input {d}/folder: a folder, expected an image file"),
    ("output folder", "--output {d}/folder: a folder, expected an image file"),
    ("no output folder", "the folder {d}/nowhere does not exist"),
    ("cuda", "device 'cuda': no CUDA device is visible"),
    ("other preset", "its weights do not fit the network its settings describe"),
])
def test_bad_runs_stop_before_any_computation_with_the_cause_named(model_path, tmp_path, capsys, case, words):
    image, out, model, extra = tmp_path / "in.tif", tmp_path / "o.tif", model_path, []
    (tmp_path / "folder").mkdir()
    write_tiff(image, np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8))
    if case == "nan":
        _nan_image(image)
    elif case == "constant":
        write_tiff(image, np.full((32, 32), 0.5, np.float32))
    elif case == "input folder":
        image = tmp_path / "folder"
    elif case == "output folder":
        out = tmp_path / "folder"
    elif case == "no output folder":
        out = tmp_path / "nowhere" / "o.tif"
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is visible")
        extra = ["--device", "cuda"]
    elif case == "other preset":
        ckpt = torch.load(model_path, weights_only=True)
        ckpt["params"]["model"] = {"preset": "cpu-small"}
        model = tmp_path / "other.pt"
        torch.save(ckpt, model)
    assert main(["predict", "--model", str(model), "--input", str(image), "--output", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert words.format(d=tmp_path) in err and (case in ("cuda", "other preset") or str(image) in err or str(out) in err)
    assert not (tmp_path / "o.tif").exists()


def test_super_resolution_output_carries_the_finer_pixel_size(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.random((4, 32, 32)).astype(np.float32)
    inputs = targets.reshape(4, 16, 2, 16, 2).mean(axis=(2, 4))
    method = build_method("care", {"model": {"n_first": 4}, "train": {"iterations": 2, "batch_size": 2, "patch": 16}},
                          device=torch.device("cpu"), seed=0)
    method.fit(inputs, targets, checkpoint_path=tmp_path / "ckpt.pt", progress=False)
    method.save(tmp_path / "sr.pt")
    write_tiff(tmp_path / "in.tif", (rng.random((20, 24)) * 255).astype(np.uint8), voxel_nm=(8.0, 8.0))
    assert main(["predict", "--model", str(tmp_path / "sr.pt"), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "o.tif")]) == 0
    pred, voxel = read_tiff(tmp_path / "o.tif")
    assert pred.shape == (40, 48) and voxel == pytest.approx((4.0, 4.0))


def test_a_full_disk_is_a_message_not_a_traceback(model_path, tmp_path, capsys, monkeypatch):
    import errno

    import emdiffuse.io

    def full(path, *_args):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(emdiffuse.io, "write_image", full)
    write_tiff(tmp_path / "in.tif", np.zeros((32, 32), np.uint8) + np.arange(32, dtype=np.uint8))
    assert main(["predict", "--model", str(model_path), "--input", str(tmp_path / "in.tif"), "--output",
                 str(tmp_path / "o.tif"), "--steps", "2", "--samples", "1"]) == 2
    assert "No space left on device" in capsys.readouterr().err and not (tmp_path / "o.tif").exists()


def test_a_volume_model_reconstructs_a_users_sections_with_the_finer_z_spacing(tmp_path):
    """vEMDiffuse through the CLI: sections in, the slices between them out, z spacing / z-factor,
    an uncertainty volume and one reliability score per output slice; tiling flags apply."""
    from emdiffuse.data.phantom import generate_volume
    from emdiffuse.models.volume_methods import build_volume_method
    from emdiffuse.models.volumes import make_anisotropic, output_positions

    iso, _ = generate_volume((17, 20, 28), 8.0, seed=0)
    params = {"model": {"preset": "tiny"},
              "diffusion": {"test_schedule": {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 100}},
              "train": {"iterations": 2, "batch_size": 2, "patch": 16, "ema_decay": None},
              "predict": {"steps": 3, "samples": 2, "tile": 64, "overlap": 4, "init": "cubic"}}
    method = build_volume_method("vemdiffuse_i", params, z_factor=3, device=torch.device("cpu"), seed=0)
    method.fit(iso, checkpoint_path=tmp_path / "ckpt.pt", progress=False)
    method.save(tmp_path / "vem.pt")
    sections = make_anisotropic(iso, 3)
    write_tiff(tmp_path / "sections.tif", (sections * 255).astype(np.uint8), voxel_nm=(24.0, 8.0, 8.0))
    assert main(["predict", "--model", str(tmp_path / "vem.pt"), "--input", str(tmp_path / "sections.tif"),
                 "--output", str(tmp_path / "iso.tif"), "--steps", "2", "--tile", "16", "--overlap", "4"]) == 0
    pred, voxel = read_tiff(tmp_path / "iso.tif")
    depth = len(output_positions(len(sections), 3))
    assert pred.shape == (depth, 20, 28) and voxel == pytest.approx((8.0, 8.0, 8.0))
    unc, _ = read_tiff(tmp_path / "iso_uncertainty.tif")
    assert unc.shape == pred.shape and unc.max() > 0
    assert len(json.loads((tmp_path / "iso_reliability.json").read_text())["reliability"]) == depth
    image = tmp_path / "one.tif"
    write_tiff(image, (sections[0] * 255).astype(np.uint8))
    assert main(["predict", "--model", str(tmp_path / "vem.pt"), "--input", str(image),
                 "--output", str(tmp_path / "x.tif")]) == 2


def test_a_setting_the_model_does_not_have_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32)).astype(np.float32)
    care = build_method("care", {"model": {"n_first": 4}, "train": {"iterations": 1, "batch_size": 2, "patch": 16}},
                        device=torch.device("cpu"), seed=0)
    care.fit(x, x, checkpoint_path=tmp_path / "ckpt.pt", progress=False)
    care.save(tmp_path / "care.pt")
    write_tiff(tmp_path / "in.tif", (x[0] * 255).astype(np.uint8))
    assert main(["predict", "--model", str(tmp_path / "care.pt"), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "o.tif"), "--steps", "5"]) == 2
    assert "--steps: care has no such setting (it takes: --tile, --overlap, --batch)" in capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()
    assert main(["predict", "--model", str(tmp_path / "care.pt"), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "o.tif"), "--tile", "16", "--overlap", "4"]) == 0


class _Recorded:
    """A lazy stack that records how many values each read takes."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        out = np.asarray(self.array[key])
        self.reads.append(out.size)
        return out


@pytest.mark.parametrize("kind", ["2d", "volume"])
def test_a_stack_larger_than_the_slab_budget_is_restored_slab_by_slab(kind, model_path, tmp_path, monkeypatch):
    """Read lazily (a TIFF through tifffile's Zarr view), percentiles from evenly spaced slices,
    one slice (2D model) or one z chunk (volume model) read at a time, written through a staged
    Zarr: the same output as the whole stack in memory."""
    import emdiffuse.cli as cli
    import emdiffuse.tasks.restore as restore
    import emdiffuse.io as io
    from emdiffuse.models.registry import load_model_file
    from emdiffuse.models.volume_methods import build_volume_method

    stack = (np.random.default_rng(2).random((9, 24, 32)) * 4000).astype(np.uint16)
    write_tiff(tmp_path / "in.tif", stack, voxel_nm=(24.0, 8.0, 8.0))
    monkeypatch.setattr(io, "LAZY_TIFF_BYTES", 0)
    monkeypatch.setattr(restore, "PERCENTILE_SAMPLE", 3 * 24 * 32)  # every third slice
    lazy, _ = io.open_image(tmp_path / "in.tif")
    assert not isinstance(lazy, np.ndarray)
    recorded = _Recorded(lazy)
    monkeypatch.setattr(cli, "open_image", lambda path: (recorded, (24.0, 8.0, 8.0)))
    if kind == "2d":
        path, model, slab = model_path, load_model_file(model_path, device=torch.device("cpu")), 24 * 32
    else:
        model = build_volume_method("linear", {"predict": {"chunk": 3}}, z_factor=3, device=torch.device("cpu"), seed=0)
        model.fit(np.zeros((6, 24, 32), np.float32), checkpoint_path=tmp_path / "l.ckpt", progress=False)
        path, slab = tmp_path / "linear.pt", 3 * 24 * 32
        model.save(path)
    assert main(["predict", "--model", str(path), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "o.zarr")]) == 0
    assert max(recorded.reads[1:]) <= slab and recorded.reads[0] == 3 * 24 * 32  # the percentile sample
    to_unit = restore.unit_range(stack, "in")
    expected = model.predict(to_unit(stack), seed=0, progress=False)
    np.testing.assert_array_equal(read_zarr(tmp_path / "o.zarr")[0], expected["prediction"])
    if "uncertainty" in expected:
        np.testing.assert_array_equal(read_zarr(tmp_path / "o_uncertainty.zarr")[0], expected["uncertainty"])
    assert sorted(p.name for p in tmp_path.iterdir() if "stage" in p.name or "partial" in p.name) == []
