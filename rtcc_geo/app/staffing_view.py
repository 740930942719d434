"""Adapter between the planner page and :mod:`rtcc_geo.staffing`.

The page shows whatever the library computes: the workload curve
(``staffing.workload.workload_curve``), operators required per hour
(Erlang C, ``staffing.erlang``) and the shift MILP (``staffing.shifts``), or
the planner-facing ``staffing.api`` when that is installed. Nothing is
computed here beyond unit conversion and layout.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from rtcc_geo.store.base import Query

from .context import AppContext

WEEK_HOURS_PER_OPERATOR = 40.0  # contracted hours a week per operator (head count -> budget)


def defaults() -> dict:
    return {"operators": 12, "shift_lengths": [8, 10, 12], "service_level": 0.9, "target_seconds": 60,
            "handle_minutes": 20.0}


@dataclass(frozen=True)
class Params:
    operators: int
    shift_lengths: tuple[int, ...]
    service_level: float
    target_seconds: float
    handle_minutes: float

    @classmethod
    def from_widgets(cls, operators, shifts, sl, target, handle) -> "Params":
        try:
            ops = int(operators)
            sl = float(sl)
            target = float(target)
            handle = float(handle)
        except (TypeError, ValueError):
            raise ValueError("fill in every input (numbers)") from None
        lens = tuple(sorted({int(h) for h in (shifts or []) if 1 <= int(h) <= 24}))
        if not lens:
            raise ValueError("tick at least one shift length")
        if not 1 <= ops <= 500:
            raise ValueError("operators must be between 1 and 500")
        if not 0.0 < sl < 1.0:
            raise ValueError("service level must be between 0 and 1 (e.g. 0.9)")
        if target <= 0 or handle <= 0:
            raise ValueError("answer time and handle time must be > 0")
        return cls(ops, lens, sl, target, handle)


@dataclass
class PlanView:
    workload: np.ndarray                      # (168,) expected events per local hour of week
    workload_label: str = "events per hour"
    required: np.ndarray | None = None        # (168,) operators required (Erlang C)
    on_duty: np.ndarray | None = None         # (168,) operators on duty under the optimised shifts
    shifts: list[dict] = field(default_factory=list)  # {"start", "length", "count", "label"}
    summary: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)    # other options' on-duty curves {label: (168,)}
    option: str = ""                              # which option's shifts are shown


def _have(mod: str) -> bool:
    try:
        importlib.import_module(mod)
        return True
    except Exception:  # noqa: BLE001 - half-written module = not there yet
        return False


def _query(ctx: AppContext) -> Query:
    """The last 52 weeks of data (the planning base period)."""
    import pandas as pd

    lo, hi = ctx.date_range
    if hi is None:
        return Query(source=ctx.source)
    end = pd.Timestamp(hi) + pd.Timedelta(days=1)
    start = max(pd.Timestamp(lo), end - pd.Timedelta(weeks=52))
    return Query(source=ctx.source, start=start.strftime("%Y-%m-%d"), end=end.strftime("%Y-%m-%d"))


def run(ctx: AppContext, p: Params) -> PlanView:
    key = ("plan", p)
    return ctx.cache.get(key, lambda: _run(ctx, p))


def _curve(ctx: AppContext):
    from rtcc_geo.staffing.workload import workload_curve

    return ctx.cache.get(("workload",), lambda: workload_curve(ctx.store, _query(ctx)))


def _run(ctx: AppContext, p: Params) -> PlanView:
    if _have("rtcc_geo.staffing.api"):
        return _run_api(ctx, p)
    if not _have("rtcc_geo.staffing.workload"):
        # Only the raw hour-of-week counts from the store until the staffing module lands.
        c = ctx.store.counts(7, ("hour_of_week", "week"), _query(ctx))
        w = np.zeros(168)
        weeks = max(c["week"].nunique(), 1) if len(c) else 1
        np.add.at(w, c["hour_of_week"].to_numpy(np.int64), c["n"].to_numpy("float64"))
        return PlanView(workload=w / weeks, workload_label="incidents per hour (mean week)",
                        summary=f"{w.sum() / weeks:,.0f} incidents a week", note="staffing module not installed")
    return PlanView(workload=np.asarray(_curve(ctx).expected), note="staffing planner API not installed")


def _shift_rows(df) -> list[dict]:
    return [{"start": int(r["start"]), "length": int(r["length"]), "count": int(r["count"]),
             "label": f"{r['day']} {int(r['start_hour']):02d}:00 +{int(r['length'])}h"}
            for _, r in df.iterrows()] if df is not None and len(df) else []


def _run_api(ctx: AppContext, p: Params) -> PlanView:
    """``rtcc_geo.staffing.plan``: workload curve, Erlang-C requirement, shift MILP."""
    from rtcc_geo.staffing.api import plan

    sp = plan(ctx.store, _query(ctx), operators=p.operators, service_level=p.service_level,
              target_seconds=p.target_seconds, handle_minutes=p.handle_minutes,
              shift_lengths=p.shift_lengths, time_limit=20.0)
    option = "24/7" if "24/7" in sp.options else next(iter(sp.options))
    o = sp.options[option]
    view = PlanView(workload=np.asarray(sp.curve.expected, dtype="float64"),
                    workload_label="expected events per hour",
                    required=np.asarray(sp.required, dtype=np.int64),
                    on_duty=np.asarray(o.on_duty, dtype=np.int64),
                    shifts=_shift_rows(sp.shifts.get(option)), option=option)
    cov = ", ".join(f"{k}: {100 * v:.1f}%" for k, v in sp.coverage.items())
    view.summary = (f"{sp.curve.weekly_total:,.0f} events a week · peak {int(view.required.max())} operators "
                    f"required · {p.operators} operators cover {cov} of the workload")
    view.note = (f"Shifts of the {option} option (HiGHS: {o.status}); {o.staff_hours:,.0f} operator-hours a week; "
                 f"downtime {100 * sp.downtime[option].idle_share:.0f}% of staffed hours.")
    view.extra = {k: np.asarray(v.on_duty, dtype=np.int64) for k, v in sp.options.items() if k != option}
    return view
