"""scanlab.math against NumPy in higher precision: accuracy in ulps, special values, vectorising."""

import math
from math import expm1, log, tanh

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numba import cuda, njit

from scanlab import math as smath
from scanlab._angle_reduction import REDUCTION_TABLE, two_over_pi_bits
from scanlab.config import FASTMATH

#: Each function, its reference in NumPy, and the bound on its error in ulps.
FUNCTIONS = {
    "exp": (smath.exp, np.exp, 2.0),
    "expm1": (smath.expm1, np.expm1, 2.0),
    "tanh": (smath.tanh, np.tanh, 3.0),
    "sigmoid": (smath.sigmoid, lambda x: np.exp(-np.logaddexp(0, -x)), 3.0),
    "log": (smath.log, np.log, 2.0),
    "log1p": (smath.log1p, np.log1p, 3.0),
    "sin": (smath.sin, np.sin, 1.0),
    "cos": (smath.cos, np.cos, 1.0),
}
#: Where each float64 reference is computed: x87 long doubles (64-bit significand) where the
#: platform has them; otherwise float64 itself, and the bound widens by the reference's own ulp.
WIDE = np.longdouble if np.finfo(np.longdouble).nmant >= 63 else np.float64
REFERENCE_SLACK = {np.float32: 0.0, np.float64: 0.0 if WIDE is np.longdouble else 1.0}


def applier(function):
    """A compiled loop applying ``function`` elementwise (the way a cell calls it)."""

    @njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = function(x[i])

    return apply


APPLIERS = {name: applier(function) for name, (function, _, _) in FUNCTIONS.items()}


def sample(dtype, rng):
    """Arguments over every range that matters: near 0, moderate, huge, tiny, both signs, and
    positive over the whole range of the dtype (subnormals included) for the logarithms."""
    limit = 100.0 if dtype == np.float32 else 760.0
    low, high = (-44, 38) if dtype == np.float32 else (-322, 307)
    parts = [
        rng.uniform(-1, 1, 20_000),
        rng.uniform(-30, 30, 20_000),
        rng.uniform(-limit, limit, 20_000),
        10.0 ** rng.uniform(-40, 0, 20_000) * rng.choice([-1, 1], 20_000),
        10.0 ** rng.uniform(low, high, 20_000),
        rng.uniform(0.5, 2.0, 20_000),
    ]
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_accuracy_in_ulps(name, dtype):
    _, reference, bound = FUNCTIONS[name]
    x = sample(dtype, np.random.default_rng(0))
    out = np.empty_like(x)
    APPLIERS[name](x, out)
    with np.errstate(all="ignore"):
        exact = reference(x.astype(WIDE if dtype == np.float64 else np.float64))
        rounded = exact.astype(dtype)
    normal = np.isfinite(rounded) & (np.abs(rounded) >= np.finfo(dtype).tiny)
    ulps = np.abs(out[normal] - exact[normal]) / np.spacing(np.abs(rounded[normal]))
    assert ulps.max() <= bound + REFERENCE_SLACK[dtype]
    # Where the result overflows or is 0 (or underflows), it does so as the reference does.
    extreme = np.isinf(rounded) | (rounded == 0)
    np.testing.assert_array_equal(out[extreme], rounded[extreme])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_special_values(name, dtype):
    _, reference, _ = FUNCTIONS[name]
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    out = np.empty_like(x)
    APPLIERS[name](x, out)
    with np.errstate(all="ignore"):
        expected = reference(x)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.signbit(out[3:]), np.signbit(expected[3:]))


@given(x=st.floats(allow_nan=True, allow_infinity=True))
def test_agree_with_the_c_library_on_any_float(x):
    """Within the ulp bounds (or exactly, for non-finite and zero results) on any float64."""
    standard = {"exp": math.exp, "expm1": math.expm1, "tanh": math.tanh, "log": math.log,
                "log1p": math.log1p, "sin": math.sin, "cos": math.cos}  # fmt: skip
    for name, expected in standard.items():
        function, _, bound = FUNCTIONS[name]
        try:
            value = expected(x)
        except OverflowError:
            value = math.inf
        except ValueError:  # the logarithms: -inf at their pole, NaN below it; sin, cos of inf
            pole = {"log": 0, "log1p": -1}.get(name)
            value = -math.inf if x == pole else math.nan
        result = function(x)
        if math.isnan(value):
            assert math.isnan(result)
        elif math.isinf(value) or abs(value) < 2.2250738585072014e-308:
            assert result == value or abs(result - value) <= 2 * 5e-324
        else:
            assert abs(result - value) <= (bound + 1) * math.ulp(value)


#: Doubles nearest a multiple of pi/2 (the reduction's hardest cases: the first is 4.7e-19 from
#: one), powers of two, the largest double, and multiples of pi's approximations.
HARD_ANGLES = [
    6381956970095103 * 2.0**797, 5261692873635770 * 2.0**499, 8248384262727561 * 2.0**-1074,
    1.5707963267948966, 3.141592653589793, 4.71238898038469, 6.283185307179586, 2.0**1023,
    1.7976931348623157e308, 2.0**53, 2.0**53 - 1, 2.0**60, 1e22, 355.0, 103993.0, 104348.0,
    52174.0, 1.0, 2.0**-27, 2.0**-26, 2.0**-25, 5e-324, 2.2250738585072014e-308,
]  # fmt: skip


