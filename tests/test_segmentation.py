"""Segmentation mIoU: IoU on hand-made label volumes with known answers, the segmenter learning a
tiny synthetic volume (better than chance), its orthoplane output, the table and the 3D render."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

from emdiffuse.io import save_npz
from emdiffuse.tasks.segmentation import (
    Segmenter, class_volume, iou_per_class, mean_iou, mito3d_figure, segmentation_markdown, segmentation_table,
)

CPU = torch.device("cpu")


def test_class_volume_gives_the_first_listed_class_on_overlap():
    mito = np.zeros((2, 3, 3), np.uint8)
    er = np.zeros_like(mito)
    mito[0, 0, :2] = 1
    er[0, 0, 1:] = 1
    classes = class_volume({"mito": mito, "er": er, "membrane": np.ones_like(mito)}, ["mito", "er"])
    assert classes[0, 0].tolist() == [1, 1, 2] and classes.sum() == 4 and classes.dtype == np.uint8
    with pytest.raises(KeyError, match="lack the classes"):
        class_volume({"mito": mito}, ["mito", "er"])


def test_iou_known_answers_and_a_class_absent_from_both():
    """mito: 8-voxel cubes overlapping in 4 voxels -> 4 / 12; ER in neither volume -> undefined,
    left out of the mean, so mIoU = mito IoU; background counted separately."""
    ref = np.zeros((4, 4, 4), np.uint8)
    pred = np.zeros_like(ref)
    ref[0:2, 0:2, 0:2] = 1
    pred[0:2, 0:2, 1:3] = 1
    ious = iou_per_class(pred, ref, 3)
    assert ious[1] == pytest.approx(4 / 12)
    assert np.isnan(ious[2])
    assert ious[0] == pytest.approx((64 - 12) / (64 - 4))  # background: TP 52, union 60
    assert mean_iou(ious) == pytest.approx(4 / 12)  # background not counted, ER undefined


def test_iou_pools_voxels_and_penalises_false_classes():
    ref = np.zeros((2, 4, 4), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, :2] = 1  # 8 mito voxels in slice 0
    pred[0, :2] = 1  # all found
    ref[1, 0, 0] = 1  # 1 mito voxel in slice 1, missed
    pred[1, 3] = 2  # 4 ER voxels predicted, none in the labels
    ious = iou_per_class(pred, ref, 3)
    assert ious[1] == pytest.approx(8 / 9)  # pooled over voxels (per-slice averaging would give 0.5)
    assert ious[2] == 0.0  # predicted but absent from the labels: 0, and counted
    assert mean_iou(ious) == pytest.approx((8 / 9 + 0) / 2)
    assert np.isnan(mean_iou(np.array([0.9, np.nan, np.nan])))
    with pytest.raises(ValueError, match="differ in shape"):
        iou_per_class(pred[:1], ref, 3)
    with pytest.raises(ValueError, match="class index"):
        iou_per_class(pred + 1, ref, 3)


def synthetic(seed, shape=(24, 32, 32)):
    """Bright blobs (mito) and dark thin sheets (ER) on a textured background."""
    rng = np.random.default_rng(seed)
    z = lambda a: (a - a.mean()) / a.std()  # noqa: E731
    blobs = z(gaussian_filter(rng.random(shape), 3)) > 1.0  # ~15% of voxels
    sheets = (np.abs(z(gaussian_filter(rng.random(shape), 4))) < 0.08) & ~blobs  # thin curved sheets, ~5%
    image = 0.5 + 0.05 * gaussian_filter(rng.standard_normal(shape), 1)
    image[blobs] += 0.25
    image[sheets] -= 0.25
    image += 0.02 * rng.standard_normal(shape)
    return np.clip(image, 0, 1).astype(np.float32), {"mito": blobs.astype(np.uint8), "er": sheets.astype(np.uint8)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    volume, labels = synthetic(0)
    params = {"classes": ["mito", "er"], "model": {"n_depth": 1, "kern_size": 3, "n_first": 8},
              "train": {"iterations": 80, "batch_size": 4, "patch": 16, "lr": 3e-3, "checkpoint_every": 40},
              "predict": {"tile": 32, "overlap": 8, "batch": 8}}
    model = Segmenter(params, device=CPU, seed=0)
    path = tmp_path_factory.mktemp("seg") / "segmenter.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: threads only contend
    try:
        model.fit(volume, labels, checkpoint_path=path.with_name("checkpoint.pt"), progress=False,
                  log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    model.save(path)
    return model, path


def test_segmenter_beats_chance_on_a_synthetic_volume(trained):
    model, _ = trained
    volume, labels = synthetic(1)  # a volume it was not trained on
    reference = class_volume(labels, ["mito", "er"])
    score = mean_iou(iou_per_class(model.segment(volume), reference, 3))
    # chance: labels drawn independently with the true class shares
    rng = np.random.default_rng(0)
    share = np.bincount(reference.ravel(), minlength=3) / reference.size
    chance = mean_iou(iou_per_class(rng.choice(3, reference.shape, p=share), reference, 3))
    assert score > 0.5 and score > chance + 0.3, (score, chance)


def test_orthoplane_probabilities_and_save_load(trained):
    model, path = trained
    volume, _ = synthetic(2, (20, 28, 36))  # odd sizes, not multiples of the tile
    prob = model.probabilities(volume)
    assert prob.shape == (3, 20, 28, 36)
    np.testing.assert_allclose(prob.sum(0), 1.0, atol=1e-5)
    loaded = Segmenter.load(path, device=CPU)
    np.testing.assert_array_equal(loaded.segment(volume), model.segment(volume))
    with pytest.raises(ValueError, match="labels have no voxel"):
        Segmenter(model.params, device=CPU, seed=0).fit(volume, {"mito": np.zeros(volume.shape), "er": np.zeros(volume.shape)},
                                                      checkpoint_path=path.with_name("x.pt"), progress=False)


def test_table_states_the_mean_and_renders_write_a_png(tmp_path):
    ref = np.zeros((12, 16, 16), np.uint8)
    ref[3:9, 4:12, 4:12] = 1
    seg = ref.copy()
    seg[3:9, 4:12, 10:12] = 0
    rows = pd.DataFrame([{"dataset": "d", "volume": "ground truth", "voxels": ref.size, "IoU_background": 0.99,
                          "IoU_mito": 0.75, "IoU_er": np.nan, "mIoU": 0.75}])
    rows.to_csv(tmp_path / "iou.csv", index=False)
    segmentation_table([str(tmp_path / "iou.csv")], ["mito", "er"], str(tmp_path / "t.csv"), str(tmp_path / "t.md"))
    md = (tmp_path / "t.md").read_text()
    assert "background is NOT counted" in md and "| d | ground truth | 0.7500 | 0.7500 | undefined |" in md
    assert md == segmentation_markdown(pd.read_csv(tmp_path / "t.csv"), ["mito", "er"])
    save_npz(tmp_path / "classes.npz", reference=ref, sources=np.array(["ground truth"]),
             classes=np.array(["background", "mito", "er"]), voxel_nm=np.array([8.0, 8.0, 8.0]), segmented_0=seg)
    mito3d_figure(str(tmp_path / "classes.npz"), str(tmp_path / "iou.csv"), str(tmp_path / "mito.png"))
    data = (tmp_path / "mito.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
