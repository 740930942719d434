"""The shift MILP against brute-force enumeration on small cyclic instances.

Every integer vector ``x`` (operators per shift column) in ``{0..K}^J`` is
evaluated with plain numpy (no code shared with the MILP beyond the cover
matrix, which is itself checked against a hand-written one). With every
requirement <= K no optimum needs more than K operators on one shift column
(dropping one keeps every hour at or above its requirement, so coverage is
unchanged and staff-hours fall), so the enumeration contains an optimum.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from rtcc_geo.staffing.shifts import coverage_of, optimise_shifts, shift_columns


def test_cover_matrix_by_hand():
    A, s, L = shift_columns(6, (2, 3), starts=[0, 4])
    dense = A.toarray().astype(int)
    # columns: (0,2) (0,3) (4,2) (4,3); the 3-hour shift from hour 4 wraps to hour 0
    expect = np.array(
        [
            [1, 1, 0, 1],
            [1, 1, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 1, 1],
            [0, 0, 1, 1],
        ]
    )
    assert s.tolist() == [0, 0, 4, 4] and L.tolist() == [2, 3, 2, 3]
    assert (dense == expect).all()


@functools.cache
def _enumerate_cached(P, lengths, starts, K):
    return _enumerate(P, lengths, list(starts) if starts is not None else None, K)


def _enumerate(P, lengths, starts, K):
    A, s, L = shift_columns(P, lengths, starts)
    A = A.toarray().astype(np.int16)
    J = A.shape[1]
    X = np.stack(np.unravel_index(np.arange((K + 1) ** J), (K + 1,) * J), axis=1).astype(np.int16)
    on = X @ A.T
    hours = X @ L.astype(np.int16)
    return X, on, hours


def _instances():
    rng = np.random.default_rng(20240601)
    for _ in range(6):
        P = 6
        req = rng.integers(0, 3, P).astype(float)
        lam = rng.uniform(0.0, 3.0, P) * (req > 0) + (req == 0) * rng.choice([0.0, 0.4], P)
        yield P, (2, 3), None, req, lam
    P = 8
    req = np.array([0, 1, 2, 2, 1, 0, 0, 1], float)
    lam = np.array([0.1, 1.0, 2.5, 2.0, 1.2, 0.0, 0.3, 0.9])
    yield P, (3, 4), [0, 2, 4, 6], req, lam


def _gain(lam, req, K=2):
    """An Erlang-like, non-concave gain: the 1st operator adds little, the 2nd more (capped at K)."""
    sl = np.zeros((len(lam), K + 1))
    for k in range(1, K + 1):
        sl[:, k] = np.where(req <= k - 1, 0.95, np.where(req == k, 0.9, 0.2 * k / K))
    sl = np.maximum.accumulate(sl, axis=1)
    return lam[:, None] * np.diff(sl, axis=1)


@pytest.fixture(scope="module", params=["pro_rata", "gain"])
def cases(request):
    out = []
    for P, lengths, starts, req, lam in _instances():
        X, on, hours = _enumerate_cached(P, lengths, None if starts is None else tuple(starts), 2)
        r_eff = np.where(lam > 0, np.maximum(req, 1), req)
        if request.param == "gain":
            g = _gain(lam, req)
            cum = np.concatenate([np.zeros((P, 1)), np.cumsum(g, 1)], 1)
            cov = cum[np.arange(P)[None, :], np.minimum(on, g.shape[1])].sum(1)
        else:
            g = None
            cov = (lam * np.minimum(1.0, on / np.maximum(r_eff, 1))).sum(1)
        out.append((P, lengths, starts, req, lam, X, on, hours, r_eff, cov, g))
    return out


def test_min_staff_hours_equals_brute_force(cases):
    for _P, lengths, starts, req, lam, _X, on, hours, r_eff, _cov, g in cases:
        for always in (False, True):
            need = np.maximum(np.ceil(r_eff), 1 if always else 0)
            ok = (on >= need).all(1)
            plan = optimise_shifts(req, lam, shift_lengths=lengths, starts=starts, always_open=always, gain=g)
            assert plan.optimal, plan.status
            assert plan.staff_hours == hours[ok].min()
            assert (plan.on_duty >= need).all()


@pytest.mark.parametrize("share", [0.5, 0.8, 1.0])
def test_min_hours_for_coverage_share_equals_brute_force(cases, share):
    for _P, lengths, starts, req, lam, _X, _on, hours, _r_eff, cov, g in cases:
        ok = cov >= share * lam.sum() * (1 - 1e-9)
        if not ok.any():
            assert not plan_ok(req, lam, lengths, starts, share, g)
            continue
        plan = optimise_shifts(req, lam, shift_lengths=lengths, starts=starts, min_coverage=share, gain=g)
        assert plan.optimal, plan.status
        assert plan.staff_hours == hours[ok].min()
        assert plan.coverage >= share - 1e-9


@pytest.mark.parametrize("budget", [4, 9])
def test_max_coverage_for_budget_equals_brute_force(cases, budget):
    for _P, lengths, starts, req, lam, _X, on, hours, r_eff, cov, g in cases:
        for always in (False, True):
            ok = hours <= budget
            if always:
                ok &= (on >= 1).all(1)
            plan = optimise_shifts(
                req, lam, shift_lengths=lengths, starts=starts, budget_hours=budget, always_open=always, gain=g
            )
            if not ok.any():
                assert not plan.optimal and plan.extra.get("infeasible")
                continue
            assert plan.optimal, plan.status
            best = cov[ok].max()
            assert plan.coverage * lam.sum() == pytest.approx(best, abs=1e-6)
            # lexicographic second stage: fewest hours among the best-coverage plans
            tie = ok & (cov >= best - 1e-6)
            assert plan.staff_hours == hours[tie].min()
            # the reported plan's coverage is recomputed from its own on-duty vector
            assert plan.covered.sum() == pytest.approx(coverage_of(plan.on_duty, r_eff, lam, g).sum())


def test_same_every_day_equals_brute_force():
    # a 12-hour "week" of two 6-hour "days": one daily pattern of (start hour of day, length) columns
    P, day, lengths = 12, 6, (2, 3)
    A, s, L = shift_columns(P, lengths)
    A = A.toarray()
    keys = sorted({(int(a) % day, int(b)) for a, b in zip(s, L)})
    D = np.stack([A[:, [(i) for i in range(len(s)) if (s[i] % day, L[i]) == k]].sum(1) for k in keys], 1)
    X = np.stack(np.unravel_index(np.arange(3 ** len(keys)), (3,) * len(keys)), axis=1)
    on = X @ D.T
    hours = X @ (np.array([k[1] for k in keys]) * (P // day))
    rng = np.random.default_rng(5)
    for _ in range(4):
        req = rng.integers(0, 3, P).astype(float)
        lam = rng.uniform(0.1, 3.0, P)
        ok = (on >= np.maximum(req, 1)).all(1)
        plan = optimise_shifts(req, lam, shift_lengths=lengths, same_every_day=True, day_hours=day)
        assert plan.optimal and plan.staff_hours == hours[ok].min()
        # the on-duty pattern repeats every day
        assert (plan.on_duty[:day] == plan.on_duty[day:]).all()
        for budget in (8, 16):
            cov = (lam * np.minimum(1, on / np.maximum(req, 1))).sum(1)
            okb = hours <= budget
            pb = optimise_shifts(
                req, lam, shift_lengths=lengths, same_every_day=True, day_hours=day, budget_hours=budget
            )
            if okb.any():
                assert pb.coverage * lam.sum() == pytest.approx(cov[okb].max(), abs=1e-6)
    with pytest.raises(ValueError, match="whole days"):
        optimise_shifts(np.ones(10), shift_lengths=(2,), same_every_day=True, day_hours=6)


def test_gain_rule_counts_operators_in_order():
    # hour 0: the first operator covers nothing (SL = 0 while N <= A), the second covers 10 events;
    # without the ordering y_h1 >= y_h2 one operator could claim the second's gain
    gain = np.array([[0.0, 10.0], [1.0, 0.0]])
    lam = np.array([10.0, 1.0])
    one = optimise_shifts([2, 1], lam, shift_lengths=(1,), budget_hours=1, gain=gain)
    two = optimise_shifts([2, 1], lam, shift_lengths=(1,), budget_hours=2, gain=gain)
    assert one.optimal and one.covered.tolist() == [0.0, 1.0] and one.on_duty.tolist() == [0, 1]
    assert two.optimal and two.covered.tolist() == [10.0, 0.0] and two.on_duty.tolist() == [2, 0]


def test_time_limit_returns_the_best_plan_flagged():
    # a flat, heavily understaffed week (7 needed every hour, 1.25 affordable) has a huge number of
    # near-equal plans; a 1-second limit cannot prove optimality
    from rtcc_geo.staffing.api import erlang_gain
    from rtcc_geo.staffing.erlang import offered_load

    lam = np.full(168, 11.5)
    g = erlang_gain(lam, offered_load(lam, 20), 9, 60, 20)
    p = optimise_shifts(np.full(168, 7), lam, budget_hours=210, gain=g, time_limit=1.0)
    assert not p.optimal and "limit" in p.status.lower()
    assert p.staff_hours <= 210 and p.mip_gap > 0
    assert p.covered.sum() == pytest.approx(coverage_of(p.on_duty, None, lam, g).sum())


def plan_ok(req, lam, lengths, starts, share, g):
    return optimise_shifts(req, lam, shift_lengths=lengths, starts=starts, min_coverage=share, gain=g).optimal


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="shift lengths"):
        optimise_shifts([1, 1, 1], shift_lengths=(0,))
    with pytest.raises(ValueError, match="share"):
        optimise_shifts([1, 1, 1], shift_lengths=(1,), min_coverage=80)


def test_envelope_bound_hand_worked_and_above_every_plan(cases):
    from rtcc_geo.staffing.fast import envelope_bound

    # hour 0: the 2nd operator brings 10 events (the 1st none); hour 1: the 1st brings 1
    cum = np.array([[0.0, 0.0, 10.0], [0.0, 1.0, 1.0]])
    assert [envelope_bound(cum, b) for b in (0, 1, 2, 3, 9)] == [0.0, 5.0, 10.0, 11.0, 11.0]
    # never below what a plan within the same staff-hours covers (brute force over all plans)
    for P, _lengths, _starts, _req, lam, _X, _on, hours, r_eff, cov, g in cases:
        c = (
            np.concatenate([np.zeros((P, 1)), np.cumsum(g, 1)], 1)
            if g is not None
            else lam[:, None] * np.minimum(1.0, np.arange(4)[None, :] / np.maximum(r_eff, 1)[:, None])
        )
        for budget in (2, 4, 6, 9):
            ok = hours <= budget
            assert envelope_bound(c, budget) >= cov[ok].max() - 1e-9
