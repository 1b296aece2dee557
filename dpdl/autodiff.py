"""Derivatives three ways: finite differences (book ch. 3), forward mode with dual numbers and reverse
mode on a recorded expression graph (book ch. 5) — the ideas behind ``torch.autograd``, small enough to read.

Forward mode (``Dual``) carries each value together with its derivative along one direction; reverse
mode (``Var``) records every operation, then ``z.backward()`` sweeps the graph once from ``z`` back to
its inputs and gives all partial derivatives. Both use the same table of local derivatives
(``_add`` … ``_pow`` and the functions ``sin`` … ``sqrt``): they differ only in which way the chain rule runs.

    >>> x1, x2 = Var(2.0), Var(5.0)
    >>> z = log(x1) + x1 * x2 - sin(x2)
    >>> z.backward()
    >>> round(z.value, 3), x1.grad, round(x2.grad, 3)
    (11.652, 5.5, 1.716)
    >>> z = log(Dual(2.0, 1.0)) + Dual(2.0, 1.0) * 5.0 - sin(5.0)   # d/dx1 only, in one forward pass
    >>> z.deriv
    5.5
"""

from __future__ import annotations

import math
import numbers
import operator
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = [
    "Dual",
    "Var",
    "sin",
    "cos",
    "tan",
    "exp",
    "log",
    "sqrt",
    "numerical_derivative",
    "default_step",
    "grad_check",
]


class _Scalar:
    """What ``Dual`` and ``Var`` share: the arithmetic operators, written once.

    Each operator looks up the value and the local partial derivatives of its primitive (``_add``,
    ``_mul``, …) and hands them to ``_node``, which is where forward and reverse mode differ.
    """

    __slots__ = ("value",)
    __array_ufunc__ = None  # makes numpy scalars defer to our reflected operators: np.float64(2) * x
    value: float

    def _node(self, value: float, partials: list[tuple[Any, float]], op: str) -> Any:
        raise NotImplementedError  # pragma: no cover - Dual and Var define it

    def __add__(self, other: Any) -> Any:
        return self._binary(other, _add, "+")

    def __radd__(self, other: Any) -> Any:
        return self._binary(other, _add, "+", reflected=True)

    def __sub__(self, other: Any) -> Any:
        return self._binary(other, _sub, "-")

    def __rsub__(self, other: Any) -> Any:
        return self._binary(other, _sub, "-", reflected=True)

    def __mul__(self, other: Any) -> Any:
        return self._binary(other, _mul, "*")

    def __rmul__(self, other: Any) -> Any:
        return self._binary(other, _mul, "*", reflected=True)

    def __truediv__(self, other: Any) -> Any:
        return self._binary(other, _div, "/")

    def __rtruediv__(self, other: Any) -> Any:
        return self._binary(other, _div, "/", reflected=True)

    def __pow__(self, other: Any) -> Any:
        return self._binary(other, _pow, "**")

    def __rpow__(self, other: Any) -> Any:
        return self._binary(other, _pow, "**", reflected=True)

    def __neg__(self) -> Any:
        return self._node(-self.value, [(self, -1.0)], "neg")

    def __pos__(self) -> Any:
        return self

    # Comparisons look at values only: they steer control flow (``if x < 1:``), which is not
    # differentiated; the branch taken is. ``==`` stays identity, so a Var can sit in a set or dict.
    def __lt__(self, other: Any) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: Any) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: Any) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: Any) -> bool:
        return self._compare(other, operator.ge)

    def _compare(self, other: Any, op: Callable[[float, float], bool]) -> bool:
        if isinstance(other, _Scalar):
            self._check_same_mode(other)
            return op(self.value, other.value)
        if isinstance(other, numbers.Real):
            return op(self.value, float(other))
        return NotImplemented

    def _check_same_mode(self, other: _Scalar) -> None:
        if type(other) is not type(self):
            raise TypeError(
                f"cannot combine a {type(self).__name__} with a {type(other).__name__}: Dual is forward "
                "mode and Var is reverse mode, so one expression must use only one of them "
                "(plain numbers mix with either)"
            )

    def _binary(
        self, other: Any, rule: Callable[..., tuple[float, float, float]], op: str, reflected: bool = False
    ) -> Any:
        if isinstance(other, _Scalar):
            self._check_same_mode(other)
            other_value = other.value
        elif isinstance(other, numbers.Real):
            other_value = float(other)  # a constant: it takes part in the value, not in the derivative
        else:
            return NotImplemented
        left, right = (other, self) if reflected else (self, other)
        left_value, right_value = (other_value, self.value) if reflected else (self.value, other_value)
        value, d_left, d_right = rule(left_value, right_value, isinstance(right, _Scalar))
        partials = [(x, d) for x, d in ((left, d_left), (right, d_right)) if isinstance(x, _Scalar)]
        return self._node(value, partials, op)


