"""Ten digits drawn by a program to look like handwriting on paper, photographed with a phone (lab 5).

MNIST's digits are white strokes on black, centred in 28x28; a photo of a digit written on paper is dark ink
on light, unevenly lit paper, larger, and in colour. ``sample_digits()`` returns the paths of ten images made
to look like such photos, shipped with dpdl (``digit_0.png`` ... ``digit_9.png``, 64x64 RGB). They are not
photos and not taken from MNIST: :func:`draw_digit` draws them, pen strokes with a jittered shape, slant and
pressure on grainy, unevenly lit paper, from a seed; rebuild the shipped files with
``python -m dpdl.data.digits --write``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DIGITS_DIR", "SEED", "SIZE", "sample_digits", "draw_digit", "write_sample_digits", "main"]

DIGITS_DIR = Path(__file__).resolve().parent / "digit_images"  # the shipped files, package data of dpdl
SEED = 4  # the seed of the shipped files
SIZE = 64  # their side in pixels

Point = tuple[float, float]


def sample_digits() -> list[Path]:
    """The ten sample images shipped with dpdl, ``[.../digit_0.png, ..., .../digit_9.png]`` (digit ``d`` at index ``d``).

    Each is a 64x64 RGB PNG of one digit in dark ink on light paper, drawn by :func:`draw_digit` (not a
    photo). They live inside the installed package, so they are found from any working directory (a
    student copy, Colab).
    """
    paths = [DIGITS_DIR / f"digit_{digit}.png" for digit in range(10)]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"the sample digits {missing} are missing from {DIGITS_DIR}; reinstall dpdl, or make them "
            "with `python -m dpdl.data.digits --write`"
        )
    return paths


def draw_digit(digit: int, seed: int = SEED, size: int = SIZE) -> Image.Image:
    """One digit in pen on paper as an RGB ``PIL.Image`` of ``size`` x ``size`` pixels, the same for the same arguments.

    A template of pen strokes for ``digit`` (0-9) is slanted, rotated, scaled and shifted a little, each
    stroke wobbles like a hand and changes width like pen pressure; the paper is off-white, unevenly lit
    and grainy, the ink dark blue or near black. Everything random comes from ``random.Random`` (whose
    ``random()`` sequence Python keeps stable across versions) seeded by ``seed`` and ``digit``.
    """
    if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an int from 0 to 9; got {digit!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int of at least 16 (pixels); got {size!r}")
    rng = random.Random(1000 * seed + digit)
    strokes = [_resample(stroke, step=0.01) for stroke in _TEMPLATES[digit]()]
    strokes = _place(strokes, rng, size)
    alpha = np.zeros((size, size))
    pen_width = size * _uniform(rng, 0.085, 0.1)
    for stroke in strokes:
        widths = _pressure(len(stroke), rng) * pen_width
        alpha = np.maximum(alpha, _rasterise(stroke, widths, size, softness=0.9))
    alpha *= _uniform(rng, 0.85, 0.95)  # ink is never perfectly opaque
    paper = _paper(rng, size)  # (size, size, 3) in [0, 255]
    inks = [(38.0, 52.0, 120.0), (40.0, 40.0, 46.0), (28.0, 36.0, 84.0)]  # blue ballpoint, black, dark blue
    ink = np.array(inks[int(rng.random() * len(inks))])
    image = paper * (1 - alpha[..., None]) + ink * alpha[..., None]
    image += (_noise(rng, size) * 3.0)[..., None]  # sensor noise, the same in all channels
    return Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8))  # (H, W, 3) uint8: RGB


def write_sample_digits(folder: str | Path = DIGITS_DIR, seed: int = SEED, size: int = SIZE) -> list[Path]:
    """Draw the ten digits with :func:`draw_digit` and save them as ``folder/digit_<d>.png``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for digit in range(10):
        path = folder / f"digit_{digit}.png"
        draw_digit(digit, seed=seed, size=size).save(path, optimize=True)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpdl.data.digits --write [--folder F]``: make the sample digit files."""
    parser = argparse.ArgumentParser(prog="python -m dpdl.data.digits", description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="draw the ten digits and save them as PNG files")
    parser.add_argument("--folder", type=Path, default=DIGITS_DIR, help=f"where to save them (default {DIGITS_DIR})")
    args = parser.parse_args(argv)
    if not args.write:
        parser.print_help()
        return 2
    for path in write_sample_digits(args.folder):
        print(path)
    return 0


# --- stroke templates: points in the unit square, x to the right, y downwards --------------------


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> list[Point]:
    """Points of an elliptic arc from angle ``start`` to ``end`` (degrees; 0 right, 90 down, so increasing is clockwise)."""
    n = max(2, int(abs(end - start) / 4) + 1)
    angles = np.radians(np.linspace(start, end, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def _bezier(p0: Point, p1: Point, p2: Point, n: int = 30) -> list[Point]:
    """Points of the quadratic Bezier curve from ``p0`` to ``p2`` pulled towards ``p1``."""
    return [
        ((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0],
         (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1])
        for t in np.linspace(0, 1, n)
    ]  # fmt: skip


_TEMPLATES = {
    0: lambda: [_arc(0.5, 0.5, 0.28, 0.43, -75, -75 - 375)],
    1: lambda: [[(0.36, 0.22), (0.56, 0.05), (0.54, 0.95)]],
    2: lambda: [_arc(0.5, 0.3, 0.27, 0.24, 195, 395) + [(0.18, 0.93), (0.84, 0.91)]],
    3: lambda: [_arc(0.47, 0.27, 0.25, 0.21, 205, 445) + _arc(0.47, 0.71, 0.3, 0.23, 255, 515)],
    4: lambda: [[(0.62, 0.05), (0.16, 0.64), (0.86, 0.63)], [(0.66, 0.3), (0.63, 0.96)]],
    5: lambda: [[(0.33, 0.07), (0.29, 0.45)] + _arc(0.5, 0.67, 0.28, 0.26, 230, 505), [(0.33, 0.07), (0.78, 0.06)]],
    6: lambda: [_bezier((0.7, 0.05), (0.26, 0.18), (0.26, 0.71)) + _arc(0.5, 0.71, 0.24, 0.23, 180, -175)],
    7: lambda: [[(0.16, 0.1), (0.84, 0.09), (0.42, 0.95)]],
    8: lambda: [_arc(0.5, 0.27, 0.21, 0.21, -30, 320), _arc(0.5, 0.7, 0.26, 0.24, -90, 275)],
    9: lambda: [_arc(0.48, 0.3, 0.24, 0.22, 10, -355), _bezier((0.72, 0.28), (0.72, 0.6), (0.62, 0.95), 20)],
}


# --- from template to picture ---------------------------------------------------------------------


def _uniform(rng: random.Random, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


def _resample(points: Sequence[Point], step: float) -> np.ndarray:
    """The polyline through ``points`` as points ``step`` apart along it, ``(n, 2)``."""
    points = np.asarray(points, dtype=float)
    lengths = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    targets = np.linspace(0, along[-1], max(2, int(round(along[-1] / step)) + 1))
    return np.stack([np.interp(targets, along, points[:, 0]), np.interp(targets, along, points[:, 1])], axis=1)


def _place(strokes: list[np.ndarray], rng: random.Random, size: int) -> list[np.ndarray]:
    """Wobble each stroke, then slant, rotate, scale and shift the digit into pixel coordinates."""
    slant = _uniform(rng, -0.05, 0.3)  # most hands lean to the right
    angle = math.radians(_uniform(rng, -7, 7))
    scale_x, scale_y = _uniform(rng, 0.85, 1.05), _uniform(rng, 0.92, 1.05)
    height = 0.66 * size  # MNIST's digits fill 20 of 28 pixels
    centre_x = size / 2 + _uniform(rng, -0.05, 0.05) * size
    centre_y = size / 2 + _uniform(rng, -0.04, 0.04) * size
    cos, sin = math.cos(angle), math.sin(angle)
    placed = []
    for stroke in strokes:
        along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(stroke, axis=0).T))])
        wobble = np.zeros_like(stroke)
        for axis in range(2):
            for cycles, amplitude in ((1.3, 0.012), (3.1, 0.006)):
                wobble[:, axis] += amplitude * np.sin(2 * math.pi * cycles * along + 2 * math.pi * rng.random())
        x, y = (stroke + wobble - 0.5).T
        x = (x + slant * (-y)) * scale_x  # shear: the top moves right
        y = y * scale_y
        x, y = cos * x - sin * y, sin * x + cos * y
        placed.append(np.stack([centre_x + height * x, centre_y + height * y], axis=1))
    return placed


def _pressure(n: int, rng: random.Random) -> np.ndarray:
    """Relative pen width along a stroke of ``n`` points: a slow swell, thinner where the pen lands and lifts."""
    t = np.linspace(0, 1, n)
    swell = 1 + 0.12 * np.sin(2 * math.pi * (_uniform(rng, 0.5, 1.5) * t + rng.random()))
    taper = np.minimum(1, 0.7 + 0.3 * np.minimum(t, 1 - t) * n / 4)
    return swell * taper


def _rasterise(points: np.ndarray, widths: np.ndarray, size: int, softness: float) -> np.ndarray:
    """Ink coverage ``(size, size)`` in [0, 1] of a stroke through ``points`` (pixels) with ``widths`` (pixels).

    A pixel is covered when its centre is within half the local width of the stroke; the edge is a ramp
    ``softness`` pixels wide (anti-aliasing, and the blur of a camera).
    """
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1)[:, None, :]  # (P, 1, 2)
    a, b = points[:-1][None], points[1:][None]  # (1, S, 2) segment ends
    ab = b - a
    t = np.clip(((pixels - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)  # (P, S)
    distance = np.linalg.norm(pixels - (a + t[..., None] * ab), axis=-1)
    half_width = (widths[:-1] + t * (widths[1:] - widths[:-1])) / 2
    coverage = np.clip((half_width - distance) / softness + 0.5, 0, 1)
    return coverage.max(axis=1).reshape(size, size)


def _paper(rng: random.Random, size: int) -> np.ndarray:
    """Off-white paper ``(size, size, 3)`` in [0, 255], lit unevenly: a tilt and a darker rim, as in a photo."""
    ys, xs = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    tilt_x, tilt_y = _uniform(rng, -0.06, 0.06), _uniform(rng, -0.06, 0.06)
    light = 1 + tilt_x * xs + tilt_y * ys - _uniform(rng, 0.05, 0.15) * (xs**2 + ys**2)
    red = _uniform(rng, 226, 242)
    base = np.array([red, red - _uniform(rng, 2, 8), red - _uniform(rng, 10, 24)])  # white to cream
    return light[..., None] * base


def _noise(rng: random.Random, size: int) -> np.ndarray:
    """Zero-mean grain ``(size, size)`` with standard deviation about 1 (a sum of uniforms)."""
    values = np.array([rng.random() + rng.random() + rng.random() - 1.5 for _ in range(size * size)])
    return values.reshape(size, size) * 2.0


if __name__ == "__main__":
    sys.exit(main())
