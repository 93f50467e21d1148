"""GPU arrays in place: ``linear_recurrence``, ``linear_recurrence_matrix`` and
``nonlinear_recurrence`` on device arrays.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU. Every operand may be a
host array or a GPU array of any layout (contiguous, strided, reversed, transposed, or a foreign
object that only exposes ``__cuda_array_interface__``); the result must equal the CPU's and stay
on the GPU.
"""

import collections
import concurrent.futures
import itertools
import math
import pathlib
import re
import runpy
import sys

import numba
import numpy as np
import pytest
from conftest import (
    CUDA_MODULE_MARKS,
    DTYPES,
    assert_close,
    fast_thread_switching,
    random_array,
    random_matrices,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda
from test_gradients import assert_gradients_close, draw_inputs, problems

import scanlab
import scanlab.dask
from scanlab._arrays import array_interface, check_linear
from scanlab.cuda import arrays, elementwise
from scanlab.cuda import memory as device_memory

pytestmark = CUDA_MODULE_MARKS

FORMS = ["host", "contiguous", "strided", "reversed", "transposed", "foreign"]


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    with fast_thread_switching():
        yield


class ForeignArray:
    """A GPU array known only by its ``__cuda_array_interface__``, as CuPy's or PyTorch's are.

    It wraps a device array's interface; under the simulator, whose device memory is host
    memory, a NumPy array's.
    """

    def __init__(self, array, read_only=False, strides=None):
        self.array = array
        interface = dict(
            array.__cuda_array_interface__
            if hasattr(array, "__cuda_array_interface__")
            else array.__array_interface__
        )
        interface["data"] = (interface["data"][0], read_only)
        if strides is not None:
            interface["strides"] = strides
        interface["version"] = 3
        self.__cuda_array_interface__ = interface


def as_form(array: np.ndarray, form: str):
    """``array``'s values as a host array or as a GPU array laid out as ``form`` says."""
    if form == "host" or array.ndim == 0:
        return array.copy()
    if form == "contiguous":
        return cuda.to_device(array)
    if form == "strided":  # every other element of the last axis
        return cuda.to_device(np.repeat(array, 2, axis=-1))[..., ::2]
    if form == "reversed":  # negative strides along the first axis
        return cuda.to_device(np.ascontiguousarray(array[::-1]))[::-1]
    if form == "transposed":  # the axes' order reversed in memory
        return strided_gpu_array(array, tuple(reversed(range(array.ndim))))
    return ForeignArray(cuda.to_device(array) if not numba.config.ENABLE_CUDASIM else array.copy())


def strided_gpu_array(values: np.ndarray, memory_order: tuple, reverse: bool = False):
    """``values`` as a strided GPU array (a :class:`ForeignArray`): its axes laid out in memory in
    ``memory_order`` (outermost first), the first axis reversed in memory if ``reverse``.

    Numba's device arrays cannot make such views on a GPU: their ``transpose`` copies a 2-D array
    and refuses more axes (the simulator's makes views).
    """
    memory = np.ascontiguousarray((values[::-1] if reverse else values).transpose(memory_order))
    view = memory.transpose(np.argsort(memory_order))
    view = view[::-1] if reverse else view
    foreign = ForeignArray(memory if numba.config.ENABLE_CUDASIM else cuda.to_device(memory))
    interface = foreign.__cuda_array_interface__
    offset = view.__array_interface__["data"][0] - memory.__array_interface__["data"][0]
    interface.update(data=(interface["data"][0] + offset, False), shape=view.shape,
                     strides=view.strides)  # fmt: skip
    return foreign


def to_host(value) -> np.ndarray:
    """A host copy of ``value`` (host, device or foreign array, of any strides)."""
    if not isinstance(value, ForeignArray):
        return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value).copy()
    memory = to_host(value.array)
    interface = value.__cuda_array_interface__
    offset = interface["data"][0] - array_interface(value.array)["data"][0]
    view = np.ndarray(interface["shape"], memory.dtype, memory, offset, interface["strides"])
    return view.copy()


def on_device(value) -> bool:
    """Whether ``value`` is a GPU array of the tests (device or foreign)."""
    return hasattr(value, "copy_to_host") or isinstance(value, ForeignArray)


def sub_shape(data, shape: tuple) -> tuple:
    """A shape that broadcasts to ``shape``: some leading axes dropped, some axes of length 1."""
    dropped = data.draw(st.integers(0, len(shape)))
    return tuple(size if data.draw(st.booleans()) else 1 for size in shape[dropped:])


