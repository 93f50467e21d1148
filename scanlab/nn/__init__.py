"""Neural-network layers and their optimiser on NumPy arrays, their recurrences solved by scanlab:
an optional subpackage beside the solvers, which they use and which never use it.

:mod:`scanlab.nn.layers` holds the layers' interface, the linear surrogate RNNs (:class:`GILR`,
:class:`GILRLSTM`) and the dense :class:`Linear`; :mod:`scanlab.nn.operands` the
:class:`OneHot` inputs and the checks of what a layer is given; :mod:`scanlab.nn.products` the
layers' matrix products, on the host or the GPU;
:mod:`scanlab.nn.newton_layers` the layers of nonlinear cells (:class:`ParaGRULayer`,
:class:`ParaLSTMLayer`, whose cells are :class:`scanlab.cells.ParaGRU` and
:class:`scanlab.cells.ParaLSTM`); :mod:`scanlab.nn.optim` the optimiser :class:`Adam`.
"""

from scanlab.nn.layers import GILR, GILRLSTM, Linear
from scanlab.nn.newton_layers import NewtonLayer, ParaGRULayer, ParaLSTMLayer
from scanlab.nn.operands import OneHot
from scanlab.nn.optim import Adam

__all__ = [
    "GILR",
    "GILRLSTM",
    "Adam",
    "Linear",
    "NewtonLayer",
    "OneHot",
    "ParaGRULayer",
    "ParaLSTMLayer",
]
