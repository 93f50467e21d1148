"""``out`` may overlap any operand, and operands each other: every solver gives the loop's result
for the operands as they were before the call, and writes nothing but ``out``."""

import math

import numpy as np
import reference
from conftest import assert_close, numba_threads
from hypothesis import given, settings
from hypothesis import strategies as st

import scanlab


@st.composite
def placements(draw, shape, first_start, last_start, plain_order=None, plain=None):
    """Where a view of ``shape`` lies in a pool: a start in ``[first_start, last_start]``, a step
    between its elements, an order of its axes in memory and the axes it runs backwards along.

    Half the views (all with ``plain=True``, none with False) are plain: contiguous, their axes
    in ``plain_order`` (C order by default), as the solvers read and write in place. The others
    have other strides, or are transposed or reversed. A view never overlaps itself, so it can
    be written.
    """
    plain = draw(st.booleans()) if plain is None else plain
    step = 1 if plain else draw(st.sampled_from([1, 2, 3]))
    start = draw(st.integers(first_start, max(first_start, last_start)))
    order = draw(st.permutations(range(len(shape))))
    if plain:
        order = list(range(len(shape))) if plain_order is None else plain_order
    flips = [False] * len(shape)
    if not plain:
        flips = draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    return shape, start, step, order, flips


def view(pool, placement):
    """The view of ``pool`` that ``placement`` describes."""
    shape, start, step, order, flips = placement
    flat = pool[start : start + step * math.prod(shape) : step]
    block = flat.reshape([shape[axis] for axis in order]).transpose(np.argsort(order))
    return block[tuple(slice(None, None, -1) if flip else slice(None) for flip in flips)]


@st.composite
def layouts(draw, anchor_shape, shapes, overlaps, anchor_order=None, plain_anchor=None):
    """Views in two pools: an anchor of ``anchor_shape`` at the start of the first, and arrays
    of ``shapes`` (None: no array) that each, as the strategy of ``overlaps`` at its place
    draws, start inside the anchor's memory (a partial or full overlap, with any strides) or lie
    in the second pool. A plain anchor (always with ``plain_anchor=True``) has its axes in
    ``anchor_order``.

    Returns the pools' size, the anchor's placement and ``(pool, placement)`` for each shape.
    """
    spans = [3 * math.prod(shape) for shape in shapes if shape is not None]
    pool_size = 3 * math.prod(anchor_shape) + max(spans, default=0)
    anchor = draw(placements(anchor_shape, 0, 0, anchor_order, plain_anchor))
    anchor_extent = anchor[2] * math.prod(anchor_shape)
    found = []
    for shape, overlap in zip(shapes, overlaps, strict=True):
        if shape is None:
            found.append(None)
            continue
        last_start = pool_size - 3 * math.prod(shape)
        if draw(overlap):
            found.append((0, draw(placements(shape, 0, min(anchor_extent - 1, last_start)))))
        else:
            found.append((1, draw(placements(shape, 0, last_start))))
    return pool_size, anchor, found


#: Whether an operand overlaps the anchor of ``layouts``: one time in three.
SOMETIMES = st.sampled_from([True, False, False])


