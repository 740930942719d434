"""Prospective hot spot (Bowers, Johnson & Pease 2004), on the H3 grid.

Each past event ``i`` in cell ``j`` at age ``a_i`` (whole weeks before the
forecast origin) adds to cell ``c`` at grid distance ``k = dist(c, j)``

.. math:: w_i(c) = \\frac{1}{1 + k} \\cdot \\frac{1}{1 + a_i},
          \\qquad k \\le K,\\; a_i < A

(distance in cell steps of about 130 m at res 10; BJP used 50 m cells, a 400 m
band and 2 months). The sum is a relative risk; it is rescaled so its total
equals the recent daily event rate (so it is also an expected count).
Computed as ``S @ (X_window @ age_weights)``, two sparse products.
"""

from __future__ import annotations

import numpy as np

from .base import ForecastModel, decayed_sum, recent_sum
from .data import Counts
from .spatial import ring_kernel


class ProspectiveHotspot(ForecastModel):
    name = "prospective"

    def __init__(self, bandwidth_cells: int = 3, weeks: int = 8):
        self.bandwidth_cells = bandwidth_cells
        self.weeks = weeks

    def _fit(self, c: Counts, T: int) -> None:
        age_days = np.arange(7 * self.weeks)
        w_age = 1.0 / (1.0 + age_days // 7)
        x = decayed_sum(c, T, w_age)
        K = ring_kernel(c.cells, 1.0 / (1.0 + np.arange(self.bandwidth_cells + 1)))
        risk = K @ x
        n = min(28, T)
        level = recent_sum(c, T, n).sum() / n
        self.rate_ = risk * (level / risk.sum()) if risk.sum() > 0 else risk

    def _daily_rate(self) -> np.ndarray:
        return self.rate_
