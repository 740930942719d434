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

from rtcc_geo.forecast.data import Counts
from rtcc_geo.forecast.sepp import SEPP, simulate_grid_hawkes

CELLS = np.arange(200, dtype=np.int64) + (1 << 52)


@pytest.mark.parametrize("theta,beta,seed", [(0.5, 0.75, 1), (0.3, 0.85, 2)])
def test_sepp_recovers_synthetic_parameters(theta, beta, seed):
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


@pytest.mark.parametrize("max_lag", [1, 7, 40, 500])
@pytest.mark.parametrize(("block", "dense_cost"), [(16_384, 0.3), (7, 0.3), (64, 0.0), (1000, 0.05), (64, 2.0)])
def test_lag_sums_equal_the_listed_pairs_bit_for_bit(max_lag, block, dense_cost, monkeypatch):
    """Sparse blocks (one and many, cut anywhere in a cell) and dense rows (none, some,
    every cell with a pair), a lag longer than the days: the same sums as the listed pairs."""
    from rtcc_geo.forecast import sepp
    from rtcc_geo.forecast.sepp import _LagPairs

    monkeypatch.setattr(sepp, "BLOCK", block)
    monkeypatch.setattr(sepp, "DENSE_COST", dense_cost)
    rng = np.random.default_rng(3)
    mu = np.r_[rng.uniform(0.01, 0.9, 40), 0.0, 2.0]  # quiet to every day busy, one cell empty
    X = simulate_grid_hawkes(mu, 0.4, 0.8, 300, seed=4)[rng.permutation(len(mu))].tocsr()
    X.sort_indices()
    cell = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    day, x = X.indices.astype(np.int64), X.data.astype(np.float64)
    beta_pow = 0.83 ** np.arange(max_lag + 1, dtype=np.float64)
    S0, U0, n0 = _listed_lag_sums(cell, day, max_lag, beta_pow, x)
    p = _LagPairs(cell, day, max_lag, X.shape[1])
    S, U = p.lag_sums(beta_pow, x)
    assert n0 > min(max_lag, 5) * len(x) / 2 and p.count() == n0
    assert np.array_equal(S, S0) and np.array_equal(U, U0)  # same additions, same order
    if dense_cost == 0.0:
        assert len(p._perm) < 10 and len(p._dense) > len(x) - 10  # (nearly) all dense
    if dense_cost == 2.0:
        assert len(p._dense) == 0  # all sparse
    if (block, dense_cost) == (16_384, 0.3) and max_lag >= 40:
        assert len(p._dense) > 0 and len(p._perm) > 0  # both ways at once


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


@pytest.mark.parametrize("max_iter", [300, 3])
def test_sepp_fit_equals_the_listed_pairs_em_bit_for_bit(max_iter):
    """The whole fit (lag sums sparse and dense, powers of beta from a table, the
    log-likelihood of the last iteration only) against the listed pairs' EM."""
    rng = np.random.default_rng(7)
    mu = np.r_[rng.uniform(0.005, 0.6, 60), 1.5, 1.5]  # quiet cells to every-day busy ones
    X = simulate_grid_hawkes(mu, 0.35, 0.8, 700, seed=8)
    c = Counts.from_daily(CELLS[: len(mu)], X)
    m = SEPP(max_iter=max_iter, warm_start=False).fit(c, until=c.day_start(700))
    assert len(m.mu_) == len(mu) and m.n_pairs_ > 0
    mu0, S0, theta0, beta0, ll0, it0 = _listed_pairs_fit(X, max_iter=max_iter)
    assert (it0 < 300) if max_iter == 300 else (it0 == 3 and not m.converged_)
    assert np.array_equal(m.mu_, mu0) and np.array_equal(m.S_end_, S0)
    assert (m.theta_, m.beta_, m.loglik_, m.n_iter_) == (theta0, beta0, ll0, it0)


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
