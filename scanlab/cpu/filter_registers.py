"""IIR filters of a few rows, each row's delays in registers: :mod:`scanlab.cpu.iir`'s filters
for fewer rows than a thread walks in lockstep (one long series, a stereo pair), in scipy's
arithmetic step for step.

The lockstep kernels keep their delays in memory, which is the right place for eight rows at
once; for one row, every step waits on a store and a load of the delay it just wrote, and the
filter ran 1.7x slower than scipy's own loop (order 4, 10 ns a step on AMD Zen 5, where scipy
takes 6). Here the delays are a tuple, which LLVM keeps in registers, and a step is the
multiply-adds between them: 2.2-3.5 ns a step, float32 and float64 alike. Complex filters
take the same steps with complex products written out (:func:`arithmetic`; 6.5 ns a step at
order 4, scipy's 15.5, the lockstep kernel's 52).

A tuple's length is part of the kernel's type, so the delays come in a few sizes (powers of
two, :func:`register_count`), each compiled once: a filter of order 3 runs in four delays, the
last one's arithmetic done and never used. Selects on the filter's true order keep the padding
out of the true delays: scipy's results bit for bit, NaN and Inf included (complex ones where
finite: at an infinite complex sample the textbook product gives inf + infj where scipy's
complex path gives nan + nanj, as the lockstep kernels do). A direct form of
order above ``MAX_DELAYS`` keeps the lockstep kernel (high orders belong in sections).

A cascade of more sections advances them together in vector lanes instead
(:mod:`scanlab.cpu.filter_wavefront`).
"""

from llvmlite import ir
from numba import types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from scanlab._kernel_cache import njit_cached
from scanlab.cpu import atomics

#: The largest order of a direct form that the register kernels take (a cascade, any length).
MAX_DELAYS = 8


def register_count(size: int) -> int:
    """The number of delays or sections a filter of ``size`` of them runs in: the power of two
    at or above it."""
    return 1 << (size - 1).bit_length()


def index_constant(context, value: int):
    """``value`` as an LLVM constant of Numba's index type."""
    return context.get_constant(types.intp, value)


def arithmetic(context, builder, dtype) -> tuple:
    """``(add, subtract, multiply)`` of two LLVM values of the Numba scalar ``dtype``: IEEE
    operations, complex products the textbook ``(ac - bd) + (ad + bc)i`` (scipy's: its results
    bit for bit). Written out here rather than taken from Numba's operators: Numba reuses its
    compiled complex operators across kernels, and one compiled first for a kernel with
    contracted multiply-adds carried them into every kernel compiled after it."""
    if isinstance(dtype, types.Float):
        return builder.fadd, builder.fsub, builder.fmul
    complex_type = context.get_value_type(dtype)

    def parts(value):
        return builder.extract_value(value, 0), builder.extract_value(value, 1)

    def joined(real, imaginary):
        value = builder.insert_value(ir.Constant(complex_type, ir.Undefined), real, 0)
        return builder.insert_value(value, imaginary, 1)

    def add(x, y):
        (a, b), (c, d) = parts(x), parts(y)
        return joined(builder.fadd(a, c), builder.fadd(b, d))

    def subtract(x, y):
        (a, b), (c, d) = parts(x), parts(y)
        return joined(builder.fsub(a, c), builder.fsub(b, d))

    def multiply(x, y):
        return joined(*textbook_product(builder, parts(x), parts(y)))

    return add, subtract, multiply


def textbook_product(builder, x: tuple, y: tuple) -> tuple:
    """``(real, imaginary)`` of the product of ``x = (a, b)`` and ``y = (c, d)`` (LLVM values,
    scalars or vectors of parts): ``(ac - bd, ad + bc)``, scipy's complex product."""
    (a, b), (c, d) = x, y
    real = builder.fsub(builder.fmul(a, c), builder.fmul(b, d))
    return real, builder.fadd(builder.fmul(a, d), builder.fmul(b, c))


def check_scalars(name: str, z, sample) -> None:
    """A TypeError unless the delays ``z`` and ``sample`` share a float or complex dtype."""
    if not isinstance(z.dtype, (types.Float, types.Complex)) or sample != z.dtype:
        raise TypeError(f"{name} needs float or complex delays and sample alike: {z}, {sample}")


