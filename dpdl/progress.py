"""Progress bars for training loops and downloads: tqdm.auto for people, silence for CI.

In Jupyter tqdm.auto draws a widget, in a terminal a text bar. When ``CI`` is set (CI runs, nbval,
the grader) or ``DPDL_PROGRESS=0``, bars are switched off so that stored notebook outputs stay stable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from dpdl.flags import flag

if TYPE_CHECKING:
    from tqdm.auto import tqdm

__all__ = ["progress", "progress_enabled"]

T = TypeVar("T")


def progress_enabled() -> bool:
    """Whether progress bars are drawn: not when ``DPDL_PROGRESS`` is off (:func:`dpdl.flags.flag`), and not
    under ``CI`` (set to anything, as CI services do)."""
    return flag("DPDL_PROGRESS", default=True, on="bars", off="no bars") and not os.environ.get("CI")


def progress(iterable: Iterable[T] | None = None, *, enabled: bool | None = None, **tqdm_kwargs) -> tqdm:
    """A ``tqdm.auto`` bar over ``iterable`` that is disabled under CI; ``enabled`` overrides that."""
    from tqdm.auto import tqdm  # here: tqdm.auto imports asyncio, a tenth of a second that `dpdl --help` skips

    show = progress_enabled() if enabled is None else enabled
    tqdm_kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not show, **tqdm_kwargs)
