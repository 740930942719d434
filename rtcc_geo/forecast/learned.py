"""A learned model: Poisson gradient boosting on lagged counts.

For a forecast origin ``T`` and each study cell ``c`` the features are

* the cell's own counts per day over the last 1, 7, 28, 91 and 364 days;
* the same for its k-ring neighbours at distance 1 and 2 (spatial lags,
  mean per neighbour) over 7, 28 and 364 days;
* exponentially weighted daily rates (half-lives 30 and 365 days) of the
  cell and of its ring-1 neighbours;
* days since the cell's last event (capped at 400);
* season of the target window (sine/cosine of the day of year).

The target is the count in the ``horizon_days`` days after the origin. The
training set stacks ``n_origins`` past origins ``T - h, T - 2h, ...`` (each
with its own features and observed target, none of which reaches past ``T``),
and the regressor is scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingRegressor`
with ``loss="poisson"``. Cells with no event within one ring for a year
(``quiet``; most of the city at res 10) enter the training set as a seeded
1-in-``quiet_keep`` sample with weight ``quiet_keep`` (same expected loss, a
fraction of the rows) (or a :class:`~sklearn.linear_model.PoissonRegressor`
on ``log1p`` features with ``estimator="glm"``). The prediction divided by
the horizon is the daily rate; sub-day windows use the hour-of-week share of
:class:`~rtcc_geo.forecast.base.ForecastModel`.

Defaults (12 weekly training origins, 60 trees of at most 15 leaves, at
least 100 rows a leaf, L2 = 1) were chosen on validation origins before the
documented backtest (5 weeks from 2024-04-01): with sparse targets (theft
from vehicle: ~200 a week over ~25,000 cells) a shallow, regularised booster
on many origins gained 50 % PAI@1 % over 3 origins of deeper trees.

All features come from one cumulative-sum matrix per :class:`Counts`
(cached), so a fit is a few array slices plus the booster.
"""

from __future__ import annotations

import numpy as np

from .base import ForecastModel, decayed_sum
from .data import Counts
from .spatial import ring_kernel

OWN_WINDOWS = (1, 7, 28, 91, 364)
RING_WINDOWS = (7, 28, 364)
EW_HALF_LIVES = (30.0, 365.0)