@st.composite
def recurrences(draw, h0_only=False):
    """A forward problem whose operands each overlap ``out`` or lie elsewhere.

    ``h0`` is sometimes contiguous and near the row of ``out`` that the loop writes first (on
    it, as when a caller passes ``h0=buffer[0], out=buffer``, or a few elements off). With
    ``h0_only``, ``h0`` always is, ``out`` is contiguous, and the other operands never overlap
    it: the solvers write ``out`` in place and read ``h0`` without a copy.
    """
    size = draw(st.sampled_from([None, 2, 5]))  # None: the elementwise solver
    length = draw(st.integers(0, 40))
    systems = draw(st.integers(1, 3))
    axis = draw(st.integers(0, 1))
    reverse = draw(st.booleans())
    leading = (length, systems) if axis == 0 else (systems, length)
    state = () if size is None else (size,)
    coefficient_shape = leading + state * 2
    if size is not None and draw(st.booleans()):
        coefficient_shape = (size, size)  # time-invariant
    kinds = ["near the first row"] if h0_only else ["none", "anywhere", "near the first row"]
    h0_kind = draw(st.sampled_from(kinds if length else ["none"]))
    h0_shape = (systems, *state)
    shapes = [coefficient_shape, leading + state, h0_shape if h0_kind == "anywhere" else None]
    overlaps = [st.just(False)] * 3 if h0_only else [SOMETIMES] * 3
    time_major = [axis, 1 - axis] + list(range(2, len(leading + state)))
    pool_size, out_at, found = draw(
        layouts(leading + state, shapes, overlaps, time_major, True if h0_only else None)
    )
    if h0_kind == "near the first row":
        indices = view(np.arange(pool_size), out_at)
        row_start = int(np.moveaxis(indices, axis, 0)[length - 1 if reverse else 0].min())
        width = math.prod(h0_shape)
        h0_start = min(max(0, row_start + draw(st.integers(-width, width))), pool_size - 3 * width)
        found[2] = (0, draw(placements(h0_shape, h0_start, h0_start, plain=True)))
    return {
        "size": size,
        "axis": axis,
        "pool_size": pool_size,
        "out_at": out_at,
        "operands_at": found,
        "reverse": reverse,
        "method": draw(st.sampled_from(["sequential", "scan"])),
        # With one thread a task runs several systems, a step of all at a time.
        "threads": draw(st.sampled_from([1, 2])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def views(pools, found):
    """The views of ``pools`` that ``found`` (from ``layouts``) describes; None stays None."""
    return [None if where is None else view(pools[where[0]], where[1]) for where in found]


@given(problem=recurrences())
def test_out_overlapping_any_operand_gives_the_loops_result(problem, small_chunks):
    check_solution(problem)


@given(problem=recurrences(h0_only=True))
def test_h0_overlapping_out_is_read_as_given(problem, small_chunks):
    check_solution(problem)


def check_solution(problem):
    """The solver's result for ``problem`` (from ``recurrences``) is the loop's, in ``out``."""
    rng = np.random.default_rng(problem["seed"])
    pools = rng.uniform(-1.0, 1.0, (2, problem["pool_size"]))
    original = pools.copy()
    out = view(pools[0], problem["out_at"])
    a, b, h0 = views(pools, problem["operands_at"])
    before = [None if x is None else x.copy() for x in (a, b, h0)]
    matrices = problem["size"] is not None
    solve, loop = (
        (scanlab.linear_recurrence_matrix, reference.linear_recurrence_matrix)
        if matrices
        else (scanlab.linear_recurrence, reference.linear_recurrence)
    )
    options = {"axis": problem["axis"], "reverse": problem["reverse"]}
    expected = loop(*before, **options)

    with numba_threads(problem["threads"]):
        result = solve(a, b, h0, method=problem["method"], out=out, **options)

    assert result is out
    assert_close(out, expected)
    written = np.zeros(pools.shape, bool)
    view(written[0], problem["out_at"])[...] = True
    np.testing.assert_array_equal(pools[~written], original[~written])


@st.composite
def gradient_problems(draw):
    """A backward problem whose operands each overlap ``h`` or lie elsewhere."""
    size = draw(st.sampled_from([None, 2, 5]))
    length = draw(st.integers(1, 20))
    systems = draw(st.integers(1, 3))
    state = () if size is None else (size,)
    h0_shape = (systems, *state) if draw(st.booleans()) else None
    h_shape = (length, systems, *state)
    shapes = [h_shape[:2] + state * 2, h_shape, h0_shape]
    pool_size, h_at, found = draw(layouts(h_shape, shapes, [SOMETIMES] * 3))
    return {
        "size": size,
        "pool_size": pool_size,
        "h_at": h_at,
        "operands_at": found,
        "reverse": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=30)
@given(problem=gradient_problems())
def test_vjp_operands_overlapping_each_other_are_read_as_given(problem, small_chunks):
    rng = np.random.default_rng(problem["seed"])
    pools = rng.uniform(-1.0, 1.0, (2, problem["pool_size"]))
    original = pools.copy()
    h = view(pools[0], problem["h_at"])
    a, g, h0 = views(pools, problem["operands_at"])
    before = [None if x is None else x.copy() for x in (a, h, g, h0)]
    matrices = problem["size"] is not None
    vjp, loop = (
        (scanlab.linear_recurrence_matrix_vjp, reference.linear_recurrence_matrix_vjp)
        if matrices
        else (scanlab.linear_recurrence_vjp, reference.linear_recurrence_vjp)
    )

    result = vjp(a, h, g, h0, reverse=problem["reverse"])

    expected = loop(*before, reverse=problem["reverse"])
    for got, want in zip(result, expected, strict=True):
        assert_close(got, want)
    np.testing.assert_array_equal(pools, original)


def test_h0_a_row_of_out_issue_18():
    """The reproduction: 5 states, several systems per task, ``h0`` the first row of ``out``."""
    A = np.full((5, 5), 0.1)
    buffer = np.empty((2, 3, 5))
    buffer[0] = 1.0
    result = scanlab.linear_recurrence_matrix(A, np.zeros((2, 3, 5)), buffer[0], out=buffer)
    np.testing.assert_allclose(result, [[[0.5] * 5] * 3, [[0.25] * 5] * 3])
