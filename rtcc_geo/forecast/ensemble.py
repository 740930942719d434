"""Ensemble: a weighted mean of member models' expected counts.

``E_c = sum_m w_m E_{m,c} / sum_m w_m``. Every member is an expected count
on the same scale, so averaging them keeps the result an expected count.
"""

from __future__ import annotations

import numpy as np

from .base import ForecastModel
from .data import Counts


class Ensemble(ForecastModel):
    name = "ensemble"

    def __init__(self, members: list[ForecastModel], weights: list[float] | None = None):
        if not members:
            raise ValueError("an ensemble needs at least one member model")
        self.members = members
        self.weights = weights

    def _fit(self, c: Counts, T: int) -> None:
        until = c.day_start(T)
        for m in self.members:
            # A member already fitted on the same data and origin (the backtest
            # fits each model before the ensemble) is reused, not refitted.
            if getattr(m, "counts_", None) is c and getattr(m, "until_day_", None) == T:
                continue
            m.fit(c, until=until)
        w = np.ones(len(self.members)) if self.weights is None else np.asarray(self.weights, float)
        self.w_ = w / w.sum()

    def _expected(self, day0: float, day1: float) -> np.ndarray:
        return sum(w * m._expected(day0, day1) for w, m in zip(self.w_, self.members))

    def _daily_rate(self) -> np.ndarray:
        return sum(w * m._daily_rate() for w, m in zip(self.w_, self.members))
