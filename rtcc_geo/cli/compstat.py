"""``rtcc-geo compstat``: week / 28-day / year-to-date counts per category x district."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from .common import (
    UserError,
    add_json_arg,
    add_store_args,
    emit_json,
    split_values,
    store_from_args,
)

EPILOG = """\
examples:
  rtcc-geo compstat --end 2024-12-31
  rtcc-geo compstat --end 2024-12-31 --district 24 --json
  rtcc-geo compstat --out compstat.html        (also .csv or .json)

Periods (local days of the agency's time zone): week = the 7 days ending on --end,
28d = the 28 days ending on --end, ytd = 1 January through --end; each against the
same dates a year earlier and the equally long period just before. "significant" is
an exact conditional binomial test of the two Poisson counts (two-sided, --alpha,
default 0.05), so +100 %% on 1 -> 2 is not flagged. See docs/compstat.md.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compstat",
        help="CompStat table: week / 28-day / year-to-date counts per category x district with changes",
        description=(
            "Count incidents per category and district for the week, the last 28 days and the "
            "year to date through an end date, against the same dates a year earlier and the "
            "period before, with % change, an exact significance test and a 3-year average. "
            "Incidents without coordinates (not geolocated) count too."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_end_args(p)
    p.add_argument(
        "--category", action="append", metavar="CAT", help="only these categories (repeat or comma-separate)"
    )
    p.add_argument("--district", action="append", metavar="D", help="only these districts (repeat or comma-separate)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the flags (default 0.05)")
    p.add_argument("--out", metavar="FILE", default=None, help="also write the table: .csv, .json or .html")
    add_json_arg(p)
    p.set_defaults(func=run)


def add_source_end_args(p) -> None:
    """--db/--store, --source and --end, shared with ``rtcc-geo briefing``."""
    add_store_args(p)
    p.add_argument("--source", default=None, help="agency / source name (default: the store's only source)")
    p.add_argument(
        "--end",
        metavar="DATE",
        default=None,
        help="last local day included, YYYY-MM-DD (default: yesterday in the agency's time zone)",
    )


def run(args) -> int:
    from ..compstat import compstat
    from ..schema import CATEGORIES
    from ..store.base import Query

    cats = split_values(args.category)
    bad = [c for c in cats or () if c not in CATEGORIES]
    if bad:
        raise UserError(f"unknown --category {bad}; use any of {', '.join(CATEGORIES)}")
    if args.out and not args.out.lower().endswith((".csv", ".json", ".html", ".htm")):
        raise UserError(f"--out {args.out}: use a .csv, .json or .html file name")
    store = store_from_args(args)
    try:
        cs = compstat(
            store,
            Query(source=args.source, categories=cats, districts=split_values(args.district)),
            end=args.end,
            alpha=args.alpha,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        store.close()
    if args.out:
        cs.export(args.out)
    if args.json:
        emit_json(cs.to_json())
        return 0
    _print(cs, args)
    return 0


def _print(cs, args) -> None:
    w = sys.stdout.write
    sp = cs.spans()
    w(f"CompStat {cs.source} through {cs.end} (local days, {cs.timezone}); flag = exact test, alpha {cs.alpha:g}\n")
    r = cs.rows
    for period in ("week", "28d", "ytd"):
        d = sp[period]["current"]
        w(f"\n{period}: {d['start']} .. {d['end']} ({d['from_local']} until {d['until_local']}, {d['hours']:g} h)\n")
        sub = r[(r["period"] == period) & (r["district"] == "all")]
        w(f"  {'category':<10} {'count':>7} {'yr before':>9} {'change':>8} {'prev':>7} {'3y avg':>8}  flag\n")
        for x in sub.itertuples(index=False):
            pct = "n/a" if x.change_pct != x.change_pct else f"{x.change_pct:+.1f}%"
            avg = "n/a" if x.avg_3y != x.avg_3y else f"{x.avg_3y:.1f}"
            py = "no data" if pd.isna(x.prior_year) else f"{x.prior_year:,}"
            prev = "no data" if pd.isna(x.previous_period) else f"{x.previous_period:,}"
            w(f"  {x.category:<10} {x.count:>7,} {py:>9} {pct:>8} {prev:>7} {avg:>8}  {'*' if x.significant else ''}\n")
    if args.out:
        w(f"\nwrote {args.out}\n")
