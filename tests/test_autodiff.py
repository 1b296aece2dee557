import doctest
import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import dpdl.autodiff as ad
from dpdl.autodiff import (
    Dual,
    Var,
    cos,
    default_step,
    exp,
    grad_check,
    log,
    numerical_derivative,
    sin,
    sqrt,
    tan,
)

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


# --- random expression trees: Dual, Var and torch.autograd agree ----------------------------------
#
# A tree is a nested tuple. Every operation is wrapped so that it stays inside its domain for any
# real input (log(u*u + 1), a / (b*b + 1), tan(sin(u)), ...); overflow is filtered with `assume`.

UNARY = ["neg", "sin", "cos", "tan", "exp", "log", "sqrt", "square_root_power"]
BINARY = ["add", "sub", "mul", "div", "pow_var"]
WITH_CONSTANT = ["radd", "rsub", "rmul", "rdiv", "rpow", "sub_const", "div_const", "pow_int", "pow_float"]

constants = st.one_of(st.floats(-3, -1e-3), st.floats(1e-3, 3))  # c / u and u / c stay finite


def trees(num_inputs):
    leaves = st.builds(lambda i: ("x", i), st.integers(0, num_inputs - 1))

    def extend(children):
        return st.one_of(
            st.tuples(st.sampled_from(UNARY), children),
            st.tuples(st.sampled_from(BINARY), children, children),
            st.tuples(st.sampled_from(WITH_CONSTANT), constants, children),
            st.tuples(st.just("pow_int"), st.integers(-2, 4), children),
        )

    return st.recursive(leaves, extend, max_leaves=10)


def evaluate(tree, xs, fn):
    """Evaluate `tree` at inputs `xs` with elementary functions from `fn` (a module-like namespace)."""
    kind = tree[0]
    if kind == "x":
        return xs[tree[1]]
    if kind in UNARY:
        u = evaluate(tree[1], xs, fn)
        return {
            "neg": lambda: -u,
            "sin": lambda: fn.sin(u),
            "cos": lambda: fn.cos(u),
            "tan": lambda: fn.tan(fn.sin(u)),  # |sin u| <= 1 keeps tan away from its poles
            "exp": lambda: fn.exp(u),
            "log": lambda: fn.log(u * u + 1),
            "sqrt": lambda: fn.sqrt(u * u + 1),
            "square_root_power": lambda: (u * u + 0.5) ** 0.5,
        }[kind]()
    if kind in BINARY:
        a, b = evaluate(tree[1], xs, fn), evaluate(tree[2], xs, fn)
        return {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "div": lambda: a / (b * b + 1),
            "pow_var": lambda: (a * a + 1) ** b,  # a positive base for a varying exponent
        }[kind]()
    c, u = tree[1], evaluate(tree[2], xs, fn)
    return {
        "radd": lambda: c + u,
        "rsub": lambda: c - u,
        "rmul": lambda: c * u,
        "rdiv": lambda: c / (u * u + 1),
        "rpow": lambda: abs(c) ** u,
        "sub_const": lambda: u - c,
        "div_const": lambda: u / c,
        "pow_int": lambda: u ** int(c),  # negative bases allowed; u ** -k kept off 0 below
        "pow_float": lambda: (u * u + 1) ** c,
    }[kind]()


class TorchFunctions:
    """torch's elementary functions, taking python floats too (constant subtrees)."""

    def __getattr__(self, name):
        return lambda u: getattr(torch, name)(torch.as_tensor(u, dtype=torch.float64))


