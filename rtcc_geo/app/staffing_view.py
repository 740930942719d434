"""Adapter between the planner page and :mod:`rtcc_geo.staffing`.

The page shows what the library computes; this module validates the page's
inputs (plain-language messages), caches the workload curve per base period
and weights (the slow, data-reading step) and the plan per inputs, and turns
the plan into the figures and sentences the page prints. The solve is the
library's fast mode (``plan_from_curve(fast=True)``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rtcc_geo.schema import CATEGORIES
from rtcc_geo.store.base import Query

from .context import AppContext

SHIFT_CHOICES = (4, 6, 8, 10, 12)


def default_weights() -> dict:
    from rtcc_geo.staffing.workload import load_offense_weights, load_weights

    w = load_weights()
    return {"weights": {c: float(w.get(c, 0.0)) for c in CATEGORIES}, "offense": load_offense_weights()}


def base_period(ctx: AppContext) -> tuple[str | None, str | None]:
    """The last 52 weeks of data (the default base period), as local dates [from, to)."""
    lo, hi = ctx.date_range
    if hi is None:
        return None, None
    end = pd.Timestamp(hi) + pd.Timedelta(days=1)
    start = max(pd.Timestamp(lo), end - pd.Timedelta(weeks=52))
    return start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")


def defaults(ctx: AppContext | None = None) -> dict:
    start, end = base_period(ctx) if ctx is not None else (None, None)
    return {
        "operators": 12,
        "shift_lengths": [8, 10, 12],
        "service_level": 90,
        "target_seconds": 60,
        "handle_minutes": 20.0,
        "part_time": False,
        "daily": True,
        "start": start,
        "end": end,
        "crowd": None,
        "event_hours": 4,
    }


@dataclass(frozen=True)
class Params:
    """The page's inputs, validated (see :meth:`from_widgets`)."""

    operators: int
    shift_lengths: tuple[int, ...]
    service_level: float  # share, e.g. 0.9
    target_seconds: float
    handle_minutes: float
    part_time: bool = False
    daily: bool = True  # the same shifts every day (a simple roster)
    start: str | None = None
    end: str | None = None
    weights: tuple = ()  # ((category, weight), ...)
    event: tuple | None = None  # (venue name, lon, lat, start "YYYY-MM-DD HH:MM", hours, crowd)

    @classmethod
    def from_widgets(
        cls,
        operators,
        shifts,
        sl,
        target,
        handle,
        part_time=None,
        daily=None,
        start=None,
        end=None,
        weights=None,
        event=None,
        data_range=(None, None),
        max_shift_hours: int = 24,
    ) -> Params:
        """Validate; raises ``ValueError`` with every problem found, one per line."""
        errs = []

        def num(v, what, lo, hi, unit=""):
            try:
                x = float(v)
            except (TypeError, ValueError):
                errs.append(f"{what}: enter a number between {lo:g} and {hi:g}{unit}.")
                return None
            if not (lo <= x <= hi) or not np.isfinite(x):
                errs.append(f"{what}: {x:g} is outside {lo:g}–{hi:g}{unit}.")
                return None
            return x

        ops = num(operators, "Operators", 1, 500)
        if ops is not None and not float(ops).is_integer():
            errs.append("Operators: a whole number of people.")
        slv = num(sl, "Service level", 50, 99, " %")
        tgt = num(target, "Answer within", 5, 3600, " s")
        hdl = num(handle, "Handle time", 0.5, 240, " min")
        lens = tuple(sorted({int(h) for h in (shifts or [])}))
        if not lens:
            errs.append("Shift lengths: tick at least one.")
        elif max(lens) > max_shift_hours:
            errs.append(f"Shift lengths: the agency's rules allow at most {max_shift_hours} h a shift.")
        lo_d, hi_d = data_range
        s = e = None
        try:
            s, e = pd.Timestamp(start), pd.Timestamp(end)
        except (TypeError, ValueError):
            errs.append("Base period: give two dates (from, to).")
        if s is not None and e is not None and not (pd.isna(s) or pd.isna(e)):
            if e - s < pd.Timedelta(days=14):
                errs.append("Base period: at least two weeks (from a Monday to a Monday gives whole weeks).")
            if lo_d and (e <= pd.Timestamp(lo_d) or s > pd.Timestamp(hi_d)):
                errs.append(f"Base period: the data runs {lo_d} to {hi_d}; pick dates inside it.")
        elif s is not None:
            errs.append("Base period: give two dates (from, to).")
        w = {}
        for c, v in (weights or {}).items():
            x = num(v, f"Weight of {c}", 0, 5)
            if x is not None:
                w[c] = x
        if weights and not any(v > 0 for v in w.values()) and not errs:
            errs.append("Weights: at least one category must weigh more than 0, or there is no RTCC work.")
        ev = None
        if event is not None:
            venue, lon, lat, when, hours, crowd = event
            if crowd not in (None, "", 0):
                cr = num(crowd, "Expected crowd", 100, 2_000_000, " people")
                hrs = num(hours, "Event length", 1, 72, " h")
                try:
                    t = pd.Timestamp(when)
                    if pd.isna(t):
                        raise ValueError
                except (TypeError, ValueError):
                    errs.append("Event start: a local date and time, e.g. 2025-09-14 13:00.")
                    t = None
                if lon is None or lat is None:
                    errs.append("Event place: choose a venue.")
                if cr is not None and hrs is not None and t is not None and lon is not None:
                    ev = (str(venue), float(lon), float(lat), t.strftime("%Y-%m-%d %H:%M"), int(hrs), float(cr))
        if errs:
            raise ValueError("\n".join(errs))
        assert s is not None and e is not None  # both parsed, or errs said why
        return cls(
            int(ops),
            lens,
            slv / 100.0,
            tgt,
            hdl,
            bool(part_time),
            bool(daily),
            s.strftime("%Y-%m-%d"),
            e.strftime("%Y-%m-%d"),
            tuple(sorted(w.items())),
            ev,
        )


