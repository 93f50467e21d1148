"""Elementary functions in plain arithmetic, for code compiled by Numba on CPUs and GPUs.

Numba's pip build evaluates ``math.exp``, ``math.tanh`` or ``math.sin`` by calling the C
library one element at a time, so a loop over them does not vectorise. The functions here reduce
the argument and evaluate a polynomial in plain arithmetic, which LLVM vectorises; the same
functions compile into CUDA kernels. Call them from ``@numba.njit`` or ``@cuda.jit`` code (for
example a cell of a nonlinear recurrence) on float32 or float64 scalars; from Python they also
run, compiled, on one scalar at a time. ``exp``, ``expm1``, ``tanh``, ``sigmoid``, ``log`` and
``log1p`` compute in the argument's own precision; each compiles once per precision and target,
with scanlab's fastmath policy (on the CPU cached on disk), and LLVM (NVVM in CUDA code) inlines
it into the caller. ``sin`` and ``cos`` (in the argument's precision too) compile the same
way, into functions marked for LLVM to inline wherever they are called (see
:func:`inlined_subroutine`); a cell's float32 ``math.sin`` and ``math.cos`` stay the C
library's (see :data:`DOUBLE_ONLY`).

Accuracy (checked over the whole range in ``tests/test_math.py``): ``sin`` and ``cos`` within 1
unit in the last place (ulp) of the exact result for every finite argument, huge ones and those
nearest a multiple of ``pi/2`` included (their reduction is Payne and Hanek's, see
:func:`scanlab._angle_reduction.quarter_turns`); ``exp``, ``expm1`` and ``log`` within 2 ulp,
``log1p``, ``tanh`` and ``sigmoid`` within 3, at both precisions; NaN, the infinities and signed
zeros give what the C library gives (a NaN's payload aside). Subnormal results may lose their
last bits. The bounds hold in code compiled as scanlab compiles (contracted multiply-adds at
most): ``fastmath=True`` lets LLVM reassociate the compensated sums these functions rely on
(the reduction of ``sin`` and ``cos`` keeps its exact sums, LLVM IR without fast-math flags).

``math.sqrt`` needs no replacement: Numba compiles it to LLVM's ``sqrt``, which vectorises as it
is (0.1-0.3 ns an element in a loop, against 1.8-2.9 ns for ``math.exp``, on Zen 5).

Examples
--------
>>> import numpy as np
>>> from numba import njit
>>> from scanlab import math as smath
>>> @njit
... def gated(x):
...     return smath.sigmoid(x) * smath.tanh(x)
>>> float(gated(np.float32(0.5)))  # doctest: +ELLIPSIS
0.2876...
"""

import decimal
import math
import types as types_module

from numba import int64, njit, types
from numba.core.cpu import CPUContext
from numba.extending import intrinsic, overload

from scanlab._angle_reduction import REDUCTION_TABLE, REDUCTION_TABLE_SINGLE, quarter_turns
from scanlab._float_bits import (
    bits_of,
    divide,
    float_of_bits,
    fused_multiply_add,
    is_single,
    scale,
)  # fmt: skip
from scanlab._kernel_cache import njit_cached
from scanlab.config import FASTMATH


def split_ln2(precision_bits: int) -> tuple[float, float]:
    """``ln 2 = high + low`` with ``high`` holding ``precision_bits`` significant bits.

    ``k * high`` is then exact for the ``k`` of a range reduction, and ``low`` carries the rest
    of ``ln 2`` (computed to 40 digits, beyond float64).
    """
    with decimal.localcontext() as context:
        context.prec = 40
        ln2 = decimal.Decimal(2).ln()
        high = decimal.Decimal(int(ln2 * 2**precision_bits)) / 2**precision_bits
        return float(high), float(ln2 - high)


