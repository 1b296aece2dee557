"""The values channel: what a hidden check records in the kernel, and how the grader judges it outside."""

import json

import numpy as np
import pytest
import torch

from dpdl.grading.verdict import (
    MAX_NUMBERS,
    VALUES_ENV,
    Record,
    encode,
    expected_by_check,
    judge,
    parse_records,
    record,
)


def _recorded(tmp_path, monkeypatch, calls):
    path = tmp_path / "values.jsonl"
    monkeypatch.setenv(VALUES_ENV, str(path))
    for args, kwargs in calls:
        record(*args, **kwargs)
    records, bad = parse_records(path.read_bytes())
    assert bad == 0
    return records


def test_record_does_nothing_without_the_grader(tmp_path, monkeypatch):
    monkeypatch.delenv(VALUES_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    record("hidden", "x", torch.ones(3))
    assert list(tmp_path.iterdir()) == []


def test_tensors_arrays_and_plain_values_round_trip_and_match_themselves(tmp_path, monkeypatch):
    values = {
        "tensor": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "array": np.linspace(0, 1, 4),
        "scalar tensor": torch.tensor(2.5),
        "numpy scalar": np.float64(0.1),
        "bools": torch.tensor([True, False]),
        "plain": {"n": 3, "name": "adam", "flag": True, "nothing": None, "pair": (1.0, float("nan"))},
        "big int": 2**60,
        "infinite": float("-inf"),
    }
    records = _recorded(tmp_path, monkeypatch, [(("c", name, value), {}) for name, value in values.items()])
    expected = expected_by_check(records)
    assert judge("c", expected["c"], records) is None
    assert records[0].value["shape"] == [2, 3]


def test_values_within_the_references_tolerance_pass_and_others_fail_saying_where():
    want = [Record("c", "w", encode(torch.tensor([1.0, 2.0])), rtol=0.0, atol=1e-3)]
    expected = expected_by_check(want)["c"]
    close = [Record("c", "w", encode(torch.tensor([1.0005, 2.0])), rtol=1e9, atol=1e9)]
    far = [Record("c", "w", encode(torch.tensor([1.1, 2.0])), rtol=1e9, atol=1e9)]
    shape = [Record("c", "w", encode(torch.tensor([[1.0, 2.0]])), rtol=0, atol=0)]
    assert judge("c", expected, close) is None
    assert judge("c", expected, far) == "'w': 1 of 2 entries outside the tolerance", "its own tolerance is ignored"
    assert judge("c", expected, shape) == "'w': shape [1, 2] instead of [2]"


@pytest.mark.parametrize(
    "got, message",
    [
        ([], "no value recorded for 'w'"),
        ([Record("c", "w", encode(1.0), 0, 0)] * 2, "'w' was recorded 2 times"),
        (
            [Record("c", "w", encode(1.0), 0, 0), Record("c", "extra", encode(1.0), 0, 0)],
            "recorded values this check does not make: 'extra'",
        ),
        ([Record("c", "w", encode("1.0"), 0, 0)], "'w': expected a number, got plain value"),
        ([Record("c", "w", encode(float("nan")), 0, 0)], "'w': value outside the tolerance"),
        ([Record("other", "w", encode(1.0), 0, 0)], "no value recorded for 'w'"),
    ],
)
def test_missing_repeated_extra_or_wrongly_typed_values_fail(got, message):
    expected = expected_by_check([Record("c", "w", encode(1.0), rtol=0, atol=0)])["c"]
    assert judge("c", expected, got).startswith(message)


def test_nan_matches_only_nan_and_infinities_only_themselves():
    for value, ok, bad in [(float("nan"), float("nan"), 0.0), (float("inf"), float("inf"), 1e308)]:
        expected = expected_by_check([Record("c", "v", encode(value), rtol=1.0, atol=1.0)])["c"]
        assert judge("c", expected, [Record("c", "v", encode(ok), 0, 0)]) is None
        assert judge("c", expected, [Record("c", "v", encode(bad), 0, 0)]) is not None


def test_hostile_values_files_are_read_without_raising():
    nested = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    big_int = json.dumps({"check": "c", "name": "w", "value": 1, "rtol": "9" * 5000, "atol": 0}).encode()
    lines = [
        nested,
        big_int,
        b"\xff\xfe not json",
        b'{"check": 1, "name": "w", "value": 0, "rtol": 0, "atol": 0}',
        b"[]",
    ]
    good = json.dumps({"check": "c", "name": "w", "value": encode(1.0), "rtol": 0, "atol": 0}).encode()
    records, bad = parse_records(b"\n".join(lines + [good]))
    assert bad == len(lines) - 1 or bad == len(lines)  # the big-int line either parses to inf or is refused
    assert Record("c", "w", encode(1.0), 0.0, 0.0) in records


def test_judging_a_hostile_value_never_raises():
    expected = expected_by_check([Record("c", "w", encode([[1.0], {"k": torch.ones(2)}]), rtol=0, atol=0)])["c"]
    for value in [None, 3, [], {"kind": "list"}, {"kind": "list", "items": [None, {}]}, {"kind": "array"}, "x" * 10]:
        assert judge("c", expected, [Record("c", "w", value, 0, 0)]) is not None


def test_a_reference_that_records_a_name_twice_is_an_authoring_error():
    twice = [Record("c", "w", encode(1.0), 0, 0)] * 2
    with pytest.raises(ValueError, match="records 'w' twice in the reference"):
        expected_by_check(twice)


@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        (("", "w", 1.0), {}, TypeError),
        (("c", "", 1.0), {}, TypeError),
        (("c", "w", 1.0), {"atol": -1.0}, ValueError),
        (("c", "w", object()), {}, TypeError),
        (("c", "w", torch.zeros(MAX_NUMBERS + 1)), {}, ValueError),
        (("c", "w", {1: 2.0}), {}, TypeError),
        (("c", "w", 10**5000), {}, ValueError),
        (("c", "w", torch.zeros(2, dtype=torch.complex64)), {}, TypeError),
    ],
)
def test_record_refuses_what_it_cannot_judge(args, kwargs, error):
    with pytest.raises(error):
        record(*args, **kwargs)
