import pytest

from dpdl.progress import progress, progress_enabled


@pytest.fixture
def no_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("DPDL_PROGRESS", raising=False)


def test_bars_are_on_for_people(no_ci):
    assert progress_enabled()
    assert not progress(range(3)).disable


def test_ci_silences_bars(no_ci, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled()
    assert progress(range(3)).disable


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "OFF"])
def test_dpdl_progress_zero_silences_bars(no_ci, monkeypatch, value):
    monkeypatch.setenv("DPDL_PROGRESS", value)
    assert not progress_enabled()


def test_explicit_enabled_overrides_environment(no_ci, monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert not progress(range(3), enabled=True).disable


def test_silenced_bar_still_yields_everything(no_ci, monkeypatch):
    monkeypatch.setenv("CI", "1")
    assert list(progress(range(5))) == [0, 1, 2, 3, 4]
