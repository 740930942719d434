"""The documented 24/7 vs part-time comparison (docs/staffing.md), as code.

``python -m rtcc_geo.staffing.report --store DIR [--source philadelphia]
[--from 2024-01-01 --to 2025-01-01] [--operators 4,6,8] [--weights FILE]
[--handle-minutes 20] [--same-every-day]`` prints the Markdown
table; ``tests/test_staffing_philadelphia.py`` recomputes it and checks the
figures in the doc.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from collections.abc import Sequence

import pandas as pd

from ..config import DATA_DIR
from .api import plan_from_curve
from .workload import workload_curve

IN_PROGRESS_WEIGHTS = DATA_DIR / "staffing" / "weights_in_progress.toml"


def comparison(store, q, operators: Sequence[float] = (4, 6, 8), weights=IN_PROGRESS_WEIGHTS, **kw) -> pd.DataFrame:
    """One row per (operators, option): covered workload share, staff-hours, downtime share.

    ``kw`` go to :func:`rtcc_geo.staffing.plan_from_curve` (service level, handle time, ...);
    the workload curve is computed once.
    Also the unconstrained plans (``operators = None``) for reference.
    """
    rows = []
    curve = workload_curve(store, q, weights, month=kw.pop("month", None), band=kw.pop("band", 0.8))
    for n in list(operators) + [None]:
        p = plan_from_curve(curve, n, **kw)
        for k, o in p.options.items():
            rows.append(
                {
                    "operators": "service level" if n is None else int(n) if float(n).is_integer() else n,
                    "option": k,
                    "covered_share": o.coverage,
                    "answered_in_target": o.extra["answered_in_target"],
                    "staff_hours": o.staff_hours,
                    "downtime_share": p.downtime[k].idle_share,
                    "hours_open": int((o.on_duty > 0).sum()),
                    "max_on_duty": int(o.on_duty.max()),
                    "optimal": o.optimal,
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["weekly_events"] = p.curve.weekly_total
    out.attrs["required_hours"] = int(p.required.sum())
    out.attrs["required_range"] = (int(p.required.min()), int(p.required.max()))
    out.attrs["n_weeks"] = p.curve.n_weeks
    return out


def markdown(tab: pd.DataFrame) -> str:
    lines = [
        "| operators | option | covered workload | staff-hours / week | downtime share | hours open | max on duty |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in tab.itertuples(index=False):
        flag = "" if r.optimal else " (time limit: best found, not proven optimal)"
        lines.append(
            f"| {r.operators} | {r.option}{flag} | {r.covered_share:.1%} | {r.staff_hours:.0f} | "
            f"{r.downtime_share:.1%} | {r.hours_open} | {r.max_on_duty} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..store import open_store
    from ..store.base import Query

    ap = argparse.ArgumentParser(
        prog="python -m rtcc_geo.staffing.report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--store", default=None)
    ap.add_argument("--db", default=None)
    ap.add_argument("--source", default="philadelphia")
    ap.add_argument("--from", dest="start", default="2024-01-01")
    ap.add_argument("--to", dest="end", default="2025-01-01")
    ap.add_argument("--operators", default="4,6,8")
    ap.add_argument("--weights", default=str(IN_PROGRESS_WEIGHTS))
    ap.add_argument("--handle-minutes", type=float, default=20.0)
    ap.add_argument("--same-every-day", action="store_true")
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per solve (default 30)")
    a = ap.parse_args(argv)
    store = open_store(db=a.db, store_dir=a.store)
    ops = [float(x) for x in a.operators.split(",")]
    tab = comparison(
        store,
        Query(source=a.source, start=a.start, end=a.end),
        ops,
        weights=Path(a.weights),
        handle_minutes=a.handle_minutes,
        same_every_day=a.same_every_day,
        time_limit=a.time_limit,
    )
    print(
        f"weekly events {tab.attrs['weekly_events']:.1f}, weeks {tab.attrs['n_weeks']}, "
        f"required operator-hours {tab.attrs['required_hours']} (per hour {tab.attrs['required_range']})"
    )
    print(markdown(tab))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
