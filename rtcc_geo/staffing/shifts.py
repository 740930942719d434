"""Shift optimisation: which shifts (start hour, length) and how many operators.

An integer program over a cyclic week of ``P`` hours (168 for a week), solved
with HiGHS (``highspy``), warm-started from a fast heuristic plan
(:mod:`rtcc_geo.staffing.fast`).

Variables
    :math:`x_j \\in \\mathbb{Z}_{\\ge 0}` - operators working shift ``j`` (a start
    hour of the week and a length, 8/10/12 h and optionally 4 h); a shift
    that runs past Sunday midnight wraps to Monday (the week repeats).
    :math:`n_h = \\sum_j a_{hj} x_j` - operators on duty in hour ``h``
    (:math:`a_{hj} = 1` when shift ``j`` covers hour ``h``).
    :math:`c_h \\ge 0` - workload covered in hour ``h``.

Coverage
    *Gain rule* (``gain`` given; what :func:`rtcc_geo.staffing.plan` uses):
    the ``k``-th operator on duty in hour ``h`` adds :math:`g_{hk}` covered
    events, e.g. :math:`g_{hk} = \\lambda_h (SL_h(k) - SL_h(k-1))` so an hour
    with :math:`n_h` operators covers :math:`\\lambda_h SL_h(n_h)` events - the
    events picked up within the target time (Erlang C). Service level is not
    concave in ``k`` (it is 0 until :math:`k > A`), so it is modelled exactly
    with binaries :math:`y_{hk}` ("at least ``k`` on duty"):
    :math:`y_{h1} \\ge y_{h2} \\ge \\dots`, :math:`\\sum_k y_{hk} \\le n_h`,
    :math:`c_h = \\sum_k g_{hk} y_{hk}` (gains beyond ``K`` columns are 0).

    *Pro-rata rule* (no ``gain``): with :math:`r_h` the operators the service
    level needs, :math:`\\lambda_h \\min(1, n_h / r_h)` events: full cover when
    the requirement is met, pro rata below it. Linear:
    :math:`c_h \\le \\lambda_h`, :math:`c_h \\le (\\lambda_h / r_h)\\, n_h`.

Problems
    *Minimum staff-hours* (service level given):
    :math:`\\min \\sum_j L_j x_j` s.t. :math:`n_h \\ge r_h` for every hour
    (the 24/7 option, with :math:`r_h \\ge 1` everywhere), or s.t.
    :math:`\\sum_h c_h \\ge s \\sum_h \\lambda_h` for a coverage share ``s``
    (the part-time option: the centre may close in quiet hours).

    *Maximum coverage for a fixed head count* (``budget_hours``):
    :math:`\\max \\sum_h c_h` s.t. :math:`\\sum_j L_j x_j \\le` budget, with
    :math:`n_h \\ge 1` for the 24/7 option; then, among the plans reaching that
    coverage, the one with fewest staff-hours (a second solve - so the hours
    reported are the hours the coverage needs, and the rest of the budget is
    free for other work).

The optimiser chooses the weekly pattern of shifts; :mod:`rtcc_geo.staffing.roster`
turns it into weekly lines with days off within the agency's rules. Part-time
shifts (``short_hours`` or less) can be capped at a share of the staff-hours
(``max_short_share``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import LinearConstraint

from . import fast as _fast
from .fast import highs_solve

__all__ = ["DAYS", "ShiftPlan", "coverage_of", "optimise_shifts", "shift_columns"]

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class ShiftPlan:
    """One staffing option.

    Attributes
    ----------
    option : ``"24/7"`` or ``"part-time"``.
    objective : ``"min_staff_hours"`` or ``"max_coverage"``.
    shifts : DataFrame with ``start`` (hour of the period), ``day``,
        ``start_hour`` (local hour of day), ``length`` (h), ``count``
        (operators) - one row per shift used (``day = "every day"`` and
        ``count`` per day with ``same_every_day``).
    on_duty : (P,) operators on duty in each hour.
    covered : (P,) covered events per hour; ``coverage`` is their share of the workload.
    staff_hours : operator-hours per period (week).
    status : HiGHS status text; ``optimal`` is True when HiGHS proved optimality
        (within ``mip_rel_gap``); at the time limit the best plan found is
        returned with ``optimal=False`` and its ``mip_gap``.
    """

    option: str
    objective: str
    shifts: pd.DataFrame
    on_duty: np.ndarray
    covered: np.ndarray
    coverage: float
    staff_hours: float
    status: str
    optimal: bool
    mip_gap: float = 0.0
    budget_hours: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "option": self.option,
            "objective": self.objective,
            "optimal": self.optimal,
            "status": self.status,
            "mip_gap": float(self.mip_gap) if np.isfinite(self.mip_gap) else None,
            "coverage": round(float(self.coverage), 6),
            "staff_hours": float(self.staff_hours),
            "budget_hours": self.budget_hours,
            "shifts": self.shifts.to_dict(orient="records"),
            "on_duty": [int(v) for v in self.on_duty],
            **self.extra,
        }


def shift_columns(
    period: int, shift_lengths: Sequence[int], starts: Iterable[int] | None = None
) -> tuple[sparse.csc_matrix, np.ndarray, np.ndarray]:
    """The cover matrix ``A`` (P x J), and the start and length of each column.

    ``starts`` are hours of the period where a shift may begin (default: every hour).
    """
    lengths = sorted({int(L) for L in shift_lengths})
    if not lengths or any(L <= 0 or L > period for L in lengths):
        raise ValueError(f"shift lengths must be whole hours in 1..{period} (got {list(shift_lengths)})")
    st = np.arange(period) if starts is None else np.unique(np.asarray(list(starts), dtype=int) % period)
    s_all = np.repeat(st, len(lengths))
    l_all = np.tile(lengths, len(st))
    rows, cols = [], []
    for j, (s, L) in enumerate(zip(s_all, l_all)):
        rows.append((s + np.arange(L)) % period)
        cols.append(np.full(L, j))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    A = sparse.csc_matrix((np.ones(len(r)), (r, c)), shape=(period, len(s_all)))
    return A, s_all, l_all


def coverage_of(
    on_duty: np.ndarray, required: np.ndarray, workload: np.ndarray, gain: np.ndarray | None = None
) -> np.ndarray:
    """Covered events per hour: :math:`\\sum_{k \\le n_h} g_{hk}` with a gain matrix,
    else :math:`\\lambda_h \\min(1, n_h / r_h)` (``r_h`` at least 1)."""
    n = np.asarray(on_duty)
    if gain is not None:
        g = np.asarray(gain, float)
        cum = np.concatenate([np.zeros((g.shape[0], 1)), np.cumsum(g, axis=1)], axis=1)
        return cum[np.arange(g.shape[0]), np.minimum(n.astype(int), g.shape[1])]
    r = np.maximum(np.asarray(required, dtype=float), 1.0)
    return np.asarray(workload, float) * np.minimum(1.0, n.astype(float) / r)


def optimise_shifts(
    required: Sequence[float] | np.ndarray,
    workload: Sequence[float] | np.ndarray | None = None,
    *,
    shift_lengths: Sequence[int] = (8, 10, 12),
    starts: Iterable[int] | None = None,
    budget_hours: float | None = None,
    min_coverage: float | None = None,
    always_open: bool = False,
    min_on_duty: int = 1,
    max_per_shift: int | None = None,
    gain: np.ndarray | None = None,
    same_every_day: bool = False,
    day_hours: int = 24,
    time_limit: float = 60.0,
    mip_rel_gap: float = 1e-6,
    max_short_share: float | None = None,
    short_hours: int = 4,
    fast: bool = False,
    fast_time: float = 0.15,
    fast_gap: float = 0.005,
) -> ShiftPlan:
    """Solve one shift problem (see the module docstring for the maths).

    Parameters
    ----------
    required : operators needed per hour (``r_h``), length ``P``.
    workload : expected events per hour (``\\lambda_h``), weights of the coverage;
        default ``required`` itself.
    budget_hours : fixed head count as operator-hours per period; switches to
        maximum coverage.
    min_coverage : with no budget, the share of workload the plan must cover
        (part-time option); ``None`` means every hour's requirement is met.
    always_open : at least ``min_on_duty`` operators every hour (24/7).
    gain : (P, K) covered events added by the k-th operator of each hour (the
        gain rule); ``None`` = the pro-rata rule.
    same_every_day : one daily pattern (the same shift starts and head counts
        every day, a roster-friendly plan): a column is then a start hour of
        the day and a length, worked on each of the ``P / day_hours`` days.
    max_short_share, short_hours : shifts of ``short_hours`` or less (part-time
        shifts) take at most this share of the staff-hours:
        :math:`\\sum_{j: L_j \\le s} L_j x_j \\le m \\sum_j L_j x_j`.
    fast : the page's mode: a greedy plan improved by local search, then HiGHS
        warm-started from it for ``fast_time`` seconds (stopping at a
        ``fast_gap`` relative gap); see :mod:`rtcc_geo.staffing.fast`. The
        exact mode starts HiGHS from the same plan and runs to ``mip_rel_gap``
        or ``time_limit``.
    """
    t_start = time.perf_counter()
    r = np.asarray(required, dtype=float)
    if r.ndim != 1 or len(r) < 1 or np.any(r < 0) or not np.all(np.isfinite(r)):
        raise ValueError("required operators must be a 1-D array of finite values >= 0")
    P = len(r)
    lam = r.copy() if workload is None else np.asarray(workload, dtype=float)
    if lam.shape != r.shape or np.any(lam < 0):
        raise ValueError("workload must have one value >= 0 per hour, like required")
    r_eff = np.where(lam > 0, np.maximum(r, 1.0), r)
    A, s_all, l_all = shift_columns(P, shift_lengths, starts)
    n_days = 1
    if same_every_day:
        if P % day_hours:
            raise ValueError(
                f"same_every_day needs a period of whole days ({P} hours is not a multiple of {day_hours})"
            )
        n_days = P // day_hours
        # merge the columns that share (start hour of day, length): one variable worked every day
        key = (s_all % day_hours) * (P + 1) + l_all
        uniq, grp = np.unique(key, return_inverse=True)
        G = sparse.csc_matrix((np.ones(len(grp)), (np.arange(len(grp)), grp)), shape=(len(grp), len(uniq)))
        A = (A @ G).tocsc()
        s_all = (uniq // (P + 1)).astype(int)
        l_all = (uniq % (P + 1)).astype(int)
    hours_col = (l_all * n_days).astype(float)  # staff-hours per period of one unit of each column
    J = A.shape[1]
    option = "24/7" if always_open else "part-time"
    floor = np.full(P, float(min_on_duty) if always_open else 0.0)
    ub_x = np.inf if max_per_shift is None else float(max_per_shift)
    if gain is not None:
        gain = np.asarray(gain, dtype=float)
        if gain.ndim != 2 or gain.shape[0] != P or np.any(gain < -1e-12):
            raise ValueError("gain must be a (hours, K) array of non-negative covered-event increments")
        gain = np.maximum(gain, 0.0)
    total = float(lam.sum())

    cum = _cum_matrix(r_eff, lam, gain)
    short: np.ndarray | None = None
    short_share = 1.0  # max_short_share as a float, read only where short is not None
    share_kw: dict = {}
    if max_short_share is not None and np.any(l_all <= short_hours):
        if not 0.0 <= max_short_share <= 1.0:
            raise ValueError("max_short_share is a share in [0, 1]")
        short = l_all <= short_hours
        short_share = float(max_short_share)
        share_kw = {"short": short, "share": float(max_short_share)}
    deadline = min(0.3, 0.3 * time_limit) if fast else min(1.0, 0.1 * time_limit)
    t_fast = time_limit if not fast else min(time_limit, fast_time)

    def solve(c_obj, cons, integ, lb, ub, x0=None, tl=None, gap=None):
        rows = [(c.A, c.lb, c.ub) for c in cons]
        return highs_solve(
            c_obj,
            rows,
            integ,
            lb,
            ub,
            time_limit=t_fast if tl is None else tl,
            mip_rel_gap=gap if gap is not None else fast_gap if fast else mip_rel_gap,
            x0=x0,
        )

    if budget_hours is None and min_coverage is None:
        # min staff-hours with every hour's requirement met
        lo = np.maximum(np.ceil(r_eff - 1e-9), floor)
        cons = [LinearConstraint(A, lo, np.inf)]
        if short is not None:
            cons.append(LinearConstraint(((short - short_share) * hours_col)[None, :], -np.inf, 0.0))
        x0: np.ndarray | None
        x0 = xl = _fast.local_search(
            A,
            hours_col,
            _cover_cum(lo),
            _fast._cover_floor(A, hours_col, lo),
            target=float(_cover_cum(lo)[:, -1].sum()),
            floor=lo,
            deadline=deadline,
        )
        if short is not None and hours_col[short] @ xl[short] > short_share * (hours_col @ xl) + 1e-9:
            x0 = None
        res = solve(hours_col, cons, np.ones(J), np.zeros(J), np.full(J, ub_x), x0=x0)
        objective = "min_staff_hours"
        x = _int(res, J)
    else:
        if gain is None:
            # variables [x (J), c (P)]; c_h - w_h n_h <= 0, c_h <= lambda_h
            w = np.where(r_eff > 0, lam / np.maximum(r_eff, 1e-12), 0.0)
            M = sparse.hstack([-sparse.diags(w) @ A, sparse.identity(P)], format="csc")
            cons = [LinearConstraint(M, -np.inf, 0.0)]
            nc = P
            integ = np.concatenate([np.ones(J), np.zeros(P)])
            ub = np.concatenate([np.full(J, ub_x), lam])
            cov_coef = np.ones(P)

            def full(xj):
                return np.concatenate([xj, _fast._cov(cum, np.asarray(A @ xj).ravel().astype(int))])
        else:
            # variables [x (J), y (P*K)], y[h, k] = "at least k+1 operators counted in hour h"
            K = gain.shape[1]
            nc = P * K
            Y = sparse.kron(sparse.identity(P), np.ones((1, K)), format="csc")  # sum_k y_hk
            cons = [LinearConstraint(sparse.hstack([-A, Y], format="csc"), -np.inf, 0.0)]
            if K > 1:
                D = sparse.kron(
                    sparse.identity(P),
                    sparse.diags([np.ones(K - 1), -np.ones(K - 1)], [0, 1], shape=(K - 1, K)),
                    format="csc",
                )
                cons.append(
                    LinearConstraint(sparse.hstack([sparse.csc_matrix((P * (K - 1), J)), D], format="csc"), 0.0, np.inf)
                )  # y_hk >= y_h,k+1
            integ = np.ones(J + nc)
            ub = np.concatenate([np.full(J, ub_x), np.ones(nc)])
            cov_coef = gain.ravel()

            def full(xj):
                n = np.minimum(np.asarray(A @ xj).ravel().astype(int), K)
                return np.concatenate([xj, (np.arange(K)[None, :] < n[:, None]).astype(float).ravel()])

        if always_open:
            cons.append(LinearConstraint(sparse.hstack([A, sparse.csc_matrix((P, nc))], format="csc"), floor, np.inf))
        lb = np.zeros(J + nc)
        if short is not None:
            cons.append(
                LinearConstraint(
                    np.concatenate([(short - short_share) * hours_col, np.zeros(nc)])[None, :], -np.inf, 0.0
                )
            )
        hours_row = np.concatenate([hours_col, np.zeros(nc)])
        cov_row = np.concatenate([np.zeros(J), cov_coef])
        fl = floor if always_open else None
        if budget_hours is not None:
            if budget_hours < 0:
                raise ValueError("budget_hours must be >= 0")
            objective = "max_coverage"

            def start(kw):
                x = _fast.greedy_budget(A, hours_col, cum, float(budget_hours), fl, **kw)
                if hours_col @ x > budget_hours + 1e-9:  # the floor alone breaks the budget: infeasible
                    return None
                return _fast.local_search(
                    A, hours_col, cum, x, budget=float(budget_hours), floor=fl, deadline=deadline, **kw
                )

            x0 = start(share_kw)
            if short is not None and x0 is not None:
                # the plan without part-time shifts is feasible too: the heuristic must not do worse
                # with them than without them
                xb = start({"short": short, "share": 0.0})
                if xb is not None and _cov_total(cum, A, xb) > _cov_total(cum, A, x0) + 1e-9:
                    x0 = xb
            bcons = cons + [LinearConstraint(hours_row[None, :], -np.inf, float(budget_hours))]
            res1 = solve(-cov_row, bcons, integ, lb, ub, x0=None if x0 is None else full(x0))
            if res1["x"] is None:
                return _infeasible(option, "max_coverage", res1, P, budget_hours)
            best = -float(res1["fun"])
            res = res1
            # a second, shift-free bound (fast mode: HiGHS may not finish its root LP in time)
            env = _fast.envelope_bound(cum, float(budget_hours))
            if env > 0:
                # HiGHS bounds -coverage from below; -env is another such bound: keep the tighter
                b = max(float(res1["bound"]) if np.isfinite(res1["bound"]) else -np.inf, -env)
                res1 = dict(res1, bound=b, mip_gap=max(0.0, -b - best) / best if best > 0 else 0.0)
            if fast:
                x1 = _int(res1, J)
                assert x1 is not None  # res1["x"] was checked above
                xj = _fast.local_search(
                    A, hours_col, cum, x1, budget=float(budget_hours), floor=fl, deadline=deadline / 2, **share_kw
                )
                res = dict(res1, x=full(xj).astype(float))
            elif res1["optimal"]:
                # second stage: fewest hours reaching that coverage (tolerance for LP round-off);
                # skipped when stage 1 stopped at the time limit (its best plan is returned as is)
                need = best - 1e-7 * max(total, 1.0) - 1e-9
                res2 = solve(
                    hours_row, bcons + [LinearConstraint(cov_row[None, :], need, np.inf)], integ, lb, ub, x0=res1["x"]
                )
                if res2["x"] is not None:
                    res = dict(res2, mip_gap=res1["mip_gap"], optimal=res1["optimal"] and res2["optimal"])
        else:
            assert min_coverage is not None  # the first branch takes budget_hours and min_coverage both None
            if not 0.0 <= float(min_coverage) <= 1.0:
                raise ValueError(f"min_coverage is a share in [0, 1] (got {min_coverage})")
            objective = "min_staff_hours"
            need = float(min_coverage) * total * (1 - 1e-9)
            cons.append(LinearConstraint(cov_row[None, :], need, np.inf))

            def start_t(kw):
                x = _fast.greedy_target(A, hours_col, cum, need, fl, **kw)
                if _cov_total(cum, A, x) < need:
                    return None
                return _fast.local_search(A, hours_col, cum, x, target=need, floor=fl, deadline=deadline, **kw)

            x0 = start_t(share_kw)
            if short is not None:  # likewise: never worse than the plan without part-time shifts
                xb = start_t({"short": short, "share": 0.0})
                if xb is not None and (x0 is None or hours_col @ xb < hours_col @ x0):
                    x0 = xb
            # fast mode: the minimum-hours problem has a tight bound, so HiGHS may run until the
            # plan is proven within 1.5 % (usually well under its 3 s cap)
            res = solve(
                hours_row,
                cons,
                integ,
                lb,
                ub,
                x0=None if x0 is None else full(x0),
                tl=min(time_limit, 3.0) if fast else None,
                gap=0.015 if fast else None,
            )
        x = _int(res, J)
    if x is None:
        return _infeasible(option, objective, res, P, budget_hours)
    on = np.asarray(A @ x).ravel()
    covered = coverage_of(on, r_eff, lam, gain)
    shifts = pd.DataFrame({"start": s_all, "length": l_all, "count": x})
    shifts = shifts[shifts["count"] > 0].reset_index(drop=True)
    if same_every_day:
        shifts.insert(1, "day", "every day")
        shifts.insert(2, "start_hour", shifts["start"])
    elif P == 168:
        shifts.insert(1, "day", [DAYS[s // 24] for s in shifts["start"]])
        shifts.insert(2, "start_hour", shifts["start"] % 24)
    return ShiftPlan(
        option=option,
        objective=objective,
        shifts=shifts,
        on_duty=on.astype(int),
        covered=covered,
        coverage=float(covered.sum() / total) if total > 0 else 1.0,
        staff_hours=float((hours_col * x).sum()),
        status=res["status"],
        optimal=bool(res["optimal"]),
        mip_gap=float(res["mip_gap"]),
        budget_hours=budget_hours,
        extra={
            "solver_seconds": round(time.perf_counter() - t_start, 3),
            "mode": "fast" if fast else "exact",
            "bound": res["bound"] if np.isfinite(res.get("bound", np.nan)) else None,
        },
    )


def _int(res: dict, J: int) -> np.ndarray | None:
    if res["x"] is None:
        return None
    return np.round(res["x"][:J]).astype(int)


def _cov_total(cum: np.ndarray, A, x: np.ndarray) -> float:
    return float(_fast._cov(cum, np.asarray(A @ x).ravel().astype(int)).sum())


def _cum_matrix(r_eff: np.ndarray, lam: np.ndarray, gain: np.ndarray | None) -> np.ndarray:
    """(P, K+1) events covered with 0..K operators, for either coverage rule."""
    if gain is not None:
        return _fast.cumulative(gain)
    K = int(np.ceil(np.max(r_eff, initial=0.0))) + 1
    n = np.arange(K + 1)[None, :]
    return lam[:, None] * np.minimum(1.0, n / np.maximum(r_eff, 1.0)[:, None])


def _cover_cum(lo: np.ndarray) -> np.ndarray:
    """Coverage table of a pure requirement: one unit per operator up to ``lo``."""
    K = int(np.max(lo, initial=0.0)) + 1
    return np.minimum(np.arange(K + 1)[None, :], np.asarray(lo, float)[:, None])


def _infeasible(option, objective, res, P, budget) -> ShiftPlan:
    return ShiftPlan(
        option=option,
        objective=objective,
        shifts=pd.DataFrame(columns=["start", "length", "count"]),
        on_duty=np.zeros(P, int),
        covered=np.zeros(P),
        coverage=0.0,
        staff_hours=0.0,
        status=res["status"],
        optimal=False,
        budget_hours=budget,
        extra={"infeasible": True},
    )
