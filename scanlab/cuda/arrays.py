"""GPU arrays in place: the kernel layout of :mod:`scanlab._arrays`, made on the GPU.

An operand that is a GPU array (it exposes ``__cuda_array_interface__``: CuPy, PyTorch CUDA
tensors, Numba device arrays) is read where it lies. When it already has the kernel layout (time
first, C-contiguous, the result dtype) the kernels read it without a copy; otherwise one pass of
:func:`strided_copy_kernel` (or of :func:`tiled_transpose_kernel`, when the copy transposes) on the
GPU moves the time axis to the front, broadcasts and casts it.
Host operands (scalars, NumPy arrays) are laid out on the host and copied to the GPU. The result
is a new Numba device array, or ``out`` (any writable GPU array) written in place.

Everything is queued on the default stream. The producer's stream of each GPU operand, when its
interface names one, is synchronised first, as by ``numba.cuda.as_cuda_array``. Zeros (and other
fills) are set by a memset on the GPU, which the host does not wait for; uploads (host operands,
and the ``geometry`` of each copy) wait for the GPU work queued before them.
"""

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import cuda

from scanlab import _arrays, config
from scanlab._arrays import Layout, LinearProblem, array_interface, check_output, stand_in
from scanlab._devices import on_gpu
from scanlab.cuda.memory import memory_view, zeros

#: The most blocks the copy kernels are launched with along the last axis (of
#: ``config.cuda.threads_per_block`` threads, or of ``TILE`` elements) and along the rows or the
#: tiles across them (the grid's y and z limit); beyond, each thread copies several elements.
COPY_BLOCKS, COPY_ROWS = 4096, 65535

#: The side of the square tiles :func:`tiled_transpose_kernel` copies (a warp's width: a warp reads
#: a tile's row and writes its column), and the rows of threads of its blocks (``TILE`` by
#: ``TILE_ROWS`` threads, each moving ``TILE // TILE_ROWS`` elements in and out). Fixed, unlike
#: ``config.cuda.threads_per_block``: the kernel's index arithmetic assumes it.
TILE, TILE_ROWS = 32, 8

#: Elements between the rows of a tile in shared memory: one column of padding puts the elements
#: of a tile's column in different banks, so that a warp reads a column (to write it out)
#: without bank conflicts.
TILE_PITCH = TILE + 1

#: The (source, destination) dtypes :func:`kernel_signatures` lists for the copy kernels:
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
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for row in range(start, rows, down):
        remainder = row
        source_row, destination_row = source_start, destination_start
        for axis in range(last - 1, -1, -1):
            index = remainder % shape[axis]
            remainder //= shape[axis]
            source_row += index * geometry[1, axis]
            destination_row += index * geometry[2, axis]
        for column in range(first, shape[last], across):
            element = source[source_row + column * geometry[1, last]]
            destination[destination_row + column * geometry[2, last]] = element


@cuda.jit
def tiled_transpose_kernel(
    source, destination, source_start, destination_start, geometry, tile_axis
):
    """:func:`strided_copy_kernel` through shared memory, for copies that transpose.

    The same copy, for index spaces whose axis ``tile_axis`` (not the last) is the source's
    innermost and whose last axis is the destination's. Each block copies ``TILE`` by ``TILE``
    tiles over (``tile_axis``, last axis) of one row of the other axes: its threads read a tile
    with consecutive threads along ``tile_axis`` into a shared array of the destination's dtype
    (converting), then write it with consecutive threads along the last axis: both passes are
    coalesced.

    The grid's x dimension walks the tiles along the last axis, its y dimension those along
    ``tile_axis`` and its z dimension the rows of the other axes, whose index arithmetic
    (divisions) is done once per row and block. Blocks are ``(TILE, TILE_ROWS)`` threads.
    """
    # Dynamic shared memory (TILE rows of TILE_PITCH), like every kernel of scanlab: the CUDA
    # simulator allocates a static shared array racily (threads of a block may get different
    # arrays), which made this kernel fail there now and then.
    tile = cuda.shared.array(0, destination.dtype)
    shape = geometry[0]
    last = shape.shape[0] - 1
    across, along = shape[tile_axis], shape[last]
    source_across, source_along = geometry[1, tile_axis], geometry[1, last]
    destination_across, destination_along = geometry[2, tile_axis], geometry[2, last]
    lane, warp = cuda.threadIdx.x, cuda.threadIdx.y
    rows = 1
    for axis in range(last):
        if axis != tile_axis:
            rows *= shape[axis]
    for row in range(cuda.blockIdx.z, rows, cuda.gridDim.z):
        remainder = row
        source_row, destination_row = source_start, destination_start
        for axis in range(last - 1, -1, -1):
            if axis != tile_axis:
                index = remainder % shape[axis]
                remainder //= shape[axis]
                source_row += index * geometry[1, axis]
                destination_row += index * geometry[2, axis]
        for first_across in range(cuda.blockIdx.y * TILE, across, cuda.gridDim.y * TILE):
            tile_across = min(TILE, across - first_across)
            for first_along in range(cuda.blockIdx.x * TILE, along, cuda.gridDim.x * TILE):
                tile_along = min(TILE, along - first_along)
                if lane < tile_across:
                    source_column = source_row + (first_across + lane) * source_across
                    for offset in range(warp, tile_along, TILE_ROWS):
                        tile[offset * TILE_PITCH + lane] = source[
                            source_column + (first_along + offset) * source_along
                        ]
                cuda.syncthreads()
                if lane < tile_along:
                    destination_column = destination_row + (first_along + lane) * destination_along
                    for offset in range(warp, tile_across, TILE_ROWS):
                        destination[
                            destination_column + (first_across + offset) * destination_across
                        ] = tile[lane * TILE_PITCH + offset]
                cuda.syncthreads()


