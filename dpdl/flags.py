"""Switches set in the environment (``DPDL_OFFLINE``, ``DPDL_REQUIRE_CUDA``, ``DPDL_PROGRESS``), read by one rule.

``1``, ``true``, ``yes`` and ``on`` switch a flag on, ``0``, ``false``, ``no`` and ``off`` switch it off
(any case, spaces ignored), unset or empty leaves its default, and anything else is an error that says
what to write: a misspelt switch must never be silently read as off (``DPDL_REQUIRE_CUDA=on`` once was,
so a GPU job could pass on the CPU). DEVELOPERS.md lists the variables.
"""

from __future__ import annotations

import os

__all__ = ["ON", "OFF", "flag"]

ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")


def flag(name: str, *, default: bool = False, on: str = "on", off: str = "off") -> bool:
    """Whether the environment variable ``name`` switches its flag on; ``on``/``off`` say what each means
    in the error for a value that is neither (``"no downloads"``/``"downloads allowed"``)."""
    raw = os.environ.get(name, "").strip()
    value = raw.lower()
    if not value:
        return default
    if value in ON:
        return True
    if value in OFF:
        return False
    raise ValueError(f"{name}={value!r} is not understood; set it to 1 ({on}) or 0 ({off})")