def near(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def check_expression(tree, point):
    n = len(point)
    try:
        value = evaluate(tree, point, ad)
    except (ZeroDivisionError, OverflowError):
        assume(False)  # e.g. u ** -2 with u = 0, or exp of a large number
    assume(math.isfinite(value) and abs(value) < 1e6)

    # forward mode: one pass per input, seeding that input's derivative with 1
    dual_grads = []
    for i in range(n):
        try:
            out = evaluate(tree, [Dual(v, 1.0 if j == i else 0.0) for j, v in enumerate(point)], ad)
        except (ZeroDivisionError, OverflowError):
            assume(False)  # an infinite local derivative or an overflow on the way
        assert out.value == value  # the same float operations as the plain evaluation
        dual_grads.append(out.deriv)
    assume(all(math.isfinite(d) and abs(d) < 1e6 for d in dual_grads))

    # reverse mode: one backward pass gives every partial derivative
    xs = [Var(v) for v in point]
    out = evaluate(tree, xs, ad)
    out.backward()
    assert out.value == value
    var_grads = [x.grad for x in xs]

    # torch.autograd in float64
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in point]
    out_t = evaluate(tree, ts, TorchFunctions())
    torch_grads = torch.autograd.grad(out_t, ts, allow_unused=True)
    torch_grads = [0.0 if g is None else g.item() for g in torch_grads]

    assert near(out_t.item(), value), (out_t.item(), value)
    for d, v, t in zip(dual_grads, var_grads, torch_grads):
        assert near(d, v), (dual_grads, var_grads)
        assert near(v, t), (var_grads, torch_grads)


