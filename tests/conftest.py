import contextlib
import math
import os
import sys

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from numba import cuda

from scanlab import config

# CI runs a fixed set of examples (derandomized), fewer than a developer's run draws afresh: the
# whole CI run has to stay within its 15 minutes on two cores (at 40 examples it took 13.9 min
# on a slow day of the 2-core VM, 2026-12-07).
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# A hunt for rare failures: SCANLAB_HYPOTHESIS_PROFILE=deep (many more fresh examples a test).
settings.register_profile(
    "deep",
    deadline=None,
    max_examples=1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(
    os.environ.get("SCANLAB_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

# The suite's choices of method="auto" follow the static rule (no timing, no wisdom file); the
# tests of the measured choice turn it back on with measurements of their own.
config.cpu.auto_scan_max_row_bytes = 32
config.cpu.wisdom = None
# The suite's small problems are shared among threads as large ones are (the threads' paths
# tested on them); test_threads checks that by default the calling thread does them alone.
config.cpu.shared_min_elements = 0
if numba.config.ENABLE_CUDASIM:
    # The simulator runs a Python thread per GPU thread, one block after another: blocks of two
    # warps run the block-level code as blocks of 256 threads do, with a quarter of the threads
    # (the simulated CUDA tests in half the time). A GPU runs the default.
    config.cuda.threads_per_block = 64

#: The dtypes every solver computes in.
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]

#: Tolerances of a result against the float64 reference, by dtype.
TOLERANCES = {
    np.dtype(np.float32): 2e-4,
    np.dtype(np.complex64): 2e-4,
    np.dtype(np.float64): 1e-10,
    np.dtype(np.complex128): 1e-10,
}


def assert_close(result, expected, dtype=None):
    """``result`` equals ``expected`` to the tolerance of its dtype, NaN/Inf in the same places."""
    dtype = np.dtype(dtype or result.dtype)
    assert result.dtype == dtype
    assert result.shape == expected.shape
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    tolerance = TOLERANCES[dtype]
    np.testing.assert_allclose(result, expected, rtol=tolerance, atol=tolerance * scale)


@contextlib.contextmanager
def fast_thread_switching():
    """Hand the GIL over often: the CUDA simulator busy-polls its threads' barriers."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.fixture
def small_chunks():
    """Shrink the tunables so tiny inputs cross many chunks, blocks and tiles, and `auto` scans."""
    saved = [(tunables, dict(vars(tunables))) for tunables in (config.cpu, config.cuda)]
    config.cpu.cache_bytes = 256
    config.cpu.auto_scan_min_length = 8
    config.cpu.auto_scan_max_row_bytes = 64
    config.cuda.threads_per_block = 8
    config.cuda.items_per_thread = 2
    config.cuda.channels_per_block = 2
    config.cuda.auto_scan_min_length = 8
    config.cuda.auto_sequential_min_channels = 4
    config.cuda.matrix_chunk_length = 3
    config.cuda.reduce_items_per_thread = 2
    yield
    for tunables, values in saved:
        for name, value in values.items():
            setattr(tunables, name, value)


#: The ``pytestmark`` of a module of CUDA tests: selected by ``-m cuda``, skipped without a GPU or
#: the simulator.
CUDA_MODULE_MARKS = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (numba.config.ENABLE_CUDASIM or cuda.is_available()),
        reason="needs a CUDA GPU or the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)",
    ),
]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """Each device a solver runs on; ``cuda`` needs a GPU or ``NUMBA_ENABLE_CUDASIM=1``."""
    if request.param == "cpu":
        yield "cpu"
        return
    yield from gpu()


@pytest.fixture(params=[pytest.param("cuda", marks=pytest.mark.cuda)])
def cuda_device(request):
    """The GPU alone, for tests whose CPU side other tests cover."""
    yield from gpu()


def gpu():
    """``"cuda"``, or a skip without a GPU or the simulator."""
    if not cuda.is_available():
        pytest.skip("no CUDA GPU and not under NUMBA_ENABLE_CUDASIM=1")
    with fast_thread_switching():
        yield "cuda"


def random_array(rng, shape, dtype, low=-1.0, high=1.0):
    """Uniform values in [low, high), as ``dtype``; complex ones have a uniform phase too."""
    values = rng.uniform(low, high, shape)
    if np.dtype(dtype).kind == "c":
        values = values * np.exp(2j * np.pi * rng.uniform(size=shape))
    return np.asarray(values, dtype=dtype)


def random_matrices(rng, shape, size, dtype, radius=0.9):
    """Matrices of ``shape + (size, size)`` with entries of order ``radius / sqrt(size)``.

    Each matrix is scaled down to spectral radius ``radius`` where it had more, so that a
    constant matrix repeated for hundreds of steps does not overflow float32.
    """
    wide = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    matrices = random_array(rng, shape + (size, size), wide) * (radius * math.sqrt(3 / size))
    if size:
        spectral_radius = np.max(np.abs(np.linalg.eigvals(matrices)), axis=-1, initial=0.0)
        matrices *= np.minimum(1.0, radius / np.maximum(spectral_radius, 1e-300))[..., None, None]
    return matrices.astype(dtype)


@contextlib.contextmanager
def numba_threads(count):
    """Run with ``count`` Numba threads (at most the pool's), then restore the previous count."""
    saved = numba.get_num_threads()
    numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(saved)
