"""Every CUDA kernel of scanlab compiles to PTX for a real GPU (sm_90), with no GPU needed.

Needs numba-cuda and the CUDA toolkit's NVVM, e.g.
``pip install numba-cuda "cuda-toolkit[nvcc,nvrtc]"``; skipped under the simulator, which cannot
compile.
"""

import os
import re
import types

import numba
import pytest
from numba import cuda

if numba.config.ENABLE_CUDASIM:
    pytest.skip("the CUDA simulator cannot compile to PTX", allow_module_level=True)

from numba.cuda import dispatcher as cuda_dispatcher  # noqa: E402
from numba.cuda.cudadrv.error import NvvmSupportError  # noqa: E402
from numba.cuda.dispatcher import CUDADispatcher  # noqa: E402

from scanlab import cells  # noqa: E402
from scanlab import math as smath  # noqa: E402
from scanlab.bench import linear as bench_linear  # noqa: E402
from scanlab.cuda import (  # noqa: E402
    arrays,
    cell_pullback,
    elementwise,
    ewm,
    gradients,
    iir,
    input_projection,
    layer_gates,
    linear,
    linear_matrix,
    linear_single_pass,
    nonlinear,
    one_hot,
    returns,
    row_summary,
)

KERNEL_MODULES = [
    arrays,
    elementwise,
    ewm,
    gradients,
    iir,
    input_projection,
    layer_gates,
    linear,
    linear_matrix,
    linear_single_pass,
    nonlinear,
    one_hot,
    returns,
    row_summary,
    bench_linear,
]


def leaky(h_prev, x_t, params, h_out):
    """A cell's step using scanlab.math, which compiles for the GPU (but not for complex states:
    its automatic Jacobian takes central differences)."""
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * h_prev[i] + smath.tanh(x_t[i % x_t.shape[0]] - h_prev[i])


#: The GPU the kernels are compiled for: an H100's compute capability.
TARGET = (9, 0)


@pytest.fixture(scope="module")
def nvvm():
    """Skip when the CUDA toolkit's NVVM, which compiles to PTX, cannot be loaded. Without a
    GPU, the device functions a kernel calls compile for the ``TARGET``: numba-cuda compiles
    them for the current device's compute capability, which it asks the driver for."""
    try:
        cuda.compile_ptx(lambda: None, "void()", cc=TARGET)
    except NvvmSupportError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the CUDA toolkit (scanlab[cuda-toolkit]), but: {error}")
        pytest.skip(f"the CUDA toolkit's NVVM was not found ({error})")
    with pytest.MonkeyPatch.context() as patch:
        if not cuda.is_available():
            target = types.SimpleNamespace(compute_capability=TARGET)
            patch.setattr(cuda_dispatcher, "get_current_device", lambda: target)
        yield


@pytest.mark.parametrize("module", KERNEL_MODULES, ids=lambda module: module.__name__)
def test_every_kernel_has_signatures(module):
    kernels = {
        name
        for name, value in vars(module).items()
        if isinstance(value, CUDADispatcher) and not value.targetoptions.get("device")
    }
    listed = {kernel.py_func.__name__ for kernel, _ in module.kernel_signatures()}
    assert kernels == listed


#: A function the PTX defines besides its kernels: a device function NVVM did not inline
#: (``.extern`` declarations of Numba's runtime helpers are not definitions).
DEFINED_FUNCTION = re.compile(r"^\s*(?:\.visible\s+|\.weak\s+)?\.func\b", re.MULTILINE)

#: The kernels whose local arrays must all live in registers: the matrix kernels'.
REGISTER_ONLY = {kernel for kernel, _ in linear_matrix.kernel_signatures()}


def compiled_signatures() -> list:
    """Every kernel with each signature its launchers compile; under CI (``CI`` set, where the
    run has 15 minutes on two cores) the first signature of each kernel (its float32 one) but
    every signature of the matrix kernels, whose register use depends on the dtype."""
    entries = [entry for module in KERNEL_MODULES for entry in module.kernel_signatures()]
    if not os.environ.get("CI"):
        return entries
    seen = set()
    chosen = []
    for kernel, signature in entries:
        if kernel in REGISTER_ONLY or kernel not in seen:
            chosen.append((kernel, signature))
            seen.add(kernel)
    return chosen


