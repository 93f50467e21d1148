"""Recurrences over Dask arrays chunked along time (and any other axis), on Dask's own
scheduler: ``pip install scanlab[dask]``.

Each chunk along time is solved by scanlab's in-memory kernels. A chunk is first summarised by its
composed coefficient (kept in range as mantissa and exponent) and its result from a zero start
(``(prod a, h_end)``: ``O(chunk)`` work, a summary of one state per channel), the summaries are
combined across chunks into each chunk's initial state (a chain of tiny tasks), and each chunk is
then solved from its initial state. Work and data moved per chunk are ``O(chunk)``; every chunk
is solved twice. The loop is the reference: a chain of tiny tasks checks the state each solved
chunk ends in against the initial state the next one was given, and reruns a chunk, in the
sequences where the two disagree, from the loop's state
(:func:`scanlab.dask.linear.settled_chunk`). A nonlinear
recurrence passes each chunk's last state to the next, or runs Newton's method over the whole
sequence, each iteration one such linear solve (:func:`nonlinear_recurrence`).

The package holds :mod:`scanlab.dask.linear` (the chunked linear solvers),
:mod:`scanlab.dask.nonlinear` (the nonlinear front end and its ``"carry"`` strategy) and
:mod:`scanlab.dask.newton` (its ``"newton"`` strategy, on the Newton driver of
``scanlab._newton``).

Examples
--------
>>> import dask.array as da
>>> import numpy as np
>>> import scanlab
>>> import scanlab.dask
>>> b = da.from_array(np.arange(10.0), chunks=3)
>>> h = scanlab.dask.linear_recurrence(0.5, b)
>>> bool(np.allclose(h.compute(), scanlab.linear_recurrence(0.5, np.arange(10.0))))
True
"""

try:
    import dask  # noqa: F401 - checked here, for the message below
except ImportError as error:  # scanlab itself works without Dask
    raise ImportError(
        "scanlab.dask needs Dask: pip install 'scanlab[dask]' (dask[array] and distributed)"
    ) from error

from scanlab.dask.linear import linear_recurrence, linear_recurrence_matrix
from scanlab.dask.nonlinear import nonlinear_recurrence

__all__ = ["linear_recurrence", "linear_recurrence_matrix", "nonlinear_recurrence"]
