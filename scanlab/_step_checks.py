"""What scanlab checks of a cell's step before trusting it, and how it raises what the step
raised inside a kernel.

A step is the user's code: it may be given the wrong ``params``, fail to compile for them,
forget to write an output, or raise. :meth:`scanlab.cells.Cell.check_step` calls it once on
the host first (see :func:`unwritten_outputs` and :func:`compile_error`), and the kernels, which
cannot raise from a parallel region, mark where a step raised so that :func:`raise_from_reruns`
runs it there again, alone, on the host.
"""

import itertools
import math

import numba
import numpy as np

from scanlab._arrays import stand_in
from scanlab._devices import on_gpu

#: What an output is set to before the second call of :func:`unwritten_outputs` (the first sets
#: NaN): a value no deterministic step writes where it wrote NaN the first time.
UNWRITTEN_MARK = -0.6180339887498949
#: How many of the steps that raised in a kernel :func:`raise_from_reruns` runs again.
RERUNS = 16


def check_params(params, path: str = "params") -> None:
    """Raise TypeError unless ``params`` is what a step can take: None, a number, an array of
    numbers or booleans (NumPy's, or a GPU array), or a tuple of those (nested tuples too)."""
    if isinstance(params, tuple):
        for index, value in enumerate(params):
            check_params(value, f"{path}[{index}]")
        return
    if params is None or isinstance(params, (bool, int, float, complex, np.number, np.bool_)):
        return
    dtype = array_dtype(params)
    if dtype is not None and dtype.kind in "biufc":
        return
    found = type(params).__name__ if dtype is None else f"an array of dtype {dtype}"
    hint = "; pass np.asarray(...) or a tuple" if isinstance(params, list) else ""
    raise TypeError(
        f"{path} is passed to the cell's step as it is, so it must be None, a number, an array "
        f"of numbers (NumPy's or a GPU array) or a tuple of those; got {found}{hint}"
    )


def array_dtype(value):
    """The dtype of a NumPy or GPU array, None for anything else."""
    return stand_in(value).dtype if isinstance(value, np.ndarray) or on_gpu(value) else None


def finite_row(inputs: np.ndarray) -> np.ndarray:
    """The first row (the inputs of one step) of ``inputs`` ``(..., m)`` whose values are all
    finite, else the first: probes of a step must not be decided by NaN or Inf in the data."""
    rows = inputs.reshape(math.prod(inputs.shape[:-1]), inputs.shape[-1])
    if np.isfinite(rows[0]).all():
        return rows[0]
    return rows[np.isfinite(rows).all(axis=1).argmax()]


def unwritten_outputs(step, h_prev, x_t, params, h_out) -> tuple:
    """Run ``step`` into ``h_out`` set to NaN and, if some outputs stay NaN, again into outputs
    set to ``UNWRITTEN_MARK``: the outputs NaN the first time and still marked the second were
    never written. Returns their indices and what the first call returned."""
    h_out[:] = np.nan
    returned = step(h_prev, x_t, params, h_out)
    still_nan = np.isnan(h_out)
    if not still_nan.any():
        return np.empty(0, np.int64), returned
    marked = np.full_like(h_out, UNWRITTEN_MARK)
    step(h_prev, x_t, params, marked)
    return np.flatnonzero(still_nan & (marked == marked.dtype.type(UNWRITTEN_MARK))), returned


def unwritten_error(owner, unwritten: np.ndarray, size: int, returned) -> ValueError:
    """The error for a step of ``owner`` (a cell) that left the outputs ``unwritten``."""
    returns = (
        "" if returned is None else f"; it returns a {type(returned).__name__} instead, unused"
    )
    return ValueError(
        f"the step of {owner!r} does not write h_out[{unwritten[0]}] ({unwritten.size} of its "
        f"{size} outputs are left as they were at a probe of its first step{returns}): a step "
        "writes f(h_prev, x_t) into every entry of h_out, in place, and returns nothing"
    )


def compile_error(owner, error: Exception, h_prev, x_t, params) -> TypeError:
    """A TypeError for a step of ``owner`` that Numba cannot compile for its arguments
    (``error``, Numba's TypingError, is chained to it): naming ``params``, unless the step
    writes into its read-only inputs or names a global Numba cannot type."""
    text = str(error)
    if "setitem(readonly array" in text:
        return TypeError(
            f"the step of {owner!r} writes into h_prev or x_t ({typing_reason(error)}), which "
            "scanlab passes read-only (the kernels share them between steps): write only "
            "h_out, or copy them first"
        )
    if "Untyped global name" in text or "NameError" in text:
        return TypeError(
            f"the step of {owner!r} does not compile: {typing_reason(error)} (a name it uses "
            "is not defined, or is not a compiled function Numba can call)"
        )
    return TypeError(
        f"params: the step of {owner!r} does not compile for params of type "
        f"{numba.typeof(params)} (h_prev, x_t and h_out being 1-D arrays of {h_prev.dtype}): "
        f"{typing_reason(error)}. scanlab passes params to the step as they are: pass what "
        "the step expects (e.g. a tuple to unpack, an array to index)"
    )


def typing_reason(error: Exception) -> str:
    """The gist of a Numba TypingError: what failed to type, and the source line."""
    lines = [line.strip() for line in str(error).splitlines()]
    what = next((line for line in lines if line.startswith(">>>")), None)
    what = what or next((line for line in lines if line and not line.startswith("Failed")), "")
    carets = [index for index, line in enumerate(lines) if index and set(line) == {"^"}]
    where = f" at `{lines[carets[-1] - 1]}`" if carets else ""
    return f"{what.removeprefix('>>> ')}{where}"


def raise_from_reruns(owner, reruns) -> None:
    """Run again, alone on the host, the work that raised in a kernel, to raise the exception
    of the step of ``owner`` (a cell) with a note of where; RuntimeError if it does not raise.

    ``reruns`` yields ``(t, sequence, rerun)`` for each step where it raised, in order, with
    ``rerun`` a function of no arguments that repeats that step's work; the first
    ``RERUNS`` are tried.
    """
    t = sequence = None
    for t, sequence, rerun in itertools.islice(reruns, RERUNS):
        try:
            rerun()
        except Exception as error:
            add_note(error, f"raised in {owner!r} at step {t} of sequence {sequence}")
            raise
    raise RuntimeError(
        f"the step of {owner!r} raised (or stopped) in a parallel kernel at step {t} of "
        f"sequence {sequence}, but not when run again alone on the host; a step must be "
        "deterministic and compile the same on every device"
    )


def add_note(error: BaseException, note: str) -> None:
    """Add ``note`` to the message of the user's ``error`` where Python can (3.11 on)."""
    if hasattr(error, "add_note"):
        error.add_note(note)
