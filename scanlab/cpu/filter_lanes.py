"""One step of an IIR filter for a row of ``LANES`` lanes, each lane one channel: the steps of
:mod:`scanlab.cpu.iir`, in scipy's arithmetic (no contracted multiply-adds).

``block[row]`` holds one input sample per lane and receives the filtered samples; ``z`` holds
the lanes' delays, lanes last. For real dtypes a step is vector instructions written in LLVM IR
(Numba's loops over the lanes stay scalar: LLVM cannot tell the block and the delays apart).
Vector and scalar arithmetic round alike, so the results are scipy's bit for bit either way.
Complex dtypes take the loops over the lanes; :func:`sections_step` and
:func:`direct_form_step` choose by dtype.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from scanlab.cpu.vector_ir import checked_dtype, splat, transposed

#: Channels one step advances together, one lane each.
LANES = 8


def lane_access(context, builder, signature, args, dtype):
    """``(pointer, splatted, load, store)`` for vectors of ``LANES`` elements of ``dtype``:
    ``pointer(position, indices)``, the vector of argument ``position`` from ``indices``;
    ``splatted(position, indices)``, its element there in every lane; ``load(pointer)`` and
    ``store(value, pointer)`` of vectors aligned as their elements. Indices are LLVM integers
    or Python ints."""
    vector = ir.VectorType(context.get_data_type(dtype), LANES)
    align = dtype.bitwidth // 8
    # Every array's structure made here, before any loop: a value made in a loop's body would
    # not reach the code after the loop.
    arrays = {
        position: context.make_array(array_type)(context, builder, args[position])
        for position, array_type in enumerate(signature.args)
        if isinstance(array_type, types.Array)
    }

    def element(position, indices):
        indices = [
            context.get_constant(types.intp, index) if isinstance(index, int) else index
            for index in indices
        ]
        array = arrays[position]
        return cgutils.get_item_pointer(context, builder, signature.args[position], array, indices)

    def pointer(position, indices):
        return builder.bitcast(element(position, indices), vector.as_pointer())

    def splatted(position, indices):
        return splat(builder, vector, builder.load(element(position, indices)))

    def load(vector_pointer):
        return builder.load(vector_pointer, align=align)

    def store(value, vector_pointer):
        builder.store(value, vector_pointer, align=align)

    return pointer, splatted, load, store


@intrinsic
def sections_vector_step(typingctx, sos, block, row, z):
    """``block[row]`` through the second-order sections ``sos`` (``(S, 6)``: ``b0 b1 b2 1 a1
    a2``) in cascade, lane ``k`` from its delays ``z[s, :, k]`` (``(S, 2, LANES)``)."""
    checked_dtype("sections_vector_step", (block, sos, z), kinds=types.Float)

    def codegen(context, builder, signature, args):
        pointer, splatted, load, store = lane_access(context, builder, signature, args, block.dtype)
        row_index = context.cast(builder, args[2], signature.args[2], types.intp)
        sample_pointer = pointer(1, [row_index, 0])
        current = cgutils.alloca_once_value(builder, load(sample_pointer))
        sos_array = context.make_array(signature.args[0])(context, builder, args[0])
        sections = cgutils.unpack_tuple(builder, sos_array.shape, 2)[0]
        with cgutils.for_range(builder, sections) as loop:
            s = loop.index
            b0, b1, b2, _, a1, a2 = (splatted(0, [s, i]) for i in range(6))
            first_pointer, second_pointer = pointer(3, [s, 0, 0]), pointer(3, [s, 1, 0])
            sample = builder.load(current)
            filtered = builder.fadd(builder.fmul(b0, sample), load(first_pointer))
            first = builder.fsub(builder.fmul(b1, sample), builder.fmul(a1, filtered))
            store(builder.fadd(first, load(second_pointer)), first_pointer)
            store(
                builder.fsub(builder.fmul(b2, sample), builder.fmul(a2, filtered)), second_pointer
            )
            builder.store(filtered, current)
        store(builder.load(current), sample_pointer)
        return context.get_dummy_value()

    return types.void(sos, block, row, z), codegen


@intrinsic
def direct_form_vector_step(typingctx, b, a, block, row, z):
    """``block[row]`` through the transposed direct form II of ``b``, ``a`` (normalised, length
    ``K + 1``, ``K >= 1``), lane ``k`` from its delays ``z[:, k]`` (``(K, LANES)``)."""
    checked_dtype("direct_form_vector_step", (block, b, a, z), kinds=types.Float)

    def codegen(context, builder, signature, args):
        pointer, splatted, load, store = lane_access(context, builder, signature, args, block.dtype)
        row_index = context.cast(builder, args[3], signature.args[3], types.intp)
        sample_pointer = pointer(2, [row_index, 0])
        sample = load(sample_pointer)
        z_array = context.make_array(signature.args[4])(context, builder, args[4])
        order = cgutils.unpack_tuple(builder, z_array.shape, 2)[0]
        last = builder.sub(order, context.get_constant(types.intp, 1))
        output = builder.fadd(load(pointer(4, [0, 0])), builder.fmul(splatted(0, [0]), sample))
        with cgutils.for_range(builder, last) as loop:
            i = loop.index
            following = builder.add(i, context.get_constant(types.intp, 1))
            forward = builder.fmul(sample, splatted(0, [following]))
            total = builder.fadd(load(pointer(4, [following, 0])), forward)
            feedback = builder.fmul(output, splatted(1, [following]))
            store(builder.fsub(total, feedback), pointer(4, [i, 0]))
        forward = builder.fmul(sample, splatted(0, [order]))
        store(
            builder.fsub(forward, builder.fmul(output, splatted(1, [order]))), pointer(4, [last, 0])
        )
        store(output, sample_pointer)
        return context.get_dummy_value()

    return types.void(b, a, block, row, z), codegen


def sections_step(sos, block, row, z):
    """:func:`sections_vector_step` for real dtypes, the same step lane by lane otherwise."""


def direct_form_step(b, a, block, row, z):
    """:func:`direct_form_vector_step` for real dtypes (``K >= 1``), the same step lane by
    lane otherwise."""


@overload(sections_step)
def sections_step_by_dtype(sos, block, row, z):
    if isinstance(block.dtype, types.Float):
        return lambda sos, block, row, z: sections_vector_step(sos, block, row, z)

    def lane_by_lane(sos, block, row, z):
        for s in range(sos.shape[0]):
            for k in range(LANES):
                current = block[row, k]
                filtered = sos[s, 0] * current + z[s, 0, k]
                z[s, 0, k] = sos[s, 1] * current - sos[s, 4] * filtered + z[s, 1, k]
                z[s, 1, k] = sos[s, 2] * current - sos[s, 5] * filtered
                block[row, k] = filtered

    return lane_by_lane


@overload(direct_form_step)
def direct_form_step_by_dtype(b, a, block, row, z):
    if isinstance(block.dtype, types.Float):
        return lambda b, a, block, row, z: direct_form_vector_step(b, a, block, row, z)

    def lane_by_lane(b, a, block, row, z):
        order = z.shape[0]
        for k in range(LANES):
            sample = block[row, k]
            output = z[0, k] + b[0] * sample
            for i in range(order - 1):
                z[i, k] = z[i + 1, k] + sample * b[i + 1] - output * a[i + 1]
            z[order - 1, k] = sample * b[order] - output * a[order]
            block[row, k] = output

    return lane_by_lane


@intrinsic
def rows_to_lanes(typingctx, x, first, rows, start, block, row):
    """``block[row + j, k] = x[first + k, start + j]`` for ``j, k < LANES``: a square tile of
    ``x`` transposed in registers (rows ``k >= rows`` read row ``rows - 1``)."""
    checked_dtype("rows_to_lanes", (block, x), kinds=types.Float)

    def codegen(context, builder, signature, args):
        pointer, _, load, store = lane_access(context, builder, signature, args, block.dtype)
        first, rows, start, row = (
            context.cast(builder, args[position], signature.args[position], types.intp)
            for position in (1, 2, 3, 5)
        )
        last = builder.sub(rows, context.get_constant(types.intp, 1))
        loaded = []
        for lane in range(LANES):
            lane_value = context.get_constant(types.intp, lane)
            clamped = builder.select(builder.icmp_signed("<", lane_value, rows), lane_value, last)
            loaded.append(load(pointer(0, [builder.add(first, clamped), start])))
        for step, vector in enumerate(transposed(builder, loaded)):
            step_value = context.get_constant(types.intp, step)
            store(vector, pointer(4, [builder.add(row, step_value), 0]))
        return context.get_dummy_value()

    return types.void(x, first, rows, start, block, row), codegen


@intrinsic
def lanes_to_rows(typingctx, block, row, out, first, rows, start):
    """``out[first + k, start + j] = block[row + j, k]`` for ``j < LANES``, ``k < rows``: the
    inverse of :func:`rows_to_lanes`."""
    checked_dtype("lanes_to_rows", (block, out), kinds=types.Float)

    def codegen(context, builder, signature, args):
        pointer, _, load, store = lane_access(context, builder, signature, args, block.dtype)
        row, first, rows, start = (
            context.cast(builder, args[position], signature.args[position], types.intp)
            for position in (1, 3, 4, 5)
        )
        steps = [
            load(pointer(0, [builder.add(row, context.get_constant(types.intp, step)), 0]))
            for step in range(LANES)
        ]
        for lane, vector in enumerate(transposed(builder, steps)):
            lane_value = context.get_constant(types.intp, lane)
            with builder.if_then(builder.icmp_signed("<", lane_value, rows), likely=True):
                store(vector, pointer(2, [builder.add(first, lane_value), start]))
        return context.get_dummy_value()

    return types.void(block, row, out, first, rows, start), codegen


@intrinsic
def step_to_lanes(typingctx, x, step, first, block, row):
    """``block[row, k] = x[step, first + k]`` for ``k < LANES``: one vector moved (``x``
    time-major, its steps' channels contiguous)."""
    checked_dtype("step_to_lanes", (block, x), kinds=types.Float)

    def codegen(context, builder, signature, args):
        pointer, _, load, store = lane_access(context, builder, signature, args, block.dtype)
        step, first, row = (
            context.cast(builder, args[position], signature.args[position], types.intp)
            for position in (1, 2, 4)
        )
        store(load(pointer(0, [step, first])), pointer(3, [row, 0]))
        return context.get_dummy_value()

    return types.void(x, step, first, block, row), codegen


@intrinsic
def lanes_to_step(typingctx, block, row, out, step, first):
    """``out[step, first + k] = block[row, k]`` for ``k < LANES``: the inverse of
    :func:`step_to_lanes`."""
    checked_dtype("lanes_to_step", (block, out), kinds=types.Float)

    def codegen(context, builder, signature, args):
        pointer, _, load, store = lane_access(context, builder, signature, args, block.dtype)
        row, step, first = (
            context.cast(builder, args[position], signature.args[position], types.intp)
            for position in (1, 3, 4)
        )
        store(load(pointer(0, [row, 0])), pointer(2, [step, first]))
        return context.get_dummy_value()

    return types.void(block, row, out, step, first), codegen


def load_lanes(x, first, rows, start, steps, block):
    """``block[j, k] = x[first + k, start + j]`` for ``k < rows``, ``j < steps``: tiles of
    :func:`rows_to_lanes` for real dtypes, then (and for complex ones) element by element."""


def store_lanes(block, first, rows, start, steps, out):
    """``out[first + k, start + j] = block[j, k]`` for ``k < rows``, ``j < steps``: tiles of
    :func:`lanes_to_rows` for real dtypes, then (and for complex ones) element by element."""


@overload(load_lanes)
def load_lanes_by_dtype(x, first, rows, start, steps, block):
    tiles = isinstance(block.dtype, types.Float)

    def load(x, first, rows, start, steps, block):
        whole = steps - steps % LANES if tiles else 0
        if tiles:
            for row in range(0, whole, LANES):
                rows_to_lanes(x, first, rows, start + row, block, row)
        for k in range(rows):
            for j in range(whole, steps):
                block[j, k] = x[first + k, start + j]

    return load


@overload(store_lanes)
def store_lanes_by_dtype(block, first, rows, start, steps, out):
    tiles = isinstance(block.dtype, types.Float)

    def store(block, first, rows, start, steps, out):
        whole = steps - steps % LANES if tiles else 0
        if tiles:
            for row in range(0, whole, LANES):
                lanes_to_rows(block, row, out, first, rows, start + row)
        for k in range(rows):
            for j in range(whole, steps):
                out[first + k, start + j] = block[j, k]

    return store


def load_steps(x, first, count, start, steps, block):
    """``block[j, k] = x[start + j, first + k]`` for ``j < steps``, ``k < LANES`` (``x``
    time-major; lanes ``k >= count`` repeat channel ``first + count - 1``): vectors of
    :func:`step_to_lanes` for a whole group of a real dtype, else element by element."""


def store_steps(block, first, count, start, steps, out):
    """``out[start + j, first + k] = block[j, k]`` for ``j < steps``, ``k < count``: vectors of
    :func:`lanes_to_step` for a whole group of a real dtype, else element by element."""


@overload(load_steps)
def load_steps_by_dtype(x, first, count, start, steps, block):
    vectors = isinstance(block.dtype, types.Float)

    def load(x, first, count, start, steps, block):
        if vectors and count == LANES:
            for j in range(steps):
                step_to_lanes(x, start + j, first, block, j)
            return
        last = count - 1
        for j in range(steps):
            for k in range(LANES):
                block[j, k] = x[start + j, first + min(k, last)]

    return load


@overload(store_steps)
def store_steps_by_dtype(block, first, count, start, steps, out):
    vectors = isinstance(block.dtype, types.Float)

    def store(block, first, count, start, steps, out):
        if vectors and count == LANES:
            for j in range(steps):
                lanes_to_step(block, j, out, start + j, first)
            return
        for j in range(steps):
            for k in range(count):
                out[start + j, first + k] = block[j, k]

    return store