class Dual(_Scalar):
    """Forward mode: a number ``value + deriv * ε`` with ``ε² = 0`` carries a value and its derivative.

    Seed the input you differentiate by with ``deriv=1`` (the others keep 0); every operation applies
    the chain rule at once, so ``f(Dual(x, 1.0)).deriv`` is ``f'(x)``. One pass per input direction.
    """

    __slots__ = ("deriv",)

    def __init__(self, value: float, deriv: float = 0.0) -> None:
        self.value = _as_float(value, "Dual value")
        self.deriv = _as_float(deriv, "Dual deriv")

    def _node(self, value: float, partials: list[tuple[Any, float]], op: str) -> Dual:
        # chain rule, forwards: d(out) = sum over operands of  d(out)/d(operand) * d(operand)
        return Dual(value, sum(local * x.deriv for x, local in partials))

    def __repr__(self) -> str:
        return f"Dual(value={self.value!r}, deriv={self.deriv!r})"


class Var(_Scalar):
    """Reverse mode: a value that remembers how it was computed, so ``backward()`` can send gradients back.

    Each operation makes a new ``Var`` whose ``parents`` are ``(input Var, local derivative)`` pairs;
    ``z.backward()`` then sets ``x.grad += dz/dx`` for every ``Var`` ``x`` that ``z`` depends on.
    """

    __slots__ = ("grad", "parents", "op")

    def __init__(self, value: float, *, parents: tuple[tuple[Var, float], ...] = (), op: str = "") -> None:
        self.value = _as_float(value, "Var value")
        self.grad = 0.0
        self.parents = parents  # ((input, d self / d input), ...); empty for an input you create
        self.op = op

    def backward(self, grad: float = 1.0) -> None:
        """Add ``d self / d node`` (times ``grad``) to ``node.grad`` for ``self`` and every Var it depends on.

        A node used several times collects the sum over all paths. Like ``torch``, gradients
        *accumulate*: a second ``backward`` (of this or another output) adds to ``.grad``; call
        ``zero_grad()`` first to start from 0. Intermediate nodes get their ``.grad`` too (torch keeps it
        only on leaves), so you can read every adjoint of the book's backward sweep.
        """
        order = self._topological_order()
        adjoint: dict[Var, float] = {self: float(grad)}  # d self / d node, for this sweep only
        for node in reversed(order):  # every node comes after all nodes that use it
            node_adjoint = adjoint.pop(node, 0.0)
            node.grad += node_adjoint
            for parent, local in node.parents:
                adjoint[parent] = adjoint.get(parent, 0.0) + local * node_adjoint

    def zero_grad(self) -> None:
        """Set ``.grad = 0`` on ``self`` and every Var it depends on, before a fresh ``backward``."""
        for node in self._topological_order():
            node.grad = 0.0

    def _topological_order(self) -> list[Var]:
        """Every Var that ``self`` depends on, inputs before the nodes that use them (``self`` last).

        A depth-first search with an explicit stack, so a graph thousands of operations deep does not
        hit Python's recursion limit.
        """
        order: list[Var] = []
        visited: set[Var] = set()
        stack: list[tuple[Var, bool]] = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
            elif node not in visited:
                visited.add(node)
                stack.append((node, True))
                stack.extend((parent, False) for parent, _ in node.parents if parent not in visited)
        return order

    def _node(self, value: float, partials: list[tuple[Any, float]], op: str) -> Var:
        return Var(value, parents=tuple(partials), op=op)

    def __repr__(self) -> str:
        op = f", op={self.op!r}" if self.op else ""
        return f"Var(value={self.value!r}, grad={self.grad!r}{op})"