@settings(max_examples=14)
@given(data=st.data())
def test_gpu_operands_give_the_cpu_result_on_the_gpu(small_chunks, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    sizes = st.sampled_from([1, 2, 3, 5, 13, 27])
    shape = tuple(data.draw(st.lists(sizes, min_size=1, max_size=3)))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    dtype = data.draw(st.sampled_from(DTYPES))
    a = random_array(rng, sub_shape(data, shape), dtype, -0.95, 0.95)
    b = random_array(rng, shape, data.draw(st.sampled_from([dtype, np.float32])))
    initial = None
    if data.draw(st.booleans()):
        initial = random_array(rng, sub_shape(data, np.delete(shape, axis)), dtype)
    reverse = data.draw(st.booleans())
    method = data.draw(st.sampled_from(["auto", "sequential", "scan"]))
    forms = [data.draw(st.sampled_from(FORMS)) for _ in range(3)]
    a_gpu, b_gpu = as_form(a, forms[0]), as_form(b, forms[1])
    h0_gpu = None if initial is None else as_form(initial, forms[2])
    out_form = data.draw(st.sampled_from([None, "contiguous", "strided", "transposed"]))
    expected = scanlab.linear_recurrence(a, b, initial, axis=axis, reverse=reverse, device="cpu")
    out = None if out_form is None else as_form(np.zeros_like(expected), out_form)
    if not any(map(on_device, (a_gpu, b_gpu, h0_gpu, out))):
        b_gpu = cuda.to_device(b)

    result = scanlab.linear_recurrence(
        a_gpu, b_gpu, h0_gpu, axis=axis, reverse=reverse, method=method, out=out
    )

    assert result is out if out is not None else hasattr(result, "copy_to_host")
    assert_close(to_host(result), expected.astype(expected.dtype), expected.dtype)
    for given_value, original in ((a_gpu, a), (b_gpu, b), (h0_gpu, initial)):
        if given_value is not None:
            np.testing.assert_array_equal(to_host(given_value), original)  # inputs untouched


@settings(max_examples=10)
@given(
    length=st.sampled_from([1, 2, 7, 20]),
    size=st.sampled_from([1, 2, 3]),
    dtype=st.sampled_from(DTYPES),
    reverse=st.booleans(),
    method=st.sampled_from(["sequential", "scan"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_gpu_matrices_and_their_transposed_views(small_chunks, length, size, dtype, reverse,
                                                 method, seed):  # fmt: skip
    rng = np.random.default_rng(seed)
    A = random_matrices(rng, (length, 2), size, dtype)
    b = random_array(rng, (2, length, size), dtype)
    h0 = random_array(rng, (size,), dtype)
    transposed = strided_gpu_array(A, (0, 1, 3, 2))
    expected = scanlab.linear_recurrence_matrix(
        A, b.transpose(1, 0, 2), h0, reverse=reverse, device="cpu"
    )

    result = scanlab.linear_recurrence_matrix(
        transposed,
        strided_gpu_array(b.transpose(1, 0, 2), (1, 0, 2)),
        cuda.to_device(h0),
        reverse=reverse,
        method=method,
    )

    assert_close(result.copy_to_host(), expected, dtype)


def test_operands_in_kernel_layout_are_read_and_written_in_place(small_chunks):
    a, b = cuda.to_device(np.full((6, 3), 0.5)), cuda.to_device(np.ones((6, 3)))
    out = cuda.device_array((6, 3))

    problem = arrays.lay_out(a, b, None, check_linear(a, b, None, 0), out)

    assert problem.writes_result
    for kernel_array, given_array in ((problem.a, a), (problem.b, b), (problem.kernel_out, out)):
        assert arrays.address_range(kernel_array) == arrays.address_range(given_array)


def test_out_may_be_an_operand(small_chunks):
    b = np.arange(12.0).reshape(4, 3)
    expected = scanlab.linear_recurrence(0.5, b, device="cpu")
    b_gpu = cuda.to_device(b)

    result = scanlab.linear_recurrence(0.5, b_gpu, out=b_gpu)

    assert result is b_gpu
    assert_close(b_gpu.copy_to_host(), expected)


def test_host_operands_with_a_gpu_out_and_empty_sequences(small_chunks):
    out = cuda.device_array((4, 2), np.float32)
    result = scanlab.linear_recurrence(np.float32(0.5), np.ones((4, 2), np.float32), out=out)
    assert result is out
    assert_close(out.copy_to_host(), scanlab.linear_recurrence(0.5, np.ones((4, 2), np.float32)))

    empty = scanlab.linear_recurrence(0.5, cuda.to_device(np.ones((0, 3))))
    assert empty.shape == (0, 3) and hasattr(empty, "copy_to_host")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"out": np.empty((3, 2))}, TypeError, "out is a host array"),
        ({"out": "device-float32"}, TypeError, "out has dtype float32, but the result"),
        ({"out": "device-wrong-shape"}, ValueError, r"out has shape \(2, 3\)"),
        ({"out": "read-only"}, ValueError, "out is read-only"),
        ({"b": "odd-strides"}, ValueError, "not whole float64 elements"),
        ({"h0": "device-wrong-shape"}, ValueError, r"needs h0 of shape \(2,\)"),
    ],
)
def test_bad_gpu_arguments_raise_clear_errors(kwargs, error, message):
    host = np.ones((3, 2))
    arguments = {"a": 0.5, "b": cuda.to_device(host)}
    stand_ins = {
        "device-float32": lambda: cuda.device_array((3, 2), np.float32),
        "device-wrong-shape": lambda: cuda.device_array((2, 3)),
        "read-only": lambda: ForeignArray(host if numba.config.ENABLE_CUDASIM
                                          else cuda.to_device(host), read_only=True),
        "odd-strides": lambda: ForeignArray(host if numba.config.ENABLE_CUDASIM
                                            else cuda.to_device(host), strides=(12, 4)),
    }  # fmt: skip
    for name, value in kwargs.items():
        arguments[name] = stand_ins[value]() if isinstance(value, str) else value
    with pytest.raises(error, match=message):
        scanlab.linear_recurrence(**arguments)


