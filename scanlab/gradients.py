"""Vector-Jacobian products (the backward pass) of the linear recurrence solvers.

The backward pass of ``h[t] = a[t] * h[t-1] + b[t]`` is the same recurrence run the other way:
the adjoint ``lam[t] = g[t] + a[t+1] * lam[t+1]`` (with matrices, ``A[t+1]`` transposed), from
which every gradient is a product with the forward states. So it runs on the same kernels, on
either device, in parallel over time.
"""

import string

import numpy as np

from scanlab._arrays import initial_state, normalize_axis, result_dtype
from scanlab.linear import linear_recurrence, linear_recurrence_matrix


def linear_recurrence_vjp(a, h, g, h0=None, *, axis=0, reverse=False, device="auto"):
    r"""Gradients of a loss through ``h = linear_recurrence(a, b, h0)``, given ``g = dL/dh``.

    Parameters
    ----------
    a : array_like
        The coefficients of the forward call (any shape that broadcasts to ``h``'s).
    h : array_like
        The forward result.
    g : array_like
        The gradient of the loss with respect to ``h``, same shape.
    h0 : array_like, optional
        The forward call's initial state (zeros if None).
    axis, reverse : optional
        As in the forward call.
    device : {"auto", "cpu", "cuda"}, optional
        Where the adjoint recurrence runs, as for :func:`scanlab.linear_recurrence`.

    Returns
    -------
    da : ndarray
        ``dL/da``, in ``a``'s shape: summed over the axes ``a`` was broadcast along (a scalar
        ``a`` gets a 0-d array).
    db : ndarray
        ``dL/db``, in ``h``'s shape (sum it over any axes ``b`` was broadcast along): the adjoint
        ``lam[t] = g[t] + a[t+1] * lam[t+1]``.
    dh0 : ndarray
        ``dL/dh0``, in ``h0``'s shape (or ``h``'s without ``axis`` when ``h0`` is None).

    Notes
    -----
    ``da[t] = lam[t] * h[t-1]`` (``h0`` for ``t = 0``) and ``dh0 = a[0] * lam[0]``; with
    ``reverse=True`` time runs the other way. Complex inputs get the products of the complex
    derivatives, unconjugated (JAX's convention for holomorphic maps); for PyTorch's, conjugate
    ``g`` and the results.

    See Also
    --------
    scanlab.linear_recurrence : the forward solver.
    linear_recurrence_matrix_vjp : the same with matrices.

    Examples
    --------
    The loss ``L = sum(h)`` of an exponential moving average:

    >>> import numpy as np
    >>> import scanlab
    >>> b = np.array([1.0, 2.0, 3.0])
    >>> h = scanlab.linear_recurrence(0.5, b)
    >>> da, db, dh0 = scanlab.linear_recurrence_vjp(0.5, h, np.ones(3))
    >>> db
    array([1.75, 1.5 , 1.  ])
    >>> float(da), float(dh0)
    (4.0, 0.875)
    """
    return adjoint_gradients(a, h, g, h0, axis, reverse, device, matrices=False)


def linear_recurrence_matrix_vjp(A, h, g, h0=None, *, axis=0, reverse=False, device="auto"):
    r"""Gradients of a loss through ``h = linear_recurrence_matrix(A, b, h0)``, given ``g``.

    Parameters
    ----------
    A : array_like, shape (..., n, n)
        The matrices of the forward call.
    h : array_like, shape (..., n)
        The forward result.
    g : array_like
        ``dL/dh``, same shape as ``h``.
    h0 : array_like, optional
        The forward call's initial state (zeros if None).
    axis, reverse : optional
        As in the forward call.
    device : {"auto", "cpu", "cuda"}, optional
        Where the adjoint recurrence runs, as for :func:`scanlab.linear_recurrence_matrix`.

    Returns
    -------
    dA : ndarray
        ``dL/dA`` in ``A``'s shape (summed over the axes ``A`` was broadcast along: a constant
        matrix gets the sum over every step, without a ``(T, n, n)`` temporary).
    db : ndarray
        ``dL/db`` in ``h``'s shape: the adjoint ``lam[t] = g[t] + A[t+1]^T lam[t+1]``.
    dh0 : ndarray
        ``dL/dh0`` in ``h0``'s shape (or ``h``'s without ``axis`` when ``h0`` is None).

    Notes
    -----
    ``dA[t] = outer(lam[t], h[t-1])`` and ``dh0 = A[0]^T lam[0]``; the adjoint runs on
    ``linear_recurrence_matrix`` with the transposed matrices as a view. Complex inputs follow
    the convention of :func:`linear_recurrence_vjp`.

    See Also
    --------
    scanlab.linear_recurrence_matrix : the forward solver.

    Examples
    --------
    >>> import numpy as np
    >>> import scanlab
    >>> A = np.array([[0.0, 1.0], [0.0, 0.0]])
    >>> h = scanlab.linear_recurrence_matrix(A, np.ones((2, 2)))
    >>> dA, db, dh0 = scanlab.linear_recurrence_matrix_vjp(A, h, np.ones((2, 2)))
    >>> db
    array([[1., 2.],
           [1., 1.]])
    >>> dA
    array([[1., 1.],
           [1., 1.]])
    """
    return adjoint_gradients(A, h, g, h0, axis, reverse, device, matrices=True)