@dataclass
class Result:
    plan: object  # rtcc_geo.staffing.StaffingPlan
    params: Params
    event: object = None  # EventLoad with extra operators, or None
    seconds: float = 0.0  # this re-plan's wall time (curve cached or not)
    curve_cached: bool = False


def _weights_arg(p: Params) -> dict | None:
    if not p.weights:
        return None
    d = dict(p.weights)
    d["offense"] = default_weights()["offense"]  # the agency file's offense refinements stay
    return d


def _query(ctx: AppContext, p: Params) -> Query:
    return Query(source=ctx.source, start=p.start, end=p.end)


def curve(ctx: AppContext, p: Params):
    """The workload curve of the base period and weights: cached per period and weights,
    and the period's incidents (the step that reads the store) cached per period, so a
    change of weights only re-weighs them."""
    from rtcc_geo.staffing.workload import workload_curve

    q = _query(ctx, p)

    def read():
        return ctx.store.incidents(
            q.with_(include_unknown_time=True),
            columns=["occurred_from", "occurred_to", "time_known", "category", "offense_raw"],
        )

    def make():
        inc = ctx.cache.get(("staff-incidents", ctx.source, p.start, p.end), read)
        return workload_curve(ctx.store, q, _weights_arg(p), incidents=inc)

    return ctx.cache.get(("staff-curve", ctx.source, p.start, p.end, p.weights), make)


def run(ctx: AppContext, p: Params) -> Result:
    key = ("staff-plan", p)
    t0 = time.perf_counter()
    hit = [True]

    def make():
        hit[0] = False
        return _run(ctx, p)

    r = ctx.cache.get(key, make)
    if not hit[0]:
        r.seconds = time.perf_counter() - t0
    return r


def _run(ctx: AppContext, p: Params) -> Result:
    from rtcc_geo.staffing.api import plan_from_curve
    from rtcc_geo.staffing.events import crowd_event, crowd_settings, extra_staffing

    key = ("staff-curve", ctx.source, p.start, p.end, p.weights)
    cached = key in ctx.cache._d
    c = curve(ctx, p)
    sp = plan_from_curve(
        c,
        p.operators,
        service_level=p.service_level,
        target_seconds=p.target_seconds,
        handle_minutes=p.handle_minutes,
        shift_lengths=p.shift_lengths,
        part_time=p.part_time,
        same_every_day=p.daily,
        fast=True,
        time_limit=1.0,
    )
    ev = None
    if p.event is not None:
        venue, lon, lat, when, hours, crowd = p.event
        cs = crowd_settings(ctx.source)
        ev = ctx.cache.get(
            ("staff-event", ctx.source, p.start, p.end, p.weights, p.event[:5]),
            lambda: crowd_event(
                ctx.store,
                _query(ctx, p),
                _weights_arg(p),
                lon,
                lat,
                when,
                hours,
                0.0,
                rate=cs["rate"],
                radius_m=cs["radius_m"],
            ),
        )
        import copy

        ev = copy.deepcopy(ev)
        ev.uplift = np.full(len(ev.baseline), crowd / 1e4 * cs["rate"])
        ev.expected = ev.baseline + ev.uplift
        ev.extra.update(crowd=crowd, rate=cs["rate"], venue=venue)
        extra_staffing(
            ev,
            c.expected,
            handle_minutes=p.handle_minutes,
            service_level=p.service_level,
            target_seconds=p.target_seconds,
        )
    return Result(plan=sp, params=p, event=ev, curve_cached=cached)


def opening_hours(on_duty: np.ndarray) -> str:
    """'around the clock' or the daily opening window(s), e.g. 'daily 07:00–03:00' / per day."""
    on = np.asarray(on_duty) > 0
    if on.all():
        return "around the clock (168 of 168 hours)"
    days = []
    for d in range(7):
        h = on[d * 24 : (d + 1) * 24]
        days.append(_windows(h))
    n = int(on.sum())
    if len(set(days)) == 1:
        return f"daily {days[0]} ({n} of 168 hours)"
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    return "; ".join(f"{names[i]} {w}" for i, w in enumerate(days)) + f" ({n} of 168 hours)"


def _windows(h: np.ndarray) -> str:
    if not h.any():
        return "closed"
    if h.all():
        return "00:00–24:00"
    # start at a closed hour so a window across midnight is one piece
    z = int(np.argmin(h))
    out, s = [], None
    for i in range(1, 25):
        k = (z + i) % 24
        if h[k] and s is None:
            s = k
        if not h[k] and s is not None:
            out.append(f"{s:02d}:00–{k:02d}:00")
            s = None
    if s is not None:
        out.append(f"{s:02d}:00–{z:02d}:00")
    return ", ".join(out)
