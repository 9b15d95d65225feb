"""Organelle segmentation mIoU: a frozen segmenter, trained on isotropic ground truth, scores reconstructions.

The paper does not publish its protocol; this is the usual one (research notes, baselines_metrics
section 6). A small 2D U-Net (CSBDeep's CARE architecture with a softmax head instead of the
residual output) is trained on planes of all three orientations of the isotropic TRAINING volume
and its labels (the volume is isotropic, so XY, XZ and YZ planes look alike), with cross-entropy
weighted by the inverse square root of each class's voxel share (thin ER is ~2% of voxels). It is
then frozen and applied orthoplane (class probabilities of the XY, XZ and YZ passes averaged) to
the test volume's ground truth, its anisotropic input stretched onto the reconstruction grid, and
every reconstruction.

Scores against the true labels: per-class IoU = TP / (TP + FP + FN) pooled over all voxels of
the test volume (not averaged per slice); mIoU = mean over the FOREGROUND classes (background is
not counted; its IoU is reported alongside). A class absent from both the segmentation and the
labels has no IoU (0/0): it is reported as undefined and left out of the mean.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..reporting import markdown
from ..io import atomic_path, load_npz, save_npz, write_text
from ..models.catalog import REQUIRED
from ..models.lifecycle import Model
from ..models.patches import SeededSampler, flip_rot

BACKGROUND = "background"


# --- labels and scores -----------------------------------------------------------------------------

def class_volume(labels: dict[str, np.ndarray], classes: list[str]) -> np.ndarray:
    """One uint8 volume of class indices from binary label volumes: 0 background, i + 1 for
    ``classes[i]``; a voxel in two classes gets the first listed."""
    missing = [c for c in classes if c not in labels]
    if missing:
        raise KeyError(f"label volumes {sorted(labels)} lack the classes {missing}")
    out = np.zeros(np.shape(labels[classes[0]]), np.uint8)
    for i, name in reversed(list(enumerate(classes))):
        out[np.asarray(labels[name]) > 0] = i + 1
    return out


def iou_per_class(prediction: np.ndarray, reference: np.ndarray, n_classes: int) -> np.ndarray:
    """IoU of every class index, pooled over all voxels; nan where the class is in neither volume."""
    if prediction.shape != reference.shape:
        raise ValueError(f"segmentation {prediction.shape} and labels {reference.shape} differ in shape")
    pred, ref = np.asarray(prediction, np.int64).ravel(), np.asarray(reference, np.int64).ravel()
    if pred.size and max(pred.max(), ref.max()) >= n_classes:
        raise ValueError(f"class index above {n_classes - 1} in the segmentation or the labels")
    confusion = np.bincount(ref * n_classes + pred, minlength=n_classes**2).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(ious: np.ndarray) -> float:
    """Mean over the foreground classes (index >= 1) whose IoU is defined; nan if none is."""
    fg = np.asarray(ious, np.float64)[1:]
    return float(np.nanmean(fg)) if np.isfinite(fg).any() else float("nan")


# --- the segmenter ---------------------------------------------------------------------------------

class PlaneSampler(SeededSampler):
    """Batches of (image, class) patches from random planes of all three orientations of a volume,
    randomly flipped/rotated; deterministic for a seed, resumable through ``state``."""

    def __init__(self, volume: np.ndarray, classes: np.ndarray, patch: int, batch_size: int, seed: int):
        from ..models.volumes import plane_views

        self.views = [(v, c) for v, c in zip(plane_views(np.asarray(volume, np.float32)).values(),
                                             plane_views(classes).values()) if min(v.shape[1:]) >= patch]
        if not self.views:
            raise ValueError(f"segmentation training volume {volume.shape} has no plane of {patch}x{patch} pixels")
        self.patch, self.batch_size = patch, batch_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        images, targets = [], []
        for _ in range(self.batch_size):
            image, target = self._one()
            images.append(image)
            targets.append(target)
        return np.stack(images)[:, None].astype(np.float32), np.stack(targets).astype(np.int64)

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        rng, p = self.rng, self.patch
        volume, classes = self.views[rng.integers(len(self.views))]
        i = rng.integers(len(volume))
        y, x = rng.integers(volume.shape[1] - p + 1), rng.integers(volume.shape[2] - p + 1)
        k, flip = rng.integers(4), rng.random() < 0.5
        return tuple(np.ascontiguousarray(flip_rot(a[i, y : y + p, x : x + p], k, flip)) for a in (volume, classes))


class Segmenter(Model):
    """Semantic segmentation of (z, y, x) volumes in [0, 1] into background + ``classes``."""

    name = "segmenter"
    DEFAULTS = {
        "classes": REQUIRED,
        "model": {"n_depth": 2, "kern_size": 3, "n_first": 16},
        "train": {"iterations": REQUIRED, "batch_size": 8, "patch": 48, "lr": 1e-3, "checkpoint_every": 500},
        "predict": {"tile": 256, "overlap": 16, "batch": 16},
    }

    def __init__(self, params: dict, *, device: torch.device, seed: int):
        self._fitted = False
        super().__init__(params, device=device, seed=seed)

    @property
    def config_key(self) -> str:
        return "segmentation"

    @property
    def fitted(self) -> bool:
        return self._fitted

    def _build(self):
        from ..models.care import CAREUNet

        if not self.params["classes"] or BACKGROUND in self.params["classes"]:
            raise ValueError(f"segmentation.classes: foreground class names, got {self.params['classes']}")
        self.n_classes = len(self.params["classes"]) + 1
        self.net = CAREUNet(**self.params["model"], residual=False, n_channel_out=self.n_classes).to(self.device)

    @property
    def names(self) -> list[str]:
        return [BACKGROUND, *self.params["classes"]]

    def fit(self, volume: np.ndarray, labels: dict[str, np.ndarray], *, checkpoint_path: str | Path,
            progress: bool = True, log=print) -> list[dict]:
        """Train on the isotropic volume and its binary label volumes (resumes from the checkpoint)."""
        t = self.params["train"]
        target = class_volume(labels, self.params["classes"])
        share = np.bincount(target.ravel(), minlength=self.n_classes) / target.size
        if (share == 0).any():
            raise ValueError(f"segmentation training labels have no voxel of {[n for n, s in zip(self.names, share) if s == 0]}")
        weight = torch.as_tensor(share**-0.5 / (share**0.5).sum(), dtype=torch.float32, device=self.device)
        sampler = PlaneSampler(volume, target, t["patch"], t["batch_size"], self.seed)

        def loss_fn(batch):
            return F.cross_entropy(self.net(batch[0] * 2 - 1), batch[1], weight=weight)

        data = (np.asarray(volume, np.float32), target)
        self.history = self._train(self.net, loss_fn, sampler, data, checkpoint_path, progress, log).history
        self._fitted = True
        return self.history

    def _state(self):
        return {"net": self.net.state_dict()}

    def _load_state(self, state):
        self.net.load_state_dict(state["net"])

    def _restore_fields(self, ckpt):
        self._fitted = True

    @torch.no_grad()
    def probabilities(self, volume: np.ndarray) -> np.ndarray:
        """(classes, z, y, x) class probabilities, the mean of the XY, XZ and YZ passes."""
        from ..models.volumes import plane_views, tiled_stack_apply

        p, c = self.params["predict"], self.n_classes
        self.net.eval()

        def fn(tiles: torch.Tensor) -> torch.Tensor:  # (B, n planes, th, tw) -> (B, n * classes, th, tw)
            b, n, th, tw = tiles.shape
            logits = self.net(tiles.reshape(b * n, 1, th, tw).to(self.device) * 2 - 1)
            return torch.softmax(logits, 1).reshape(b, n * c, th, tw)

        total = np.zeros((c, *volume.shape), np.float32)
        back = {"xy": (1, 0, 2, 3), "xz": (1, 2, 0, 3), "yz": (1, 2, 3, 0)}  # (plane, class, ...) -> (class, z, y, x)
        for view, planes in plane_views(np.asarray(volume, np.float32)).items():
            out = np.empty((len(planes), c, *planes.shape[1:]), np.float32)
            for s in range(0, len(planes), p["batch"]):
                chunk = np.ascontiguousarray(planes[s : s + p["batch"]])
                res = tiled_stack_apply(fn, chunk, tile=p["tile"], overlap=p["overlap"], batch=1,
                                        multiple=2 ** self.params["model"]["n_depth"])
                out[s : s + len(chunk)] = res.reshape(len(chunk), c, *planes.shape[1:])
            total += out.transpose(back[view])
        return total / 3

    def segment(self, volume: np.ndarray) -> np.ndarray:
        """uint8 class indices (0 background, i + 1 for ``classes[i]``)."""
        return self.probabilities(volume).argmax(0).astype(np.uint8)


# --- workflow steps --------------------------------------------------------------------------------

def train_segmenter(params: dict, volume_path: str, labels_path: str, seed: int, model_path: str,
                    history_path: str, *, threads: int | None = None, progress: bool = True) -> None:
    from ..device import pick_device, seed_everything, set_threads
    from ..models.volumes import read_volume

    set_threads(threads)
    seed_everything(seed)
    volume, _ = read_volume(volume_path)
    model = Segmenter(params, device=pick_device(), seed=seed)
    model.fit(volume, load_npz(labels_path), checkpoint_path=Path(model_path).with_name("checkpoint.pt"),
              progress=progress)
    model.save(model_path)
    model.write_history(history_path)


def score_rows(dataset: str, volumes: dict[str, np.ndarray], reference: np.ndarray, names: list[str]) -> pd.DataFrame:
    """One row per segmented volume: per-class IoU (pooled over voxels) and the foreground mIoU."""
    rows = []
    for source, segmented in volumes.items():
        ious = iou_per_class(segmented, reference, len(names))
        rows.append({"dataset": dataset, "volume": source, "voxels": int(reference.size),
                     **{f"IoU_{n}": v for n, v in zip(names, ious)}, "mIoU": mean_iou(ious)})
    return pd.DataFrame(rows)


def segment_volumes(dataset: str, segmenter_path: str, truth_path: str, labels_path: str, sections_path: str,
                    predictions: dict[str, str], z_factor: int, csv_path: str, npz_path: str, *,
                    threads: int | None = None) -> None:
    """Segment the ground truth, the stretched anisotropic input and each reconstruction; score them."""
    from ..device import pick_device, set_threads
    from .isotropic import stretch_nearest
    from ..models.volumes import read_volume

    set_threads(threads)
    model = Segmenter.load(segmenter_path, device=pick_device())
    truth, voxel = read_volume(truth_path)
    reference = class_volume(load_npz(labels_path), model.params["classes"])
    volumes = {"ground truth": truth, "anisotropic input": stretch_nearest(read_volume(sections_path)[0], z_factor)}
    volumes.update({method: read_volume(path)[0] for method, path in predictions.items()})
    segmented = {}
    for source, volume in volumes.items():
        print(f"segmenting {source} {volume.shape}", flush=True)
        segmented[source] = model.segment(volume)
    rows = score_rows(dataset, segmented, reference, model.names)
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False)
    save_npz(npz_path, reference=reference, sources=np.array(list(segmented)), classes=np.array(model.names),
             voxel_nm=np.asarray(voxel if voxel is not None else (1.0, 1.0, 1.0), np.float64),
             **{f"segmented_{i}": v for i, v in enumerate(segmented.values())})


def segmentation_markdown(table: pd.DataFrame, classes: list[str]) -> str:
    fg = ", ".join(classes)
    header = ["dataset", "volume segmented", f"mIoU ({fg}) ↑"] + [f"IoU {c} ↑" for c in classes]
    header += ["IoU background (not in mIoU)", "voxels"]
    fmt = lambda v: f"{v:.4f}" if np.isfinite(v) else "undefined"  # noqa: E731
    rows = [[r["dataset"], r["volume"], fmt(r["mIoU"]), *(fmt(r[f"IoU_{c}"]) for c in classes),
             fmt(r[f"IoU_{BACKGROUND}"]), str(int(r["voxels"]))] for _, r in table.iterrows()]
    lines = ["# isotropic: organelle segmentation of the reconstructions", "", *markdown.table(header, rows)]
    lines += ["", "A 2D U-Net segmenter (background, " + fg + ") trained on planes of all three orientations of the "
              "isotropic training volume and its labels, frozen, applied orthoplane to every volume of the test "
              "z-range (ground truth, the anisotropic input stretched by nearest neighbour, each reconstruction).",
              "IoU = TP / (TP + FP + FN) pooled over all voxels of the test volume, against the true labels. "
              f"mIoU = mean over the foreground classes ({fg}); background is NOT counted. "
              "undefined: the class is in neither the segmentation nor the labels (0/0), left out of the mean.",
              "The ground-truth row is the segmenter's own ceiling on this volume."]
    return "\n".join(lines) + "\n"


def segmentation_table(csvs: list[str], classes: list[str], csv_path: str, md_path: str) -> None:
    table = pd.concat([pd.read_csv(p) for p in csvs], ignore_index=True)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    write_text(md_path, segmentation_markdown(table, classes))


def mito3d_figure(npz_path: str, csv_path: str, out_path: str, *, render_class: str = "mito") -> None:
    """3D renders of the segmented ``render_class`` (labels first), each panel titled with its mIoU."""
    from ..reporting.plots.isotropic import mito_render_figure

    data = load_npz(npz_path, required=("reference", "sources", "classes", "voxel_nm"))
    classes = [str(c) for c in data["classes"]]
    if render_class not in classes:
        raise ValueError(f"{npz_path}: no class {render_class!r} among {classes}")
    k = classes.index(render_class)
    scores = pd.read_csv(csv_path).set_index("volume")
    panels = [("labels (reference)", data["reference"] == k)]
    for i, source in enumerate(str(s) for s in data["sources"]):
        r = scores.loc[source]
        panels.append((f"{source}\nmIoU {r['mIoU']:.3f}, {render_class} IoU {r[f'IoU_{render_class}']:.3f}",
                       data[f"segmented_{i}"] == k))
    mito_render_figure(out_path, panels, tuple(data["voxel_nm"]),
                       suptitle=f"{render_class} segmented by the frozen segmenter ({str(scores['dataset'].iloc[0])})")