# --- elementary functions: floats in, float out; Dual in, Dual out; Var in, Var out -------------


def sin(x: float | Dual | Var) -> float | Dual | Var:
    """``sin(x)``; its derivative is ``cos(x)``."""
    return _apply(x, "sin", math.sin, math.cos)


def cos(x: float | Dual | Var) -> float | Dual | Var:
    """``cos(x)``; its derivative is ``-sin(x)``."""
    return _apply(x, "cos", math.cos, lambda v: -math.sin(v))


def tan(x: float | Dual | Var) -> float | Dual | Var:
    """``tan(x)``; its derivative is ``1 + tan(x)**2``."""
    return _apply(x, "tan", math.tan, lambda v: 1.0 + math.tan(v) ** 2)


def exp(x: float | Dual | Var) -> float | Dual | Var:
    """``exp(x)``; its derivative is ``exp(x)`` itself. ``inf`` past ``exp(709.78)``, as in torch."""
    return _apply(x, "exp", _exp, _exp)


def log(x: float | Dual | Var) -> float | Dual | Var:
    """Natural logarithm, for ``x > 0``; its derivative is ``1 / x``."""
    v = _value(x, "log")
    if not v > 0:
        raise ValueError(
            f"log(x) needs x > 0; got x = {v!r}. If x is a probability or a norm that can reach 0, "
            "clamp it or add a small epsilon first, e.g. log(x + 1e-12)"
        )
    return _apply(x, "log", math.log, lambda v: 1.0 / v)


def sqrt(x: float | Dual | Var) -> float | Dual | Var:
    """Square root, for ``x >= 0``; its derivative ``1 / (2 sqrt(x))`` needs ``x > 0`` for Dual and Var."""
    v = _value(x, "sqrt")
    if not v >= 0:
        raise ValueError(
            f"sqrt(x) needs x >= 0; got x = {v!r}. Check the sign of the expression, or use sqrt(x * x) "
            "if you meant |x|"
        )
    if v == 0 and isinstance(x, _Scalar):
        raise ZeroDivisionError(
            "the derivative of sqrt(x) at x = 0.0 is 1 / (2 * sqrt(0)), which is infinite; move away "
            "from 0, e.g. sqrt(x + 1e-12), or use a plain float if you only need the value"
        )
    return _apply(x, "sqrt", math.sqrt, lambda v: 0.5 / math.sqrt(v))


# --- numerical derivatives (book ch. 3) -----------------------------------------------------------


def numerical_derivative(f: Callable[[Any], Any], x: Any, h: float | None = None, method: str = "symmetric") -> Any:
    """Estimate ``f'(x)`` from two values of ``f``, for checking derivatives worked out by hand or by autodiff.

    ``method="symmetric"``: ``(f(x + h) - f(x - h)) / (2h)``, error ``O(h²)``;
    ``method="newton"``: Newton's forward quotient ``(f(x + h) - f(x)) / h``, error ``O(h)``.
    ``h=None`` takes the step that balances that error against rounding (``default_step``), from the
    machine epsilon of ``x``'s dtype. ``x`` is a scalar: a python float, a numpy floating scalar or a
    0-d torch tensor; ``x + h`` keeps its dtype, and so does the result if ``f`` keeps it.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be 'symmetric' or 'newton'; got {method!r}")
    x = _float_scalar(x)
    if h is None:
        h = default_step(x, method)
    elif not h > 0:
        raise ValueError(f"step h must be > 0; got h = {h!r} — or leave h=None for the book's default step")
    if isinstance(x, np.floating):
        h = x.dtype.type(h)  # so that x + h stays float32 when x is float32
    if method == "symmetric":
        return (f(x + h) - f(x - h)) / (2 * h)
    return (f(x + h) - f(x)) / h


def default_step(x: Any, method: str = "symmetric") -> float:
    """The step ``h`` that ``numerical_derivative`` uses when none is given (book ch. 3).

    Symmetric: ``eps ** (1/3) * max(|x|, 1)``; Newton: ``sqrt(eps) * |x|``, or ``sqrt(eps)`` at ``x = 0``.
    ``eps`` is the machine epsilon of ``x``'s dtype (python float: float64): about 2.2e-16 for float64,
    1.2e-7 for float32, so float32 needs much larger steps.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be 'symmetric' or 'newton'; got {method!r}")
    x = _float_scalar(x)
    if isinstance(x, torch.Tensor):
        eps = torch.finfo(x.dtype).eps
    else:
        eps = float(np.finfo(x.dtype if isinstance(x, np.floating) else np.float64).eps)
    size = abs(float(x))
    if method == "symmetric":
        return eps ** (1 / 3) * max(size, 1.0)
    return math.sqrt(eps) * size or math.sqrt(eps)  # `or`: at x = 0 (or a tiny x) fall back to sqrt(eps)