def test_gpu_arrays_example_agrees_with_the_cpu(small_chunks, capsys, monkeypatch):
    script = pathlib.Path(__file__).parents[1] / "examples" / "gpu_arrays.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--length", "100", "--batch", "3"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    differences = [float(value) for value in re.findall(r"= ([0-9.e+-]+)", printed)]
    assert len(differences) == 3 and max(differences) < 1e-5, printed
    assert "shape (3, 100), on the GPU" in printed and "written into out (True)" in printed


class CountedKernel:
    """A CUDA kernel whose launches are counted in ``launches`` under ``name``."""

    def __init__(self, kernel, name: str, launches: collections.Counter):
        self.kernel, self.name, self.launches = kernel, name, launches

    def __getitem__(self, configuration):
        self.launches[self.name] += 1
        return self.kernel[configuration]


@pytest.fixture
def copy_launches(monkeypatch):
    """The launches of each copy kernel of :mod:`scanlab.cuda.arrays`, by kernel name."""
    launches = collections.Counter()
    for name in ("strided_copy_kernel", "tiled_transpose_kernel"):
        monkeypatch.setattr(arrays, name, CountedKernel(getattr(arrays, name), name, launches))
    return launches


@pytest.fixture
def small_grids(monkeypatch):
    """Grids of at most 2 blocks along each dimension: the copy kernels loop over the rest."""
    monkeypatch.setattr(arrays, "COPY_BLOCKS", 2)
    monkeypatch.setattr(arrays, "COPY_ROWS", 2)