inputs = st.floats(-2, 2, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(tree=trees(1), point=st.tuples(inputs))
def test_random_expressions_of_one_input_dual_var_and_torch_agree(tree, point):
    check_expression(tree, list(point))


@settings(max_examples=150, deadline=None)
@given(tree=trees(3), point=st.tuples(inputs, inputs, inputs))
def test_random_expressions_of_three_inputs_dual_var_and_torch_agree(tree, point):
    check_expression(tree, list(point))


# --- the book's worked example, and graphs that reuse nodes ---------------------------------------


def book_example(x1, x2):
    return log(x1) + x1 * x2 - sin(x2)


def test_book_example_reverse_mode_gives_value_and_both_partials():
    x1, x2 = Var(2.0), Var(5.0)
    z = book_example(x1, x2)
    z.backward()
    assert z.value == pytest.approx(11.652, abs=5e-4)
    assert x1.grad == pytest.approx(1 / 2 + 5)  # 1/x1 + x2
    assert x2.grad == pytest.approx(2 - math.cos(5))  # x1 - cos(x2) = 1.716
    assert x2.grad == pytest.approx(1.716, abs=5e-4)


def test_book_example_forward_mode_needs_one_pass_per_input():
    d1 = book_example(Dual(2.0, 1.0), Dual(5.0, 0.0))
    d2 = book_example(Dual(2.0, 0.0), Dual(5.0, 1.0))
    assert d1.value == d2.value == pytest.approx(math.log(2) + 10 - math.sin(5))
    assert (d1.deriv, d2.deriv) == (pytest.approx(5.5), pytest.approx(2 - math.cos(5)))


def test_book_example_intermediate_nodes_get_their_adjoints():
    x1, x2 = Var(2.0), Var(5.0)
    product = x1 * x2
    s = sin(x2)
    z = log(x1) + product - s
    z.backward()
    assert (product.grad, s.grad, z.grad) == (1.0, -1.0, 1.0)


def test_module_docstring_example_runs():
    assert doctest.testmod(ad).failed == 0


@given(st.floats(-100, 100, allow_nan=False))
def test_reused_node_collects_every_path(x):
    v = Var(x)
    z = v * v + v
    z.backward()
    assert v.grad == pytest.approx(2 * x + 1)
    assert (Dual(x, 1.0) * Dual(x, 1.0) + Dual(x, 1.0)).deriv == pytest.approx(2 * x + 1)


def test_diamond_graph_shared_intermediate_counted_once_per_path():
    x = Var(0.7)
    u = sin(x)  # used by two branches
    z = u * u + exp(u)
    z.backward()
    assert x.grad == pytest.approx((2 * math.sin(0.7) + math.exp(math.sin(0.7))) * math.cos(0.7))


def test_long_chain_beyond_the_recursion_limit_works():
    n = 5 * sys.getrecursionlimit()
    x = Var(1.5)
    y = x
    for _ in range(n):
        y = y + x * 1.0
    y.backward()
    assert x.grad == n + 1
    y.zero_grad()
    assert x.grad == 0.0


def test_second_backward_accumulates_and_zero_grad_resets():
    x = Var(3.0)
    z = x * x
    z.backward()
    assert x.grad == 6.0
    z.backward()
    assert x.grad == 12.0  # accumulated, like torch
    z.zero_grad()
    assert (x.grad, z.grad) == (0.0, 0.0)
    z.backward()
    assert x.grad == 6.0


def test_backward_of_two_outputs_sums_their_gradients_exactly():
    x = Var(0.3)
    u = exp(x)  # an intermediate node shared by both outputs
    a, b = sin(u), u * u
    a.backward()
    b.backward()
    e = math.exp(0.3)
    assert x.grad == pytest.approx((math.cos(e) + 2 * e) * e)
    assert u.grad == pytest.approx(math.cos(e) + 2 * e)


def test_backward_seed_scales_the_gradients():
    x = Var(2.0)
    (x**3).backward(0.5)
    assert x.grad == pytest.approx(0.5 * 3 * 4)


def test_inputs_not_used_keep_zero_grad():
    x, y = Var(1.0), Var(2.0)
    (x * 3).backward()
    assert (x.grad, y.grad) == (3.0, 0.0)


# --- operators with plain numbers, reflected forms, powers ----------------------------------------


@pytest.mark.parametrize(
    "f, df",
    [
        (lambda x: 1 + x, lambda x: 1.0),
        (lambda x: 1 - x, lambda x: -1.0),
        (lambda x: x - 1, lambda x: 1.0),
        (lambda x: 2 * x, lambda x: 2.0),
        (lambda x: 1 / x, lambda x: -1 / x**2),
        (lambda x: x / 4, lambda x: 0.25),
        (lambda x: 2**x, lambda x: 2**x * math.log(2)),
        (lambda x: x**3, lambda x: 3 * x**2),
        (lambda x: x**-2, lambda x: -2 * x**-3),
        (lambda x: x**0.5, lambda x: 0.5 * x**-0.5),
        (lambda x: x**x, lambda x: x**x * (math.log(x) + 1)),
        (lambda x: -x, lambda x: -1.0),
        (lambda x: +x, lambda x: 1.0),
        (lambda x: np.float64(2) * x, lambda x: 2.0),
        (lambda x: np.float32(3) + x, lambda x: 1.0),
        (lambda x: tan(x), lambda x: 1 / math.cos(x) ** 2),
        (lambda x: sqrt(x), lambda x: 0.5 / math.sqrt(x)),
        (lambda x: cos(x), lambda x: -math.sin(x)),
    ],
)
@pytest.mark.parametrize("x", [0.3, 1.7])
def test_operator_derivatives_match_hand_derivatives(f, df, x):
    d = f(Dual(x, 1.0))
    v = Var(x)
    z = f(v)
    z.backward()
    assert isinstance(d, Dual) and isinstance(z, Var)
    assert d.deriv == pytest.approx(df(x), rel=1e-12)
    assert v.grad == pytest.approx(df(x), rel=1e-12)


@pytest.mark.parametrize("n", [0, 1, 2, 3, -1])
def test_negative_base_to_an_integer_power_is_fine(n):
    d = Dual(-2.0, 1.0) ** n
    assert d.value == (-2.0) ** n
    assert d.deriv == pytest.approx(n * (-2.0) ** (n - 1))


def test_zero_base_integer_powers_have_their_derivatives():
    assert (Dual(0.0, 1.0) ** 0).deriv == 0.0
    assert (Dual(0.0, 1.0) ** 1).deriv == 1.0
    assert (Dual(0.0, 1.0) ** 2).deriv == 0.0


def test_elementary_functions_on_numbers_return_floats():
    for fn, ref in [
        (sin, math.sin),
        (cos, math.cos),
        (tan, math.tan),
        (exp, math.exp),
        (log, math.log),
        (sqrt, math.sqrt),
    ]:
        out = fn(2)
        assert type(out) is float and out == ref(2.0)
    assert sqrt(0.0) == 0.0  # the value at 0 is fine; only its derivative is infinite


def test_repr_shows_value_and_derivative_or_grad():
    d = Dual(2.5, -1.0)
    assert repr(d) == "Dual(value=2.5, deriv=-1.0)"
    copy = eval(repr(d))  # the repr is the constructor call
    assert (copy.value, copy.deriv) == (2.5, -1.0)
    x = Var(2.0)
    z = x * 3
    z.backward()
    assert repr(x) == "Var(value=2.0, grad=3.0)"
    assert repr(z) == "Var(value=6.0, grad=1.0, op='*')"
    assert z.parents == ((x, 3.0),)


# --- clear errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [Dual, Var])
def test_division_by_zero_raises_and_names_the_values(make):
    x = make(1.5)
    with pytest.raises(ZeroDivisionError, match=r"division by zero: 1\.5 / 0\.0"):
        x / 0
    with pytest.raises(ZeroDivisionError, match=r"division by zero: 2\.0 / 0\.0"):
        2 / (x - 1.5)


@pytest.mark.parametrize("arg", [0.0, -1.0, Dual(0.0, 1.0), Var(-2.0)])
def test_log_outside_its_domain_raises(arg):
    with pytest.raises(ValueError, match=r"log\(x\) needs x > 0; got x = -?[0-9.]+.*epsilon"):
        log(arg)


@pytest.mark.parametrize("arg", [-1.0, Dual(-1.0, 1.0), Var(-1.0)])
def test_sqrt_of_a_negative_number_raises(arg):
    with pytest.raises(ValueError, match=r"sqrt\(x\) needs x >= 0; got x = -1\.0"):
        sqrt(arg)


@pytest.mark.parametrize("arg", [Dual(0.0, 1.0), Var(0.0)])
def test_derivative_of_sqrt_at_zero_raises(arg):
    with pytest.raises(ZeroDivisionError, match=r"derivative of sqrt\(x\) at x = 0\.0 .* infinite"):
        sqrt(arg)
    with pytest.raises(ZeroDivisionError, match=r"derivative of x \*\* 0\.5 at x = 0\.0 is infinite"):
        arg**0.5


def test_zero_to_a_negative_power_raises():
    with pytest.raises(ZeroDivisionError, match=r"value of x \*\* -1\.0 at x = 0\.0 is infinite"):
        Var(0.0) ** -1


def test_negative_base_to_a_non_integer_power_raises():
    with pytest.raises(ValueError, match=r"negative base to a non-integer power.*-2\.0 \*\* 0\.5"):
        Dual(-2.0, 1.0) ** 0.5
    with pytest.raises(ValueError, match=r"Dual/Var exponent needs a base x > 0.*got x = -2\.0"):
        Var(-2.0) ** Var(2.0)
    with pytest.raises(ValueError, match=r"base x > 0.*got x = -3\.0"):
        (-3) ** Dual(2.0, 1.0)


def piecewise(x):
    """x**2 below 1, 2x - 1 from 1 on: the branch is chosen by comparing x like a number."""
    return x * x if x < 1 else 2 * x - 1


@pytest.mark.parametrize("x0, slope", [(0.5, 1.0), (3.0, 2.0), (-2.0, -4.0)])
def test_comparisons_steer_control_flow_and_the_branch_taken_is_differentiated(x0, slope):
    assert piecewise(Dual(x0, 1.0)).deriv == slope
    x = Var(x0)
    piecewise(x).backward()
    assert x.grad == slope


@given(a=st.floats(-1e6, 1e6), b=st.floats(-1e6, 1e6))
def test_comparisons_compare_values_with_numbers_and_their_own_kind(a, b):
    for make in (Dual, Var):
        assert (make(a) < make(b)) == (a < b) and (make(a) <= b) == (a <= b)
        assert (make(a) > b) == (a > b) and (make(a) >= b) == (a >= b) and (a >= make(b)) == (a >= b)
    assert [v.value for v in sorted([Var(a), Var(b)])] == sorted([a, b])


def test_equality_stays_identity_so_vars_can_be_set_members():
    x, y = Var(1.0), Var(1.0)
    assert x != y and len({x, y}) == 2


def test_comparing_dual_with_var_or_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="cannot combine a Dual with a Var"):
        _ = Dual(1.0) < Var(2.0)
    with pytest.raises(TypeError):
        _ = Var(1.0) < "2"


