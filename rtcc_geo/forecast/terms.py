"""An additive model whose forecast is a sum of named terms, so every cell can say why.

For origin day ``T`` each study cell ``c`` gets non-negative features, all
daily rates from days ``< T``, grouped into five **terms**:

``long_memory``
    the cell's count over the last 365 and 182 days, its exponentially decayed
    rate (half-life 180 days), the share of the last 365 days with an incident
    in it (repeat days: one report of ten items counts once), the ring-1 and
    ring-2 neighbourhood means of the 365-day count, the ring-1 mean of the
    active days, and the means over the cell's H3 parents one and two
    resolutions up (res 9 and 8 for res-10 cells): places busy all year, at
    several scales;
``recent``
    the cell's counts over the last 28 and 91 days, its decayed rates with
    half-lives 30 and 90 days, and the ring-1 mean of 28 days;
``near_repeat``
    exponentially decayed counts (half-life 7 days) of the cell and its ring-1
    neighbours (contagion: a burglary raises the risk next door for days);
``seasonality``
    "same weeks last year": the cell's and its ring's mean daily count in the
    forecast weeks 52 weeks earlier, +-1 week (:func:`~rtcc_geo.forecast.naive.seasonal_rate`);
``place``
    the busiest single block address in the cell over the last 730 and 365 days
    (repeat places: a store, a bar), the cell's residents (census tracts,
    areally weighted, per 10,000; when the tract file is there) and a constant.

The expected count in a window of ``h`` days is

.. math:: E_c = h \\sum_j \\beta_j x_{cj}, \\qquad \\beta_j \\ge 0,

a Poisson regression with the **identity link** and non-negative weights,
fitted by maximum likelihood on ``n_origins`` stacked past origins (each
origin's features against its next ``h`` days) by L-BFGS-B with bounds
``beta >= 0`` (the likelihood is concave in ``beta``: a global optimum). Because the model is a sum,
the contribution of term ``t`` to cell ``c`` is exactly
``h sum_{j in t} beta_j x_cj``, and the contributions add up to the forecast.

**Calibration.** An identity-link fit is calibrated on average but not per
decile (the top cells are under-predicted). A monotone recalibration
``g(E)`` is fitted on the training origins (mean observed per quantile bin of
the raw forecast, the quietest bins pooled until each holds
``calibration_min_events`` incidents and shrunk towards the raw forecast by
``calibration_prior`` pseudo-incidents, pooled-adjacent-violators, linear
interpolation, the lowest bin's ratio below it), multiplied by a city-wide
seasonal level (last year's forecast weeks over last year's calibration
weeks), and every
term of a cell is scaled by the same factor ``g(E_c) / E_c``: the sum stays
exact, the order of cells is unchanged, and observed / predicted per decile
stays near 1 (tested on validation origins).
"""

from __future__ import annotations

import numpy as np

from .base import ForecastModel, decayed_sum
from .data import Counts
from .learned import _dense_stats, _ring_ops
from .naive import seasonal_rate

TERMS: tuple[str, ...] = ("long_memory", "recent", "near_repeat", "seasonality", "place")
#: (term, feature) in column order of :func:`term_features`.
FEATURES: tuple[tuple[str, str], ...] = (
    ("long_memory", "own_365d"),
    ("long_memory", "ring1_365d"),
    ("long_memory", "ring2_365d"),
    ("long_memory", "parent1_365d"),
    ("long_memory", "parent2_365d"),
    ("long_memory", "own_182d"),
    ("long_memory", "own_decay180d"),
    ("long_memory", "active_days_365d"),
    ("long_memory", "ring1_active_days_365d"),
    ("recent", "own_28d"),
    ("recent", "own_91d"),
    ("recent", "ring1_28d"),
    ("recent", "own_decay30d"),
    ("recent", "own_decay90d"),
    ("near_repeat", "own_decay7d"),
    ("near_repeat", "ring1_decay7d"),
    ("seasonality", "own_last_year"),
    ("seasonality", "ring1_last_year"),
    ("place", "top_block_730d"),
    ("place", "top_block_365d"),
    ("place", "residents"),
    ("place", "constant"),
)
TERM_OF = np.array([TERMS.index(t) for t, _ in FEATURES])
_OWN365, _RING365 = (next(i for i, (_, f) in enumerate(FEATURES) if f == n) for n in ("own_365d", "ring1_365d"))


