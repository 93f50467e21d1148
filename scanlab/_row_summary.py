"""Newton's convergence judgement, on the host: the :class:`RowSummary` of an iterate's
residual rows ``(T, B)``, ``O(B)`` values that the driver (:mod:`scanlab._newton`) judges. Its
GPU twin, which reduces the rows where they lie, is :mod:`scanlab.cuda.row_summary`."""

from typing import NamedTuple

import numpy as np


class RowSummary(NamedTuple):
    """Per sequence, what Newton's iteration needs of the residual rows ``(T, B)`` of an
    iterate evaluated from step ``first`` on (rows before it as last evaluated: final):
    ``first_bad``, its first step not within ``tol`` (NaN counts; ``T`` if none) and whether
    its residual is NaN (``bad_is_nan``); ``finite``, whether its rows from ``first`` on are;
    ``worst``, its largest residual over every step (Inf where one is not finite); and
    ``merit``, the sum of its squared residuals from ``first`` on (the damped method's, Inf
    where one is not finite). :func:`summarise_rows` computes it on the host,
    :mod:`scanlab.cuda.row_summary` on the GPU."""

    length: int
    first_bad: np.ndarray
    bad_is_nan: np.ndarray
    finite: np.ndarray
    worst: np.ndarray
    merit: np.ndarray

    @property
    def sequences(self) -> int:
        return self.first_bad.shape[0]

    def where(self, mask: np.ndarray, other: "RowSummary") -> "RowSummary":
        """This summary for the sequences marked in ``mask``, ``other``'s for the rest."""
        pairs = zip(self[1:], other[1:], strict=True)
        return RowSummary(self.length, *(np.where(mask, mine, theirs) for mine, theirs in pairs))


def summarise_rows(rows: np.ndarray, first: int, tol: float) -> RowSummary:
    """The :class:`RowSummary` of host residual rows ``(T, B)`` evaluated from ``first`` on."""
    length, sequences = rows.shape
    tail = rows[first:]
    bad = ~(tail <= tol)
    has_bad = bad.any(axis=0)
    first_bad = np.where(has_bad, first + bad.argmax(axis=0), length)
    at_first_bad = rows[np.minimum(first_bad, length - 1), np.arange(sequences)]
    with np.errstate(over="ignore"):
        magnitudes = np.where(np.isfinite(rows), rows, np.inf).astype(np.float64)
        return RowSummary(
            length,
            first_bad,
            has_bad & np.isnan(at_first_bad),
            np.isfinite(tail).all(axis=0),
            magnitudes.max(axis=0, initial=0.0),
            np.sum(magnitudes[first:] ** 2, axis=0),
        )
