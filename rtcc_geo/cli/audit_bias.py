"""``rtcc-geo audit-bias``: where a plan's patrol minutes go, against who lives there."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from .. import defaults as D
from .common import UserError, add_json_arg, add_store_args, emit_json, store_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audit-bias",
        help="fairness audit of patrol plans: dosage by district and census tract against population",
        description=(
            "Audit patrol plans for a period: patrol minutes by police district and by census tract against "
            "residents (areal join of H3 cells to tracts), tracts whose minutes per resident exceed --multiple "
            "x the median of dosed tracts (a warning; 'rtcc-geo deploy --max-dose-multiple' caps it), "
            "incidents reported by victims vs enforcement-driven ones (drugs, disorder, warrants) city-wide and "
            "in the patrolled cells, and how concentrated the plans are over time (Jaccard overlap of the "
            "patrolled cells day to day). Audit existing plans (--plan, from 'rtcc-geo deploy --out-csv') or "
            "make the default plans for a week (--week). See docs/forecast.md."
        ),
    )
    add_store_args(p)
    p.add_argument("--source", default="philadelphia", help="agency/source in the store (default philadelphia)")
    p.add_argument(
        "--plan",
        metavar="CSV",
        action="append",
        default=None,
        help="a plan from 'rtcc-geo deploy --out-csv' (its _schedule.csv beside it); repeatable",
    )
    p.add_argument(
        "--week",
        metavar="DATE",
        default=None,
        help="make and audit one plan a day for the 7 days from DATE (local), e.g. 2024-12-02",
    )
    p.add_argument("--units", type=int, default=8, help="units per shift with --week (default 8)")
    p.add_argument("--shift-start-hour", type=float, default=16.0, help="daily shift start with --week (default 16)")
    p.add_argument("--shift-hours", type=float, default=8.0, help="shift length with --week (default 8)")
    p.add_argument(
        "--category", default=D.DEPLOY_TARGET, help=f"forecast target of the --week plans (default {D.DEPLOY_TARGET})"
    )
    p.add_argument(
        "--model", default=D.DEPLOY_MODEL, help=f"forecast model of the --week plans (default {D.DEPLOY_MODEL})"
    )
    p.add_argument("--spacing-m", type=float, default=500.0, help="spacing of the --week plans' areas (default 500 m)")
    p.add_argument(
        "--max-dose-multiple",
        type=float,
        default=None,
        metavar="K",
        help="make the --week plans with this dosage cap (see 'rtcc-geo deploy')",
    )
    p.add_argument(
        "--compare-enforcement",
        action="store_true",
        help="with --week, also plan with enforcement-driven incidents included (target 'all') and report what changes",
    )
    p.add_argument(
        "--multiple",
        type=float,
        default=3.0,
        help="warn when a tract's minutes per resident exceed this multiple of the median (default 3)",
    )
    p.add_argument(
        "--min-residents",
        type=float,
        default=500.0,
        help="residents floor per tract in the per-resident rates (default 500)",
    )
    p.add_argument("--res", type=int, default=10, help="H3 resolution of the plans (default 10)")
    p.add_argument(
        "--tracts",
        metavar="FILE",
        default=None,
        help="census tracts with GEOID and total_pop (default: the agency's census_tracts_pop.geojson)",
    )
    p.add_argument("--out-csv", metavar="FILE", help="write the by-tract table here")
    add_json_arg(p)
    p.set_defaults(func=_audit)


def _read_plans(paths: list[str]) -> tuple[pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    from ..fairness import plan_minutes

    frames, days = [], []
    for f in paths:
        p = Path(f)
        s = p.with_name(p.stem + "_schedule.csv")
        if not p.exists() or not s.exists():
            raise UserError(f"--plan {f}: need the plan CSV and its {s.name} beside it (rtcc-geo deploy --out-csv)")
        cells = pd.read_csv(p)
        sched = pd.read_csv(s, parse_dates=["start", "end"])
        if not {"centre", "cell"} <= set(cells.columns) or not {"area", "minutes"} <= set(sched.columns):
            raise UserError(f"--plan {f}: not a deploy plan (needs centre, cell; schedule area, minutes)")
        from ..export import cell_int  # deploy --out-csv writes textual H3 ids

        for col in ("cell", "centre"):
            cells[col] = cell_int(cells[col])
        label = str(cells["date"].iloc[0]) if "date" in cells.columns and len(cells) else p.stem
        frames.append(plan_minutes(cells, sched).assign(plan=label))
        if len(sched):
            days += [sched["start"].min(), sched["end"].max()]
    if not days:
        raise UserError("the plans have no visits to audit")
    return pd.concat(frames, ignore_index=True), min(days), max(days)


def _audit(args: argparse.Namespace) -> int:
    from ..fairness import audit_minutes, audit_week, districts_of, load_tracts

    if bool(args.plan) == bool(args.week):
        raise UserError("give either --plan CSV (repeatable) or --week DATE")
    if args.multiple <= 0:
        raise UserError("--multiple must be positive")
    try:
        tracts = load_tracts(args.source, args.tracts)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    store = store_from_args(args)
    districts = districts_of(args.source)
    cmp = None
    try:
        if args.week:
            wa = audit_week(
                store,
                args.source,
                args.week,
                tracts=tracts,
                districts=districts,
                units=args.units,
                shift_start_hour=args.shift_start_hour,
                shift_hours=args.shift_hours,
                category=args.category,
                model=args.model,
                res=args.res,
                spacing_m=args.spacing_m,
                max_dose_multiple=args.max_dose_multiple,
                compare_enforcement=args.compare_enforcement,
                multiple=args.multiple,
                min_residents=args.min_residents,
            )
            res, cmp = wa.audit, wa.with_enforcement
            t0, t1 = wa.week_start, wa.week_start + pd.Timedelta(days=7)
        else:
            minutes, t0, t1 = _read_plans(args.plan)
            res = audit_minutes(
                store,
                args.source,
                minutes,
                t0,
                t1,
                tracts,
                districts=districts,
                res=args.res,
                multiple=args.multiple,
                min_residents=args.min_residents,
            )
    except ValueError as e:
        raise UserError(str(e)) from None
    if args.out_csv:
        res.by_tract.to_csv(args.out_csv, index=False)
    if args.json:
        emit_json(
            {
                "source": args.source,
                "from": str(t0),
                "to": str(t1),
                **res.summary,
                "warnings": res.warnings,
                "by_district": res.by_district.to_dict("records"),
                "by_tract_top": res.by_tract.head(20).to_dict("records"),
                "reporting": res.reporting.to_dict("records"),
                "concentration": [
                    {**r, "plan": str(r["plan"]), "previous": str(r["previous"])}
                    for r in res.concentration.to_dict("records")
                ],
                "with_enforcement": cmp,
                "out_csv": args.out_csv,
            }
        )
    else:
        print(res.text())
        print("\nMost-dosed tracts:")
        print(
            res.by_tract.head(10)[["tract", "population", "minutes", "per_1000", "ratio_to_median"]].to_string(
                index=False, float_format=lambda x: f"{x:,.1f}"
            )
        )
        if cmp is not None:
            print(
                f"\nIncluding enforcement-driven incidents (target 'all'): patrolled cells overlap "
                f"{cmp['cell_overlap_jaccard']:.2f} (Jaccard) with the default plans; "
                f"enforcement-driven share in patrolled cells {cmp['enforcement_share_in_patrolled_cells']:.1%}; "
                f"tracts over the limit {cmp['over_limit_tracts']}; top-10-tract share {cmp['top10_share']:.0%}."
            )
    return 0 if np.isfinite(res.summary["median_per_1000"]) else 1
