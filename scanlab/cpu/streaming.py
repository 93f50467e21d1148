"""Steps of the elementwise recurrence that write their results around the cache.

A loop over time that reads ``a[t]`` and ``b[t]`` and writes ``h[t]`` moves three arrays, but an
ordinary store first reads the line it writes into the cache (a read for ownership): four arrays'
worth of memory traffic. A *non-temporal* (streaming) store sends whole lines to memory without
that read, as ``memcpy`` does for large copies, so a recurrence whose arrays do not fit in the
cache runs up to 4/3 faster than the loop a user would write (and than ``numpy.multiply`` on the
same arrays; ``benchmarks/RESULTS.md``). A result that would have stayed in the cache is the
price: :func:`streams` takes this path only for results larger than most of the last-level
cache (``scanlab.config.cpu.streaming_store_bytes``), and the kernels only where this machine
was measured to write faster so (``scanlab.cpu.auto.streaming_choice``: not every CPU does;
an AMD Zen 4 VM wrote rows of one line 1.2-1.6x slower with them).

Numba has no vector types and no way to mark a store non-temporal, so :func:`stream_step` writes
one vector of ``LANE_BYTES`` in LLVM IR: loads of ``a``, ``b`` and the state, a fused
multiply-add (the same rounding as the loop's ``contract`` fast-math), and a streaming store of an
aligned line of ``out``. On CPUs with narrower vectors LLVM splits it into several.
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from scanlab import config, wisdom
from scanlab.cpu.vector_ir import (
    LANE_BYTES,
    checked_dtype,
    element_type,
    multiply_add,
    splat,
    streaming_store,
    vector_pointer,
)

#: Where the last-level cache's size is unknown, results from this many bytes are streamed.
UNKNOWN_CACHE_THRESHOLD = 24 * 1024 * 1024


def streaming_threshold() -> int:
    """Bytes of a result from which it is written with streaming stores:
    ``config.cpu.streaming_store_bytes``, or by default three quarters of the last-level cache
    (glibc's threshold for ``memcpy``): a larger result cannot stay cached beside its inputs."""
    if config.cpu.streaming_store_bytes is not None:
        return config.cpu.streaming_store_bytes
    cache = wisdom.last_level_cache_bytes()
    return UNKNOWN_CACHE_THRESHOLD if cache is None else cache * 3 // 4


def streams(out: np.ndarray, channel_block: int) -> bool:
    """Whether the sequential kernel writes ``out`` (``(T, D)``, C-contiguous, real or complex)
    with :func:`stream_step`: at least :func:`streaming_threshold` bytes, and every block of
    ``channel_block`` channels of every row starting on a line boundary (the result arrays
    scanlab allocates are aligned: ``scanlab._arrays.aligned_empty``)."""
    if out.dtype.kind not in "fc" or out.nbytes < streaming_threshold():
        return False
    lines = (out.shape[1] * out.itemsize, min(channel_block, out.shape[1]) * out.itemsize)
    return out.ctypes.data % LANE_BYTES == 0 and all(size % LANE_BYTES == 0 for size in lines)


@intrinsic
def stream_step(typingctx, coefficients, b_t, state, out_t, first, offset):
    """For the channels of ``state`` from ``first`` that fill ``LANE_BYTES``, which are
    those of the rows from ``offset + first``: ``state = coefficients * state + b_t``, and
    ``out_t`` the same, written with a streaming store.

    ``coefficients`` is a row like ``b_t`` or one number for every channel; all are 1-D
    C-contiguous of one real or complex dtype, and ``out_t[offset + first:]`` starts on a
    ``LANE_BYTES`` boundary.
    """
    row = isinstance(coefficients, types.Array)
    rows = (b_t, state, out_t, coefficients) if row else (b_t, state, out_t)
    dtype = checked_dtype("stream_step", rows, ndim=1)
    if not row and coefficients != dtype:
        raise TypeError(f"stream_step's coefficients must be {dtype}, got {coefficients}")
    complex_ = isinstance(dtype, types.Complex)
    component, itemsize = element_type(dtype)

    def codegen(context, builder, signature, args):
        coefficient_value, b_value, state_value, out_value, first_value, offset_value = args
        vector = ir.VectorType(context.get_data_type(component), LANE_BYTES // itemsize)
        first_value = context.cast(builder, first_value, signature.args[4], types.intp)
        offset_value = context.cast(builder, offset_value, signature.args[5], types.intp)
        channel = builder.add(first_value, offset_value)

        def load(position, value):
            index = first_value if position == 2 else channel
            pointer = vector_pointer(
                context, builder, signature.args[position], value, index, vector
            )
            return pointer, builder.load(pointer, align=itemsize)

        if row:
            a_vector = load(0, coefficient_value)[1]
        elif complex_:
            a_vector = tuple(builder.extract_value(coefficient_value, part) for part in (0, 1))
        else:
            a_vector = splat(builder, vector, coefficient_value)
        state_pointer, state_vector = load(2, state_value)
        value = multiply_add(builder, a_vector, state_vector, load(1, b_value)[1], vector, complex_)
        builder.store(value, state_pointer, align=itemsize)
        out_pointer = vector_pointer(
            context, builder, signature.args[3], out_value, channel, vector
        )
        streaming_store(builder, value, out_pointer, LANE_BYTES)
        return context.get_dummy_value()

    return types.void(coefficients, b_t, state, out_t, first, offset), codegen


@intrinsic
def store_fence(typingctx):
    """Order every streaming store before the stores that follow (they are weakly ordered):
    the end of a thread's share of the work, before another thread may read it."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen
