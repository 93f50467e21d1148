"""Hostile operands (issue 18, item 2): None, ragged sequences and objects that hold no numbers
are a TypeError or ValueError naming the argument in every public function that takes arrays,
never NaN in the result. ``h0=None`` stays the documented zero start.

Every call here fails before a kernel runs: nothing is compiled.
"""

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scanlab
from scanlab.nn import layers, optim

#: A built-in cell: made without compiling anything, and no call here reaches its kernels.
GRU = scanlab.cells.ParaGRU(2, 1, seed=0)

#: Each public function that takes arrays, with valid operands by name: a test swaps one out.
CALLS = {
    "linear_recurrence": (
        scanlab.linear_recurrence,
        {"a": 0.5, "b": np.ones(3), "h0": 1.0},
    ),
    "linear_recurrence_matrix": (
        scanlab.linear_recurrence_matrix,
        {"A": np.eye(2), "b": np.ones((3, 2)), "h0": np.ones(2)},
    ),
    "linear_recurrence_vjp": (
        scanlab.linear_recurrence_vjp,
        {"a": 0.5, "h": np.ones(3), "g": np.ones(3), "h0": 1.0},
    ),
    "linear_recurrence_matrix_vjp": (
        scanlab.linear_recurrence_matrix_vjp,
        {"A": np.eye(2), "h": np.ones((3, 2)), "g": np.ones((3, 2)), "h0": np.ones(2)},
    ),
    "nonlinear_recurrence": (
        functools.partial(scanlab.nonlinear_recurrence, GRU),
        {"x": np.ones((3, 1)), "h0": np.ones(2)},
    ),
    "nonlinear_recurrence_vjp": (
        functools.partial(scanlab.nonlinear_recurrence_vjp, GRU),
        {"x": np.ones((3, 1)), "h0": np.ones(2), "h": np.ones((3, 2)), "g": np.ones((3, 2))},
    ),
}

#: Every (function, operand) pair of :data:`CALLS`.
OPERANDS = [(function, name) for function, (_, operands) in CALLS.items() for name in operands]


def ragged(rows: list) -> bool:
    return len({len(row) for row in rows}) > 1


#: Values that are not arrays of numbers; None is among them (tested apart for ``h0``).
HOSTILE = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=2), st.floats(), max_size=2),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.sets(st.integers(), max_size=3),
    st.builds(object),
    st.lists(st.one_of(st.floats(), st.none()), min_size=1, max_size=4).filter(
        lambda values: None in values
    ),
    st.lists(st.lists(st.floats(), min_size=1, max_size=3), min_size=2, max_size=3).filter(ragged),
    st.lists(st.floats(), min_size=1, max_size=4).map(lambda values: np.array(values, object)),
    st.sampled_from(
        [
            np.array(["2020-01-01"], "datetime64[D]"),
            np.timedelta64(1, "D"),
            np.array([b"x", b"y"]),
            np.array(["1.0", "2.0"]),
            np.array([(1.0, 2.0)], dtype=[("real", float), ("imag", float)]),
        ]
    ),
)


def assert_names(error_info, name: str) -> None:
    """The error's message starts with the argument's name."""
    assert str(error_info.value).startswith(f"{name} "), str(error_info.value)


@pytest.mark.parametrize(("function", "name"), [pair for pair in OPERANDS if pair[1] != "h0"])
def test_none_is_a_type_error_naming_the_argument(function, name):
    """The reproduction: ``linear_recurrence(None, np.ones(3))`` returned ``[nan nan nan]``."""
    call, operands = CALLS[function]
    with pytest.raises(TypeError, match=rf"^{name} is None") as error:
        call(**{**operands, name: None})
    assert_names(error, name)


@settings(max_examples=60, deadline=None)
@given(pair=st.sampled_from(OPERANDS), value=HOSTILE)
def test_hostile_operands_are_errors_naming_the_argument(pair, value):
    function, name = pair
    if name == "h0" and value is None:
        return  # the zero start, tested below
    call, operands = CALLS[function]
    with pytest.raises((TypeError, ValueError)) as error:
        call(**{**operands, name: value})
    assert_names(error, name)


def test_ragged_operand_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"^b could not be read as an array"):
        scanlab.linear_recurrence(0.5, [[1.0, 2.0], [3.0]])


def test_h0_none_stays_the_zero_start():
    np.testing.assert_array_equal(
        scanlab.linear_recurrence(0.5, np.ones(3), None),
        scanlab.linear_recurrence(0.5, np.ones(3), 0.0),
    )


@pytest.fixture(scope="module")
def gilr():
    """A layer and the cache of its forward pass."""
    layer = layers.GILR(1, 2, seed=0, dtype=np.float64)
    return layer, layer.forward(np.ones((3, 1)))[1]


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(["h0", "dy"]), value=HOSTILE)
def test_layers_name_hostile_operands(gilr, name, value):
    """A layer's ``h0`` (not None) and ``dy``: an object array of None became NaN states."""
    if name == "h0" and value is None:
        return
    layer, cache = gilr
    with pytest.raises((TypeError, ValueError)) as error:
        if name == "h0":
            layer.forward(np.ones((3, 1)), value)
        else:
            layer.backward(cache, value)
    assert_names(error, name)


@settings(max_examples=20, deadline=None)
@given(value=HOSTILE)
def test_optimiser_names_hostile_gradients(value):
    adam = optim.Adam({"w": np.zeros(2)})
    with pytest.raises((TypeError, ValueError)) as error:
        adam.step({"w": value})
    assert_names(error, "grads[0, 'w']")


@pytest.fixture(scope="module")
def dask_array():
    return pytest.importorskip("dask.array")


@pytest.mark.parametrize("name", ["a", "b"])
def test_dask_none_is_a_type_error_naming_the_argument(dask_array, name):
    scanlab_dask = pytest.importorskip("scanlab.dask")
    operands = {"a": 0.5, "b": dask_array.ones(3), name: None}
    with pytest.raises(TypeError, match=rf"^{name} is None"):
        scanlab_dask.linear_recurrence(**operands)


@settings(max_examples=20, deadline=None)
@given(function=st.sampled_from(["elementwise", "matrices", "nonlinear"]), data=st.data())
def test_dask_hostile_operands_are_errors_naming_the_argument(dask_array, function, data):
    scanlab_dask = pytest.importorskip("scanlab.dask")
    call, operands = {
        "elementwise": (scanlab_dask.linear_recurrence, {"a": 0.5, "b": dask_array.ones(3)}),
        "matrices": (
            scanlab_dask.linear_recurrence_matrix,
            {"A": np.eye(2), "b": dask_array.ones((3, 2))},
        ),
        "nonlinear": (
            functools.partial(scanlab_dask.nonlinear_recurrence, GRU),
            {"x": dask_array.ones((3, 1)), "h0": None},
        ),
    }[function]
    name = data.draw(st.sampled_from(sorted(operands) + ["h0"]))
    value = data.draw(HOSTILE.filter(lambda value: value is not None or name != "h0"))
    if isinstance(value, np.ndarray) and data.draw(st.booleans()):
        value = dask_array.from_array(value, chunks=-1)  # checked by its dtype, never computed
    with pytest.raises((TypeError, ValueError)) as error:
        call(**{**operands, name: value})
    assert_names(error, name)
