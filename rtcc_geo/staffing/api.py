"""One call for the planner: workload -> operators needed -> shift options -> downtime.

>>> from rtcc_geo.store import open_store, Query
>>> from rtcc_geo.staffing import plan
>>> p = plan(open_store(), Query(source="philadelphia", start="2024-01-01", end="2025-01-01"),
...          operators=6)
>>> p.coverage            # {"24/7": 0.71, "part-time": 0.83}
>>> p.shifts["part-time"] # start, day, start_hour, length, count

``operators=None`` asks for the cheapest plans that meet the service level
(24/7: every hour; part-time: ``min_coverage`` of the workload); an operator
count asks for the plans that cover the most workload with that head count
(``operators x hours_per_operator`` staff-hours a week).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .downtime import Downtime, downtime
from .erlang import offered_load, required_agents, utilisation_agents
from .erlang import service_level as erlang_sl
from .events import EventLoad, event_load, extra_staffing
from .roster import Roster, build_roster, load_rules
from .shifts import ShiftPlan, optimise_shifts
from .workload import WorkloadCurve, workload_curve

__all__ = [
    "DEFAULT_HOURS_PER_OPERATOR",
    "PART_TIME_SHIFT_HOURS",
    "StaffingPlan",
    "erlang_gain",
    "plan",
    "plan_from_curve",
]

#: Length of the optional part-time shift.
PART_TIME_SHIFT_HOURS = 4
#: Weekly hours one operator works: 42 is the average of the 12-hour
#: 4-on/4-off (or 2-2-3) rotas 24/7 centres run, so 4 operators staff one seat
#: around the clock (168 h). Leave, training and sickness are not deducted;
#: lower it to the agency's own net availability.
DEFAULT_HOURS_PER_OPERATOR = 42.0


@dataclass
class StaffingPlan:
    """Everything the planner page shows.

    Attributes
    ----------
    curve : :class:`~rtcc_geo.staffing.workload.WorkloadCurve` (events per hour of week).
    load : (168,) offered load in erlangs (events x handle hours).
    required : (168,) operators the service level needs (Erlang C).
    required_rule : (168,) operators by the utilisation rule (if asked) else ``None``.
    options : ``{"24/7": ShiftPlan, "part-time": ShiftPlan}``.
    shifts : ``{option: DataFrame}`` (start, day, start_hour, length, count).
    coverage : ``{option: covered share of workload}``.
    downtime : ``{option: Downtime}``.
    event : :class:`~rtcc_geo.staffing.events.EventLoad` when an event was given.
    params : the inputs used.
    rosters : ``{option: Roster}``: the shifts as weekly lines within the agency's rules.
    """

    curve: WorkloadCurve
    load: np.ndarray
    required: np.ndarray
    required_rule: np.ndarray | None
    options: dict[str, ShiftPlan]
    shifts: dict[str, pd.DataFrame]
    coverage: dict[str, float]
    downtime: dict[str, Downtime]
    event: EventLoad | None
    params: dict = field(default_factory=dict)
    rosters: dict[str, Roster] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """One row per option: coverage, staff-hours, downtime share, optimality."""
        rows = []
        for k, o in self.options.items():
            d = self.downtime[k]
            rows.append(
                {
                    "option": k,
                    "coverage": o.coverage,
                    "answered_in_target": o.extra.get("answered_in_target", float("nan")),
                    "staff_hours": o.staff_hours,
                    "downtime_share": d.idle_share,
                    "idle_hours": d.idle_hours,
                    "max_on_duty": int(o.on_duty.max()),
                    "hours_open": int((o.on_duty > 0).sum()),
                    "events_closed": self.events_closed(k),
                    "optimal": o.optimal,
                    "status": o.status,
                }
            )
        return pd.DataFrame(rows)

    def events_closed(self, option: str) -> float:
        """Expected RTCC-eligible events a week that fall in hours with nobody on duty."""
        lam = self.curve.upper if self.params.get("plan_on") == "upper" else self.curve.expected
        return float(np.asarray(lam)[self.options[option].on_duty == 0].sum())

    def to_dict(self) -> dict:
        """The ``rtcc-geo staff --json`` document."""
        c = self.curve
        out: dict[str, Any] = {
            "params": self.params,
            "weekly_events": round(c.weekly_total, 4),
            "n_weeks": c.n_weeks,
            "weeks": [str(c.weeks[0].date()), str(c.weeks[-1].date())],
            "season_factor": round(c.season_factor, 4),
            "curve": [round(float(v), 4) for v in c.expected],
            "curve_lower": [round(float(v), 4) for v in c.lower],
            "curve_upper": [round(float(v), 4) for v in c.upper],
            "required": [int(v) for v in self.required],
            "options": {},
        }
        if self.required_rule is not None:
            out["required_rule"] = [int(v) for v in self.required_rule]
        for k, o in self.options.items():
            d = o.to_dict()
            d["downtime_share"] = round(self.downtime[k].idle_share, 6)
            d["downtime"] = self.downtime[k].to_dict()
            d["events_closed"] = round(self.events_closed(k), 4)
            if k in self.rosters:
                d["roster"] = self.rosters[k].to_dict()
            out["options"][k] = d
        # the plan's headline (the 24/7 option; each option carries its own in "options")
        main = "24/7" if "24/7" in self.options else next(iter(self.options))
        out["roster_option"] = main
        out["staff_hours"] = float(self.options[main].staff_hours)
        if main in self.rosters:
            out["roster"] = self.rosters[main].to_dict()
        out["coverage"] = {k: round(v, 6) for k, v in self.coverage.items()}
        if self.event is not None:
            out["event"] = self.event.to_dict()
        return out


def erlang_gain(
    workload: np.ndarray, load: np.ndarray, k_max: int, target_seconds: float, handle_minutes: float
) -> np.ndarray:
    """(168, k_max) events newly picked up within the target by the k-th operator:
    :math:`\\lambda_h (SL_h(k) - SL_h(k-1))`, :math:`SL_h(0) = 0`."""
    k = np.arange(0, k_max + 1)[None, :]
    sl = erlang_sl(k, np.asarray(load, float)[:, None], target_seconds, handle_minutes * 60.0)
    sl = np.maximum.accumulate(sl, axis=1)  # guard round-off: SL never falls as operators are added
    return np.asarray(workload, float)[:, None] * np.diff(sl, axis=1)


def plan_from_curve(
    curve: WorkloadCurve,
    operators: float | None = None,
    *,
    service_level: float = 0.9,
    target_seconds: float = 60.0,
    handle_minutes: float = 20.0,
    shift_lengths: Sequence[int] = (8, 10, 12),
    part_time: bool = False,
    hours_per_operator: float = DEFAULT_HOURS_PER_OPERATOR,
    min_coverage: float = 0.9,
    plan_on: str = "expected",
    utilisation: float | None = None,
    max_occupancy: float | None = None,
    starts: Sequence[int] | None = None,
    min_on_duty: int = 1,
    coverage_rule: str = "erlang",
    same_every_day: bool = False,
    tasks: str | Path | list[dict] | None = None,
    event: EventLoad | None = None,
    time_limit: float = 30.0,
    fast: bool = False,
    rules=None,
) -> StaffingPlan:
    """:func:`plan` on a workload curve already computed (see :func:`plan`)."""
    rr = load_rules(rules)
    if part_time and not rr.part_time:
        raise ValueError("the agency's roster rules have no part-time staff (part_time = false in its rules file)")
    rr = replace(rr, part_time=bool(part_time))
    if coverage_rule not in ("erlang", "pro_rata"):
        raise ValueError("coverage_rule is 'erlang' (events picked up within the target time) or 'pro_rata'")
    if plan_on not in ("expected", "upper"):
        raise ValueError("plan_on is 'expected' (the mean week) or 'upper' (the band's upper edge)")
    if operators is not None and not operators > 0:
        raise ValueError(f"operators must be a positive head count (got {operators})")
    if hours_per_operator <= 0 or hours_per_operator > 168:
        raise ValueError("hours_per_operator is weekly hours per operator, in (0, 168]")
    lam = curve.upper if plan_on == "upper" else curve.expected
    load = offered_load(lam, handle_minutes)
    if utilisation is not None:
        req = utilisation_agents(load, utilisation)
        rule = req
    else:
        req = required_agents(load, service_level, target_seconds, handle_minutes * 60.0, max_occupancy=max_occupancy)
        rule = None
    gain = None
    if coverage_rule == "erlang":
        gain = erlang_gain(lam, load, int(np.max(req, initial=0)) + 2, target_seconds, handle_minutes)
    lengths = tuple(sorted({int(x) for x in shift_lengths} | ({PART_TIME_SHIFT_HOURS} if part_time else set())))
    if not part_time:  # shifts as short as part-time ones need part-time staff
        lengths = tuple(L for L in lengths if L > rr.part_time_shift_max_hours) or lengths
    too_long = [L for L in lengths if L > rr.max_shift_hours]
    if too_long:
        raise ValueError(
            f"shift length(s) {too_long} h break the agency's rule of at most {rr.max_shift_hours} h a shift"
        )
    budget = None if operators is None else float(operators) * float(hours_per_operator)
    kw: dict[str, Any] = {
        "shift_lengths": lengths,
        "starts": None if starts is None else [d * 24 + s for d in range(7) for s in starts],
        "time_limit": time_limit,
        "min_on_duty": min_on_duty,
        "gain": gain,
        "same_every_day": same_every_day,
        "fast": fast,
        "max_short_share": rr.part_time_max_share if part_time else None,
        "short_hours": rr.part_time_shift_max_hours,
    }
    if budget is None:
        opts = {
            "24/7": optimise_shifts(req, lam, always_open=True, **kw),
            "part-time": optimise_shifts(req, lam, min_coverage=min_coverage, **kw),
        }
    else:
        opts = {
            "24/7": optimise_shifts(req, lam, budget_hours=budget, always_open=True, **kw),
            "part-time": optimise_shifts(req, lam, budget_hours=budget, **kw),
        }
    a, b = opts["24/7"], opts["part-time"]
    if not a.extra.get("infeasible") and (
        (budget is not None and b.coverage < a.coverage - 1e-9)
        or (budget is None and a.staff_hours < b.staff_hours and a.coverage >= min_coverage - 1e-9)
    ):
        # a heuristic (fast mode) can miss that the always-open plan is also the best part-time
        # plan: it is a feasible part-time plan, so the part-time option is never worse
        opts["part-time"] = replace(a, option="part-time", extra=dict(a.extra, from_24_7=True))
    elif (
        not b.extra.get("infeasible")
        and np.all(b.on_duty >= min_on_duty)
        and (
            (budget is not None and a.coverage < b.coverage - 1e-9)
            or (budget is None and b.staff_hours < a.staff_hours and np.all(b.on_duty >= np.ceil(req - 1e-9)))
        )
    ):
        # likewise, a part-time plan that is open every hour is a 24/7 plan
        opts["24/7"] = replace(b, option="24/7", extra=dict(b.extra, from_part_time=True))
    dts = {k: downtime(o.on_duty, lam, req, handle_minutes, o.shifts, tasks) for k, o in opts.items()}
    for o in opts.values():
        # the Erlang view of the same plan: share of events picked up within the target time
        sl = erlang_sl(o.on_duty, load, target_seconds, handle_minutes * 60.0)
        o.extra["answered_in_target"] = float((lam * sl).sum() / lam.sum()) if lam.sum() > 0 else 1.0
    if event is not None:
        extra_staffing(
            event, lam, handle_minutes=handle_minutes, service_level=service_level, target_seconds=target_seconds
        )
    params = {
        "operators": operators,
        "service_level": service_level,
        "target_seconds": target_seconds,
        "handle_minutes": handle_minutes,
        "shift_lengths": list(lengths),
        "part_time": part_time,
        "hours_per_operator": hours_per_operator,
        "budget_hours": budget,
        "min_coverage": None if budget is not None else min_coverage,
        "plan_on": plan_on,
        "utilisation": utilisation,
        "max_occupancy": max_occupancy,
        "month": curve.month,
        "weights": curve.weights,
        "offense_weights": curve.extra.get("offense_weights", {}),
        "coverage_rule": coverage_rule,
        "same_every_day": same_every_day,
        "mode": "max_coverage" if budget is not None else "min_staff_hours",
        "solver": "fast" if fast else "exact",
        "weekly_events": round(float(curve.weekly_total), 4),
        "weeks": [str(curve.weeks[0].date()), str(curve.weeks[-1].date())] if curve.n_weeks else [],
    }
    rosters = {k: build_roster(o.shifts, rr) for k, o in opts.items() if len(o.shifts)}
    for k, ro in rosters.items():
        # each operator's expected downtime: the idle share of every hour they work, summed
        n = opts[k].on_duty.astype(float)
        f = np.where(n > 0, dts[k].idle / np.maximum(n, 1e-12), 0.0)
        ro.lines["downtime_hours"] = [
            round(float(sum(f[(s + np.arange(L)) % 168].sum() for s, L in ro.by_operator[op])), 1)
            for op in ro.lines["operator"]
        ]
    return StaffingPlan(
        curve=curve,
        load=load,
        required=np.asarray(req, int),
        required_rule=rule,
        options=opts,
        shifts={k: o.shifts for k, o in opts.items()},
        coverage={k: o.coverage for k, o in opts.items()},
        downtime=dts,
        event=event,
        params=params,
        rosters=rosters,
    )


def plan(
    store,
    q=None,
    operators: float | None = None,
    *,
    service_level: float = 0.9,
    target_seconds: float = 60.0,
    handle_minutes: float = 20.0,
    shift_lengths: Sequence[int] = (8, 10, 12),
    part_time: bool = False,
    hours_per_operator: float = DEFAULT_HOURS_PER_OPERATOR,
    min_coverage: float = 0.9,
    weights: Mapping[str, float] | str | Path | None = None,
    month: int | None = None,
    band: float = 0.8,
    plan_on: str = "expected",
    utilisation: float | None = None,
    max_occupancy: float | None = None,
    starts: Sequence[int] | None = None,
    coverage_rule: str = "erlang",
    same_every_day: bool = False,
    calls_q=None,
    calls_weights: Mapping[str, float] | str | Path | None = None,
    tasks: str | Path | list[dict] | None = None,
    event: dict | None = None,
    time_limit: float = 30.0,
    fast: bool = False,
    rules=None,
) -> StaffingPlan:
    """Staffing plan for the incidents ``q`` selects in ``store``.

    Parameters
    ----------
    operators : fixed head count (maximise covered workload); ``None`` = the
        cheapest plans meeting the service level.
    service_level, target_seconds : e.g. 0.9 and 60 - 90 % of events picked up within a minute.
    handle_minutes : mean operator minutes per RTCC event.
    shift_lengths, part_time : shift lengths in hours; ``part_time`` adds 4-hour shifts.
    hours_per_operator : weekly hours per operator (budget = operators x this).
    min_coverage : share of workload the part-time option must cover (no ``operators``).
    weights : category weights (mapping or TOML); default ``data/staffing/weights_default.toml``.
    month : plan for this month's seasonal level (1..12); ``None`` = annual average.
    plan_on : ``"expected"`` or ``"upper"`` (the uncertainty band's upper edge).
    utilisation : use the rule ``ceil(A / utilisation)`` instead of Erlang C.
    starts : allowed shift start hours of day (default every hour).
    same_every_day : one daily pattern of shifts worked every day (roster-friendly;
        costs some coverage against a free weekly pattern).
    coverage_rule : how an hour's staffing covers its workload: ``"erlang"``
        (default) counts the events picked up within ``target_seconds``,
        :math:`\\lambda_h SL_h(n_h)`; ``"pro_rata"`` counts
        :math:`\\lambda_h \\min(1, n_h / r_h)`. "Coverage" in every option is
        this share of the week's workload, and the optimiser maximises it.
    calls_q : a query for calls for service held as another source.
    event : ``{"area": polygon | {"lon", "lat", "radius_m"}, "start", "end",
        "comparables": [(start, end), ...], "weeks": 8, "uplift_factor": None}``.
    time_limit : seconds per HiGHS solve; a plan stopped by it is the best found,
        flagged ``optimal=False`` with its ``mip_gap`` (very flat or heavily
        understaffed weeks have many near-equal plans and can take long to prove).
    fast : the planner page's mode (:mod:`rtcc_geo.staffing.fast`): a heuristic
        plan polished by a short HiGHS run, with its gap to HiGHS's bound.
    rules : the agency's roster rules (TOML path, mapping or
        :class:`~rtcc_geo.staffing.roster.RosterRules`; default
        ``data/staffing/roster_rules.toml``); the rosters are in ``rosters``.
    """
    from ..scope import Scope

    if isinstance(store, Scope):  # one Scope: its store and query
        store, q = store.store, q if q is not None else store.query
    curve = workload_curve(store, q, weights, month=month, band=band, calls_q=calls_q, calls_weights=calls_weights)
    ev = None
    if event is not None:
        from .events import event_area

        area = event["area"]
        if isinstance(area, Mapping) and "radius_m" in area:
            area = event_area(lon=area["lon"], lat=area["lat"], radius_m=area["radius_m"])
        else:
            area = event_area(polygon=area)
        ev = event_load(
            store,
            area,
            event["start"],
            event["end"],
            q,
            curve.weights,
            weeks=int(event.get("weeks", 8)),
            comparables=event.get("comparables", ()),
            uplift_factor=event.get("uplift_factor"),
        )
    return plan_from_curve(
        curve,
        operators,
        service_level=service_level,
        target_seconds=target_seconds,
        handle_minutes=handle_minutes,
        shift_lengths=shift_lengths,
        part_time=part_time,
        hours_per_operator=hours_per_operator,
        min_coverage=min_coverage,
        plan_on=plan_on,
        utilisation=utilisation,
        max_occupancy=max_occupancy,
        starts=starts,
        coverage_rule=coverage_rule,
        same_every_day=same_every_day,
        tasks=tasks,
        event=ev,
        time_limit=time_limit,
        fast=fast,
        rules=rules,
    )
