"""The ten sample digits of lab 5: shipped inside the package, equal to what the generator draws, and
looking like a photo of ink on paper (light background, dark strokes, colour), not like MNIST."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dpdl.data
from dpdl.data import digits
from dpdl.data.digits import DIGITS_DIR, SEED, SIZE, draw_digit, main, sample_digits, write_sample_digits

ROOT = Path(__file__).resolve().parents[1]


def pixels(image_or_path) -> np.ndarray:
    image = Image.open(image_or_path) if isinstance(image_or_path, (str, Path)) else image_or_path
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_sample_digits_gives_ten_existing_pngs_inside_the_package_in_digit_order():
    paths = sample_digits()
    assert [path.name for path in paths] == [f"digit_{d}.png" for d in range(10)]
    assert all(path.is_file() and path.parent == DIGITS_DIR for path in paths)
    assert DIGITS_DIR.is_relative_to(Path(dpdl.__file__).resolve().parent)
    assert dpdl.data.sample_digits() == paths  # the lazy attribute of dpdl.data


@pytest.mark.parametrize("digit", range(10))
def test_shipped_file_is_what_the_generator_draws(digit):
    shipped = pixels(sample_digits()[digit])
    drawn = pixels(draw_digit(digit, seed=SEED, size=SIZE))
    assert shipped.shape == drawn.shape == (SIZE, SIZE, 3)
    # One grey level of slack: floating-point rounding may differ between platforms, never the picture.
    difference = np.abs(shipped - drawn).max()
    assert difference <= 1, (
        f"digit_{digit}.png differs from draw_digit({digit}) by up to {difference} levels: "
        "run `python -m dpdl.data.digits --write` after changing the generator"
    )


@pytest.mark.parametrize("digit", range(10))
def test_sample_is_a_64x64_colour_image_of_dark_ink_on_light_paper(digit):
    path = sample_digits()[digit]
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (64, 64)
    grey = pixels(path).mean(axis=2)
    border = np.concatenate([grey[:4].ravel(), grey[-4:].ravel(), grey[:, :4].ravel(), grey[:, -4:].ravel()])
    assert border.min() > 150, "the paper near the border should be light everywhere"
    assert np.median(grey) > 180, "most of the picture is paper"
    assert grey.min() < 110, "the strokes should be dark"
    ink_fraction = (grey < 128).mean()
    assert 0.04 < ink_fraction < 0.3, f"{ink_fraction:.1%} of the pixels are ink"
    colour = pixels(path)
    assert np.abs(colour[..., 0] - colour[..., 2]).mean() > 3, (
        "like a photo it has colour (cream paper, blue or black ink)"
    )


def test_draw_digit_is_repeatable_and_depends_on_digit_and_seed():
    first = pixels(draw_digit(3, seed=11))
    assert np.array_equal(first, pixels(draw_digit(3, seed=11)))
    assert not np.array_equal(first, pixels(draw_digit(3, seed=12)))
    assert not np.array_equal(first, pixels(draw_digit(8, seed=11)))


def test_draw_digit_places_the_digit_in_the_middle_at_any_size():
    grey = pixels(draw_digit(0, seed=1, size=128)).mean(axis=2)
    rows, cols = np.nonzero(grey < 128)
    assert grey.shape == (128, 128)
    assert 0.1 * 128 < rows.min() and rows.max() < 0.9 * 128, "a margin above and below, like MNIST"
    assert abs(cols.mean() - 64) < 0.1 * 128 and abs(rows.mean() - 64) < 0.1 * 128


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"digit": 10}, "digit must be an int from 0 to 9"), ({"digit": "7"}, "digit must be an int"),
     ({"digit": 1, "seed": -1}, "seed must be a non-negative int"), ({"digit": 1, "size": 8}, "size must be")],
)  # fmt: skip
def test_draw_digit_rejects_bad_arguments_saying_what_is_allowed(arguments, message):
    with pytest.raises(ValueError, match=message):
        draw_digit(**arguments)


def test_write_sample_digits_and_the_command_line_write_ten_readable_files(tmp_path, capsys):
    written = write_sample_digits(tmp_path / "a", seed=3, size=32)
    assert [path.name for path in written] == [f"digit_{d}.png" for d in range(10)]
    assert np.array_equal(pixels(written[4]), pixels(draw_digit(4, seed=3, size=32)))
    assert main(["--write", "--folder", str(tmp_path / "b")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert np.array_equal(pixels(tmp_path / "b" / "digit_9.png"), pixels(sample_digits()[9]))
    assert main([]) == 2  # nothing asked for: the help, and a non-zero exit


def test_sample_digits_says_how_to_make_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(digits, "DIGITS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"python -m dpdl\.data\.digits --write"):
        sample_digits()


def test_the_package_data_patterns_ship_the_digit_images():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dpdl"]
    package = Path(dpdl.__file__).resolve().parent
    for path in sample_digits():
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), f"{relative} is not package data"