#: Index spaces for :func:`test_copy_geometry_orders_the_axes_and_tiles_transposing_copies`: shape,
#: source strides and destination strides, and the geometry and tile axis expected.
GEOMETRIES = {
    # (T, D) of a time-last (D, T) array, into the kernel layout: tiles over (T, D).
    "time-last": ((70, 16), (1, 70), (16, 1), [[1, 70, 16], [0, 1, 70], [0, 16, 1]], 1),
    # The same with T reversed, and axes of length 1 between (dropped).
    "reversed-with-length-1-axes": ((70, 1, 16, 1), (-1, 5, 70, 9), (16, 16, 1, 1),
                                    [[1, 70, 16], [0, -1, 70], [0, 16, 1]], 1),
    # (T, B, C, D) of a time-last (B, C, D, T) array: B, C and D, contiguous in both, merge.
    "batch-axes-merge": ((70, 2, 3, 16), (1, 3360, 1120, 70), (96, 48, 16, 1),
                         [[1, 70, 96], [0, 1, 70], [0, 96, 1]], 1),
    # (T, B, D) of a (D, B, T) array: B and D do not merge, and B is a row walked by the grid.
    "two-rows": ((70, 2, 16), (1, 70, 140), (32, 16, 1),
                 [[1, 70, 2, 16], [0, 1, 70, 140], [0, 32, 16, 1]], 1),
    # The kernel's (T, D) output into a time-last result: D, the destination's innermost
    # axis, is moved last.
    "into-time-last": ((70, 16), (16, 1), (1, 70), [[1, 16, 70], [0, 1, 16], [0, 70, 1]], 1),
    # The same order in both, contiguous (a cast): one long axis, no transpose.
    "same-order": ((70, 16), (16, 1), (16, 1), [[1, 1120], [0, 1], [0, 1]], None),
    # The same order, every other element of the source: one axis of stride 2...
    "same-order-every-other": ((70, 16), (32, 2), (16, 1), [[1, 1120], [0, 2], [0, 1]], None),
    # ...but rows of a wider array do not merge.
    "same-order-padded-rows": ((70, 16), (40, 2), (16, 1),
                               [[1, 70, 16], [0, 40, 2], [0, 16, 1]], None),
    # Broadcast along the last axis: a warp reads a single element.
    "broadcast-last-axis": ((70, 16), (1, 0), (16, 1), [[1, 70, 16], [0, 1, 0], [0, 16, 1]],
                            None),
    # Broadcast along every row: the last axis is the source's only one.
    "broadcast-rows": ((70, 16), (0, 1), (16, 1), [[1, 70, 16], [0, 0, 1], [0, 16, 1]], None),
    # Fewer than TILE_ROWS time steps of a time-last array: too short a tile.
    "few-time-steps": ((4, 70), (1, 4), (70, 1), [[1, 4, 70], [0, 1, 4], [0, 70, 1]], None),
    # One axis of length above 1: no rows but the leading one.
    "one-axis": ((1, 70), (70, 1), (70, 1), [[1, 70], [0, 1], [0, 1]], None),
}  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "source_strides", "destination_strides", "geometry", "tile_axis"),
    GEOMETRIES.values(),
    ids=GEOMETRIES.keys(),
)
def test_copy_geometry_orders_the_axes_and_tiles_transposing_copies(
    shape, source_strides, destination_strides, geometry, tile_axis
):
    chosen, chosen_tile_axis = arrays.copy_geometry(shape, source_strides, destination_strides)

    np.testing.assert_array_equal(chosen, geometry)
    assert chosen.dtype == np.int64
    assert chosen_tile_axis == tile_axis


#: Copies for :func:`test_copy_into_matches_numpy`: the source's values (shape and dtype), the
#: order of its axes in memory (outermost first) and whether its first axis is reversed, the
#: shape it is broadcast to, the axis moved to the front, the destination's dtype and its layout
#: (the kernel layout, or the front axis last in memory), and whether the copy is tiled.
COPIES = {
    "time-last-to-kernel-layout": ((16, 70), np.float32, (0, 1), False, None, 1, np.float64,
                                   "kernel", True),
    "tile-edges-int-to-float": ((33, 31), np.int32, (0, 1), True, None, 1, np.float64, "kernel",
                                True),
    "kernel-layout-to-time-last": ((70, 33), np.float64, (0, 1), False, None, 0, np.float64,
                                   "time-last", True),
    "two-other-rows-broadcast": ((2, 1, 9, 33), np.complex64, (0, 1, 2, 3), True, (2, 2, 9, 33),
                                 3, np.complex128, "kernel", True),
    "time-in-the-middle-transposed": ((9, 6, 5), np.float32, (2, 1, 0), True, None, 1,
                                      np.complex64, "kernel", True),
    "kernel-layout-cast": ((31, 5), np.float32, (0, 1), False, None, 0, np.float64, "kernel",
                           False),
    "few-time-steps": ((70, 4), np.bool_, (0, 1), False, None, 1, np.float64, "kernel", False),
    "broadcast-along-the-last-axis": ((33, 1), np.int64, (0, 1), False, (33, 16), 0, np.float64,
                                      "kernel", False),
    "single-channel": ((1, 70), np.float64, (1, 0), False, None, 1, np.float64, "time-last",
                       False),
}  # fmt: skip


@pytest.mark.parametrize("copy", COPIES.values(), ids=COPIES.keys())
def test_copy_into_matches_numpy(small_chunks, small_grids, copy):
    values_shape, values_dtype, memory_order, reverse, shape, axis, dtype, layout, tiled = copy
    values = (np.arange(np.prod(values_shape)) % 97).reshape(values_shape).astype(values_dtype)
    shape = shape or values_shape
    source = arrays.Strided.of(strided_gpu_array(values, memory_order, reverse))
    source = source.expanded(shape).time_first(axis)
    expected = np.moveaxis(np.broadcast_to(values, shape), axis, 0).astype(dtype)
    if layout == "kernel":
        result = cuda.device_array(expected.shape, dtype)
        destination = arrays.Strided.contiguous(result.reshape(-1), expected.shape)
    else:
        result = cuda.device_array(expected.shape[1:] + expected.shape[:1], dtype)
        destination = arrays.Strided.of(result).time_first(result.ndim - 1)
    tile_axis = arrays.copy_geometry(source.shape, source.strides, destination.strides)[1]

    source.copy_into(destination)

    assert (tile_axis is not None) == tiled
    copied = result.copy_to_host()
    np.testing.assert_array_equal(copied if layout == "kernel" else np.moveaxis(copied, -1, 0),
                                  expected)  # fmt: skip


