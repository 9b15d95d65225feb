"""vEMDiffuse-i/-a: the index-embedding wrapper, training samples, chunk-invariant sampling,
vEMDiffuse-a's isolation from isotropic data, fit/save/load/predict and exact resume."""

import numpy as np
import pytest
import torch

import emdiffuse.data.phantom as phantom_module
import emdiffuse.models.volumes as volumes_module
from emdiffuse.data.phantom import generate_volume
from emdiffuse.models.unet import PRESETS
from emdiffuse.models.vemdiffuse import IndexedUNet, pair_sample
from emdiffuse.models.volume_methods import build_volume_method, load_volume_method
from emdiffuse.models.volumes import BlockSampler, make_anisotropic

CPU = torch.device("cpu")
QUIET = dict(progress=False, log=lambda *_: None)
TINY = {
    "model": {"preset": "tiny"},
    "diffusion": {"test_schedule": {"kind": "linear", "start": 1e-4, "end": 0.09, "steps": 100}},
    "train": {"iterations": 4, "batch_size": 2, "patch": 16, "ema_decay": 0.9, "checkpoint_every": 2},
    "predict": {"steps": 2, "samples": 2, "tile": 32, "overlap": 4, "batch": 1, "chunk": 3},
}


@pytest.fixture(scope="module")
def data():
    iso, _ = generate_volume((17, 20, 28), 8.0, seed=0)
    return iso, make_anisotropic(iso, 3)


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory):
    """vemdiffuse_i fitted on the isotropic volume, saved."""
    path = tmp_path_factory.mktemp("vem") / "vi.pt"
    method = build_volume_method("vemdiffuse_i", TINY, z_factor=3, device=CPU, seed=0)
    method.fit(data[0], checkpoint_path=path.with_suffix(".ckpt"), **QUIET)
    method.save(path)
    return method, path


def kaiming_tiny():
    kwargs = {k: v for k, v in PRESETS["tiny"].items() if k not in ("in_channel", "out_channel")}
    return IndexedUNet(**kwargs, init="kaiming").eval()


def test_index_embedding_is_added_to_the_noise_embedding():
    torch.manual_seed(0)
    net = kaiming_tiny()
    x, gamma = torch.randn(2, 4, 16, 16), torch.tensor([0.3, 0.7])
    x[:, 2] = 1.0
    other = x.clone()
    other[:, 2] = 2.0
    assert not torch.allclose(net(x, gamma), net(other, gamma))  # the index matters
    torch.nn.init.zeros_(net.index_embed[2].weight)
    torch.nn.init.zeros_(net.index_embed[2].bias)
    inner = net.unet(torch.cat([x[:, :2], x[:, 3:]], 1), gamma)  # zero index embedding: the plain U-Net
    torch.testing.assert_close(net(x, gamma), inner)
    assert not net.unet.cond_embed._forward_hooks  # the hook lives only during a forward


@pytest.mark.parametrize("z", [3, 4])
def test_pair_sample_targets_a_slice_between_the_section_centres(z):
    block = np.random.default_rng(0).random((2 * z, 8, 8), dtype=np.float32)
    make = pair_sample(z, blur_p=0.0, section_profile="box")
    rng = np.random.default_rng(1)
    for _ in range(20):
        cond, target = make(block, rng)
        np.testing.assert_allclose(cond[:2], [block[:z].mean(0), block[z:].mean(0)], atol=1e-6)
        offset = cond[2, 0, 0]
        assert np.all(cond[2] == offset) and 0 <= offset <= z
        np.testing.assert_array_equal(target[0], block[int(offset + (z - 1) / 2)])


def test_fit_save_load_predict_on_an_odd_volume(fitted, data):
    method, path = fitted
    sections = data[1]
    loaded = load_volume_method(path, device=CPU)
    a, b = method.predict(sections, seed=1, progress=False), loaded.predict(sections, seed=1, progress=False)
    assert a["prediction"].shape == a["uncertainty"].shape == (13, 20, 28)
    assert a["prediction"].dtype == np.float32 and 0 <= a["prediction"].min() <= a["prediction"].max() <= 1
    assert (a["uncertainty"] >= 0).all() and a["uncertainty"].max() > 0
    np.testing.assert_array_equal(a["prediction"], b["prediction"])
    assert not np.array_equal(a["prediction"], method.predict(sections, seed=2, progress=False)["prediction"])


@pytest.mark.parametrize("chunk", [2, 4])
def test_chunked_sampling_equals_whole_volume_sampling(fitted, data, chunk):
    method, _ = fitted
    sections = data[1]
    results = []
    for c in (chunk, 100):
        m = load_volume_method(fitted[1], device=CPU)
        results.append(m.predict(sections, seed=3, progress=False, chunk=c))
    for key in ("prediction", "uncertainty"):
        np.testing.assert_array_equal(results[0][key], results[1][key])


