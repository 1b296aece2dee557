"""Verdicts decided where answer code cannot reach: hidden checks write out values, the grader compares them.

An assert inside the kernel can be defeated by the code it judges: an answer cell that installs a tracer,
an input transformer, or replaces ``torch.allclose`` or IPython's traceback display turns every failing
assert into a pass. So a hidden check also *records* the values it computed from the student's
functions::

    from dpdl.grading.verdict import record
    got = truncated_svd(B, 3)                       # the student's function, on inputs never shown
    record("ex1-hidden-svd", "rank-3 of B", got, atol=1e-4)
    assert torch.allclose(got, expected, atol=1e-4)  # still there, as feedback for the student

``record`` appends one JSON line to the file named by ``DPDL_GRADE_VALUES`` (it does nothing when the
variable is unset: for students, instructors and CI). ``dpdl grade`` runs the reference once to learn
the expected values, then, for each submission, compares the submission's values with them in its own
process (:func:`judge`), with the tolerances the *reference* declared. Code in an answer cell can write
anything into that file, but to pass it has to write the right values for inputs it never saw, which
is the task itself.

The kernel side (``record``, ``encode``) imports only the standard library and never imports torch or
numpy itself: it recognises their arrays by duck typing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "VALUES_ENV",
    "MAX_VALUES_BYTES",
    "MAX_NUMBERS",
    "record",
    "encode",
    "Record",
    "parse_records",
    "expected_by_check",
    "judge",
]

VALUES_ENV = "DPDL_GRADE_VALUES"
MAX_VALUES_BYTES = 8 * 2**20  # the grader reads at most this much of the values file
MAX_NUMBERS = 100_000  # numbers in one recorded value
MAX_TEXT = 10_000  # characters of one recorded string
MAX_DEPTH = 20  # nesting of lists and dicts in one recorded value


def record(check_id: str, name: str, value: Any, *, rtol: float = 1e-5, atol: float = 1e-8) -> None:
    """Record ``value`` under ``name`` for the hidden check ``check_id`` (see the module docstring).

    ``value`` may be a bool, int, float, str, None, a list, tuple or str-keyed dict of those, a torch
    tensor, a numpy array or scalar. It is encoded even when nothing is written, so that an instructor
    running the reference notebook sees a value that cannot be recorded at once.
    """
    if not isinstance(check_id, str) or not check_id:
        raise TypeError(f"check_id must be the hidden cell's id (a non-empty str); got {check_id!r}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str; got {name!r}")
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be >= 0; got rtol={rtol!r}, atol={atol!r}")
    line = json.dumps(
        {"check": check_id, "name": name, "value": encode(value), "rtol": float(rtol), "atol": float(atol)},
        allow_nan=False,
    )
    path = os.environ.get(VALUES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(line + "\n")


def encode(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON: ``{"kind": ..., ...}`` trees with non-finite floats spelt as strings."""
    if _depth > MAX_DEPTH:
        raise ValueError(f"a recorded value may nest at most {MAX_DEPTH} lists or dicts deep")
    if value is None or isinstance(value, bool):
        return {"kind": "exact", "value": value}
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ValueError(f"a recorded string may hold at most {MAX_TEXT} characters; got {len(value)}")
        return {"kind": "exact", "value": value}
    if isinstance(value, int):
        if value.bit_length() > 1000:  # numbers are compared as floats (exactly up to 2**53)
            raise ValueError("integers beyond the float range cannot be recorded")
        return {"kind": "number", "value": str(value)}  # a str: JSON readers limit the digits of an int
    if isinstance(value, float):
        return {"kind": "number", "value": _float_text(value)}
    if isinstance(value, (list, tuple)):
        return {"kind": "list", "items": [encode(item, _depth + 1) for item in value]}
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a recorded dict must have str keys")
        return {"kind": "dict", "items": {key: encode(item, _depth + 1) for key, item in value.items()}}
    if hasattr(value, "shape") and hasattr(value, "tolist"):  # a torch tensor or numpy array or scalar
        if hasattr(value, "detach"):
            value = value.detach().cpu()
        shape = [int(size) for size in value.shape]
        if math.prod(shape) > MAX_NUMBERS:
            raise ValueError(f"a recorded array may hold at most {MAX_NUMBERS} numbers; got shape {tuple(shape)}")
        if getattr(value, "is_complex", lambda: False)() or "complex" in str(getattr(value, "dtype", "")):
            raise TypeError("complex arrays cannot be recorded; record their real and imaginary parts")
        flat = value.reshape(-1).tolist()
        if shape == [] and not isinstance(flat, list):
            flat = [flat]
        if all(isinstance(item, bool) for item in flat):
            return {"kind": "array", "shape": shape, "bool": True, "data": flat}
        return {"kind": "array", "shape": shape, "bool": False, "data": [_float_text(float(x)) for x in flat]}
    raise TypeError(
        f"cannot record a {type(value).__name__}; record numbers, str, bool, None, lists, dicts, tensors or arrays"
    )


@dataclass(frozen=True)
class Record:
    """One value a check recorded: what it was called, the encoded value, and the tolerances declared."""

    check: str
    name: str
    value: Any
    rtol: float
    atol: float


