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
