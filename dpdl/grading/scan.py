"""A static scan of answer cells for code that has no place in an answer and needs a human look.

``dpdl grade`` runs it on every submission (`scan_answers`); each finding becomes a review flag in
``marks.csv`` and in the student's feedback, and never changes a mark: a flag is a reason to read the
code, not proof of cheating (the tamper evidence of :mod:`dpdl.grading.guard` and the values channel decide
the marks). What it looks for, in the abstract syntax tree of each cell (IPython syntax: magics and ``!``
commands are translated first):

- patching: assignment to an attribute of an imported module (``torch.allclose = ...``), ``setattr`` /
  ``delattr`` on a module or class, ``builtins`` / ``__builtins__``, function internals (``__code__``,
  ``__globals__``, ``__defaults__``), comparison dunders that make an object equal to anything, torch's
  function and dispatch modes;
- reaching into the interpreter: ``sys.settrace`` / ``setprofile`` and other ``sys`` hooks, ``gc``,
  ``ctypes``, frame inspection (``sys._getframe``, ``inspect.currentframe``, ``f_back``, ``f_locals``),
  ``importlib``, threads;
- IPython's hooks: input and AST transformers, ``set_custom_exc``, ``showtraceback``, event callbacks,
  shell escapes and magics that run other code;
- running other code: ``exec``, ``eval``, ``compile``, ``__import__``, ``globals()``;
- processes and the file system: ``subprocess``, ``os.system`` / ``popen`` / ``kill``, ``signal``, and
  opening paths that are absolute, in the home folder or go up with ``..``.

A cell that does not parse is flagged too: it could not be scanned. No answer of a course exercise needs
any of these; the tests scan every exercise's reference solutions and expect no flag.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Mapping

__all__ = ["scan_answers", "scan_source"]

# Names that usually stand for a module in a notebook even when the answer did not import them itself.
_USUAL_ALIASES = {
    "np": "numpy", "numpy": "numpy", "torch": "torch", "F": "torch.nn.functional", "nn": "torch.nn",
    "math": "math", "sys": "sys", "os": "os", "builtins": "builtins", "plt": "matplotlib.pyplot",
    "pd": "pandas", "gc": "gc", "ctypes": "ctypes", "subprocess": "subprocess", "signal": "signal",
    "inspect": "inspect", "importlib": "importlib", "threading": "threading", "shutil": "shutil",
    "pathlib": "pathlib", "IPython": "IPython", "dpdl": "dpdl", "random": "random", "scipy": "scipy",
    "sklearn": "sklearn", "torchvision": "torchvision", "optim": "torch.optim", "types": "types",
}  # fmt: skip

# Module names a notebook's setup binds and its checks use: an answer that rebinds one fools the checks.
_SETUP_MODULES = {"np", "numpy", "torch", "math", "nn", "sys", "os", "builtins", "plt", "pd"}
_BUILTIN_CALLABLES = {name for name in dir(builtins) if not name.startswith("_") and callable(getattr(builtins, name))}

# Dotted names (after resolving import aliases) that an answer has no business using, and why.
_FORBIDDEN = {
    "sys.settrace": "installs a trace function",
    "sys.setprofile": "installs a profile function",
    "sys._getframe": "inspects stack frames",
    "sys.addaudithook": "installs an audit hook",
    "sys.monitoring": "installs a monitoring callback",
    "sys.modules": "reaches into the module table",
    "sys.meta_path": "installs an import hook",
    "sys.path_hooks": "installs an import hook",
    "sys.excepthook": "touches the exception hook",
    "sys.displayhook": "touches the display hook",
    "threading": "uses threads or their trace hooks",
    "_thread": "uses threads",
    "gc": "reaches objects through the garbage collector",
    "ctypes": "uses ctypes",
    "inspect.currentframe": "inspects stack frames",
    "inspect.stack": "inspects stack frames",
    "inspect.getouterframes": "inspects stack frames",
    "inspect.getinnerframes": "inspects stack frames",
    "inspect.trace": "inspects stack frames",
    "importlib": "imports or reloads modules by hand",
    "builtins": "uses the builtins module",
    "subprocess": "starts processes",
    "os.system": "runs a shell command",
    "os.popen": "runs a shell command",
    "os.kill": "sends a signal to a process",
    "os.killpg": "sends a signal to a process group",
    "os.fork": "starts a process",
    "os.forkpty": "starts a process",
    "os.posix_spawn": "starts a process",
    "os.posix_spawnp": "starts a process",
    "os.chdir": "changes the working directory",
    "signal": "handles or sends signals",
    "pty": "starts a terminal",
    "socket": "opens a network socket",
    "multiprocessing": "starts processes",
    "torch.overrides": "uses torch function overrides",
    "torch.utils._python_dispatch": "uses torch dispatch modes",
    "torch._C": "reaches into torch's C internals",
    "IPython": "uses IPython's internals",
    "ipykernel": "uses the kernel's internals",
    "dpdl.grading": "uses the grader",
}
_FORBIDDEN_PREFIXES = {"os.exec": "replaces the process", "os.spawn": "starts a process"}
_CALLS = {
    "exec": "runs code from a string",
    "eval": "runs code from a string",
    "compile": "compiles code from a string",
    "__import__": "imports a module by name",
    "globals": "reaches the notebook's global namespace",
    "breakpoint": "starts a debugger",
}
_IPYTHON_HOOKS = {
    "input_transformers_cleanup", "input_transformers_post", "ast_transformers", "input_transformer_manager",
    "set_custom_exc", "custom_exceptions", "showtraceback", "_showtraceback", "showsyntaxerror",
    "InteractiveTB", "SyntaxTB", "CustomTB", "display_pub", "displayhook", "set_hook",
    "register_magic_function", "run_cell", "run_cell_async", "transform_cell", "builtin_trap", "user_ns",
}  # fmt: skip
_FRAME_ATTRIBUTES = {"f_back", "f_locals", "f_globals", "f_builtins", "f_code", "f_trace", "f_lineno",
                     "tb_frame", "gi_frame", "cr_frame", "ag_frame"}  # fmt: skip
_FUNCTION_INTERNALS = {"__code__", "__globals__", "__closure__", "__defaults__", "__kwdefaults__",
                       "__subclasses__", "__builtins__"}  # fmt: skip
_ALWAYS_EQUAL_DUNDERS = {"__eq__", "__ne__", "__bool__", "__lt__", "__le__", "__gt__", "__ge__",
                         "__array_function__", "__array_ufunc__", "__torch_function__", "__torch_dispatch__",
                         "__instancecheck__", "__subclasscheck__"}  # fmt: skip
# Magics and shell escapes that run other code or change how errors show (after IPython's translation
# they are calls of get_ipython().run_line_magic / run_cell_magic / system / getoutput).
_MAGICS = {"run", "load", "load_ext", "config", "xmode", "sx", "system", "sh", "bash", "script",
           "writefile", "env", "cd", "alias", "store", "pdb", "debug"}  # fmt: skip
# Functions that take a path: a literal absolute, home-relative or upward path in them is flagged.
_PATH_FUNCTIONS = {
    "open", "Path", "PurePath", "PosixPath", "listdir", "scandir", "walk", "glob", "iglob", "rglob", "load",
    "save", "loadtxt", "savetxt", "genfromtxt", "fromfile", "tofile", "memmap", "read_csv", "to_csv",
    "read_text", "write_text", "read_bytes", "write_bytes", "rmtree", "remove", "unlink", "rename",
    "copy", "copyfile", "copytree", "move", "chmod", "makedirs", "mkdir", "symlink", "link", "stat",
    "exists", "isfile", "isdir", "ImageFolder", "imread", "imsave", "savefig", "File",
}  # fmt: skip


def scan_answers(answers: Mapping[str, str]) -> list[str]:
    """One human-readable flag per suspicious construct in the answer cells ``{answer id: source}``.

    Each flag names the answer, the line and the construct, for instance ``answer `mse` line 3:
    `torch.allclose = ...` assigns to an attribute of the module torch (patching a library)``.
    """
    flags: list[str] = []
    for answer_id, source in answers.items():
        flags.extend(f"answer `{answer_id}` {finding}" for finding in scan_source(source))
    return flags


def scan_source(source: str) -> list[str]:
    """The findings in one cell's source, each ``line N: <construct> <why>``, in line order, without repeats."""
    tree, error = _parse(source)
    if tree is None:
        return [f"line {error[0]}: does not parse as Python ({error[1]}), so it could not be scanned"]
    scanner = _Scanner(_aliases(tree))
    try:
        scanner.visit(tree)
    except RecursionError:  # thousands of nested brackets: no answer looks like that
        return ["line 1: nested too deeply to be scanned"]
    seen: set[tuple[int, str]] = set()
    found = []
    for line, text in sorted(scanner.findings, key=lambda finding: finding[0]):
        if (line, text) not in seen:
            seen.add((line, text))
            found.append(f"line {line}: {text}")
    return found