@pytest.mark.parametrize(
    "kernel, signature",
    compiled_signatures(),
    ids=lambda value: value if isinstance(value, str) else value.py_func.__name__,
)
def test_kernel_compiles_to_ptx(nvvm, kernel, signature):
    """Every kernel compiles, its device functions inlined by NVVM; the matrix kernels' padded
    local arrays of small systems are all promoted to registers (no local memory)."""
    ptx, return_type = cuda.compile_ptx(kernel.py_func, signature, cc=TARGET)
    assert return_type == numba.types.void
    assert ".entry" in ptx and not DEFINED_FUNCTION.search(ptx)
    assert ".target sm_90" in ptx
    if kernel in REGISTER_ONLY:
        assert "__local_depot" not in ptx


def math_kernel(x, out):
    """Every function of scanlab.math, in a kernel."""
    i = cuda.grid(1)
    if i < x.size:
        out[i] = (
            smath.exp(x[i])
            + smath.expm1(x[i])
            + smath.tanh(x[i])
            + smath.sigmoid(x[i])
            + smath.log(x[i])
            + smath.log1p(x[i])
        )


def trigonometry_kernel(x, out):
    """scanlab.math's sine and cosine, in a kernel."""
    i = cuda.grid(1)
    if i < x.size:
        out[i] = smath.sin(x[i]) + smath.cos(x[i])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_math_compiles_into_kernels_in_its_precision(nvvm, dtype):
    ptx, _ = cuda.compile_ptx(math_kernel, f"void({dtype}[::1], {dtype}[::1])", cc=TARGET)
    body = ptx.split(".entry")[1]
    assert ".f64" not in body if dtype == "float32" else ".f64" in body
    assert "call" not in body  # no library calls: plain arithmetic


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sine_and_cosine_compile_into_kernels(nvvm, dtype):
    """In the argument's precision, the reduction's table read from the kernel's memory."""
    signature = f"void({dtype}[::1], {dtype}[::1])"
    ptx, _ = cuda.compile_ptx(trigonometry_kernel, signature, cc=TARGET)
    body = ptx.split(".entry")[1]
    assert f"fma.rn.f{dtype[-2:]}" in body and "call" not in body


def polynomial(h_prev, x_t, params, h_out):
    """A cell's step that is complex-analytic, for the complex-step Jacobian."""
    for i in range(h_prev.shape[0]):
        h_out[i] = 0.5 * h_prev[i] + 0.1 * h_prev[i] * h_prev[i] + x_t[i % x_t.shape[0]]


@pytest.mark.parametrize(
    "cell, method, dtype, quasi",
    [
        (cells.ParaGRU(8, 3), "analytic", "float32", False),
        (cells.ParaLSTM(4, 3), "analytic", "float32", False),
        (cells.ElmanRNN(5, 3), "analytic", "float32", False),
        (cells.cell(polynomial), "complex-step", "float32", False),
        (cells.cell(leaky), "central-differences", "float64", True),
    ],
    ids=[
        "ParaGRU", "ParaLSTM", "ElmanRNN",
        "complex-step", "central-differences-quasi",
    ],
)  # fmt: skip
def test_cell_kernels_compile_to_ptx(nvvm, cell, method, dtype, quasi):
    size = cell.state_size or 4
    for function, signature in nonlinear.cell_kernel_signatures(
        cell, size, 3, dtype, method, quasi
    ):
        ptx, _ = cuda.compile_ptx(function, signature, cc=TARGET)
        assert ".entry" in ptx and not DEFINED_FUNCTION.search(ptx)


@pytest.mark.parametrize(
    "cell", [cells.ParaGRU(8, 3), cells.ParaLSTM(4, 3), cells.ElmanRNN(5, 3)],
    ids=["ParaGRU", "ParaLSTM", "ElmanRNN"],
)  # fmt: skip
def test_cell_pullback_kernels_compile_to_ptx(nvvm, cell):
    """A built-in cell's pullback kernel, its sums of the parameters' gradients in registers."""
    for function, signature in cell_pullback.kernel_signatures(cell, "float32"):
        ptx, _ = cuda.compile_ptx(function, signature, cc=TARGET)
        assert ".entry" in ptx and "__local_depot" not in ptx
        assert not DEFINED_FUNCTION.search(ptx)
