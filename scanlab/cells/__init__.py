"""Cells of nonlinear recurrences ``h[t] = f(h[t-1], x[t])``: :func:`cell` for your own, and
the built-in :class:`ElmanRNN`, :class:`ParaGRU` and :class:`ParaLSTM`.

The package holds the machinery (:mod:`scanlab.cells.base`: :class:`Cell`, :func:`cell`,
:class:`JacobianPlan`) and the built-in cells (:mod:`scanlab.cells.builtin`: the Elman RNN and
the base of them all; :mod:`scanlab.cells.pararnn`: ParaRNN's). A cell holds a compiled
``step(h_prev, x_t, params, h_out)`` (and optionally its Jacobian) that
:func:`scanlab.nonlinear_recurrence` evaluates at every step in parallel. The built-in cells
compute their input projections for all steps at once (one matrix product) and give the step
only the projected inputs, and have analytic Jacobians; they use :mod:`scanlab.math`, whose
``tanh`` and ``sigmoid`` vectorise.

Examples
--------
A cell of your own: a leaky tanh unit per channel, with its diagonal Jacobian left to scanlab.

>>> import numpy as np
>>> import scanlab
>>> from scanlab import math as smath
>>> def leaky(h_prev, x_t, params, h_out):
...     for i in range(h_prev.shape[0]):
...         h_out[i] = 0.5 * h_prev[i] + smath.tanh(x_t[i] - h_prev[i])
>>> unit = scanlab.cell(leaky, structure="diagonal")
>>> x = np.linspace(-1.0, 1.0, 12).reshape(6, 2)
>>> h = scanlab.nonlinear_recurrence(unit, x, np.zeros(2), method="newton")
>>> h.shape
(6, 2)
"""

from scanlab.cells.base import Cell, JacobianPlan, cell
from scanlab.cells.builtin import ElmanRNN
from scanlab.cells.pararnn import ParaGRU, ParaLSTM

__all__ = ["Cell", "ElmanRNN", "JacobianPlan", "ParaGRU", "ParaLSTM", "cell"]
