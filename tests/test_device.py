import platform

import pytest
import torch

from emdiffuse import device


def test_pick_device_honours_an_explicit_choice_and_defaults_to_an_available_one():
    assert device.pick_device("cpu") == torch.device("cpu")
    assert device.pick_device().type in {"cpu", "cuda", "mps"}


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_allocator_is_tuned_on_glibc():
    assert device.tune_allocator()


def test_allocator_tuning_is_skipped_without_glibc(monkeypatch):
    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(device.ctypes, "CDLL", no_libc)
    assert device.tune_allocator() is False


def test_set_threads_applies_the_rule_thread_count(monkeypatch, one_thread):
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    device.set_threads(1)
    assert torch.get_num_threads() == 1 and device.os.environ["OMP_NUM_THREADS"] == "1"


def test_a_job_given_a_gpu_it_cannot_see_stops_unless_cpu_fallback_is_allowed(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("EMDIFFUSE_ALLOW_CPU_FALLBACK", raising=False)
    with pytest.raises(RuntimeError, match=r"given GPU\(s\) '0' .* sees none .*EMDIFFUSE_ALLOW_CPU_FALLBACK=1"):
        device.pick_device()
    monkeypatch.setenv("EMDIFFUSE_ALLOW_CPU_FALLBACK", "1")
    assert device.pick_device() == torch.device("cpu")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("EMDIFFUSE_ALLOW_CPU_FALLBACK")
    assert device.pick_device() == torch.device("cpu")  # no GPU given, none used: fine
    assert "emdiffuse: running on cpu (torch" in capsys.readouterr().err
