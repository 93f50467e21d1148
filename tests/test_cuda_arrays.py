"""GPU arrays in place: ``linear_recurrence`` and ``linear_recurrence_matrix`` on device arrays.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU. Every operand may be a
host array or a GPU array of any layout (contiguous, strided, reversed, transposed, or a foreign
object that only exposes ``__cuda_array_interface__``); the result must equal the CPU's and stay
on the GPU.
"""

import pathlib
import re
import runpy
import sys

import numba
import numpy as np
import pytest
from conftest import (
    CUDA_MODULE_MARKS,
    assert_close,
    fast_thread_switching,
    random_array,
    random_matrices,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

import scanlab
from scanlab._arrays import check_linear

pytestmark = CUDA_MODULE_MARKS

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
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
        return cuda.to_device(np.ascontiguousarray(array.T)).T
    return ForeignArray(cuda.to_device(array) if not numba.config.ENABLE_CUDASIM else array.copy())


def to_host(value) -> np.ndarray:
    """A host copy of ``value`` (host, device or foreign array)."""
    if isinstance(value, ForeignArray):
        value = value.array
    return value.copy_to_host() if hasattr(value, "copy_to_host") else np.asarray(value).copy()


def sub_shape(data, shape: tuple) -> tuple:
    """A shape that broadcasts to ``shape``: some leading axes dropped, some axes of length 1."""
    dropped = data.draw(st.integers(0, len(shape)))
    return tuple(size if data.draw(st.booleans()) else 1 for size in shape[dropped:])


@settings(max_examples=30)
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
    if not any(hasattr(value, "copy_to_host") or isinstance(value, ForeignArray)
               for value in (a_gpu, b_gpu, h0_gpu, out)):  # fmt: skip
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
    transposed = cuda.to_device(np.ascontiguousarray(A.swapaxes(-1, -2))).transpose((0, 1, 3, 2))
    expected = scanlab.linear_recurrence_matrix(
        A, b.transpose(1, 0, 2), h0, reverse=reverse, device="cpu"
    )

    result = scanlab.linear_recurrence_matrix(
        transposed,
        cuda.to_device(b).transpose((1, 0, 2)),
        cuda.to_device(h0),
        reverse=reverse,
        method=method,
    )

    assert_close(result.copy_to_host(), expected, dtype)


def test_operands_in_kernel_layout_are_read_and_written_in_place(small_chunks):
    a, b = cuda.to_device(np.full((6, 3), 0.5)), cuda.to_device(np.ones((6, 3)))
    out = cuda.device_array((6, 3))
    from scanlab.cuda import arrays

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
    monkeypatch.setattr(sys, "argv", [str(script), "--length", "300", "--batch", "3"])
    runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    differences = [float(value) for value in re.findall(r"= ([0-9.e+-]+)", printed)]
    assert len(differences) == 2 and max(differences) < 1e-5, printed
    assert "shape (3, 300), on the GPU" in printed and "written into out (True)" in printed
