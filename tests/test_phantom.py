"""The EM phantom: determinism, labels, EM-like statistics, isotropy and physical scaling."""

import time

import numpy as np
import pytest
from scipy import ndimage

from emdiffuse.data.phantom import STYLES, generate_volume

# Statistics of the real reference EM (resources/reference-em, 256x256 at ~8 nm), normalised as the
# workflow normalises real volumes (0.1 / 99.9 percentiles -> 0 / 1): MICrONS neuropil std 0.200-0.206,
# mouse liver 0.157-0.162; the real FIB-SEM volume (resources/real-em) 0.23.
REF_STD = {"neuropil": (0.20, 0.206), "liver": (0.157, 0.162)}


@pytest.fixture(scope="module")
def volumes():
    return {style: generate_volume((32, 128, 128), 8.0, style, seed=3) for style in STYLES}


def test_deterministic_from_seed():
    a, la = generate_volume((12, 48, 48), 8.0, "liver", seed=7)
    b, lb = generate_volume((12, 48, 48), 8.0, "liver", seed=7)
    c, _ = generate_volume((12, 48, 48), 8.0, "liver", seed=8)
    assert a.tobytes() == b.tobytes()
    assert all(la[k].tobytes() == lb[k].tobytes() for k in la)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("style", STYLES)
def test_shapes_dtypes_ranges_and_labels(volumes, style):
    em, labels = volumes[style]
    assert em.shape == (32, 128, 128) and em.dtype == np.float32
    assert 0.0 <= em.min() and em.max() <= 1.0
    assert {"mito", "er"} <= set(labels)
    for name, mask in labels.items():
        assert mask.shape == em.shape and mask.dtype == np.uint8, name
        assert set(np.unique(mask)) <= {0, 1}, name
    assert labels["mito"].sum() > 500 and labels["er"].sum() > 50
    if style == "liver":
        assert labels["nucleus"].any()
    else:
        assert labels["vesicle"].any() or labels["membrane"].mean() > 0.05


@pytest.mark.parametrize("style", STYLES)
def test_mitochondria_are_darker_and_textured(volumes, style):
    em, labels = volumes[style]
    occupied = np.zeros(em.shape, bool)
    for mask in labels.values():
        occupied |= mask.astype(bool)
    cytoplasm = ~ndimage.binary_dilation(occupied, iterations=3)
    matrix = ndimage.binary_erosion(labels["mito"].astype(bool), iterations=4)
    assert matrix.sum() > 100
    assert em[matrix].mean() < em[cytoplasm].mean() - 0.03
    assert em[matrix].std() > em[cytoplasm].std()


@pytest.mark.parametrize("style", STYLES)
def test_histogram_matches_reference_em(volumes, style):
    """Normalised like real volumes, with real EM's contrast (within 0.04 of the reference images')."""
    em, _ = volumes[style]
    low, high = np.percentile(em, [0.1, 99.9])
    assert low == pytest.approx(0, abs=1e-3) and high == pytest.approx(1, abs=1e-3)
    assert REF_STD[style][0] - 0.04 <= em.std() <= REF_STD[style][1] + 0.04


def _axis_spectrum(volume, axis):
    f = np.abs(np.fft.rfft(volume - volume.mean(), axis=axis)) ** 2
    return f.mean(axis=tuple(k for k in range(3) if k != axis))


@pytest.mark.parametrize("style", STYLES)
def test_isotropic_power_spectrum(style):
    """Power along z matches power along x in each band (pooled over seeds: few big objects)."""
    pz = px = 0
    for seed in range(4):
        em, _ = generate_volume((64, 64, 64), 12.0, style, seed=seed)
        pz, px = pz + _axis_spectrum(em, 0), px + _axis_spectrum(em, 2)
    for lo, hi in ((1, 4), (4, 12), (12, 33)):
        ratio = pz[lo:hi].sum() / px[lo:hi].sum()
        assert 0.7 < ratio < 1.4, (lo, hi, ratio)


def _mean_chord(mask, axis=2):
    """Mean length (voxels) of the runs of a mask along one axis."""
    runs = np.diff(mask.astype(np.int8), axis=axis, prepend=0, append=0)
    return mask.sum() / max((runs == 1).sum(), 1)


def test_physical_scaling():
    """Same seed and physical extent at 8 nm and 16 nm: the same specimen, at half the pixel size."""
    fine, lf = generate_volume((16, 128, 128), 8.0, "liver", seed=2)
    coarse, lc = generate_volume((8, 64, 64), 16.0, "liver", seed=2)
    mito_f, mito_c = lf["mito"].astype(bool), lc["mito"].astype(bool)
    assert mito_f.mean() == pytest.approx(mito_c.mean(), rel=0.15)
    assert _mean_chord(mito_f) / _mean_chord(mito_c) == pytest.approx(2.0, rel=0.2)
    binned = fine.reshape(8, 2, 64, 2, 64, 2).mean(axis=(1, 3, 5))
    assert np.corrcoef(binned.ravel(), coarse.ravel())[0, 1] > 0.7


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="neuropil, liver"):
        generate_volume((4, 8, 8), style="kidney")
    with pytest.raises(ValueError, match="shape"):
        generate_volume((8, 8))
    with pytest.raises(ValueError, match="shape"):
        generate_volume((4, 0, 8))
    with pytest.raises(ValueError, match="voxel_nm"):
        generate_volume((4, 8, 8), voxel_nm=0)


def test_small_volume_is_fast():
    start = time.perf_counter()
    generate_volume((32, 128, 128), 8.0, "neuropil", seed=11)
    assert time.perf_counter() - start < 10.0  # ~0.5 s alone; generous for a shared CPU


def test_phantom_figure_writes_png(tmp_path, volumes):
    from emdiffuse.io import write_tiff
    from emdiffuse.reporting.plots.phantom import load_reference_em, phantom_figure

    write_tiff(tmp_path / "ref" / "a.tif", (volumes["liver"][0][16] * 255).astype(np.uint8))
    reference = load_reference_em(tmp_path / "ref")
    assert reference["a"].dtype == np.float32 and 0 <= reference["a"].min() <= reference["a"].max() <= 1
    out = tmp_path / "fig.png"
    phantom_figure(str(out), {s: v[0] for s, v in volumes.items()}, reference)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
