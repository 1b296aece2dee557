"""How much of a module is argument checking: guard lines as a share of code lines (issue 17, section 3).

A guard line belongs to an ``if`` whose branch ends in ``raise`` (the test and the message), a ``raise``
anywhere, a call of a ``check_*``/``_check_*`` validator, or the body of such a validator defined in the
module. Code lines are the lines of statements, without docstrings, comments and blank lines.

    python benchmarks/count_guard_lines.py dpdl/relax.py dpdl/losses.py dpdl/train/metrics.py
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path


def _is_check_name(name: str) -> bool:
    return name.lstrip("_").startswith("check")


def _lines(node: ast.AST) -> set[int]:
    return set(range(node.lineno, node.end_lineno + 1))


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines |= _lines(first)
    return lines


def _code_lines(source: str, tree: ast.AST) -> set[int]:
    """Lines holding a token other than a comment, newline or indentation, less docstrings."""
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines |= set(range(token.start[0], token.end[0] + 1))
    return lines - _docstring_lines(tree)


def _guard_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_check_name(node.name):
            lines |= _lines(node)
        elif isinstance(node, ast.If) and node.body and isinstance(node.body[-1], ast.Raise):
            lines |= set(range(node.lineno, node.body[-1].end_lineno + 1))
        elif isinstance(node, ast.Raise):
            lines |= _lines(node)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if _is_check_name(name):
                lines |= _lines(node)
    return lines


def measure(path: Path) -> tuple[int, int]:
    """``(guard lines, code lines)`` of the module at ``path``."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    code = _code_lines(source, tree)
    return len(_guard_lines(tree) & code), len(code)


def main(paths: list[str]) -> None:
    print("| module | guard lines | code lines | share |")
    print("|---|---:|---:|---:|")
    for path in paths:
        guard, code = measure(Path(path))
        print(f"| `{path}` | {guard} | {code} | {guard / code:.0%} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["dpdl/relax.py", "dpdl/losses.py", "dpdl/train/metrics.py"])
