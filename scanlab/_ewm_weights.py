"""pandas' exponentially weighted windows, as :func:`scanlab.signal.ewm_mean` takes them: the
centre of mass from one of ``com``, ``span``, ``halflife``, ``alpha`` (pandas' checks and
messages), and what each step of uneven ``times`` ages the weights by."""

import datetime
import decimal
import numbers

import numpy as np

from scanlab.cpu import ewm as cpu_ewm
from scanlab.cpu.threads import threads_for


def centre_of_mass(com, span, halflife, alpha, times=None) -> float:
    """pandas' centre of mass ``com`` (``alpha = 1 / (1 + com)``) from exactly one of
    ``com``, ``span``, ``halflife``, ``alpha``, validated and converted as pandas does. With
    ``times`` the half-life is a duration (see :func:`step_decays`) and ``com`` comes from the
    others, or is 1 (the weight halves in one half-life)."""
    if times is not None:
        if not isinstance(halflife, (str, datetime.timedelta, np.timedelta64)):
            raise ValueError("halflife must be a timedelta convertible object")
        if (com, span, alpha) == (None, None, None):
            return 1.0
        return centre_of_mass(com, span, None, alpha)
    if isinstance(halflife, (str, datetime.timedelta, np.timedelta64)):
        raise ValueError(
            "halflife can only be a timedelta convertible argument if times is not None."
        )
    given = {"com": com, "span": span, "halflife": halflife, "alpha": alpha}
    for name, value in given.items():
        # pandas compares and converts whatever it is given: bools and Decimals pass.
        if value is not None and not isinstance(value, (numbers.Real, decimal.Decimal)):
            raise TypeError(f"{name} must be a real number, got {value!r}")
    if sum(value is not None for value in given.values()) > 1:
        raise ValueError("comass, span, halflife, and alpha are mutually exclusive")
    if com is not None:
        if com < 0:
            raise ValueError("comass must satisfy: comass >= 0")
    elif span is not None:
        if span < 1:
            raise ValueError("span must satisfy: span >= 1")
        com = (span - 1) / 2
    elif halflife is not None:
        if halflife <= 0:
            raise ValueError("halflife must satisfy: halflife > 0")
        com = 1 / (1 - np.exp(np.log(0.5) / halflife)) - 1
    elif alpha is not None:
        if alpha <= 0 or alpha > 1:
            raise ValueError("alpha must satisfy: 0 < alpha <= 1")
        com = (1 - alpha) / alpha
    else:
        raise ValueError("Must pass one of comass, span, halflife, or alpha")
    return float(com)


def step_decays(times, halflife, alpha: float, length: int) -> np.ndarray:
    """What each of ``length`` steps ages the weights by, as pandas' ``ewm(times=...)`` does:
    ``(1 - alpha) ** delta[t]``, ``delta[t]`` the time from step ``t - 1`` to step ``t`` in
    half-lives (the first step's 1, never used: nothing before it to age); empty without
    ``times``. pandas' checks and messages, and times that go back in time refused (pandas
    requires them increasing and does not check)."""
    if times is None:
        return np.empty(0)
    import pandas as pd  # times are pandas' (tz-aware ones too); only then imported

    dtype = getattr(times, "dtype", None)
    if not (isinstance(dtype, pd.DatetimeTZDtype) or np.dtype(dtype or object).kind == "M"):
        raise ValueError("times must be datetime64 dtype.")
    if len(times) != length:
        raise ValueError("times must be the same length as the object.")
    moments = pd.DatetimeIndex(times)
    if moments.hasnans:
        raise ValueError("Cannot convert NaT values to integer")
    unit = pd.Timedelta(halflife).as_unit(moments.unit).to_timedelta64().astype(np.int64)
    if unit <= 0:  # pandas does not check: its weights are then meaningless
        raise ValueError(f"halflife must be a positive duration, got {halflife!r}")
    decays = np.empty(length)
    with threads_for(length):
        went_back = cpu_ewm.time_decays(moments.asi8, float(unit), 1.0 - alpha, decays)
    if went_back:
        step = int(np.argmax(np.diff(moments.asi8) < 0)) + 1
        raise ValueError(
            f"times must be monotonically increasing; times[{step}] comes before times[{step - 1}]"
        )
    return decays