def adjoint_gradients(a, h, g, h0, axis, reverse, device, matrices: bool):
    """Both VJPs: the adjoint recurrence on the forward solvers, then the gradients."""
    dtype = result_dtype(a=a, h=h, g=g, h0=h0)
    a, h, g = (np.asarray(value, dtype) for value in (a, h, g))
    if h.shape != g.shape:
        raise ValueError(f"g must have h's shape {h.shape}, got {g.shape}")
    state = h.shape[-1:] if matrices else ()
    if matrices and (a.ndim < 2 or a.shape[-2:] != state * 2):
        raise ValueError(f"A must have shape (..., n, n) with n = h.shape[-1], got {a.shape}")
    if not h.ndim > len(state):
        raise ValueError(f"h has no time axis: shape {h.shape}")
    time_axis = normalize_axis(axis, h.ndim)
    if time_axis >= h.ndim - len(state):
        raise ValueError(f"axis={axis} is the state axis of h (shape {h.shape})")
    leading = h.shape[: h.ndim - len(state)]
    coefficient_leading = a.shape[: a.ndim - 2 * len(state)]
    try:
        if np.broadcast_shapes(coefficient_leading, leading) != leading:
            raise ValueError
    except ValueError:
        name = "A" if matrices else "a"
        raise ValueError(
            f"{name} with shape {a.shape} does not broadcast to the forward result's shape "
            f"{h.shape}"
        ) from None
    rest_shape = leading[:time_axis] + leading[time_axis + 1 :] + state
    start_full = initial_state(h0, rest_shape, dtype, h.shape, time_axis).reshape(rest_shape)

    # Time first; the coefficients aligned to h's leading axes (a view, never materialised).
    ndim = len(leading)
    aligned = a.reshape((1,) * (ndim - len(coefficient_leading)) + a.shape)
    coefficients = np.moveaxis(aligned, time_axis, 0)
    states = np.moveaxis(h, time_axis, 0)
    gradient = np.moveaxis(g, time_axis, 0)
    length = states.shape[0]
    adjoint = np.empty(states.shape, dtype)
    # The adjoint runs against the forward direction. It starts at the forward's last step, where
    # it is g itself; the remaining steps are one linear recurrence whose coefficient at each step
    # is the forward's coefficient one step later (``following``).
    last, remaining = (0, slice(1, None)) if reverse else (-1, slice(None, -1))
    following = slice(None, -1) if reverse else slice(1, None)
    if length:
        adjoint[last] = gradient[last]
        if length > 1:
            shifted = coefficients if coefficients.shape[0] == 1 else coefficients[following]
            solve = linear_recurrence_matrix if matrices else linear_recurrence
            solve(
                shifted.swapaxes(-1, -2) if matrices else shifted,
                gradient[remaining],
                gradient[last],
                reverse=not reverse,
                device=device,
                out=adjoint[remaining],
            )
    first = -1 if reverse else 0
    da = coefficient_gradient(
        adjoint, states, start_full, reverse, aligned.shape, time_axis, matrices
    )
    if length:
        first_coefficient = np.broadcast_to(coefficients[first], rest_shape + state)
        if matrices:
            dh0 = np.einsum("...ji,...j->...i", first_coefficient, adjoint[first])
        else:
            dh0 = first_coefficient * adjoint[first]
    else:
        dh0 = np.zeros(rest_shape, dtype)
    db = np.moveaxis(adjoint, 0, time_axis)
    return da.reshape(a.shape), db, reduce_to(dh0, rest_shape if h0 is None else np.shape(h0))


def coefficient_gradient(adjoint, states, start, reverse, aligned_shape, time_axis, matrices):
    """``sum lam[t] * h[t-1]`` (outer products with matrices; ``h0`` before the first step) over
    the axes the coefficients were broadcast along, in their aligned shape.

    The first step and the others are two ``einsum`` calls into one result: no shifted copy of
    ``h`` and, when the coefficients are constant in time, no temporary as long as the sequence.
    """
    first, following, remaining = (
        (-1, slice(None, -1), slice(1, None)) if reverse else (0, slice(1, None), slice(None, -1))
    )
    leading = adjoint.ndim - (1 if matrices else 0)
    letters = string.ascii_lowercase[:leading]
    # The coefficients' shape with time first, like adjoint's.
    shape = list(aligned_shape)
    shape.insert(0, shape.pop(time_axis))
    kept = "".join(letter for letter, size in zip(letters, shape, strict=False) if size != 1)
    state_letters = ("y", "z", "yz") if matrices else ("", "", "")

    def subscripts(inputs, output):
        left, right, out = state_letters
        return f"{inputs}{left},{inputs}{right}->{output}{out}"

    kept_shape = [size for size in shape[:leading] if size != 1] + shape[leading:]
    if not adjoint.shape[0]:
        return np.zeros(shape, adjoint.dtype)
    step = subscripts(letters[1:], kept.replace("a", ""))
    steps = subscripts(letters, kept)
    if kept.startswith("a"):
        result = np.empty(kept_shape, adjoint.dtype)
        np.einsum(step, adjoint[first], start, out=result[first, ...])
        np.einsum(steps, adjoint[following], states[remaining], out=result[following])
    else:
        result = np.einsum(step, adjoint[first], start)
        result += np.einsum(steps, adjoint[following], states[remaining])
    return np.moveaxis(result.reshape(shape), 0, time_axis)


def reduce_to(values, shape):
    """``values`` summed over the axes along which an array of ``shape`` was broadcast to them."""
    extra = values.ndim - len(shape)
    values = values.sum(axis=tuple(range(extra))) if extra else values
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and values.shape[i] != 1)
    return values.sum(axis=axes, keepdims=True).reshape(shape) if axes else values.reshape(shape)


__all__ = ["linear_recurrence_vjp", "linear_recurrence_matrix_vjp"]