#: ``ln 2`` in two parts, for float64 (32 bits in the high part) and float32 (12 bits).
LN2_HIGH, LN2_LOW = split_ln2(32)
LN2_HIGH_SINGLE, LN2_LOW_SINGLE = split_ln2(12)
#: ``1 / ln 2`` and ``sqrt 2``.
INVERSE_LN2 = 1.4426950408889634
SQRT2 = math.sqrt(2.0)
#: Taylor coefficients ``1 / k!`` of ``expm1(r) = r + r^2 (1/2! + r (1/3! + ...))``: enough terms
#: for ``|r| <= ln 2 / 2`` in float64 (up to ``r^14``) and float32 (up to ``r^8``).
(C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14) = (
    1.0 / math.factorial(k) for k in range(2, 15)
)
#: Arguments beyond which exp overflows or underflows completely, by precision.
EXP_LIMITS = (-746.0, 710.0)
EXP_LIMITS_SINGLE = (-104.0, 89.0)
#: Arguments beyond which tanh rounds to +-1 (float64, float32).
TANH_SATURATION = 22.0
TANH_SATURATION_SINGLE = 9.5
#: Coefficients ``2 / (2k + 1)`` of ``log(1 + f) = 2 s + s R(s^2)``, ``s = f / (2 + f)``:
#: enough terms for ``|s| <= 0.172`` (``1 + f`` within ``sqrt(2)`` of 1) in float64 (up to
#: ``s^24``) and float32 (up to ``s^12``).
(L1, L2, L3, L4, L5, L6, L7, L8, L9, L10, L11, L12) = (2.0 / (2 * k + 1) for k in range(1, 13))
#: Taylor coefficients of ``sin r = r + r z P(z)`` and ``cos r = 1 - z/2 + z^2 Q(z)``,
#: ``z = r^2``: ``P``'s ``(-1)^k / (2k + 1)!``, ``k = 1..8``, and ``Q``'s ``(-1)^k / (2k)!``,
#: ``k = 2..8``, enough for ``|r| <= pi/4`` in float64 (remainders below 1e-18); float32 stops
#: at ``S5`` and ``Q5`` (below 1e-10).
(S1, S2, S3, S4, S5, S6, S7, S8) = ((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 9))
(Q2, Q3, Q4, Q5, Q6, Q7, Q8) = ((-1.0) ** k / math.factorial(2 * k) for k in range(2, 9))
#: Below these, ``sin x`` rounds to ``x`` and ``cos x`` to 1 (float64, float32).
SINE_TINY, COSINE_TINY = 2.0**-26, 2.0**-27
SINE_TINY_SINGLE, COSINE_TINY_SINGLE = 2.0**-12, 2.0**-12


@njit(inline="always")
def expm1_reduced(r):
    """``exp(r) - 1`` for ``|r| <= ln 2 / 2``, by its Taylor series in ``r``'s precision."""
    real = type(r)
    if is_single(r):
        tail = real(C8)
        for coefficient in (C7, C6, C5, C4, C3, C2):
            tail = tail * r + real(coefficient)
    else:
        tail = real(C14)
        for coefficient in (C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2):
            tail = tail * r + real(coefficient)
    return r + r * r * tail


@njit(inline="always")
def reduce(x):
    """``(k, expm1(r))`` with ``x = k ln 2 + r``, ``|r| <= ln 2 / 2``, ``x`` clamped to the
    range where exp is neither 0 nor infinite."""
    real = type(x)
    if is_single(x):
        low, high = EXP_LIMITS_SINGLE
        ln2_high, ln2_low = real(LN2_HIGH_SINGLE), real(LN2_LOW_SINGLE)
    else:
        low, high = EXP_LIMITS
        ln2_high, ln2_low = real(LN2_HIGH), real(LN2_LOW)
    clamped = min(max(x, real(low)), real(high))
    # int64(), a cast: int() compiles an overload of its own on a first call.
    k = int64(clamped * real(INVERSE_LN2) + (real(0.5) if clamped >= 0 else real(-0.5)))
    # k as a float of x's precision: an int times a float32 would be a float64.
    multiple = real(k)
    r = (clamped - multiple * ln2_high) - multiple * ln2_low
    return k, expm1_reduced(r)


@njit_cached(fastmath=FASTMATH)
def exp(x):
    """``e ** x`` for a float32 or float64 ``x``, in its precision (within 2 ulp)."""
    k, part = reduce(x)
    result = scale(part + type(x)(1), k)
    return result if x == x else x


@njit_cached(fastmath=FASTMATH)
def expm1(x):
    """``e ** x - 1``, accurate for small ``|x|`` too (within 2 ulp)."""
    one = type(x)(1)
    k, part = reduce(x)
    # For k in -1, 0, 1, 2**k - 1 is exact: no cancellation between the halves of e**x - 1
    # (and for k = 0, the result is the series itself). Both are computed and one selected:
    # a branch would stop LLVM vectorising.
    power = scale(one, min(max(k, -1), 1))
    near = power * part + (power - one)
    far = scale(part + one, k) - one
    result = near if -1 <= k <= 1 else far
    # expm1 keeps the sign of x, zeros included.
    return math.copysign(result, x) if x == x else x


@njit_cached(fastmath=FASTMATH)
def tanh(x):
    """The hyperbolic tangent, ``expm1(2|x|) / (expm1(2|x|) + 2)`` with ``x``'s sign (3 ulp)."""
    real = type(x)
    # Beyond the saturation point the ratio rounds to exactly 1: clamping keeps expm1 finite.
    saturation = real(TANH_SATURATION_SINGLE if is_single(x) else TANH_SATURATION)
    grown = expm1(real(2) * min(abs(x), saturation))
    return math.copysign(divide(grown, grown + real(2)), x) if x == x else x


