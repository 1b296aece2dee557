"""Tamper evidence for ``dpdl grade``: notice answer code that patches what the checks rely on.

Answer cells run in the same kernel as the checks, so an answer can replace ``torch.allclose`` by
``lambda *a, **k: True``, install ``sys.settrace`` or an IPython transformer that rewrites the check cells,
or hide every traceback; each turns failing checks into passes. :func:`merge` puts two kinds of cells into
the merged notebook to catch this:

- an *install* cell, just before the first answer, runs :func:`install` in the kernel: it records the
  objects the checks rely on (every attribute of ``builtins``; the public attributes of ``math``, ``numpy``,
  ``numpy.testing``, ``torch``, ``torch.testing`` and ``torch.nn.functional`` with the code, defaults and
  module globals of their Python functions; the methods of ``torch.Tensor`` and ``numpy.ndarray``;
  ``sys``'s hooks and trace functions; torch's function and dispatch modes; IPython's input and AST
  transformers, event callbacks, display hook, traceback display and custom exception handler; and the
  setup cells' names the checks read);
- a *verify* cell before every visible and hidden check compares them with what is there now. On a
  change it raises ``dpdl-guard: torch.allclose was replaced (...)``; when nothing changed it prints one
  line that the grader expects. :func:`guard_failures` (in the grader's process) turns a verify cell that
  raised, printed something else or stayed silent into a failed check and a review flag, so hiding the
  error (a replaced ``showtraceback``) or skipping the cell (a transformer) fails the check as well.

This is tamper *evidence*, not a defence: everything lives in the kernel that answer code controls, so a
determined attacker who reads this module can still fool it (find the verifier through ``gc`` and replace
it, print the expected line, patch C-level state it does not record). Marks are protected by the values
channel (hidden checks judged outside the kernel, :mod:`dpdl.grading.verdict`) and the sandbox; this module
makes the common attacks fail loudly and puts the submission in front of a human. The recorded objects
sit in a closure, not in a global name, and the verifier calls only built-ins it saved at install time.

:func:`install` runs in the kernel: it uses the standard library only and imports nothing that the
notebook has not imported (apart from ``math`` and the submodules of packages already imported), and
:func:`merge` pastes its source into the install cell, so the kernel needs no ``dpdl`` to run it.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "PREFIX",
    "GUARD_KEY",
    "WATCHED_MODULES",
    "install",
    "install_cell_source",
    "verify_cell_source",
    "verify_output",
    "guard_failures",
    "names_read",
    "names_assigned",
]

_GOT = re.compile(r"got: (['\"])(.*?)(?:\\n)?\1?…?$")  # what the runner quotes of an output that differs
PREFIX = "dpdl-guard: "  # every message of the guard starts with this, so the grader can tell them apart
GUARD_KEY = "__dpdl_guard__"  # where the verifier waits in sys.modules (not a global of the notebook)
# The modules whose public attributes are recorded, when the notebook has imported them (or their package).
WATCHED_MODULES = ("builtins", "math", "numpy", "numpy.testing", "torch", "torch.testing", "torch.nn.functional")
METADATA_KEY = "dpdl_guard"  # cell metadata of the injected cells: {"role": "install" | "verify", "check": id}


def verify_output(check_id: str) -> str:
    """The one line a verify cell prints when nothing was tampered with (the output nbval expects)."""
    return f"{PREFIX}ok before {check_id}\n"


def install_cell_source() -> str:
    """Source of the cell that records the snapshot: :func:`install`'s code, run once, leaving no global."""
    if not _INSTALL_SOURCE:
        raise RuntimeError(
            "dpdl.grading.guard has no source file to paste into the install cell (dpdl was installed from "
            "bytecode only); reinstall dpdl with its .py files to grade"
        )
    return (
        "# dpdl grade: record what the checks rely on (tamper evidence; see dpdl/grading/guard.py)\n"
        + _INSTALL_SOURCE
        + f"install({WATCHED_MODULES!r}, {PREFIX!r}, {GUARD_KEY!r})\n"
        + "del install\n"
    )


def verify_cell_source(check_id: str, protected: Iterable[str] = (), shadowable: Iterable[str] = ()) -> str:
    """Source of the cell run before check ``check_id``.

    ``protected``: names the check reads that only the setup cells before the first answer bind (answer code
    must not rebind them); ``shadowable``: built-in names the check reads that no reference cell binds
    (answer code must not define them).
    """
    return (
        f"__import__('sys').modules[{GUARD_KEY!r}]"
        f"({check_id!r}, {sorted(set(protected))!r}, {sorted(set(shadowable))!r})\n"
    )


