"""The import graph of dpdl: no cycle between its parts, and no part imports a layer above its own.

The graph is read from the source (``ast``, nothing is imported), with every import: at the top, inside
functions (the lazy ones), and relative ones; only ``if TYPE_CHECKING:`` blocks are left out, since they
never run. A *part* is a subpackage (``dpdl.grading``) or a top-level module (``dpdl.relax``). The layers
are those of DEVELOPERS.md ("Layers"). ``python -m tests.test_import_graph`` prints the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dpdl"

# Lowest first; a part may import its own layer's parts and those below, never above. Every part is listed:
# a new module fails test_every_part_has_a_layer until it is placed here (and in DEVELOPERS.md).
LAYERS = [
    ["dpdl._checks", "dpdl.flags", "dpdl.device", "dpdl.repro", "dpdl.progress"],
    ["dpdl.autodiff", "dpdl.relax", "dpdl.losses", "dpdl.ssl", "dpdl.data", "dpdl.notebooks", "dpdl.plot"],
    ["dpdl.train", "dpdl.grading", "dpdl.binder"],
    ["dpdl.models"],
    ["dpdl.diffusion", "dpdl.frechet", "dpdl.gan", "dpdl.vae"],
    ["dpdl.doctor", "dpdl.release", "dpdl.site"],
    ["dpdl", "dpdl.cli", "dpdl.__main__"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """``dpdl.grading.runner`` -> ``dpdl.grading``; ``dpdl.relax`` -> ``dpdl.relax``; ``dpdl`` -> ``dpdl``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """The dpdl modules that the module at ``path`` imports, wherever in it (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for child in node.body
        for n in ast.walk(child)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}  # `from dpdl import grading`
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules and name != here}


def module_graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def part_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        graph.setdefault(part_of(module), set()).update(part_of(t) for t in targets)
    for part, targets in graph.items():
        targets.discard(part)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(part: str) -> int:
    for number, layer in enumerate(LAYERS):
        if part in layer:
            return number
    raise KeyError(f"{part} has no layer: add it to LAYERS in tests/test_import_graph.py and to DEVELOPERS.md")


def test_every_part_has_a_layer():
    unlisted = sorted(set(part_graph()) - {part for layer in LAYERS for part in layer})
    assert not unlisted, f"parts with no layer (add them to LAYERS and DEVELOPERS.md): {unlisted}"


def test_the_graph_is_read_from_the_source():
    graph = module_graph()
    assert "dpdl.notebooks.cells" in graph["dpdl.grading.merge"]  # a top-level import
    assert "dpdl.grading.sandbox" in graph["dpdl.grading.runner"]  # one inside a function
    assert "dpdl.grading.sandbox" in graph["dpdl.grading.cli"]


def test_no_two_parts_of_dpdl_import_each_other():
    assert cycles(part_graph()) == []


def test_no_module_import_cycle_inside_a_part_either():
    graph = module_graph()
    # A package's __init__ re-exporting its modules is not a cycle of ideas: leave those edges out.
    inner = {
        m: {t for t in targets if not (graph.get(t) is not None and t == m.rpartition(".")[0])}
        for m, targets in graph.items()
    }
    assert cycles(inner) == []


def test_every_part_imports_only_its_own_layer_or_below():
    upward = [
        f"{part} (layer {layer_of(part)}) imports {target} (layer {layer_of(target)})"
        for part, targets in sorted(part_graph().items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(part)
    ]
    assert upward == []


def test_the_layers_are_documented():
    developers = (PACKAGE.parent / "DEVELOPERS.md").read_text(encoding="utf-8")
    for layer in LAYERS:
        for part in layer:
            assert f"`{part}`" in developers, f"DEVELOPERS.md ('Layers') does not name {part}"


if __name__ == "__main__":
    for part, targets in sorted(part_graph().items(), key=lambda item: (layer_of(item[0]), item[0])):
        print(f"[{layer_of(part)}] {part} -> {', '.join(sorted(targets)) or '(nothing in dpdl)'}")
