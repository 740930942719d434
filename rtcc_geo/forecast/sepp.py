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

The E-step needs the lag sums ``S = sum_{l=1..L} beta^(l-1) X_{d-l}`` and
``U = sum_{l=1..L} (l-1) beta^(l-1) X_{d-l}`` only at the cell-days that have events
(``L = max_lag_days``, 90: the kernel tail beyond it is ``beta^90``, under 1e-4 for
any mean delay up to ~ 10 days), and of them only, with ``w = X / lambda``, the
per-cell ``sum_d w`` (the background is ``B = mu w``) and ``sum w U`` (the triggered
delays). :class:`_LagPairs` gives them without listing the (child, parent) pairs
of non-empty days of the same cell (a busy cell has up to 90 a day; listing them
took 12 GB on a 10 M-incident store):

* busy cells (97 % of the non-empty cell-days at the density of 50 M incidents
  over 10 years, 70 % at 10 M) by the geometric kernel's recursion over days,
  ``S_d = beta S_{d-1} + X_{d-1} - beta^L X_{d-1-L}`` and
  ``U_d = beta (U_{d-1} + S_{d-1}) - L beta^L X_{d-1-L}`` (the parent leaving the
  window taken out), one step a day for all of them at once: O(1) per cell-day,
  not O(L); equal to the pair sums to a few ulps of the cell's largest sum;
* the others by their pairs, walked offset by offset in cache-sized blocks
  (O(pairs), fewer than the days of a recursion), to the bit.

The E-step reduces the sums a chunk of entries at a time, so an iteration's
memory is the entries' counts, cells and a chunk's buffers: O(non-empty cell-days),
bounded by cells x days, never O(pairs) or O(incidents). Sums of products are
numpy's, not BLAS's (its threads spin on a shared 2-core box: a dot cost 15x more).
``mu`` has a closed-form compensator ``mu_n D``; the triggering one is
``theta sum_d X_d (1 - beta^(D-1-d))``.

