"""The recorder's messages: one line a student can act on per failed cell (pure functions, no kernel)."""

import os

from hypothesis import given
from hypothesis import strategies as st

from dpdl.grading.recorder import _common_prefix_length, _short_difference, exception_line


def test_a_bare_assertion_is_reported_with_the_failing_line():
    error = {
        "ename": "AssertionError",
        "evalue": "",
        "traceback": ["\x1b[0;31m----> 2\x1b[0m \x1b[38;5;28;01massert\x1b[39;00m w \x1b[38;5;241m==\x1b[39m 3\n"],
    }
    assert exception_line(error) == "AssertionError at `assert w == 3`"


def test_long_exception_messages_are_cut():
    line = exception_line({"ename": "ValueError", "evalue": "y" * 10_000, "traceback": []})
    assert len(line) == 500 and line.endswith("…")


def test_output_differences_show_where_they_start():
    lines = _short_difference("[[0.5 0.5]\n [1.  0. ]]\n", "[[0.5 0.5]\n [0.5 0.5]]\n")
    assert lines[0] == "first difference at character 13 (expected 23 characters, got 23)"


@given(st.text(alphabet="ab\n", max_size=40), st.text(alphabet="ab\n", max_size=40))
def test_the_first_difference_is_found_by_bisection(a, b):
    assert _common_prefix_length(a, b) == len(os.path.commonprefix([a, b]))
