"""Drop-in front ends for the filters and smoothers users already run.

``lfilter`` and ``sosfilt`` are ``scipy.signal``'s, with scipy's semantics and arithmetic,
parallel over channels (and over time for few series), and so are the zero-phase ``filtfilt`` and
``sosfiltfilt`` built on them; ``ewm_mean`` is ``pandas.DataFrame.ewm(...).mean()`` on NumPy
arrays, any axis, parallel over channels.

With ``device="cuda"`` (or GPU arrays: CuPy, PyTorch, Numba device arrays, read in place) they
run on the GPU through the core CUDA solvers rather than kernels of their own, so that they
share the solvers' parallel scans and checked carries: a filter of order ``K`` is the
state-space recurrence of its ``K`` delays (``scanlab.cuda.iir``: the companion matrix,
``linear_recurrence_matrix``'s kernels; a cascade of sections is one 2-state recurrence per
section), the EWM a few elementwise recurrences (``scanlab.cuda.ewm``). As with
``linear_recurrence``, GPU operands give Numba device arrays, NumPy operands NumPy arrays. The GPU
path is tested in Numba's CUDA simulator and compiled to PTX; its speed is not measured.
"""

import math
import numbers
from functools import partial

import numba
import numpy as np

from scanlab._arrays import (
    as_time_last,
    as_time_major,
    moved_axis,
    normalize_axis,
    numeric_array,
    pandas_labels,
    read_only,
    result_dtype,
    stand_in,
    time_contiguous,
)
from scanlab._devices import cuda_module, on_gpu, resolve_device
from scanlab._ewm_weights import centre_of_mass, step_decays
from scanlab._filters import (
    both_ways,
    check_conditions,
    conditions_by_row,
    few_long_series,
    filter_coefficients,
    filtered_rows,
    first_order,
    from_rows,
    from_section_rows,
    host_signal,
    on_device,
    run_fir,
    run_fir_steps,
    run_iir,
    run_iir_steps,
    run_sections,
    run_sections_steps,
    section_array,
    section_conditions,
    signal_array,
    zero_padded,
)
from scanlab.cpu import ewm as cpu_ewm
from scanlab.cpu.blocks import channel_block
from scanlab.cpu.threads import threads_for


