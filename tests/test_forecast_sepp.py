"""SEPP recovers the parameters of a synthetic self-exciting process (issue 5, acceptance 3).

The process is simulated from the model itself (day-binned grid Hawkes,
:func:`rtcc_geo.forecast.sepp.simulate_grid_hawkes`) with known background
rates and triggering; the EM fit must find them again. Tolerances (stated in
docs/forecast.md): branching ratio theta within 0.05, decay beta within
0.04 (omega within 20 %), background rates within 10 % mean relative error.
They are ~4 standard errors at this sample size (checked over seeds).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rtcc_geo.forecast.data import Counts
from rtcc_geo.forecast.sepp import SEPP, simulate_grid_hawkes

CELLS = np.arange(200, dtype=np.int64) + (1 << 52)


@pytest.mark.parametrize("busy", ["by cost", "no cell"])
@pytest.mark.parametrize("theta,beta,seed", [(0.5, 0.75, 1), (0.3, 0.85, 2)])
def test_sepp_recovers_synthetic_parameters(theta, beta, seed, busy, monkeypatch):
    """By cost most cells here (144-178 of 200) take the day recursion; also with every
    cell walked by its pairs."""
    if busy == "no cell":
        _costs(monkeypatch, NONE_BUSY)
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.02, 0.15, len(CELLS))
    X = simulate_grid_hawkes(mu, theta, beta, 1500, seed=seed + 100)
    c = Counts.from_daily(CELLS, X)
    m = SEPP(max_lag_days=100, tol=1e-6, max_iter=3000).fit(c, until=c.day_start(1500))
    assert m.converged_
    assert abs(m.theta_ - theta) < 0.05
    assert abs(m.beta_ - beta) < 0.04
    assert abs(m.omega_ + np.log(beta)) / -np.log(beta) < 0.2
    assert np.abs(m.mu_ - mu).mean() / mu.mean() < 0.10
    assert m.mean_delay_days_ == pytest.approx(1 / (1 - m.beta_))


def test_sepp_finds_no_triggering_in_a_poisson_process():
    rng = np.random.default_rng(5)
    mu = rng.uniform(0.05, 0.5, len(CELLS))
    X = simulate_grid_hawkes(mu, 0.0, 0.5, 800, seed=6)
    c = Counts.from_daily(CELLS, X)
    m = SEPP(tol=1e-6).fit(c, until=c.day_start(800))
    assert m.theta_ < 0.03
    assert np.abs(m.mu_ - mu).mean() / mu.mean() < 0.08


def test_sepp_forecast_formula_and_no_leak():
    # One cell, events on days 0 and 8 of 10; forecast for day 10 by hand.
    X = np.zeros((1, 12))
    X[0, [0, 8]] = 1
    c = Counts.from_daily(CELLS[:1], X)
    m = SEPP().fit(c, until=c.day_start(10))
    b, th, mu = m.beta_, m.theta_, m.mu_[0]
    S_end = b**9 + b**1  # sum beta^(T-1-d) over the events
    expect_day = mu + th * S_end * (1 - b)  # integral of the kernel over day 10
    got = m.predict(None, c.day_start(10), c.day_start(11))
    # one day is not a whole week: scaled by the (flat, all-noon) hour-of-week share x 7
    assert m._expected(10, 11)[0] == pytest.approx(expect_day)
    assert got.sum() > 0
    X2 = X.copy()
    X2[0, 10:] = 5  # events after `until` must not matter
    m2 = SEPP().fit(Counts.from_daily(CELLS[:1], X2), until=c.day_start(10))
    assert m2._expected(10, 11)[0] == pytest.approx(expect_day)


def _listed_lag_sums(cell, day, max_lag, beta_pow, x):
    """The pairs listed once and summed by ``bincount`` (how the fit did it before)."""
    ch, pa = [], []
    for o in range(1, len(cell)):
        i = np.arange(o, len(cell))
        ok = (cell[i] == cell[i - o]) & (day[i] - day[i - o] <= max_lag)
        if not ok.any():
            break
        ch.append(i[ok])
        pa.append(i[ok] - o)
    child, parent = np.concatenate(ch), np.concatenate(pa)
    lag = day[child] - day[parent]
    g = beta_pow[lag - 1] * x[parent]
    S = np.bincount(child, weights=g, minlength=len(x))
    U = np.bincount(child, weights=g * (lag - 1).astype(np.float64), minlength=len(x))
    return S, U, len(child)


def _in_entry_order(p, beta_pow, x):
    """``p.lag_sums`` of entries in (cell, day) order, given and returned in that order."""
    S, U = np.empty(len(x)), np.empty(len(x))
    S[p.order], U[p.order] = p.lag_sums(beta_pow, x[p.order])
    return S, U


def _cells_days(X):
    X = sp.csr_matrix(X)
    X.sort_indices()
    cell = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    return cell, X.indices.astype(np.int64), X.data.astype(np.float64)


#: (PAIR_COST, DAY_COST, ENTRY_COST) that make every cell busy, none, or the defaults.
ALL_BUSY, NONE_BUSY = (1.0, 0.0, -1.0), (0.0, 1.0, 1.0)


def _costs(monkeypatch, costs):
    from rtcc_geo.forecast import sepp

    if costs is not None:
        for name, v in zip(("PAIR_COST", "DAY_COST", "ENTRY_COST"), costs):
            monkeypatch.setattr(sepp, name, v)


@pytest.mark.parametrize("max_lag", [1, 7, 40, 500])
@pytest.mark.parametrize(
    ("block", "chunk", "costs"),
    [(16_384, 1 << 16, None), (7, 5, None), (64, 64, ALL_BUSY), (1000, 3, ALL_BUSY), (64, 64, NONE_BUSY)],
)
def test_lag_sums_equal_the_listed_pairs(max_lag, block, chunk, costs, monkeypatch):
    """Sparse blocks (one and many, cut anywhere in a cell) to the bit; the busy cells' day
    recursion (none, some, every cell; chunks cut anywhere) to 1e-13 of the cell's largest
    sum; a lag longer than the days: the same sums as the listed pairs."""
    from rtcc_geo.forecast import sepp
    from rtcc_geo.forecast.sepp import _LagPairs

    monkeypatch.setattr(sepp, "BLOCK", block)
    monkeypatch.setattr(sepp, "CHUNK", chunk)
    _costs(monkeypatch, costs)
    rng = np.random.default_rng(3)
    mu = np.r_[rng.uniform(0.01, 0.9, 40), 0.0, 2.0]  # quiet to every day busy, one cell empty
    X = simulate_grid_hawkes(mu, 0.4, 0.8, 300, seed=4)[rng.permutation(len(mu))].tocsr()
    cell, day, x = _cells_days(X)
    beta_pow = 0.83 ** np.arange(max_lag + 1, dtype=np.float64)
    S0, U0, n0 = _listed_lag_sums(cell, day, max_lag, beta_pow, x)
    p = _LagPairs(cell, day, max_lag, X.shape[1])
    S, U = _in_entry_order(p, beta_pow, x)
    assert n0 > min(max_lag, 5) * len(x) / 2 and p.count() == n0
    busy = np.zeros(len(x), bool)
    busy[p.order[: p._n_dense]] = True
    # sparse: the same additions in the same order
    assert np.array_equal(S[~busy], S0[~busy]) and np.array_equal(U[~busy], U0[~busy])
    # busy: a few ulps of the cell's largest sums (a parent leaving the window takes out
    # beta^L x where the decays left x beta ... beta), never negative
    new_cell = np.r_[True, cell[1:] != cell[:-1]]
    run, starts = np.cumsum(new_cell) - 1, np.flatnonzero(new_cell)
    scale = np.maximum(np.maximum.reduceat(S0, starts), np.maximum.reduceat(U0, starts))[run]
    for got, want in ((S, S0), (U, U0)):
        assert np.all(np.abs(got - want) <= 1e-13 * scale) and got.min() >= 0.0
    if costs == ALL_BUSY:
        assert busy.all()
    if costs == NONE_BUSY:
        assert not busy.any()
    if costs is None and max_lag >= 40:
        assert 0 < busy.sum() < len(x)  # both ways at once


@pytest.mark.parametrize("costs", [ALL_BUSY, NONE_BUSY])
def test_lag_sums_by_hand(costs, monkeypatch):
    """One cell, events on days 0, 1, 3, 5 (1, 2, 1 and 3 of them), L = 3, beta = 1/2:
    day 1 has parent day 0 (lag 1): S = 1, U = 0; day 3 has days 1 (lag 2) and 0 (lag 3):
    S = 2/2 + 1/4 = 1.25, U = 1 * 2/2 + 2 * 1/4 = 1.5; day 5 has day 3 (lag 2) only (day 1 is
    4 days back): S = 1/2, U = 1/2. A second cell, days 2 and 6 (lag 4 > L): no parent."""
    from rtcc_geo.forecast.sepp import _LagPairs

    _costs(monkeypatch, costs)
    X = np.zeros((2, 8))
    X[0, [0, 1, 3, 5]] = [1, 2, 1, 3]
    X[1, [2, 6]] = [4, 1]
    cell, day, x = _cells_days(X)
    p = _LagPairs(cell, day, 3, 8)
    S, U = _in_entry_order(p, 0.5 ** np.arange(4.0), x)
    assert np.array_equal(S, [0.0, 1.0, 1.25, 0.5, 0.0, 0.0])
    assert np.array_equal(U, [0.0, 0.0, 1.5, 0.5, 0.0, 0.0])
    assert p.count() == 1 + 2 + 1


def _listed_pairs_fit(X, max_lag=90, max_iter=300, tol=1e-4, theta=0.2, beta=0.7):
    """The EM as it was with the listed pairs (commit 9c4dc68): the reference to the bit."""
    X = X.tocsr()
    X.sort_indices()
    D = X.shape[1]
    cell = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    day, x = X.indices.astype(np.int64), X.data.astype(np.float64)
    ages = np.arange(max_lag + 1, dtype=np.float64)
    mu = np.asarray(X.sum(axis=1)).ravel() / D * (1 - theta) + 1e-12
    total, age_left = x.sum(), (D - 1 - day).astype(np.float64)
    n_iter, ll = 0, np.nan
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        S, U, _ = _listed_lag_sums(cell, day, max_lag, beta**ages, x)
        lam = mu[cell] + theta * (1 - beta) * S
        bg = x * mu[cell] / lam
        trig_total = total - bg.sum()
        mu_new = np.bincount(cell, weights=bg, minlength=len(mu)) / D + 1e-12
        denom = float(x @ (1.0 - beta**age_left))
        theta_new = min(max(trig_total / denom if denom > 0 else 0.0, 0.0), 0.999)
        m = float((x / lam * theta * (1 - beta) * U).sum()) / trig_total if trig_total > 1e-12 else 0.0
        beta_new = min(max(m / (1 + m), 1e-6), 0.999)
        ll = float((x * np.log(lam)).sum() - mu.sum() * D - theta * denom)
        change = max(abs(theta_new - theta), abs(beta_new - beta))
        mu, theta, beta = mu_new, theta_new, beta_new
        if change < tol:
            break
    S_end = np.bincount(cell, weights=beta ** (D - 1 - day).astype(np.float64) * x, minlength=len(mu))
    return mu, S_end, theta, beta, ll, n_iter


@pytest.mark.parametrize("costs", [None, ALL_BUSY, NONE_BUSY])
@pytest.mark.parametrize("max_iter", [300, 3])
def test_sepp_fit_equals_the_listed_pairs_em(max_iter, costs, monkeypatch):
    """The whole fit (lag sums by the day recursion, by the pairs, or both; the E-step's sums
    a chunk at a time; the log-likelihood of the last iteration) against the listed pairs' EM:
    the same iterations, and every number to 1e-12."""
    _costs(monkeypatch, costs)
    rng = np.random.default_rng(7)
    mu = np.r_[rng.uniform(0.005, 0.6, 60), 1.5, 1.5]  # quiet cells to every-day busy ones
    X = simulate_grid_hawkes(mu, 0.35, 0.8, 700, seed=8)
    c = Counts.from_daily(CELLS[: len(mu)], X)
    m = SEPP(max_iter=max_iter, warm_start=False).fit(c, until=c.day_start(700))
    assert len(m.mu_) == len(mu) and m.n_pairs_ > 0
    mu0, S0, theta0, beta0, ll0, it0 = _listed_pairs_fit(X, max_iter=max_iter)
    assert (it0 < 300) if max_iter == 300 else (it0 == 3 and not m.converged_)
    assert m.n_iter_ == it0
    np.testing.assert_allclose(m.mu_, mu0, rtol=1e-12, atol=0)
    np.testing.assert_allclose(m.S_end_, S0, rtol=1e-12, atol=0)
    np.testing.assert_allclose([m.theta_, m.beta_, m.loglik_], [theta0, beta0, ll0], rtol=1e-12, atol=0)


def test_sepp_fit_memory_grows_with_cell_days_not_with_lag_pairs():
    """Busy cells (an event every day) have ~90 lag pairs per cell-day; listing them cost
    12 GB on a 10 M-incident store. The fit's peak (numpy's allocations, traced) must grow
    far less than the listed pairs' index arrays would."""
    import tracemalloc

    peaks, pairs = [], []
    for days in (300, 1200):
        c = Counts.from_daily(CELLS[:20], np.ones((20, days)))
        tracemalloc.start()
        m = SEPP(max_iter=2, warm_start=False).fit(c, until=c.day_start(days))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        pairs.append(m.n_pairs_)
    grow_listed = 3 * 8 * (pairs[1] - pairs[0])  # child, parent, lag as int64: the rows control
    assert pairs[1] > 80 * 20 * 1100  # ~90 pairs a cell-day: the control is real
    assert peaks[1] - peaks[0] < 0.1 * grow_listed, (peaks, pairs)
