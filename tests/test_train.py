"""Patch sampling and the resumable training loop (a resumed run ends bit-for-bit where an
uninterrupted one does)."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from emdiffuse.device import bf16_pays
from emdiffuse.models.patches import PatchSampler
from emdiffuse.models.train import amp_dtype, train_loop


def pairs(n=4, size=16, scale=1, seed=0):
    inputs = np.random.default_rng(seed).random((n, size, size), dtype=np.float32)
    return inputs, inputs.repeat(scale, 1).repeat(scale, 2)  # target = nearest-upsampled input


@pytest.mark.parametrize("scale", [1, 2])
def test_patches_are_aligned_augmented_and_deterministic(scale):
    inputs, targets = pairs(scale=scale)
    sampler = PatchSampler(inputs, targets, patch=6, batch_size=16, seed=3, augment=True)
    inp, tgt = sampler.next()
    assert inp.shape == (16, 1, 6, 6) and tgt.shape == (16, 1, 6 * scale, 6 * scale)
    assert inp.dtype == np.float32 and tgt.dtype == np.float32
    np.testing.assert_array_equal(tgt, inp.repeat(scale, 2).repeat(scale, 3))  # same crop, same flip/rot
    again = PatchSampler(inputs, targets, patch=6, batch_size=16, seed=3, augment=True).next()
    np.testing.assert_array_equal(inp, again[0])


def test_input_blur_touches_the_input_only():
    inputs, targets = pairs()
    raw = PatchSampler(inputs, targets, patch=8, batch_size=1, seed=0).next()
    inp, tgt = PatchSampler(inputs, targets, patch=8, batch_size=1, seed=0, input_blur_p=1.0).next()
    np.testing.assert_array_equal(tgt, raw[1])
    np.testing.assert_allclose(inp[0, 0], gaussian_filter(raw[0][0, 0], 3.0, mode="nearest"), atol=1e-6)


def test_sampler_state_round_trip():
    s = PatchSampler(*pairs(), patch=4, batch_size=2, seed=0)
    state = s.state
    first = s.next()
    s.state = state
    np.testing.assert_array_equal(first[0], s.next()[0])


def test_sampler_errors():
    inputs, _ = pairs(size=16)
    with pytest.raises(ValueError, match="larger than the input"):
        PatchSampler(inputs, inputs, patch=17, batch_size=1, seed=0)
    with pytest.raises(ValueError, match="not an integer multiple"):
        PatchSampler(inputs, np.zeros((4, 24, 24), np.float32), patch=8, batch_size=1, seed=0)


class Killed(Exception):
    pass


def run(path, kill_at=None, iterations=12, meta=None, log=lambda *_: None, amp=False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout(0.3), nn.Conv2d(4, 1, 3, padding=1))
    sampler = PatchSampler(*pairs(), patch=8, batch_size=2, seed=1, input_blur_p=0.5)

    def loss_fn(batch):  # uses torch's RNG too, like the diffusion loss
        x, y = batch
        return ((model(x + 0.1 * torch.randn_like(x)) - y) ** 2).mean()

    def callback(it):
        if it == kill_at:
            raise Killed

    return train_loop(model, loss_fn, sampler, iterations=iterations, lr=1e-2, warmup=4, ema_decay=0.9,
                      plateau={"factor": 0.5, "patience": 0, "every": 2}, checkpoint_path=path,
                      checkpoint_every=3, device=torch.device("cpu"), seed=5, meta=meta or {"run": 1},
                      callback=callback, progress=False, log=log, amp=amp)


@pytest.mark.parametrize("amp", [False, True])  # fp32, and bf16 autocast on the CPU
def test_resumed_run_ends_bit_for_bit_where_an_uninterrupted_run_ends(tmp_path, amp):
    whole = run(tmp_path / "a.pt", amp=amp)
    with pytest.raises(Killed):
        run(tmp_path / "b.pt", kill_at=7, amp=amp)  # last checkpoint at 6: iteration 7 is redone
    messages = []
    resumed = run(tmp_path / "b.pt", log=messages.append, amp=amp)
    assert {h["precision"] for h in whole.history} == {"bf16" if amp else "fp32"}
    assert "resuming at iteration 6/12" in messages[0]
    for a, b in [(whole.model, resumed.model), (whole.ema_model, resumed.ema_model)]:
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["loss"] for h in whole.history] == [h["loss"] for h in resumed.history]
    lrs = [h["lr"] for h in whole.history]
    assert lrs[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2]) and min(lrs) < 1e-2  # warm-up, plateau
    assert [h["lr"] for h in resumed.history] == lrs


def test_finished_run_is_not_retrained_and_a_foreign_checkpoint_is_kept_aside(tmp_path):
    """A checkpoint this run cannot continue (other settings, trained further, unreadable) is moved to
    <name>.stale.pt with a log line, and training starts afresh: a changed hyperparameter re-runs."""
    first = run(tmp_path / "c.pt", iterations=3)
    again = run(tmp_path / "c.pt", iterations=3)
    assert again.history == first.history
    for kwargs, why in [({"iterations": 2}, "at iteration 3, beyond the requested 2"),
                        ({"iterations": 2, "meta": {"run": 2}}, "written for a different run")]:
        messages = []
        fresh = run(tmp_path / "c.pt", log=messages.append, **kwargs)
        assert [h["iteration"] for h in fresh.history] == list(range(1, kwargs["iterations"] + 1))
        assert why in messages[0] and "kept aside as c.stale.pt, training afresh" in messages[0]
        assert (tmp_path / "c.stale.pt").exists()
    assert fresh.history[0]["loss"] == first.history[0]["loss"]  # afresh: the same start as any new run
    (tmp_path / "d.pt").write_bytes(b"not a checkpoint")
    messages = []
    assert len(run(tmp_path / "d.pt", iterations=2, log=messages.append).history) == 2
    assert "not a readable training checkpoint" in messages[0]
    assert (tmp_path / "d.stale.pt").read_bytes() == b"not a checkpoint"


def test_amp_modes():
    cpu = torch.device("cpu")
    assert amp_dtype(False, cpu) is None and amp_dtype(True, cpu) == torch.bfloat16
    assert amp_dtype("auto", cpu) == (torch.bfloat16 if bf16_pays(cpu) else None)
    assert amp_dtype(True, torch.device("mps")) is None
    with pytest.raises(ValueError, match="train.amp must be one of"):
        amp_dtype("bf16", cpu)


def test_a_checkpoint_resumes_only_in_its_own_precision(tmp_path):
    run(tmp_path / "e.pt", iterations=3, amp=True)
    messages = []
    assert run(tmp_path / "e.pt", iterations=6, amp=False, log=messages.append).history[0]["precision"] == "fp32"
    assert "different run" in messages[0]