def loaded_delays(context, builder, signature, args, size: int) -> list:
    """The values of ``state[row, :count]`` followed by zeros up to ``size`` (``args``:
    state, row, count)."""
    array_type = signature.args[0]
    state = context.make_array(array_type)(context, builder, args[0])
    row, count = (context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2))
    last = builder.sub(count, index_constant(context, 1))
    zero = context.get_constant(array_type.dtype, 0)
    values = []
    for i in range(size):
        inside = builder.icmp_signed("<", index_constant(context, i), count)
        column = builder.select(inside, index_constant(context, i), last)
        pointer = cgutils.get_item_pointer(context, builder, array_type, state, [row, column])
        values.append(builder.select(inside, builder.load(pointer), zero))
    return values


def delay_loader(delays_for):
    """An intrinsic ``(state, row, count, coefficients)``: ``state[row, :count]`` as a tuple of
    ``delays_for(len(coefficients))`` delays (the filter's tuple of coefficients sets how
    many), zeros past ``count``."""

    @intrinsic
    def load(typingctx, state, row, count, coefficients):
        delays = types.UniTuple(state.dtype, delays_for(coefficients.count))

        def codegen(context, builder, signature, args):
            values = loaded_delays(context, builder, signature, args, delays.count)
            return context.make_tuple(builder, delays, values)

        return delays(state, row, count, coefficients), codegen

    return load