def kernel_signatures():
    """List every kernel of this module with each signature its launchers compile.

    Returns
    -------
    list of (numba.cuda.dispatcher.CUDADispatcher, str)
        One entry per kernel and pair of :data:`COPY_DTYPES`; compile one to PTX without a GPU
        with ``cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))``.
    """
    signatures = []
    for source, destination in COPY_DTYPES:
        arrays = f"{numba.from_dtype(source)}[::1], {numba.from_dtype(destination)}[::1]"
        signatures += [
            (strided_copy_kernel, f"void({arrays}, int64, int64, int64[:, ::1])"),
            (tiled_transpose_kernel, f"void({arrays}, int64, int64, int64[:, ::1], int64)"),
        ]
    return signatures


@dataclass(frozen=True)
class Strided:
    """A GPU array's elements as the copy kernels read and write them.

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
        return self.permuted([axis] + [other for other in range(len(self.shape)) if other != axis])

    def permuted(self, order) -> "Strided":
        """The axes in ``order``, as ``numpy.transpose(array, order)``."""
        return Strided(
            self.memory,
            self.start,
            tuple(self.shape[index] for index in order),
            tuple(self.strides[index] for index in order),
        )

    def sliced(self, axis: int, start: int, stop: int) -> "Strided":
        """Indices ``start`` to ``stop`` (exclusive, both in range) along ``axis``."""
        shape = self.shape[:axis] + (stop - start,) + self.shape[axis + 1 :]
        return Strided(self.memory, self.start + start * self.strides[axis], shape, self.strides)

    def at(self, axis: int, index: int) -> "Strided":
        """Index ``index`` along ``axis``, which is dropped."""
        return Strided(
            self.memory,
            self.start + index * self.strides[axis],
            self.shape[:axis] + self.shape[axis + 1 :],
            self.strides[:axis] + self.strides[axis + 1 :],
        )

    def with_axis(self, position: int, size: int) -> "Strided":
        """A new axis of ``size`` at ``position`` along which the elements repeat (stride 0)."""
        return Strided(
            self.memory,
            self.start,
            self.shape[:position] + (size,) + self.shape[position:],
            self.strides[:position] + (0,) + self.strides[position:],
        )

    @property
    def __cuda_array_interface__(self) -> dict:
        """These elements as a GPU array that scanlab's solvers (or CuPy, PyTorch) can take."""
        itemsize = self.memory.dtype.itemsize
        return {
            "shape": self.shape,
            "strides": tuple(stride * itemsize for stride in self.strides),
            "typestr": self.memory.dtype.str,
            "data": (array_interface(self.memory)["data"][0] + self.start * itemsize, False),
            "version": 3,
        }

    @property
    def is_contiguous(self) -> bool:
        """Whether the elements fill ``memory`` in C order (length-1 axes aside)."""
        expected = contiguous_strides(self.shape, 1)
        return self.memory.size == math.prod(self.shape) and all(
            size == 1 or stride == wanted
            for size, stride, wanted in zip(self.shape, self.strides, expected, strict=True)
        )

    def copy_into(self, destination: "Strided") -> None:
        """Copy these elements into ``destination``'s on the GPU: one launch of the kernel
        :func:`copy_geometry` chooses, over the index space it orders."""
        geometry, tile_axis = copy_geometry(self.shape, self.strides, destination.strides)
        arguments = (
            self.memory, destination.memory, self.start, destination.start,
            cuda.to_device(geometry),
        )  # fmt: skip
        along = int(geometry[0, -1])
        if tile_axis is None:
            rows = int(math.prod(geometry[0, :-1]))
            launch_over(strided_copy_kernel, rows, along)(*arguments)
        else:
            across = int(geometry[0, tile_axis])
            other_rows = int(math.prod(np.delete(geometry[0, :-1], tile_axis)))
            blocks = (
                min(COPY_BLOCKS, -(-along // TILE)),
                min(COPY_ROWS, -(-across // TILE)),
                min(COPY_ROWS, other_rows),
            )
            shared_bytes = TILE * TILE_PITCH * destination.memory.dtype.itemsize
            tiled_transpose_kernel[blocks, (TILE, TILE_ROWS), 0, shared_bytes](
                *arguments, tile_axis
            )

    def as_contiguous(self, dtype):
        """The elements as a C-contiguous device array of ``dtype``: ``memory`` itself when it
        already is one, else a copy made on the GPU."""
        if self.memory.dtype == dtype and self.is_contiguous:
            return self.memory.reshape(self.shape)
        copy = cuda.device_array(math.prod(self.shape), dtype)
        self.copy_into(Strided.contiguous(copy, self.shape))
        return copy.reshape(self.shape)


def copy_geometry(shape: tuple, source_strides: tuple, destination_strides: tuple) -> tuple:
    """The index space a copy walks, and whether :func:`tiled_transpose_kernel` walks it.

    Parameters
    ----------
    shape, source_strides, destination_strides : tuple of int
        The elements to copy, and their strides in the source and the destination, in elements.

    Returns
    -------
    geometry : numpy.ndarray
        The ``geometry`` argument of the copy kernels: the shape, source strides and destination
        strides of the index space, one column per axis. Axes of length 1 are dropped and one
        of length 1 leads, so that there are always rows. The axis of the destination's smallest
        stride comes last (on a tie, the later one: a space already in the destination's order
        keeps it), so that both kernels write with consecutive threads along it: coalesced.
        Neighbouring axes that both arrays step through as through one are merged into it.
    tile_axis : int or None
        The column of the source's smallest nonzero stride when it is a row axis's (not the
        last), smaller than the last axis's, and that axis has at least ``TILE_ROWS`` elements:
        the copy transposes, and :func:`tiled_transpose_kernel` reads along ``tile_axis``. Else
        None, for :func:`strided_copy_kernel`, which reads along the last axis: the source's
        innermost there (or broadcast: a warp reads one element), or the tile axis is too short,
        its tiles would leave most of each warp idle while reading, and the strided kernel's
        reads, then usually fewer than ``TILE_ROWS`` elements apart, share their sectors with
        neighbouring warps'.
    """
    kept = [axis for axis, size in enumerate(shape) if size != 1]
    if kept:
        inner = min(reversed(kept), key=lambda axis: abs(destination_strides[axis]))
        kept = [axis for axis in kept if axis != inner] + [inner]
    # Each axis as (size, source stride, destination stride); neighbours that step through both
    # arrays as one axis would are merged (a contiguous copy that casts is one long axis).
    axes = []
    for axis in kept:
        size, source, destination = shape[axis], source_strides[axis], destination_strides[axis]
        if axes and axes[-1][1] == source * size and axes[-1][2] == destination * size:
            size *= axes.pop()[0]
        axes.append((size, source, destination))
    geometry = np.array([[1, 0, 0], *axes], np.int64).T.copy()
    source_steps = np.abs(geometry[1])
    row_columns = [column for column in range(1, len(axes)) if source_steps[column]]
    tile_axis = min(row_columns, key=lambda column: source_steps[column], default=None)
    if (
        tile_axis is None
        or source_steps[tile_axis] >= source_steps[-1]
        or geometry[0, tile_axis] < TILE_ROWS
    ):
        return geometry, None
    return geometry, tile_axis


def contiguous_strides(shape: tuple, itemsize: int) -> tuple:
    """The strides of a C-contiguous array of ``shape``, in units of ``itemsize``."""
    strides, step = [], itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


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
        return DeviceLinearProblem(empty, empty, empty, empty, result, axis, True, layout=layout)
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
        kernel_a, kernel_b, kernel_h0, kernel_out, result, axis, writes_result, layout=layout
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
    if h0 is None:
        return zeros(shape, layout.dtype)
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


def moved_axes(value, shape: tuple, order, dtype):
    """``value`` (host or GPU) broadcast to ``shape``, its axes in ``order`` (as
    ``numpy.transpose``), as a new C-contiguous device array of ``dtype``: the GPU form of the
    layouts the front ends' kernels read (``value`` itself when it already lies so)."""
    moved_shape = tuple(shape[axis] for axis in order)
    if not math.prod(shape):
        return cuda.device_array(moved_shape, dtype)
    if not on_gpu(value):
        host = np.broadcast_to(np.asarray(value), shape).transpose(order)
        return cuda.to_device(np.ascontiguousarray(host, dtype))
    return Strided.of(value).expanded(shape).permuted(order).as_contiguous(dtype)


def batch_aligned(value, shape: tuple, dtype, new_axes: int = 0):
    """``value`` (a GPU array) with ``new_axes`` length-1 axes inserted after its first,
    broadcast to ``shape``, as a C-contiguous device array of ``dtype`` (``value`` itself when
    it already lies so): the GPU form of :func:`scanlab.nonlinear.align_batch` and
    ``numpy.broadcast_to``."""
    if not math.prod(shape):
        return cuda.device_array(shape, dtype)
    view = Strided.of(value)
    for _ in range(new_axes):
        view = view.with_axis(1, 1)
    return view.expanded(shape).as_contiguous(dtype)


def on_device(array):
    """``array``, a host array or a C-contiguous device array, as a device array: itself, or
    a new C-contiguous copy of the host array."""
    return array if on_gpu(array) else cuda.to_device(np.ascontiguousarray(array))


def to_host(value) -> np.ndarray:
    """A GPU array's elements copied into a new C-contiguous NumPy array of its dtype."""
    interface = array_interface(value)
    shape, dtype = tuple(interface["shape"]), np.dtype(interface["typestr"])
    if not math.prod(shape):
        return np.empty(shape, dtype)
    return Strided.of(value).as_contiguous(dtype).copy_to_host()


def in_shape(source, shape: tuple, order):
    """A new C-contiguous device array of ``shape`` holding ``source``, a C-contiguous device
    array of ``shape``'s axes in ``order``: the inverse of :func:`moved_axes`, one copy on the
    GPU."""
    result = cuda.device_array(shape, source.dtype)
    if result.size:
        moved_shape = tuple(shape[axis] for axis in order)
        view = Strided.contiguous(source.reshape(-1), moved_shape)
        view.copy_into(Strided.of(result).permuted(order))
    return result


def launch_over(kernel, rows: int, columns: int):
    """``kernel`` configured for a grid over ``(rows, columns)`` elements, consecutive columns
    adjacent in memory, which it walks from ``cuda.grid(2)`` in strides of
    ``cuda.gridsize(2)`` (x along the columns, y along the rows).

    A block is ``(lanes, threads_per_block // lanes)`` threads, ``lanes`` the next power of two
    at or above ``columns`` (at most the block): consecutive threads touch consecutive
    elements, of one row or, for few columns, of consecutive rows, and no thread of the block
    idles (one block per row over one column left 255 of its 256 threads idle and read memory
    one element per warp). The grid is capped as the copies' are."""
    threads = config.cuda.threads_per_block
    lanes = min(threads, 1 << max(columns - 1, 0).bit_length())
    depth = threads // lanes
    blocks = (
        max(1, min(COPY_BLOCKS, -(-columns // lanes))),
        max(1, min(COPY_ROWS, -(-rows // depth))),
    )
    return kernel[blocks, (lanes, depth)]


def time_first_order(axis: int, ndim: int) -> list:
    """The axes of an array of ``ndim`` dimensions with ``axis`` moved to the front."""
    return [axis, *(other for other in range(ndim) if other != axis)]


def time_first_rows(value, shape: tuple, axis: int, dtype):
    """``value`` (host or GPU) broadcast to ``shape``, as a C-contiguous ``(T, D)`` device
    array of ``dtype``: time (``axis``) first, the other axes flattened into channels."""
    moved = moved_axes(value, shape, time_first_order(axis, len(shape)), dtype)
    return moved.reshape(shape[axis], math.prod(moved.shape[1:]))


def from_time_first_rows(rows, shape: tuple, axis: int):
    """The inverse of :func:`time_first_rows` for new ``(T, D)`` rows: an array of ``shape``,
    ``rows`` itself reshaped where time is the first axis (no copy), else a new one."""
    if axis == 0:
        return rows.reshape(shape)
    order = time_first_order(axis, len(shape))
    return in_shape(rows.reshape(tuple(shape[k] for k in order)), shape, order)
