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
any mean delay up to ~ 10 days). They are summed without listing the pairs
(:class:`_LagPairs`): most cells in cache-sized blocks of entries sorted by
(cell, day), where each offset ``o`` (parent ``i - o``) is one contiguous slice;
the busiest cells as rows of days, one shifted add per lag. O(pairs) work in
a few cheap vector operations per pair, memory O(cell-days), not O(pairs) — a
busy cell with an event every day has 90 pairs per day, and listing them all
took 12 GB on a 10 M-incident store. Each entry adds its own pairs' terms
nearest parent first, the order a ``bincount`` over the listed pairs adds them
(plus some ``+0.0``), so the sums are the same to the bit.
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
        pairs = _LagPairs(cell, day, self.max_lag_days, D)
        theta, beta = self.theta0, self.beta0
        if self.warm_start and 0 < getattr(self, "theta_", 0) < 1:
            theta, beta = self.theta_, self.beta_
        tot_cell = np.asarray(X.sum(axis=1)).ravel()
        mu = tot_cell / D * (1 - theta) + 1e-12
        total = x.sum()
        # beta^(days left) by a table of beta^0 .. beta^(D-1): the same power of the same
        # numbers, but D of them instead of one per entry (numpy's pow costs ~0.1-0.4 us each)
        age_left = D - 1 - day
        days = np.arange(D, dtype=np.float64)
        ages = np.arange(self.max_lag_days + 1, dtype=np.float64)
        n_iter, converged, ll = 0, False, np.nan
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - read after the loop (iterations run)
            S, U = pairs.lag_sums(beta**ages, x)
            mu_c = mu[cell]
            lam = mu_c + theta * (1 - beta) * S
            bg = x * mu_c / lam
            trig_total = total - bg.sum()
            mu_new = np.bincount(cell, weights=bg, minlength=len(mu)) / D + 1e-12
            denom = float(x @ (1.0 - (beta**days)[age_left]))
            theta_new = min(max(trig_total / denom if denom > 0 else 0.0, 0.0), 0.999)
            lag_sum = float((x / lam * theta * (1 - beta) * U).sum())
            m = lag_sum / trig_total if trig_total > 1e-12 else 0.0
            beta_new = min(max(m / (1 + m), 1e-6), 0.999)
            change = max(abs(theta_new - theta), abs(beta_new - beta))
            converged = change < self.tol
            if converged or n_iter == self.max_iter:  # the last iteration's log-likelihood is kept
                ll = float((x * np.log(lam)).sum() - mu.sum() * D - theta * denom)
            mu, theta, beta = mu_new, theta_new, beta_new
            if converged:
                break
        # S at the forecast origin: sum over each cell's events of beta^(T-1-d) X.
        w_end = (beta**days)[age_left] * x
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
    summed without listing them.

    Entries are sorted by (cell, day); offset ``o`` pairs entry ``i`` with parent ``i - o``,
    and entry ``i`` has a pair at every offset ``1 .. r_i``, its *reach* ``r_i`` the number of
    earlier entries of its cell within ``max_lag`` days (one ``searchsorted``). Every entry
    adds exactly its own pairs' terms ``beta^(l-1) x_parent``, nearest parent first (the
    order a ``bincount`` over the listed pairs adds them, offset 1, 2, ...), plus perhaps
    some ``+0.0``, which changes no sum: the sums are the same to the bit. Two ways:

    * **sparse cells**, most of them: a copy of their entries with whole cells reordered
      by their largest reach (each cell's entries together and in day order, so ``i - o``
      is still the parent), cut into blocks of :data:`BLOCK` entries; in a block every
      offset up to the block's largest reach is one contiguous slice. A pair that crosses
      a cell or lies beyond ``max_lag`` looks up a zero weight.
    * **busy cells**, whose pairs cost more than a full row of days walked lag by lag
      (:data:`DENSE_COST`; hot spots with an event most days, up to 90 pairs per cell-day):
      rows of days, a few at a time, each lag ``l`` one scaled, shifted add of the rows
      (empty days add ``+0.0``), read at the entries. No gather per pair: ~5x cheaper per
      cell-day and lag than the sparse way per pair.

    Memory: a few arrays of the entries' length and a block's buffers, never one of the
    pairs' (235 M at 10 M incidents: 12 GB when listed). Blocks of both kinds fit a core's
    L2 cache.
    """

    def __init__(self, cell: np.ndarray, day: np.ndarray, max_lag: int, n_days: int | None = None):
        self.max_lag = L = max_lag
        n = len(cell)
        D = int(day.max(initial=-1)) + 1 if n_days is None else n_days
        self.n_days = D
        span = D + L + 2  # a cell's key range, so that cells are more than max_lag apart
        key = cell.astype(np.int64) * span + day  # sorted, like (cell, day)
        reach = np.arange(n) - np.searchsorted(key, key - L, side="left")
        self._count = int(reach.sum())
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if n else np.zeros(0, np.int64)
        lens = np.diff(np.r_[starts, n])
        pairs = np.add.reduceat(reach, starts) if n else np.zeros(0, np.int64)
        top = np.maximum.reduceat(reach, starts) if n else np.zeros(0, np.int64)
        busy = pairs > DENSE_COST * D * min(L, D)
        # busy cells: row r of the dense matrix; entry -> flat position r * D + day
        in_busy = np.repeat(busy, lens)
        self._dense = np.flatnonzero(in_busy)
        self._n_rows = int(busy.sum())
        self._dense_pos = np.repeat(np.arange(self._n_rows, dtype=np.int64), lens[busy]) * D + day[self._dense]
        # sparse cells by largest reach, largest first (stable: ties keep cell order)
        sparse = np.flatnonzero(~busy)
        rank = sparse[np.argsort(-top[sparse], kind="stable")]
        # perm[k]: the original index of the k-th reordered entry
        first = np.repeat(starts[rank] - np.r_[0, np.cumsum(lens[rank])[:-1]], lens[rank])
        self._perm = first + np.arange(len(first))
        blk = np.repeat(np.arange(len(rank), dtype=np.int64), lens[rank])
        k = blk * span + day[self._perm]
        self._key = k.astype(np.int32) if len(k) == 0 or k[-1] < 2**31 - 1 else k
        # each block's largest reach (blocks run from the largest reach down)
        rp = reach[self._perm]
        self._block_reach = [int(r) for r in np.maximum.reduceat(rp, np.arange(0, len(rp), BLOCK))] if len(rp) else []

    def lag_sums(self, beta_pow: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``S_i = sum_pairs beta^(l-1) x_parent`` and ``U_i = sum_pairs (l-1) beta^(l-1) x_parent``
        per entry (``beta_pow[a] = beta^a``), nearest parent first: the same additions in the
        same order as a ``bincount`` over the listed pairs."""
        S, U = np.empty(len(x)), np.empty(len(x))
        S[self._perm], U[self._perm] = self._sparse_sums(beta_pow, x[self._perm])
        S[self._dense], U[self._dense] = self._dense_sums(beta_pow, x[self._dense])
        return S, U

    def _sparse_sums(self, beta_pow: np.ndarray, xp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        L, n, key = self.max_lag, len(xp), self._key
        # by key difference d (= the lag within a cell): weight beta^(d-1) and d-1 for 1 <= d <= L,
        # zero for d = L + 1, which stands for every pair beyond the lag or across cells
        w_of = np.zeros(L + 2)
        w_of[1 : L + 1] = beta_pow[:L]
        lm1_of = np.zeros(L + 2)
        lm1_of[1 : L + 1] = np.arange(L, dtype=np.float64)
        S, U = np.zeros(n), np.zeros(n)
        d = np.empty(BLOCK, dtype=key.dtype)
        g, h = np.empty(BLOCK), np.empty(BLOCK)
        for b, reach in enumerate(self._block_reach):
            a0, a1 = b * BLOCK, min((b + 1) * BLOCK, n)
            for o in range(1, reach + 1):
                c0 = max(a0, o)
                m = a1 - c0
                if m <= 0:
                    break
                dm, gm, hm = d[:m], g[:m], h[:m]
                np.subtract(key[c0:a1], key[c0 - o : a1 - o], out=dm)
                # mode="clip" maps every d > L + 1 to L + 1 (and is 3x faster than the default "raise")
                np.take(w_of, dm, out=gm, mode="clip")
                np.multiply(gm, xp[c0 - o : a1 - o], out=gm)
                np.add(S[c0:a1], gm, out=S[c0:a1])
                np.take(lm1_of, dm, out=hm, mode="clip")
                np.multiply(gm, hm, out=hm)
                np.add(U[c0:a1], hm, out=U[c0:a1])
        return S, U

    def _dense_sums(self, beta_pow: np.ndarray, xd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        D, k, pos = self.n_days, self._n_rows, self._dense_pos
        S, U = np.empty(len(xd)), np.empty(len(xd))
        rows = max(1, BLOCK // D)  # a block of rows at a time: its four arrays stay in the cache
        X, Sb, Ub, g = np.empty((rows, D)), np.empty((rows, D)), np.empty((rows, D)), np.empty((rows, D))
        for r0 in range(0, k, rows):
            r1 = min(r0 + rows, k)
            e0, e1 = np.searchsorted(pos, [r0 * D, r1 * D])  # this block's entries
            p = pos[e0:e1] - r0 * D
            xb, sb, ub = X[: r1 - r0], Sb[: r1 - r0], Ub[: r1 - r0]
            for a in (xb, sb, ub):
                a.fill(0.0)
            xb.ravel()[p] = xd[e0:e1]
            for lag in range(1, min(self.max_lag, D - 1) + 1):
                gb = g[: r1 - r0, : D - lag]
                np.multiply(beta_pow[lag - 1], xb[:, : D - lag], out=gb)
                np.add(sb[:, lag:], gb, out=sb[:, lag:])
                np.multiply(gb, float(lag - 1), out=gb)
                np.add(ub[:, lag:], gb, out=ub[:, lag:])
            S[e0:e1], U[e0:e1] = sb.ravel()[p], ub.ravel()[p]
        return S, U

    def count(self) -> int:
        return self._count


#: Entries (or cell-days) per block of the lag sums: a block's few arrays of 8 bytes an entry
#: stay in a core's L2 cache.
BLOCK = 16_384
#: A cell's pairs walked one by one cost about this many times a cell-day of a dense row
#: walked lag by lag (measured): cells with more pairs than this times days x max_lag go dense.
DENSE_COST = 0.2


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
