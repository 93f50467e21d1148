"""Newton's convergence judgement on the CPU: the :class:`scanlab._row_summary.RowSummary` of an
iterate's residual rows ``(T, B)`` in one compiled pass over them (the twin of
:mod:`scanlab.cuda.row_summary`, which reduces them on the GPU)."""

import math

import numpy as np

from scanlab._kernel_cache import njit_cached
from scanlab._row_summary import RowSummary


@njit_cached()
def summary_columns(rows, first, tol, first_bad, bad_is_nan, finite, worst, merit):
    """Fill the summary's arrays (``B`` each) from ``rows`` ``(T, B)``, row by row: a sequence's
    first step from ``first`` on not within ``tol`` (NaN counts; ``T`` if none) and whether it
    is NaN, whether its rows from ``first`` on are finite, its largest residual over every
    row (Inf where one is not finite) and the sum of its squared residuals from ``first`` on."""
    length, sequences = rows.shape
    first_bad[:] = length
    bad_is_nan[:] = False
    finite[:] = True
    worst[:] = 0.0
    merit[:] = 0.0
    for t in range(length):
        for s in range(sequences):
            residual = rows[t, s]
            magnitude = float(residual) if math.isfinite(residual) else math.inf
            worst[s] = max(worst[s], magnitude)
            if t >= first:
                merit[s] += magnitude * magnitude
                if magnitude == math.inf:
                    finite[s] = False
                if not residual <= tol and first_bad[s] == length:
                    first_bad[s] = t
                    bad_is_nan[s] = math.isnan(residual)


def summarise_rows(rows: np.ndarray, first: int, tol: float) -> RowSummary:
    """The :class:`RowSummary` of host residual rows ``(T, B)`` evaluated from ``first`` on."""
    length, sequences = rows.shape
    summary = RowSummary(
        length,
        np.empty(sequences, np.int64),
        np.empty(sequences, np.bool_),
        np.empty(sequences, np.bool_),
        np.empty(sequences),
        np.empty(sequences),
    )
    summary_columns(np.ascontiguousarray(rows), first, rows.dtype.type(tol), *summary[1:])
    return summary
