"""IIR filters over rows, time contiguous: the transposed direct form II of ``lfilter`` and the
cascaded second-order sections of ``sosfilt``, scipy's arithmetic step for step.

Each thread walks a group of ``ROW_CHAINS`` rows in lockstep: independent dependency chains that
hide the latency of one sample's multiply-adds, each reading along contiguous memory. No
fastmath: without contracted multiply-adds the results are scipy's, bit for bit.
"""

from numba import njit, prange

#: Rows each thread filters together.
ROW_CHAINS = 8


@njit(cache=True, parallel=True)
def lfilter_rows(b, a, x, state, out):
    """Filter each row of ``x`` (``(D, T)``) by ``b``, ``a`` (normalised, ``a[0] = 1``, both
    of length ``K + 1``) from ``state`` (``(D, K)``, overwritten with the final state) into
    ``out``::

        y[t] = b[0] x[t] + z[0]
        z[i] = z[i + 1] + b[i + 1] x[t] - a[i + 1] y[t]   (i < K - 1)
        z[K - 1] = b[K] x[t] - a[K] y[t]
    """
    rows, length = x.shape
    order = state.shape[1]
    for group in prange((rows + ROW_CHAINS - 1) // ROW_CHAINS):
        first = group * ROW_CHAINS
        count = min(ROW_CHAINS, rows - first)
        z = state[first : first + count].copy()
        for t in range(length):
            for k in range(count):
                sample = x[first + k, t]
                y = z[k, 0] + b[0] * sample if order else b[0] * sample
                for i in range(order - 1):
                    z[k, i] = z[k, i + 1] + sample * b[i + 1] - y * a[i + 1]
                if order:
                    z[k, order - 1] = sample * b[order] - y * a[order]
                out[first + k, t] = y
        state[first : first + count] = z


@njit(cache=True, parallel=True)
def sosfilt_rows(sos, x, state, out):
    """Filter each row of ``x`` (``(D, T)``) through the second-order sections ``sos``
    (``(S, 6)``: ``b0 b1 b2 1 a1 a2``) in cascade, from ``state`` (``(D, S, 2)``, overwritten
    with the final state) into ``out``."""
    rows, length = x.shape
    sections = sos.shape[0]
    for group in prange((rows + ROW_CHAINS - 1) // ROW_CHAINS):
        first = group * ROW_CHAINS
        count = min(ROW_CHAINS, rows - first)
        z = state[first : first + count].copy()
        for t in range(length):
            for k in range(count):
                current = x[first + k, t]
                for s in range(sections):
                    filtered = sos[s, 0] * current + z[k, s, 0]
                    z[k, s, 0] = sos[s, 1] * current - sos[s, 4] * filtered + z[k, s, 1]
                    z[k, s, 1] = sos[s, 2] * current - sos[s, 5] * filtered
                    current = filtered
                out[first + k, t] = current
        state[first : first + count] = z