def _window_rate(C: np.ndarray, T: int, w: int) -> np.ndarray:
    lo = max(0, T - w)
    return (C[:, T] - C[:, lo]).astype(np.float64) / max(T - lo, 1)


def top_block_rate(c: Counts, T: int, days: int = 730) -> np.ndarray:
    """Per cell, incidents at its busiest block address in the ``days`` before day ``T``, per day."""
    out = np.zeros(len(c.cells))
    if c.block is None:
        return out
    lo_h, hi_h = max(T - days, 0) * 24.0, T * 24.0
    i0, i1 = np.searchsorted(c.hours, [lo_h, hi_h])
    ci, bl = c.cell_idx[i0:i1], c.block[i0:i1]
    ok = bl >= 0
    if not ok.any():
        return out
    nb = int(bl.max()) + 1
    keys, n = np.unique(ci[ok] * nb + bl[ok], return_counts=True)
    np.maximum.at(out, keys // nb, n.astype(np.float64))
    return out / max(min(days, T), 1)


def residents_feature(c: Counts) -> np.ndarray:
    """Residents per cell / 10,000 (areal join of the agency's census tracts), cached; zeros
    when the agency is unknown or has no tract file (the feature then carries no weight).
    The agency is the one :func:`~rtcc_geo.forecast.io.counts_from_store` recorded."""
    key = ("terms_residents",)
    agency = c._cache.get("agency")
    if key not in c._cache:
        try:
            from ..fairness import cell_population, load_tracts

            if agency is None:
                raise FileNotFoundError("no agency")
            pop = cell_population(c.cells, load_tracts(agency)).to_numpy(np.float64) / 1e4
        except (FileNotFoundError, ValueError, ImportError):
            pop = np.zeros(len(c.cells))
        c._cache[key] = pop
    return c._cache[key]


def parent_mean_ops(c: Counts, levels: tuple[int, ...] = (1, 2)) -> list:
    """Per level ``l``, a sparse ``cells x cells`` operator: the mean over the study cells that
    share the cell's H3 parent ``l`` resolutions up (res 9 and 8 for res-10 cells), cached."""
    import h3
    import scipy.sparse as sp

    key = ("terms_parents", levels)
    if key not in c._cache:
        ops = []
        for lv in levels:
            pr = max(c.res - lv, 0)
            par = np.fromiter((h3.api.basic_int.cell_to_parent(int(x), pr) for x in c.cells), np.int64, len(c.cells))
            _, inv = np.unique(par, return_inverse=True)
            P = sp.csr_matrix((np.ones(len(inv)), (np.arange(len(inv)), inv)))
            n = np.asarray(P.sum(axis=0)).ravel()
            ops.append((P @ sp.diags(1.0 / n) @ P.T).tocsr())
        c._cache[key] = ops
    return c._cache[key]


def _decayed_rate(c: Counts, T: int, half_life: float, horizon: int = 730) -> np.ndarray:
    """Exponentially weighted daily rate (weights ``0.5 ** (age / half_life)``, normalised)."""
    age = np.arange(min(horizon, T))
    w = 0.5 ** (age / half_life)
    return decayed_sum(c, T, w / w.sum())


def active_day_rate(c: Counts, T: int, days: int = 365) -> np.ndarray:
    """Share of the last ``days`` days with at least one incident in the cell (a repeat-day count:
    one report of ten items counts once)."""
    X = c.days_before(T)
    lo = max(0, T - days)
    return np.asarray((X[:, lo:T] > 0).sum(axis=1)).ravel() / max(T - lo, 1)


def term_features(c: Counts, T: int, horizon_days: int = 7) -> np.ndarray:
    """Feature matrix ``cells x len(FEATURES)`` at origin day ``T`` (days ``< T`` only), cached."""
    store = c._cache.setdefault("terms_features", {})
    key = (T, horizon_days)
    if key in store:
        return store[key]
    C, _ = _dense_stats(c)
    K1, n1, K2, n2 = _ring_ops(c)
    P1, P2 = parent_mean_ops(c)
    own365 = _window_rate(C, T, 365)
    own28 = _window_rate(C, T, 28)
    act = active_day_rate(c, T, 365)
    dec = _decayed_rate(c, T, 7.0, 365)
    seas = seasonal_rate(c, T, horizon_days, 7)
    F = np.column_stack(
        [
            own365,
            K1 @ own365 / n1,
            K2 @ own365 / n2,
            P1 @ own365,
            P2 @ own365,
            _window_rate(C, T, 182),
            _decayed_rate(c, T, 180.0),
            act,
            K1 @ act / n1,
            own28,
            _window_rate(C, T, 91),
            K1 @ own28 / n1,
            _decayed_rate(c, T, 30.0),
            _decayed_rate(c, T, 90.0),
            dec,
            K1 @ dec / n1,
            seas,
            K1 @ seas / n1,
            top_block_rate(c, T),
            top_block_rate(c, T, 365),
            residents_feature(c),
            np.full(len(c.cells), 1e-3),
        ]
    )
    assert F.shape[1] == len(FEATURES)
    if len(store) > 80:
        store.clear()
    store[key] = F
    return F


def nn_poisson_identity(
    X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, iters: int = 200, start: np.ndarray | None = None
) -> np.ndarray:
    """Non-negative ``beta`` maximising the weighted Poisson likelihood of ``y ~ X beta``.

    Minimises ``sum_i w_i (mu_i - y_i log mu_i)``, ``mu = X beta``, with gradient
    ``X^T w (1 - y / mu)``, by L-BFGS-B with bounds ``beta >= 0`` (the likelihood is
    concave in ``beta``, so the optimum is global and ``start`` only saves iterations).
    """
    from scipy.optimize import minimize
    from threadpoolctl import threadpool_limits

    w = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
    X = np.asarray(X, np.float64)
    scale = np.maximum(X.max(axis=0), 1e-12)  # unit columns: a better-conditioned problem
    Xs = X / scale
    wy = w * y

    def f(b):
        mu = np.maximum(Xs @ b, 1e-12)
        return float((w * mu - wy * np.log(mu)).sum()), Xs.T @ (w - wy / mu)

    if start is not None and np.isfinite(start).all() and (start > 0).any():
        b0 = np.maximum(np.asarray(start, np.float64) * scale, 0.0)
    else:
        b0 = np.full(X.shape[1], float(wy.sum() / max((w[:, None] * Xs).sum(), 1e-12)))
    # One BLAS thread: these are thin matrix-vector products, and spinning threads on a
    # loaded machine made them 10x slower (as for the learned model).
    with threadpool_limits(limits=1):
        r = minimize(
            f,
            b0,
            jac=True,
            method="L-BFGS-B",
            bounds=[(0, None)] * X.shape[1],
            options={"maxiter": iters, "ftol": 1e-10, "gtol": 1e-7},
        )
    return r.x / scale


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing fit to ``y`` with weights ``w``."""
    vals, wts, sizes = [], [], []
    for v, ww in zip(y.tolist(), w.tolist()):
        vals.append(v)
        wts.append(ww)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, s2 = vals.pop(), wts.pop(), sizes.pop()
            tot = wts[-1] + w2
            vals[-1] = (vals[-1] * wts[-1] + v2 * w2) / tot if tot > 0 else vals[-1]
            wts[-1] = tot
            sizes[-1] += s2
    return np.repeat(vals, sizes)


class AdditiveTerms(ForecastModel):
    """Sum of non-negative term forecasts (see module doc); exact per-term explanations."""

    name = "additive"

    def __init__(
        self,
        horizon_days: int = 7,
        n_origins: int = 12,
        quiet_keep: int = 10,
        zero_keep: int = 3,
        calibrate: bool = True,
        calibration_bins: int = 50,
        calibration_origins: int = 6,
        calibration_prior: float = 5.0,
        calibration_min_events: float = 20.0,
        random_state: int = 0,
    ):
        if horizon_days < 1 or n_origins < 1:
            raise ValueError("horizon_days and n_origins must be >= 1")
        self.horizon_days = horizon_days
        self.n_origins = n_origins
        self.quiet_keep = quiet_keep
        self.zero_keep = zero_keep
        self.calibrate = calibrate
        self.calibration_bins = calibration_bins
        self.calibration_origins = calibration_origins
        self.calibration_prior = calibration_prior
        self.calibration_min_events = calibration_min_events
        self.random_state = random_state

    def _fit(self, c: Counts, T: int) -> None:
        h = self.horizon_days
        C, _ = _dense_stats(c)
        rng = np.random.default_rng(self.random_state)
        Xs, ys, ws = [], [], []
        for k in range(1, self.n_origins + 1):
            t0 = T - h * k
            if t0 < 28:
                break
            F = term_features(c, t0, h)
            y = (C[:, t0 + h] - C[:, t0]).astype(np.float64)
            # Cells with nothing nearby for a year are many and nearly all zero: a seeded
            # 1-in-quiet_keep sample, weighted back up (same expected likelihood).
            quiet = (F[:, _OWN365] == 0) & (F[:, _RING365] == 0)
            # Zero weeks elsewhere: a seeded 1-in-zero_keep sample, weighted back up.
            wt = np.where(quiet, float(self.quiet_keep), np.where(y == 0, float(self.zero_keep), 1.0))
            keep = rng.random(len(y)) < 1.0 / wt
            Xs.append(F[keep] * h)
            ys.append(y[keep])
            ws.append(wt[keep])
        if not Xs:
            raise ValueError(f"not enough history before day {T} to fit the additive model (need > {h + 28} days)")
        X, y, w = np.vstack(Xs), np.concatenate(ys), np.concatenate(ws)
        # Warm start from the last fit (a backtest refits week after week); the optimum
        # is global, so the start changes only the time it takes.
        self.beta_ = nn_poisson_identity(X, y, w, start=getattr(self, "beta_", None))
        self.n_train_origins_ = len(Xs)
        self.n_train_rows_ = len(y)
        # Monotone recalibration on the most recent training origins, every cell unsampled and
        # bins of equal numbers of cells (as the per-decile check counts them; see module doc).
        self.cal_x_, self.cal_y_ = None, None
        if self.calibrate:
            raws: list[np.ndarray] = []
            obss: list[np.ndarray] = []
            for k in range(1, min(self.calibration_origins, self.n_train_origins_) + 1):
                t0 = T - h * k
                raws.append(term_features(c, t0, h) @ self.beta_ * h)
                obss.append((C[:, t0 + h] - C[:, t0]).astype(np.float64))
            raw, obs = np.concatenate(raws), np.concatenate(obss)
            order = np.argsort(raw, kind="stable")
            groups = np.array_split(order, self.calibration_bins)
            # Quiet bins are pooled, from the lowest forecast up, until each holds at least
            # `calibration_min_events` incidents: the mean of a bin with 0-2 incidents is noise,
            # and fine bins there left the lowest decile of sparse targets 3x under-predicted.
            pooled: list[np.ndarray] = []
            acc: list[np.ndarray] = []
            for g in groups:
                acc.append(g)
                if obs[np.concatenate(acc)].sum() >= self.calibration_min_events:
                    pooled.append(np.concatenate(acc))
                    acc = []
            if acc:
                pooled = pooled[:-1] + [np.concatenate(pooled[-1:] + acc)]
            groups = pooled
            gx = np.array([raw[g].mean() for g in groups if len(g)])
            # Bin mean observed, shrunk towards the raw forecast by `calibration_prior` pseudo-incidents
            # at ratio 1: a quiet bin with no incident in the calibration weeks keeps a small
            # forecast instead of ~0 (which left the lowest decile 1.3-5.8x under-predicted).
            a = self.calibration_prior
            gy = np.array([(obs[g].sum() + a) / (raw[g].sum() + a) * raw[g].mean() for g in groups if len(g)])
            gw = np.array([len(g) for g in groups if len(g)], float)
            # strictly increasing, so recalibration never ties cells the raw forecast ranked apart
            self.cal_x_, self.cal_y_ = gx, _pav(gy, gw) + 1e-9 * np.arange(len(gx))
        self.level_ = self._seasonal_level(c, T) if self.calibrate else 1.0
        self.terms_ = self._terms_daily(term_features(c, T, h)) * self.level_

    def _seasonal_level(self, c: Counts, T: int) -> float:
        """City-wide seasonal level: last year's events in the forecast weeks (+-1 week) per day over
        last year's events per day in the calibration weeks, clipped to [0.8, 1.25]; 1 without a
        full year of history. The recalibration matches the level of the weeks just before ``T``;
        this carries it to the forecast week (spring is busier than February). One factor for
        every cell and term: the ranking and the exact sum of the terms are unchanged."""
        h, k = self.horizon_days, min(self.calibration_origins, self.n_train_origins_)
        a0, a1 = T - 364 - 7, T - 364 + h + 7  # last year's forecast weeks, padded
        b0, b1 = T - 364 - h * k, T - 364  # last year's calibration weeks
        if b0 < 0 or a0 < 0:
            return 1.0
        C, _ = _dense_stats(c)
        tot = C.sum(axis=0, dtype=np.float64)
        a, b = (tot[a1] - tot[a0]) / (a1 - a0), (tot[b1] - tot[b0]) / (b1 - b0)
        return float(np.clip(a / b, 0.8, 1.25)) if a > 0 and b > 0 else 1.0

    def _terms_daily(self, F: np.ndarray) -> np.ndarray:
        """``cells x len(TERMS)`` daily-rate contribution of each term (calibrated)."""
        parts = F * self.beta_[None, :]
        by_term = np.zeros((F.shape[0], len(TERMS)))
        for t in range(len(TERMS)):
            by_term[:, t] = parts[:, TERM_OF == t].sum(axis=1)
        if self.cal_x_ is not None and self.cal_y_ is not None:  # (set together)
            raw = by_term.sum(axis=1) * self.horizon_days
            # Extrapolate beyond the last bin with the top bin's ratio (no flattening at the top).
            hi_ratio = self.cal_y_[-1] / max(self.cal_x_[-1], 1e-12)
            # Below the lowest (pooled, >= calibration_min_events incidents) bin: that bin's ratio
            # of observed to forecast, so the quietest cells keep their order. A cell with no
            # feature at all gets the lowest bin's rate, as the place term (a city-wide floor).
            lo_ratio = self.cal_y_[0] / max(self.cal_x_[0], 1e-12)
            g = np.asarray(np.interp(raw, self.cal_x_, self.cal_y_))
            g = np.where(raw > self.cal_x_[-1], raw * hi_ratio, g)
            g = np.where(raw < self.cal_x_[0], raw * lo_ratio, g)
            factor = np.where(raw > 0, g / np.maximum(raw, 1e-300), 1.0)
            by_term *= factor[:, None]
            by_term[:, TERMS.index("place")] += np.where(raw > 0, 0.0, self.cal_y_[0] / self.horizon_days)
        return by_term

    def _daily_rate(self) -> np.ndarray:
        return self.terms_.sum(axis=1)

    def contributions_daily(self):
        """Per-cell daily-rate contribution of each term (columns = :data:`TERMS`)."""
        import pandas as pd

        self._check_fitted()
        return pd.DataFrame(self.terms_, index=pd.Index(self.cells_, name="cell"), columns=list(TERMS))
