"""A user's cell differentiated through its inputs and parameters by central differences (the
pullback of :meth:`scanlab.cells.Cell.pullback`): which inputs each output depends on and a
colouring of them, so that inputs of one colour move together (:func:`input_colouring`), and the
gradients of the real floating leaves of the parameters (:func:`parameter_gradients`)."""

import numpy as np

from scanlab.cpu import nonlinear as cpu_nonlinear


def input_colouring(step, inputs: np.ndarray, params, states: np.ndarray, h0: np.ndarray):
    """Which outputs of the cell's ``step`` depend on which inputs, probed like the structure
    (see :meth:`scanlab.cells.Cell.plan`), and a colouring of the inputs such that no output
    depends on two of one colour, so that they can be perturbed together.

    The probes pair three steps of ``inputs`` ``(T, B, m)`` (float64) whose inputs are all
    finite with three random states, and with the states the recurrence had there
    (``states`` ``(T, B, n)`` after each step, ``h0`` ``(B, n)`` before the first), and
    move each input by a quarter of its size: an output that changes at any probe depends
    on it (as with the structure, a dependence that no probe shows is taken to be absent).
    A probe where the step raises (outside its domain) shows nothing. An output that is
    not finite at a probe, or no probe that runs, cannot show it: such an output is taken
    to depend on every input. Returns ``colours`` ``(m,)`` and ``owners`` ``(colours,
    n)``: the input of each colour that each of the ``n`` outputs depends on, or -1.
    """
    length, sequences, m = inputs.shape
    n = states.shape[-1]
    if length * sequences == 0:
        return np.zeros(m, np.int64), np.empty((0, n), np.int64)
    rows = inputs.reshape(length * sequences, m)
    finite = np.flatnonzero(np.isfinite(rows).all(axis=1))
    items = finite[[0, len(finite) // 2, -1]] if len(finite) else finite
    random = np.random.default_rng(2025).standard_normal(n) * 0.5
    steps, sequence_of = np.divmod(items, sequences)
    visited = [states[t - 1, s] if t else h0[s] for t, s in zip(steps, sequence_of, strict=True)]
    samples = rows[items]
    probes = [
        *zip((random, -np.abs(random), 4 * random[::-1]), samples, strict=False),
        *zip(visited, samples, strict=True),
    ]
    depends = np.zeros((n, m), bool)
    value, changed = np.empty(n), np.empty(n)
    shown = False
    for h_prev, x_t in probes:
        try:
            step(h_prev, x_t, params, value)
            found = np.zeros((n, m), bool)
            found[~np.isfinite(value)] = True
            for j in range(m):
                moved = x_t.copy()
                moved[j] += 0.25 * (1 + abs(moved[j]))
                step(h_prev, moved, params, changed)
                found[:, j] |= (changed != value) & ~(np.isnan(changed) & np.isnan(value))
        except Exception:  # noqa: BLE001 - outside the step's domain: shows nothing
            continue
        depends |= found
        shown = True
    if not shown:
        depends[:] = True
    colours = np.empty(m, np.int64)
    owners = []
    for j in range(m):
        # The first colour none of whose inputs shares an output with input j.
        colour = next(
            (c for c, owner in enumerate(owners) if not (depends[:, j] & (owner >= 0)).any()),
            len(owners),
        )
        if colour == len(owners):
            owners.append(np.full(n, -1, np.int64))
        owners[colour][depends[:, j]] = j
        colours[j] = colour
    return colours, np.array(owners, np.int64).reshape(len(owners), n)


def is_real_leaf(value) -> bool:
    """Whether a parameter leaf has a gradient: a real floating array or scalar."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f"
    return isinstance(value, (float, np.floating))


def float64_leaves(params):
    """``params`` with its real floating leaves in float64 (tuples kept)."""
    if isinstance(params, tuple):
        return tuple(float64_leaves(value) for value in params)
    if isinstance(params, np.ndarray) and is_real_leaf(params):
        return np.ascontiguousarray(params, np.float64)
    return float(params) if is_real_leaf(params) else params


def parameter_gradients(wide, difference, dtype):
    """The gradient of every real floating leaf of the parameters ``wide`` (those leaves in
    float64, as :func:`float64_leaves` gives them) by central differences, in ``dtype``:
    ``difference(upper, lower)`` sums the change of the loss between two parameter sets that
    differ in one value."""
    spacing = cpu_nonlinear.PULLBACK_SPACING

    def visit(value, rebuild):
        if isinstance(value, tuple):
            return tuple(
                visit(item, lambda new, i=i: rebuild(value[:i] + (new,) + value[i + 1 :]))
                for i, item in enumerate(value)
            )
        if not is_real_leaf(value):
            return None
        array = np.array(value, np.float64)
        upper, lower, gradient = array.copy(), array.copy(), np.empty(array.shape)
        scalar = array.ndim == 0 and not isinstance(value, np.ndarray)
        for k in range(array.size):
            offset = spacing * (1 + abs(array.flat[k]))
            upper.flat[k] = array.flat[k] + offset
            lower.flat[k] = array.flat[k] - offset
            pair = (float(upper), float(lower)) if scalar else (upper, lower)
            change = difference(rebuild(pair[0]), rebuild(pair[1]))
            gradient.flat[k] = change / (upper.flat[k] - lower.flat[k])
            upper.flat[k] = lower.flat[k] = array.flat[k]
        return float(gradient) if scalar else gradient.astype(dtype)

    return visit(wide, lambda new: new)