def test_the_reduction_reads_the_bits_of_two_over_pi():
    """The first 160 bits against the published hexadecimal expansion of 2/pi, and each table
    row's windows against those bits."""
    assert two_over_pi_bits(160) == 0xA2F9836E4E441529FC2757D1F534DDC0DB629599
    bits = two_over_pi_bits(400)
    for row in (0, 1, 2, 3, 60, 150):
        start = max(1, row - 1)
        for window, value in enumerate(REDUCTION_TABLE[row]):
            first = start + 53 * window
            expected = (bits >> (400 - first - 52)) & (2**53 - 1)
            assert math.ldexp(value, first + 52 - row) == expected


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_hard_angles_within_an_ulp(name):
    function, reference, _ = FUNCTIONS[name]
    x = np.array(HARD_ANGLES + [-value for value in HARD_ANGLES])
    out = np.empty_like(x)
    APPLIERS[name](x, out)
    exact = reference(x.astype(WIDE))
    ulps = np.abs(out - exact) / np.spacing(np.abs(exact.astype(np.float64)))
    assert ulps.max() <= 1.0 + REFERENCE_SLACK[np.float64], x[np.argmax(ulps)]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_stays_float32(name):
    function = FUNCTIONS[name][0]
    wrapper = njit(lambda x: function(x))
    wrapper(np.float32(0.5))
    assert [str(signature.return_type) for signature in wrapper.nopython_signatures] == ["float32"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_loops_calling_them_vectorise(name, dtype):
    """LLVM turns a loop over them into SIMD code, even under Python's error model."""
    apply = APPLIERS[name]
    apply(np.zeros(4, dtype), np.zeros(4, dtype))
    signature = next(s for s in apply.signatures if str(s[0].dtype) == dtype)
    vector_type = "float" if dtype == "float32" else "double"
    assert f"x {vector_type}>" in apply.inspect_llvm(signature)


def tanh_of_module(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = (
            math.tanh(0.9 * h_prev[i] + x_t[i])
            + math.exp(-h_prev[i] * h_prev[i])
            + math.log1p(x_t[i] * x_t[i])
        )


def tanh_imported(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = tanh(0.9 * h_prev[i] + x_t[i]) + expm1(x_t[i]) - math.sqrt(i) + log(2 + i)


def pendulums(h_prev, x_t, params, h_out):
    for i in range(h_prev.shape[0]):
        h_out[i] = h_prev[i] + 0.01 * (math.sin(x_t[i] - h_prev[i]) - math.cos(h_prev[i]))


@pytest.mark.parametrize("step", [tanh_of_module, tanh_imported, pendulums])
def test_a_cells_math_functions_are_scanlabs_unless_exact(step):
    """A step's ``math.tanh`` (or ``tanh`` from ``math``) compiles to scanlab's, which vectorises;
    ``exact_math=True`` keeps the C library's; both agree within scanlab's ulps."""
    import scanlab

    fast, exact = (
        scanlab.cell(step, structure="diagonal"),
        scanlab.cell(step, structure="diagonal", exact_math=True),
    )
    assert fast.step.py_func is not step and exact.step.py_func is step
    names = step.__code__.co_names
    for name in ("math", "tanh", "expm1"):
        if name in names:
            replaced = fast.step.py_func.__globals__[name]
            assert replaced is smath.MATH_FOR_CELLS or replaced in (
                shim for shim, _ in smath.REPLACEMENTS.values()
            )
    assert math.sqrt is smath.MATH_FOR_CELLS.sqrt and step.__globals__["math"] is math
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2, 16))
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-310, -30.0, 30.0])
    x[5, 0, : special.size] = special
    for dtype, ulps in ((np.float32, 3e-7), (np.float64, 1e-15)):
        h0 = np.zeros((2, 16), dtype)
        results = [
            scanlab.nonlinear_recurrence(cell, x.astype(dtype), h0, method="sequential")
            for cell in (fast, exact)
        ]
        assert results[0].dtype == dtype
        np.testing.assert_allclose(results[0], results[1], rtol=8 * ulps, atol=8 * ulps)
        np.testing.assert_array_equal(np.isnan(results[0]), np.isnan(results[1]))
    # The step's loop is SIMD code, the C library's not: compiled afresh here, as the step's
    # own compiled code may come from Numba's cache, which keeps no IR to inspect.
    # (sin and cos are replaced in float64 only: float32 keeps the C library's sinf.)
    vector = {"float32": "x float>", "float64": "x double>"}
    fresh = njit(fastmath=FASTMATH)(fast.step.py_func)
    for signature in fast.step.signatures:
        dtype = str(signature[0].dtype)
        fresh.compile(signature)
        vectorised = vector[dtype] in fresh.inspect_llvm(signature)
        assert vectorised or (step is pendulums and dtype == "float32")


@pytest.mark.cuda
@pytest.mark.skipif(not cuda.is_available(), reason="needs a CUDA GPU or the simulator")
def test_they_run_in_cuda_kernels():
    @cuda.jit
    def kernel(x, out):
        i = cuda.grid(1)
        if i < x.size:
            out[0, i] = smath.exp(x[i])
            out[1, i] = smath.expm1(x[i])
            out[2, i] = smath.tanh(x[i])
            out[3, i] = smath.sigmoid(x[i])
            out[4, i] = smath.sin(x[i])
            out[5, i] = smath.cos(x[i])

    x = np.linspace(-5, 5, 33)
    out = cuda.device_array((6, x.size))
    kernel[1, 64](cuda.to_device(x), out)
    expected = [np.exp(x), np.expm1(x), np.tanh(x), 1 / (1 + np.exp(-x)), np.sin(x), np.cos(x)]
    np.testing.assert_allclose(out.copy_to_host(), expected, rtol=1e-15)


def test_module_docstring_example():
    import doctest

    results = doctest.testmod(smath, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