def parse_records(data: bytes) -> tuple[list[Record], int]:
    """The well-formed records in a values file's bytes, and how many lines were not (never raises).

    The file comes from an untrusted kernel: its lines may be cut short, huge, deeply nested or not JSON.
    """
    records, bad = [], 0
    for line in data[:MAX_VALUES_BYTES].splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            item = Record(entry["check"], entry["name"], entry["value"], float(entry["rtol"]), float(entry["atol"]))
            if not (isinstance(item.check, str) and isinstance(item.name, str)):
                raise TypeError
        except (ValueError, TypeError, KeyError, RecursionError):
            bad += 1
            continue
        records.append(item)
    return records, bad


def expected_by_check(records: Iterable[Record]) -> dict[str, dict[str, Record]]:
    """The reference's records as ``{check id: {name: record}}``; a repeated name is an authoring error."""
    expected: dict[str, dict[str, Record]] = {}
    for item in records:
        names = expected.setdefault(item.check, {})
        if item.name in names:
            raise ValueError(
                f"hidden check {item.check!r} records {item.name!r} twice in the reference; give each value its own name"
            )
        names[item.name] = item
    return expected


def judge(check_id: str, expected: Mapping[str, Record], got: Iterable[Record]) -> str | None:
    """None when the submission recorded exactly the reference's values for ``check_id``, else why not.

    Every expected name must be recorded once, with the same structure and values within the
    reference's ``rtol``/``atol`` (the submission's own tolerances are ignored); other names fail.
    """
    mine = [item for item in got if item.check == check_id]
    counts: dict[str, int] = {}
    for item in mine:
        counts[item.name] = counts.get(item.name, 0) + 1
    unexpected = sorted(set(counts) - set(expected))
    if unexpected:
        return f"recorded values this check does not make: {', '.join(map(repr, unexpected[:3]))}"
    for name, want in expected.items():
        if counts.get(name, 0) == 0:
            return f"no value recorded for {name!r} (the check stopped before it, or the value was not computed)"
        if counts[name] > 1:
            return f"{name!r} was recorded {counts[name]} times; a check records each value once"
        have = next(item for item in mine if item.name == name)
        difference = _difference(want.value, have.value, want.rtol, want.atol, 0)
        if difference is not None:
            return f"{name!r}: {difference}"
    return None


def _difference(want: Any, have: Any, rtol: float, atol: float, depth: int) -> str | None:
    """None when ``have`` matches ``want`` (both encoded), else a short description of the first difference."""
    if depth > MAX_DEPTH or not isinstance(have, Mapping) or have.get("kind") != want.get("kind"):
        return f"expected a {_kind_word(want)}, got {_kind_word(have)}"
    kind = want["kind"]
    if kind == "exact":
        return None if _same_exact(want.get("value"), have.get("value")) else "wrong value"
    if kind == "number":
        return None if _close(want["value"], have.get("value"), rtol, atol) else "value outside the tolerance"
    if kind == "list":
        items, got_items = want["items"], have.get("items")
        if not isinstance(got_items, list) or len(got_items) != len(items):
            return f"expected {len(items)} items, got {len(got_items) if isinstance(got_items, list) else 'none'}"
        for index, (a, b) in enumerate(zip(items, got_items)):
            difference = _difference(a, b, rtol, atol, depth + 1)
            if difference is not None:
                return f"item {index}: {difference}"
        return None
    if kind == "dict":
        items, got_items = want["items"], have.get("items")
        if not isinstance(got_items, Mapping) or set(got_items) != set(items):
            return "different keys"
        for key in items:
            difference = _difference(items[key], got_items[key], rtol, atol, depth + 1)
            if difference is not None:
                return f"[{key!r}]: {difference}"
        return None
    if kind == "array":
        if have.get("shape") != want["shape"]:
            return f"shape {have.get('shape')} instead of {want['shape']}"
        data, got_data = want["data"], have.get("data")
        if have.get("bool") != want["bool"] or not isinstance(got_data, list) or len(got_data) != len(data):
            return "a different kind of array"
        if want["bool"]:
            wrong = sum(a is not b for a, b in zip(data, got_data))
        else:
            wrong = sum(not _close(a, b, rtol, atol) for a, b in zip(data, got_data))
        return f"{wrong} of {len(data)} entries outside the tolerance" if wrong else None
    return "an unknown kind of value"


def _close(want: Any, have: Any, rtol: float, atol: float) -> bool:
    a, b = _number(want), _number(have)
    if a is None or b is None:
        return False
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(a)


def _number(text: Any) -> float | None:
    """A number spelt by :func:`encode` (a str), or None for anything else."""
    if not isinstance(text, str) or len(text) > 400:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _same_exact(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _float_text(value: float) -> str:
    return repr(float(value))  # 'nan', 'inf' and '-inf' read back with float()


def _kind_word(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, Mapping) else None
    return {"exact": "plain value", "number": "number", "list": "list", "dict": "dict", "array": "array"}.get(
        kind, "value of another kind"
    )