def lfilter(b, a, x, axis: int = -1, zi=None, *, device: str = "auto"):
    """Filter ``x`` along ``axis`` by the IIR or FIR filter ``b``, ``a``: scipy's ``lfilter``.

    The one-line change from scipy: ``from scanlab.signal import lfilter``. The same
    arguments, normalisation by ``a[0]``, initial and final conditions, dtypes and errors; the
    filter runs in scipy's transposed direct form II with scipy's arithmetic (bit for bit for
    IIR filters: real ones, and complex ones with ``a[0] = 1``; where a complex sample is
    infinite, which part of an output is NaN rather than infinite may differ, the outputs
    that are not finite are the same), in parallel over channels,
    each thread walking 8 channels in lockstep; fewer series (up to order 8) one at a time
    with their delays in registers, or, where
    ``auto`` measured it faster, one long series in parallel over time (equal to scipy to
    rounding). An FIR filter (``a`` of length 1) is, as in scipy, a convolution, in parallel
    over channels and time: a NaN or Inf sample reaches the ``len(b)`` outputs from it on, no
    further (32 taps: 2.9-4.4x scipy on Zen 3). A first-order IIR filter (``b = [b0]``, ``a =
    [1, a1]``) of fewer than 8 series of ``config.cpu.auto_scan_min_length`` samples or more is
    solved as ``b0 * linear_recurrence(-a1, x)`` (with ``zi``, from ``h0 = -zi / (a1 b0)``),
    in parallel over time (equal to scipy to rounding); where NaN or Inf turns up (scipy's
    delay line then differs: ``0 * inf`` is NaN), the filter is run again as scipy runs it.
    Measured (2 cores of AMD Zen 3 and of Zen 5, ``benchmarks/front_ends.py``): a first-order
    filter 3.3-5.2x scipy on a (100, 10**5) array along ``axis=-1`` and 2.0-3.8x on one series
    of 10**7 samples; a 4th-order Butterworth filter 2.9-5.9x, both shapes; with one of the two
    cores kept busy by another process, 1.6-2.9x. Time first (``axis=0`` of a C array) is read
    as it lies, with no transposing copy: a (10**5, 100) array 3.8-6.5x scipy (Zen 4 and 5;
    the FIR filter 4.2-4.8x), a stereo (10**6, 2) one 3.4-4.0x (Zen 5). Each call costs about
    10 us more than scipy's: a stream filtered in pieces of 4096 samples runs as fast as
    scipy, in pieces of 256 at 0.3x (Zen 5).

    Parameters
    ----------
    b, a : array_like
        Numerator and denominator coefficients, 1-D and non-empty; ``a[0]`` must not be 0.
    x : array_like
        The signal; float32, float64 or complex (integers become float64).
    axis : int, optional
        The time axis (the last by default, as in scipy).
    zi : array_like, optional
        Initial conditions of the delays, of ``x``'s shape with ``axis`` of length
        ``max(len(a), len(b)) - 1`` (other axes of length 1 broadcast), e.g. from
        ``scipy.signal.lfilter_zi`` or a previous call's ``zf``.
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute; ``"auto"`` follows the data (the GPU when ``x`` or ``zi`` is a GPU
        array). On the GPU the filter is solved in parallel over time as the matrix recurrence
        of its delays (see the module's docstring): equal to scipy to rounding, not bit for
        bit, and numerically sound for low orders (use ``sosfilt`` for high ones).

    Returns
    -------
    y : ndarray or numba.cuda.devicearray.DeviceNDArray
        The filtered signal, of ``x``'s shape, in the promoted dtype of ``b``, ``a``, ``x``
        and ``zi``.
    zf : ndarray
        Only with ``zi``: the final conditions, of ``zi``'s full shape, to filter the next
        piece of a stream.

    Raises
    ------
    ValueError
        ``b`` or ``a`` not non-empty 1-D, ``a[0] == 0``, a ``zi`` of the wrong shape, ``x``
        without a time axis, an unknown ``device``.
    TypeError
        Non-numeric operands; GPU arrays with ``device="cpu"``, or as ``b`` or ``a`` (read on
        the host).

    See Also
    --------
    scipy.signal.lfilter : the reference.
    sosfilt : the numerically sound way to run high-order filters.
    scanlab.linear_recurrence : first-order filters with coefficients that change over time.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.signal import lfilter
    >>> lfilter([1.0], [1.0, -0.5], np.ones(4))
    array([1.   , 1.5  , 1.75 , 1.875])
    >>> y, zf = lfilter([1.0], [1.0, -0.5], np.ones(2), zi=[0.0])
    >>> y, zf
    (array([1. , 1.5]), array([0.75]))
    >>> lfilter([1.0], [1.0, -0.5], np.ones(2), zi=zf)[0]  # the stream goes on
    array([1.75 , 1.875])
    """
    return run_lfilter(b, a, x, axis, zi, device)


def run_lfilter(b, a, x, axis, zi, device, out=None):
    """:func:`lfilter`; on the host, the result written into ``out`` where given (a host array
    of its shape and dtype that the filter may overwrite: :func:`filtfilt`'s backward pass
    writes over its forward pass's result, saving the fresh memory a result costs)."""
    device = resolve_device(device, x=x, zi=zi)
    b, a = (filter_coefficients(name, value) for name, value in (("b", b), ("a", a)))
    signal = signal_array(x)
    axis = normalize_axis(axis, signal.ndim)
    order = max(len(a), len(b)) - 1
    fir = len(a) == 1  # scipy convolves
    state_shape = signal.shape[:axis] + (order,) + signal.shape[axis + 1 :]
    operands = {"b": b, "a": a, "x": x}
    if zi is not None:
        given = numeric_array("zi", zi, stand_in).shape
        check_conditions("zi", given, state_shape, signal.shape, axis)
        operands["zi"] = zi
    dtype = result_dtype(**operands)
    b, a = (zero_padded(values, order + 1, dtype) for values in (b, a))
    if a[0] != 1:
        b, a = b / a[0], a / a[0]
    if device == "cuda":
        order_of_zi = [*range(axis), *range(axis + 1, signal.ndim), axis]
        iir = cuda_module("iir")
        run = partial(iir.fir_on_device, b) if fir else partial(iir.lfilter_on_device, b, a)
        return on_device(run, x, signal.shape, axis, dtype, zi, state_shape, order_of_zi)
    x, zi = signal, zi if zi is None else np.asarray(zi)
    rows = math.prod(state_shape) // max(order, 1)
    if order == 1 and not fir and b[1] == 0 and few_long_series(rows, x.shape[axis]):
        result = first_order(b[0], a[1], x, axis, zi, dtype, out)
        if result is not None:
            return result
    state = conditions_by_row(zi, state_shape, x, axis, dtype)
    run = partial(run_fir if fir else run_iir, b, a)
    task, run_steps = (None, run_fir_steps) if fir else ("lfilter", run_iir_steps)
    run_steps = partial(run_steps, b, a)
    y = filtered_rows(x, axis, dtype, run, state, task, out, run_steps)
    return y if zi is None else (y, from_rows(state, x.shape, axis, order))


