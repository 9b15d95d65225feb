"""The 3D SR-UNet baseline: official architecture, cubic-weighted loss, fit/save/load/predict, resume."""

import numpy as np
import pytest
import torch

from emdiffuse.data.phantom import generate_volume
from emdiffuse.models.srunet3d import SRUNet3D, cubic_weighted_mse
from emdiffuse.models.unet import count_parameters
from emdiffuse.models.volume_methods import build_volume_method, load_volume_method
from emdiffuse.models.volumes import BlockSampler, make_anisotropic

CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
TINY = {"model": {"width": 4}, "train": {"iterations": 4, "batch_size": 2, "patch": 8, "sections": 3,
                                         "checkpoint_every": 2},
        "predict": {"chunk": 3, "context": 1, "tile": 16, "overlap": 4}}


def conv(cin, cout):  # a 3x3x3 (transposed) convolution: weights + bias
    return 27 * cin * cout + cout


def test_parameter_count_matches_the_official_layers():
    c1, c2, c3 = 32, 64, 128
    encoder = conv(1, c1) + 2 * conv(c1, c1) + conv(c1, c2) + 2 * conv(c2, c2) + conv(c2, c3) + 2 * conv(c3, c3)
    ups = conv(c1, c1) + conv(c2, c2) + conv(c3, c2) + conv(c2, c1)  # fracconv1..4
    decoder = conv(2 * c2, c2) + 2 * conv(c2, c2) + conv(2 * c1, c1) + 2 * conv(c1, c1) + conv(c1, 1)
    net = SRUNet3D(z_factor=6)
    assert count_parameters(net) == encoder + ups + decoder == 2_408_257
    assert net.up2.stride == (2, 1, 1) and net.up4.stride == (3, 2, 2)  # official split of z = 6


@pytest.mark.parametrize("z", [2, 3, 5, 6])
def test_output_has_z_times_the_sections(z):
    out = SRUNet3D(z_factor=z, width=4)(torch.zeros(2, 1, 3, 8, 12))
    assert out.shape == (2, 1, 3 * z, 8, 12)
    with pytest.raises(ValueError, match="multiples of 4"):
        SRUNet3D(z_factor=z, width=4)(torch.zeros(1, 1, 3, 6, 8))


def test_cubic_weighted_loss_on_a_known_case():
    target = torch.zeros(1, 1, 1, 1, 2)
    reference = torch.tensor([0.0, 2.0]).view(1, 1, 1, 1, 2)  # errors 0 and 4: weights 0.5 and 1
    pred = torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)  # squared errors 1 and 9
    assert cubic_weighted_mse(pred, target, reference).item() == pytest.approx((0.5 * 1 + 1.0 * 9) / 2)
    assert cubic_weighted_mse(pred, target, target).item() == pytest.approx(0.5 * 5)  # zero error: all 0.5


@pytest.fixture(scope="module")
def phantom():
    iso, _ = generate_volume((17, 20, 28), 8.0, seed=0)
    return iso, make_anisotropic(iso, 3)


def test_fit_save_load_predict_on_an_odd_volume(phantom, tmp_path):
    iso, sections = phantom
    method = build_volume_method("srunet3d", TINY, z_factor=3, device=CPU, seed=0)
    assert len(method.fit(iso, checkpoint_path=tmp_path / "ckpt", **QUIET)) == 4
    method.save(tmp_path / "m.pt")
    loaded = load_volume_method(tmp_path / "m.pt", device=CPU)
    a, b = (m.predict(sections, seed=0, progress=False) for m in (method, loaded))
    assert set(a) == {"prediction"} and a["prediction"].shape == (13, 20, 28) and a["prediction"].dtype == np.float32
    np.testing.assert_array_equal(a["prediction"], b["prediction"])


class Killed(Exception):
    pass


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(phantom, tmp_path, monkeypatch):
    iso, _ = phantom
    whole = build_volume_method("srunet3d", TINY, z_factor=3, device=CPU, seed=0)
    whole.fit(iso, checkpoint_path=tmp_path / "a", **QUIET)
    real_next, calls = BlockSampler.next, []

    def dying_next(self):
        calls.append(1)
        if len(calls) == 4:  # the 4th batch: after the checkpoint at iteration 2
            raise Killed
        return real_next(self)

    monkeypatch.setattr(BlockSampler, "next", dying_next)
    with pytest.raises(Killed):
        build_volume_method("srunet3d", TINY, z_factor=3, device=CPU, seed=0).fit(
            iso, checkpoint_path=tmp_path / "b", **QUIET)
    monkeypatch.setattr(BlockSampler, "next", real_next)
    resumed = build_volume_method("srunet3d", TINY, z_factor=3, device=CPU, seed=0)
    history = resumed.fit(iso, checkpoint_path=tmp_path / "b", **QUIET)
    assert [h["loss"] for h in history] == [h["loss"] for h in whole.history]
    for p, q in zip(resumed.net.parameters(), whole.net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
