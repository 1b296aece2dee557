import pytest
import torch

import dpdl
from dpdl.device import DeviceUnavailableError, device, device_reason


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("DPDL_DEVICE", raising=False)
    monkeypatch.delenv("DPDL_REQUIRE_CUDA", raising=False)


def test_device_is_exposed_as_dpdl_device():
    assert dpdl.device() == device()


def test_default_prefers_cuda_then_mps_then_cpu():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert device().type == expected
    assert device_reason().startswith(expected)


def test_dpdl_device_forces_cpu(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "cpu")
    assert device() == torch.device("cpu")
    assert "DPDL_DEVICE" in device_reason()


def test_dpdl_device_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "gpu-please")
    with pytest.raises(ValueError, match="cpu, cuda, cuda:N or mps"):
        device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_forcing_missing_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "cuda")
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_require_cuda_fails_loudly_without_a_gpu(monkeypatch):
    monkeypatch.setenv("DPDL_REQUIRE_CUDA", "1")
    with pytest.raises(DeviceUnavailableError, match="DPDL_REQUIRE_CUDA=1"):
        device()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_require_cuda_gives_cuda_on_a_gpu(monkeypatch):
    monkeypatch.setenv("DPDL_REQUIRE_CUDA", "1")
    assert device().type == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_require_cuda_contradicted_by_forced_cpu(monkeypatch):
    monkeypatch.setenv("DPDL_REQUIRE_CUDA", "1")
    monkeypatch.setenv("DPDL_DEVICE", "cpu")
    with pytest.raises(DeviceUnavailableError, match="contradicts"):
        device()