@cuda.jit
def count_visits_kernel(visits, threads):
    """``visits[r, c] += 1`` for each element a thread of ``launch_over``'s grid walks, and
    ``threads[0]``: the threads launched."""
    cuda.atomic.add(threads, 0, 1)
    first, start = cuda.grid(2)
    across, down = cuda.gridsize(2)
    for r in range(start, visits.shape[0], down):
        for c in range(first, visits.shape[1], across):
            visits[r, c] += 1


@pytest.mark.parametrize("shape", [(0, 3), (1, 1), (37, 1), (9, 3), (5, 8), (3, 21)])
@pytest.mark.parametrize("capped", [False, True])
def test_launch_over_visits_each_element_once_without_idle_blocks(
    small_chunks, monkeypatch, shape, capped
):
    # Blocks of 8 threads (small_chunks): one column fills a block with 8 rows, 3 columns with
    # 2 rows of 4 lanes; capped grids (2 blocks a dimension) stride over the rest.
    if capped:
        monkeypatch.setattr(arrays, "COPY_BLOCKS", 2)
        monkeypatch.setattr(arrays, "COPY_ROWS", 2)
    visits = cuda.to_device(np.zeros(shape, np.int32))
    threads = cuda.to_device(np.zeros(1, np.int64))

    arrays.launch_over(count_visits_kernel, *shape)(visits, threads)

    np.testing.assert_array_equal(visits.copy_to_host(), 1)
    # Lanes rounded up to a power of two idle at most half the threads, plus one partial block
    # (one block per row, as before, launched 8 threads per element of one column).
    block = scanlab.config.cuda.threads_per_block
    most = 4 * block if capped else 2 * math.prod(shape) + block
    assert threads.copy_to_host()[0] <= most


#: Recurrences for :func:`test_transposed_gpu_operands_give_the_cpu_result`: shape, axis, the
#: layouts of ``a`` and ``b`` (their shapes, dtypes, memory orders of their axes, outermost
#: first), ``h0``'s shape, the launches of the tiled kernel expected.
RECURRENCES = {
    # (B, D, T), C-contiguous, time last: the copies of a (float32, cast, broadcast over B), of b
    # and into the result all transpose.
    "batch-first-time-last": ((2, 9, 33), -1, ((9, 33), np.float32, (0, 1)),
                              ((2, 9, 33), np.float64, (0, 1, 2)), (9,), 3),
    # (B, T, D) with time in the middle, in memory as (D, T, B): b's copy tiles over B.
    "time-in-the-middle": ((9, 5, 4), 1, ((), np.float64, ()),
                           ((9, 5, 4), np.complex64, (2, 1, 0)), None, 1),
}  # fmt: skip


@pytest.mark.parametrize("recurrence", RECURRENCES.values(), ids=RECURRENCES.keys())
def test_transposed_gpu_operands_give_the_cpu_result(small_chunks, copy_launches, recurrence):
    shape, axis, a_layout, b_layout, h0_shape, tiled_launches = recurrence
    rng = np.random.default_rng(0)
    (a_shape, a_dtype, a_order), (b_shape, b_dtype, b_order) = a_layout, b_layout
    a = random_array(rng, a_shape, a_dtype, -0.95, 0.95)
    b = random_array(rng, b_shape, b_dtype)
    h0 = None if h0_shape is None else random_array(rng, h0_shape, np.float64)
    expected = scanlab.linear_recurrence(a, b, h0, axis=axis, device="cpu")

    result = scanlab.linear_recurrence(
        a if a.ndim == 0 else strided_gpu_array(a, a_order),
        strided_gpu_array(b, b_order),
        None if h0 is None else cuda.to_device(h0),
        axis=axis,
    )

    assert result.shape == shape
    assert_close(result.copy_to_host(), expected, expected.dtype)
    assert copy_launches["tiled_transpose_kernel"] == tiled_launches


@pytest.mark.parametrize(
    "shape, dtype, byte, expected",
    [
        ((), np.float64, 0, 0.0),
        (5, np.complex128, 0, 0j),
        ((2, 3), np.float32, 0, 0.0),
        ((2, 0), np.float32, 0, None),
        (7, np.uint8, 1, 1),
    ],
    ids=str,
)
def test_filled_sets_every_byte_on_the_gpu(shape, dtype, byte, expected):
    result = device_memory.filled(shape, dtype, byte).copy_to_host()
    assert result.shape == np.empty(shape).shape
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, np.full(result.shape, expected, dtype))


