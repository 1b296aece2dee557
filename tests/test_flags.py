"""Environment switches: one rule for every DPDL_* flag, and an error for a value that is neither on nor off."""

import pytest

from dpdl.flags import OFF, ON, flag


@pytest.mark.parametrize("value", [*ON, "ON", " True ", "Yes"])
def test_every_spelling_of_on_switches_a_flag_on(monkeypatch, value):
    monkeypatch.setenv("DPDL_TEST_FLAG", value)
    assert flag("DPDL_TEST_FLAG") is True


@pytest.mark.parametrize("value", [*OFF, "OFF", " False "])
def test_every_spelling_of_off_switches_a_flag_off(monkeypatch, value):
    monkeypatch.setenv("DPDL_TEST_FLAG", value)
    assert flag("DPDL_TEST_FLAG", default=True) is False


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_empty_leaves_the_default(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("DPDL_TEST_FLAG", raising=False)
    else:
        monkeypatch.setenv("DPDL_TEST_FLAG", value)
    assert flag("DPDL_TEST_FLAG") is False
    assert flag("DPDL_TEST_FLAG", default=True) is True


def test_anything_else_is_an_error_saying_what_to_write(monkeypatch):
    monkeypatch.setenv("DPDL_TEST_FLAG", "maybe")
    with pytest.raises(
        ValueError, match=r"DPDL_TEST_FLAG='maybe' is not understood; set it to 1 \(fast\) or 0 \(slow\)"
    ):
        flag("DPDL_TEST_FLAG", on="fast", off="slow")


def test_require_cuda_on_is_read_as_on_not_silently_off(monkeypatch):
    """The bug this module fixes: DPDL_REQUIRE_CUDA=on used to leave a GPU job free to run on the CPU."""
    torch = pytest.importorskip("torch")
    from dpdl.device import DeviceUnavailableError, device

    monkeypatch.setenv("DPDL_REQUIRE_CUDA", "on")
    monkeypatch.delenv("DPDL_DEVICE", raising=False)
    if torch.cuda.is_available():
        assert device().type == "cuda"
    else:
        with pytest.raises(DeviceUnavailableError, match="DPDL_REQUIRE_CUDA"):
            device()


@pytest.mark.parametrize("name", ["DPDL_OFFLINE", "DPDL_PROGRESS", "DPDL_REQUIRE_CUDA"])
def test_each_flag_of_the_package_refuses_a_misspelt_value(monkeypatch, name):
    from dpdl.data.store import offline
    from dpdl.device import device
    from dpdl.progress import progress_enabled

    read = {"DPDL_OFFLINE": offline, "DPDL_PROGRESS": progress_enabled, "DPDL_REQUIRE_CUDA": device}[name]
    monkeypatch.setenv(name, "sometimes")
    with pytest.raises(ValueError, match=f"{name}='sometimes' is not understood"):
        read()
