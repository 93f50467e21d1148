"""Linear recurrences, elementwise ``h_t = a_t * h_{t-1} + b_t`` and with matrices
``h_t = A_t h_{t-1} + b_t``, solved in parallel."""

import numbers

import numpy as np

from scanlab._arrays import (
    check_linear,
    check_linear_matrix,
    lay_out,
    lay_out_time_last,
    time_runs_last,
)
from scanlab._devices import cuda_module, on_gpu, resolve_device
from scanlab.cpu import linear as cpu_linear
from scanlab.cpu import linear_matrix as cpu_linear_matrix
from scanlab.cpu import linear_rows as cpu_linear_rows

METHODS = ("auto", "sequential", "scan")


def check_method(method, methods=METHODS) -> str:
    """``method`` if it names one of ``methods``, else a ValueError listing them."""
    if not isinstance(method, str) or method not in methods:
        raise ValueError(f"method must be one of {', '.join(map(repr, methods))}; got {method!r}")
    return method


def check_flag(name: str, value) -> bool:
    """``value`` as a bool if it is one (NumPy's too) or the integer 0 or 1, else a TypeError
    naming ``name`` (``reverse="no"`` would otherwise run backwards)."""
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, numbers.Integral) and value in (0, 1)
    ):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def linear_recurrence(
    a,
    b,
    h0=None,
    *,
    axis: int = 0,
    reverse: bool = False,
    device: str = "auto",
    method: str = "auto",
    out=None,
):
    r"""Solve the linear recurrence ``h[t] = a[t] * h[t-1] + b[t]`` along an axis.

    The recurrence is a scan of the associative operator
    :math:`(a_1, b_1) \circ (a_2, b_2) = (a_2 a_1, a_2 b_1 + b_2)`, so it can run in parallel
    over time (Martin & Cundy 2018) as well as over channels.

    Parameters
    ----------
    a, b : array_like
        Coefficients and inputs. They broadcast against each other; the result has their
        broadcast shape. A scalar ``a`` is a constant coefficient; ``a`` of shape ``(T, 1)``
        shares one coefficient per step across channels.
    h0 : array_like, optional
        The state before the first step, broadcastable to the result's shape without ``axis``.
        Zeros by default.
    axis : int, optional
        The time axis of the result (default 0).
    reverse : bool, optional
        Run backwards, ``h[t] = a[t] * h[t+1] + b[t]``, with ``h0`` after the last step
        (discounted returns, reverse-mode gradients).
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute. ``"auto"`` follows the data: the GPU when any of ``a``, ``b``, ``h0``
        and ``out`` is a GPU array, else the CPU. On the GPU (the kernels of
        ``scanlab.cuda.linear``), NumPy operands are copied over and the result back, while GPU
        arrays, objects with ``__cuda_array_interface__`` such as CuPy arrays, PyTorch CUDA
        tensors and Numba device arrays, are read in place and the result stays there.
    method : {"auto", "sequential", "scan"}, optional
        ``"sequential"``: one pass over time, parallel over blocks of channels (or, when ``b``
        lies with time contiguous in memory, such as ``axis=-1`` of a C-ordered array, over
        groups of channels walked together along their rows, square tiles of one vector's
        width of channels and steps transposed in registers: no transposing copy).
        ``"scan"``: parallel over time, a reduce-then-scan over tiles of chunks that threads
        take as they come free (two passes over each chunk, the second from cache); on
        time-contiguous data, row by row where it lies, each row one series and one call of
        about 10 us (for many short rows ``"sequential"`` is far faster: ``"auto"`` knows).
        ``"auto"``: the sequential loop for short sequences; otherwise the method measured
        faster on this machine for problems of this dtype, thread count, number of channels,
        size and layout, measured the first time and kept (``scanlab.wisdom``; ``scanlab
        tune`` measures again). On the GPU, ``"sequential"``
        is one thread per channel and ``"scan"`` a hierarchical Blelloch scan over tiles of
        time; ``"auto"`` takes the scan unless there are very many channels or few steps
        (``scanlab.config.cuda``).
    out : ndarray or GPU array, optional
        Where to write the result: the result's shape and dtype; on the GPU when the result
        is. Returned. On the CPU, a large result may bypass the cache (streaming stores, where
        this machine was measured to write faster so: ``config.cpu.streaming_store_bytes``),
        only where ``out`` starts on a 64-byte boundary, as the results scanlab allocates do.

    Returns
    -------
    h : ndarray or numba.cuda.devicearray.DeviceNDArray
        Every state ``h[t]``, in the broadcast shape of ``a`` and ``b``. When an operand is a GPU
        array, a new C-contiguous Numba device array (or ``out``), on the GPU:
        ``cupy.asarray(h)`` and ``torch.as_tensor(h, device="cuda")`` wrap it without a copy,
        ``h.copy_to_host()`` copies it to NumPy.

    Raises
    ------
    TypeError
        A dtype outside float32, float64, complex64, complex128 after promotion (integers and
        bools become float64), or ``out`` of the wrong dtype.
    ValueError
        Shapes that do not broadcast, ``h0`` or ``out`` of the wrong shape, an unknown
        ``method`` or ``device``.

    Notes
    -----
    The dtype is NumPy's promotion of ``a``, ``b`` and ``h0`` and the arithmetic is done in it.
    Inputs are never modified; ``out`` may alias them. A GPU operand that is already in the
    kernels' layout (time along its first axis, C-contiguous, in the result dtype; or constant
    over time or channels with length-1 axes) is read without a copy, and so is ``out`` written;
    any other is laid out by one copy on the GPU (``scanlab.cuda.arrays``). GPU work is queued
    on the default stream, after the stream an operand's interface names, and the function
    returns without waiting for it, unless it uploads something: a host operand, or the few
    index numbers of a layout copy (an upload waits for the GPU work queued before it). Each
    step is a fused multiply-add, rounded once: results can differ from a NumPy loop's
    (``a[t] * h + b[t]``, rounded twice) in the last bit, and where ``a[t] * h`` alone
    overflows or cancels against ``b[t]`` (``1e200 * 1e200 - inf`` is ``-inf``, NaN in
    NumPy). NaN and Inf propagate as in the sequential loop: from the step where they appear
    onwards. The ``"scan"`` method reorders the arithmetic, so its results differ from
    ``"sequential"`` by rounding (relative differences of a few ulps times the length of a
    chunk when ``|a|`` is near 1).
    Every chunk's composed carry is checked against the state the sequential loop reaches at the
    end of the chunk before it (on the CPU, in Dask and on the GPU alike): where they disagree
    beyond rounding (a state that overflowed inside the chunk, a product that underflowed and
    grew back, ``inf * 0``), the following chunks are rerun step by step from the loop's state
    until they agree again, so non-finite values appear exactly where the loop has them and no
    state is lost or invented (with complex values, which part of a product that overflowed is
    NaN may differ: the methods contract their multiply-adds differently). On the CPU and in
    Dask the products of ``a`` are kept as a mantissa and a power-of-two exponent, never
    subnormal, so their cost does not depend on the coefficients' values.

    See Also
    --------
    scipy.signal.lfilter : the constant-coefficient case, ``lfilter([1], [1, -a], b)``.
    scanlab.cpu.linear.linear_recurrence_scan, scanlab.cuda.linear.linear_recurrence_scan :
        the kernels.

    Examples
    --------
    An exponential moving average with smoothing 0.9:

    >>> import numpy as np
    >>> import scanlab
    >>> x = np.array([1.0, 2.0, 3.0, 4.0])
    >>> scanlab.linear_recurrence(0.9, 0.1 * x)
    array([0.1   , 0.29  , 0.561 , 0.9049])

    Discounted returns, ``G[t] = r[t] + 0.5 * G[t+1]``:

    >>> scanlab.linear_recurrence(0.5, np.array([1.0, 0.0, 4.0]), reverse=True)
    array([2., 2., 4.])

    Two channels along the last axis, each with its own initial state:

    >>> scanlab.linear_recurrence(np.ones((2, 3)), np.ones((2, 3)), h0=[10.0, 20.0], axis=1)
    array([[11., 12., 13.],
           [21., 22., 23.]])
    """
    device = resolve_device(device, a=a, b=b, h0=h0, out=out)
    method = check_method(method)
    reverse = check_flag("reverse", reverse)
    layout = check_linear(a, b, h0, axis)
    if device == "cpu" and time_runs_last(b, layout, 2):
        # Time contiguous in memory (axis=-1 of a C array, axis=0 of a Fortran one): solved
        # as it lies, without transposing the operands and the result.
        problem = lay_out_time_last(a, b, h0, layout, out)
        if not problem.is_empty:
            cpu_linear_rows.solve_rows(
                problem.a, problem.b, problem.h0, problem.kernel_out, reverse, method
            )
        return problem.finish()
    problem = in_kernel_layout(layout, a, b, h0, out, device)
    if not problem.is_empty:
        solve = solver(problem, cpu_linear if device == "cpu" else cuda_module("linear"))
        solve(problem.a, problem.b, problem.h0, problem.kernel_out, reverse, method)
    return problem.finish()


