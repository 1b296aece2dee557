"""Tamper evidence: the guard's cells in the merged notebook, and every hostile submission against them.

The hostile submissions live in ``tests/fixtures/hostile/*.py``: each defines wrong functions (honest marks
0) and attacks the checks in one way that raised marks before the guard existed. Graded against the tiny
references of ``tests/fixtures/hostile/reference.py`` (seconds per kernel), each must end with 0 marks,
the guard's message on its checks and a review flag.
"""

import dis
import math
import sys
import types

import nbformat
import pytest

from dpdl.grading import grade_submission, guard
from dpdl.grading.guard import (
    GUARD_KEY,
    METADATA_KEY,
    PREFIX,
    WATCHED_MODULES,
    guard_failures,
    install,
    install_cell_source,
    names_assigned,
    names_read,
    verify_output,
)
from dpdl.grading.merge import IGNORE_OUTPUT_TAG, merge
from dpdl.grading.runner import CellOutcome
from dpdl.notebooks.cells import cell_id, cell_role, graded_cells
from tests.fixtures.grading import exercise
from tests.fixtures.hostile import reference as hostile

CELL_TIMEOUT = 30


@pytest.fixture
def verify(capsys):
    """Installs the guard in this process (no IPython shell here) when called, once pytest has set up the
    test's output capture (a different ``sys.stdout`` from the fixture's); removed again afterwards."""
    yield lambda: install(WATCHED_MODULES, PREFIX, GUARD_KEY)
    sys.modules.pop(GUARD_KEY, None)


def _guard_cells(nb, role):
    return [cell for cell in nb.cells if cell.metadata.get(METADATA_KEY, {}).get("role") == role]


# --- in this process -------------------------------------------------------------------------------------


def test_an_untouched_process_verifies_and_prints_the_expected_line(verify, capsys):
    verifier = verify()
    verifier("check_x")
    assert capsys.readouterr().out == verify_output("check_x")
    assert sys.modules[GUARD_KEY] is verifier


def test_a_replaced_library_function_fails_naming_it(verify, monkeypatch, capsys):
    verify = verify()
    monkeypatch.setattr(math, "isclose", lambda *args, **kwargs: True)
    with pytest.raises(Exception, match=r"dpdl-guard: math\.isclose was replaced") as error:
        verify("check_x")
    assert type(error.value).__name__ == "TamperError"
    assert "math.isclose was replaced" in capsys.readouterr().out, "the message is printed too, for hidden errors"


def test_torch_rewrapping_its_own_manual_seed_is_not_tampering_but_another_function_is(verify, monkeypatch):
    """Importing torch._dynamo (torch does it lazily, e.g. while some errors are formatted) sets
    ``torch.manual_seed`` to a wrapper of itself: a wrong submission lost a visible check to that once."""
    import functools

    import torch

    verify = verify()
    original = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", functools.wraps(original)(lambda seed: original(seed)))
    verify("check_x")
    monkeypatch.setattr(torch, "manual_seed", lambda seed: None)
    with pytest.raises(Exception, match=r"dpdl-guard: torch\.manual_seed was replaced"):
        verify("check_x")


def test_a_replaced_builtin_fails_even_though_the_verifier_uses_builtins(verify):
    import builtins

    verify = verify()
    saved = builtins.len, builtins.isinstance
    builtins.len, builtins.isinstance = (lambda obj: 0), (lambda obj, cls: True)  # pytest itself needs them back
    try:
        verify("check_x")
        error = None
    except Exception as raised:  # noqa: BLE001 - pytest.raises would call the replaced isinstance
        error = raised
    finally:
        builtins.len, builtins.isinstance = saved
    assert (
        error is not None
        and "builtins.len was replaced" in str(error)
        and "builtins.isinstance was replaced" in str(error)
    )


def test_a_trace_function_fails(verify):
    verify = verify()
    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: None)
    try:
        with pytest.raises(Exception, match=r"the trace function \(sys\.settrace\) was replaced"):
            verify("check_x")
    finally:
        sys.settrace(previous)


def test_changed_defaults_of_a_numpy_function_fail(verify, monkeypatch):
    import numpy as np

    verify = verify()
    monkeypatch.setattr(np.allclose._implementation, "__defaults__", (1e9, 1e9, False))
    with pytest.raises(Exception, match=r"numpy\.allclose\.__defaults__ was replaced"):
        verify("check_x")