@njit_cached(fastmath=FASTMATH)
def sigmoid(x):
    """The logistic function ``1 / (1 + e ** -x)``, accurate in both tails (3 ulp)."""
    real = type(x)
    decay = exp(-abs(x))
    numerator = real(1) if x >= 0 else decay
    return divide(numerator, real(1) + decay)


@njit(inline="always")
def log_series(f):
    """``log(1 + f)`` for ``sqrt(1/2) <= 1 + f <= sqrt(2)``, by the series of ``2 atanh(s)``,
    ``s = f / (2 + f)``, written as ``f - (f^2/2 - s (f^2/2 + R))`` so that its rounding is
    that of a correction to ``f``."""
    real = type(f)
    s = divide(f, real(2) + f)
    z = s * s
    if is_single(f):
        tail = real(L6)
        for coefficient in (L5, L4, L3, L2, L1):
            tail = tail * z + real(coefficient)
    else:
        tail = real(L12)
        for coefficient in (L11, L10, L9, L8, L7, L6, L5, L4, L3, L2, L1):
            tail = tail * z + real(coefficient)
    half_square = real(0.5) * f * f
    return f - (half_square - s * (half_square + z * tail))


@njit_cached(fastmath=FASTMATH)
def log(x):
    """The natural logarithm, for a float32 or float64 ``x``, in its precision (within 2 ulp):
    ``x = 2^k m`` with ``m`` within ``sqrt(2)`` of 1, ``log x = k ln 2 + log m``; NaN below 0,
    ``-inf`` at 0 (either sign), ``inf`` at ``inf``."""
    real = type(x)
    if is_single(x):
        mantissa_bits, exponent_mask, bias, lift = 23, 0xFF, 127, 25
        ln2_high, ln2_low = real(LN2_HIGH_SINGLE), real(LN2_LOW_SINGLE)
    else:
        mantissa_bits, exponent_mask, bias, lift = 52, 0x7FF, 1023, 54
        ln2_high, ln2_low = real(LN2_HIGH), real(LN2_LOW)
    # Subnormals are lifted into the normal range first, and their exponent lowered to match.
    subnormal = x < real(2.0 ** (1 - bias))
    bits = bits_of(x * real(2.0**lift) if subnormal else x)
    exponent = ((bits >> mantissa_bits) & exponent_mask) - bias - (lift if subnormal else 0)
    fraction = bits & ((1 << mantissa_bits) - 1)
    mantissa = float_of_bits(x, fraction | (bias << mantissa_bits))  # in [1, 2)
    above = mantissa > real(SQRT2)
    mantissa = real(0.5) * mantissa if above else mantissa
    k = real(exponent + 1 if above else exponent)
    result = k * ln2_high + (log_series(mantissa - real(1)) + k * ln2_low)
    result = -real(math.inf) if x == 0 else result
    result = x if x == real(math.inf) else result
    # One select, not a branch around the work above (which stops LLVM vectorising).
    return result if x >= 0 else real(math.nan)


@njit_cached(fastmath=FASTMATH)
def log1p(x):
    """``log(1 + x)``, accurate for small ``|x|`` too (within 3 ulp): with ``u = 1 + x``
    rounded, ``log(u) x / (u - 1)`` (Goldberg's correction; ``x`` itself where ``u`` is 1).
    NaN below -1, ``-inf`` at -1, ``inf`` at ``inf``, the sign of a zero kept."""
    real = type(x)
    grown = real(1) + x
    step = grown - real(1)
    corrected = log(grown) * divide(x, step if step != 0 else real(1))
    result = x if step == 0 else corrected
    return x if x == real(math.inf) else result