def test_mixing_dual_and_var_raises_type_error():
    with pytest.raises(TypeError, match="cannot combine a Dual with a Var.*forward mode"):
        Dual(1.0, 1.0) + Var(1.0)
    with pytest.raises(TypeError, match="cannot combine a Var with a Dual"):
        Var(1.0) * Dual(1.0, 1.0)


def test_unsupported_operands_raise_type_error():
    with pytest.raises(TypeError, match="sin takes a float, a Dual or a Var; got str"):
        sin("1.0")
    with pytest.raises(TypeError, match="use numpy.exp or torch.exp"):
        exp(torch.ones(3))
    with pytest.raises(TypeError, match="unsupported operand"):
        Dual(1.0) + "a"
    with pytest.raises(TypeError, match="Var value must be a real number"):
        Var(torch.tensor(1.0))


# --- numerical derivatives -------------------------------------------------------------------------

CASES = [
    (math.sin, math.cos, [0.5, 1.0, 2.0, 4.0]),
    (math.exp, math.exp, [-1.0, 0.5, 3.0]),
    (math.log, lambda x: 1 / x, [0.3, 2.0, 50.0]),
    (lambda x: x**3, lambda x: 3 * x**2, [-2.0, 0.7, 10.0]),
]


def relative_errors(method):
    return [
        abs(numerical_derivative(f, x, method=method) - df(x)) / abs(df(x)) for f, df, points in CASES for x in points
    ]