def sosfilt(sos, x, axis: int = -1, zi=None, *, device: str = "auto"):
    """Filter ``x`` along ``axis`` through cascaded second-order sections: scipy's ``sosfilt``.

    The one-line change from scipy: ``from scanlab.signal import sosfilt``. The same arguments,
    initial and final conditions, dtypes and errors, and scipy's arithmetic (bit for bit, real
    and complex; where a complex sample is infinite, which part of an output is NaN rather than
    infinite may differ, the outputs that are not finite are the same), in parallel over
    channels, each thread walking 8 channels in lockstep; fewer
    series one at a time with their delays in registers (3 sections or more, 2 if complex,
    advancing together in vector lanes), or one long
    series in parallel over time, equal to scipy to rounding, where ``auto`` measured that
    faster. Measured (2 cores of AMD Zen 3 and of Zen 5, ``benchmarks/front_ends.py``): an
    8th-order Butterworth filter 3.5-6.4x scipy on a (100, 10**5) array along ``axis=-1`` and
    3.4-5.8x on one series of 10**7 samples; with one of the two cores kept busy by another
    process, 1.6-3.4x. Time first (``axis=0`` of a C array) is read as it lies: a (10**5, 100)
    array 3.2-4.6x (Zen 4 and 5), a stereo (10**6, 2) one 3.6x (Zen 5; 1.8x with a core busy).
    A stream filtered in pieces of 256 samples runs at 1.3-1.4x scipy, of 4096 at 1.6x
    (Zen 5: scipy's own call costs more).

    Parameters
    ----------
    sos : array_like
        ``(n_sections, 6)``: each row ``b0, b1, b2, a0, a1, a2`` with ``a0 = 1`` (as
        ``scipy.signal.butter(..., output="sos")`` gives); one section may be ``(6,)``.
    x : array_like
        The signal; float32, float64 or complex (integers become float64).
    axis : int, optional
        The time axis (the last by default, as in scipy).
    zi : array_like, optional
        Initial conditions, ``(n_sections, ..., 2, ...)``: ``x``'s shape with ``axis`` of
        length 2, for each section (``scipy.signal.sosfilt_zi``, or a previous call's ``zf``).
    device : {"auto", "cpu", "cuda"}, optional
        As for :func:`lfilter`; on the GPU each section is a 2-state matrix recurrence.

    Returns
    -------
    y : ndarray or numba.cuda.devicearray.DeviceNDArray
        The filtered signal, of ``x``'s shape, in the promoted dtype of ``sos``, ``x`` and
        ``zi``.
    zf : ndarray
        Only with ``zi``: the final conditions, of ``zi``'s shape.

    Raises
    ------
    ValueError
        ``sos`` not ``(n, 6)`` or with ``a0 != 1``, a ``zi`` of the wrong shape, ``x`` without
        a time axis, an unknown ``device``.
    TypeError
        Non-numeric operands; GPU arrays with ``device="cpu"``, or as ``sos``.

    See Also
    --------
    scipy.signal.sosfilt : the reference.
    lfilter : the same filter from ``b`` and ``a``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import butter
    >>> from scanlab.signal import sosfilt
    >>> sos = butter(4, 0.1, output="sos")
    >>> y = sosfilt(sos, np.ones((3, 1000)))  # three channels, time last
    >>> np.round(y[:, -1], 6)
    array([1., 1., 1.])
    """
    return run_sosfilt(sos, x, axis, zi, device)


