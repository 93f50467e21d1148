"""Elementwise passes over device arrays, the small steps between the solvers' kernels (the
returns' ``A + V``, a layer's ``o * c``): the kernels walk the arrays' elements in one
grid-stride loop over their C-contiguous memory, so that every thread has work whatever the
last axis' length."""

import math

from numba import cuda

from scanlab import config
from scanlab.cuda.kernel_layout import DTYPES

#: The most blocks of an elementwise launch (of ``config.cuda.threads_per_block`` threads):
#: beyond, each thread takes several elements.
ELEMENTWISE_BLOCKS = 8192


@cuda.jit
def sum_kernel(first_term, second_term, out):
    """``out = first_term + second_term`` over 1-D arrays."""
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[k] = first_term[k] + second_term[k]


@cuda.jit
def product_kernel(first_factor, second_factor, out):
    """``out = first_factor * second_factor`` over 1-D arrays."""
    for k in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[k] = first_factor[k] * second_factor[k]


def launch_flat(kernel, count: int):
    """``kernel`` configured for a 1-D grid-stride loop over ``count`` elements."""
    threads = config.cuda.threads_per_block
    return kernel[max(1, min(ELEMENTWISE_BLOCKS, math.ceil(count / threads))), threads]


def add(first_term, second_term, out) -> None:
    """``out = first_term + second_term`` for C-contiguous device arrays of one shape and
    dtype (``out`` may be one of the terms)."""
    if out.size:
        flat = (first_term.reshape(-1), second_term.reshape(-1), out.reshape(-1))
        launch_flat(sum_kernel, out.size)(*flat)


def multiply(first_factor, second_factor):
    """``first_factor * second_factor`` of C-contiguous device arrays of one shape and dtype, a
    new device array."""
    out = cuda.device_array(first_factor.shape, first_factor.dtype)
    if out.size:
        flat = (first_factor.reshape(-1), second_factor.reshape(-1), out.reshape(-1))
        launch_flat(product_kernel, out.size)(*flat)
    return out


def kernel_signatures():
    """The kernels with each real dtype's signature, for ``cuda.compile_ptx``."""
    signatures = []
    for dtype in DTYPES[:2]:
        vector = f"{dtype}[::1]"
        signatures += [
            (sum_kernel, f"void({vector}, {vector}, {vector})"),
            (product_kernel, f"void({vector}, {vector}, {vector})"),
        ]
    return signatures