#: The delays of a direct form, ``(state, row, order, a)``: one fewer than ``a``'s coefficients.
direct_form_delays = delay_loader(lambda coefficients: coefficients - 1)
#: The delays of a cascade, ``(state, row, count, sos)``: two a section of the flat ``sos``
#: (six coefficients a section).
cascade_delays = delay_loader(lambda coefficients: coefficients // 3)


@intrinsic
def store_delays(typingctx, z, state, row, count):
    """``state[row, :count] = z[:count]``."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[1]
        state = context.make_array(array_type)(context, builder, args[1])
        row, count = (context.cast(builder, args[k], signature.args[k], types.intp) for k in (2, 3))
        for i in range(z.count):
            position = index_constant(context, i)
            with builder.if_then(builder.icmp_signed("<", position, count)):
                indices = [row, position]
                pointer = cgutils.get_item_pointer(context, builder, array_type, state, indices)
                builder.store(builder.extract_value(args[0], i), pointer)
        return context.get_dummy_value()

    return types.void(z, state, row, count), codegen


@intrinsic
def direct_form_register_step(typingctx, z, b, a, order, sample):
    """``(output, delays)``: one step of the transposed direct form II (``b``, ``a`` normalised,
    ``len(z) + 1`` coefficients, zeros past ``order + 1``) from the delays ``z``, as scipy's
    loop computes it::

        output = z[0] + b[0] sample
        z[i] = z[i + 1] + sample b[i + 1] - output a[i + 1]   (i < order - 1)
        z[order - 1] = sample b[order] - output a[order]
    """
    check_scalars("direct_form_register_step", z, sample)
    result = types.Tuple((z.dtype, z))

    def codegen(context, builder, signature, args):
        delays, b_values, a_values, order_value, x = args
        order_value = context.cast(builder, order_value, signature.args[3], types.intp)
        z_values = [builder.extract_value(delays, i) for i in range(z.count)]
        b_values = [builder.extract_value(b_values, i) for i in range(z.count + 1)]
        a_values = [builder.extract_value(a_values, i) for i in range(z.count + 1)]
        add, subtract, multiply = arithmetic(context, builder, z.dtype)
        output = add(z_values[0], multiply(b_values[0], x))
        updated = delays
        for i in range(z.count):
            forward = multiply(x, b_values[i + 1])
            feedback = multiply(output, a_values[i + 1])
            value = subtract(forward, feedback)
            if i + 1 < z.count:
                through = subtract(add(z_values[i + 1], forward), feedback)
                inner = builder.icmp_signed("<", index_constant(context, i + 1), order_value)
                value = builder.select(inner, through, value)
            updated = builder.insert_value(updated, value, i)
        return context.make_tuple(builder, result, [output, updated])

    return result(z, b, a, order, sample), codegen


@intrinsic
def cascade_register_step(typingctx, z, sos, sections, sample):
    """``(output, delays)``: one step of the second-order sections ``sos`` (flat, six
    coefficients ``b0 b1 b2 1 a1 a2`` a section, ``len(z) // 2`` sections of which the first
    ``sections`` are the filter's) in cascade from the delays ``z`` (two a section), as scipy's
    loop computes each::

        output = b0 sample + z[0]
        z[0] = b1 sample - a1 output + z[1]
        z[1] = b2 sample - a2 output

    the output of the last true section returned."""
    check_scalars("cascade_register_step", z, sample)
    result = types.Tuple((z.dtype, z))

    def codegen(context, builder, signature, args):
        delays, coefficients, sections_value, current = args
        sections_value = context.cast(builder, sections_value, signature.args[2], types.intp)
        add, subtract, multiply = arithmetic(context, builder, z.dtype)
        updated, output = delays, None
        for s in range(z.count // 2):
            b0, b1, b2, _, a1, a2 = (
                builder.extract_value(coefficients, 6 * s + i) for i in range(6)
            )
            first, second = (builder.extract_value(delays, 2 * s + i) for i in range(2))
            filtered = add(multiply(b0, current), first)
            forward = subtract(multiply(b1, current), multiply(a1, filtered))
            updated = builder.insert_value(updated, add(forward, second), 2 * s)
            last = subtract(multiply(b2, current), multiply(a2, filtered))
            updated = builder.insert_value(updated, last, 2 * s + 1)
            if output is None:
                output = filtered
            else:
                true = builder.icmp_signed("<", index_constant(context, s), sections_value)
                output = builder.select(true, filtered, output)
            current = filtered
        return context.make_tuple(builder, result, [output, updated])

    return result(z, sos, sections, sample), codegen


@njit_cached(nogil=True)
def lfilter_registers(counter, b, a, order, x, out, layout, state):
    """Filter each row of ``x`` by ``b``, ``a`` (normalised, of order ``order``, tuples of
    ``register_count(order) + 1`` values in ``x``'s dtype: zeros past ``order + 1``) from
    ``state`` (``(D, order)``, overwritten with the final delays) into ``out``. ``x`` and
    ``out`` are flat; ``layout`` is ``(D, T, x's row step, x's time step, out's row step,
    out's time step)`` in elements (rows of a C array, or the channels of a time-major one as
    they lie). Rows from ``counter`` (:func:`scanlab.cpu.threads.share_out`)."""
    rows, length, x_row, x_time, out_row, out_time = layout
    row = atomics.fetch_add(counter, 0, 1)
    while row < rows:
        z = direct_form_delays(state, row, order, a)
        sample, filtered = uint64(row * x_row), uint64(row * out_row)
        for _ in range(length):
            output, z = direct_form_register_step(z, b, a, order, x[sample])
            out[filtered] = output
            sample, filtered = sample + uint64(x_time), filtered + uint64(out_time)
        store_delays(z, state, row, order)
        row = atomics.fetch_add(counter, 0, 1)


@njit_cached(nogil=True)
def sosfilt_registers(counter, sos, sections, x, out, layout, state):
    """Filter each row of ``x`` through ``sections`` second-order sections ``sos`` (a flat
    tuple of ``6 register_count(sections)`` values in ``x``'s dtype: zeros past the true
    sections'), one after the other at each step, in cascade, from ``state`` (``(D, 2
    sections)``, overwritten with the final delays) into ``out``; ``x``, ``out`` and ``layout``
    as for :func:`lfilter_registers`. For the few sections whose step is cheaper so than in
    vector lanes (:func:`scanlab.cpu.filter_wavefront.sosfilt_wavefront`)."""
    rows, length, x_row, x_time, out_row, out_time = layout
    row = atomics.fetch_add(counter, 0, 1)
    while row < rows:
        z = cascade_delays(state, row, 2 * sections, sos)
        sample, filtered = uint64(row * x_row), uint64(row * out_row)
        for _ in range(length):
            output, z = cascade_register_step(z, sos, sections, x[sample])
            out[filtered] = output
            sample, filtered = sample + uint64(x_time), filtered + uint64(out_time)
        store_delays(z, state, row, 2 * sections)
        row = atomics.fetch_add(counter, 0, 1)
