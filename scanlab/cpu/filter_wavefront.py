"""Cascades of second-order sections over a few rows, the sections advancing together in the
lanes of a vector: :mod:`scanlab.cpu.filter_registers`' cascades for more sections than are
cheaper one after the other, in scipy's arithmetic step for step.

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
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from scanlab._kernel_cache import njit_cached
from scanlab.cpu import atomics
from scanlab.cpu.filter_registers import textbook_product
from scanlab.cpu.vector_ir import VECTOR_BYTES

#: Steps of a row that each group of ``WAVE_LANES`` sections filters in turn
#: (:func:`sosfilt_wavefront`).
BLOCK_STEPS = 256
#: Sections that :func:`cascade_wavefront` advances together, one a lane: a vector register of
#: float64 (8 with AVX-512, 4 with AVX2).
WAVE_LANES = max(4, VECTOR_BYTES // 8)


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
    ``(ac - bd) + (ad + bc)i``: ``filter_registers.textbook_product``)."""

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
        if self.parts == 1:
            return [self.builder.fmul(x[0], y[0])]
        return list(textbook_product(self.builder, x, y))


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


@njit_cached(nogil=True)
def sosfilt_wavefront(counter, sos, sections, x, out, layout, state):
    """``filter_registers.sosfilt_registers`` with ``WAVE_LANES`` sections advanced together
    (:func:`cascade_wavefront`; ``sos`` a flat array, zeros up to a whole number of
    ``WAVE_LANES`` sections); more sections than that take turns over blocks of
    ``BLOCK_STEPS`` steps, the blocks passed between them in the L1 cache."""
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
        else:
            for start in range(0, length, BLOCK_STEPS):
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
                            sos, first, count, block, 0, 1, steps, out, given, out_time, state,
                            row,
                        )  # fmt: skip
        row = atomics.fetch_add(counter, 0, 1)
