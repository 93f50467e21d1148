"""Device memory for the kernels: arrays set by a memset on the GPU (:func:`filled`), the
temporaries that a solver's consecutive calls reuse instead of allocating them at each
(:class:`Scratch`), and Numba's views of any GPU array's memory (:func:`memory_view`,
:func:`numba_view`)."""

import contextvars
import math

import numba
import numpy as np
from numba import cuda
from numba.cuda.cudadrv import driver


def filled(shape, dtype, byte: int, allocate=cuda.device_array):
    """A new C-contiguous device array whose every byte is ``byte`` (from ``allocate``, e.g.
    :func:`scratch`).

    The memset is queued on the default stream: unlike an upload (``cuda.to_device``), it does
    not make the host wait for the GPU work queued before it.
    """
    memory = allocate(int(np.prod(shape)), dtype)
    fill(memory, byte)
    return memory.reshape(shape)


def fill(array, byte: int) -> None:
    """Set every byte of the C-contiguous device ``array`` to ``byte``, in place (a memset on
    the default stream, see :func:`filled`)."""
    if array.size:  # 1-D: the simulator's memset needs it
        memory = array.reshape(array.size)
        driver.device_memset(memory, byte, memory.nbytes, stream=cuda.default_stream())


def zeros(shape, dtype, allocate=cuda.device_array):
    """A new C-contiguous device array of zeros, set on the GPU (see :func:`filled`)."""
    return filled(shape, dtype, 0, allocate)


class Scratch:
    """Device memory reused for the temporaries of a solver's consecutive calls (the scans'
    tile totals, carries and flags in each of Newton's corrections), instead of allocated at
    every call: ``with scratch: ...`` makes :func:`scratch` take them from it.

    The requests of one use get disjoint parts of one buffer, which the next use takes again:
    safe because every kernel is queued on the default stream, in order. What does not fit is
    allocated afresh, and the next use starts with a buffer of the size the last one needed.
    In use on one host thread at a time, not nested (the calls of two threads would interleave
    on the stream).
    """

    #: Bytes each part is aligned to (as ``cudaMalloc``'s allocations are).
    ALIGNMENT = 256

    def __init__(self):
        self.memory = None
        self.needed = 0
        self.token = None

    def __enter__(self) -> "Scratch":
        if self.memory is None or self.needed > self.memory.size:
            self.memory = cuda.device_array(max(self.needed, self.ALIGNMENT), np.uint8)
        self.needed = 0
        self.token = ACTIVE_SCRATCH.set(self)
        return self

    def __exit__(self, *exception) -> None:
        ACTIVE_SCRATCH.reset(self.token)

    def take(self, shape, dtype):
        """An uninitialised C-contiguous device array of ``shape`` and ``dtype``."""
        dtype = np.dtype(dtype)
        size = math.prod(np.atleast_1d(shape)) * dtype.itemsize
        start = self.needed
        self.needed += -(-size // self.ALIGNMENT) * self.ALIGNMENT
        if not size or self.needed > self.memory.size:
            return cuda.device_array(shape, dtype)
        return self.memory[start : start + size].view(dtype).reshape(shape)


#: The :class:`Scratch` in use in this thread (and context), if any.
ACTIVE_SCRATCH = contextvars.ContextVar("scanlab.cuda.memory.ACTIVE_SCRATCH", default=None)


def scratch(shape, dtype):
    """A device array for a solver's temporaries: from the :class:`Scratch` in use, else newly
    allocated."""
    active = ACTIVE_SCRATCH.get()
    return cuda.device_array(shape, dtype) if active is None else active.take(shape, dtype)


def memory_view(owner, interface: dict, offset: int, length: int):
    """A 1-D device array of ``length`` elements from element ``offset`` of ``interface``'s
    data, keeping ``owner`` alive."""
    dtype = np.dtype(interface["typestr"])
    pointer, read_only = interface["data"]
    view = {
        "shape": (length,),
        "strides": None,
        "typestr": interface["typestr"],
        "data": (pointer + offset * dtype.itemsize, read_only),
        "version": 3,
    }
    if numba.config.ENABLE_CUDASIM:  # "device" memory is host memory
        return cuda.devicearray.FakeCUDAArray(np.asarray(HostMemory(view, owner)))
    if interface.get("stream") is not None:
        view["stream"] = interface["stream"]
    return cuda.from_cuda_array_interface(view, owner=owner, sync=True)


def numba_view(value):
    """A GPU array as a Numba device array over its memory, strides kept (a kernel takes such
    arrays inside a tuple, where it does not convert CuPy's or PyTorch's)."""
    if not hasattr(value, "__cuda_array_interface__"):  # the simulator's own arrays
        return value
    if not numba.config.ENABLE_CUDASIM:
        return cuda.as_cuda_array(value)
    interface = value.__cuda_array_interface__
    view = {key: interface.get(key) for key in ("shape", "strides", "typestr", "data")}
    return cuda.devicearray.FakeCUDAArray(np.asarray(HostMemory({**view, "version": 3}, value)))


class HostMemory:
    """An ``__array_interface__`` for NumPy over host memory that ``owner`` holds (simulator)."""

    def __init__(self, interface: dict, owner):
        self.__array_interface__ = interface
        self.owner = owner
