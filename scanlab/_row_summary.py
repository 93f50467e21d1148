"""What Newton's convergence judgement reads of an iterate's residual rows ``(T, B)``: their
:class:`RowSummary`, ``O(B)`` values that the driver (:mod:`scanlab._newton`) judges, reduced
where the rows lie by the twins :mod:`scanlab.cpu.row_summary` and
:mod:`scanlab.cuda.row_summary`."""

from typing import NamedTuple

import numpy as np


class RowSummary(NamedTuple):
    """Per sequence, what Newton's iteration needs of the residual rows ``(T, B)`` of an
    iterate evaluated from step ``first`` on (rows before it as last evaluated: final):
    ``first_bad``, its first step not within ``tol`` (NaN counts; ``T`` if none) and whether
    its residual is NaN (``bad_is_nan``); ``finite``, whether its rows from ``first`` on are;
    ``worst``, its largest residual over every step (Inf where one is not finite); and
    ``merit``, the sum of its squared residuals from ``first`` on (the damped method's, Inf
    where one is not finite)."""

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
