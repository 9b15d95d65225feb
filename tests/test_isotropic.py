"""The isotropic task's steps: volume pairs (shapes, voxel sizes, disjoint z-ranges), the stretched
input, per-plane evaluation on known cases, the table, the config checks and predict/train files."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from emdiffuse.tasks import isotropic as iso
from emdiffuse.config import ConfigError
from emdiffuse.plan import check_config
from emdiffuse.data.degrade import anisotropic
from emdiffuse.io import load_npz
from emdiffuse.models.volumes import output_positions, read_volume, section_positions, write_volume


pytestmark = pytest.mark.usefixtures("one_thread")


def ramp_volume(shape=(40, 24, 20)):
    """Slice z has value z / depth everywhere, so every slice says where it came from."""
    z = np.arange(shape[0], dtype=np.float32)[:, None, None] / shape[0]
    return np.broadcast_to(z, shape).copy()


def smooth_volume(shape=(44, 48, 50), seed=0):
    """Structured values in [0.4, 0.6] (decorrelation needs structure, not white noise)."""
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    field = (field - field.min()) / (field.max() - field.min())
    return (0.4 + 0.2 * field).astype(np.float32)


def labels_for(volume):
    idx = np.indices(volume.shape)
    return {"mito": ((idx[1] + idx[2] + idx[0]) % 7 == 0).astype(np.uint8),
            "er": (idx[2] % 5 == 0).astype(np.uint8)}


@pytest.mark.parametrize("z", [3, 4])
def test_volume_pairs_shapes_voxels_and_disjoint_ranges(z):
    volume = ramp_volume()
    labels = labels_for(volume)
    pairs = iso.volume_pairs(volume, labels, (8, 8, 8), z_factor=z, test_sections=5, gap=3, test_crop=(16, 12))
    test_start, depth = pairs["test_range"]
    assert depth == 40 and test_start == 40 - 5 * z
    assert pairs["train_range"] == (0, test_start - 3)  # the gap separates the ranges
    assert pairs["train_range"][1] <= test_start
    assert pairs["train"].shape == (test_start - 3, 24, 20)
    np.testing.assert_array_equal(pairs["train"], volume[: test_start - 3])
    assert pairs["sections"].shape == (5, 16, 12)
    assert pairs["sections_voxel"] == (8.0 * z, 8.0, 8.0) and pairs["voxel"] == (8.0, 8.0, 8.0)
    q = output_positions(5, z)
    assert pairs["truth"].shape == (len(q), 16, 12)
    # the ground truth is the test slices at the output positions, centred crop (4, 4)
    np.testing.assert_array_equal(pairs["truth"], volume[test_start + q, 4:20, 4:16])
    np.testing.assert_allclose(pairs["sections"], anisotropic(volume[test_start:, 4:20, 4:16], z))
    for name, lab in labels.items():
        np.testing.assert_array_equal(pairs["truth_labels"][name], lab[test_start + q, 4:20, 4:16])
        np.testing.assert_array_equal(pairs["train_labels"][name], lab[: test_start - 3])
    # no ground-truth slice comes from the training range
    assert pairs["truth"].min() >= test_start / depth > pairs["train"].max()


def test_serial_section_data_gives_only_its_last_sections():
    volume = ramp_volume((12, 16, 16))
    pairs = iso.volume_pairs(volume, {}, (40, 8, 8), z_factor=5, test_sections=8, gap=2)
    assert set(pairs) == {"sections", "sections_voxel", "test_range"}
    np.testing.assert_array_equal(pairs["sections"], volume[4:])
    assert pairs["sections_voxel"] == (40.0, 8.0, 8.0)


def test_volume_pairs_errors_name_the_keys():
    volume = ramp_volume((20, 16, 16))
    with pytest.raises(ConfigError, match="tasks.isotropic.test_sections"):
        iso.volume_pairs(volume, {}, (8, 8, 8), z_factor=4, test_sections=4, gap=2)
    with pytest.raises(ConfigError, match="test_crop"):
        iso.volume_pairs(volume, {}, (8, 8, 8), z_factor=2, test_sections=3, gap=2, test_crop=(32, 8))


def test_make_volume_pairs_writes_files_with_voxel_sizes(tmp_path):
    from emdiffuse.io import save_npz

    volume = ramp_volume((33, 20, 18))
    write_volume(tmp_path / "volume.tif", volume, (8.0, 8.0, 8.0))
    save_npz(tmp_path / "labels.npz", **labels_for(volume))
    out = {k: str(tmp_path / f"{k}.{'npz' if 'labels' in k else 'tif'}")
           for k in ("train", "train_labels", "truth", "truth_labels")}
    iso.make_volume_pairs(str(tmp_path / "volume.tif"), str(tmp_path / "labels.npz"), z_factor=3, test_sections=4,
                          gap=2, test_crop=None, sections_path=str(tmp_path / "sections.tif"),
                          train_path=out["train"], train_labels_path=out["train_labels"],
                          truth_path=out["truth"], truth_labels_path=out["truth_labels"])
    sections, s_voxel = read_volume(tmp_path / "sections.tif")
    truth, t_voxel = read_volume(out["truth"])
    train, r_voxel = read_volume(out["train"])
    assert sections.shape == (4, 20, 18) and s_voxel == pytest.approx((24.0, 8.0, 8.0))
    assert truth.shape == (10, 20, 18) and t_voxel == pytest.approx((8.0, 8.0, 8.0))
    assert train.shape == (33 - 12 - 2, 20, 18) and r_voxel == pytest.approx((8.0, 8.0, 8.0))
    assert load_npz(out["truth_labels"])["mito"].shape == truth.shape
    assert load_npz(out["train_labels"])["er"].shape == train.shape
    with pytest.raises(ValueError, match="anisotropic"):  # serial-section voxels cannot give a ground truth
        write_volume(tmp_path / "aniso.tif", volume, (40.0, 8.0, 8.0))
        iso.make_volume_pairs(str(tmp_path / "aniso.tif"), None, z_factor=5, test_sections=4, gap=0, test_crop=None,
                              sections_path=str(tmp_path / "s2.tif"), train_path=out["train"],
                              train_labels_path=out["train_labels"], truth_path=out["truth"],
                              truth_labels_path=out["truth_labels"])


@pytest.mark.parametrize("z", [3, 4])
def test_stretch_nearest_repeats_the_closest_section(z):
    sections = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    stretched = iso.stretch_nearest(sections, z)
    q, p = output_positions(5, z), section_positions(5, z)
    assert stretched.shape == (len(q), 2, 2)
    nearest = np.abs(q[:, None] - p[None]).argmin(1)
    np.testing.assert_array_equal(stretched[:, 0, 0], nearest)


def test_evaluate_planes_on_a_known_offset():
    """A reconstruction off by exactly 0.1 everywhere: PSNR = 20 dB on every plane of every view;
    resolution_ratio only on XZ/YZ; planes spread over each view."""
    truth = smooth_volume()
    rows = iso.evaluate_planes(truth + 0.1, truth, ["PSNR", "SSIM", "resolution_ratio"], 5, dataset="d", method="m")
    assert list(rows.groupby("level_name", sort=False).size().items()) == [("xy", 5), ("xz", 5), ("yz", 5)]
    np.testing.assert_allclose(rows["PSNR"], 20.0, atol=1e-4)
    assert rows.loc[rows["level_name"] == "xy", "resolution_ratio"].isna().all()
    np.testing.assert_allclose(rows.loc[rows["level_name"] != "xy", "resolution_ratio"], 1.0, atol=1e-6)
    assert list(rows.loc[rows["level_name"] == "xy", "image"]) == [0, 11, 22, 32, 43]
    assert list(rows.loc[rows["level_name"] == "xz", "image"]) == [0, 12, 24, 35, 47]
    same = iso.evaluate_planes(truth, truth, ["SSIM"], 3, dataset="d", method="m")
    np.testing.assert_allclose(same["SSIM"], 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        iso.evaluate_planes(truth[:-1], truth, ["PSNR"], 3, dataset="d", method="m")


def test_table_per_plane_with_n_a_cells():
    truth = smooth_volume((44, 48, 48), seed=1)
    rows = pd.concat([iso.evaluate_planes(truth + off, truth, ["PSNR", "resolution_ratio"], 4, dataset="d", method=m)
                      for m, off in (("linear", 0.1), ("cubic", 0.05))])
    table = iso.summarize_planes(rows, ["PSNR", "resolution_ratio"], ["linear", "cubic"])
    assert list(zip(table["plane"], table["method"])) == [(p, m) for p in iso.VIEWS for m in ("linear", "cubic")]
    assert (table["n"] == 4).all()
    cubic = table[table["method"] == "cubic"]
    np.testing.assert_allclose(cubic["PSNR_mean"], 20 * np.log10(1 / 0.05), atol=1e-3)
    md = iso.planes_markdown(table, ["PSNR", "resolution_ratio"], budgets={"linear": "not learned"},
                             factors={"d": "x4"}, unscored={}, threshold=0.12)
    xy_rows = [line for line in md.splitlines() if line.startswith("| d | XY |")]
    assert len(xy_rows) == 2 and all(line.rstrip(" |").endswith("n/a") for line in xy_rows)
    assert "**26.0206" in md  # cubic is best on PSNR
    assert "resolution_ratio is scored on XZ/YZ only" in md and "- **d**: x4" in md


def test_learned_methods_are_paired_with_the_strongest_interpolation():
    truth = smooth_volume((44, 48, 48), seed=2)
    noise = np.random.default_rng(3).normal(0, 1, truth.shape)
    offsets = {"linear": 0.1, "cubic": 0.05, "srunet3d": 0.04}
    rows = pd.concat([iso.evaluate_planes(truth + off * noise, truth, ["PSNR", "resolution_ratio"], 4, dataset="d",
                                          method=m) for m, off in offsets.items()])
    assert iso.references(rows) == {"d": "cubic"}  # the interpolation with the highest PSNR
    paired = iso.paired_with_reference(rows, ["PSNR", "resolution_ratio"])
    assert list(zip(paired["plane"], paired["method"], paired["reference"])) == [
        (p, "srunet3d", "cubic") for p in iso.VIEWS]
    np.testing.assert_allclose(paired["PSNR_gain"], 20 * np.log10(0.05 / 0.04), atol=0.05)
    assert (paired["PSNR_gain_wins"] == 4).all()
    assert paired.loc[paired.plane == "xy", "resolution_ratio_gain"].isna().all()
    table = iso.summarize_planes(rows, ["PSNR", "resolution_ratio"], ["linear", "cubic", "srunet3d"])
    md = iso.planes_markdown(table, ["PSNR", "resolution_ratio"], budgets={}, factors={}, unscored={}, threshold=0.9,
                             paired=paired)
    section = md.split("## Paired with the strongest interpolation")[1]
    assert "| d | XZ | srunet3d | cubic | +1.93" in section and "4/4 better" in section
    xy_row = section.split("| d | XY | srunet3d | cubic |")[1].split("\n")[0]
    assert xy_row.endswith("n/a |")
    assert iso.paired_with_reference(rows[rows.method == "srunet3d"], ["PSNR"]).empty  # nothing to pair with


def base_config():
    return {
        "datasets": {"p": {"kind": "phantom", "style": "liver", "shape": [48, 32, 32], "voxel_nm": [8, 8, 8]},
                     "m": {"kind": "tiff", "path": "x.tif", "voxel_nm": [40, 8, 8]}},
        "methods": {"linear": {}, "vemdiffuse_i": {"train": {"iterations": 1}},
                    "vemdiffuse_a": {"train": {"iterations": 1}}},
        "tasks": {"isotropic": {"datasets": ["p", "m"], "methods": ["linear", "vemdiffuse_i", "vemdiffuse_a"],
                                "metrics": ["PSNR"], "z_factor": 4, "z_factor_by_dataset": {"m": 5},
                                "test_sections": 4, "segmentation": {"classes": ["mito", "er"],
                                                                     "train": {"iterations": 1}}}},
    }


def test_config_helpers_and_checks():
    config = base_config()
    check_config(config)
    task = config["tasks"]["isotropic"]
    assert iso.z_factor_for(task, "p") == 4 and iso.z_factor_for(task, "m") == 5
    assert iso.dataset_methods(task, config["datasets"]["p"]) == ["linear", "vemdiffuse_i", "vemdiffuse_a"]
    assert iso.dataset_methods(task, config["datasets"]["m"]) == ["linear", "vemdiffuse_a"]  # no isotropic data
    assert iso.segmented_datasets(config) == ["p"]
    assert iso.is_sampled("vemdiffuse_i", {}) and not iso.is_sampled("linear", {})
    assert not iso.is_sampled("vemdiffuse_i", {"predict": {"samples": 1}})
    from emdiffuse.models.catalog import train_params

    assert "predict" not in train_params({"train": {}, "predict": {"steps": 3}})
    assert "test sections themselves" in iso.budget("vemdiffuse_a", config["methods"]["vemdiffuse_a"])

    bad = copy.deepcopy(config)
    bad["tasks"]["isotropic"]["z_factor_by_dataset"] = {"q": 6}
    with pytest.raises(ConfigError, match="z_factor_by_dataset names 'q'"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["tasks"]["isotropic"]["z_factor_by_dataset"] = {"m": 2}  # 40 nm / 2 = 20 nm, far from 8 nm pixels
    with pytest.raises(ConfigError, match="z_factor_by_dataset.m.*about 5"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["datasets"]["m"]["voxel_nm"] = [30, 10, 10]  # x5 before; x4: 7.5 nm slices from 10 nm pixels
    bad["tasks"]["isotropic"]["z_factor_by_dataset"] = {"m": 4}
    with pytest.raises(ConfigError, match="z_factor_by_dataset.m: 4 turns 30 nm sections into 7.5 nm.*about 3"):
        check_config(bad)
    del bad["tasks"]["isotropic"]["z_factor_by_dataset"]  # the task's own factor names its own key
    bad["tasks"]["isotropic"]["z_factor"] = 2
    with pytest.raises(ConfigError, match=r"tasks.isotropic.z_factor \(for m; override .*\): 2 turns 30 nm"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["tasks"]["isotropic"]["metrics"] = ["PSNR", "resolution_ratio"]  # 4 sections x4: 12 slices deep
    with pytest.raises(ConfigError, match=r"test_sections: 4 sections x4 \(p\) reconstruct 12 slices.*use >= 12"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["methods"]["vemdiffuse_i"]["train"]["iteratons"] = 3
    with pytest.raises(ConfigError, match=r"methods.vemdiffuse_i.train: unknown key"):
        check_config(bad)


def test_predict_volume_writes_the_isotropic_voxel_and_checks_uncertainty(tmp_path):
    sections = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    write_volume(tmp_path / "s.tif", sections, (24.0, 4.0, 4.0))
    iso.predict_volume("cubic", {}, 3, None, str(tmp_path / "s.tif"), 0, str(tmp_path / "p.tif"), progress=False)
    pred, voxel = read_volume(tmp_path / "p.tif")
    assert pred.shape == (13, 16, 16) and voxel == pytest.approx((8.0, 4.0, 4.0))
    with pytest.raises(ValueError, match="uncertainty"):
        iso.predict_volume("cubic", {}, 3, None, str(tmp_path / "s.tif"), 0, str(tmp_path / "p.tif"),
                           str(tmp_path / "u.tif"), progress=False)


def test_train_then_predict_with_the_configs_predict_settings(tmp_path):
    """Training ignores the predict block; prediction applies the config's (here K = 1: no uncertainty)."""
    rng = np.random.default_rng(0)
    write_volume(tmp_path / "train.tif", rng.random((12, 16, 16)).astype(np.float32), (8.0, 8.0, 8.0))
    write_volume(tmp_path / "s.tif", rng.random((3, 16, 16)).astype(np.float32), (16.0, 8.0, 8.0))
    params = {"model": {"preset": "tiny"}, "train": {"iterations": 2, "batch_size": 1, "patch": 16}}
    model = tmp_path / "m" / "model.pt"
    iso.train_volume("vemdiffuse_i", params, 2, str(tmp_path / "train.tif"), 0, str(model),
                     str(tmp_path / "m" / "history.csv"), progress=False)
    assert len(pd.read_csv(tmp_path / "m" / "history.csv")) == 2
    predict = {"predict": {"sampler": "ddim", "steps": 1, "samples": 1, "tile": 16, "overlap": 0}}
    iso.predict_volume("vemdiffuse_i", predict, 2, str(model), str(tmp_path / "s.tif"), 0,
                       str(tmp_path / "p.tif"), progress=False)
    pred, voxel = read_volume(tmp_path / "p.tif")
    assert pred.shape == (4, 16, 16) and voxel == pytest.approx((8.0, 8.0, 8.0))
    with pytest.raises(ValueError, match="z_factor"):
        iso.load_for_prediction("vemdiffuse_i", predict, 4, str(model), 0)


def test_the_model_file_keeps_the_configs_predict_settings_for_the_cli(tmp_path):
    """`emdiffuse predict` on a workflow model samples as the benchmark did, and the stored settings
    do not enter the training fingerprint (a resumed run with other predict settings continues)."""
    from emdiffuse.models.volume_methods import load_volume_method

    write_volume(tmp_path / "train.tif", np.random.default_rng(0).random((12, 16, 16)).astype(np.float32),
                 (8.0, 8.0, 8.0))
    params = {"model": {"preset": "tiny"}, "train": {"iterations": 2, "batch_size": 1, "patch": 16}}
    for steps in (3, 5):
        iso.train_volume("vemdiffuse_i", params, 2, str(tmp_path / "train.tif"), 0, str(tmp_path / "model.pt"),
                         str(tmp_path / "history.csv"), predict={"sampler": "ancestral", "steps": steps,
                                                                 "init": "cubic"}, progress=False)
        stored = load_volume_method(tmp_path / "model.pt", device=torch.device("cpu")).params["predict"]
        assert (stored["sampler"], stored["steps"], stored["init"]) == ("ancestral", steps, "cubic")
    assert not list(tmp_path.glob("*.stale.*"))  # the second run resumed the first's checkpoint
