"""``out = start + W v`` for a small dense ``W``, one step of a dense recurrent cell.

A step's product with an ``n x n`` matrix is latency-bound: the next step needs all of it.
Summed row by row, each of the ``n`` sums ends in a horizontal reduction across a vector's
lanes. Summed by columns (``out += W[:, j] v[j]``, reading the rows of ``W``'s transpose), each
vector of outputs stays in a register for the whole sum and the lanes never meet, but Numba's
loops keep such accumulators in memory. :func:`column_sums` writes that loop in LLVM IR, with
up to ``MAX_BLOCK`` vectors of outputs held in registers and two accumulators per vector (even
and odd ``j``) to halve the chain of dependent multiply-adds.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from scanlab.config import FASTMATH_DOT_PRODUCTS
from scanlab.cpu.vector_ir import VECTOR_BYTES, checked_dtype, splat

#: Vectors of outputs one pass over the columns accumulates (twice as many registers).
MAX_BLOCK = 8


@intrinsic
def column_sums(typingctx, columns, vector, start, out):
    """``out[i] = start[i] + sum_j columns[j, i] vector[j]`` for the ``i`` of whole vectors
    (``out``'s length rounded down to a multiple of the lanes); returns how many ``i`` that is.

    ``columns`` is C-contiguous ``(n, len(out))``, the transpose of the matrix; ``vector``,
    ``start`` and ``out`` are C-contiguous and 1-D, ``vector`` of length ``n``, ``start`` as
    long as ``out``. Multiply-adds are fused.
    """
    dtype = checked_dtype("column_sums", (vector, start, out), ndim=1, kinds=(types.Float,))
    checked_dtype("column_sums", (columns,), ndim=2, kinds=(types.Float,))
    if columns.dtype != dtype:
        raise TypeError(f"column_sums needs arrays of one dtype: {columns}, {vector}")

    def codegen(context, builder, signature, args):
        lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
        element = context.get_data_type(dtype)
        register = ir.VectorType(element, lanes)
        intp = context.get_value_type(types.intp)
        align = dtype.bitwidth // 8
        arrays = [
            context.make_array(array_type)(context, builder, value)
            for array_type, value in zip(signature.args, args, strict=True)
        ]
        matrix, vector_array, start_array, out_array = arrays
        terms = cgutils.unpack_tuple(builder, matrix.shape, 2)[0]
        count = cgutils.unpack_tuple(builder, out_array.shape, 1)[0]
        whole = builder.mul(builder.udiv(count, intp(lanes)), intp(lanes))
        row_length = cgutils.unpack_tuple(builder, matrix.shape, 2)[1]
        # Every accumulator is an alloca of the entry block, which LLVM promotes to a register.
        accumulators = [
            [cgutils.alloca_once(builder, register) for _ in range(MAX_BLOCK)] for _ in range(2)
        ]

        def at(data, index):
            return builder.bitcast(builder.gep(data, [index]), register.as_pointer())

        def accumulate(first, width, term, into):
            weight = splat(builder, register, builder.load(builder.gep(vector_array.data, [term])))
            row = builder.gep(matrix.data, [builder.mul(term, row_length)])
            for block in range(width):
                column = builder.load(at(row, builder.add(first, intp(block * lanes))), align=align)
                total = builder.load(into[block])
                product = builder.fmul(column, weight, flags=["contract"])
                builder.store(builder.fadd(product, total, flags=["contract"]), into[block])

        def block_sums(first, width):
            even, odd = accumulators
            for block in range(width):
                offset = builder.add(first, intp(block * lanes))
                builder.store(builder.load(at(start_array.data, offset), align=align), even[block])
                builder.store(ir.Constant(register, [0.0] * lanes), odd[block])
            pairs = builder.udiv(terms, intp(2))
            with cgutils.for_range(builder, pairs) as loop:
                term = builder.mul(loop.index, intp(2))
                accumulate(first, width, term, even)
                accumulate(first, width, builder.add(term, intp(1)), odd)
            with builder.if_then(builder.icmp_unsigned("!=", terms, builder.mul(pairs, intp(2)))):
                accumulate(first, width, builder.sub(terms, intp(1)), even)
            for block in range(width):
                total = builder.fadd(builder.load(even[block]), builder.load(odd[block]))
                offset = builder.add(first, intp(block * lanes))
                builder.store(total, at(out_array.data, offset), align=align)

        full_blocks = builder.udiv(whole, intp(MAX_BLOCK * lanes))
        with cgutils.for_range(builder, full_blocks) as loop:
            block_sums(builder.mul(loop.index, intp(MAX_BLOCK * lanes)), MAX_BLOCK)
        done = builder.mul(full_blocks, intp(MAX_BLOCK * lanes))
        # The remaining vectors (fewer than MAX_BLOCK) in blocks of 4, 2 and 1.
        remaining = builder.udiv(builder.sub(whole, done), intp(lanes))
        position = cgutils.alloca_once_value(builder, done)
        width = MAX_BLOCK // 2
        while width:
            taken = builder.icmp_unsigned("!=", builder.and_(remaining, intp(width)), intp(0))
            with builder.if_then(taken):
                first = builder.load(position)
                block_sums(first, width)
                builder.store(builder.add(first, intp(width * lanes)), position)
            width //= 2
        return whole

    return types.intp(columns, vector, start, out), codegen


# Inlined in Numba's IR: called as a function, LLVM kept the call, and a step of n = 64 took
# 1.4-1.7x as long.
@njit(fastmath=FASTMATH_DOT_PRODUCTS, inline="always")
def affine_by_columns(weights, columns, vector, start, out):
    """``out = start + weights @ vector``: :func:`column_sums` for the whole vectors of
    ``out``, the rows of ``weights`` (its transpose ``columns``) for the rest."""
    done = column_sums(columns, vector, start, out)
    for i in range(done, out.shape[0]):
        total = start[i]
        for j in range(vector.shape[0]):
            total += weights[i, j] * vector[j]
        out[i] = total


__all__ = ["affine_by_columns", "column_sums"]