def linear_recurrence_matrix(
    A,
    b,
    h0=None,
    *,
    axis: int = 0,
    reverse: bool = False,
    device: str = "auto",
    method: str = "auto",
    out=None,
):
    r"""Solve the linear recurrence ``h[t] = A[t] @ h[t-1] + b[t]`` with matrices, along an axis.

    The recurrence is a scan of the associative operator
    :math:`(A_1, b_1) \circ (A_2, b_2) = (A_2 A_1, A_2 b_1 + b_2)`, so it can run in parallel
    over time as well as over independent systems.

    Parameters
    ----------
    A : array_like, shape (..., n, n)
        The matrices. Their leading dimensions broadcast against ``b``'s: ``(n, n)`` is one
        matrix for every step and system (a time-invariant system), ``(T, n, n)`` one per step.
        A transposed view such as ``A.swapaxes(-1, -2)`` is accepted as it is.
    b : array_like, shape (..., n)
        The inputs. The result has the broadcast of ``A.shape[:-2]`` and ``b.shape[:-1]``,
        followed by ``n``. Axes other than time and the state are a batch of independent
        systems: a block-diagonal system with blocks of size ``k`` is ``b`` of shape
        ``(T, blocks, k)`` with ``A`` of shape ``(T, blocks, k, k)``.
    h0 : array_like, optional
        The state before the first step, broadcastable to the result's shape without ``axis``.
        Zeros by default.
    axis : int, optional
        The time axis of the result (default 0); not the last axis, which holds the state.
    reverse : bool, optional
        Run backwards, ``h[t] = A[t] @ h[t+1] + b[t]``, with ``h0`` after the last step (pass
        ``A.swapaxes(-1, -2)`` for the adjoint recurrence of reverse-mode gradients).
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute, as for :func:`linear_recurrence` (GPU arrays are read in place).
    method : {"auto", "sequential", "scan"}, optional
        ``"sequential"``: one pass over time, ``O(n^2)`` per step, parallel over systems.
        ``"scan"``: parallel over time, ``O(n^3)`` per step for the matrix products of each
        chunk plus ``O(n^2)`` to apply them: ``n + 2`` times the work of the sequential loop, so
        it wins only with more than ``n + 2`` threads per system. ``"auto"`` takes it for
        sequences of at least ``scanlab.config.cpu.auto_scan_min_length`` steps when there are
        at least ``systems * (n + 2)`` threads, and ``"sequential"`` otherwise (on a 2-core CPU,
        always: ``benchmarks/RESULTS.md``). On the GPU, ``"sequential"`` runs one thread per
        system of up to 4 states (in registers) and splits larger states' rows across threads;
        ``"scan"`` is a hierarchical scan of chunks, one thread per chunk and system; ``"auto"``
        takes the scan unless there are few steps or many systems (``scanlab.config.cuda``).
    out : ndarray or GPU array, optional
        Where to write the result: the result's shape and dtype. Returned.

    Returns
    -------
    h : ndarray or numba.cuda.devicearray.DeviceNDArray
        Every state ``h[t]``, shape ``broadcast(A.shape[:-2], b.shape[:-1]) + (n,)``; on the
        GPU when an operand is, as for :func:`linear_recurrence`.

    Raises
    ------
    TypeError
        A dtype outside float32, float64, complex64, complex128 after promotion, or ``out`` of
        the wrong dtype.
    ValueError
        ``A`` not square, ``b`` whose last axis is not ``n``, leading shapes that do not
        broadcast, ``axis`` on the state axis, ``h0`` or ``out`` of the wrong shape, an unknown
        ``method`` or ``device``.

    Notes
    -----
    Dtypes, inputs and ``out`` follow :func:`linear_recurrence`. Systems of 2 to 4 states keep
    their state (and in the scan, their matrix products) in registers, on the CPU and the GPU;
    on the CPU, larger ones
    vectorise the matrix-vector products, whose sums may then be added in another order than
    the plain loop's. ``n = 1`` runs the elementwise kernels.

    The ``"scan"`` method multiplies the matrices of each chunk together before applying them to
    the state, so its rounding differs from the sequential loop's: errors are relative to
    ``norm(product) * norm(state)`` rather than to ``norm(state)``, which matters only when the
    products are much larger than the states they produce (strongly non-normal matrices). With
    spectral radius above 1 the products grow like the recursion itself, and with spectral
    radius below 1 they decay to zero harmlessly. The state each chunk's loop ends in is
    checked, entry by entry, against the composed carry the next chunk started from; where they
    disagree beyond rounding (a state that overflowed inside the chunk, huge terms whose product
    cancels, a state lost to underflow), the chunks after it are rerun from the loop's state (on
    the GPU, the whole system), so non-finite values appear exactly where the sequential loop
    has them. On the CPU the chunk products are kept as a mantissa and a power-of-two exponent.

    See Also
    --------
    linear_recurrence : the elementwise (diagonal) case, ``O(1)`` per state and step.
    scanlab.cpu.linear_matrix.linear_recurrence_matrix_scan,
    scanlab.cuda.linear_matrix.linear_recurrence_matrix_scan : the kernels.

    Examples
    --------
    A damped oscillator, rotating and shrinking its state at every step:

    >>> import numpy as np
    >>> import scanlab
    >>> c, s = 0.8 * np.cos(0.5), 0.8 * np.sin(0.5)
    >>> A = np.array([[c, -s], [s, c]])
    >>> b = np.zeros((3, 2))
    >>> scanlab.linear_recurrence_matrix(A, b, h0=[1.0, 0.0]).round(4)
    array([[0.7021, 0.3835],
           [0.3458, 0.5385],
           [0.0362, 0.5107]])

    Three independent 2-state systems (a block-diagonal 6-state system) driven by ones:

    >>> A = np.broadcast_to(np.eye(2), (3, 2, 2))
    >>> scanlab.linear_recurrence_matrix(A, np.ones((4, 3, 2)))[:, 0]
    array([[1., 1.],
           [2., 2.],
           [3., 3.],
           [4., 4.]])
    """
    device = resolve_device(device, A=A, b=b, h0=h0, out=out)
    method = check_method(method)
    reverse = check_flag("reverse", reverse)
    problem = in_kernel_layout(check_linear_matrix(A, b, h0, axis), A, b, h0, out, device)
    if not problem.is_empty:
        if problem.h0.shape[1] == 1:
            # One state: the elementwise recurrence, with the trailing unit axes dropped.
            solve = solver(problem, cpu_linear if device == "cpu" else cuda_module("linear"))
            a, b, h0, out = (problem.a, problem.b, problem.h0, problem.kernel_out)
            a, b, out = (array.reshape(array.shape[:2]) for array in (a, b, out))
            solve(a, b, h0.reshape(-1), out, reverse, method)
        else:
            backend = cpu_linear_matrix if device == "cpu" else cuda_module("linear_matrix")
            solve = solver(problem, backend)
            solve(problem.a, problem.b, problem.h0, problem.kernel_out, reverse, method)
    return problem.finish()


def in_kernel_layout(layout, a, b, h0, out, device: str):
    """The checked recurrence in kernel layout: on the GPU when any operand is a GPU array
    (then none is copied to the host), else on the host."""
    if device == "cuda" and any(map(on_gpu, (a, b, h0, out))):
        return cuda_module("arrays").lay_out(a, b, h0, layout, out)
    return lay_out(a, b, h0, layout, out)


def solver(problem, backend):
    """``backend``'s launcher for ``problem``'s arrays: ``solve_on_device`` for device arrays,
    ``solve`` for host arrays (which the GPU backends copy over and back)."""
    return backend.solve_on_device if problem.on_device else backend.solve


__all__ = ["linear_recurrence", "linear_recurrence_matrix"]
