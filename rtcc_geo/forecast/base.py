"""The forecast model API, in the scikit-learn manner.

>>> model = NaiveHotspot(days=28).fit(incidents, until="2024-07-01")
>>> risk = model.predict(cells, "2024-07-01", "2024-07-08")   # pd.Series, index = cell

``fit`` sees only incidents *before* ``until``; ``predict`` returns the
expected number of incidents of the target in each cell during
``[start, end)`` (naive times are local to the agency's time zone).

Every model estimates a per-cell **daily rate** ``r_c`` from complete local
days before ``until`` (events earlier on the day of ``until`` are ignored, so
a shift forecast at 16:00 behaves like one at midnight). The rate becomes an
expected count for the window by :meth:`ForecastModel.window_factor`:

* windows that span whole weeks: ``E_c = r_c * days``;
* otherwise (a day, a shift): ``E_c = 7 r_c * s_c(W)``, where ``s_c(W)`` is the
  cell's share of its weekly incidents falling in the window's hour-of-week
  slots, shrunk towards the city-wide profile ``g``:
  ``s_c(W) = (h_c . w + a g . w) / (n_c + a)`` with ``h_c`` the cell's
  hour-of-week histogram (known-time events only), ``n_c`` its total,
  ``w`` the window's slot weights and ``a`` = :attr:`how_prior` (20); ``g``
  itself has one pseudo-event per slot, so no hour is ever impossible.

Models that carry time-varying intensity (SEPP) override :meth:`_expected`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import HOURS_PER_DAY, Counts


class ForecastModel:
    """Base class. Subclasses implement :meth:`_fit` and :meth:`_daily_rate`."""

    name = "base"
    #: Pseudo-count of the city-wide hour-of-week profile in each cell's profile.
    how_prior: float = 20.0

    def fit(self, incidents, until, *, cells=None, res: int = 10, tz: str = "UTC") -> ForecastModel:
        """Fit on incidents before ``until``.

        ``incidents`` is a :class:`~rtcc_geo.forecast.data.Counts` (fast path,
        used by the backtest) or a canonical incidents frame (then ``cells``,
        ``res`` and ``tz`` say how to grid it).
        """
        if not isinstance(incidents, Counts):
            incidents = Counts.from_incidents(incidents, cells=cells, res=res, tz=tz, end=until)
        c = incidents
        self.counts_ = c
        self.until_hours_ = c.to_hours(until)
        self.until_day_ = int(np.clip(np.floor(self.until_hours_ / HOURS_PER_DAY), 0, c.n_days))
        if self.until_day_ < 1:
            raise ValueError(f"no complete day of history before {until}; fit needs incidents before it")
        self.cells_ = c.cells
        self._fit(c, self.until_day_)
        return self

    # --- to implement ----------------------------------------------------
    def _fit(self, c: Counts, T: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _daily_rate(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _expected(self, day0: float, day1: float) -> np.ndarray:
        """Expected events per study cell from day ``day0`` to ``day1`` (fractional days
        since origin); default: constant daily rate."""
        return self._daily_rate() * (day1 - day0)

    # --- public ----------------------------------------------------------
    def predict(self, cells=None, start=None, end=None) -> pd.Series:
        """Expected incidents per cell in ``[start, end)`` (default: the week after ``until``).

        ``cells`` defaults to the study cells; cells outside them get 0.
        """
        self._check_fitted()
        c = self.counts_
        a, b = self.window_hours(start, end)
        e = self.to_window(self._expected(a / HOURS_PER_DAY, b / HOURS_PER_DAY), a, b)
        s = pd.Series(np.maximum(e, 0.0), index=pd.Index(c.cells, name="cell"), name=self.name)
        if cells is not None:
            s = s.reindex(pd.Index(np.asarray(cells, dtype=np.int64), name="cell"), fill_value=0.0)
        return s

    def window_hours(self, start=None, end=None) -> tuple[float, float]:
        """``[start, end)`` in hours since the data's origin (default: the week after ``until``)."""
        c = self.counts_
        a = self.until_hours_ if start is None else c.to_hours(start)
        b = a + 7 * HOURS_PER_DAY if end is None else c.to_hours(end)
        if b <= a:
            raise ValueError(f"empty forecast window [{start}, {end}): end must be after start")
        return a, b

    def to_window(self, e: np.ndarray, a_hours: float, b_hours: float) -> np.ndarray:
        """Expected counts ``e`` for ``days`` of constant rate -> the window's (see module doc);
        ``e`` may be ``cells x k`` (per-term parts of the forecast get the same scaling)."""
        days = (b_hours - a_hours) / HOURS_PER_DAY
        if abs(days / 7 - round(days / 7)) < 1e-9 and round(days / 7) >= 1:
            return e
        share = self.window_share(a_hours, b_hours)
        return e / days * 7.0 * (share[:, None] if e.ndim == 2 else share)

    def window_share(self, a_hours: float, b_hours: float) -> np.ndarray:
        """Each cell's shrunk share of weekly incidents in the window (see module doc)."""
        c = self.counts_
        w = c.hour_of_week_slots(c.origin + pd.Timedelta(hours=a_hours), c.origin + pd.Timedelta(hours=b_hours))
        H = self._how()
        tot = np.asarray(H.sum(axis=1)).ravel()
        g = np.asarray(H.sum(axis=0)).ravel()
        g = (g + 1.0) / (g.sum() + 168.0)  # one pseudo-event per slot: no slot is impossible
        return (H @ w + self.how_prior * float(g @ w)) / (tot + self.how_prior)

    def _how(self):
        key = ("how", self.until_day_)
        cache = self.counts_._cache
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = self.counts_.how_hist(self.until_day_ * HOURS_PER_DAY)
        return cache[key]

    def _check_fitted(self):
        if not hasattr(self, "counts_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(incidents, until=...) first")

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_") and k != "name"}

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({p})"


def recent_sum(c: Counts, T: int, days: int) -> np.ndarray:
    """Events per cell in the ``days`` days before day ``T``."""
    X = c.days_before(T)
    lo = max(0, T - days)
    return np.asarray(X[:, lo:T].sum(axis=1)).ravel()


def decayed_sum(c: Counts, T: int, weights_by_age: np.ndarray) -> np.ndarray:
    """``sum_d X[:, T-1-a] * w[a]`` over ages ``a = 0..len(w)-1`` (age 0 = the day before T)."""
    X = c.days_before(T)
    L = min(len(weights_by_age), T)
    if L == 0:
        return np.zeros(X.shape[0])
    w = np.asarray(weights_by_age[:L], dtype=np.float64)[::-1]
    return np.asarray(X[:, T - L : T] @ w).ravel()
