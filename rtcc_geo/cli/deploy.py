"""``rtcc-geo deploy``: a patrol plan for one shift (areas per unit, Koper dosage, reasons)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .. import defaults as D
from .common import (
    UserError,
    add_json_arg,
    add_store_args,
    default_source,
    emit_json,
    scope_from_args,
    split_values,
    store_from_args,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="plan a shift: patrol areas per unit, randomised Koper-curve visits, reasons",
        description=(
            "Plan hot-spot patrol for one shift. Forecasts the shift (--model, default additive) for the "
            "target (default all_but_enforcement: drugs, disorder and warrant offences are left out because "
            "they measure police activity, not victimisation; override with --category), then chooses "
            "--units x --areas-per-unit patrol areas (a cell and its --radius ring) that cover the most "
            "forecast crime with a minimum spacing, exactly (a MILP solved by HiGHS). Cells dosed on each "
            "of the last --max-consecutive-days days (from --history) are rested. Each unit gets a "
            "randomised Koper-curve schedule: 12-16 min visits about every 2 h, no fixed pattern (--seed). "
            "Writes the plan as CSV and/or GeoJSON and prints a readable summary; every cell says why it "
            "was chosen (forecast, recent incidents, Gi* hot-spot status and, with the default additive "
            "model, the incidents each term adds). --max-dose-multiple caps the dosage per resident by tract."
        ),
    )
    add_store_args(p)
    p.add_argument("--source", default=None, help="agency/source in the store (default: the store's only source)")
    p.add_argument(
        "--train-from",
        metavar="DATE",
        default=None,
        help="first local day the forecast learns from (default: the first incident)",
    )
    p.add_argument("--shift-start", required=True, help="shift start, local time, e.g. '2024-07-20 16:00'")
    p.add_argument("--shift-hours", type=float, default=D.DEPLOY_SHIFT_HOURS, help="shift length in hours (default 8)")
    p.add_argument("--units", type=int, default=D.DEPLOY_UNITS, help="number of patrol units (default 8)")
    p.add_argument("--areas-per-unit", type=int, default=1, help="patrol areas each unit rotates through (default 1)")
    p.add_argument(
        "--radius",
        type=int,
        default=1,
        help="patrol area = centre cell + this many H3 rings (default 1: 7 cells, ~0.1 km² at res 10)",
    )
    p.add_argument(
        "--spacing",
        type=int,
        default=None,
        help="minimum H3 grid distance between area centres (default 2 x radius + 1, i.e. disjoint)",
    )
    p.add_argument("--spacing-m", type=float, default=None, help="minimum distance between area centres in metres")
    p.add_argument(
        "--district",
        action="append",
        default=None,
        help="restrict to this police district (repeatable; default the whole agency)",
    )
    p.add_argument(
        "--exclude",
        metavar="FILE",
        action="append",
        default=None,
        help="vector file (GeoJSON ...) of places never to patrol: polygons and points (repeatable)",
    )
    p.add_argument("--exclude-cell", metavar="HEX", action="append", default=None, help="an H3 cell never to patrol")
    p.add_argument(
        "--history",
        metavar="CSV",
        default=None,
        help="past plans (columns date, cell or cell_hex) for the consecutive-day cap",
    )
    p.add_argument(
        "--max-consecutive-days",
        type=int,
        default=3,
        help="rest a cell dosed this many days in a row (default 3; 0 = no cap)",
    )
    p.add_argument(
        "--category",
        default=D.DEPLOY_TARGET,
        help="forecast target (default all_but_enforcement; see 'rtcc-geo forecast --help')",
    )
    p.add_argument(
        "--model",
        default=D.DEPLOY_MODEL,
        choices=("naive", "naive365", "seasonal", "prospective", "stkde", "sepp", "learned", "ensemble", "additive"),
        help=f"forecast model (default {D.DEPLOY_MODEL}: every reason then quotes what each term adds)",
    )
    p.add_argument(
        "--max-dose-multiple",
        type=float,
        default=None,
        metavar="K",
        help="cap: no census tract gets more patrol minutes per resident than K x the median of the "
        "dosed tracts (cells of tracts over it are left out and the shift re-planned; "
        "see 'rtcc-geo audit-bias'). Default: no cap",
    )
    p.add_argument("--res", type=int, default=D.DEPLOY_RES, help="H3 resolution (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the randomised schedule (default 0)")
    p.add_argument(
        "--out-csv",
        metavar="FILE",
        help="write the plan's cells (with reasons) as CSV; "
        "the visit schedule goes beside it as FILE stem + '_schedule.csv'",
    )
    p.add_argument("--out-geojson", metavar="FILE", help="write the plan's cells as GeoJSON hexagons")
    add_json_arg(p)
    p.set_defaults(func=_deploy)


def _deploy(args: argparse.Namespace) -> int:
    from ..deploy.api import plan_from_store
    from ..deploy.areas import place_cells
    from ..forecast.data import TARGETS

    if args.category not in TARGETS:
        raise UserError(f"unknown --category {args.category!r}; use one of {', '.join(TARGETS)}")
    if args.units < 1 or args.areas_per_unit < 1 or args.shift_hours <= 0:
        raise UserError("--units, --areas-per-unit and --shift-hours must be positive")
    try:
        t0 = pd.Timestamp(args.shift_start)
    except ValueError as e:
        raise UserError(f"bad --shift-start: {e}") from None
    t1 = t0 + pd.Timedelta(hours=args.shift_hours)
    store = store_from_args(args)
    args.source = default_source(store, args.source)
    eligible = None
    if args.district:
        # The districts' polygons from the stored agency (one name normalisation + aliases).
        from ..grid import cover
        from ..store.base import Query

        sc = scope_from_args(args, store, Query(source=args.source, districts=split_values(args.district)))
        eligible = cover(sc.boundary(), args.res)
    excluded: set[int] = set()
    for f in args.exclude or []:
        if not Path(f).exists():
            raise UserError(f"--exclude file {f} not found")
        excluded.update(place_cells(f, args.res).tolist())
    for h in args.exclude_cell or []:
        try:
            excluded.add(int(h, 16))
        except ValueError:
            raise UserError(f"--exclude-cell {h!r} is not an H3 cell in hex") from None
    history = None
    if args.history:
        history = pd.read_csv(args.history)
        if "cell" not in history.columns and "cell_hex" in history.columns:
            history["cell"] = history["cell_hex"].map(lambda s: int(str(s), 16))
        elif "cell" in history.columns:  # textual H3 ids (what --out-csv writes) or older int64 ids
            from ..export import cell_int

            history["cell"] = cell_int(history["cell"])
        if not {"date", "cell"} <= set(history.columns):
            raise UserError("--history needs columns date and cell (or cell_hex), e.g. a previous --out-csv")
    try:
        plan = plan_from_store(
            store,
            args.source,
            t0,
            args.shift_hours,
            args.units,
            category=args.category,
            model=args.model,
            res=args.res,
            train_from=args.train_from,
            areas_per_unit=args.areas_per_unit,
            radius=args.radius,
            spacing_cells=args.spacing,
            spacing_m=args.spacing_m,
            eligible=eligible,
            excluded=excluded,
            history=history,
            max_consecutive_days=args.max_consecutive_days or None,
            seed=args.seed,
            max_dose_multiple=args.max_dose_multiple,
        )
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    cells = plan.cells.assign(date=t0.normalize().date().isoformat())
    if args.out_csv:
        from ..export import write_cells

        write_cells(cells, args.out_csv)
        p = Path(args.out_csv)
        plan.schedule.assign(area_hex=plan.schedule["area"].map(lambda a: f"{a:x}")).to_csv(
            p.with_name(p.stem + "_schedule.csv"), index=False
        )
    if args.out_geojson:
        from ..export import write_cells

        write_cells(cells.assign(hotspot_bin=cells["hotspot_bin"].astype("float")), args.out_geojson)
    if args.json:
        emit_json(
            {
                "shift_start": str(t0),
                "shift_end": str(t1),
                "units": args.units,
                "status": plan.status,
                "covered_share": plan.covered_share,
                "covered": plan.covered,
                "total": plan.total,
                "cells": len(plan.cells),
                "visits": len(plan.schedule),
                "seed": args.seed,
                "model": args.model,
                "category": args.category,
                "areas": [
                    {
                        "unit": int(r.unit),
                        "area": int(r.area),
                        "centre_hex": r.centre_hex,
                        "forecast": float(g.forecast.sum()),
                        "reason": r.reason,
                    }
                    for (_, g) in plan.cells.groupby("centre", sort=False)
                    for r in [g[g["cell"] == g["centre"]].iloc[0]]
                ],
                "out_csv": args.out_csv,
                "out_geojson": args.out_geojson,
            }
        )
    else:
        print(plan.summary())
    return 0
