"""Fast shift plans: a greedy start, local search, and HiGHS warm-started from it.

The shift problems of :mod:`rtcc_geo.staffing.shifts` are small integer
programs, but when a head count is far below what the service level needs,
HiGHS finds good plans slowly (Erlang C gives the first operators of a busy
hour no credit, so the LP relaxation says little) and can run for tens of
seconds. The planner page needs an answer in about a second, so:

1. **Greedy.** With :math:`C_h(n)` the events covered in hour ``h`` by ``n``
   operators (the cumulative gains), add the column ``j`` and the number of
   copies ``k`` (1..``k_max``, so that a busy hour's threshold can be crossed
   at once) with the largest covered events per staff-hour
   :math:`\\sum_{h \\in j} [C_h(n_h + k) - C_h(n_h)] / (k L_j)` that still
   fits the budget (budget mode) or until the coverage target is met
   (target mode).
2. **Local search.** Move one operator from a shift to any other shift
   (start and length), or drop one, whenever that covers more events within
   the budget, or keeps the target with fewer staff-hours; repeated until no
   move helps or the time is up.
3. **HiGHS** then starts from that plan (``setSolution``) with a short time
   limit: it can only improve on it, and it reports a proven bound, so the
   answer comes with its optimality gap
   :math:`(\\text{bound} - \\text{found}) / |\\text{found}|`.

Every plan this returns is feasible; how far from the optimum it may be is
the gap HiGHS reports (shown in the page's details panel). The minimum-hours
problem (no head count) has a tight bound, so there the fast mode lets HiGHS
run until the plan is proven within 1.5 % (at most 3 s). The local search is
time-bounded, so on a busy machine the fast plan can differ between runs.
"""

from __future__ import annotations

import time
from itertools import pairwise

import numpy as np
from scipy import sparse

__all__ = ["cumulative", "greedy_budget", "greedy_target", "highs_solve", "local_search"]


def cumulative(gain: np.ndarray) -> np.ndarray:
    """(P, K+1) covered events with 0..K operators; flat beyond ``K``."""
    g = np.asarray(gain, float)
    return np.concatenate([np.zeros((g.shape[0], 1)), np.cumsum(g, axis=1)], axis=1)


def _cov(cum: np.ndarray, n: np.ndarray) -> np.ndarray:
    K = cum.shape[1] - 1
    return cum[np.arange(cum.shape[0]), np.minimum(n, K)]


def _delta(cum: np.ndarray, n: np.ndarray, k: int) -> np.ndarray:
    """Per hour, events added by ``k`` more operators on top of ``n`` (``k`` may be negative)."""
    K = cum.shape[1] - 1
    return _cov(cum, np.clip(n + k, 0, K)) - _cov(cum, np.minimum(n, K))


def _share_ok(x, hours, short, share, j, k) -> np.ndarray:
    """Columns whose ``k`` more copies keep short shifts within ``share`` of the staff-hours."""
    if short is None:
        return np.ones(len(hours), bool)
    tot = float(hours @ x) + k * hours
    sh = float(hours[short] @ x[short]) + k * hours * short
    return sh <= share * tot + 1e-9