@settings(max_examples=40)
@given(data=st.data())
def test_linear_vjps_of_gpu_arrays_match_the_host_ones(small_chunks, data):
    """Both VJPs with operands in any GPU form (or on the host), gradients summed over
    broadcast axes by the GPU's atomic sums (several threads per sum with small_chunks)."""
    matrices = data.draw(st.booleans())
    problem = data.draw(problems(matrices=matrices, simulated=True))
    a, b, g, h0 = draw_inputs(problem)
    axis, reverse = problem["axis"], problem["reverse"]
    forward = scanlab.linear_recurrence_matrix if matrices else scanlab.linear_recurrence
    vjp = scanlab.linear_recurrence_matrix_vjp if matrices else scanlab.linear_recurrence_vjp
    h = forward(a, b, h0, axis=axis, reverse=reverse, device="cpu")
    expected = vjp(a, h, g, h0, axis=axis, reverse=reverse, device="cpu")
    originals = [np.asarray(value) for value in (a, h, g)] + [h0]
    given_values = [
        None if value is None else as_form(np.asarray(value), data.draw(st.sampled_from(FORMS)))
        for value in originals
    ]
    if not any(on_device(value) for value in given_values):
        given_values[2] = cuda.to_device(g)

    result = vjp(*given_values, axis=axis, reverse=reverse)

    assert all(hasattr(value, "copy_to_host") for value in result)
    assert_gradients_close([value.copy_to_host() for value in result], expected, problem["dtype"])
    for given_value, original in zip(given_values, originals, strict=True):
        if given_value is not None:
            np.testing.assert_array_equal(to_host(given_value), original)  # inputs untouched


def contracting_tanh_step(h_prev, x_t, weight, h_out):
    for i in range(h_out.shape[0]):
        h_out[i] = np.tanh(weight * h_prev[i] + x_t[i])


CONTRACTING = scanlab.cell(contracting_tanh_step, structure="diagonal")