def test_a_torch_function_mode_fails_but_a_default_device_does_not(verify):
    torch = pytest.importorskip("torch")
    from torch.overrides import TorchFunctionMode

    class Passthrough(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    verify = verify()
    torch.set_default_device("cpu")  # pushes torch's DeviceContext mode: honest
    try:
        verify("check_x")
    finally:
        torch.set_default_device(None)
    mode = Passthrough()
    mode.__enter__()
    try:
        with pytest.raises(Exception, match=r"torch's function mode stack \(a TorchFunctionMode is active\) changed"):
            verify("check_x")
    finally:
        mode.__exit__(None, None, None)


def _functions_reachable_from(verifier):
    """The verifier and every function of the guard that its closures hold, directly or in the lists of recorded
    getters (not the library functions it recorded)."""
    found, todo = {}, [verifier]
    while todo:
        item = todo.pop()
        if (
            isinstance(item, types.FunctionType)
            and id(item) not in found
            and item.__code__.co_filename == guard.__file__
        ):
            found[id(item)] = item
            for cell in item.__closure__ or ():
                try:
                    todo.append(cell.cell_contents)
                except ValueError:  # not yet filled
                    pass
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return list(found.values())


def test_the_verifier_looks_up_no_global_or_builtin_name(verify):
    """Answer code can replace any global or built-in; the verifier uses only what it saved at install."""
    functions = _functions_reachable_from(verify())
    assert len(functions) > 10
    looked_up = set()
    for function in functions:
        codes = [function.__code__]
        while codes:
            code = codes.pop()
            looked_up |= {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
            codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
    assert looked_up == set()


def test_the_install_cell_is_self_contained_python():
    source = install_cell_source()
    compile(source, "install", "exec")
    assert "from dpdl" not in source and "import dpdl" not in source, "the kernel may have no dpdl to import"
    assert source.rstrip().endswith("del install"), "the cell leaves no global name behind"


# --- merging ---------------------------------------------------------------------------------------------


def test_merge_installs_the_guard_before_the_first_answer_and_verifies_before_every_check():
    reference = exercise.reference()
    merged = merge(reference, {})
    code = [cell for cell in merged.cells if cell.cell_type == "code"]
    install_at = code.index(_guard_cells(merged, "install")[0])
    first_answer = next(i for i, cell in enumerate(code) if cell_role(cell) == "answer")
    assert install_at == first_answer - 1
    for index, cell in enumerate(code):
        if cell_role(cell) in ("check", "hidden"):
            before = code[index - 1]
            assert before.metadata[METADATA_KEY] == {"role": "verify", "check": cell_id(cell)}
            assert IGNORE_OUTPUT_TAG not in before.metadata.get("tags", []), "its printed line is compared"
            assert before.outputs[0]["text"] == verify_output(cell_id(cell))
    assert len(_guard_cells(merged, "verify")) == len(graded_cells(reference)) == 4
    assert merge(reference, {}, guard=False).cells == [
        cell for cell in merged.cells if METADATA_KEY not in cell.metadata
    ]


def test_verify_cells_protect_setup_names_the_check_reads_and_builtins_it_calls():
    merged = merge(exercise.reference(), {})
    sources = {cell.metadata[METADATA_KEY]["check"]: cell.source for cell in _guard_cells(merged, "verify")}
    assert "('check_mse', ['np'], [])" in sources["check_mse"]
    assert "('check_softmax', ['np'], ['print'])" in sources["check_softmax"]
    # `w` is read by check_step but bound by the reference's answer: an answer may (must) rebind it
    assert "('check_step', ['np'], [])" in sources["check_step"]


def test_names_read_and_assigned_follow_ipython_syntax_and_give_up_on_star_imports():
    assert names_read("%timeit f(x)\nassert g(y) == z") >= {"g", "y", "z"}
    assert names_assigned("import numpy as np\nfrom a import b as c\nx, (y, z) = 1, (2, 3)\ndef f(): pass") == {
        "np", "c", "x", "y", "z", "f"}  # fmt: skip
    assert names_assigned("from numpy import *") is None
    assert names_read("def f(:") is None


def test_guard_failures_tell_tampering_from_a_dead_kernel():
    merged = merge(exercise.reference(), {})
    code = [cell for cell in merged.cells if cell.cell_type == "code"]
    index = {cell.metadata[METADATA_KEY]["check"]: i for i, cell in enumerate(code) if METADATA_KEY in cell.metadata
             and cell.metadata[METADATA_KEY]["role"] == "verify"}  # fmt: skip
    outcomes = {
        index["check_mse"]: CellOutcome(index["check_mse"], False, "TamperError: dpdl-guard: math.isclose was replaced"),
        index["check_softmax"]: CellOutcome(index["check_softmax"], False, "not run: the kernel had died in an earlier cell"),
        index["check_step"]: CellOutcome(
            index["check_step"], False,
            "output differs from the reference (stdout): first difference at character 0 (expected 34 characters, "
            "got 0) expected: 'dpdl-guard: ok before check_step\\n' got: ''",
        ),
    }  # fmt: skip
    failures = guard_failures(merged, outcomes)
    assert failures["check_mse"] == "dpdl-guard: math.isclose was replaced"
    assert "check_softmax" not in failures
    assert failures["check_step"].startswith("dpdl-guard: the integrity check before this check printed nothing")


# --- hostile submissions in real kernels -----------------------------------------------------------------


def _grade(tmp_path, nb, kind):
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return grade_submission(path, hostile.reference(kind), cell_timeout=CELL_TIMEOUT)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_the_references_get_full_marks_and_no_flag_under_the_guard(tmp_path, kind):
    result = _grade(tmp_path, hostile.reference(kind), kind)
    assert result.status == "graded"
    assert result.total == result.max, [check.message for check in result.checks]
    assert result.review == []


def test_the_honest_exercise_fixture_gets_full_marks_and_no_flag_under_the_guard(tmp_path):
    path = exercise.write(exercise.reference(), tmp_path / "solved.ipynb")
    result = grade_submission(path, exercise.reference(), cell_timeout=CELL_TIMEOUT)
    assert result.max == sum(exercise.CHECK_POINTS.values())
    assert (result.total, result.review) == (result.max, []), [check.message for check in result.checks]


@pytest.mark.parametrize("name", sorted(hostile.attacks()))
def test_a_hostile_submission_gets_no_more_than_its_honest_marks_and_a_review_flag(tmp_path, name):
    kind, source = hostile.attacks()[name]
    result = _grade(tmp_path, hostile.submission(kind, source), kind)
    assert result.status == "graded", result.reason
    assert result.total == 0, [(check.id, check.passed, check.message) for check in result.checks]
    guarded = [check for check in result.checks if PREFIX in check.message]
    assert guarded, f"no check failed with the guard's message: {[check.message for check in result.checks]}"
    assert any(guarded[0].id in flag.split(":")[0] and PREFIX in flag for flag in result.review), result.review


def test_a_wrong_answer_without_tampering_gets_no_flag(tmp_path):
    kind, source = hostile.attacks()["replace_math_isclose"]
    honest = source.split("math.isclose =")[0]  # the same wrong functions, no attack
    result = _grade(tmp_path, hostile.submission(kind, honest), kind)
    assert result.total == 0 and result.review == []
    assert not any(check.message.startswith(PREFIX) for check in result.checks)


def test_an_attack_on_the_guard_itself_is_not_stopped_in_the_kernel_but_is_flagged(tmp_path):
    """The limit of tamper evidence: code written against this guard can replace the verifier. The
    values channel and the sandbox protect the marks; the scan still puts the submission up for review."""
    kind, source = hostile.attacks()["replace_math_isclose"]
    source += (
        f"\nimport sys\nsys.modules[{GUARD_KEY!r}] = lambda check_id, *args: print(f'{PREFIX}ok before {{check_id}}')\n"
    )
    result = _grade(tmp_path, hostile.submission(kind, source), kind)
    assert any("sys.modules" in flag for flag in result.review), result.review


def test_an_honest_answer_that_plots_and_prints_is_not_flagged(tmp_path):
    """Plotting registers matplotlib's own IPython callback, and printing goes through IPython's stream
    wrapper: neither is tampering."""
    solutions = "\n\n".join(hostile.NUMPY_SOLUTIONS.values())
    answer = solutions + "\n\nimport matplotlib.pyplot as plt\n\nplt.plot([1, 2, 3])\nplt.show()\nprint('done')"
    result = _grade(tmp_path, hostile.submission("numpy", answer), "numpy")
    assert (result.total, result.review) == (result.max, []), [check.message for check in result.checks]
