"""IEEE 754 arithmetic that Python cannot say and Numba does not offer, as LLVM intrinsics
(exact on CPUs and GPUs alike): powers of two and floats from their bits, a division without
Python's zero check, a fused multiply-add, rounding to an integer, error-free sums. Used by
:mod:`scanlab.math`, :mod:`scanlab._angle_reduction` and :mod:`scanlab._scaled_products`.
"""

from llvmlite import ir
from numba import njit, types
from numba.core.cpu import CPUContext
from numba.extending import intrinsic


@intrinsic
def power_of_two(typingctx, like, exponent):
    """``2.0 ** exponent`` in the type of ``like``, for a normal result, built from its bits."""
    if not isinstance(like, types.Float) or not isinstance(exponent, types.Integer):
        return None
    single = like.bitwidth == 32

    def codegen(context, builder, signature, arguments):
        integer = context.get_value_type(types.int32 if single else types.int64)
        power = builder.sext(arguments[1], context.get_value_type(types.int64))
        power = builder.trunc(power, integer) if single else power
        bias, shift = (127, 23) if single else (1023, 52)
        bits = builder.shl(builder.add(power, integer(bias)), integer(shift))
        return builder.bitcast(bits, context.get_value_type(like))

    return like(like, exponent), codegen


@intrinsic
def divide(typingctx, numerator, denominator):
    """``numerator / denominator`` as IEEE 754 says, without Python's zero-division check.

    Under Numba's default (Python) error model, ``/`` tests for a zero divisor, and that branch
    stops LLVM vectorising the caller's loop.
    """
    if not isinstance(numerator, types.Float) or numerator != denominator:
        return None

    def codegen(context, builder, signature, arguments):
        return builder.fdiv(*arguments)

    return numerator(numerator, denominator), codegen


@intrinsic
def bits_of(typingctx, x):
    """The IEEE 754 bits of the float ``x``, as a signed integer of its width."""
    if not isinstance(x, types.Float):
        return None
    integer = types.int32 if x.bitwidth == 32 else types.int64

    def codegen(context, builder, signature, arguments):
        return builder.bitcast(arguments[0], context.get_value_type(integer))

    return integer(x), codegen


@intrinsic
def float_of_bits(typingctx, like, bits):
    """The float of ``like``'s type whose IEEE 754 bits are the low bits of the integer
    ``bits``."""
    if not isinstance(like, types.Float) or not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, arguments):
        width = context.get_value_type(types.int32 if like.bitwidth == 32 else types.int64)
        value = arguments[1]
        if bits.bitwidth > like.bitwidth:
            value = builder.trunc(value, width)
        elif bits.bitwidth < like.bitwidth:
            value = builder.sext(value, width)
        return builder.bitcast(value, context.get_value_type(like))

    return like(like, bits), codegen


@intrinsic
def is_single(typingctx, x):
    """Whether the float ``x`` is float32, a constant. Any other type fails to type here, at
    the top of the functions below, before what they call compiles: a cell's complex-step
    probe (see :meth:`scanlab.cells.Cell.plan`) of a step that calls them fails in 0.06 s, in
    every process (a failed compilation is not cached)."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, arguments):
        return context.get_constant(types.boolean, x.bitwidth == 32)

    return types.boolean(x), codegen


#: The float types the intrinsics below take.
FLOATS = (types.float32, types.float64)


@intrinsic
def fused_multiply_add(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``fma``), for float32 or float64 arguments of one
    type."""
    if not (a == b == c and a in FLOATS):
        return None

    def codegen(context, builder, signature, arguments):
        real = context.get_value_type(a)
        fma_type = ir.FunctionType(real, [real] * 3)
        function = builder.module.declare_intrinsic("llvm.fma", [real], fma_type)
        return builder.call(function, arguments)

    return a(a, b, c), codegen


def nearest_integer(context, builder, value):
    """LLVM IR for the float ``value`` rounded to the nearest integer, ties to even: LLVM's
    ``rint`` on CPUs; on GPUs (whose NVVM lacks it) ``(|x| + 2^p) - 2^p`` with ``x``'s sign
    (``p`` the precision's mantissa bits), ``x`` itself from ``2^p`` up (an integer already)."""
    real = value.type
    if isinstance(context, CPUContext):
        function = builder.module.declare_intrinsic(
            "llvm.rint", [real], ir.FunctionType(real, [real])
        )
        return builder.call(function, [value])
    # -0.0 - v, not fneg, which NVVM's older IR does not know.
    mantissa_bits = 23 if isinstance(real, ir.FloatType) else 52
    shift, negative_zero = real(2.0**mantissa_bits), real(-0.0)
    negative = builder.fcmp_ordered("<", value, real(0.0))
    magnitude = builder.select(negative, builder.fsub(negative_zero, value), value)
    rounded = builder.fsub(builder.fadd(magnitude, shift), shift)
    signed = builder.select(negative, builder.fsub(negative_zero, rounded), rounded)
    integral = builder.fcmp_ordered(">=", magnitude, shift)
    return builder.select(integral, value, signed)


@intrinsic
def round_to_integer(typingctx, x):
    """``x`` rounded to the nearest integer, ties to even, in its type (float32 or float64)."""
    if x not in FLOATS:
        return None

    def codegen(context, builder, signature, arguments):
        return nearest_integer(context, builder, arguments[0])

    return x(x), codegen


# The exact sums below are LLVM IR without fast-math flags, which a caller compiled with
# reassociation cannot simplify away (and Numba compiles them without inlining passes).
@intrinsic
def two_sum(typingctx, a, b):
    """``(s, e)``: ``s = a + b`` rounded and ``s + e = a + b`` exactly (Knuth), for float32
    or float64 arguments of one type."""
    if not (a == b and a in FLOATS):
        return None
    pair = types.UniTuple(a, 2)

    def codegen(context, builder, signature, arguments):
        first, second = arguments
        total = builder.fadd(first, second)
        part = builder.fsub(total, first)
        error = builder.fadd(
            builder.fsub(first, builder.fsub(total, part)), builder.fsub(second, part)
        )
        return context.make_tuple(builder, pair, [total, error])

    return pair(a, b), codegen


@intrinsic
def less_integer(typingctx, x):
    """``(x - n, n)`` for the integer ``n`` nearest the float ``x``; the difference is
    exact."""
    if x not in FLOATS:
        return None
    pair = types.UniTuple(x, 2)

    def codegen(context, builder, signature, arguments):
        nearest = nearest_integer(context, builder, arguments[0])
        return context.make_tuple(builder, pair, [builder.fsub(arguments[0], nearest), nearest])

    return pair(x), codegen


@njit(inline="always")
def scale(value, exponent):
    """``value * 2.0 ** exponent`` for ``|exponent|`` up to twice the normal exponent range."""
    first = exponent >> 1
    return value * power_of_two(value, first) * power_of_two(value, exponent - first)


__all__ = [
    "bits_of", "divide", "float_of_bits", "fused_multiply_add", "is_single", "less_integer",
    "power_of_two", "round_to_integer", "scale", "two_sum",
]  # fmt: skip