def _dense_stats(c: Counts) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative counts ``cells x (days+1)``, last-event-day ``cells x (days+1)``), cached."""
    key = ("learned_dense",)
    if key not in c._cache:
        X = c.daily.toarray().astype(np.float32)
        C = np.zeros((X.shape[0], X.shape[1] + 1), np.float32)
        np.cumsum(X, axis=1, out=C[:, 1:])
        days = np.where(X > 0, np.arange(X.shape[1], dtype=np.int32)[None, :], -10_000).astype(np.int32)
        last = np.full((X.shape[0], X.shape[1] + 1), -10_000, np.int32)
        np.maximum.accumulate(days, axis=1, out=last[:, 1:])
        c._cache[key] = (C, last)
    return c._cache[key]


def _ring_ops(c: Counts):
    key = ("learned_rings",)
    if key not in c._cache:
        K1 = ring_kernel(c.cells, np.array([0.0, 1.0]))
        K2 = ring_kernel(c.cells, np.array([0.0, 0.0, 1.0]))
        n1 = np.maximum(np.asarray(K1.sum(axis=1)).ravel(), 1.0)
        n2 = np.maximum(np.asarray(K2.sum(axis=1)).ravel(), 1.0)
        c._cache[key] = (K1, n1, K2, n2)
    return c._cache[key]


def features(c: Counts, T: int, horizon_days: int = 7) -> np.ndarray:
    """Feature matrix ``cells x p`` at origin day ``T`` (uses days ``< T`` only)."""
    C, last = _dense_stats(c)
    K1, n1, K2, n2 = _ring_ops(c)
    cols = []
    for w in OWN_WINDOWS:
        lo = max(0, T - w)
        cols.append((C[:, T] - C[:, lo]) / w)
    for w in RING_WINDOWS:
        lo = max(0, T - w)
        own = (C[:, T] - C[:, lo]).astype(np.float64) / w
        cols.append(K1 @ own / n1)
        cols.append(K2 @ own / n2)
    # exponentially weighted recent and long-memory rates (the STKDE signal, as features)
    for hl in EW_HALF_LIVES:
        age = np.arange(min(730, T))
        wts = 0.5 ** (age / hl)
        ew = decayed_sum(c, T, wts / wts.sum())
        cols.append(ew)
        cols.append(K1 @ ew / n1)
    cols.append(np.minimum(T - 1 - last[:, T], 400).astype(np.float32))
    doy = (c.day_start(T).day_of_year + horizon_days / 2.0) / 365.25 * 2 * np.pi
    cols.append(np.full(len(c.cells), np.sin(doy)))
    cols.append(np.full(len(c.cells), np.cos(doy)))
    return np.column_stack(cols).astype(np.float32)


class LearnedPoisson(ForecastModel):
    """Gradient-boosted (or GLM) Poisson regression on lagged counts and spatial lags."""

    name = "learned"

    def __init__(
        self,
        horizon_days: int = 7,
        n_origins: int = 12,
        estimator: str = "hgb",
        max_iter: int = 60,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_history_days: int = 364,
        quiet_keep: int = 10,
        n_threads: int | None = 1,
        min_samples_leaf: int = 100,
        l2_regularization: float = 1.0,
        random_state: int = 0,
    ):
        self.horizon_days = horizon_days
        self.n_origins = n_origins
        self.estimator = estimator
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_history_days = min_history_days
        self.quiet_keep = quiet_keep
        self.n_threads = n_threads
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def _make(self):
        if self.estimator == "hgb":
            from sklearn.ensemble import HistGradientBoostingRegressor

            return HistGradientBoostingRegressor(
                loss="poisson",
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                l2_regularization=self.l2_regularization,
                early_stopping=False,
                random_state=self.random_state,
            )
        if self.estimator == "glm":
            from sklearn.linear_model import PoissonRegressor
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import FunctionTransformer, StandardScaler

            return make_pipeline(
                FunctionTransformer(np.log1p), StandardScaler(), PoissonRegressor(alpha=1e-4, max_iter=300)
            )
        raise ValueError(f"estimator must be 'hgb' or 'glm', not {self.estimator!r}")

    def _fit(self, c: Counts, T: int) -> None:
        h = self.horizon_days
        C, _ = _dense_stats(c)
        Xs, ys, ws = [], [], []
        rng = np.random.default_rng(self.random_state)
        # Origins whose target window ends by T; keep a minimum history so lags are meaningful.
        first = min(self.min_history_days, max(T - h * self.n_origins - h, 1))
        for k in range(1, self.n_origins + 1):
            t0 = T - h * k
            if t0 < first:
                break
            F = features(c, t0, h)
            y = C[:, t0 + h] - C[:, t0]
            # Cells with no event nearby for a year are many and nearly all zero:
            # keep a seeded 1-in-`quiet_keep` sample of them, weighted back up.
            quiet = (F[:, 4] == 0) & (F[:, 9] == 0)
            keep = ~quiet | (rng.random(len(y)) < 1.0 / self.quiet_keep)
            Xs.append(F[keep])
            ys.append(y[keep])
            ws.append(np.where(quiet[keep], float(self.quiet_keep), 1.0))
        if not Xs:
            raise ValueError(f"not enough history before day {T} to train the learned model (need > {h} days)")
        Xa, ya, wa = np.vstack(Xs), np.concatenate(ys), np.concatenate(ws)
        from threadpoolctl import threadpool_limits

        # OpenMP threads spin-wait: on a shared 2-core box two threads ran the
        # booster 10x slower than one (measured), so the default is 1.
        with threadpool_limits(limits=self.n_threads):
            if self.estimator == "glm":
                self.model_ = self._make().fit(Xa, ya, poissonregressor__sample_weight=wa)
            else:
                self.model_ = self._make().fit(Xa, ya, sample_weight=wa)
            pred = self.model_.predict(features(c, T, h))
        self.rate_ = np.maximum(pred, 0.0) / h
        self.n_train_origins_ = len(Xs)
        self.n_train_rows_ = len(ya)

    def _daily_rate(self) -> np.ndarray:
        return self.rate_
