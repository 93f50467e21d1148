"""Exponentially weighted means of prices with gaps: pandas' ewm(...).mean() on a DataFrame.

Daily closes of 500 tickers over 40 years, with missing days (listings, halts, holidays as
NaN). A MACD-style signal (the difference of a 12- and a 26-day EWM, and its 9-day EWM) is
computed by scanlab and by pandas on the same DataFrame (dates down the index, tickers across
the columns; scanlab gives DataFrames back, labelled alike); missing days age the weights
(``ignore_na=False``, pandas' default) and no signal is given before 26 observations
(``min_periods``).

Run: python examples/price_ewm.py [--days N]
"""

import argparse
import time

import numpy as np
import pandas as pd

from scanlab.signal import ewm_mean


def prices(days: int, tickers: int, rng) -> np.ndarray:
    """Geometric random walks with 5% missing days and late listings."""
    returns = rng.normal(0.0003, 0.02, (days, tickers))
    closes = 100 * np.exp(np.cumsum(returns, axis=0))
    closes[rng.random(closes.shape) < 0.05] = np.nan
    listed = rng.integers(0, days // 2, tickers)
    closes[np.arange(days)[:, None] < listed] = np.nan
    return closes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10_000, help="trading days")
    parser.add_argument("--tickers", type=int, default=500)
    arguments = parser.parse_args()
    closes = prices(arguments.days, arguments.tickers, np.random.default_rng(0))
    days = pd.bdate_range("1986-01-01", periods=arguments.days, name="date")
    tickers = [f"T{k:03d}" for k in range(arguments.tickers)]
    frame = pd.DataFrame(closes, index=days, columns=tickers)

    ewm_mean(frame[:100], span=12)  # compile (the first call in a fresh environment)
    start = time.perf_counter()
    fast, slow = (ewm_mean(frame, span=span, min_periods=span) for span in (12, 26))
    line = fast - slow
    signal = ewm_mean(line, span=9, min_periods=9)
    spent = time.perf_counter() - start

    start = time.perf_counter()
    expected_line = (
        frame.ewm(span=12, min_periods=12).mean() - frame.ewm(span=26, min_periods=26).mean()
    )
    expected_signal = expected_line.ewm(span=9, min_periods=9).mean()
    pandas_spent = time.perf_counter() - start
    assert signal.index.equals(days) and list(signal.columns) == tickers
    line, signal = line.to_numpy(), signal.to_numpy()

    missing = np.isnan(closes).mean()
    print(f"{arguments.tickers} tickers x {arguments.days} days, {missing:.0%} missing")
    print(f"scanlab {1e3 * spent:.1f} ms, pandas {1e3 * pandas_spent:.1f} ms")
    for name, ours, theirs in (
        ("MACD line", line, expected_line.to_numpy()),
        ("signal line", signal, expected_signal.to_numpy()),
    ):
        assert np.array_equal(np.isnan(ours), np.isnan(theirs))
        relative = np.nanmax(np.abs(ours - theirs)) / np.nanmax(np.abs(theirs))
        print(f"  {name}: max |scanlab - pandas| / max |pandas| = {relative:.1e}")
    crossings = np.nansum(np.diff(np.sign(line - signal), axis=0) != 0, axis=0)
    print(f"  crossings of the signal line per ticker: median {np.median(crossings):.0f}")


if __name__ == "__main__":
    main()
