"""Train/test splits and denoising pairs cut from a prepared volume."""

from __future__ import annotations

import numpy as np
import pytest

from emdiffuse.config import ConfigError
from emdiffuse.data.datasets import load_volume, prepare, save_prepared
from emdiffuse.io import load_npz
from emdiffuse.data.pairs import centre, centre_crop_pairs, denoise_pairs, split_slices, spread, superres_pairs
from emdiffuse.tasks.image.data import make_pairs

PAIRS = {"gt_dwell_us": 36.0, "dwell_us": [0.5, 4.0], "electrons_per_us": 20.0, "read_noise": 1.0}


def test_split_holds_out_a_z_range_with_a_gap():
    s = split_slices(64, test_fraction=0.25, gap=8, slice_step=2)
    assert s["test"][0] == 48 and s["test"][-1] == 62
    assert s["train"].max() < 48 - 8
    assert set(s["train"]).isdisjoint(s["test"])
    assert list(s["held_out"]) == [40, 42, 44, 46] and list(centre(s["held_out"], 1)) == [42]
    assert list(centre(s["held_out"], 2)) == [42, 44] and list(centre(s["held_out"], 9)) == [40, 42, 44, 46]


def test_split_too_small_names_the_keys():
    with pytest.raises(ValueError, match="split.gap"):
        split_slices(8, test_fraction=0.5, gap=8, slice_step=1)


def test_spread_is_even():
    assert list(spread(np.arange(10), 3)) == [0, 4, 9] or list(spread(np.arange(10), 3)) == [0, 5, 9]
    assert list(spread(np.arange(3), 5)) == [0, 1, 2]


def test_denoise_pairs_levels_and_noise_order():
    rng = np.random.default_rng(0)
    volume = np.full((4, 32, 32), 0.5, dtype=np.float32)
    p = denoise_pairs(volume, np.array([0, 2]), PAIRS, rng)
    assert p["inputs"].shape == (4, 32, 32) and p["targets"].shape == (4, 32, 32)
    assert list(p["level"]) == [0, 1, 0, 1] and list(p["z"]) == [0, 0, 2, 2]
    assert list(p["level_name"]) == ["0.5 us", "4 us"]
    # a pair shares one ground truth per slice; shorter dwell is noisier
    assert np.array_equal(p["targets"][0], p["targets"][1])
    noise = [np.std(p["inputs"][p["level"] == k] - 0.5) for k in (0, 1)]
    assert noise[0] > 2 * noise[1] > 0
    assert np.std(p["targets"] - 0.5) < noise[1]


