"""Time-last recurrences a square tile at a time, transposed in registers.

With time along each row (``axis=-1`` of a C array, scipy's default layout), one row's steps
depend on each other and its neighbours' do not: the parallelism is across rows, whose values
for one step are a row length apart in memory. :func:`tile_step` takes ``U`` rows and ``U``
steps at once (``U`` the elements of one vector of the intrinsic's ``width``: 8 float32, 4
float64, 4 complex64, 2 complex128 in 32 bytes, the time-last kernel's; twice as many in the
64 bytes of an AVX-512 register, the one-series scan's): one
contiguous vector load per row and operand, a transpose in
registers (``log2 U`` rounds of two-vector shuffles), ``U`` vector multiply-adds that each
advance all ``U`` rows by one step, and the transpose back into one store per row: a few
instructions per vector where scalar chains along each row spent them per element (1.0-8.3x
slower, ``benchmarks/RESULTS.md``); the rounding is the same (one fused multiply-add per real
step).

The scan of one long series uses the same tiles (:mod:`scanlab.cpu.linear`): ``U`` consecutive
chunks of the series, viewed as the rows of a ``(U, chunk length)`` array, are composed
(:func:`tile_compose`: their products and their states from zero) and rerun (:func:`tile_step`,
whose results may go to memory with streaming stores) in the lanes of one vector.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from scanlab.cpu.vector_ir import (
    checked_dtype,
    complex_product,
    element_type,
    multiply_add,
    shuffled,
    splat,
    streaming_store,
    transposed,
)

#: Bytes of each row that :func:`tile_compose` prefetches beyond its tile: the ``U`` rows of
#: ``a`` and ``b`` are ``2 U`` streams, more than CPUs' prefetchers follow (the scan of one
#: float32 series composed from memory at 0.46 ns an element, 0.22 with this, on Zen 5; 512 to
#: 2048 alike). The time-last kernel's :func:`tile_step` does not: float64 rows ran 5-7% slower.
PREFETCH_BYTES = 512
#: How ``a`` broadcasts, the modes of :func:`tile_step`: full ``(D, T)``, one row ``(1, T)``
#: shared by every channel, one column ``(D, 1)`` constant in time, one value ``(1, 1)``.
FULL, PER_STEP, PER_ROW, CONSTANT = 0, 1, 2, 3


class SquareTile:
    """The operands of one square tile in LLVM IR, for :func:`tile_step` and
    :func:`tile_compose`, whose arguments ``(a, b, _, _, first, rows, start, reverse, a_mode)``
    it reads: rows ``first`` to ``first + rows - 1`` (``rows <= U``) of ``(D, T)`` arrays, at
    steps ``start`` to ``start + U - 1``. Lanes past ``rows`` repeat the last row's operands.
    """

    def __init__(self, context, builder, signature, args, dtype, mode, width):
        self.context, self.builder, self.signature, self.args = context, builder, signature, args
        self.mode = mode
        self.complex = isinstance(dtype, types.Complex)
        component, component_bytes = element_type(dtype)
        element_bytes = component_bytes * (2 if self.complex else 1)
        self.units = width // element_bytes
        self.alignment = component_bytes
        self.vector = ir.VectorType(context.get_data_type(component), width // component_bytes)
        # Elements move as integers of their width: a complex number stays one unit.
        self.unit = ir.IntType(element_bytes * 8)
        self.unit_vector = ir.VectorType(self.unit, self.units)
        self.first, self.rows, self.start = (
            context.cast(builder, args[position], signature.args[position], types.intp)
            for position in (4, 5, 6)
        )
        self.last_row = builder.sub(self.rows, ir.Constant(self.rows.type, 1))

    def present(self, row):
        """Whether lane ``row`` is one of the tile's rows."""
        return self.builder.icmp_signed("<", ir.Constant(self.rows.type, row), self.rows)

    def address(self, position, row, kind):
        """Pointer to ``kind`` in argument ``position`` at row ``first + row`` (row 0 if ``row``
        is None) and step ``start`` (step 0 if the argument is constant in time)."""
        builder, context = self.builder, self.context
        array = context.make_array(self.signature.args[position])(
            context, builder, self.args[position]
        )
        row_stride, step_stride = cgutils.unpack_tuple(builder, array.strides, 2)
        offset = ir.Constant(row_stride.type, 0)
        if row is not None:
            row = builder.select(
                self.present(row), ir.Constant(self.last_row.type, row), self.last_row
            )
            offset = builder.mul(builder.add(self.first, row), row_stride)
        if position != 0 or self.mode in (FULL, PER_STEP):
            offset = builder.add(offset, builder.mul(self.start, step_stride))
        pointer = cgutils.pointer_add(builder, array.data, offset)
        return builder.bitcast(pointer, kind.as_pointer())

    def load(self, position, row, kind):
        return self.builder.load(self.address(position, row, kind), align=self.alignment)

    def steps_of_rows(self, position, prefetch):
        """The tile of argument ``position``, one vector of rows per step; with ``prefetch``,
        each row's next :data:`PREFETCH_BYTES` on (in the direction of ``reverse``) too."""
        builder = self.builder
        if prefetch:
            byte_pointer, word = ir.IntType(8).as_pointer(), ir.IntType(32)
            signature = ir.FunctionType(ir.VoidType(), [byte_pointer, word, word, word])
            call = builder.module.declare_intrinsic("llvm.prefetch", [byte_pointer], signature)
            ahead = ir.Constant(ir.IntType(64), PREFETCH_BYTES)
            reverse = self.signature.args[7]
            if isinstance(reverse, types.BooleanLiteral):
                offset = builder.neg(ahead) if reverse.literal_value else ahead
            else:
                offset = builder.select(self.args[7], builder.neg(ahead), ahead)
            read, keep, data = (ir.Constant(word, value) for value in (0, 3, 1))
            for row in range(self.units):
                start = builder.bitcast(self.address(position, row, self.unit), byte_pointer)
                builder.call(call, [builder.gep(start, [offset]), read, keep, data])
        return transposed(
            builder, [self.load(position, row, self.unit_vector) for row in range(self.units)]
        )

    def steps(self, prefetch=False):
        """``(a, b)``: the tile's coefficients and offsets, one vector of rows per step, as
        vectors of the dtype's components (``prefetch``: see :meth:`steps_of_rows`)."""
        builder, units, unit_vector = self.builder, self.units, self.unit_vector
        if self.mode == FULL:
            a_steps = self.steps_of_rows(0, prefetch)
        elif self.mode == PER_STEP:
            shared = self.load(0, None, unit_vector)
            a_steps = [shuffled(builder, shared, None, [step] * units) for step in range(units)]
        elif self.mode == PER_ROW:
            column = ir.Constant(unit_vector, ir.Undefined)
            for row in range(units):
                element = self.load(0, row, self.unit)
                column = builder.insert_element(column, element, ir.IntType(32)(row))
            a_steps = [column] * units
        else:
            a_steps = [splat(builder, unit_vector, self.load(0, None, self.unit))] * units
        b_steps = self.steps_of_rows(1, prefetch)
        return (
            [builder.bitcast(step, self.vector) for step in a_steps],
            [builder.bitcast(step, self.vector) for step in b_steps],
        )

    def walk(self, advance, initial):
        """``initial`` (a tuple of IR values) advanced through the tile's ``U`` steps, forwards
        or, if the run-time argument ``reverse`` holds, backwards: ``advance(step, values)``
        returns ``(values, result)``. Returns the last values and each step's result. Only
        the steps are written twice, the loads and transposes of the tile once."""
        builder, units = self.builder, self.units
        reverse = self.signature.args[7]
        if isinstance(reverse, types.BooleanLiteral):  # one order, known when compiling
            values, results = initial, [None] * units
            for step in reversed(range(units)) if reverse.literal_value else range(units):
                values, results[step] = advance(step, values)
            return values, results
        outcomes = []
        with builder.if_else(self.args[7]) as (backwards, forwards):
            for branch, order in ((backwards, reversed(range(units))), (forwards, range(units))):
                with branch:
                    values, results = initial, [None] * units
                    for step in order:
                        values, results[step] = advance(step, values)
                    outcomes.append((builder.block, values, results))
        (backwards_block, backwards_values, backwards_results) = outcomes[0]
        (forwards_block, forwards_values, forwards_results) = outcomes[1]

        def merged(backwards_value, forwards_value):
            if backwards_value is None:
                return None
            node = builder.phi(backwards_value.type)
            node.add_incoming(backwards_value, backwards_block)
            node.add_incoming(forwards_value, forwards_block)
            return node

        values = tuple(map(merged, backwards_values, forwards_values))
        return values, list(map(merged, backwards_results, forwards_results))

    def vector_pointer(self, position, vector):
        """Pointer to the 1-D argument ``position`` (``U`` values) as one ``vector``."""
        array = self.context.make_array(self.signature.args[position])(
            self.context, self.builder, self.args[position]
        )
        return self.builder.bitcast(array.data, vector.as_pointer())