def test_vemdiffuse_a_never_reads_isotropic_data(data, tmp_path, monkeypatch):
    iso = data[0].copy()
    sections = make_anisotropic(iso, 3)
    iso[:] = np.nan  # the ground truth is poisoned: any use of it would make the loss NaN (train_loop raises)
    for module, name in [(phantom_module, "generate_volume"), (volumes_module, "read_volume")]:
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("vemdiffuse_a loaded a volume"))
    trained_on = []
    real_init = BlockSampler.__init__

    def spy(self, volume, *args, **kwargs):
        trained_on.append(volume)
        real_init(self, volume, *args, **kwargs)

    monkeypatch.setattr(BlockSampler, "__init__", spy)
    method = build_volume_method("vemdiffuse_a", TINY, z_factor=3, device=CPU, seed=0)
    sentinel = sections.copy()
    history = method.fit(sentinel, checkpoint_path=tmp_path / "a.ckpt", **QUIET)
    assert np.array_equal(sentinel, sections)  # read-only use
    assert len(history) == 4 and all(np.isfinite(h["loss"]) for h in history)
    (stack,) = trained_on  # the one training source: the sections re-sliced to (y, z, x), z mirrored to the patch
    expected = np.pad(sections.transpose(1, 0, 2), ((0, 0), (0, 16 - 5), (0, 0)), mode="symmetric")
    np.testing.assert_array_equal(stack, expected)
    out = method.predict(sections, seed=0, progress=False)
    assert out["prediction"].shape == (13, 20, 28)


class Killed(Exception):
    pass


