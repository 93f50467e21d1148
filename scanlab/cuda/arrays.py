"""GPU arrays in place: the kernel layout of :mod:`scanlab._arrays`, made on the GPU.

An operand that is a GPU array (it exposes ``__cuda_array_interface__``: CuPy, PyTorch CUDA
tensors, Numba device arrays) is read where it lies. When it already has the kernel layout (time
first, C-contiguous, the result dtype) the kernels read it without a copy; otherwise one pass of
:func:`strided_copy_kernel` on the GPU moves the time axis to the front, broadcasts and casts it.
Host operands (scalars, NumPy arrays) are laid out on the host and copied to the GPU. The result
is a new Numba device array, or ``out`` (any writable GPU array) written in place.

Everything is queued on the default stream. The producer's stream of each GPU operand, when its
interface names one, is synchronised first, as by ``numba.cuda.as_cuda_array``.
"""

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda

from scanlab import _arrays, config
from scanlab._arrays import Layout, LinearProblem, array_interface, check_output, stand_in
from scanlab._devices import on_gpu

#: The most blocks :func:`strided_copy_kernel` is launched with along the last axis (of
#: ``config.cuda.threads_per_block`` threads) and along the rows (the grid's y limit); beyond,
#: each thread copies several elements.
COPY_BLOCKS, COPY_ROWS = 4096, 65535

#: The (source, destination) dtypes :func:`kernel_signatures` lists for :func:`strided_copy_kernel`:
#: every promotion between compute dtypes, and the common integers and bools to float64.
COPY_DTYPES = [
    (source, destination)
    for destination in _arrays.COMPUTE_DTYPES
    for source in _arrays.COMPUTE_DTYPES
    if np.can_cast(source, destination)
] + [(np.dtype(name), np.dtype(np.float64)) for name in ("bool", "int32", "int64")]


@cuda.jit
def strided_copy_kernel(source, destination, source_start, destination_start, geometry):
    """``destination[...] = source[...]`` over the elements of a strided index space.

    Element ``(i_0, ..., i_k)`` of the index space, of shape ``geometry[0]``, is
    ``source[source_start + sum(i * geometry[1])]`` and ``destination[destination_start + sum(i *
    geometry[2])]``: ``geometry`` holds the shape and both arrays' strides, in elements (zero to
    broadcast). Values are converted to the destination's dtype.

    The grid's y dimension walks the rows (every axis but the last) and its x dimension the last
    axis, so that index arithmetic (divisions) is done once per row and thread, not per element,
    and consecutive threads touch consecutive elements of the last axis.
    """
    shape = geometry[0]
    last = shape.shape[0] - 1
    rows = 1
    for axis in range(last):
        rows *= shape[axis]
    for row in range(cuda.blockIdx.y, rows, cuda.gridDim.y):
        remainder = row
        source_row, destination_row = source_start, destination_start
        for axis in range(last - 1, -1, -1):
            index = remainder % shape[axis]
            remainder //= shape[axis]
            source_row += index * geometry[1, axis]
            destination_row += index * geometry[2, axis]
        first = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        for column in range(first, shape[last], cuda.blockDim.x * cuda.gridDim.x):
            element = source[source_row + column * geometry[1, last]]
            destination[destination_row + column * geometry[2, last]] = element


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per pair of :data:`COPY_DTYPES`; compile one to PTX without a GPU with
        ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    return [
        (
            strided_copy_kernel,
            f"void({numba.from_dtype(source)}[::1], {numba.from_dtype(destination)}[::1], "
            "int64, int64, int64[:, ::1])",
        )
        for source, destination in COPY_DTYPES
    ]