def grad_check(
    f: Callable[[Any], Any], x: Any, analytic_grad: Any, num_checks: int = 10, h: float = 1e-5, seed: int | None = None
) -> float:
    """Compare ``analytic_grad`` with symmetric difference quotients of ``f`` at random coordinates of ``x``.

    ``f(x)`` returns a scalar (a float or a one-element tensor); ``x`` is a float numpy array or torch
    tensor of any shape, and ``analytic_grad`` has that shape. Returns the mean over ``num_checks``
    distinct coordinates (all of them if ``x`` has fewer) of ``|num - ana| / (|num| + |ana|)``, taken as
    0 where both are 0. Check in float64 (``x.double()``): there a correct gradient gives about 1e-7
    or less, while float32 rounding alone gives errors far above that with ``h=1e-5``. ``x`` is changed in place while ``f`` runs, so an ``f`` that
    reads ``x`` from outside works too, and is always restored. ``seed`` fixes the coordinates.
    """
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"grad_check needs x as a numpy array or torch tensor; got {type(x).__name__}")
    if not (x.is_floating_point() if isinstance(x, torch.Tensor) else np.issubdtype(x.dtype, np.floating)):
        raise TypeError(f"grad_check needs a floating-point x; got dtype {x.dtype} — convert it with .double()")
    grad_shape = getattr(analytic_grad, "shape", None)
    if grad_shape is None or tuple(grad_shape) != tuple(x.shape):
        got = type(analytic_grad).__name__ if grad_shape is None else f"shape {tuple(grad_shape)}"
        raise ValueError(f"analytic_grad must be an array or tensor of x's shape {tuple(x.shape)}; got {got}")
    if not isinstance(num_checks, int) or num_checks < 1:
        raise ValueError(f"num_checks must be a positive int; got {num_checks!r}")
    if not h > 0:
        raise ValueError(f"step h must be > 0; got h = {h!r}")
    rng = random.Random(seed) if seed is not None else random
    size = math.prod(x.shape)
    errors = []
    with torch.no_grad():  # writes into a tensor that requires grad, and no graph for f's values
        for flat_index in rng.sample(range(size), min(num_checks, size)):
            index = tuple(int(i) for i in np.unravel_index(flat_index, tuple(x.shape)))
            old = x[index].item()
            try:
                x[index] = old + h
                f_plus = _scalar_output(f(x))
                x[index] = old - h
                f_minus = _scalar_output(f(x))
            finally:
                x[index] = old
            numeric = (f_plus - f_minus) / (2 * h)
            analytic = float(analytic_grad[index])
            denominator = abs(numeric) + abs(analytic)
            errors.append(abs(numeric - analytic) / denominator if denominator > 0 else 0.0)
    return sum(errors) / len(errors)


# --- local derivatives of the binary operations: (value, d/d left, d/d right) -------------------


def _add(a: float, b: float, b_varies: bool) -> tuple[float, float, float]:
    return a + b, 1.0, 1.0


def _sub(a: float, b: float, b_varies: bool) -> tuple[float, float, float]:
    return a - b, 1.0, -1.0


def _mul(a: float, b: float, b_varies: bool) -> tuple[float, float, float]:
    return a * b, b, a


def _div(a: float, b: float, b_varies: bool) -> tuple[float, float, float]:
    if b == 0:
        raise ZeroDivisionError(
            f"division by zero: {a!r} / {b!r}. The denominator is 0 at this input; check the expression, "
            "or add a small epsilon to a denominator that can reach 0"
        )
    return a / b, 1.0 / b, -a / b**2


