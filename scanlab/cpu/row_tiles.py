"""Time-last recurrences a square tile at a time, transposed in registers.

With time along each row (``axis=-1`` of a C array, scipy's default layout), one row's steps
depend on each other and its neighbours' do not: the parallelism is across rows, whose values
for one step are a row length apart in memory. :func:`tile_step` takes ``U`` rows and ``U``
steps at once (``U`` the elements of one ``LANE_BYTES`` vector: 16 float32, 8 float64, 8
complex64, 4 complex128): one contiguous vector load per row and operand, a transpose in
registers (``log2 U`` rounds of two-vector shuffles), ``U`` vector multiply-adds that each
advance all ``U`` rows by one step, and the transpose back into one store per row: a few
instructions per vector where scalar chains along each row spent them per element (1.0-8.3x
slower, ``benchmarks/RESULTS.md``); the rounding is the same (one fused multiply-add per real
step).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from scanlab.cpu.vector_ir import (
    LANE_BYTES,
    checked_dtype,
    element_type,
    multiply_add,
    shuffled,
    splat,
    transposed,
)

#: How ``a`` broadcasts, the modes of :func:`tile_step`: full ``(D, T)``, one row ``(1, T)``
#: shared by every channel, one column ``(D, 1)`` constant in time, one value ``(1, 1)``.
FULL, PER_STEP, PER_ROW, CONSTANT = 0, 1, 2, 3


@intrinsic(prefer_literal=True)
def tile_step(typingctx, a, b, out, state, first, rows, start, reverse, a_mode):
    """Rows ``first`` to ``first + rows - 1`` of ``out`` (``(D, T)``, ``rows <= U``) at steps
    ``start`` to ``start + U - 1``, walked backwards if ``reverse``, from ``state`` (``U``
    states, updated): ``out[d, t] = a[d, t] * out[d, t -+ 1] + b[d, t]``. Lanes past ``rows``
    repeat the last row's operands and are not stored.

    ``b`` is ``(D, T)`` like ``out``, ``a`` as ``a_mode`` says (:data:`FULL` and the others);
    all are C-contiguous of one float or complex dtype, ``state`` 1-D. ``reverse`` and
    ``a_mode`` are constants.
    """
    dtype = checked_dtype("tile_step", (out, a, b), ndim=2)
    checked_dtype("tile_step", (state, out), kinds=type(dtype))
    if not isinstance(reverse, types.BooleanLiteral) or not isinstance(
        a_mode, types.IntegerLiteral
    ):
        raise TypeError(f"tile_step's reverse and a_mode must be constants: {reverse}, {a_mode}")
    backwards, mode = reverse.literal_value, a_mode.literal_value
    complex_ = isinstance(dtype, types.Complex)
    component, component_bytes = element_type(dtype)
    element_bytes = component_bytes * (2 if complex_ else 1)
    units = LANE_BYTES // element_bytes

    def codegen(context, builder, signature, args):
        a_value, b_value, out_value, state_value, first_value, rows_value, start_value = args[:7]
        vector = ir.VectorType(context.get_data_type(component), LANE_BYTES // component_bytes)
        # Elements move as integers of their width: a complex number stays one unit.
        unit = ir.IntType(element_bytes * 8)
        unit_vector = ir.VectorType(unit, units)
        first_value, rows_value, start_value = (
            context.cast(builder, value, signature.args[position], types.intp)
            for position, value in ((4, first_value), (5, rows_value), (6, start_value))
        )
        last_row = builder.sub(rows_value, ir.Constant(rows_value.type, 1))

        def present(row):
            return builder.icmp_signed("<", ir.Constant(rows_value.type, row), rows_value)

        def address(position, value, row, kind):
            """Pointer to ``kind`` in argument ``position`` at row ``first + row`` (row 0 if
            ``row`` is None) and step ``start`` (step 0 if the argument is constant in time)."""
            array = context.make_array(signature.args[position])(context, builder, value)
            row_stride, step_stride = cgutils.unpack_tuple(builder, array.strides, 2)
            offset = ir.Constant(row_stride.type, 0)
            if row is not None:
                row = builder.select(present(row), ir.Constant(last_row.type, row), last_row)
                offset = builder.mul(builder.add(first_value, row), row_stride)
            if position != 0 or mode in (FULL, PER_STEP):
                offset = builder.add(offset, builder.mul(start_value, step_stride))
            pointer = cgutils.pointer_add(builder, array.data, offset)
            return builder.bitcast(pointer, kind.as_pointer())

        def load(position, value, row, kind):
            return builder.load(address(position, value, row, kind), align=component_bytes)

        def steps_of_rows(position, value):
            """The tile of argument ``position``, one vector of rows per step."""
            return transposed(
                builder, [load(position, value, row, unit_vector) for row in range(units)]
            )

        if mode == FULL:
            a_steps = steps_of_rows(0, a_value)
        elif mode == PER_STEP:
            shared = load(0, a_value, None, unit_vector)
            a_steps = [shuffled(builder, shared, None, [step] * units) for step in range(units)]
        elif mode == PER_ROW:
            column = ir.Constant(unit_vector, ir.Undefined)
            for row in range(units):
                element = load(0, a_value, row, unit)
                column = builder.insert_element(column, element, ir.IntType(32)(row))
            a_steps = [column] * units
        else:
            a_steps = [splat(builder, unit_vector, load(0, a_value, None, unit))] * units
        b_steps = steps_of_rows(1, b_value)
        state_array = context.make_array(signature.args[3])(context, builder, state_value)
        state_pointer = builder.bitcast(state_array.data, vector.as_pointer())
        value = builder.load(state_pointer, align=component_bytes)
        results = [None] * units
        for step in reversed(range(units)) if backwards else range(units):
            coefficients, offsets = (
                builder.bitcast(operand[step], vector) for operand in (a_steps, b_steps)
            )
            value = multiply_add(builder, coefficients, value, offsets, vector, complex_)
            results[step] = builder.bitcast(value, unit_vector)
        builder.store(value, state_pointer, align=component_bytes)
        for row, result in enumerate(transposed(builder, results)):
            with builder.if_then(present(row), likely=True):
                pointer = address(2, out_value, row, unit_vector)
                builder.store(result, pointer, align=component_bytes)
        return context.get_dummy_value()

    return types.void(a, b, out, state, first, rows, start, reverse, a_mode), codegen
