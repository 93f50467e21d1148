"""What the layers of :mod:`scanlab.nn` take: :class:`OneHot` inputs, and the checks that turn
a layer's ``x``, ``h0`` and ``dy`` into arrays of its dtype (host or GPU) or clear errors."""

import math
from dataclasses import dataclass

import numpy as np

from scanlab._arrays import numeric_array, real_array, stand_in
from scanlab._devices import cuda_module, on_gpu

#: What to pass instead of complex numbers: the layers are real.
REAL_INSTEAD = "the layers take real numbers"


@dataclass(frozen=True)
class OneHot:
    """One-hot vectors given by their indices, optionally scaled: ``values * e[indices]``.

    A layer's input product with a ``OneHot`` is a gather of rows of its input weights, so a
    sequence of one-hot vectors costs one integer per step instead of ``size`` floats.

    Parameters
    ----------
    indices : array_like of int, shape (T, *batch)
        The position of the nonzero entry of each vector, in ``[0, size)``: a host array, or a
        GPU array (CuPy, PyTorch, Numba; see :meth:`to_device`), for which the layers run on
        the GPU.
    size : int
        The length of the vectors (the layer's ``input_size``).
    values : array_like of float, optional
        The nonzero entries, broadcastable to ``indices``' shape (ones by default): ``-1`` at a
        step makes its input ``-e[index]``. On the host or the GPU.

    Examples
    --------
    >>> import numpy as np
    >>> from scanlab.nn import OneHot
    >>> x = OneHot(np.array([[2], [0]]), 3, values=np.array([[-1.0], [1.0]]))
    >>> x.shape
    (2, 1, 3)
    >>> x.dense(np.float64)
    array([[[ 0.,  0., -1.]],
    <BLANKLINE>
           [[ 1.,  0.,  0.]]])
    """

    indices: np.ndarray
    size: int
    values: np.ndarray | None = None

    def __post_init__(self):
        indices = self.indices if on_gpu(self.indices) else np.asarray(self.indices)
        view = stand_in(indices)
        if view.dtype.kind not in "iu":
            raise TypeError(f"OneHot indices must be integers, got dtype {view.dtype}")
        if not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ValueError(f"OneHot size must be a positive integer, got {self.size!r}")
        if view.size:
            low, high = self.index_bounds(indices)
            if low < 0 or high >= self.size:
                raise ValueError(
                    f"OneHot indices must lie in [0, {self.size}), got values from {low} to {high}"
                )
        object.__setattr__(self, "indices", indices)
        if self.values is not None:
            values = self.values if on_gpu(self.values) else np.asarray(self.values)
            value_view = stand_in(values)
            if value_view.dtype.kind not in "biuf":
                raise TypeError(f"OneHot values must be real numbers, got dtype {value_view.dtype}")
            try:
                np.broadcast_to(value_view, view.shape)
            except ValueError:
                raise ValueError(
                    f"OneHot values with shape {value_view.shape} do not broadcast to the "
                    f"indices' shape {view.shape}"
                ) from None
            object.__setattr__(self, "values", values)

    @staticmethod
    def index_bounds(indices) -> tuple:
        """The smallest and largest of non-empty ``indices`` (found on the GPU for GPU ones)."""
        if not on_gpu(indices):
            return indices.min(), indices.max()
        view = stand_in(indices)
        return cuda_module("one_hot").index_bounds(flat_on_device(indices, view.dtype, view.shape))

    @property
    def shape(self) -> tuple:
        """The shape of the dense array: ``indices.shape + (size,)``."""
        return stand_in(self.indices).shape + (self.size,)

    @property
    def on_gpu(self) -> bool:
        """Whether the indices are a GPU array."""
        return on_gpu(self.indices)

    def to_device(self) -> "OneHot":
        """The same vectors with their indices and values copied to the GPU (Numba device
        arrays): a layer given them runs on the GPU."""
        to_device = cuda_module("arrays").on_device
        values = None if self.values is None else to_device(self.values)
        return OneHot(to_device(self.indices), self.size, values=values)

    def dense(self, dtype=np.float32):
        """The one-hot vectors as a dense array of ``dtype`` (a device array for GPU indices)."""
        if self.on_gpu:
            return cuda_module("one_hot").dense(*self.flat(dtype), self.shape, dtype)
        result = np.zeros(self.shape, dtype)
        values = 1 if self.values is None else self.values
        np.put_along_axis(result, self.indices[..., None], np.expand_dims(values, -1), axis=-1)
        return result

    def flat(self, dtype) -> tuple:
        """The indices and the values (broadcast to the indices, in ``dtype``) as 1-D
        C-contiguous device arrays, for the GPU's kernels."""
        shape = stand_in(self.indices).shape
        values = 1 if self.values is None else self.values
        return (
            flat_on_device(self.indices, stand_in(self.indices).dtype, shape),
            flat_on_device(values, dtype, shape),
        )