def tile_arguments(name, a, b, reverse, a_mode, width):
    """``(dtype, mode, width)`` of a tile intrinsic's arguments, or a TypeError."""
    dtype = checked_dtype(name, (b, a), ndim=2)
    if not (
        isinstance(reverse, types.Boolean)
        and isinstance(a_mode, types.IntegerLiteral)
        and isinstance(width, types.IntegerLiteral)
        and width.literal_value in (16, 32, 64)
    ):
        raise TypeError(
            f"{name}'s reverse must be a boolean, a_mode a constant and width 16, 32 or 64: "
            f"{reverse}, {a_mode}, {width}"
        )
    return dtype, a_mode.literal_value, width.literal_value


@intrinsic(prefer_literal=True)
def tile_step(typingctx, a, b, out, state, first, rows, start, reverse, a_mode, stream, width):
    """Rows ``first`` to ``first + rows - 1`` of ``out`` (``(D, T)``, ``rows <= U``) at steps
    ``start`` to ``start + U - 1``, walked backwards if ``reverse``, from ``state`` (``U``
    states, updated): ``out[d, t] = a[d, t] * out[d, t -+ 1] + b[d, t]``. Lanes past ``rows``
    repeat the last row's operands and are not stored.

    ``b`` is ``(D, T)`` like ``out``, ``a`` as ``a_mode`` says (:data:`FULL` and the others);
    all are C-contiguous of one float or complex dtype, ``state`` 1-D. ``a_mode`` is a
    constant. With ``stream`` (a boolean), ``out`` is written with streaming
    stores (:mod:`scanlab.cpu.streaming`), and each row's ``U`` values must start on a
    ``width`` boundary. ``width``, a constant, is the bytes of the tile's vectors: ``U`` values
    of the dtype fill one (at most :data:`scanlab.cpu.vector_ir.VECTOR_BYTES`).
    """
    dtype, mode, bytes_ = tile_arguments("tile_step", a, b, reverse, a_mode, width)
    checked_dtype("tile_step", (out, b), ndim=2)
    checked_dtype("tile_step", (state, out), kinds=type(dtype))

    def codegen(context, builder, signature, args):
        tile = SquareTile(context, builder, signature, args, dtype, mode, bytes_)
        a_steps, b_steps = tile.steps()
        state_pointer = tile.vector_pointer(3, tile.vector)

        def advance(step, values):
            (value,) = values
            value = multiply_add(
                builder, a_steps[step], value, b_steps[step], tile.vector, tile.complex
            )
            return (value,), builder.bitcast(value, tile.unit_vector)

        initial = (builder.load(state_pointer, align=tile.alignment),)
        (value,), results = tile.walk(advance, initial)
        builder.store(value, state_pointer, align=tile.alignment)
        for row, result in enumerate(transposed(builder, results)):
            with builder.if_then(tile.present(row), likely=True):
                pointer = tile.address(2, row, tile.unit_vector)
                with builder.if_else(args[9]) as (streamed, ordinary):
                    with streamed:
                        streaming_store(builder, result, pointer, bytes_)
                    with ordinary:
                        builder.store(result, pointer, align=tile.alignment)
        return context.get_dummy_value()

    if not isinstance(stream, types.Boolean):
        raise TypeError(f"tile_step's stream must be a boolean: {stream}")
    arguments = (a, b, out, state, first, rows, start, reverse, a_mode, stream, width)
    return types.void(*arguments), codegen