@njit(inline="always")
def quadrant_value(quadrant, r, r_low):
    """``sin`` of ``quadrant pi/2 + r + r_low``, for ``|r| <= pi/4`` and ``|r_low|`` below an
    ulp of ``r``, in their precision: the sine's or the cosine's Taylor series. The cosine's
    ``1 - z/2`` is rounded first, its rounding error and the series' tail added to it (as
    fdlibm's kernel does)."""
    real = type(r)
    z = r * r
    if is_single(r):
        sine_tail = fused_multiply_add(real(S5), z, real(S4))
        cosine_tail = fused_multiply_add(real(Q5), z, real(Q4))
    else:
        sine_tail = fused_multiply_add(fused_multiply_add(real(S8), z, real(S7)), z, real(S6))
        sine_tail = fused_multiply_add(fused_multiply_add(sine_tail, z, real(S5)), z, real(S4))
        cosine_tail = fused_multiply_add(fused_multiply_add(real(Q8), z, real(Q7)), z, real(Q6))
        cosine_tail = fused_multiply_add(fused_multiply_add(cosine_tail, z, real(Q5)), z, real(Q4))
    sine_tail = fused_multiply_add(fused_multiply_add(sine_tail, z, real(S3)), z, real(S2))
    sine_tail = fused_multiply_add(sine_tail, z, real(S1))
    half = real(0.5) * z
    sine = r + fused_multiply_add(r * z, sine_tail, r_low * (real(1) - half))
    cosine_tail = fused_multiply_add(fused_multiply_add(cosine_tail, z, real(Q3)), z, real(Q2))
    head = real(1) - half
    correction = fused_multiply_add(z * z, cosine_tail, -r * r_low)
    cosine = head + (((real(1) - head) - half) + correction)
    value = cosine if quadrant & 1 else sine
    return -value if quadrant & 2 else value


@njit(inline="always")
def sine_in(x, table):
    """``sin x`` for a float32 or float64 ``x`` in its precision, ``table`` its precision's
    reduction table: :func:`quarter_turns` and :func:`quadrant_value`."""
    magnitude = abs(x)
    quadrant, r, r_low = quarter_turns(magnitude, table)
    value = quadrant_value(quadrant, r, r_low)
    result = -value if x < 0 else value
    tiny = type(x)(SINE_TINY_SINGLE if is_single(x) else SINE_TINY)
    result = x if magnitude < tiny else result
    return result if magnitude - magnitude == 0 else magnitude - magnitude


@njit(inline="always")
def cosine_in(x, table):
    """``cos x`` as :func:`sine_in`, the sine a quarter turn on."""
    magnitude = abs(x)
    quadrant, r, r_low = quarter_turns(magnitude, table)
    result = quadrant_value(quadrant + 1, r, r_low)
    tiny = type(x)(COSINE_TINY_SINGLE if is_single(x) else COSINE_TINY)
    result = type(x)(1) if magnitude < tiny else result
    return result if magnitude - magnitude == 0 else magnitude - magnitude


def inlined_subroutine(single, double):
    """An intrinsic that calls ``single`` on a float32 and ``double`` on a float64 (each from
    and to its type), compiled (without fast-math flags, whatever the caller's) as a subroutine
    that LLVM must inline on CPUs, into a caller that LLVM must inline in turn: :func:`sin` and
    :func:`cos`, which Numba caches on disk, so that a step calling them loads them compiled
    and LLVM vectorises its loop over them. Called without the marks, LLVM judged them too
    large to inline and such a loop stayed scalar (20 ns an element instead of 3); inlined by
    Numba, or compiled afresh in every process, they made each step calling them compile 0.2 to
    1 s longer."""

    @intrinsic
    def call(typingctx, x):
        if x not in (types.float32, types.float64):
            return None
        signature = x(x)
        implementation = single if x == types.float32 else double

        def codegen(context, builder, signature_, arguments):
            compiled = context.compile_subroutine(builder, implementation, signature)
            if isinstance(context, CPUContext):
                function = compiled.library.get_function(compiled.fndesc.llvm_func_name)
                function.add_function_attribute("alwaysinline")
                builder.function.attributes.add("alwaysinline")  # the caller, sin or cos
            return context.call_internal(builder, compiled.fndesc, signature, arguments)

        return signature, codegen

    return call


compiled_sine = inlined_subroutine(
    lambda x: sine_in(x, REDUCTION_TABLE_SINGLE), lambda x: sine_in(x, REDUCTION_TABLE)
)
compiled_cosine = inlined_subroutine(
    lambda x: cosine_in(x, REDUCTION_TABLE_SINGLE), lambda x: cosine_in(x, REDUCTION_TABLE)
)


@njit_cached()
def sin(x):
    """The sine, for a float32 or float64 ``x``, in its precision (within 1 ulp): ``x``
    reduced modulo ``pi/2`` exactly enough for every finite float (see
    :func:`scanlab._angle_reduction.quarter_turns`), then a Taylor series on
    ``[-pi/4, pi/4]``. NaN at NaN and the infinities; ``-0`` at ``-0``."""
    return compiled_sine(x)


@njit_cached()
def cos(x):
    """The cosine, for a float32 or float64 ``x``, in its precision (within 1 ulp), as
    :func:`sin` of a quarter turn more. NaN at NaN and the infinities."""
    return compiled_cosine(x)