@settings(max_examples=8)
@given(data=st.data())
def test_nonlinear_solves_of_gpu_arrays_stay_on_the_gpu(small_chunks, data):
    """``x``, ``h0`` and ``guess`` in any GPU form (or on the host, the batch broadcast between
    them): the result is a device array equal to the CPU's, the inputs untouched."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    length = data.draw(st.sampled_from([1, 2, 7, 23]))
    batch = data.draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = rng.normal(size=(length, *sub_shape(data, batch), 2)).astype(dtype)
    h0 = rng.normal(size=(*batch, 2)).astype(dtype)
    method = data.draw(st.sampled_from(["newton", "quasi", "damped", "sequential"]))
    expected = scanlab.nonlinear_recurrence(CONTRACTING, x, h0, params=0.9, method="sequential")
    guess = None if not data.draw(st.booleans()) else expected + rng.normal(size=2) / 10
    originals = [x, h0, guess]
    given_values = [
        None if value is None else as_form(value, data.draw(st.sampled_from(FORMS)))
        for value in originals
    ]
    if not any(on_device(value) for value in given_values):
        given_values[0] = cuda.to_device(x)

    result = scanlab.nonlinear_recurrence(
        CONTRACTING, given_values[0], given_values[1], params=0.9, method=method,
        guess=given_values[2],
    )  # fmt: skip

    assert hasattr(result, "copy_to_host") and result.shape == expected.shape
    assert_close(result.copy_to_host(), expected, dtype)
    for given_value, original in zip(given_values, originals, strict=True):
        if given_value is not None:
            np.testing.assert_array_equal(to_host(given_value), original)  # inputs untouched


def weighted_tanh_step(h_prev, x_t, params, h_out):
    weights, shift = params
    for i in range(h_out.shape[0]):
        h_out[i] = np.tanh(weights[i] * h_prev[i] + x_t[i] + shift)


WEIGHTED = scanlab.cell(weighted_tanh_step, structure="diagonal")


@pytest.mark.parametrize("form", ["strided", "foreign"])
def test_params_on_the_gpu_are_read_where_they_lie(small_chunks, form):
    """A cell's params holding a GPU array (in a tuple, beside a number): the solve runs on
    the GPU (device "auto") and its result, the VJP's gradients and the gradient of that
    parameter come back as device arrays equal to the host's; the params untouched; the CPU
    refuses them by name, as Dask does."""
    rng = np.random.default_rng(4)
    x, h0 = rng.normal(size=(9, 3, 2)), rng.normal(size=(3, 2))
    weights = rng.uniform(0.2, 0.8, 2)
    host_params, gpu_params = (weights, 0.1), (as_form(weights, form), 0.1)
    expected = scanlab.nonlinear_recurrence(
        WEIGHTED, x, h0, params=host_params, method="sequential"
    )
    for method in ("newton", "sequential"):
        h = scanlab.nonlinear_recurrence(WEIGHTED, x, h0, params=gpu_params, method=method)
        assert hasattr(h, "copy_to_host")
        assert_close(h.copy_to_host(), expected, np.float64)
    g = rng.normal(size=expected.shape)
    wanted = scanlab.nonlinear_recurrence_vjp(WEIGHTED, x, h0, expected, g, params=host_params)
    dx, dh0, (d_weights, d_shift) = scanlab.nonlinear_recurrence_vjp(
        WEIGHTED, x, h0, h, g, params=gpu_params
    )
    for value, host in zip((dx, dh0, d_weights), (*wanted[:2], wanted[2][0]), strict=True):
        np.testing.assert_allclose(value.copy_to_host(), host, rtol=1e-8, atol=1e-10)
    assert d_shift == pytest.approx(wanted[2][1], rel=1e-8)
    np.testing.assert_array_equal(to_host(gpu_params[0]), weights)
    with pytest.raises(TypeError, match="params live"):
        scanlab.nonlinear_recurrence(WEIGHTED, x, h0, params=gpu_params, device="cpu")
    with pytest.raises(TypeError, match="params holds a GPU array"):
        scanlab.dask.nonlinear_recurrence(WEIGHTED, x, h0, params=gpu_params)


def test_a_builtin_cell_takes_gpu_inputs(small_chunks):
    """Its input projection, the solve and its result stay on the GPU; its gradients come back
    as device arrays too (dx and dh0; the pullback runs on the GPU too)."""
    cell = scanlab.cells.ParaGRU(3, 2, seed=1)
    x = np.random.default_rng(1).normal(size=(6, 2, 2))
    expected = scanlab.nonlinear_recurrence(cell, x, None, method="sequential")
    result = scanlab.nonlinear_recurrence(cell, as_form(x, "transposed"), None, method="newton")
    np.testing.assert_allclose(result.copy_to_host(), expected, rtol=1e-10, atol=1e-10)
    empty = scanlab.nonlinear_recurrence(cell, cuda.to_device(x[:0]), None)
    assert hasattr(empty, "copy_to_host") and empty.shape == (0, 2, 3)
    with pytest.raises(TypeError, match="x live"):
        scanlab.nonlinear_recurrence(cell, cuda.to_device(x), None, device="cpu")
    g = np.random.default_rng(2).normal(size=expected.shape)
    host = scanlab.nonlinear_recurrence_vjp(cell, x, None, expected, g)
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(
        cell, as_form(x, "strided"), None, result, cuda.to_device(g)
    )
    for value, wanted in zip((dx, dh0), host[:2], strict=True):
        np.testing.assert_allclose(value.copy_to_host(), wanted, rtol=1e-8, atol=1e-10)
    for name, wanted in host[2].items():
        np.testing.assert_allclose(dparams[name], wanted, rtol=1e-8, atol=1e-10)
    # Parameters given as GPU arrays: read to the host with the others, their gradients
    # given back on the GPU.
    bias = cell.bias + 0.25
    expected = scanlab.nonlinear_recurrence(cell, x, None, params={"bias": bias})
    gpu_bias = {"bias": cuda.to_device(bias)}
    result = scanlab.nonlinear_recurrence(cell, x, None, params=gpu_bias, method="newton")
    np.testing.assert_allclose(result.copy_to_host(), expected, rtol=1e-10, atol=1e-10)
    host = scanlab.nonlinear_recurrence_vjp(cell, x, None, expected, g, params={"bias": bias})
    *_, dparams = scanlab.nonlinear_recurrence_vjp(cell, x, None, result, g, params=gpu_bias)
    np.testing.assert_allclose(dparams["bias"].copy_to_host(), host[2]["bias"], rtol=1e-8)
    assert not on_device(dparams["input_weights"])


def test_scratch_gives_disjoint_temporaries_and_reuses_them():
    """The first use allocates each temporary and learns the size; later uses take them from
    one buffer, at the same places; outside a use, and in other threads, they are allocated."""
    temporaries = device_memory.Scratch()

    def span(array):
        start = array_interface(array)["data"][0]
        return start, start + array.nbytes

    places = []
    for _ in range(3):
        with temporaries:
            taken = [device_memory.scratch((3, 5), np.float64), device_memory.scratch(7, np.int32)]
            assert device_memory.scratch((0, 2), np.uint8).size == 0
            zeros = device_memory.zeros(11, np.float32, allocate=device_memory.scratch)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                other_thread = pool.submit(device_memory.scratch, 4, np.float64).result()
        spans = sorted(span(array) for array in [*taken, zeros])
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
        np.testing.assert_array_equal(zeros.copy_to_host(), 0)
        buffer = span(temporaries.memory)
        inside = [buffer[0] <= start and end <= buffer[1] for start, end in spans]
        places.append(spans if all(inside) else None)
        assert not buffer[0] <= span(other_thread)[0] < buffer[1]
    assert places[0] is None and places[1] == places[2] is not None
    assert (
        not span(temporaries.memory)[0]
        <= span(device_memory.scratch(3, "f8"))[0]
        < span(temporaries.memory)[1]
    )


@pytest.mark.parametrize("forms", [("transposed", "host", "contiguous", "foreign"),
                                   ("host", "reversed", "strided", "contiguous")])  # fmt: skip
def test_nonlinear_vjps_of_gpu_arrays_match_the_host_ones(small_chunks, forms):
    """A cell of one's own (its pullback by central differences on the host): ``dx`` and
    ``dh0`` come back as device arrays in the shapes of ``x`` and ``h0`` (broadcast ones
    summed), ``dparams`` as on the host."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 1, 2))
    h0 = rng.normal(size=(3, 2))
    h = scanlab.nonlinear_recurrence(CONTRACTING, x, h0, params=0.9, method="sequential")
    g = rng.normal(size=h.shape)
    expected = scanlab.nonlinear_recurrence_vjp(CONTRACTING, x, h0, h, g, params=0.9)
    given_values = [as_form(value, form) for value, form in zip((x, h0, h, g), forms, strict=True)]
    dx, dh0, dparams = scanlab.nonlinear_recurrence_vjp(CONTRACTING, *given_values, params=0.9)
    assert dx.shape == x.shape and dh0.shape == h0.shape
    np.testing.assert_allclose(dx.copy_to_host(), expected[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dh0.copy_to_host(), expected[1], rtol=1e-9, atol=1e-12)
    assert dparams == pytest.approx(expected[2], rel=1e-9)
    for given_value, original in zip(given_values, (x, h0, h, g), strict=True):
        np.testing.assert_array_equal(to_host(given_value), original)  # inputs untouched


@settings(max_examples=8)
@given(
    rows=st.sampled_from([1, 5, 17, 40]),
    inputs=st.sampled_from([0, 1, 3, 20]),
    outputs=st.sampled_from([1, 6, 18]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_input_projection_is_numpys(rows, inputs, outputs, dtype, seed):
    """Our tiled kernel (under the simulator, or on a GPU without CuPy) and CuPy's product
    where it is installed against NumPy's, tiles cut at every edge."""
    from scanlab.cuda import input_projection

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, inputs)).astype(dtype)
    weights = rng.standard_normal((outputs, inputs)).astype(dtype)
    bias = rng.standard_normal(outputs).astype(dtype)
    result = input_projection.project(cuda.to_device(x), weights, bias)
    assert result.shape == (rows, outputs) and result.dtype == dtype
    expected = x.astype(np.float64) @ weights.T.astype(np.float64) + bias
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(result.copy_to_host(), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("length", [0, 1, 2, 5])
@pytest.mark.parametrize("with_h0", [False, True])
def test_the_states_before_and_the_gradients_after_each_step(length, with_h0, monkeypatch):
    """``previous_states`` / ``following_gradients``: ``states`` shifted one step later (``h0``
    or zeros first) and ``dprevious`` one step earlier (zeros last), every element written:
    the allocator hands out memory full of NaN here."""
    allocate = cuda.device_array

    def poisoned(shape, dtype=np.float64, *args, **kwargs):
        array = allocate(shape, dtype, *args, **kwargs)
        if array.size:
            array.copy_to_device(np.full(array.shape, np.nan, array.dtype))
        return array

    monkeypatch.setattr(cuda, "device_array", poisoned)
    rng = np.random.default_rng(length)
    states = rng.standard_normal((length, 3, 2))
    h0 = rng.standard_normal((3, 2)) if with_h0 else None
    previous = elementwise.previous_states(cuda.to_device(states), h0).copy_to_host()
    expected = np.concatenate([np.zeros((1, 3, 2)) if h0 is None else h0[None], states])
    np.testing.assert_array_equal(previous, expected[:length])
    following = elementwise.following_gradients(cuda.to_device(states)).copy_to_host()
    np.testing.assert_array_equal(
        following, np.concatenate([states[1:], np.zeros((1, 3, 2))])[-length:] if length else states
    )
