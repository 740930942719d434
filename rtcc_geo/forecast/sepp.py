"""Self-exciting point process on the grid (Mohler 2013/2015 "ETAS" grid model), by EM.

Each cell ``n`` has its own Poisson background rate ``mu_n`` and every event
raises the near-future rate of *its own* cell by an exponentially decaying
amount. We work on local **days** (the count matrix ``X``), so the model is
the day-binned version of Mohler's ``lambda_n(t) = mu_n + sum theta w exp(-w (t - t_i))``:

.. math::

    X_{n,d} \\sim \\text{Poisson}(\\lambda_{n,d}),\\qquad
    \\lambda_{n,d} = \\mu_n + \\theta\\,(1-\\beta) \\sum_{\\ell \\ge 1} \\beta^{\\ell-1} X_{n,d-\\ell},

i.e. each event has on average ``theta`` offspring (branching ratio, < 1), each
falling ``l >= 1`` days later with geometric probability
``(1 - beta) beta^(l-1)``; ``omega = -ln(beta)`` is the decay rate per day and
``1 / (1 - beta)`` the mean delay. Same-day triggering is not identified
at day resolution and is absorbed into ``mu``.

EM (Veen & Schoenberg 2008; Mohler 2013) with latent branching:

* E-step: of the ``X_{n,d}`` events, ``B = X mu / lambda`` are background and
  the rest triggered; the triggered ones sit at delay ``l`` in proportion to
  ``theta (1-beta) beta^(l-1) X_{n,d-l}``.
* M-step: ``mu_n = sum_d B_{n,d} / D``;
  ``theta = sum(X - B) / sum_d X_{n,d} (1 - beta^(D-1-d))`` (offspring that
  would fall after the training window are not counted against theta);
  ``beta = m / (1 + m)`` with ``m`` the expected mean of ``l - 1`` over
  triggered events (the geometric MLE).

The E-step needs the lag sums ``S = sum_l beta^(l-1) X_{d-l}`` and
``U = sum_l (l-1) beta^(l-1) X_{d-l}`` only at the cell-days that have events:
sums over the (child, parent) pairs of non-empty days of the same cell within
``max_lag_days`` (90: the kernel tail beyond it is ``beta^90``, under 1e-4 for
any mean delay up to ~ 10 days). Entries sorted by (cell, day), entry ``i`` has
a parent at every offset ``o = 1 .. r_i`` (parent ``i - o``), ``r_i`` the number
of earlier entries of its cell within the lag; ordered by ``r`` the children of
offset ``o`` are a prefix. Each EM iteration walks the offsets and adds each
offset's terms in place: O(pairs) work, but memory O(non-empty cell-days), not
O(pairs) — a busy cell with an event every day has 90 pairs per day, and
listing them all took 12 GB on a 10 M-incident store. Each child has one parent
per offset and the offsets are added in the order a ``bincount`` over the listed
pairs adds them (1, 2, ...), so the sums are the same to the bit.
``mu`` has a closed-form compensator ``mu_n D``; the triggering one is
``theta sum_d X_d (1 - beta^(D-1-d))``.

Forecast for days ``[D0, D1)`` after the training end ``T``:
``E_n = mu_n (D1 - D0) + theta S_{n,T} (beta^(D0-T) - beta^(D1-T))`` (the
first generation of offspring of the observed events).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import ForecastModel
from .data import Counts


class SEPP(ForecastModel):
    """Grid self-exciting point process fitted by EM.

    Attributes after fit: ``mu_`` (background events/day per study cell),
    ``theta_`` (branching ratio), ``beta_``, ``omega_`` (decay per day),
    ``mean_delay_days_``, ``n_iter_``, ``loglik_``, ``converged_``.
    """

    name = "sepp"
    theta_: float  # set by fit (declared here for the warm start's getattr)
    beta_: float

    def __init__(
        self,
        window_days: int | None = None,
        max_lag_days: int = 90,
        max_iter: int = 300,
        tol: float = 1e-4,
        theta0: float = 0.2,
        beta0: float = 0.7,
        warm_start: bool = True,
    ):
        self.window_days = window_days
        self.max_lag_days = max_lag_days
        self.max_iter = max_iter
        self.tol = tol
        self.theta0 = theta0
        self.beta0 = beta0
        self.warm_start = warm_start

    def _fit(self, c: Counts, T: int) -> None:
        D0 = 0 if self.window_days is None else max(0, T - self.window_days)
        X = c.days_before(T)[:, D0:T].tocsr()
        X.sum_duplicates()
        X.sort_indices()
        D = X.shape[1]
        cell = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
        day = X.indices.astype(np.int64)
        x = X.data.astype(np.float64)
        # Parent/child pairs among non-empty cell-days of the same cell, lag 1..max_lag,
        # walked offset by offset at every iteration (never listed: see module doc).
        pairs = _LagPairs(cell, day, self.max_lag_days)
        theta, beta = self.theta0, self.beta0
        if self.warm_start and 0 < getattr(self, "theta_", 0) < 1:
            theta, beta = self.theta_, self.beta_
        tot_cell = np.asarray(X.sum(axis=1)).ravel()
        mu = tot_cell / D * (1 - theta) + 1e-12
        total = x.sum()
        age_left = (D - 1 - day).astype(np.float64)
        ages = np.arange(self.max_lag_days + 1, dtype=np.float64)
        n_iter, converged, ll = 0, False, np.nan
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - read after the loop (iterations run)
            S, U = pairs.lag_sums(beta**ages, x)
            lam = mu[cell] + theta * (1 - beta) * S
            bg = x * mu[cell] / lam
            trig_total = total - bg.sum()
            mu_new = np.bincount(cell, weights=bg, minlength=len(mu)) / D + 1e-12
            denom = float(x @ (1.0 - beta**age_left))
            theta_new = min(max(trig_total / denom if denom > 0 else 0.0, 0.0), 0.999)
            lag_sum = float((x / lam * theta * (1 - beta) * U).sum())
            m = lag_sum / trig_total if trig_total > 1e-12 else 0.0
            beta_new = min(max(m / (1 + m), 1e-6), 0.999)
            ll = float((x * np.log(lam)).sum() - mu.sum() * D - theta * denom)
            change = max(abs(theta_new - theta), abs(beta_new - beta))
            mu, theta, beta = mu_new, theta_new, beta_new
            if change < self.tol:
                converged = True
                break
        # S at the forecast origin: sum over each cell's events of beta^(T-1-d) X.
        w_end = beta ** (D - 1 - day).astype(np.float64) * x
        self.mu_ = mu
        self.S_end_ = np.bincount(cell, weights=w_end, minlength=len(mu))
        self.theta_, self.beta_ = float(theta), float(beta)
        self.omega_ = float(-np.log(beta))
        self.mean_delay_days_ = float(1.0 / (1.0 - beta))
        self.n_iter_, self.converged_, self.loglik_ = n_iter, converged, ll
        self.n_pairs_ = pairs.count()
        self.T_ = T

    def _daily_rate(self) -> np.ndarray:
        return self._expected(self.T_, self.T_ + 1.0)

    def _expected(self, day0: float, day1: float) -> np.ndarray:
        b = self.beta_
        k0, k1 = max(day0 - self.T_, 0.0), max(day1 - self.T_, 0.0)
        return self.mu_ * (day1 - day0) + self.theta_ * self.S_end_ * (b**k0 - b**k1)


class _LagPairs:
    """The (child, parent, lag) pairs of entries of the same cell with ``1 <= lag <= max_lag``,
    offset by offset, without listing them.

    Entries are sorted by (cell, day). Offset ``o`` pairs entry ``i`` with parent ``i - o``;
    entry ``i`` has a pair at every offset ``1 .. r_i`` and none beyond, where its *reach*
    ``r_i`` counts the earlier entries of its cell within ``max_lag`` days (one
    ``searchsorted``). With the entries ordered by reach, largest first, the children at
    offset ``o`` are a prefix of that order. Memory: two arrays of the entries' length,
    never one of the pairs' (a busy cell has ~90 pairs per cell-day).
    """

    def __init__(self, cell: np.ndarray, day: np.ndarray, max_lag: int):
        self.day = day
        key = cell.astype(np.int64) * (int(day.max(initial=0)) + max_lag + 2) + day  # sorted, like (cell, day)
        reach = np.arange(len(key)) - np.searchsorted(key, key - max_lag, side="left")
        self._order = np.argsort(-reach, kind="stable")
        # children at offset o: the first _n[o] entries of _order (those with reach >= o)
        self._n = np.searchsorted(-reach[self._order], -np.arange(int(reach.max(initial=0)) + 1), side="right")

    def offsets(self):
        """``(o, child, lag)`` for every offset ``o = 1, 2, ...`` that has a pair."""
        for o in range(1, len(self._n)):
            i = self._order[: self._n[o]]
            yield o, i, self.day[i] - self.day[i - o]

    def lag_sums(self, beta_pow: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``S_i = sum_pairs beta^(l-1) x_parent`` and ``U_i = sum_pairs (l-1) beta^(l-1) x_parent``
        per entry (``beta_pow[a] = beta^a``), added offset by offset: each child has one
        parent per offset, so the in-place adds are exact and in ``bincount``'s order."""
        S, U = np.zeros(len(x)), np.zeros(len(x))
        for o, i, lag in self.offsets():
            lm1 = lag - 1
            g = beta_pow[lm1] * x[i - o]
            S[i] += g
            U[i] += g * lm1.astype(np.float64)
        return S, U

    def count(self) -> int:
        return int(self._n[1:].sum())


def simulate_grid_hawkes(
    mu: np.ndarray, theta: float, beta: float, n_days: int, seed: int | np.random.Generator | None = 0
) -> sp.csr_matrix:
    """Draw a ``cells x n_days`` count matrix from the day-binned SEPP above."""
    rng = np.random.default_rng(seed)
    mu = np.asarray(mu, dtype=np.float64)
    X = np.zeros((len(mu), n_days))
    S = np.zeros(len(mu))
    for d in range(n_days):
        X[:, d] = rng.poisson(mu + theta * (1 - beta) * S)
        S = X[:, d] + beta * S
    return sp.csr_matrix(X)