def greedy_budget(
    A: sparse.csc_matrix,
    hours: np.ndarray,
    cum: np.ndarray,
    budget: float,
    floor: np.ndarray | None = None,
    k_max: int = 3,
    short: np.ndarray | None = None,
    share: float = 1.0,
    x0: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy plan covering the most events within ``budget`` staff-hours
    (after ``floor``: a cheapest cover of the minimum on duty, e.g. 1 every hour;
    or continuing from ``x0``)."""
    J = A.shape[1]
    x = np.zeros(J, int)
    if x0 is not None:
        x = np.asarray(x0, int).copy()
    elif floor is not None and np.any(floor > 0):
        x = _cover_floor(A, hours, floor, short)
    AT = A.T.tocsr()
    used = float(hours @ x)
    while True:
        n = np.asarray(A @ x).ravel().astype(int)
        best, pick = 0.0, None
        for k in range(1, k_max + 1):
            g = AT @ _delta(cum, n, k)
            ok = (used + k * hours <= budget + 1e-9) & _share_ok(x, hours, short, share, None, k)
            if not ok.any():
                continue
            r = np.where(ok, g / (k * hours), -1.0)
            j = int(np.argmax(r))
            if r[j] > best + 1e-12:
                best, pick = r[j], (j, k)
        if pick is None:
            return x
        x[pick[0]] += pick[1]
        used += pick[1] * hours[pick[0]]


def greedy_target(
    A: sparse.csc_matrix,
    hours: np.ndarray,
    cum: np.ndarray,
    target: float,
    floor: np.ndarray | None = None,
    k_max: int = 3,
    short: np.ndarray | None = None,
    share: float = 1.0,
) -> np.ndarray:
    """Greedy plan reaching ``target`` covered events (best events per staff-hour first)."""
    J = A.shape[1]
    x = _cover_floor(A, hours, floor, short) if floor is not None and np.any(floor > 0) else np.zeros(J, int)
    AT = A.T.tocsr()
    for _ in range(100000):
        n = np.asarray(A @ x).ravel().astype(int)
        if _cov(cum, n).sum() >= target - 1e-9:
            return x
        best, pick = 0.0, None
        for k in range(1, k_max + 1):
            r = np.where(_share_ok(x, hours, short, share, None, k), (AT @ _delta(cum, n, k)) / (k * hours), -1.0)
            j = int(np.argmax(r))
            if r[j] > best + 1e-12:
                best, pick = r[j], (j, k)
        if pick is None:  # no shift adds anything: the target is out of reach
            return x
        x[pick[0]] += pick[1]
    return x


def _cover_floor(A, hours, floor, avoid: np.ndarray | None = None) -> np.ndarray:
    """Cheap cover of ``floor`` operators every hour: repeatedly the column covering the
    most still-short hours per staff-hour (not the ``avoid`` columns, e.g. part-time shifts
    limited to a share of the hours)."""
    P, J = A.shape
    x = np.zeros(J, int)
    AT = A.T.tocsr()
    for _ in range(10 * P):
        short = (np.asarray(A @ x).ravel() < floor).astype(float)
        if not short.any():
            break
        r = (AT @ short) / hours
        if avoid is not None and not avoid.all():
            r = np.where(avoid, -1.0, r)
        j = int(np.argmax(r))
        x[j] += 1
    return x


def local_search(
    A: sparse.csc_matrix,
    hours: np.ndarray,
    cum: np.ndarray,
    x: np.ndarray,
    *,
    budget: float | None = None,
    target: float | None = None,
    floor: np.ndarray | None = None,
    deadline: float = 0.5,
    short: np.ndarray | None = None,
    share: float = 1.0,
) -> np.ndarray:
    """Improve ``x`` by moving one operator between shifts (or dropping one).

    Budget mode: maximise covered events with staff-hours <= ``budget``, ties to
    fewer hours. Target mode: minimise staff-hours with covered events >= ``target``.
    ``floor``: operators that must stay on duty every hour. ``deadline``: seconds.
    """
    t_end = time.perf_counter() + deadline
    x = np.asarray(x, int).copy()
    AT = A.T.tocsr()
    fl = np.zeros(A.shape[0]) if floor is None else np.asarray(floor, float)
    cols = [A.indices[A.indptr[j] : A.indptr[j + 1]] for j in range(A.shape[1])]
    improved = True
    while improved and time.perf_counter() < t_end:
        improved = False
        n = np.asarray(A @ x).ravel().astype(int)
        cov = _cov(cum, n).sum()
        used = float(hours @ x)
        for i in np.flatnonzero(x > 0):
            if time.perf_counter() >= t_end:
                break
            hi = cols[i]
            n2 = n.copy()
            n2[hi] -= 1
            if np.any(n2[hi] < fl[hi]):
                drop_ok = False
            else:
                drop_ok = True
            loss = float((_cov(cum, n) - _cov(cum, n2))[hi].sum())
            # gains of adding one operator to each column on top of n2
            gains = AT @ _delta(cum, n2, 1)
            new_used = used - hours[i] + hours
            new_cov = cov - loss + gains
            # a move must keep the floor: column j must cover the hours i leaves short
            low = np.flatnonzero(n2 < fl)
            ok = (
                np.ones(len(hours), bool)
                if len(low) == 0
                else np.asarray((A[low, :] > 0).sum(axis=0)).ravel() == len(low)
            )
            if short is not None:  # the move keeps short (part-time) shifts within their share
                sh = float(hours[short] @ x[short]) - hours[i] * short[i] + hours * short
                ok &= sh <= share * new_used + 1e-9
                if not short[i]:
                    drop_ok = drop_ok and float(hours[short] @ x[short]) <= share * (used - hours[i]) + 1e-9
            if budget is not None:
                ok &= new_used <= budget + 1e-9
                score = np.where(ok, new_cov - cov - 1e-9 * (new_used - used), -np.inf)
                score[i] = -np.inf
                j = int(np.argmax(score))
                drop_gain = -loss + 1e-9 * hours[i] if drop_ok else -np.inf
                if drop_ok and drop_gain > 1e-9 and drop_gain >= score[j]:
                    x[i] -= 1
                    improved = True
                    break
                if score[j] > 1e-7:
                    x[i] -= 1
                    x[j] += 1
                    improved = True
                    break
            else:
                assert target is not None, "local_search needs a budget or a target"
                if drop_ok and cov - loss >= target - 1e-9:
                    x[i] -= 1
                    improved = True
                    break
                # fewer hours, or the same hours and more events covered (slack for a later drop)
                ok &= (new_cov >= target - 1e-9) & ((hours < hours[i]) | ((hours == hours[i]) & (new_cov > cov + 1e-7)))
                ok[i] = False
                if ok.any():
                    j = int(np.argmax(np.where(ok, new_cov - 1e6 * hours, -np.inf)))
                    x[i] -= 1
                    x[j] += 1
                    improved = True
                    break
    return x


def highs_solve(
    c: np.ndarray,
    rows: list[tuple],
    integrality: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    time_limit: float,
    mip_rel_gap: float = 1e-6,
    x0: np.ndarray | None = None,
) -> dict:
    """Minimise ``c @ x`` s.t. ``lo <= M @ x <= hi`` for each ``(M, lo, hi)`` in ``rows``,
    with HiGHS (highspy), optionally warm-started at ``x0`` (a feasible point).

    Returns ``{"x", "fun", "optimal", "status", "mip_gap", "bound"}`` (``x`` is
    ``None`` when no feasible point was found).
    """
    import highspy

    M = sparse.vstack([sparse.csr_matrix(m) for m, _, _ in rows], format="csc")
    lo = np.concatenate([np.broadcast_to(np.asarray(a, float), (m.shape[0],)) for m, a, _ in rows])
    hi = np.concatenate([np.broadcast_to(np.asarray(b, float), (m.shape[0],)) for m, _, b in rows])
    inf = highspy.kHighsInf
    h = _new_highs(highspy)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    h.setOptionValue("threads", 1)
    lp = highspy.HighsLp()
    n = len(c)
    lp.num_col_, lp.num_row_ = n, M.shape[0]
    lp.col_cost_ = np.asarray(c, float)
    lp.col_lower_ = np.asarray(lb, float)
    lp.col_upper_ = np.where(np.isfinite(ub), ub, inf).astype(float)
    lp.row_lower_ = np.where(np.isfinite(lo), lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(hi), hi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = M.indptr.astype(np.int32)
    lp.a_matrix_.index_ = M.indices.astype(np.int32)
    lp.a_matrix_.value_ = M.data.astype(float)
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, M.shape[0]
    lp.integrality_ = [highspy.HighsVarType.kInteger if v else highspy.HighsVarType.kContinuous for v in integrality]
    h.passModel(lp)
    if x0 is not None:
        sol = highspy.HighsSolution()
        sol.col_value = list(np.asarray(x0, float))
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    ok = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.asarray(h.getSolution().col_value, float) if ok else None
    if (
        x0 is not None
        and x is not None
        and (
            abs(float(np.dot(c, x)) - info.objective_function_value) > 1e-6 * max(1.0, abs(float(np.dot(c, x))))
            or (
                status == highspy.HighsModelStatus.kOptimal
                and abs(info.objective_function_value - info.mip_dual_bound)
                > 1e-6 + 2 * mip_rel_gap * abs(info.mip_dual_bound)
            )
        )
    ):
        # HiGHS 1.16 can hand back the start point with another point's objective and call it
        # optimal (seen when presolve reduces the model): solve again without the start
        return highs_solve(c, rows, integrality, lb, ub, time_limit, mip_rel_gap, None)
    text = h.modelStatusToString(status)
    if x is None and x0 is not None:  # HiGHS found nothing in its time: the start point stands
        x = np.asarray(x0, float)
    fun = None if x is None else float(np.dot(c, x))
    bound = float(info.mip_dual_bound)
    gap = float("inf")
    if fun is not None and np.isfinite(bound):
        gap = max(0.0, fun - bound) / max(abs(fun), 1e-9)
    return {
        "x": x,
        "fun": fun,
        "optimal": status == highspy.HighsModelStatus.kOptimal,
        "status": f"HiGHS: {text}",
        "mip_gap": gap,
        "bound": bound,
    }


def _new_highs(highspy):
    """A ``highspy.Highs`` without its banner: HiGHS prints it to the C-level stdout when
    the object is made, which would corrupt ``--json`` output."""
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def envelope_bound(cum: np.ndarray, staff_hours: float) -> float:
    """An upper bound on the events any plan of ``staff_hours`` can cover.

    Relax the shifts away: hand out ``staff_hours`` operator-hours to single
    hours freely and fractionally. With :math:`\\hat C_h` the upper concave
    envelope of :math:`C_h(n)`, the best split takes the steepest envelope
    segments first (a fractional knapsack), and
    :math:`\\sum_h C_h(n_h) \\le \\sum_h \\hat C_h(n_h)` for every plan, whose
    on-duty hours add up to its staff-hours.
    """
    slopes, lengths = [], []
    for c in np.asarray(cum, float):
        hull = [0]
        for n in range(1, len(c)):  # upper hull of (n, c_n), monotone chain
            while len(hull) >= 2:
                a, b = hull[-2], hull[-1]
                if (c[b] - c[a]) * (n - a) <= (c[n] - c[a]) * (b - a):
                    hull.pop()
                else:
                    break
            hull.append(n)
        for a, b in pairwise(hull):
            s = (c[b] - c[a]) / (b - a)
            if s > 0:
                slopes.append(s)
                lengths.append(b - a)
    if not slopes:
        return 0.0
    order = np.argsort(slopes)[::-1]
    s, L = np.asarray(slopes)[order], np.asarray(lengths, float)[order]
    take = np.clip(float(staff_hours) - np.concatenate([[0.0], np.cumsum(L)[:-1]]), 0.0, L)
    return float((s * take).sum())