Forecast for days ``[D0, D1)`` after the training end ``T``:
``E_n = mu_n (D1 - D0) + theta S_{n,T} (beta^(D0-T) - beta^(D1-T))`` (the
first generation of offspring of the observed events).
"""

from __future__ import annotations

from collections.abc import Iterator

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
        X = c.daily[:, D0:T]  # one copy, already by (cell, day): days_before's CSC and a CSR were two
        D, n_cells = X.shape[1], X.shape[0]
        X.sum_duplicates()
        X.sort_indices()
        # Parent/child pairs among non-empty cell-days of the same cell, lag 1..max_lag, summed
        # by a recursion over days (busy cells) or walked offset by offset (the others) at
        # every iteration, never listed (see module doc); the entries in the sums' order.
        cell = np.repeat(np.arange(n_cells, dtype=np.int32 if n_cells < 2**31 else np.int64), np.diff(X.indptr))
        # events per cell, and per day left to the window's end (D - 1 - d) for sum_d X_d beta^(D-1-d)
        # (bincounts over the entries: no copy of the matrix)
        tot_cell = np.bincount(cell, weights=X.data, minlength=n_cells)
        x_left = np.bincount(X.indices, weights=X.data, minlength=D)[::-1].copy()
        pairs = _LagPairs(cell, X.indices, self.max_lag_days, D)
        del cell
        x = X.data[pairs.order].astype(np.float64, copy=False)
        del X
        theta, beta = self.theta0, self.beta0
        if self.warm_start and 0 < getattr(self, "theta_", 0) < 1:
            theta, beta = self.theta_, self.beta_
        mu = tot_cell / D * (1 - theta) + 1e-12
        total = x.sum()
        days = np.arange(D, dtype=np.float64)
        ages = np.arange(self.max_lag_days + 1, dtype=np.float64)
        n_iter, converged, last = 0, False, None
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - read after the loop (iterations run)
            k = theta * (1 - beta)
            # w = X / lambda per entry: the background is B = mu w, so sum_d B = mu_n sum_d w,
            # and the triggered events' delays l - 1 sum to k sum w U
            A, wU, _ = pairs.estep(x, mu, k, beta**ages)
            bg_cell = mu * A
            trig_total = total - bg_cell.sum()
            mu_new = bg_cell / D + 1e-12
            denom = total - float(x_left @ beta**days)
            theta_new = min(max(trig_total / denom if denom > 0 else 0.0, 0.0), 0.999)
            lag_sum = k * wU
            m = lag_sum / trig_total if trig_total > 1e-12 else 0.0
            beta_new = min(max(m / (1 + m), 1e-6), 0.999)
            change = max(abs(theta_new - theta), abs(beta_new - beta))
            converged = change < self.tol
            last = (mu, theta, beta, denom)
            mu, theta, beta = mu_new, theta_new, beta_new
            if converged:
                break
        ll = np.nan
        if last is not None:  # the last iteration's log-likelihood, by one more pass over its lambda
            mu_l, theta_l, beta_l, denom_l = last
            xl = pairs.estep(x, mu_l, theta_l * (1 - beta_l), beta_l**ages, log=True)[2]
            ll = float(xl - mu_l.sum() * D - theta_l * denom_l)
        self.mu_ = mu
        # S at the forecast origin: sum over each cell's events of beta^(T-1-d) X (a product
        # with the whole matrix, zero weight outside the window: no copy of it)
        w_end = np.zeros(c.n_days)
        w_end[D0:T] = beta ** days[::-1]
        self.S_end_ = np.asarray(c.daily_csc @ w_end).ravel()
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
    """The lag sums of every entry (non-empty cell-day) over its parents, the earlier entries
    of the same cell with ``1 <= lag <= max_lag``, and the E-step's sums over them, without
    listing those (child, parent) pairs.

    Entries come sorted by (cell, day); offset ``o`` pairs entry ``i`` with parent ``i - o``,
    and entry ``i`` has a pair at every offset ``1 .. r_i``, its *reach* ``r_i`` the number of
    earlier entries of its cell within ``max_lag`` days (one ``searchsorted``). Two ways:

    * **busy cells** (hot spots with an event most days, up to ``max_lag`` pairs per
      cell-day; :func:`_busy`): the geometric kernel makes the sums a recursion over days,

      .. math::

          S_d = \\beta S_{d-1} + X_{d-1} - \\beta^L X_{d-1-L}, \\qquad
          U_d = \\beta\\,(U_{d-1} + S_{d-1}) - L \\beta^L X_{d-1-L}

      (``S_0 = U_0 = 0``, ``X`` zero before day 0): a first-order filter, with the parent
      that leaves the window taken out. One step a day for all busy cells at once: three
      vector operations of the busy cells' length (the decay) and, gathered by cell, the
      entries of days ``d - 1`` (in), ``d - 1 - L`` (out) and ``d`` (read). O(1) per
      cell-day whatever the lag; memory two vectors of the busy cells. Rounding differs
      from the pair sums by a few ulps of the cell's largest sum in the window (a parent
      that leaves takes out ``beta^L x`` where the decays left ``x beta ... beta``), so a
      cell whose parents all left may read ``1e-17`` instead of 0: clipped at 0.
    * **sparse cells**, most cells at a normal density: the pairs themselves, cheaper
      than a walk over every day when a cell has few. Their entries with whole cells
      reordered by their largest reach (each cell's entries together and in day order,
      so ``i - o`` is still the parent), cut into blocks of :data:`BLOCK` entries; in a
      block every offset up to the block's largest reach is one contiguous slice. A pair
      that crosses a cell or lies beyond ``max_lag`` looks up a zero weight. Each entry
      adds its pairs' terms nearest parent first, the order a ``bincount`` over the
      listed pairs adds them (plus some ``+0.0``): the same sums to the bit.

    Both give their sums a chunk of entries at a time (:meth:`chunks`), and the E-step
    (:meth:`estep`) reduces each chunk at once, so memory is a few arrays of the entries
    (their counts, their cell, the sparse ones' keys) plus a chunk's buffers: never one
    of the pairs (235 M at 10 M incidents: 12 GB when listed), nor of cells x days.
    """

    def __init__(self, cell: np.ndarray, day: np.ndarray, max_lag: int, n_days: int | None = None):
        self.max_lag = L = max_lag
        n = len(cell)
        D = int(day.max(initial=-1)) + 1 if n_days is None else n_days
        self.n_days = D
        span = D + L + 2  # a cell's key range, so that cells are more than max_lag apart
        # sorted, like (cell, day); 4 bytes an entry when the cells' keys fit
        key = cell.astype(np.int32 if n == 0 or (int(cell[-1]) + 2) * span < 2**31 else np.int64)
        np.multiply(key, span, out=key)
        np.add(key, day, out=key, casting="unsafe")
        # reach by chunks of entries: a chunk's temporaries, not three arrays of all entries
        reach = np.empty(n, np.int32)
        for a0 in range(0, n, CHUNK):
            a1 = min(a0 + CHUNK, n)
            reach[a0:a1] = np.arange(a0, a1) - np.searchsorted(key, key[a0:a1] - L, side="left")
        del key
        self._count = int(reach.sum(dtype=np.int64))
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if n else np.zeros(0, np.int64)
        lens = np.diff(np.r_[starts, n])
        pairs = np.add.reduceat(reach, starts, dtype=np.int64) if n else np.zeros(0, np.int64)
        top = np.maximum.reduceat(reach, starts) if n else np.zeros(0, np.int32)
        busy = _busy(pairs, lens, D)
        nb = int(busy.sum())
        # busy cells: their entries by (day, cell) (a stable sort on the day keeps cells in
        # order), each with its column among the busy cells; day d's are bounds[d] .. bounds[d + 1]
        # (entry positions in 4 bytes when they fit: at 50 M incidents 26 M entries, and these
        # arrays are the fit's peak memory)
        it = np.int32 if n < 2**31 else np.int64
        dense = np.flatnonzero(np.repeat(busy, lens)).astype(it)
        dd = day[dense]
        by_day = np.argsort(dd.astype(np.uint16) if D <= 2**16 else dd, kind="stable").astype(it)
        dense, dd = dense[by_day], dd[by_day]
        g_dense = np.repeat(np.arange(nb, dtype=np.int32), lens[busy])[by_day]
        del by_day
        self._bounds = np.searchsorted(dd, np.arange(D + 1))
        del dd
        # sparse cells by largest reach, largest first (stable: ties keep cell order)
        sparse = np.flatnonzero(~busy)
        rank = sparse[np.argsort(-top[sparse], kind="stable")]
        # perm[k]: the original index of the k-th reordered entry
        first = np.repeat(starts[rank] - np.r_[0, np.cumsum(lens[rank])[:-1]], lens[rank])
        perm = (first + np.arange(len(first))).astype(it)
        del first
        g_sparse = np.repeat(np.arange(nb, nb + len(rank), dtype=np.int32), lens[rank])
        k = (g_sparse.astype(np.int64) - nb) * span + day[perm]
        self._key = k.astype(np.int32) if len(k) == 0 or k[-1] < 2**31 - 1 else k
        # each block's largest reach (blocks run from the largest reach down)
        rp = reach[perm]
        self._block_reach = [int(r) for r in np.maximum.reduceat(rp, np.arange(0, len(rp), BLOCK))] if len(rp) else []
        #: The entries in the order the sums take and give them: the busy cells' by day, then
        #: the sparse cells' blocks (position ``i`` holds entry ``order[i]``).
        self.order = np.concatenate([dense, perm])
        #: The cell of each group (the busy cells, then the sparse ones by rank), and each
        #: entry's group in :attr:`order`.
        self.cells = np.concatenate([cell[starts[busy]], cell[starts[rank]]]).astype(np.intp, copy=False)
        self._group = np.concatenate([g_dense, g_sparse])
        self._n_dense, self._n_busy = len(dense), nb

    def chunks(self, beta_pow: np.ndarray, x: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``(a0, a1, S, U)``: ``S_i = sum_pairs beta^(l-1) x_parent`` and
        ``U_i = sum_pairs (l-1) beta^(l-1) x_parent`` of the entries ``a0 .. a1`` of :attr:`order`,
        chunk by chunk (``x`` in that order; ``beta_pow[a] = beta^a`` for ``a = 0 .. max_lag``).
        ``S`` and ``U`` are buffers reused by the next chunk."""
        nd = self._n_dense
        yield from self._busy_chunks(beta_pow, x[:nd])
        for a0, a1, S, U in self._sparse_chunks(beta_pow, x[nd:]):
            yield nd + a0, nd + a1, S, U

    def lag_sums(self, beta_pow: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sums of :meth:`chunks` as two arrays of all entries (in :attr:`order`)."""
        S, U = np.empty(len(x)), np.empty(len(x))
        for a0, a1, s, u in self.chunks(beta_pow, x):
            S[a0:a1], U[a0:a1] = s, u
        return S, U

    def estep(
        self, x: np.ndarray, mu: np.ndarray, k: float, beta_pow: np.ndarray, log: bool = False
    ) -> tuple[np.ndarray, float, float]:
        """With ``lambda_i = mu_cell + k S_i`` and ``w_i = x_i / lambda_i``: per cell ``sum w``
        (its background is ``mu`` times it), ``sum w U`` and, if ``log``, ``sum x log lambda``."""
        nd, nb = self._n_dense, self._n_busy
        mu_g = mu[self.cells]
        A = np.zeros(len(self.cells))
        wU = xl = 0.0
        for a0, a1, S, U in self.chunks(beta_pow, x):
            g = self._group[a0:a1]
            # a busy chunk's groups are any busy cell; a sparse block's are a run of ranks
            g0, g1 = (0, nb) if a0 < nd else (int(g[0]), int(g[-1]) + 1)
            lam = mu_g[g]
            S *= k
            lam += S
            w = x[a0:a1] / lam
            A[g0:g1] += np.bincount(g - g0 if g0 else g, weights=w, minlength=g1 - g0)
            # products summed by numpy, not BLAS's dot: its threads spin on a busy 2-core box (~15x slower)
            wU += float(np.multiply(w, U, out=w).sum())
            if log:
                np.log(lam, out=lam)
                xl += float(np.multiply(lam, x[a0:a1], out=lam).sum())
        A_cell = np.zeros(len(mu))
        A_cell[self.cells] = A
        return A_cell, wU, xl

    def _busy_chunks(self, beta_pow: np.ndarray, xd: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        if not len(xd):
            return
        L, col, D = self.max_lag, self._group[: len(xd)], self.n_days
        beta, bL = (float(beta_pow[1]) if L >= 1 else 0.0), float(beta_pow[L])
        s, u = np.zeros(self._n_busy), np.zeros(self._n_busy)
        bounds = self._bounds.tolist()  # plain ints: the loop reads six a day
        first = next(d for d in range(D) if bounds[d + 1] > 0)  # the first day with an entry
        cap = max(CHUNK, 4 * self._n_busy, max(b - a for a, b in zip(bounds, bounds[1:])))
        Sb, Ub = np.empty(cap), np.empty(cap)
        c0 = bounds[first]
        for d in range(first, D):
            a0, a1 = bounds[d], bounds[d + 1]
            if a1 - c0 > cap:  # the buffers are full: hand them over
                yield self._clipped(c0, a0, Sb, Ub)
                c0 = a0
            if d > first:  # day d from day d - 1: U first (it needs S_{d-1}), then S
                u += s
                u *= beta
                s *= beta
                i0, i1 = bounds[d - 1], a0
                if i1 > i0:
                    s[col[i0:i1]] += xd[i0:i1]
                if d > L:
                    i0, i1 = bounds[d - 1 - L], bounds[d - L]
                    if i1 > i0:
                        c, out = col[i0:i1], bL * xd[i0:i1]
                        s[c] -= out
                        out *= L
                        u[c] -= out
            if a1 > a0:
                c = col[a0:a1]
                np.take(s, c, out=Sb[a0 - c0 : a1 - c0])
                np.take(u, c, out=Ub[a0 - c0 : a1 - c0])
            if a1 == len(xd):
                break
        yield self._clipped(c0, len(xd), Sb, Ub)

    @staticmethod
    def _clipped(a0: int, a1: int, Sb: np.ndarray, Ub: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
        # a parent that left takes out what the decays left of it to a few ulps, not exactly
        S, U = Sb[: a1 - a0], Ub[: a1 - a0]
        np.maximum(S, 0.0, out=S)
        np.maximum(U, 0.0, out=U)
        return a0, a1, S, U

    def _sparse_chunks(self, beta_pow: np.ndarray, xp: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        L, n, key = self.max_lag, len(xp), self._key
        # by key difference d (= the lag within a cell): weight beta^(d-1) and d-1 for 1 <= d <= L,
        # zero for d = L + 1, which stands for every pair beyond the lag or across cells
        w_of = np.zeros(L + 2)
        w_of[1 : L + 1] = beta_pow[:L]
        lm1_of = np.zeros(L + 2)
        lm1_of[1 : L + 1] = np.arange(L, dtype=np.float64)
        d = np.empty(BLOCK, dtype=key.dtype)
        g, h = np.empty(BLOCK), np.empty(BLOCK)
        Sb, Ub = np.empty(BLOCK), np.empty(BLOCK)
        for b, reach in enumerate(self._block_reach):
            a0, a1 = b * BLOCK, min((b + 1) * BLOCK, n)
            S, U = Sb[: a1 - a0], Ub[: a1 - a0]
            S.fill(0.0)
            U.fill(0.0)
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
                np.add(S[c0 - a0 :], gm, out=S[c0 - a0 :])
                np.take(lm1_of, dm, out=hm, mode="clip")
                np.multiply(gm, hm, out=hm)
                np.add(U[c0 - a0 :], hm, out=U[c0 - a0 :])
            yield a0, a1, S, U

    def count(self) -> int:
        return self._count


def _busy(pairs: np.ndarray, entries: np.ndarray, n_days: int) -> np.ndarray:
    """Cells whose lag sums cost less by the day recursion than by their pairs: a pair costs
    :data:`PAIR_COST`, the recursion :data:`DAY_COST` a day and :data:`ENTRY_COST` an entry."""
    return pairs * PAIR_COST > n_days * DAY_COST + entries * ENTRY_COST


#: Entries per block of the sparse lag sums: a block's few arrays of 8 bytes an entry
#: stay in a core's L2 cache.
BLOCK = 16_384
#: Entries per chunk of the busy cells' sums (at least; four per busy cell, and a whole day).
CHUNK = 1 << 16
#: Costs of the two ways, ns (fitted to both ways' times on every cell of the 10 M-incident
#: stores over 2 and 10 years, 2-core box): one pair walked in the sparse blocks, one
#: cell-day of the recursion (the decay, the day's loop), one entry of the recursion (in,
#: out and read, gathered by cell).
PAIR_COST = 5.0
DAY_COST = 2.7
ENTRY_COST = 3.7


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