def guard_failures(merged: Mapping[str, Any], outcomes: Mapping[int, Any]) -> dict[str, str]:
    """``{check id: message}`` for the checks whose verify cell failed, from nbval's per-cell ``outcomes``.

    ``outcomes`` maps code-cell indices to objects with ``passed`` and ``message`` (the runner's
    ``CellOutcome``). A verify cell that never ran (the kernel died, the run was stopped) is left out:
    the check it guards did not run either and fails on its own, with no tamper suspected. One that ran
    out of time counts as failed: it takes milliseconds, unless answer code keeps it from finishing.
    """
    failures: dict[str, str] = {}
    code_cells = [cell for cell in merged["cells"] if cell.get("cell_type") == "code"]
    for index, cell in enumerate(code_cells):
        entry = cell.get("metadata", {}).get(METADATA_KEY, {})
        if entry.get("role") != "verify":
            continue
        outcome = outcomes.get(index)
        if outcome is None or outcome.passed:
            continue
        message = str(outcome.message)
        if message.startswith("not run"):
            continue
        failures[entry["check"]] = _tamper_message(message)
    return failures


def _tamper_message(message: str) -> str:
    """What to tell about a verify cell that failed with the runner's ``message``."""
    if message.startswith("output differs"):
        got = _GOT.search(message)
        printed = got.group(2) if got else ""
        if printed.startswith(PREFIX):
            return (
                f"{PREFIX}the integrity check before this check failed and its error was hidden (answer code "
                f"changed how errors are shown); it said: {printed[len(PREFIX) :]}…"
            )
        if not printed:
            return (
                f"{PREFIX}the integrity check before this check printed nothing: it was skipped or silenced "
                f"(answer code changed how cells run or print)"
            )
        return f"{PREFIX}the integrity check before this check printed something else: {printed!r}"
    at = message.find(PREFIX)
    if at >= 0:
        return message[at:]
    return f"{PREFIX}the integrity check before this check could not run (answer code removed or broke it): {message}"


# ---------------------------------------------------------------------------------------------------------
# Which names a check reads, from the reference's (trusted) sources, in the grader's process.


def names_read(source: str) -> set[str] | None:
    """Global names a cell reads (``ast.Name`` loads), or None when the cell does not parse."""
    tree = _parse(source)
    if tree is None:
        return None
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def names_assigned(source: str) -> set[str] | None:
    """Names a cell binds at top level or anywhere (assignments, defs, imports, loop targets), or None when
    it cannot be known (the cell does not parse, or does ``from x import *``)."""
    tree = _parse(source)
    if tree is None:
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.MatchAs) and node.name:
            names.add(node.name)
    return names


def builtin_names() -> frozenset[str]:
    return frozenset(name for name in vars(builtins) if not name.startswith("_"))


def _parse(source: str) -> ast.Module | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython missing or the cell's magic syntax is broken: parse it as is
        pass
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------------
# In the kernel. install() is pasted into the install cell: it must be self-contained (nested helpers,
# standard library only) and its verifier must not look up a single global or built-in name at call time.


