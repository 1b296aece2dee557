import torch

from dpdl.cli import main
from dpdl.doctor import report


def test_report_names_versions_and_device(monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "cpu")
    rows = dict(report())
    assert rows["torch"] == torch.__version__
    assert rows["device"].startswith("cpu because DPDL_DEVICE")
    for label in ("python", "torchvision", "torchbearer", "cuda available", "mps available"):
        assert rows[label]


def test_doctor_command_prints_report_and_exits_zero(capsys, monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "cpu")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torchvision" in out and "cpu because DPDL_DEVICE" in out


def test_doctor_reports_a_bad_forced_device_and_exits_one(capsys, monkeypatch):
    monkeypatch.setenv("DPDL_DEVICE", "tpu")
    assert main(["doctor"]) == 1
    assert "ERROR" in capsys.readouterr().out