def _parse(source: str) -> tuple[ast.Module | None, tuple[int, str]]:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except ImportError:
        pass
    except Exception as error:  # noqa: BLE001 - a magic IPython itself cannot translate
        return None, (1, f"{type(error).__name__}: {error}")
    try:
        return ast.parse(source), (0, "")
    except SyntaxError as error:
        return None, (error.lineno or 1, f"SyntaxError: {error.msg}")
    except (RecursionError, MemoryError):
        return None, (1, "nested too deeply")
    except ValueError as error:  # null bytes
        return None, (1, f"ValueError: {error}")


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Which local name stands for which module or module attribute, from the cell's imports."""
    aliases = dict(_USUAL_ALIASES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]`` for a chain of names and attributes, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "get_ipython":
        return ["get_ipython()", *reversed(parts)]
    return None


def _source_of(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


class _Scanner(ast.NodeVisitor):
    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = aliases
        self.findings: list[tuple[int, str]] = []

    def flag(self, node: ast.AST, construct: str, why: str) -> None:
        self.findings.append((getattr(node, "lineno", 1), f"`{construct}` {why}"))

    def resolve(self, parts: list[str]) -> str:
        root = self.aliases.get(parts[0], parts[0])
        return ".".join([root, *parts[1:]])

    def is_module(self, name: str) -> bool:
        return name in self.aliases

    def forbidden(self, dotted: str) -> str | None:
        if dotted == "IPython.display" or dotted.startswith("IPython.display."):
            return None  # showing images and HTML is what notebooks do
        for name, why in _FORBIDDEN.items():
            if dotted == name or dotted.startswith(name + "."):
                return why
        for prefix, why in _FORBIDDEN_PREFIXES.items():
            if dotted.startswith(prefix):
                return why
        return None

    # imports ---------------------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            why = self.forbidden(alias.name)
            if why:
                self.flag(node, f"import {alias.name}", why)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        for alias in node.names:
            dotted = f"{module}.{alias.name}" if module else alias.name
            why = self.forbidden(module) or self.forbidden(dotted)
            if why:
                self.flag(node, f"from {module} import {alias.name}", why)
            if alias.name in _ALWAYS_EQUAL_DUNDERS | {"TorchFunctionMode", "TorchDispatchMode"}:
                self.flag(
                    node, f"from {module} import {alias.name}", "imports a hook that changes how operations behave"
                )

    # names and attributes --------------------------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and node.id in _SETUP_MODULES:
            self.flag(node, f"{node.id} = ...", f"rebinds `{node.id}`, a module's name the checks use")
        if node.id == "__builtins__":
            self.flag(node, "__builtins__", "reaches the built-in functions")
        elif node.id in self.aliases and node.id not in _USUAL_ALIASES and isinstance(node.ctx, ast.Load):
            why = self.forbidden(self.aliases[node.id])  # from sys import settrace; settrace(...)
            if why:
                self.flag(node, node.id, why)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts = _dotted(node)
        if parts is not None:
            dotted = self.resolve(parts)
            why = self.forbidden(dotted)
            if why and parts[0] in self.aliases:
                self.flag(node, dotted, why)
                return  # one flag per chain: its inner attributes name the same thing
        if node.attr in _FRAME_ATTRIBUTES:
            self.flag(node, _source_of(node), "inspects stack frames")
        elif node.attr in _FUNCTION_INTERNALS:
            self.flag(node, _source_of(node), "reaches into a function's internals")
        elif node.attr in _IPYTHON_HOOKS:
            self.flag(node, _source_of(node), "touches IPython's machinery that runs and reports the checks")
        elif node.attr in ("register", "unregister", "callbacks") and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "events":  # fmt: skip
            self.flag(node, _source_of(node), "registers an IPython event callback")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and parts is not None and self.is_module(parts[0]):
            verb = "deletes" if isinstance(node.ctx, ast.Del) else "assigns to"
            self.flag(node, f"{self.resolve(parts)} = ..." if verb == "assigns to" else f"del {self.resolve(parts)}",
                      f"{verb} an attribute of the module {self.aliases[parts[0]]} (patching a library)")  # fmt: skip
        self.generic_visit(node)

    # calls -----------------------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _CALLS:
            self.flag(node, f"{func.id}(...)", _CALLS[func.id])
        if isinstance(func, ast.Name) and func.id in ("setattr", "delattr", "getattr") and node.args:
            self._attribute_call(node, func.id)
        parts = _dotted(func)
        if parts and parts[0] == "get_ipython()" and len(parts) == 2:
            self._ipython_call(node, parts[1])
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if name in _PATH_FUNCTIONS:
            for argument in [*node.args, *(keyword.value for keyword in node.keywords)]:
                path = _outside_path(argument)
                if path is not None:
                    self.flag(node, f"{name}({path!r})", "uses a path outside the working directory")
        if name in ("home", "expanduser"):
            self.flag(node, _source_of(node), "uses the home folder, outside the working directory")
        self.generic_visit(node)

    def _attribute_call(self, node: ast.Call, function: str) -> None:
        target = node.args[0]
        attribute = node.args[1] if len(node.args) > 1 else None
        name = attribute.value if isinstance(attribute, ast.Constant) and isinstance(attribute.value, str) else None
        parts = _dotted(target)
        if function == "getattr":
            if name is not None and (name in _FRAME_ATTRIBUTES | _FUNCTION_INTERNALS | _IPYTHON_HOOKS
                                     or (parts and self.forbidden(f"{self.resolve(parts)}.{name}"))):  # fmt: skip
                self.flag(node, _source_of(node), "reaches a forbidden attribute by name")
            return
        on_module = parts is not None and self.is_module(parts[0])
        on_class = (
            (isinstance(target, ast.Name) and target.id[:1].isupper())
            or (isinstance(target, ast.Call) and isinstance(target.func, ast.Name) and target.func.id == "type")
            or (isinstance(target, ast.Attribute) and target.attr == "__class__")
            or (parts is not None and parts[-1][:1].isupper() and on_module)
        )  # fmt: skip
        if on_module or on_class or (name is not None and name.startswith("__") and name.endswith("__")):
            what = "a module" if on_module and not on_class else "a class" if on_class else "a special attribute"
            self.flag(node, _source_of(node), f"changes {what} at run time (patching)")

    def _ipython_call(self, node: ast.Call, method: str) -> None:
        if method in ("system", "getoutput"):
            self.flag(node, _source_of(node), "runs a shell command")
        elif method in ("run_line_magic", "run_cell_magic") and node.args:
            magic = node.args[0]
            if isinstance(magic, ast.Constant) and magic.value in _MAGICS:
                self.flag(node, f"%{magic.value}", "runs a magic that runs other code or changes error reporting")

    # definitions -----------------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._builtin_definition(node, node.name, f"def {node.name}")
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Lambda):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self._builtin_definition(node, target.id, f"{target.id} = lambda ...")
        self.generic_visit(node)

    def _builtin_definition(self, node: ast.AST, name: str, construct: str) -> None:
        if name in _BUILTIN_CALLABLES and node.col_offset == 0:  # a method called `all` is harmless
            self.flag(node, construct, f"hides the built-in `{name}` that checks may call")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._builtin_definition(node, node.name, f"class {node.name}")
        for statement in node.body:
            if (
                isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef))
                and statement.name in _ALWAYS_EQUAL_DUNDERS
            ):
                self.flag(statement, f"def {statement.name}", "defines how objects compare or dispatch (an object "
                          "equal to anything passes `==` checks)")  # fmt: skip
            elif isinstance(statement, ast.Assign):
                for target in statement.targets:
                    if isinstance(target, ast.Name) and target.id in _ALWAYS_EQUAL_DUNDERS:
                        self.flag(statement, f"{target.id} = ...", "defines how objects compare or dispatch")
        self.generic_visit(node)


def _outside_path(node: ast.AST) -> str | None:
    """The literal path in ``node`` when it leaves the working directory (absolute, ``~`` or ``..``)."""
    if isinstance(node, ast.JoinedStr):
        first = node.values[0] if node.values else None
        text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else ""
        whole = "".join(value.value for value in node.values if isinstance(value, ast.Constant))
    elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        text = whole = node.value.decode("utf-8", "replace") if isinstance(node.value, bytes) else node.value
    else:
        return None
    parts = whole.replace("\\", "/").split("/")
    if text.startswith(("/", "~", "\\")) or (len(text) > 1 and text[1] == ":") or ".." in parts:
        return whole
    return None