def run_sosfilt(sos, x, axis, zi, device, out=None):
    """:func:`sosfilt`, writing the result into ``out`` on the host as :func:`run_lfilter`
    does."""
    device = resolve_device(device, x=x, zi=zi)
    sos = section_array(sos)
    signal = signal_array(x)
    axis = normalize_axis(axis, signal.ndim)
    sections = sos.shape[0]
    zi_shape = (sections, *signal.shape[:axis], 2, *signal.shape[axis + 1 :])
    operands = {"sos": sos, "x": x}
    if zi is not None:
        given = numeric_array("zi", zi, stand_in).shape
        if given != zi_shape:
            raise ValueError(
                f"Invalid zi shape. With axis={axis}, an input with shape {signal.shape}, and an "
                f"sos array with {sections} sections, zi must have shape {zi_shape}, got {given}."
            )
        operands["zi"] = zi
    dtype = result_dtype(**operands)
    sos = np.ascontiguousarray(sos, dtype)
    if device == "cuda":
        order_of_zi = [0, *range(1, axis + 1), *range(axis + 2, signal.ndim + 1), axis + 1]
        run = partial(cuda_module("iir").sosfilt_on_device, sos)
        return on_device(run, x, signal.shape, axis, dtype, zi, zi_shape, order_of_zi)
    x, zi = signal, zi if zi is None else np.asarray(zi)
    state = section_conditions(zi, zi_shape, axis, dtype)
    flat = state.reshape(len(state), 2 * sections)  # a view: the kernel's final state lands here

    sos = read_only(sos)
    run, run_steps = partial(run_sections, sos), partial(run_sections_steps, sos)
    y = filtered_rows(x, axis, dtype, run, flat, "sosfilt", out, run_steps)
    if zi is None:
        return y
    return y, from_section_rows(state, x.shape, axis)


def filtfilt(
    b, a, x, axis: int = -1, padtype="odd", padlen=None, method="pad", irlen=None, *,
    device: str = "auto",
):  # fmt: skip
    """Filter ``x`` forwards and backwards (zero phase): scipy's ``filtfilt``.

    The one-line change from scipy: ``from scanlab.signal import filtfilt``. The same
    arguments and steps: ``x`` extended at both ends by ``padlen`` samples (``3 * max(len(a),
    len(b))`` by default; ``padtype`` "odd", "even", "constant" or None), filtered by
    :func:`lfilter` from ``scipy.signal.lfilter_zi(b, a)`` times the first sample, reversed,
    filtered again from the steady state of its first sample, reversed, and cut back to ``x``'s
    length. Both passes run in parallel as :func:`lfilter` does: a 4th-order Butterworth filter
    3.3-3.9x scipy on one series of 10**7 samples and on a (100, 10**5) array (2 cores of AMD
    Zen 4). ``method="gust"`` (Gustafsson's initial conditions) is scipy's own, run as it is
    (``irlen`` goes to it). A filter without delays, which scipy refuses, is its gain, twice.

    Parameters
    ----------
    b, a : array_like
        The filter, as for :func:`lfilter`.
    x : array_like
        The signal, a host array (padded on the host); float32, float64 or complex.
    axis : int, optional
        The time axis (the last by default).
    padtype : {"odd", "even", "constant", None}, optional
        How ``x`` is extended at its ends (None: not at all).
    padlen : int, optional
        Samples added at each end; less than ``x``'s length along ``axis``.
    method : {"pad", "gust"}, optional
    irlen : int, optional
        With ``method="gust"``: scipy's impulse-response length.
    device : {"auto", "cpu", "cuda"}, optional
        Where the two passes run (:func:`lfilter`); ``"auto"`` is the CPU here.

    Returns
    -------
    ndarray
        The zero-phase filtered signal, of ``x``'s shape.

    Raises
    ------
    ValueError
        An unknown ``padtype`` or ``method``, ``x`` not longer than ``padlen``, and as for
        :func:`lfilter`.
    TypeError
        ``x`` a GPU array; as for :func:`lfilter`.

    See Also
    --------
    scipy.signal.filtfilt : the reference.
    sosfiltfilt : the same for second-order sections (sound for high orders).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import butter
    >>> from scanlab.signal import filtfilt
    >>> b, a = butter(2, 0.2)
    >>> np.round(filtfilt(b, a, np.ones(20))[:3], 6)  # a constant passes unchanged
    array([1., 1., 1.])
    """
    if method not in ("pad", "gust"):
        raise ValueError(f"method must be 'pad' or 'gust', got {method!r}")
    signal = host_signal("filtfilt", x)
    axis = normalize_axis(axis, signal.ndim)
    import scipy.signal  # here: importing it takes a second

    if method == "gust":
        return scipy.signal.filtfilt(b, a, signal, axis, method="gust", irlen=irlen)
    b, a = (filter_coefficients(name, value) for name, value in (("b", b), ("a", a)))
    # scipy's lfilter_zi refuses filters without delays (scipy's filtfilt then fails)
    steady = scipy.signal.lfilter_zi(b, a) if max(len(a), len(b)) > 1 else np.zeros(0)

    def run(values, first, out=None):  # along the last axis; first: (..., 1)
        return run_lfilter(b, a, values, -1, steady * first, device, out)

    return both_ways(run, signal, axis, padtype, padlen, max(len(a), len(b)))