def flat_on_device(value, dtype, shape: tuple):
    """``value`` (host or GPU) broadcast to ``shape`` as a 1-D C-contiguous device array of
    ``dtype``: a host value is copied to the GPU as it is and broadcast there (a scalar is one
    element to copy, not one per step)."""
    arrays = cuda_module("arrays")
    if not on_gpu(value) and math.prod(shape):
        value = arrays.on_device(np.asarray(value, dtype).reshape(np.shape(value) or (1,)))
    order = tuple(range(len(shape)))
    return arrays.moved_axes(value, shape, order, dtype).reshape(-1)


def check_dtype(dtype) -> np.dtype:
    """``dtype`` if it is float32 or float64, else a TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def check_input(x, input_size: int, dtype, min_ndim: int, gpu: bool = False):
    """``x`` as a float array of ``dtype`` (or a :class:`OneHot`) with ``input_size`` features:
    a GPU ``x`` stays a GPU array (a copy on the GPU in another dtype or layout), and so does a
    host ``x`` where the layer runs on the GPU (``gpu``: copied there)."""
    if isinstance(x, OneHot):
        if x.size != input_size:
            raise ValueError(
                f"x is a OneHot of size {x.size}, but the layer has input_size {input_size}"
            )
        if len(x.shape) < min_ndim:
            raise ValueError(f"x needs a time axis, shape (T, *batch); got indices {x.shape}")
        return x.to_device() if gpu and not x.on_gpu else x
    view = numeric_array("x", x, stand_in)
    if view.dtype.kind != "f":
        raise TypeError(
            f"x must hold floats, got dtype {view.dtype}; for one-hot indices pass "
            "scanlab.nn.OneHot(indices, input_size), else convert with .astype(np.float32)"
        )
    layout = "(T, *batch, input_size)" if min_ndim == 2 else "(..., input_size)"
    if view.ndim < min_ndim or view.shape[-1] != input_size:
        raise ValueError(
            f"x must have shape {layout} with input_size={input_size}, got {view.shape}"
        )
    return in_dtype(x, view.shape, dtype, gpu)


def initial_state(h0, batch: tuple, size: int, dtype, gpu: bool = False, broadcast: bool = True):
    """``h0`` checked to broadcast to ``(*batch, size)``, in ``dtype`` (or None), broadcast
    (unless not ``broadcast``) and on the GPU where the layer runs there (``gpu``), and the
    shape of its gradient: ``h0``'s own, or the broadcast shape when it is None."""
    shape = batch + (size,)
    if h0 is None:
        return None, shape
    view = real_array("h0", h0, REAL_INSTEAD)
    try:
        broadcasts = np.broadcast_shapes(view.shape, shape) == shape
    except ValueError:
        broadcasts = False
    if not broadcasts:
        raise ValueError(
            f"h0 must broadcast to (*batch, hidden_size) = {shape} for x of batch shape {batch}, "
            f"got {view.shape}"
        )
    return in_dtype(h0, shape if broadcast else view.shape, dtype, gpu), view.shape


def check_output_gradient(dy, shape: tuple, dtype, gpu: bool = False):
    """``dy`` in ``dtype``, checked to have the forward output's ``shape``; on the GPU where it
    is a GPU array or the layer ran there (``gpu``); a GPU ``dy`` where it ran on the host is a
    TypeError."""
    if on_gpu(dy) and not gpu:
        raise TypeError(
            "dy is a GPU array, but the forward pass ran on the host (NumPy arrays): pass a host "
            "dy, or run the forward pass on GPU arrays"
        )
    view = real_array("dy", dy, REAL_INSTEAD)
    if view.shape != shape:
        raise ValueError(f"dy must have the forward output's shape {shape}, got {view.shape}")
    return in_dtype(dy, shape, dtype, gpu)


def in_dtype(value, shape: tuple, dtype, gpu: bool = False):
    """``value`` broadcast to ``shape`` in ``dtype``: a C-contiguous device array where it is a
    GPU array or ``gpu`` (``value`` itself where it already lies so), else a NumPy array (``value``
    itself where it already has that shape and dtype)."""
    if on_gpu(value):
        return cuda_module("arrays").batch_aligned(value, shape, dtype)
    array = np.asarray(value)
    if array.shape != shape:
        array = np.broadcast_to(array, shape)
    if gpu:
        return cuda_module("arrays").on_device(array.astype(dtype))
    return array.astype(dtype, copy=False)
