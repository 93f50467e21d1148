"""LLVM IR for one vector register of the elementwise recurrence, for kernels' intrinsics.

Numba has no vector types: where LLVM cannot find the vector code by itself (non-temporal
stores, transposes in registers), an intrinsic writes it in IR from these pieces. A streaming
store writes ``LANE_BYTES``, a cache line; a tile transposed in registers is square in vectors of
``VECTOR_BYTES``, the widest register of the CPU compiled for (a tile of wider vectors, split by
LLVM, no longer fits its registers: one float32 series' scan ran 1.1x slower than scalar chains
with 64-byte vectors on AVX2, 1.3x faster with them on AVX-512). Complex numbers are interleaved
``(re, im, re, im, ...)`` as NumPy stores them.
"""

import numba
from llvmlite import binding, ir
from numba import types

#: Bytes of a cache line: what a streaming store writes, and the alignment of results.
LANE_BYTES = 64


def native_vector_bytes() -> int:
    """Bytes of the widest vector register of the CPU Numba compiles for (its features, or
    ``NUMBA_CPU_FEATURES``): 64 with AVX-512, 32 with AVX, 16 otherwise (SSE, NEON)."""
    features = numba.config.CPU_FEATURES or binding.get_host_cpu_features().flatten()
    enabled = {feature[1:] for feature in features.split(",") if feature.startswith("+")}
    return 64 if "avx512f" in enabled else 32 if "avx" in enabled else 16


#: See :func:`native_vector_bytes`: the width of the tiles of :mod:`scanlab.cpu.row_tiles` and
#: of the products of :mod:`scanlab.cpu.matrix_vector`.
VECTOR_BYTES = native_vector_bytes()


def checked_dtype(name, arrays, ndim=None, kinds=(types.Float, types.Complex)):
    """The dtype that the Numba array types ``arrays`` share, if they are all C-contiguous, of
    ``ndim`` dimensions (any if None) and of a dtype of ``kinds``; else a TypeError naming the
    intrinsic ``name``."""
    dtype = getattr(arrays[0], "dtype", None)
    if not isinstance(dtype, kinds) or any(
        not isinstance(array, types.Array)
        or array.layout != "C"
        or array.dtype != dtype
        or (ndim is not None and array.ndim != ndim)
        for array in arrays
    ):
        raise TypeError(f"{name} needs C-contiguous arrays of one dtype: {arrays}")
    return dtype


def element_type(dtype):
    """``(component, component bytes)`` of a Numba float or complex ``dtype``: the float type
    that vectors of it are made of."""
    component = dtype.underlying_float if isinstance(dtype, types.Complex) else dtype
    return component, component.bitwidth // 8


def vector_pointer(context, builder, array_type, array, index, vector):
    """LLVM pointer to the vector of ``array`` (1-D, contiguous) that starts at ``index``."""
    data = context.make_array(array_type)(context, builder, array).data
    index = context.cast(builder, index, types.intp, types.intp)
    return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())


def splat(builder, vector, value):
    """``vector`` with ``value`` in every lane."""
    result = ir.Constant(vector, ir.Undefined)
    for lane in range(vector.count):
        result = builder.insert_element(result, value, ir.IntType(32)(lane))
    return result


def shuffled(builder, first, second, order):
    """The lanes ``order`` of ``first`` followed by ``second`` (``second`` may be None)."""
    if second is None:
        second = ir.Constant(first.type, ir.Undefined)
    mask = ir.Constant(ir.VectorType(ir.IntType(32), len(order)), list(order))
    return builder.shuffle_vector(first, second, mask)


def complex_product(builder, coefficients, state, vector):
    """``coefficients * state`` of interleaved complex vectors ``(re, im, re, im, ...)``:
    ``(a.re s.re - a.im s.im, a.re s.im + a.im s.re)``; ``coefficients`` is a vector or the
    ``(re, im)`` of one number."""
    lanes = range(vector.count)
    if isinstance(coefficients, tuple):
        real, imaginary = (splat(builder, vector, part) for part in coefficients)
    else:
        real, imaginary = (
            shuffled(builder, coefficients, None, [lane - lane % 2 + part for lane in lanes])
            for part in (0, 1)
        )
    swapped = shuffled(builder, state, None, [lane ^ 1 for lane in lanes])
    signs = ir.Constant(vector, [-1.0 if lane % 2 == 0 else 1.0 for lane in lanes])
    cross = builder.fmul(builder.fmul(imaginary, swapped), signs)
    return builder.fadd(builder.fmul(real, state, flags=["contract"]), cross, flags=["contract"])


def multiply_add(builder, coefficients, state, b, vector, complex_):
    """``coefficients * state + b`` on vectors of ``vector``'s type, one rounding per
    multiply-add where the loop's ``contract`` fast-math fuses them too."""
    if complex_:
        product = complex_product(builder, coefficients, state, vector)
    else:
        product = builder.fmul(coefficients, state, flags=["contract"])
    return builder.fadd(product, b, flags=["contract"])


def streaming_store(builder, value, pointer, align):
    """Store the vector ``value`` at ``pointer``, which is ``align``-aligned (the vector's
    size), as a non-temporal store: to memory without reading the line into the cache first
    (:mod:`scanlab.cpu.streaming`)."""
    store = builder.store(value, pointer, align=align)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.IntType(32)(1)]))


def transposed(builder, rows):
    """The transpose of the square matrix whose rows are the vectors ``rows``: for each bit of
    the index, from the highest, the off-diagonal blocks of that size swap places."""
    rows = list(rows)
    size = len(rows)
    block = size // 2
    while block:
        for first in range(size):
            if first & block:
                continue
            low = [c if not c & block else size + c - block for c in range(size)]
            high = [c + block if not c & block else size + c for c in range(size)]
            second = first + block
            rows[first], rows[second] = (
                shuffled(builder, rows[first], rows[second], low),
                shuffled(builder, rows[first], rows[second], high),
            )
        block //= 2
    return rows