def sosfiltfilt(sos, x, axis: int = -1, padtype="odd", padlen=None, *, device: str = "auto"):
    """Filter ``x`` forwards and backwards (zero phase) through second-order sections: scipy's
    ``sosfiltfilt``.

    The one-line change from scipy: ``from scanlab.signal import sosfiltfilt``. The steps of
    :func:`filtfilt` (padding by ``3 * (2 n_sections + 1)`` samples by default, less one
    per section pair with ``b2 = a2 = 0``; initial conditions from
    ``scipy.signal.sosfilt_zi``), each pass run by :func:`sosfilt`: an 8th-order Butterworth
    filter 3.4-3.5x scipy on one series of 10**7 samples and on a (100, 10**5) array (2 cores of
    AMD Zen 4).

    Parameters
    ----------
    sos : array_like
        ``(n_sections, 6)``, as for :func:`sosfilt`.
    x, axis, padtype, padlen, device
        As for :func:`filtfilt`.

    Returns
    -------
    ndarray
        The zero-phase filtered signal, of ``x``'s shape.

    Raises
    ------
    ValueError, TypeError
        As for :func:`filtfilt` and :func:`sosfilt`.

    See Also
    --------
    scipy.signal.sosfiltfilt : the reference.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.signal import butter
    >>> from scanlab.signal import sosfiltfilt
    >>> sos = butter(8, 0.1, output="sos")
    >>> y = sosfiltfilt(sos, np.sin(np.linspace(0, 4, 1000)))  # a slow sine, no delay
    >>> bool(abs(y[500] - np.sin(2.0)) < 1e-3)
    True
    """
    import scipy.signal  # here: importing it takes a second

    signal = host_signal("sosfiltfilt", x)
    axis = normalize_axis(axis, signal.ndim)
    sos = section_array(sos)
    taps = 2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum())
    steady = scipy.signal.sosfilt_zi(sos)

    def run(values, first, out=None):  # along the last axis; first: (..., 1)
        zi = steady.reshape(len(sos), *[1] * (values.ndim - 1), 2) * first
        return run_sosfilt(sos, values, -1, zi, device, out)

    return both_ways(run, signal, axis, padtype, padlen, taps)