@dataclass(frozen=True)
class Strided:
    """A GPU array's elements as :func:`strided_copy_kernel` reads and writes them.

    ``memory`` is a 1-D device array over the array's bytes, from its lowest element to its
    highest; element ``(i_0, ..., i_k)`` is ``memory[start + sum(i * strides)]``.
    """

    memory: object
    start: int
    shape: tuple
    strides: tuple

    @classmethod
    def of(cls, value) -> "Strided":
        """The elements of ``value``, a non-empty GPU array, without a copy."""
        interface = array_interface(value)
        dtype = np.dtype(interface["typestr"])
        shape = tuple(interface["shape"])
        byte_strides = interface.get("strides") or contiguous_strides(shape, dtype.itemsize)
        if any(stride % dtype.itemsize for stride in byte_strides):
            raise ValueError(
                f"a GPU array of shape {shape} has strides {tuple(byte_strides)} bytes, which are "
                f"not whole {dtype} elements; copy it (e.g. with .copy()) first"
            )
        strides = tuple(stride // dtype.itemsize for stride in byte_strides)
        lowest = sum(
            min(0, (size - 1) * stride) for size, stride in zip(shape, strides, strict=True)
        )
        highest = sum(
            max(0, (size - 1) * stride) for size, stride in zip(shape, strides, strict=True)
        )
        memory = memory_view(value, interface, lowest, highest - lowest + 1)
        return cls(memory, -lowest, shape, strides)

    @classmethod
    def contiguous(cls, memory, shape: tuple) -> "Strided":
        """The C-contiguous array of ``shape`` over the 1-D device array ``memory``."""
        return cls(memory, 0, shape, contiguous_strides(shape, 1))

    def expanded(self, shape: tuple) -> "Strided":
        """Broadcast to ``shape`` as NumPy does: new leading axes and length-1 axes repeat."""
        missing = len(shape) - len(self.shape)
        strides = (0,) * missing + tuple(
            stride if size == target else 0
            for size, target, stride in zip(self.shape, shape[missing:], self.strides, strict=True)
        )
        return Strided(self.memory, self.start, tuple(shape), strides)

    def time_first(self, axis: int) -> "Strided":
        """Axis ``axis`` moved to the front, as ``numpy.moveaxis(array, axis, 0)``."""
        order = [axis] + [other for other in range(len(self.shape)) if other != axis]
        return Strided(
            self.memory,
            self.start,
            tuple(self.shape[index] for index in order),
            tuple(self.strides[index] for index in order),
        )

    @property
    def is_contiguous(self) -> bool:
        """Whether the elements fill ``memory`` in C order (length-1 axes aside)."""
        expected = contiguous_strides(self.shape, 1)
        return self.memory.size == math.prod(self.shape) and all(
            size == 1 or stride == wanted
            for size, stride, wanted in zip(self.shape, self.strides, expected, strict=True)
        )

    def copy_into(self, destination: "Strided") -> None:
        """Launch :func:`strided_copy_kernel` from these elements into ``destination``'s.

        Axes of length 1 are dropped, and one of length 1 leads, so the kernel always has rows.
        """
        kept = [axis for axis, size in enumerate(self.shape) if size != 1]
        geometry = np.array(
            [[first] + [row[axis] for axis in kept]
             for first, row in ((1, self.shape), (0, self.strides), (0, destination.strides))],
            np.int64,
        )  # fmt: skip
        threads = config.cuda.threads_per_block
        rows, columns = int(math.prod(geometry[0, :-1])), int(geometry[0, -1])
        blocks = (min(COPY_BLOCKS, -(-columns // threads)), min(COPY_ROWS, rows))
        strided_copy_kernel[blocks, threads](
            self.memory, destination.memory, self.start, destination.start, cuda.to_device(geometry)
        )

    def as_contiguous(self, dtype):
        """The elements as a C-contiguous device array of ``dtype``: ``memory`` itself when it
        already is one, else a copy made on the GPU."""
        if self.memory.dtype == dtype and self.is_contiguous:
            return self.memory.reshape(self.shape)
        copy = cuda.device_array(math.prod(self.shape), dtype)
        self.copy_into(Strided.contiguous(copy, self.shape))
        return copy.reshape(self.shape)


def contiguous_strides(shape: tuple, itemsize: int) -> tuple:
    """The strides of a C-contiguous array of ``shape``, in units of ``itemsize``."""
    strides, step = [], itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


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


class HostMemory:
    """An ``__array_interface__`` for NumPy over host memory that ``owner`` holds (simulator)."""

    def __init__(self, interface: dict, owner):
        self.__array_interface__ = interface
        self.owner = owner


def address_range(array) -> tuple:
    """The first and one-past-last byte address of a C-contiguous device array."""
    start = array_interface(array)["data"][0]
    return start, start + array.size * array.dtype.itemsize


def overlaps(array, others) -> bool:
    """Whether the C-contiguous device array ``array`` shares bytes with any of ``others``."""
    start, end = address_range(array)
    return any(
        other_start < end and start < other_end
        for other_start, other_end in map(address_range, others)
    )


@dataclass
class DeviceLinearProblem(LinearProblem):
    """A :class:`scanlab._arrays.LinearProblem` whose arrays are all device arrays.

    ``result`` is what the solver returns: ``out`` as given, or a new device array.
    """

    layout: Layout = None
    on_device = True

    def finish(self):
        """Move the kernel's output into ``result`` on the GPU unless the kernel wrote there."""
        if not self.writes_result:
            layout = self.layout
            time_major = layout.shape[layout.axis : layout.axis + 1] + layout.rest + layout.state
            source = Strided.contiguous(self.kernel_out.reshape(-1), time_major)
            source.copy_into(Strided.of(self.result).time_first(layout.axis))
        return self.result


def lay_out(a, b, h0, layout: Layout, out) -> DeviceLinearProblem:
    """The kernel layout, on the GPU, of a checked recurrence with GPU operands.

    Twin of :func:`scanlab._arrays.lay_out`: the same arrays, as device arrays.
    """
    shape, axis, state, dtype = layout.shape, layout.axis, layout.state, layout.dtype
    result = output_array(out, layout)
    kernel_shape = (shape[axis], math.prod(layout.rest), *state)
    if math.prod(shape) == 0:
        empty = cuda.device_array(kernel_shape, dtype)
        return DeviceLinearProblem(empty, empty, empty, empty, result, axis, True, layout)
    kernel_a = time_major(a, layout, state * 2)
    kernel_b = time_major(b, layout, state)
    kernel_h0 = initial_state(h0, layout)
    result_view = Strided.of(result).time_first(axis)
    writes_result = result_view.is_contiguous and not overlaps(
        result_view.memory, (kernel_a, kernel_b, kernel_h0)
    )
    kernel_out = (
        result_view.memory.reshape(kernel_shape)
        if writes_result
        else cuda.device_array(kernel_shape, dtype)
    )
    return DeviceLinearProblem(
        kernel_a, kernel_b, kernel_h0, kernel_out, result, axis, writes_result, layout
    )


def time_major(value, layout: Layout, core: tuple):
    """``value`` (host or GPU) as a C-contiguous ``(T or 1, D or 1, *core)`` device array.

    Twin of :func:`scanlab._arrays.as_time_major`: an operand constant over every channel axis
    keeps a single column, one that varies over some of them is expanded to all ``D``.
    """
    leading, axis, rest = layout.leading, layout.axis, layout.rest
    if not on_gpu(value):
        array = np.asarray(value)
        return cuda.to_device(_arrays.as_time_major(array, leading, axis, rest, layout.dtype, core))
    source = Strided.of(value)
    view = source.expanded((1,) * (leading + len(core) - len(source.shape)) + source.shape)
    view = view.time_first(axis)
    middle = view.shape[1:leading]
    if middle != rest and any(size != 1 for size in middle):
        view = view.expanded(view.shape[:1] + rest + core)
    channels = math.prod(view.shape[1:leading])
    return view.as_contiguous(layout.dtype).reshape(view.shape[0], channels, *core)


def initial_state(h0, layout: Layout):
    """``h0`` (None, host or GPU) as a C-contiguous ``(D, *state)`` device array."""
    shape = (math.prod(layout.rest), *layout.state)
    if not on_gpu(h0):
        host = _arrays.initial_state(
            h0, layout.initial_shape, layout.dtype, layout.shape, layout.axis
        )
        return cuda.to_device(host.reshape(shape))
    view = Strided.of(h0).expanded(layout.initial_shape)
    return view.as_contiguous(layout.dtype).reshape(shape)


def output_array(out, layout: Layout):
    """``out``, a GPU array checked against the result, or a new device array."""
    if out is None:
        return cuda.device_array(layout.shape, layout.dtype)
    if not on_gpu(out):
        raise TypeError(
            f"out is a host array ({type(out).__name__}), but the result stays on the GPU, "
            "where the operands are: pass a GPU array as out, or none"
        )
    check_output(stand_in(out), layout.shape, layout.dtype, array_interface(out)["data"][1])
    return out
