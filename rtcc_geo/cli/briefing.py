"""``rtcc-geo briefing``: the printable shift briefing (one PDF)."""

from __future__ import annotations

import argparse

from .common import UserError, add_json_arg, emit_json, store_from_args
from .compstat import add_source_end_args

EPILOG = """\
examples:
  rtcc-geo briefing --end 2024-12-31 --out briefing.pdf
  rtcc-geo briefing --end 2024-06-30 --district 24 --units 3 --out d24.pdf

Pages: CompStat table; hot-spot map; what changed (map and ranked list); top places by
block address; the next shift's forecast and patrol plan with reasons; the data's caveats.
Maps are grey levels and hatching, so the PDF prints well in black and white.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "briefing",
        help="printable shift briefing (PDF): CompStat, hot-spot and what-changed maps, places, patrol plan",
        description="Write one PDF for the start of a shift, from the store, without a browser.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_source_end_args(p)
    p.add_argument("--district", default=None, help="one district as published (default: the whole agency)")
    p.add_argument("--out", metavar="FILE", default="briefing.pdf", help="PDF to write (default briefing.pdf)")
    p.add_argument("--units", type=int, default=4, help="patrol units for the next shift's plan (default 4)")
    p.add_argument(
        "--shift-start",
        metavar="TIME",
        default=None,
        help="next shift's local start, e.g. '2025-01-01 07:00' (default 07:00 the day after --end)",
    )
    p.add_argument("--shift-hours", type=float, default=8.0, help="shift length in hours (default 8)")
    p.add_argument(
        "--model",
        default="ensemble",
        help="forecast model for the plan: naive, prospective, stkde, sepp, learned, ensemble (default)",
    )
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..briefing import briefing

    if not args.out.lower().endswith(".pdf"):
        raise UserError(f"--out {args.out}: use a .pdf file name")
    if args.units < 1:
        raise UserError("--units must be 1 or more")
    store = store_from_args(args)
    try:
        b = briefing(
            store,
            args.source,
            end=args.end,
            district=args.district,
            out=args.out,
            units=args.units,
            shift_start=args.shift_start,
            shift_hours=args.shift_hours,
            model=args.model,
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    finally:
        store.close()
    out = {"out": str(b.path), "pages": b.pages, "sections": b.sections, "seconds": round(b.seconds, 2)}
    if args.json:
        emit_json(out)
    else:
        print(f"wrote {b.path}: {b.pages} pages ({', '.join(b.sections)}) in {b.seconds:.1f} s")
    return 0