def test_symmetric_quotient_beats_newton_at_default_steps():
    symmetric, newton = relative_errors("symmetric"), relative_errors("newton")
    assert max(symmetric) < 1e-9  # about eps ** (2/3)
    assert max(newton) < 1e-6  # about sqrt(eps)
    assert np.median(symmetric) < np.median(newton) / 50


def recorded_steps(x, method):
    """The points where numerical_derivative evaluates f, as offsets from x."""
    calls = []
    numerical_derivative(lambda t: calls.append(t) or 0.0, x, method=method)
    return sorted(float(t) - float(x) for t in calls)


@pytest.mark.parametrize("x", [0.0, 0.5, -3.0, 1e4])
def test_symmetric_default_step_is_cube_root_of_eps_times_max_abs_x_and_1(x):
    h = EPS64 ** (1 / 3) * max(abs(x), 1)
    assert default_step(x) == pytest.approx(h, rel=1e-15)
    low, high = recorded_steps(x, "symmetric")
    assert low == pytest.approx(-h, rel=1e-3) and high == pytest.approx(h, rel=1e-3)


@pytest.mark.parametrize("x", [0.5, -3.0, 1e4])
def test_newton_default_step_is_sqrt_eps_times_abs_x(x):
    h = math.sqrt(EPS64) * abs(x)
    assert default_step(x, "newton") == pytest.approx(h, rel=1e-15)
    steps = recorded_steps(x, "newton")
    assert steps[0] == 0.0 and steps[1] == pytest.approx(h, rel=1e-3)


def test_newton_default_step_at_zero_falls_back_to_sqrt_eps():
    assert default_step(0.0, "newton") == math.sqrt(EPS64)
    assert default_step(np.float32(0), "newton") == pytest.approx(math.sqrt(EPS32))
    assert numerical_derivative(math.sin, 0.0, method="newton") == pytest.approx(1.0, abs=1e-7)


def test_default_step_uses_the_epsilon_of_x_dtype():
    assert default_step(np.float32(2.0)) == pytest.approx(EPS32 ** (1 / 3) * 2)
    assert default_step(torch.tensor(2.0)) == pytest.approx(EPS32 ** (1 / 3) * 2)
    assert default_step(torch.tensor(2.0, dtype=torch.float64)) == pytest.approx(EPS64 ** (1 / 3) * 2)
    assert default_step(np.array([2.0])) == pytest.approx(EPS64 ** (1 / 3) * 2)
    assert default_step(2) == default_step(2.0)


def test_float32_is_less_accurate_and_needs_its_own_step():
    x32, exact = np.float32(1.0), math.cos(1.0)
    d32 = numerical_derivative(np.sin, x32)
    d64 = numerical_derivative(np.sin, 1.0)
    assert d32.dtype == np.float32
    err32, err64 = abs(float(d32) - exact), abs(d64 - exact)
    assert err32 < 1e-4  # about eps32 ** (2/3) = 2.5e-5
    assert err64 < 1e-9
    assert err32 > 100 * err64
    # float64's step is far too small for float32: rounding dominates
    d32_small_step = numerical_derivative(np.sin, x32, h=default_step(1.0))
    assert abs(float(d32_small_step) - exact) > 10 * err32