def install(watched, prefix, key):  # noqa: C901 - one closure on purpose; no annotations: pasted into a cell
    """Record what the checks rely on and put the verifier in ``sys.modules[key]``; returns the verifier.

    Runs in the kernel, before the first answer cell. The verifier, ``verify(check_id, protected,
    shadowable)``, raises ``TamperError`` naming every change, or prints :func:`verify_output`.
    """
    import sys
    import threading
    import types

    # The built-ins the verifier calls, saved now: answer code may replace them later.
    _isinstance, _type, _len, _repr, _str, _id = isinstance, type, len, repr, str, id
    _list, _tuple, _sorted, _enumerate, _getattr, _vars, _callable = (
        list,
        tuple,
        sorted,
        enumerate,
        getattr,
        vars,
        callable,
    )
    _list_append, _join, _type_type, _range, _dict, _list_type = list.append, str.join, type, range, dict, list
    _Exception, _FunctionType, _ModuleType, _MethodType = (
        Exception,
        types.FunctionType,
        types.ModuleType,
        types.MethodType,
    )
    _gettrace, _getprofile, _modules = sys.gettrace, sys.getprofile, sys.modules
    missing = object()
    # Names a library rebinds to a wrapper of the same function by itself: importing torch._dynamo (which
    # torch does lazily, for instance while an error is formatted) sets torch.manual_seed to a wrapper whose
    # __wrapped__ is the original. Such a rebinding is not tampering.
    _library_rewraps = ("manual_seed",)
    _trusted_callback_packages = ("matplotlib_inline", "matplotlib", "IPython", "ipykernel", "ipywidgets")

    def _same(now, before):
        """Identity, but a bound method is fetched anew on each access: same function on the same object."""
        if now is before:
            return True
        return (
            _type(now) is _MethodType and _type(before) is _MethodType
            and now.__func__ is before.__func__ and now.__self__ is before.__self__
        )  # fmt: skip

    class TamperError(_Exception):
        """Raised by the verify cell before a check: answer code changed what the check relies on."""

    TamperError.__module__ = "dpdl.grading.guard"

    records = []  # (label, namespace dict, key, object): namespace[key] must still be object
    same = []  # (label, getter, value): getter() must still return value (by identity)
    equal = []  # (label, getter, value): getter() must still equal value (lists of hooks, counters)

    def record_namespace(label, namespace, public_only):
        for name, value in _list(namespace.items()):
            if public_only and name.startswith("_"):
                continue
            records.append((f"{label}.{name}", namespace, name, value))
            if _type(value) is _FunctionType:
                record_function(f"{label}.{name}", value)
            # numpy's functions are C dispatchers around a Python implementation (its defaults, its globals)
            inner = _getattr(value, "_implementation", None) if _callable(value) else None
            if _type(inner) is _FunctionType:
                same.append((f"{label}.{name}._implementation",
                             lambda v=value: _getattr(v, "_implementation", None), inner))  # fmt: skip
                record_function(f"{label}.{name}", inner)

    recorded_functions = set()

    def record_function(label, function):
        if _id(function) in recorded_functions:
            return
        recorded_functions.add(_id(function))
        same.append((f"{label}.__code__", lambda f=function: f.__code__, function.__code__))
        same.append((f"{label}.__defaults__", lambda f=function: f.__defaults__, function.__defaults__))
        same.append((f"{label}.__kwdefaults__", lambda f=function: f.__kwdefaults__, function.__kwdefaults__))
        namespace = function.__globals__
        module = namespace.get("__name__", "?")
        for name in function.__code__.co_names:  # what it looks up in its module: np.allclose uses isclose
            if name in namespace and not name.startswith("__"):
                records.append((f"{module}.{name} (used by {label})", namespace, name, namespace[name]))

    def record_class(label, cls):
        """Every attribute ``cls`` has, as found along its MRO now; an attribute set on ``cls`` later (say
        ``torch.Tensor.__eq__``, inherited until then) is found first on the next lookup."""
        mro = [(klass, _vars(klass)) for klass in cls.__mro__ if klass is not object]  # mappingproxies: live

        def lookup(name, mro=mro):
            for _klass, namespace in mro:
                value = namespace.get(name, missing)
                if value is not missing:
                    return value
            return missing

        names = set()
        for _klass, namespace in mro:
            names.update(name for name in namespace if name not in ("__doc__", "__dict__", "__weakref__", "__module__"))
        for name in _sorted(names):
            same.append((f"{label}.{name}", lambda n=name, look=lookup: look(n), lookup(name)))

    def record_object(label, obj):
        """An object's class methods, and its own attributes that shadow them (an instance patch shows there)."""
        record_class(f"{label} ({_type(obj).__name__})", _type(obj))
        methods = set()
        for klass in _type(obj).__mro__:
            methods.update(
                name
                for name, value in _vars(klass).items()
                if _callable(value) or _isinstance(value, (classmethod, staticmethod))
            )
        if _isinstance(_getattr(obj, "__dict__", None), dict):
            equal.append((f"{label}'s methods were replaced on the object",
                          lambda o=obj, m=methods: _shadowing(o, m), _shadowing(obj, methods)))  # fmt: skip

    def _shadowing(obj, methods):
        """The object's own attributes named like its methods; a function by its code, because IPython wraps
        ``sys.stdout.write`` anew for every cell (the same code, a new closure)."""
        own = _getattr(obj, "__dict__", None)
        if not _isinstance(own, _dict):
            return {}
        return {name: (value.__code__ if _type(value) is _FunctionType else value)
                for name, value in own.items() if name in methods}  # fmt: skip

    # Modules: those imported, and the watched submodules of packages imported (cheap, and answer code could
    # otherwise import and patch them before a check imports them).
    import math  # noqa: F401 - a built-in module: recorded even if the notebook never imported it

    for name in watched:
        parent = name.split(".")[0]
        if name not in _modules and parent in _modules:
            try:
                __import__(name)
            except Exception:  # noqa: BLE001 - a broken optional submodule is no reason to stop grading
                continue
        module = _modules.get(name)
        if _isinstance(module, _ModuleType):
            same.append((f"sys.modules[{name!r}]", lambda n=name: _modules.get(n, missing), module))
            if name == "builtins":
                namespace = _vars(module)
                volatile = {"_", "__", "___", "exit", "quit", "get_ipython", "display", "input"}  # set per cell
                for entry, value in _list(namespace.items()):
                    if entry not in volatile and (
                        not entry.startswith("_") or entry in ("__import__", "__build_class__")
                    ):
                        records.append((f"builtins.{entry}", namespace, entry, value))
            else:
                record_namespace(name, _vars(module), public_only=True)

    numpy, torch = _modules.get("numpy"), _modules.get("torch")
    if numpy is not None:
        record_class("numpy.ndarray", numpy.ndarray)
    if torch is not None:
        record_class("torch.Tensor", torch.Tensor)
        # A mode on torch's stacks sees every torch call (TorchFunctionMode, TorchDispatchMode). The one honest
        # code pushes for good, torch.set_default_device's DeviceContext, is left out.
        function_modes = _getattr(_modules.get("torch.overrides"), "_get_current_function_mode_stack", None)
        if function_modes is not None:
            device_context = ("torch.utils._device", "DeviceContext")  # imported only when first used
            modes = lambda: [mode for mode in function_modes()  # noqa: E731
                             if (_type(mode).__module__, _type(mode).__name__) != device_context]  # fmt: skip
            equal.append(("torch's function mode stack (a TorchFunctionMode is active)", modes, modes()))
        dispatch_depth = _getattr(torch._C, "_len_torch_dispatch_stack", None)
        if dispatch_depth is not None:
            equal.append(
                ("torch's dispatch mode stack (a TorchDispatchMode is active)", dispatch_depth, dispatch_depth())
            )

    # Trace and profile functions, sys hooks, the streams outputs go through.
    sys_namespace = _vars(sys)
    for name in ("settrace", "setprofile", "gettrace", "getprofile", "excepthook", "displayhook", "stdout",
                 "stderr", "modules", "meta_path", "path_hooks"):  # fmt: skip
        if name in sys_namespace:
            records.append((f"sys.{name}", sys_namespace, name, sys_namespace[name]))
    same.append(("the trace function (sys.settrace)", _gettrace, _gettrace()))
    same.append(("the profile function (sys.setprofile)", _getprofile, _getprofile()))
    monitoring = _getattr(sys, "monitoring", None)  # Python 3.12+: tools that see every line, like a tracer
    if monitoring is not None:
        tools = lambda: [monitoring.get_tool(tool) for tool in _range(6)]  # noqa: E731
        equal.append(("sys.monitoring's tools (a monitoring callback was registered)", tools, tools()))
    threading_namespace = _vars(threading)
    for name in ("_trace_hook", "_profile_hook", "settrace", "setprofile"):
        if name in threading_namespace:
            records.append((f"threading.{name}", threading_namespace, name, threading_namespace[name]))
    for stream in ("stdout", "stderr"):
        record_object(f"sys.{stream}", _getattr(sys, stream))

    # IPython: the transformers a cell goes through, what runs around it and how errors are shown.
    shell = None
    ipython = _modules.get("IPython")
    if ipython is not None:
        shell = ipython.get_ipython()
    user_ns = {}
    if shell is not None:
        user_ns = shell.user_ns
        for name in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
            hooks = _getattr(shell, name)
            same.append((f"IPython's {name} list", lambda n=name: _getattr(shell, n), hooks))
            equal.append((f"IPython's {name} (a transformer was added, removed or replaced)",
                          lambda h=hooks: _list(h), _list(hooks)))  # fmt: skip
        manager = shell.input_transformer_manager
        for name in ("cleanup_transforms", "line_transforms", "token_transformers"):
            hooks = _getattr(manager, name, None)
            if _isinstance(hooks, _list_type):
                equal.append((f"IPython's input_transformer_manager.{name}", lambda h=hooks: _list(h), _list(hooks)))
        callbacks = shell.events.callbacks

        def foreign(functions):
            """The callbacks not registered by matplotlib's inline backend, IPython or the kernel (plotting in
            an answer registers matplotlib's ``flush_figures``)."""
            kept = []
            for function in functions:
                module = _getattr(_getattr(function, "__func__", function), "__module__", None) or ""
                if not (_isinstance(module, _str) and module.split(".")[0] in _trusted_callback_packages):
                    _list_append(kept, function)
            return kept

        for event, functions in callbacks.items():
            equal.append((f"IPython's {event} event callbacks",
                          lambda e=event: foreign(callbacks.get(e, ())), foreign(functions)))  # fmt: skip
        for name in ("input_transformer_manager", "compile", "displayhook", "display_pub", "display_trap",
                     "builtin_trap", "events", "InteractiveTB", "SyntaxTB", "CustomTB", "custom_exceptions",
                     "kernel", "user_ns", "user_global_ns", "excepthook"):  # fmt: skip
            value = _getattr(shell, name, missing)
            if value is not missing:
                same.append((f"IPython's {name}", lambda n=name: _getattr(shell, n, missing), value))
        record_object("IPython's shell", shell)
        for name in ("input_transformer_manager", "compile", "displayhook", "display_pub", "InteractiveTB",
                     "SyntaxTB", "events", "kernel"):  # fmt: skip
            value = _getattr(shell, name, None)
            if value is not None:
                record_object(f"IPython's {name}", value)
        session = _getattr(_getattr(shell, "kernel", None), "session", None)
        if session is not None:
            record_object("the kernel's session", session)
    # Setup names the checks read (np, torch, test data, helpers): the verifier checks the ones it is told.
    setup_names = dict(user_ns)

    def current(getter):
        """What ``getter`` gives now, or the error it raises (a deleted attribute is a change too)."""
        try:
            return getter()
        except _Exception as error:  # noqa: BLE001
            return error

    def problems(protected, shadowable):
        found = []
        for label, namespace, name, value in records:
            now = namespace.get(name, missing)  # dict.get, mappingproxy.get: C, not patchable
            rewrapped = name in _library_rewraps and _getattr(now, "__wrapped__", missing) is value
            if not _same(now, value) and not rewrapped:
                _list_append(found, f"{label} was {'deleted' if now is missing else 'replaced'}")
        for label, getter, value in same:
            now = current(getter)
            if not _same(now, value):
                _list_append(found, f"{label} was replaced")
        for label, getter, value in equal:
            now = current(getter)
            if _isinstance(value, _dict) and _isinstance(now, _dict):
                changed = [name for name in now if not _same(now[name], value.get(name, missing))]
                changed += [name for name in value if name not in now]
                if changed:
                    _list_append(found, f"{label}: {_join(', ', _sorted(changed))}")
            elif _isinstance(value, _list_type):
                if not (_type(now) is _list_type and _len(now) == _len(value) and _same_items(now, value)):
                    _list_append(found, f"{label} changed")
            elif not (_type(now) is _type(value) and now == value):
                _list_append(found, f"{label} changed")
        for name in protected:
            before, now = setup_names.get(name, missing), user_ns.get(name, missing)
            if before is not missing and now is not before:
                _list_append(found, f"`{name}`, set before the answers and read by this check, was "
                                    f"{'deleted' if now is missing else 'rebound'} by answer code")  # fmt: skip
        for name in shadowable:
            if user_ns.get(name, missing) is not missing:
                _list_append(found, f"answer code defines `{name}`, which hides the built-in `{name}` this check uses")
        return found

    def _same_items(now, before):
        for index, value in _enumerate(before):
            if not _same(now[index], value):
                return False
        return True

    stdout = sys.stdout
    write, flush = _type(stdout).write, _getattr(_type(stdout), "flush", None)

    def verify(check_id, protected=(), shadowable=()):
        found = problems(_list(protected), _list(shadowable))
        if not found:
            write(stdout, f"{prefix}ok before {check_id}\n")
            if flush is not None:
                flush(stdout)
            return
        shown = found[:6] + ([f"and {_len(found) - 6} more"] if _len(found) > 6 else [])
        message = f"{prefix}{_join('; ', shown)} (answer code must not patch library functions, the " \
                  f"interpreter or IPython; this submission is marked for review)"  # fmt: skip
        write(stdout, message + "\n")
        raise TamperError(message)

    _modules[key] = verify
    return verify


# Read once, when this module is imported: a file edited during a long batch (a `git pull`) must not change
# what the install cell runs, nor pair the new file's lines with the loaded function's line numbers.
try:
    _INSTALL_SOURCE = inspect.getsource(install)
except OSError:  # installed without sources: importing this module (verdict's package) must still work
    _INSTALL_SOURCE = ""
