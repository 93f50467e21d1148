"""A Newton iteration on the GPU: its convergence test (``scanlab.cuda.row_summary``) against
the CPU twin ``scanlab.cpu.row_summary.summarise_rows``, its traffic between host and device
and its allocations.

Run in Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU.
"""

import numpy as np
import pytest
from conftest import CUDA_MODULE_MARKS, fast_thread_switching
from hypothesis import given
from hypothesis import strategies as st
from numba import cuda

import scanlab
from scanlab import config
from scanlab._step_routines import FAILED
from scanlab.cpu.row_summary import summarise_rows
from scanlab.cuda.row_summary import RowSummariser

pytestmark = CUDA_MODULE_MARKS

TOL = 1e-3
#: Residuals on both sides of the tolerance, ties, overflowing squares, non-finite values and
#: the mark of a step that raised.
VALUES = [0.0, TOL / 2, TOL, 2 * TOL, 0.5, 3e38, np.inf, np.nan, FAILED]


@pytest.fixture(autouse=True, scope="module")
def fast_simulator():
    with fast_thread_switching():
        yield


@given(
    length=st.integers(1, 40),
    sequences=st.integers(1, 5),
    first_fraction=st.floats(0, 1, exclude_max=True),
    dtype=st.sampled_from([np.float32, np.float64]),
    threads=st.sampled_from([1, 8, 32]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_gpu_summary_is_the_hosts(
    length, sequences, first_fraction, dtype, threads, seed, monkeypatch
):
    """Sequences cut into several parts (``threads`` of 8: 16 rows per part for 3 sequences),
    mostly small residuals with a few of every kind, compared field by field."""
    monkeypatch.setattr(config.cuda, "threads_per_block", threads)
    rng = np.random.default_rng(seed)
    rows = rng.uniform(0, TOL / 2, (length, sequences))
    special = rng.random((length, sequences)) < 0.15
    rows[special] = rng.choice(VALUES, special.sum())
    rows = rows.astype(dtype)
    first = int(first_fraction * length)
    summary, first_failed = RowSummariser(length, sequences)(cuda.to_device(rows), first, TOL)
    expected = summarise_rows(rows, first, TOL)
    assert summary.length == length
    for name in ("first_bad", "bad_is_nan", "finite", "worst"):
        np.testing.assert_array_equal(getattr(summary, name), getattr(expected, name), name)
    np.testing.assert_allclose(summary.merit, expected.merit, rtol=1e-12)
    failed = rows[first:] == FAILED
    np.testing.assert_array_equal(
        first_failed, np.where(failed.any(axis=0), first + failed.argmax(axis=0), length)
    )


def test_a_solver_reuses_its_summariser():
    summariser = RowSummariser(5, 2)
    rows = cuda.to_device(np.array([[0, 0], [0, 1], [2, np.nan], [0, 0], [0, 0]], np.float64))
    for first, first_bad in [(0, [2, 1]), (2, [2, 2]), (3, [5, 5])]:
        summary, _ = summariser(rows, first, 0.5)
        np.testing.assert_array_equal(summary.first_bad, first_bad)
    np.testing.assert_array_equal(summary.worst, [2, np.inf])  # every row, before first too


class Traffic:
    """Counts the values copied between host and device and the device allocations (of the
    simulator's arrays), and refuses a kernel launched on a host array (an implicit copy both
    ways)."""

    def __init__(self, monkeypatch):
        from numba.cuda.simulator import kernel
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        self.values = self.allocations = 0
        allocate = cuda.device_array
        to_host, to_device, upload = (
            FakeCUDAArray.copy_to_host,
            FakeCUDAArray.copy_to_device,
            cuda.to_device,
        )

        def counted_to_host(array, *arguments, **keywords):
            self.values += array.size
            return to_host(array, *arguments, **keywords)

        def counted_to_device(array, source, *arguments, **keywords):
            if not isinstance(source, FakeCUDAArray):
                self.values += np.size(source)
            return to_device(array, source, *arguments, **keywords)

        def counted_upload(source, *arguments, **keywords):
            self.values += np.size(source)
            return upload(source, *arguments, **keywords)

        def counted_allocation(shape, *arguments, **keywords):
            array = allocate(shape, *arguments, **keywords)
            self.allocations += array.size > 0  # an empty array allocates nothing
            return array

        def refused(array):
            raise AssertionError(f"a kernel was launched on a host array {np.shape(array)}")

        monkeypatch.setattr(FakeCUDAArray, "copy_to_host", counted_to_host)
        monkeypatch.setattr(FakeCUDAArray, "copy_to_device", counted_to_device)
        monkeypatch.setattr(cuda, "to_device", counted_upload)
        monkeypatch.setattr(cuda, "device_array", counted_allocation)
        monkeypatch.setattr(kernel, "InOut", refused)


def contracting_tanh_step(h_prev, x_t, params, h_out):
    for i in range(h_out.shape[0]):
        h_out[i] = np.tanh(params * h_prev[i] + x_t[i])


@pytest.mark.parametrize("method", ["newton", "damped"])
def test_a_gpu_newton_iteration_sends_o_of_b_values_and_allocates_nothing(
    small_chunks, method, monkeypatch
):
    """Two more iterations of a solve on the GPU move at most ``16 B`` more values between host
    and device (the convergence summary, the sequences' marks and dampings), not the ``T B``
    residuals, and allocate no device memory (the scans' temporaries reuse the memory of the
    iterations before; the small tunables make the scans several levels deep)."""
    length, sequences = 48, 2
    x = np.random.default_rng(0).normal(size=(length, sequences, 2))
    cell = scanlab.cell(contracting_tanh_step, structure="diagonal")
    traffic = Traffic(monkeypatch)
    counts = []
    for iterations in (2, 4):
        traffic.values = traffic.allocations = 0
        _, info = scanlab.nonlinear_recurrence(
            cell, x, np.zeros(2), params=0.9, method=method, max_iter=iterations,
            on_fail="accept", device="cuda", full_output=True,
        )  # fmt: skip
        assert info.iterations == iterations and not info.converged
        counts.append((traffic.values, traffic.allocations))
    (values, allocations), (more_values, more_allocations) = counts
    assert 0 < more_values - values <= 2 * 16 * sequences < length * sequences
    assert allocations > 0 and more_allocations == allocations
