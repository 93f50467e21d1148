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

A cascade's sections one after the other cost one section's latency each (3 and 4 sections
4.2 ns a step, 8 of them, four at a time, 8.6; scipy's 5.4-9.9), so a cascade of 3 sections or
more (2 when complex) advances its sections together instead, one a lane of a vector
(:func:`cascade_wavefront`: at each step lane ``s`` filters sample ``t - s``, the output of
lane ``s - 1`` at the step before): 3.0-3.2 ns a step for 3 to 8 sections with AVX-512 (8
lanes of float64; with AVX2, 4 lanes, 3.4 ns a group of 4), more sections a group of lanes at a
time over blocks of steps (12 sections 6.4 ns). Complex lanes keep their real and imaginary
parts in two vectors: 2 to 8 complex sections 4.5-5.4 ns a step (in turn 8.3-15.3, scipy's
9.3-19.8).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from scanlab.cpu import atomics
from scanlab.cpu.vector_ir import VECTOR_BYTES

#: The largest order of a direct form that the register kernels take; a cascade of any length
#: is taken ``MAX_DELAYS // 2`` sections at a time.
MAX_DELAYS = 8
#: Steps of a row that each group of sections filters in turn (:func:`sosfilt_registers`).
BLOCK_STEPS = 256
#: Sections that :func:`cascade_wavefront` advances together, one a lane: a vector register of
#: float64 (8 with AVX-512, 4 with AVX2, where the wavefront is not used).
WAVE_LANES = max(4, VECTOR_BYTES // 8)


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
        (a, b), (c, d) = parts(x), parts(y)
        real = builder.fsub(builder.fmul(a, c), builder.fmul(b, d))
        return joined(real, builder.fadd(builder.fmul(a, d), builder.fmul(b, c)))

    return add, subtract, multiply


def check_scalars(name: str, z, sample) -> None:
    """A TypeError unless the delays ``z`` and ``sample`` share a float or complex dtype."""
    if not isinstance(z.dtype, (types.Float, types.Complex)) or sample != z.dtype:
        raise TypeError(f"{name} needs float or complex delays and sample alike: {z}, {sample}")


def loaded_delays(context, builder, signature, args, size: int) -> list:
    """The values of ``state[row, first : first + count]`` followed by zeros up to ``size``
    (``args``: state, row, first, count)."""
    array_type = signature.args[0]
    state = context.make_array(array_type)(context, builder, args[0])
    row, first, count = (
        context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2, 3)
    )
    last = builder.sub(count, index_constant(context, 1))
    zero = context.get_constant(array_type.dtype, 0)
    values = []
    for i in range(size):
        inside = builder.icmp_signed("<", index_constant(context, i), count)
        column = builder.add(first, builder.select(inside, index_constant(context, i), last))
        pointer = cgutils.get_item_pointer(context, builder, array_type, state, [row, column])
        values.append(builder.select(inside, builder.load(pointer), zero))
    return values


@intrinsic
def direct_form_delays(typingctx, state, row, first, order, a):
    """``state[row, first : first + order]`` as a tuple of ``len(a) - 1`` delays, zeros past
    ``order``."""
    delays = types.UniTuple(state.dtype, a.count - 1)

    def codegen(context, builder, signature, args):
        values = loaded_delays(context, builder, signature, args, delays.count)
        return context.make_tuple(builder, delays, values)

    return delays(state, row, first, order, a), codegen


@intrinsic
def cascade_delays(typingctx, state, row, first, count, sos):
    """``state[row, first : first + count]`` as a tuple of two delays per section of ``sos``
    (flat, six coefficients a section), zeros past ``count``."""
    delays = types.UniTuple(state.dtype, sos.count // 3)

    def codegen(context, builder, signature, args):
        values = loaded_delays(context, builder, signature, args, delays.count)
        return context.make_tuple(builder, delays, values)

    return delays(state, row, first, count, sos), codegen


@intrinsic
def store_delays(typingctx, z, state, row, first, count):
    """``state[row, first : first + count] = z[:count]``."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[1]
        state = context.make_array(array_type)(context, builder, args[1])
        row, first, count = (
            context.cast(builder, args[k], signature.args[k], types.intp) for k in (2, 3, 4)
        )
        for i in range(z.count):
            position = index_constant(context, i)
            with builder.if_then(builder.icmp_signed("<", position, count)):
                indices = [row, builder.add(first, position)]
                pointer = cgutils.get_item_pointer(context, builder, array_type, state, indices)
                builder.store(builder.extract_value(args[0], i), pointer)
        return context.get_dummy_value()

    return types.void(z, state, row, first, count), codegen


@intrinsic
def group_coefficients(typingctx, sos, first, like):
    """``sos[6 first : 6 first + len(like)]`` (``sos`` flat, six coefficients a section) as a
    tuple of ``like``'s type."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        first = context.cast(builder, args[1], signature.args[1], types.intp)
        start = builder.mul(first, index_constant(context, 6))
        values = []
        for i in range(like.count):
            index = builder.add(start, index_constant(context, i))
            pointer = cgutils.get_item_pointer(context, builder, array_type, array, [index])
            values.append(builder.load(pointer))
        return context.make_tuple(builder, like, values)

    return like(sos, first, like), codegen


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


def splat_index(builder, value):
    """``value`` (an LLVM index) in every one of ``WAVE_LANES`` lanes."""
    lanes = ir.VectorType(value.type, WAVE_LANES)
    single = builder.insert_element(ir.Constant(lanes, ir.Undefined), value, ir.IntType(32)(0))
    return builder.shuffle_vector(single, single, ir.Constant(lanes_of(32), [0] * WAVE_LANES))


def lanes_of(bits: int):
    """The LLVM vector type of ``WAVE_LANES`` integers of ``bits`` bits."""
    return ir.VectorType(ir.IntType(bits), WAVE_LANES)


class WaveLanes:
    """``WAVE_LANES`` lanes of a float or complex dtype in LLVM IR for
    :func:`cascade_wavefront`: a list of vectors of the ``component`` float, one for a float
    dtype, the real and the imaginary parts for a complex one (the products the textbook
    ``(ac - bd) + (ad + bc)i``, as :func:`arithmetic`'s)."""

    def __init__(self, context, builder, component, complex_parts: bool):
        self.builder = builder
        self.vector = ir.VectorType(context.get_data_type(component), WAVE_LANES)
        self.parts = 2 if complex_parts else 1

    def zeros(self) -> list:
        return [ir.Constant(self.vector, None)] * self.parts

    def scalar_parts(self, value) -> list:
        """A scalar of the dtype as its parts."""
        if self.parts == 1:
            return [value]
        return [self.builder.extract_value(value, k) for k in range(2)]

    def scalar_or_zero(self, condition, value):
        """``value`` where ``condition``, else zero (a scalar of the dtype)."""
        return self.builder.select(condition, value, ir.Constant(value.type, None))

    def inserted(self, values: list, scalar, lane: int) -> list:
        lane = ir.IntType(32)(lane)
        parts = self.scalar_parts(scalar)
        return [self.builder.insert_element(v, p, lane) for v, p in zip(values, parts, strict=True)]

    def extracted(self, values: list, lane, scalar_type):
        """The scalar (of LLVM type ``scalar_type``) in lane ``lane`` (an LLVM index)."""
        parts = [self.builder.extract_element(v, lane) for v in values]
        if self.parts == 1:
            return parts[0]
        scalar = ir.Constant(scalar_type, ir.Undefined)
        for k, part in enumerate(parts):
            scalar = self.builder.insert_value(scalar, part, k)
        return scalar

    def shifted(self, values: list, entering) -> list:
        """Lane ``s`` takes lane ``s - 1``'s value, lane 0 the scalar ``entering``."""
        order = ir.Constant(lanes_of(32), [WAVE_LANES] + list(range(WAVE_LANES - 1)))
        result = []
        for v, p in zip(values, self.scalar_parts(entering), strict=True):
            incoming = self.builder.insert_element(
                ir.Constant(self.vector, None), p, ir.IntType(32)(0)
            )
            result.append(self.builder.shuffle_vector(v, incoming, order))
        return result

    def stored(self, values: list) -> list:
        """New stack slots holding ``values`` (promoted to registers by LLVM)."""
        return [cgutils.alloca_once_value(self.builder, v) for v in values]

    def loaded(self, slots: list) -> list:
        return [self.builder.load(slot) for slot in slots]

    def store(self, values: list, slots: list) -> None:
        for v, slot in zip(values, slots, strict=True):
            self.builder.store(v, slot)

    def selected(self, condition, chosen: list, other: list) -> list:
        return [self.builder.select(condition, c, o) for c, o in zip(chosen, other, strict=True)]

    def add(self, x: list, y: list) -> list:
        return [self.builder.fadd(a, b) for a, b in zip(x, y, strict=True)]

    def subtract(self, x: list, y: list) -> list:
        return [self.builder.fsub(a, b) for a, b in zip(x, y, strict=True)]

    def multiply(self, x: list, y: list) -> list:
        builder = self.builder
        if self.parts == 1:
            return [builder.fmul(x[0], y[0])]
        (a, b), (c, d) = x, y
        real = builder.fsub(builder.fmul(a, c), builder.fmul(b, d))
        return [real, builder.fadd(builder.fmul(a, d), builder.fmul(b, c))]


@intrinsic
def cascade_wavefront(typingctx, sos, first, sections, x, x_start, x_step, length, out,
                      out_start, out_step, state, row):  # fmt: skip
    """Filter ``length`` samples of ``x`` (from ``x_start``, every ``x_step``) through the
    ``sections`` second-order sections of ``sos`` from section ``first`` (flat, six
    coefficients a section, ``WAVE_LANES`` sections from ``first`` on, zeros after the true
    ones) into ``out`` (from ``out_start``, every ``out_step``; ``out`` may be ``x`` itself,
    its writes trail its reads), from and back to their delays in ``state[row]`` (two a
    section).

    Each section is a lane of one vector: at step ``t`` lane ``s`` filters sample ``t - s``,
    the output its left neighbour gave at the step before, so that all sections advance at once
    and a step costs one section's latency, not ``sections`` of them. Lanes outside their
    samples (the first and the last ``sections - 1`` steps) keep their delays. Each lane does a
    section's arithmetic in scipy's order: scipy's results bit for bit. Complex lanes keep
    their real and imaginary parts in two vectors (:class:`WaveLanes`)."""
    dtype = x.dtype
    if not isinstance(dtype, (types.Float, types.Complex)) or not sos.dtype == state.dtype == dtype:
        raise TypeError(f"cascade_wavefront needs one float or complex dtype: {sos}, {x}, {state}")
    complex_parts = isinstance(dtype, types.Complex)
    component = dtype.underlying_float if complex_parts else dtype

    def codegen(context, builder, signature, args):
        arrays = {
            k: context.make_array(signature.args[k])(context, builder, args[k])
            for k in (0, 3, 7, 10)
        }
        index = {
            k: context.cast(builder, args[k], signature.args[k], types.intp)
            for k in (1, 2, 4, 5, 6, 8, 9, 11)
        }
        first, sections, x_start, x_step, length = (index[k] for k in (1, 2, 4, 5, 6))
        out_start, out_step, row = index[8], index[9], index[11]
        lanes = WaveLanes(context, builder, component, complex_parts)
        intp = context.get_value_type(types.intp)

        def pointer(k, indices):
            return cgutils.get_item_pointer(context, builder, signature.args[k], arrays[k], indices)

        def coefficient(column):
            values = lanes.zeros()
            for lane in range(WAVE_LANES):
                position = builder.add(builder.mul(first, intp(6)), intp(6 * lane + column))
                values = lanes.inserted(values, builder.load(pointer(0, [position])), lane)
            return values

        b0, b1, b2, a1, a2 = (coefficient(column) for column in (0, 1, 2, 4, 5))
        delays = []
        for column in (0, 1):
            values = lanes.zeros()
            for lane in range(WAVE_LANES):
                inside = builder.icmp_signed("<", intp(lane), sections)
                lane_delay = builder.select(inside, intp(2 * lane + column), intp(column))
                position = builder.add(builder.mul(first, intp(2)), lane_delay)
                value = lanes.scalar_or_zero(inside, builder.load(pointer(10, [row, position])))
                values = lanes.inserted(values, value, lane)
            delays.append(lanes.stored(values))
        previous = lanes.stored(lanes.zeros())
        lane_numbers = ir.Constant(lanes_of(64), list(range(WAVE_LANES)))
        last = builder.sub(sections, intp(1))

        def step(t, masked):
            inside = builder.icmp_signed("<", t, length)
            sample_index = builder.add(
                x_start, builder.mul(builder.select(inside, t, intp(0)), x_step)
            )
            sample = lanes.scalar_or_zero(inside, builder.load(pointer(3, [sample_index])))
            current = lanes.shifted(lanes.loaded(previous), sample)
            first, second = (lanes.loaded(delay) for delay in delays)
            filtered = lanes.add(lanes.multiply(b0, current), first)
            forward = lanes.subtract(lanes.multiply(b1, current), lanes.multiply(a1, filtered))
            new_first = lanes.add(forward, second)
            new_second = lanes.subtract(lanes.multiply(b2, current), lanes.multiply(a2, filtered))
            if masked:  # lane s filters sample t - s where 0 <= t - s < length
                behind = builder.sub(splat_index(builder, t), lane_numbers)
                active = builder.and_(
                    builder.icmp_signed(">=", behind, ir.Constant(lanes_of(64), None)),
                    builder.icmp_signed("<", behind, splat_index(builder, length)),
                )
                new_first = lanes.selected(active, new_first, first)
                new_second = lanes.selected(active, new_second, second)
            lanes.store(new_first, delays[0])
            lanes.store(new_second, delays[1])
            lanes.store(filtered, previous)
            with builder.if_then(builder.icmp_signed(">=", t, last)):
                output = lanes.extracted(filtered, last, context.get_value_type(dtype))
                position = builder.add(out_start, builder.mul(builder.sub(t, last), out_step))
                builder.store(output, pointer(7, [position]))

        # Masked while the sections fill (the first sections - 1 steps) and drain (the last).
        filling = builder.select(builder.icmp_signed("<", last, length), last, length)
        with cgutils.for_range(builder, filling) as loop:
            step(loop.index, True)
        with cgutils.for_range_slice(builder, filling, length, intp(1)) as (t, _):
            step(t, False)
        with cgutils.for_range_slice(builder, length, builder.add(length, last), intp(1)) as (t, _):
            step(t, True)
        for column, delay in enumerate(delays):
            values = lanes.loaded(delay)
            for lane in range(WAVE_LANES):
                with builder.if_then(builder.icmp_signed("<", intp(lane), sections)):
                    value = lanes.extracted(values, intp(lane), context.get_value_type(dtype))
                    position = builder.add(builder.mul(first, intp(2)), intp(2 * lane + column))
                    builder.store(value, pointer(10, [row, position]))
        return context.get_dummy_value()

    arguments = (sos, first, sections, x, x_start, x_step, length, out, out_start, out_step)
    return types.void(*arguments, state, row), codegen


@njit(cache=True, nogil=True)
def sosfilt_wavefront(counter, sos, sections, x, out, layout, state):
    """:func:`sosfilt_registers` with ``WAVE_LANES`` sections advanced together
    (:func:`cascade_wavefront`; ``sos`` flat, zeros up to a whole number of ``WAVE_LANES``
    sections); more sections than that take turns over blocks of ``BLOCK_STEPS`` steps, the
    blocks passed between them in the L1 cache."""
    rows, length, x_row, x_time, out_row, out_time = layout
    groups = (sections + WAVE_LANES - 1) // WAVE_LANES
    block = np.empty(min(BLOCK_STEPS, length) if groups > 1 else 0, out.dtype)
    row = atomics.fetch_add(counter, 0, 1)
    while row < rows:
        x_start, out_start = row * x_row, row * out_row
        if groups == 1:
            cascade_wavefront(
                sos, 0, sections, x, x_start, x_time, length, out, out_start, out_time, state, row
            )
        for start in range(0, length if groups > 1 else 0, BLOCK_STEPS):
            steps = min(BLOCK_STEPS, length - start)
            taken, given = x_start + start * x_time, out_start + start * out_time
            for g in range(groups):
                first = g * WAVE_LANES
                count = min(WAVE_LANES, sections - first)
                if g == 0:
                    cascade_wavefront(
                        sos, first, count, x, taken, x_time, steps, block, 0, 1, state, row
                    )
                elif g < groups - 1:
                    cascade_wavefront(
                        sos, first, count, block, 0, 1, steps, block, 0, 1, state, row
                    )
                else:
                    cascade_wavefront(
                        sos, first, count, block, 0, 1, steps, out, given, out_time, state, row
                    )
        row = atomics.fetch_add(counter, 0, 1)


@njit(cache=True, nogil=True)
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
        z = direct_form_delays(state, row, 0, order, a)
        sample, filtered = uint64(row * x_row), uint64(row * out_row)
        for _ in range(length):
            output, z = direct_form_register_step(z, b, a, order, x[sample])
            out[filtered] = output
            sample, filtered = sample + uint64(x_time), filtered + uint64(out_time)
        store_delays(z, state, row, 0, order)
        row = atomics.fetch_add(counter, 0, 1)


@njit(cache=True, nogil=True)
def sosfilt_registers(counter, sos, group, sections, x, out, layout, state):
    """Filter each row of ``x`` through the ``sections`` second-order sections ``sos`` (flat,
    six coefficients a section, zeros after the last up to a whole number of groups) in
    cascade, from ``state`` (``(D, 2 sections)``, overwritten with the final delays) into
    ``out``; ``x``, ``out`` and ``layout`` as for :func:`lfilter_registers`. The sections are
    taken ``len(group) // 6`` at a time (``group``: the first ones' coefficients, a tuple in
    ``x``'s dtype), in registers, each group over a block of ``BLOCK_STEPS`` steps in turn,
    the groups between them passing the block through a buffer in the L1 cache."""
    rows, length, x_row, x_time, out_row, out_time = layout
    size = len(group) // 6
    groups = (sections + size - 1) // size
    block = np.empty(min(BLOCK_STEPS, length), out.dtype)
    row = atomics.fetch_add(counter, 0, 1)
    while row < rows:
        for start in range(0, length, BLOCK_STEPS):
            steps = min(BLOCK_STEPS, length - start)
            for g in range(groups):
                first, count = g * size, min(size, sections - g * size)
                coefficients = group_coefficients(sos, first, group)
                z = cascade_delays(state, row, 2 * first, 2 * count, coefficients)
                sample = uint64(row * x_row + start * x_time)
                filtered = uint64(row * out_row + start * out_time)
                last = g == groups - 1
                for j in range(steps):
                    current = x[sample] if g == 0 else block[j]
                    output, z = cascade_register_step(z, coefficients, count, current)
                    if last:
                        out[filtered] = output
                    else:
                        block[j] = output
                    sample, filtered = sample + uint64(x_time), filtered + uint64(out_time)
                store_delays(z, state, row, 2 * first, 2 * count)
        row = atomics.fetch_add(counter, 0, 1)