def _pow(a: float, b: float, b_varies: bool) -> tuple[float, float, float]:
    """``a ** b``. With a varying exponent ``d/db = a**b * log(a)`` needs ``a > 0``, or ``a = 0`` where torch
    takes ``d/db = 0`` (the limit from the right for ``b > 0``); a constant exponent does not."""
    if b_varies and a > 0:
        value = _power(a, b)
        return value, b * _power(a, b - 1), value * math.log(a)
    if b_varies and not a == 0:
        raise ValueError(
            f"x ** y with a Dual/Var exponent needs a base x > 0 (or exactly 0), since d(x**y)/dy = x**y * log(x); "
            f"got x = {a!r}. If the exponent is a constant, write it as a plain number (x ** 2)"
        )
    if a < 0 and not b.is_integer():
        raise ValueError(
            f"a negative base to a non-integer power is not a real number: {a!r} ** {b!r}; "
            "use an integer exponent, or make the base positive (e.g. (x * x) ** (b / 2) for |x| ** b)"
        )
    if a == 0 and b < 1 and b != 0:
        what = "the value" if b < 0 else "the derivative"
        raise ZeroDivisionError(f"{what} of x ** {b!r} at x = 0.0 is infinite; move the input away from 0")
    return _power(a, b), (0.0 if b == 0 else b * _power(a, b - 1)), 0.0


# --- small helpers --------------------------------------------------------------------------------
# One rule for the edges, torch's (float64): a result too large for a float is +-inf, as ``*`` gives it
# (python's math.exp and ** raise OverflowError instead); where torch's value and derivative are finite,
# so are ours (0 ** y); where they are infinite by nature or undefined (log 0, x / 0, 0 ** -1, sqrt's
# slope at 0, a negative base to a fractional power), an error says why before a nan appears downstream.


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _power(a: float, b: float) -> float:
    try:
        return a**b
    except OverflowError:
        return -math.inf if a < 0 and b % 2 == 1 else math.inf


_METHODS = ("symmetric", "newton")


def _apply(x: Any, name: str, f: Callable[[float], float], df: Callable[[float], float]) -> Any:
    """``f(x)`` for a float; for a Dual or Var, the new node with local derivative ``df(x)``."""
    v = _value(x, name)
    if isinstance(x, _Scalar):
        return x._node(f(v), [(x, df(v))], name)
    return f(v)


def _value(x: Any, name: str) -> float:
    if isinstance(x, _Scalar):
        return x.value
    if isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(
        f"{name} takes a float, a Dual or a Var; got {type(x).__name__}"
        + (
            f" — for arrays and tensors use numpy.{name} or torch.{name}"
            if isinstance(x, (np.ndarray, torch.Tensor))
            else ""
        )
    )


def _as_float(value: Any, what: str) -> float:
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{what} must be a real number (int or float); got {type(value).__name__} {value!r}")


def _float_scalar(x: Any) -> Any:
    """``x`` as one float that keeps its dtype: a python float, a numpy floating scalar or a 0-d tensor."""
    if isinstance(x, torch.Tensor):
        if x.numel() != 1 or not x.is_floating_point():
            raise TypeError(
                f"x must be a single floating-point number; got a {x.dtype} tensor of shape "
                f"{tuple(x.shape)} — for a gradient of many inputs use grad_check"
            )
        return x.reshape(())
    if isinstance(x, np.ndarray) and x.size == 1:
        x = x.reshape(())[()]
    if isinstance(x, np.floating):
        return x
    if isinstance(x, numbers.Real):
        return float(x)  # python floats (and ints) are float64
    raise TypeError(
        f"x must be a single real number; got {type(x).__name__} — for a gradient of many inputs use grad_check"
    )


def _scalar_output(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        shape = getattr(value, "shape", None)
        raise TypeError(
            f"f(x) must return a scalar (a float or a one-element tensor); got {type(value).__name__}"
            + (f" of shape {tuple(shape)}" if shape is not None else "")
            + " — reduce it to a scalar loss, e.g. with .mean()"
        ) from error
