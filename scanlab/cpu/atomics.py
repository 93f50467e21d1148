"""Atomic operations on int64 array elements, for kernels that run on several threads at once.

A kernel that must not wait for a descheduled thread (a busy neighbour) has its threads take
work from a counter and publish results as they go, instead of a fixed share each. These are
LLVM's sequentially consistent atomics: a store publishes every write made before it, and a load
that sees it sees them too.
"""

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def element_pointer(context, builder, array_type, array, index):
    """LLVM pointer to ``array[index]`` of a 1-D array."""
    array_struct = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array_struct, [index])


def check_counter(array):
    """Typing guard: the atomics take 1-D int64 arrays."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.int64):
        raise TypeError(f"atomics need a 1-D int64 array, got {array}")


@intrinsic
def fetch_add(typingctx, array, index, value):
    """``array[index] += value`` atomically; returns the element's previous value."""
    check_counter(array)

    def codegen(context, builder, signature, args):
        array_value, index_value, increment = args
        pointer = element_pointer(context, builder, signature.args[0], array_value, index_value)
        increment = context.cast(builder, increment, signature.args[2], types.int64)
        return builder.atomic_rmw("add", pointer, increment, "seq_cst")

    return types.int64(array, types.intp, types.int64), codegen


@intrinsic
def load(typingctx, array, index):
    """``array[index]``, read atomically."""
    check_counter(array)

    def codegen(context, builder, signature, args):
        pointer = element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "seq_cst", 8)

    return types.int64(array, types.intp), codegen


@intrinsic
def store(typingctx, array, index, value):
    """``array[index] = value``, written atomically after every write before it."""
    check_counter(array)

    def codegen(context, builder, signature, args):
        pointer = element_pointer(context, builder, signature.args[0], args[0], args[1])
        value = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(value, pointer, "seq_cst", 8)
        return context.get_dummy_value()

    return types.none(array, types.intp, types.int64), codegen
