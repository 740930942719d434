"""Naive retrospective hot spot: the mean daily count of the last ``days`` days.

``r_c = (1 / N) * sum_{d = T-N}^{T-1} X[c, d]`` — the floor every other model
must beat (the map an analyst draws from last month's pins). ``days=365``
(``naive365``) is a much harder baseline at res 10: a year of pins marks the
places that are busy every week.
"""

from __future__ import annotations

import numpy as np

from .base import ForecastModel, recent_sum
from .data import Counts


class NaiveHotspot(ForecastModel):
    """Retrospective hot spot (open_cp ``RetroHotSpot`` on a grid, no spatial kernel)."""

    name = "naive"

    def __init__(self, days: int = 28):
        if days < 1:
            raise ValueError("days must be >= 1")
        self.days = days
        if days != 28:
            self.name = f"naive{days}"

    def _fit(self, c: Counts, T: int) -> None:
        n = min(self.days, T)
        self.rate_ = recent_sum(c, T, n) / n

    def _daily_rate(self) -> np.ndarray:
        return self.rate_


class SeasonalNaive(ForecastModel):
    """ "Same weeks last year": the mean daily count per cell in the forecast weeks one
    year (52 weeks, same weekdays) earlier, widened by ``pad_days`` on each side.

    ``r_c = (1 / (h + 2 p)) * sum_{d = T-364-p}^{T-364+h+p-1} X[c, d]`` with ``h`` =
    ``horizon_days`` and ``p`` = ``pad_days``; days before the data start are left out
    of the mean (a cell with no such day gets the 365-day rate instead).
    """

    name = "seasonal"

    def __init__(self, horizon_days: int = 7, pad_days: int = 7):
        if horizon_days < 1 or pad_days < 0:
            raise ValueError("horizon_days must be >= 1 and pad_days >= 0")
        self.horizon_days = horizon_days
        self.pad_days = pad_days

    def _fit(self, c: Counts, T: int) -> None:
        self.rate_ = seasonal_rate(c, T, self.horizon_days, self.pad_days)

    def _daily_rate(self) -> np.ndarray:
        return self.rate_


def seasonal_rate(c: Counts, T: int, horizon_days: int = 7, pad_days: int = 7) -> np.ndarray:
    """Daily rate per cell in last year's same weeks (see :class:`SeasonalNaive`)."""
    lo = T - 364 - pad_days
    hi = min(T - 364 + horizon_days + pad_days, T)
    a = max(lo, 0)
    if hi - a < 1:  # no day of last year's window in the data
        n = min(365, T)
        return recent_sum(c, T, n) / n
    X = c.days_before(hi)
    return np.asarray(X[:, a:hi].sum(axis=1)).ravel() / (hi - a)
