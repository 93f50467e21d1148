"""Elementwise passes over device arrays, the small steps between the solvers' kernels (the
returns' ``A + V``, a layer's ``o * c``): the kernels walk the arrays' elements in one
grid-stride loop over their C-contiguous memory, so that every thread has work whatever the
last axis' length. And a sequence's steps shifted by one (a layer's state before each step),
copies on the GPU."""

import math

from numba import cuda

from scanlab import config
from scanlab.cuda.arrays import on_device
from scanlab.cuda.kernel_layout import DTYPES
from scanlab.cuda.memory import fill

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


def previous_states(states, h0):
    """``h[t-1]`` at every step of ``states`` (``(T, ...)``) and ``h0`` (zeros when None) at
    the first, both host or C-contiguous device arrays: a new device array, each element
    written once."""
    previous = cuda.device_array(states.shape, states.dtype)
    if previous.size:
        if h0 is None:
            fill(previous[0], 0)
        else:
            previous[0].copy_to_device(on_device(h0))
        if states.shape[0] > 1:
            previous[1:].copy_to_device(on_device(states)[:-1])
    return previous


def following_gradients(dprevious):
    """The states' gradients from those of :func:`previous_states` (their ``states[:-1]``
    part): ``dprevious[1:]``, then zeros; a new device array, each element written once."""
    gradients = cuda.device_array(dprevious.shape, dprevious.dtype)
    if gradients.size:
        fill(gradients[-1], 0)
        if dprevious.shape[0] > 1:
            gradients[:-1].copy_to_device(dprevious[1:])
    return gradients


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