def standard_exp(x):
    """``math.exp`` as a cell's step sees it (:func:`vectorising`): :func:`exp` for floats."""
    return math.exp(x)


def standard_expm1(x):
    """``math.expm1`` as a cell's step sees it (:func:`vectorising`): :func:`expm1` for floats."""
    return math.expm1(x)


def standard_log(x):
    """``math.log`` as a cell's step sees it (:func:`vectorising`): :func:`log` for floats."""
    return math.log(x)


def standard_log1p(x):
    """``math.log1p`` as a cell's step sees it: :func:`log1p` for floats."""
    return math.log1p(x)


def standard_sin(x):
    """``math.sin`` as a cell's step sees it (:func:`vectorising`): :func:`sin` for floats."""
    return math.sin(x)


def standard_cos(x):
    """``math.cos`` as a cell's step sees it (:func:`vectorising`): :func:`cos` for floats."""
    return math.cos(x)


def standard_tanh(x):
    """``math.tanh`` as a cell's step sees it (:func:`vectorising`): :func:`tanh` for floats."""
    return math.tanh(x)


#: The standard library's functions that a cell's step gets in this module's versions, which
#: take the float32 or float64 argument's own precision where ``math``'s compute in float64.
REPLACEMENTS = {
    math.exp: (standard_exp, exp),
    math.expm1: (standard_expm1, expm1),
    math.log: (standard_log, log),
    math.log1p: (standard_log1p, log1p),
    math.tanh: (standard_tanh, tanh),
    math.sin: (standard_sin, sin),
    math.cos: (standard_cos, cos),
}


#: Those replaced for float64 arguments only: in a float32 cell :func:`sin` was no faster than
#: the C library's ``sinf``, which is quick on small arguments (phase oscillators, 64 channels,
#: 2**15 steps: 6.1 ms against 5.3-5.8 ms, Zen 5), and costs compile time.
DOUBLE_ONLY = (math.sin, math.cos)


def replacement_typing(standard, own):
    """Type ``standard(x)``: ``own(x)`` for a float ``x`` (a float64 one for
    :data:`DOUBLE_ONLY`), the standard function otherwise."""
    double_only = standard in DOUBLE_ONLY

    def typing(x):
        if x == types.float64 or (isinstance(x, types.Float) and not double_only):
            return lambda x: own(x)
        return lambda x: standard(x)

    return typing


for _standard, (_shim, _own) in REPLACEMENTS.items():
    overload(_shim, target="generic", inline="always")(replacement_typing(_standard, _own))

#: ``math`` as a cell's step sees it: the same module but for :data:`REPLACEMENTS`.
MATH_FOR_CELLS = types_module.ModuleType("scanlab.math.for_cells", "math, as a step sees it")
MATH_FOR_CELLS.__file__ = __file__  # so that the cells' disk cache notices a change here
MATH_FOR_CELLS.__dict__.update(
    {name: getattr(math, name) for name in dir(math) if not name.startswith("__")}
)
MATH_FOR_CELLS.__dict__.update(
    {standard.__name__: shim for standard, (shim, _) in REPLACEMENTS.items()}
)


def vectorising(function):
    """``function`` (a cell's step or Jacobian, plain Python) with the ``math`` functions it
    calls (``math.tanh``, or ``tanh`` imported from ``math``) replaced by this module's, which
    LLVM vectorises (see :data:`REPLACEMENTS`); ``function`` itself if it calls none.

    The copy sees the module's globals as they are now (a function defined later in the module
    is not seen); ``scanlab.cell(..., exact_math=True)`` keeps the C library's functions.
    """
    namespace = function.__globals__
    replaced = {}
    for name in function.__code__.co_names:
        value = namespace.get(name)
        if value is math:
            replaced[name] = MATH_FOR_CELLS
        elif callable(value) and value in REPLACEMENTS:
            replaced[name] = REPLACEMENTS[value][0]
    return with_globals(function, replaced)


def with_globals(function, replaced: dict):
    """A copy of the Python ``function`` that sees ``replaced`` (name: value) in place of those
    of its globals; ``function`` itself if ``replaced`` is empty."""
    if not replaced:
        return function
    copy = types_module.FunctionType(
        function.__code__, {**function.__globals__, **replaced}, function.__name__,
        function.__defaults__, function.__closure__,
    )  # fmt: skip
    copy.__qualname__, copy.__module__ = function.__qualname__, function.__module__
    copy.__kwdefaults__, copy.__doc__ = function.__kwdefaults__, function.__doc__
    return copy


__all__ = ["cos", "exp", "expm1", "log", "log1p", "sigmoid", "sin", "tanh", "vectorising"]