def test_make_pairs_from_a_prepared_phantom_is_deterministic(tmp_path):
    entry = {"kind": "phantom", "style": "neuropil", "shape": [16, 48, 48], "voxel_nm": [8, 8, 8]}
    save_prepared(prepare("ph", entry, seed=0), tmp_path / "v.tif", tmp_path / "l.npz", tmp_path / "a.npz")
    volume, voxel = load_volume(tmp_path / "v.tif")
    assert volume.shape == (16, 48, 48) and voxel == (8.0, 8.0, 8.0)
    task = {"test_images": 2, "pairs": PAIRS}
    split = {"test_fraction": 0.25, "gap": 2, "slice_step": 2}
    for run in ("a", "b"):
        make_pairs("denoise", task, split, tmp_path / "v.tif", 7, tmp_path / f"{run}_train.npz",
                   tmp_path / f"{run}_test.npz", tmp_path / f"{run}_cal.npz")
    a, b = load_npz(tmp_path / "a_test.npz"), load_npz(tmp_path / "b_test.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert len(a["inputs"]) == 2 * 2
    train = load_npz(tmp_path / "a_train.npz")
    assert set(train["z"]).isdisjoint(a["z"])
    # one held-out slice (the default), at every level, from the gap between the two ranges
    calibration = load_npz(tmp_path / "a_cal.npz")
    assert len(calibration["inputs"]) == 2 and set(calibration["z"]) == {10}
    assert max(train["z"]) < 10 < min(a["z"])
    with pytest.raises(ConfigError, match=r"split.gap: 0 leaves no held-out slice .*tasks.denoise.calibration_images"):
        make_pairs("denoise", task, {**split, "gap": 0}, tmp_path / "v.tif", 7, tmp_path / "d_train.npz",
                   tmp_path / "d_test.npz", tmp_path / "d_cal.npz")
    assert set(load_npz(tmp_path / "l.npz")) >= {"mito", "er"}
    with pytest.warns(UserWarning, match=r"tasks.denoise.test_images: 9 asked, but .* has only 2 test slices"):
        make_pairs("denoise", {**task, "test_images": 9}, split, tmp_path / "v.tif", 7, tmp_path / "c_train.npz",
                   tmp_path / "c_test.npz", tmp_path / "c_cal.npz")


def test_test_crop_cuts_the_same_field_from_input_and_ground_truth():
    volume = np.random.default_rng(0).random((3, 40, 52), dtype=np.float32)
    sr = {"factor": 2, "probe_sigma_px": 1.0, "gt_dwell_us": 36.0, "dwell_us": [2.0], "electrons_per_us": 20.0,
          "read_noise": 1.0}
    whole = superres_pairs(volume, np.arange(3), sr, np.random.default_rng(1))
    cut = centre_crop_pairs(whole, (25, 100), factor=2)  # odd and oversized: 24 rows, all 52 columns
    assert cut["targets"].shape == (3, 24, 52) and cut["inputs"].shape == (3, 12, 26)
    # the corner is a multiple of the factor: the same field, sub-arrays of the whole pairs
    assert np.array_equal(cut["targets"], whole["targets"][:, 8:32]) and np.array_equal(cut["inputs"], whole["inputs"][:, 4:16])
    assert np.array_equal(cut["level"], whole["level"]) and centre_crop_pairs(whole, None) is whole


@pytest.mark.parametrize("value, words", [(np.nan, "1 of 4096 values are not finite (NaN or inf)"),
                                          (None, "volume is constant")])
def test_a_tiff_dataset_with_a_nan_or_no_contrast_stops_with_the_file_named(tmp_path, value, words):
    from emdiffuse.config import ConfigError
    from emdiffuse.io import write_tiff

    volume = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32) if value is not None \
        else np.ones((4, 32, 32), np.float32)
    if value is not None:
        volume[2, 3, 4] = value
    write_tiff(tmp_path / "stack.tif", volume)
    with pytest.raises(ConfigError, match=f"datasets.mine.path: {tmp_path}/stack.tif: .*{words.split('(')[0]}"):
        prepare("mine", {"kind": "tiff", "path": str(tmp_path / "stack.tif"), "voxel_nm": [8, 8, 8]}, seed=0)


def test_a_tiff_dataset_takes_its_labels_and_the_voxel_size_its_file_states(tmp_path):
    from emdiffuse.config import ConfigError
    from emdiffuse.data.datasets import fill_voxel_sizes
    from emdiffuse.io import write_tiff

    volume = np.random.default_rng(0).random((4, 32, 32), dtype=np.float32)
    write_tiff(tmp_path / "stack.tif", volume, voxel_nm=(30.0, 5.0, 5.0))
    write_tiff(tmp_path / "mito.tif", (volume > 0.5).astype(np.uint8) * 255)
    write_tiff(tmp_path / "bare.tif", volume)
    config = {"datasets": {"mine": {"kind": "tiff", "path": str(tmp_path / "stack.tif"),
                                    "labels": {"mito": str(tmp_path / "mito.tif")}}}}
    fill_voxel_sizes(config)
    assert config["datasets"]["mine"]["voxel_nm"] == [30.0, 5.0, 5.0]
    prepared = prepare("mine", config["datasets"]["mine"], seed=0)
    np.testing.assert_array_equal(prepared.labels["mito"], volume > 0.5)
    with pytest.raises(ConfigError, match=r"datasets.bare.voxel_nm: not given, and .*bare.tif does not state"):
        fill_voxel_sizes({"datasets": {"bare": {"kind": "tiff", "path": str(tmp_path / "bare.tif")}}})
    write_tiff(tmp_path / "small.tif", np.zeros((4, 16, 16), np.uint8))
    with pytest.raises(ConfigError, match=r"datasets.mine.labels.mito: .*small.tif has shape \(4, 16, 16\)"):
        prepare("mine", {**config["datasets"]["mine"], "labels": {"mito": str(tmp_path / "small.tif")}}, seed=0)