def ewm_mean(
    x,
    *,
    com=None,
    span=None,
    halflife=None,
    alpha=None,
    adjust: bool = True,
    ignore_na: bool = False,
    min_periods: int | None = 0,
    axis: int = 0,
    times=None,
    device: str = "auto",
):
    """Exponentially weighted mean along ``axis``: ``pandas.DataFrame.ewm(...).mean()``.

    The one-line change from pandas: ``df.ewm(span=20).mean()`` becomes
    ``ewm_mean(df, span=20)``: a Series or DataFrame gives one back with its index, columns
    and name, in float64 as pandas' (the columns are channels, time along axis 0).
    Measured (2 cores of AMD Zen 3 and of Zen 5, ``benchmarks/front_ends.py``): 2.3-4.6x
    pandas on a Series of 10**7 values, 2.1-7.4x on a (10**5, 100) DataFrame, with or without
    10% missing values; with ``times``, 3.2-4.3x on the Series and 7.9-9.2x on the DataFrame
    (Zen 3); with one of the two cores kept busy by another process, 2.1-6.2x. Missing values
    at random cost no more than none (no branch on them): on Zen 4 a Series with 10% missing
    3.4-3.5x pandas, as without, where it had been 2.6x.

    Parameters
    ----------
    x : array_like, pandas.Series or pandas.DataFrame
        float32 or float64 (integers and bools become float64); NaN and infinities mark missing
        values, as in pandas.
    com, span, halflife, alpha : float, optional
        The decay, exactly one of them, as pandas validates them: ``alpha = 1 / (1 + com)``,
        ``com >= 0``; ``com = (span - 1) / 2``, ``span >= 1``;
        ``alpha = 1 - exp(-ln 2 / halflife)``, ``halflife > 0``; ``0 < alpha <= 1``. With
        ``times``, ``halflife`` is a duration (``"4 days"``, a ``timedelta``) and required.
    adjust : bool, optional
        True: the weights of the observations so far, ``(1 - alpha)**i``, normalised by their
        sum. False: ``y[t] = (1 - alpha) y[t-1] + alpha x[t]``.
    ignore_na : bool, optional
        False: missing values still age the observations before them (weights by absolute
        position). True: they are skipped.
    min_periods : int, optional
        NaN until this many observations were seen: as in pandas, at least 1 (None too),
        a float truncated.
    axis : int, optional
        The time axis.
    times : array_like of datetime64, optional
        The moment of each step (pandas' ``times``, increasing): a step ages the weights by
        ``(1 - alpha) ** (elapsed / halflife)``, ``alpha`` 1/2 unless com, span or alpha is
        given too (only with ``adjust=True``, as in pandas).
    device : {"auto", "cpu", "cuda"}, optional
        Where to compute; ``"auto"`` follows ``x``. On the GPU the mean is a recurrence whose
        coefficients come from the weights' recurrences (every option supported; see
        ``scanlab.cuda.ewm``), equal to pandas' to rounding.

    Returns
    -------
    ndarray, numba.cuda.devicearray.DeviceNDArray, pandas.Series or pandas.DataFrame
        Of ``x``'s shape and dtype (float32 stays float32; the means are computed in float64,
        as pandas computes them, and rounded once); of ``x``'s pandas type and labels, float64,
        for a Series or DataFrame.

    Raises
    ------
    ValueError
        Not exactly one of com/span/halflife/alpha, one outside its domain (pandas' messages;
        with ``times``, a ``halflife`` that is not a positive duration), ``x`` without a time
        axis, an unknown ``device``.
    TypeError
        Complex or non-numeric ``x``; a decay or ``min_periods`` that is not a number; a GPU
        ``x`` with ``device="cpu"``.

    See Also
    --------
    pandas.DataFrame.ewm : the reference (``ewm(...).mean()``).

    Notes
    -----
    One pass over time, in parallel over blocks of channels, each block vectorised. pandas'
    loop divides at every step by a sum that depends on the previous step; here the mean is
    carried as the ratio of the weighted sum and the sum of the weights (``adjust=True``) or
    as ``c * mean + d`` with the step's coefficients worked out off the dependency chain
    (``adjust=False``). The means are pandas' in exact arithmetic and agree with pandas' to
    rounding (a few ulps). With ``times`` and ``adjust=False`` an observation weighs
    ``1 - w``, ``w`` what is left of the old mean's weight, as in pandas. Without ``times``,
    ``adjust=False`` weighs ``[x0, nan, x2]`` by ``(1 - alpha)**2`` and ``alpha`` as pandas
    documents (and pandas 2 computes); pandas 3.0-3.1 computes ``1 - (1 - alpha)**2`` for
    ``alpha = 0.5`` (``span=3``) only, a regression reported as pandas-dev/pandas#66523.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.signal import ewm_mean
    >>> ewm_mean(np.array([1.0, np.nan, 3.0]), alpha=0.5)
    array([1. , 1. , 2.6])
    >>> ewm_mean(np.array([1.0, np.nan, 3.0]), alpha=0.5, ignore_na=True)
    array([1.        , 1.        , 2.33333333])
    >>> import pandas as pd
    >>> ewm_mean(pd.Series([1.0, 3.0], index=["mon", "tue"], name="price"), alpha=0.5)
    mon    1.000000
    tue    2.333333
    Name: price, dtype: float64
    >>> days = pd.to_datetime(["2026-12-01", "2026-12-02", "2026-12-09"])
    >>> ewm_mean(np.array([1.0, 3.0, 5.0]), halflife="1 day", times=days)
    array([1.        , 2.33333333, 4.96911197])
    """
    if times is not None and not adjust and (com, span, alpha) != (None, None, None):
        raise NotImplementedError(
            "None of com, span, or alpha can be specified if times is provided and adjust=False"
        )
    com = centre_of_mass(com, span, halflife, alpha, times)
    alpha = 1.0 / (1.0 + com)
    if min_periods is not None and not isinstance(min_periods, numbers.Real):
        raise TypeError(f"min_periods must be an integer, got {min_periods!r}")
    min_periods = 1 if min_periods is None else max(int(min_periods), 1)  # as pandas
    device = resolve_device(device, x=x)
    values = numeric_array("x", x, stand_in)
    if values.dtype.kind == "c":
        raise TypeError(f"x has dtype {values.dtype}; ewm_mean takes real numbers, as pandas does")
    if not values.shape:
        raise ValueError("x must have a time axis; got a scalar")
    labelled = pandas_labels(x)
    dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if labelled is not None:
        dtype = np.dtype(np.float64)
    axis = normalize_axis(axis, values.ndim)
    decays = step_decays(times, halflife, alpha, values.shape[axis])
    # With times and adjust=False pandas weighs an observation by what the old mean lost since
    # the last one, 1 - V (not alpha). pandas 3.0-3.1 does so without times too when com == 1
    # (pandas-dev/pandas#66523, against its documented weights): scanlab keeps the documented.
    complement = times is not None and not adjust
    options = (alpha, decays, bool(adjust), complement, bool(ignore_na), min_periods)
    if device == "cuda":
        arrays = cuda_module("arrays")
        rows = arrays.time_first_rows(x, values.shape, axis, np.float64)
        means = cuda_module("ewm").ewm_mean_on_device(rows, *options, dtype)
        result = arrays.from_time_first_rows(means, values.shape, axis)
        if on_gpu(x):
            return result
        return result.copy_to_host() if labelled is None else labelled(result.copy_to_host())
    rest = values.shape[:axis] + values.shape[axis + 1 :]
    length, channels = values.shape[axis], math.prod(rest)
    if channels > 1 and length > 1 and time_contiguous(values, axis):
        # Time contiguous (a DataFrame's columns): read and written as they lie.
        out = np.empty((channels, length), dtype)
        rows = as_time_last(values, values.ndim, axis, rest, dtype)
        with threads_for(out.size):
            cpu_ewm.ewm_mean_rows(rows.T, *options, out.T, cpu_ewm.SERIES_LANES)
        result = moved_axis(out.reshape((*rest, length)), -1, axis)
        return result if labelled is None else labelled(result)
    out = np.empty((length, channels), dtype)
    if out.size:
        values = as_time_major(values, values.ndim, axis, rest, dtype)
        if channels == 1:  # one series: the kernel walks it without a parallel region
            cpu_ewm.ewm_mean_rows(values, *options, out, 1)
        else:
            with threads_for(out.size):
                block = channel_block(channels, dtype.itemsize, numba.get_num_threads())
                cpu_ewm.ewm_mean_rows(values, *options, out, block)
    result = moved_axis(out.reshape((length, *rest)), 0, axis)
    return result if labelled is None else labelled(result)


__all__ = ["ewm_mean", "filtfilt", "lfilter", "sosfilt", "sosfiltfilt"]