def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(data, tmp_path, monkeypatch):
    iso = data[0]
    whole = build_volume_method("vemdiffuse_i", TINY, z_factor=3, device=CPU, seed=0)
    whole.fit(iso, checkpoint_path=tmp_path / "a", **QUIET)
    real_next, calls = BlockSampler.next, []

    def dying_next(self):
        calls.append(1)
        if len(calls) == 4:  # after the checkpoint at iteration 2
            raise Killed
        return real_next(self)

    monkeypatch.setattr(BlockSampler, "next", dying_next)
    with pytest.raises(Killed):
        build_volume_method("vemdiffuse_i", TINY, z_factor=3, device=CPU, seed=0).fit(
            iso, checkpoint_path=tmp_path / "b", **QUIET)
    monkeypatch.setattr(BlockSampler, "next", real_next)
    resumed = build_volume_method("vemdiffuse_i", TINY, z_factor=3, device=CPU, seed=0)
    history = resumed.fit(iso, checkpoint_path=tmp_path / "b", **QUIET)
    assert [h["loss"] for h in history] == [h["loss"] for h in whole.history]
    for p, q in zip(resumed.ema.parameters(), whole.ema.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("params,message", [
    ({**TINY, "model": {"preset": "tiny", "in_channel": 2}}, r"unknown key\(s\) \['in_channel'\]"),
    ({**TINY, "predict": {"sampler": "euler"}}, "vemdiffuse_i.predict.sampler"),
    ({**TINY, "predict": {"init": "zeros"}}, "vemdiffuse_i.predict.init"),
    ({**TINY, "predict": {"z_noise": "per_gap"}}, "vemdiffuse_i.predict.z_noise"),
    ({**TINY, "train": {}}, "vemdiffuse_i.train.iterations: required key is missing"),
])
def test_params_validation(params, message):
    with pytest.raises(ValueError, match=message):
        build_volume_method("vemdiffuse_i", params, z_factor=3, device=CPU, seed=0)


def test_condition_init_starts_each_slice_from_its_sections_interpolation(fitted, data, monkeypatch):
    """init "condition": the chain of the slice at offset w between two sections starts from
    (1 - w / z) * lower + (w / z) * upper (in [-1, 1]); "noise" passes no start."""
    method, path = fitted
    m = load_volume_method(path, device=CPU)
    settings = {"init": "condition", "sampler": "ancestral", "tile": 64, "chunk": 100}
    model, seen = m._sampling_model(), []
    original = type(model).sample

    def spy(self, cond, **kw):
        seen.append((cond.clone(), kw["x0_init"]))
        return original(self, cond, **kw)

    monkeypatch.setattr(type(model), "sample", spy)
    m.predict(data[1], seed=0, progress=False, **settings)
    assert seen
    for cond, start in seen:
        weight = (cond[:, 2:] / 3).clamp(0, 1)
        torch.testing.assert_close(start, cond[:, :1] * (1 - weight) + cond[:, 1:2] * weight)
    seen.clear()
    m.predict(data[1], seed=0, progress=False, **{**settings, "init": "noise"})
    assert all(start is None for _, start in seen)


def test_cubic_init_starts_each_slice_from_the_cubic_interpolation_of_the_sections(fitted, data, monkeypatch):
    """init "cubic": the chains start from ``interpolate_z(sections, z, positions, "cubic")`` (in
    [-1, 1]), slice by slice in output order, and z chunks (one section of context) change nothing."""
    from emdiffuse.models.volumes import interpolate_z, output_positions

    method, path = fitted
    m = load_volume_method(path, device=CPU)
    settings = {"init": "cubic", "tile": 64, "chunk": 100}
    model, starts = m._sampling_model(), []
    original = type(model).sample

    def spy(self, cond, **kw):
        samples = m.params["predict"]["samples"]
        starts.append(kw["x0_init"][::samples, 0])  # batch order (tile, slice, sample); one tile here
        return original(self, cond, **kw)

    monkeypatch.setattr(type(model), "sample", spy)
    whole = m.predict(data[1], seed=0, progress=False, **settings)
    expected = interpolate_z(data[1], 3, output_positions(len(data[1]), 3), "cubic") * 2 - 1
    torch.testing.assert_close(torch.cat(starts), torch.from_numpy(expected), atol=1e-5, rtol=0)
    chunked = m.predict(data[1], seed=0, progress=False, **{**settings, "chunk": 2})
    for key in ("prediction", "uncertainty"):
        np.testing.assert_array_equal(whole[key], chunked[key])


def test_shared_z_noise_gives_the_slices_of_a_gap_one_draw_per_sample(fitted, data, monkeypatch):
    """z_noise "shared": within one sampler call (a gap's slices x K samples x tiles) the noise groups
    are (tile, sample), the same for every slice; "independent" passes none. Seeded either way."""
    method, path = fitted
    m = load_volume_method(path, device=CPU)
    settings = {"z_noise": "shared", "chunk": 100}
    model, seen = m._sampling_model(), []
    original = type(model).sample

    def spy(self, cond, **kw):
        seen.append((cond[:, 2, 0, 0].clone(), kw["noise_groups"]))
        return original(self, cond, **kw)

    monkeypatch.setattr(type(model), "sample", spy)
    a = m.predict(data[1], seed=0, progress=False, **settings)
    samples = m.params["predict"]["samples"]
    for index, groups in seen:
        n = len(torch.unique(index))
        per_tile = groups.reshape(-1, n, samples)
        assert (per_tile == per_tile[:, :1]).all()  # every slice of a (tile, sample) shares its draw
        assert len(torch.unique(groups)) == per_tile.shape[0] * samples
    np.testing.assert_array_equal(a["prediction"], m.predict(data[1], seed=0, progress=False, **settings)["prediction"])
    seen.clear()
    b = m.predict(data[1], seed=0, progress=False, **{**settings, "z_noise": "independent"})
    assert all(groups is None for _, groups in seen)
    assert not np.array_equal(a["prediction"], b["prediction"])


@pytest.mark.parametrize("z", [3, 4])
def test_the_cubic_condition_is_the_cubic_interpolation_of_four_sections_at_the_target(z):
    from emdiffuse.models.volumes import interpolate_z

    block = np.random.default_rng(0).random((4 * z, 8, 8), dtype=np.float32)
    make = pair_sample(z, blur_p=0.0, section_profile="box", cubic_condition=True)
    sections = make_anisotropic(block, z)
    rng = np.random.default_rng(1)
    for _ in range(20):
        cond, target = make(block, rng)
        assert cond.shape == (4, 8, 8)
        np.testing.assert_allclose(cond[:2], sections[1:3], atol=1e-6)  # the two middle sections
        offset = cond[2, 0, 0]
        assert 0 <= offset <= z
        q = int(offset + (z - 1) / 2 + z)
        np.testing.assert_array_equal(target[0], block[q])
        np.testing.assert_allclose(cond[3], interpolate_z(sections, z, np.array([q]), "cubic")[0], atol=1e-6)


def test_a_cubic_conditioned_model_trains_and_samples_chunk_invariantly(data, tmp_path):
    """model.cubic_condition: 4-section training blocks, a 4th condition channel, one section of
    context per z chunk, so chunking changes nothing (with either start)."""
    params = {**TINY, "model": {"preset": "tiny", "cubic_condition": True}}
    m = build_volume_method("vemdiffuse_i", params, z_factor=3, device=CPU, seed=0)
    assert m.diffusion.net.in_channel == 5 and m._context(m.params["predict"]) == 1
    m.fit(data[0], checkpoint_path=tmp_path / "c.ckpt", **QUIET)
    m.save(tmp_path / "c.pt")
    for init in ("noise", "cubic"):
        results = []
        for chunk in (2, 100):
            loaded = load_volume_method(tmp_path / "c.pt", device=CPU)
            results.append(loaded.predict(data[1], seed=0, progress=False, chunk=chunk, init=init))
        assert results[0]["prediction"].shape == (13, 20, 28)
        for key in ("prediction", "uncertainty"):
            np.testing.assert_array_equal(results[0][key], results[1][key])


def test_a_training_volume_too_thin_for_the_cubic_condition_is_refused_with_the_reason(data, tmp_path):
    params = {**TINY, "model": {"preset": "tiny", "cubic_condition": True}}
    m = build_volume_method("vemdiffuse_i", params, z_factor=3, device=CPU, seed=0)
    with pytest.raises(ValueError, match="needs 12 .*cubic_condition"):
        m.fit(data[0][:10], checkpoint_path=tmp_path / "t.ckpt", **QUIET)
