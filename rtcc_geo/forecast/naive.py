"""Naive retrospective hot spot: the mean daily count of the last ``days`` days.

``r_c = (1 / N) * sum_{d = T-N}^{T-1} X[c, d]`` — the floor every other model
must beat (the map an analyst draws from last month's pins).
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

    def _fit(self, c: Counts, T: int) -> None:
        n = min(self.days, T)
        self.rate_ = recent_sum(c, T, n) / n

    def _daily_rate(self) -> np.ndarray:
        return self.rate_