@intrinsic(prefer_literal=True)
def tile_compose(typingctx, a, b, product, partial, first, rows, start, reverse, a_mode, width):
    """What :func:`tile_step` computes for the same arguments, composed rather than stored:
    ``U`` rows' ``partial`` (their states, updated, as ``state`` there) and ``product`` (the
    running product of their ``a``, updated, in float64 or complex128), nothing written to
    memory else.
    """
    dtype, mode, bytes_ = tile_arguments("tile_compose", a, b, reverse, a_mode, width)
    checked_dtype("tile_compose", (partial, b), kinds=type(dtype))
    wide = types.complex128 if isinstance(dtype, types.Complex) else types.float64
    if not (isinstance(product, types.Array) and product.dtype == wide and product.layout == "C"):
        raise TypeError(f"tile_compose's product must be C-contiguous {wide}: {product}")

    def codegen(context, builder, signature, args):
        tile = SquareTile(context, builder, signature, args, dtype, mode, bytes_)
        a_steps, b_steps = tile.steps(prefetch=True)
        wide_vector = ir.VectorType(ir.DoubleType(), tile.vector.count)
        partial_pointer = tile.vector_pointer(3, tile.vector)
        product_pointer = tile.vector_pointer(2, wide_vector)

        def advance(step, values):
            value, running = values
            coefficients = a_steps[step]
            value = multiply_add(
                builder, coefficients, value, b_steps[step], tile.vector, tile.complex
            )
            if coefficients.type != wide_vector:
                coefficients = builder.fpext(coefficients, wide_vector)
            if tile.complex:
                running = complex_product(builder, coefficients, running, wide_vector)
            else:
                running = builder.fmul(running, coefficients)
            return (value, running), None

        initial = (
            builder.load(partial_pointer, align=tile.alignment),
            builder.load(product_pointer, align=8),
        )
        (value, running), _ = tile.walk(advance, initial)
        builder.store(value, partial_pointer, align=tile.alignment)
        builder.store(running, product_pointer, align=8)
        return context.get_dummy_value()

    arguments = (a, b, product, partial, first, rows, start, reverse, a_mode, width)
    return types.void(*arguments), codegen