def test_torch_scalars_work_and_keep_their_dtype():
    for dtype, tol in [(torch.float32, 1e-4), (torch.float64, 1e-9)]:
        d = numerical_derivative(torch.exp, torch.tensor(0.5, dtype=dtype))
        assert d.dtype == dtype
        assert abs(d.item() - math.exp(0.5)) < tol


def test_numerical_derivative_with_explicit_step():
    assert numerical_derivative(lambda x: x * x, 3.0, h=0.5) == pytest.approx(6.0)  # exact for quadratics
    assert numerical_derivative(lambda x: x * x, 3.0, h=0.5, method="newton") == pytest.approx(6.5)


def test_bad_method_or_step_raises():
    with pytest.raises(ValueError, match=r"method must be 'symmetric' or 'newton'; got 'central'"):
        numerical_derivative(math.sin, 1.0, method="central")
    with pytest.raises(ValueError, match="method must be"):
        default_step(1.0, method="forward")
    with pytest.raises(ValueError, match=r"step h must be > 0; got h = 0"):
        numerical_derivative(math.sin, 1.0, h=0)
    with pytest.raises(TypeError, match="single floating-point number.*shape \\(3,\\)"):
        numerical_derivative(torch.sin, torch.ones(3))
    with pytest.raises(TypeError, match="single real number; got list"):
        numerical_derivative(math.sin, [1.0])


# --- grad_check (lab 1: logistic regression) -------------------------------------------------------


def logistic_regression(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(50, 4, generator=g, dtype=dtype)
    y = (torch.rand(50, generator=g) < 0.5).to(dtype)
    w = torch.randn(4, generator=g, dtype=dtype)

    def loss_fn(w):
        y_hat = torch.sigmoid(X @ w)
        return -(y * torch.log(y_hat) + (1 - y) * torch.log(1 - y_hat)).mean()

    def grad(w):
        return X.T @ (torch.sigmoid(X @ w) - y) / len(y)

    return loss_fn, grad, w


def test_grad_check_is_tiny_for_the_right_gradient_and_leaves_x_unchanged():
    loss_fn, grad, w = logistic_regression()
    before = w.clone()
    error = grad_check(loss_fn, w, grad(w), num_checks=4, seed=0)
    assert error < 1e-6
    assert torch.equal(w, before)


@pytest.mark.parametrize("wrong", [lambda g: 2 * g, lambda g: -g, lambda g: g * len(g) + 1])
def test_grad_check_is_large_for_a_wrong_gradient(wrong):
    loss_fn, grad, w = logistic_regression()
    assert grad_check(loss_fn, w, wrong(grad(w)), seed=1) > 0.1


def test_grad_check_agrees_with_torch_autograd_on_a_tensor_that_requires_grad():
    loss_fn, _, w = logistic_regression()
    w.requires_grad_(True)
    loss_fn(w).backward()
    before = w.detach().clone()
    assert grad_check(loss_fn, w, w.grad) < 1e-6
    assert torch.equal(w.detach(), before) and w.requires_grad


def test_grad_check_numpy_matrix_and_f_that_reads_x_from_outside():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 5))
    before = W.copy()

    def f(_):  # ignores its argument: grad_check perturbs W in place
        return float(np.sum(W**3))

    assert grad_check(f, W, 3 * W**2, num_checks=15) < 1e-8
    assert grad_check(f, W, 3 * W**2 + 0.5, num_checks=15) > 1e-3
    assert np.array_equal(W, before)


def test_grad_check_restores_x_when_f_raises():
    x = np.array([1.0, 2.0])
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return float(x.sum())

    with pytest.raises(RuntimeError, match="boom"):
        grad_check(f, x, np.ones(2), num_checks=1)
    assert np.array_equal(x, [1.0, 2.0])


def test_grad_check_zero_gradient_of_a_constant_is_zero_error():
    x = torch.zeros(3, dtype=torch.float64)
    assert grad_check(lambda x: 1.0, x, torch.zeros(3)) == 0.0


def test_grad_check_checks_each_coordinate_once_when_few():
    x = np.array([[2.0]])  # one coordinate, ten checks asked for
    assert grad_check(lambda x: float(x[0, 0] ** 2), x, np.array([[4.0]])) < 1e-9
    assert grad_check(lambda x: float(x[0, 0] ** 2), x, np.array([[5.0]])) == pytest.approx(1 / 9, rel=1e-6)


def test_grad_check_same_seed_same_coordinates():
    loss_fn, grad, w = logistic_regression()
    wrong = grad(w) * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert grad_check(loss_fn, w, wrong, num_checks=2, seed=3) == grad_check(loss_fn, w, wrong, num_checks=2, seed=3)


def test_grad_check_bad_input_raises():
    x = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"analytic_grad must be an array or tensor of x's shape \(3,\)"):
        grad_check(lambda x: 0.0, x, torch.zeros(4))
    with pytest.raises(ValueError, match="analytic_grad must be an array or tensor.*got list"):
        grad_check(lambda x: 0.0, x, [0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="numpy array or torch tensor; got list"):
        grad_check(lambda x: 0.0, [0.0], np.zeros(1))
    with pytest.raises(TypeError, match="floating-point x; got dtype torch.int64"):
        grad_check(lambda x: 0.0, torch.zeros(3, dtype=torch.int64), torch.zeros(3))
    with pytest.raises(ValueError, match="num_checks must be a positive int; got 0"):
        grad_check(lambda x: 0.0, x, torch.zeros(3), num_checks=0)
    with pytest.raises(ValueError, match="step h must be > 0"):
        grad_check(lambda x: 0.0, x, torch.zeros(3), h=-1e-5)
    with pytest.raises(TypeError, match=r"f\(x\) must return a scalar.*shape \(3,\).*\.mean\(\)"):
        grad_check(lambda x: x * 2, x, torch.zeros(3))


def test_grad_check_in_float32_is_dominated_by_rounding():
    loss_fn, grad, w = logistic_regression(torch.float32)
    assert grad_check(loss_fn, w, grad(w)) > 1e-3  # why the docstring says: check in float64


# --- edges: one rule, torch's (float64) -------------------------------------------------------------


def _torch_value_and_grads(f, *point):
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in point]
    out = f(*ts)
    out.backward()
    return out.item(), [t.grad.item() for t in ts]


def _var_value_and_grads(f, *point):
    xs = [Var(v) for v in point]
    out = f(*xs)
    out.backward()
    return out.value, [x.grad for x in xs]


@pytest.mark.parametrize(("x", "y"), [(0.0, 2.0), (0.0, 1.0), (0.0, 0.0), (0.0, 3.5)])
def test_var_to_a_var_power_at_a_base_of_zero_gives_torch_s_value_and_derivatives(x, y):
    expected = _torch_value_and_grads(lambda a, b: a**b, x, y)
    assert _var_value_and_grads(lambda a, b: a**b, x, y) == expected
    dual = Dual(x, 1.0) ** Dual(y, 1.0)  # d/dx + d/dy in one forward pass
    assert (dual.value, dual.deriv) == (expected[0], sum(expected[1]))


def test_var_to_a_var_power_at_zero_still_raises_where_torch_s_derivative_is_infinite():
    torch_grads = _torch_value_and_grads(lambda a, b: a**b, 0.0, 0.5)[1]
    assert math.isinf(torch_grads[0])
    with pytest.raises(ZeroDivisionError, match=r"derivative of x \*\* 0\.5 at x = 0\.0 is infinite"):
        Var(0.0) ** Var(0.5)


@pytest.mark.parametrize(
    ("f", "point"),
    [
        (lambda a: torch.exp(a) if isinstance(a, torch.Tensor) else exp(a), (1000.0,)),
        (lambda a: a**400, (10.0,)),
        (lambda a: a**401, (-10.0,)),
        (lambda a, b: a**b, (10.0, 400.0)),
        (lambda a: a * a * 1e300, (1e10,)),
    ],
)
def test_overflow_gives_inf_as_torch_and_multiplication_do(f, point):
    value, grads = _var_value_and_grads(f, *point)
    assert (value, grads) == _torch_value_and_grads(f, *point)
    assert math.isinf(value)
    dual = f(*[Dual(v, 1.0) for v in point])
    assert dual.value == value and dual.deriv == sum(grads)


def test_exp_of_a_plain_float_overflows_to_inf_like_torch():
    assert exp(1000.0) == math.inf == torch.exp(torch.tensor(1000.0, dtype=torch.float64)).item()
