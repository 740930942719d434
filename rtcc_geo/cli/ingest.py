"""``rtcc-geo ingest`` and ``rtcc-geo quarantine``: load crime extracts, see what was rejected."""

from __future__ import annotations

import argparse
import sys
import textwrap

from .common import UserError, add_json_arg, add_store_args, emit_json, progress_enabled, store_from_args

_FORMATS = ("philadelphia", "vancouver", "chicago", "generic", "auto")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="load crime extract CSVs into the store (validated; rejects go to quarantine)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Read crime extract CSVs, validate every row and load it into the store.

            Each row is either loaded (H3-indexed, times in UTC) or quarantined with one
            reason (missing_id, invalid_field, unparseable_time, implausible_time,
            no_coordinates, invalid_coordinates, outside_boundary, duplicate_key,
            unknown_offense) and its raw text, so
            read == loaded + quarantined for every file. Re-running the same files adds
            nothing: those rows are reported as 'duplicates' (already in the store).

            formats: philadelphia (OpenDataPhilly Carto extract), vancouver (VPD GeoDASH),
                     chicago (City of Chicago portal), generic (any CSV described by a
                     --mapping TOML file; see data/mappings/), auto (an unseen export: the
                     mapping is inferred from the first file and printed; see docs/mapping.md)."""),
        epilog=textwrap.dedent("""\
            examples:
              rtcc-geo ingest --format philadelphia ../shared/data/philadelphia/*.csv
              rtcc-geo ingest --format vancouver --store var/store crimedata_csv_*.csv --json
              rtcc-geo ingest --format generic --mapping data/mappings/chicago_portal.toml *.csv"""),
    )
    p.add_argument("--format", required=True, choices=_FORMATS, help="source format of FILES")
    p.add_argument("--mapping", metavar="FILE", help="TOML column mapping for --format generic")
    p.add_argument(
        "--agency",
        metavar="NAME|FILE",
        help="agency config (time zone, boundary): a name in data/agencies/ or a TOML path "
        "(default: the format's own agency, or the mapping's)",
    )
    p.add_argument(
        "--time-floor",
        metavar="DATE",
        default=None,
        help="earliest plausible incident time; earlier ones (and any after now + 1 day) are "
        "quarantined as implausible_time (default $RTCC_TIME_FLOOR or 1990-01-01)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)"
    )
    p.add_argument("files", nargs="+", metavar="FILES", help="CSV files to load")
    from .mapping import add_infer_args

    add_infer_args(p)
    add_store_args(p)
    add_json_arg(p)
    p.set_defaults(func=run_ingest)

    q = sub.add_parser(
        "quarantine",
        help="list the rows ingest rejected, and why",
        description="List quarantined rows (source, file, row number, reason, detail, raw row as JSON). "
        "Without --json/--out, prints the count per source and reason and a few examples.",
    )
    q.add_argument("--source", help="only this source (e.g. philadelphia)")
    q.add_argument("--reason", help="only this reason (e.g. no_coordinates)")
    q.add_argument("--out", metavar="CSV", help="write the rows to this CSV file")
    q.add_argument("--limit", type=int, default=5, help="examples per reason in the text listing (default 5)")
    add_store_args(q)
    add_json_arg(q)
    q.set_defaults(func=run_quarantine)

    f = sub.add_parser(
        "fetch",
        help="download incidents from a live portal (Socrata / Carto) into the CSV ingest reads",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Page through a live open-data portal and write one CSV in the layout
            'rtcc-geo ingest' reads (chicago: Socrata SODA API, dataset ijzp-q8t2;
            philadelphia: Carto SQL API, table incidents_part1_part2). --from/--to bound
            the occurrence date (half-open, the portal's local time)."""),
        epilog="example:\n  rtcc-geo fetch --portal philadelphia --from 2025-01-01 --to 2025-02-01 "
        "--out incidents_2025_01.csv\n  rtcc-geo ingest --format philadelphia incidents_2025_01.csv",
    )
    f.add_argument("--portal", required=True, choices=("chicago", "philadelphia"))
    f.add_argument("--from", dest="start", metavar="DATE", help="first day (YYYY-MM-DD), inclusive")
    f.add_argument("--to", dest="end", metavar="DATE", help="last bound (YYYY-MM-DD), exclusive")
    f.add_argument("--out", required=True, metavar="CSV", help="file to write")
    f.add_argument("--base-url", help="portal address (default: the city's public portal)")
    f.add_argument("--page-size", type=int, default=50_000, help="rows per request (default 50000)")
    f.add_argument("--app-token", help="Socrata app token (raises throttling limits)")
    add_json_arg(f)
    f.set_defaults(func=run_fetch)


def run_ingest(args: argparse.Namespace) -> int:
    from ..ingest.base import IngestError
    from ..cluster import DaskStore
    from ..cluster import ingest_files as ingest_on_dask
    from ..ingest.pipeline import ingest_files

    if args.time_floor is not None:
        import pandas as pd

        try:
            pd.Timestamp(args.time_floor)
        except ValueError:
            raise UserError(f"bad --time-floor {args.time_floor!r}: use a date such as 1990-01-01") from None
    if args.format == "generic" and not args.mapping:
        raise UserError("--format generic needs --mapping FILE (examples in data/mappings/)")
    if args.mapping and args.format != "generic":
        raise UserError("--mapping is only used with --format generic")
    fmt, mapping = args.format, args.mapping
    if fmt == "auto":
        from .mapping import infer_from_args, print_inference

        if not args.agency:
            raise UserError(
                "--format auto needs --agency NAME (its time zone and boundary decide times and "
                "coordinates); add one with: rtcc-geo agency add NAME --boundary FILE --timezone TZ"
            )
        store = store_from_args(args)
        inf = infer_from_args(args, args.files[0], store)
        print_inference(inf)
        fmt, mapping = "generic", inf.mapping
    else:
        store = store_from_args(args)
    if isinstance(store, DaskStore):  # --dask: each file parsed on a worker, written here
        ingest_files = ingest_on_dask  # noqa: F811
    try:
        s = ingest_files(
            fmt,
            args.files,
            store,
            agency=args.agency,
            mapping=mapping,
            progress=progress_enabled() and not args.quiet,
            time_floor=args.time_floor,
        )
    except (IngestError, ValueError) as e:
        raise UserError(str(e)) from None
    finally:
        store.close()
    if args.json:
        emit_json(s.as_dict())
        return 0
    out = sys.stdout
    print(f"{s.source}: {len(s.files)} file(s) into {s.store}", file=out)
    w = max(len(f.file) for f in s.files)
    print(f"  {'file':<{w}} {'read':>9} {'loaded':>9} {'new':>9} {'quarant.':>9}", file=out)
    for f in s.files:
        print(f"  {f.file:<{w}} {f.read:>9,} {f.loaded:>9,} {f.inserted:>9,} {f.quarantined:>9,}", file=out)
    print(f"  {'total':<{w}} {s.read:>9,} {s.loaded:>9,} {s.inserted:>9,} {s.quarantined:>9,}", file=out)
    print(
        f"read {s.read:,} = loaded {s.loaded:,} + quarantined {s.quarantined:,}; "
        f"{s.duplicates:,} of the loaded rows were already in the store",
        file=out,
    )
    if s.by_reason:
        print("quarantined by reason: " + ", ".join(f"{k} {v:,}" for k, v in s.by_reason.items()), file=out)
        print("  (see them with: rtcc-geo quarantine --source " + s.source + ")", file=out)
    if not s.boundary:
        print(
            "note: no agency boundary file found, so no outside_boundary check ran "
            "(set boundary_file in the agency config)",
            file=out,
        )
    if s.seconds > 0:
        print(f"{s.read / s.seconds:,.0f} rows/s", file=out)
    for m in s.warnings:
        print(f"warning: {m}", file=sys.stderr)
    if s.unmapped_offenses:
        print(
            f"warning: offense values not in the taxonomy were categorised 'other': "
            f"{s.unmapped_offenses} — add them to data/taxonomy/{s.source}.csv",
            file=sys.stderr,
        )
    return 0


def run_quarantine(args: argparse.Namespace) -> int:
    store = store_from_args(args)
    try:
        q = store.quarantine(args.source)
    finally:
        store.close()
    if args.reason:
        from ..schema import QUARANTINE_REASONS

        if args.reason not in QUARANTINE_REASONS:
            raise UserError(f"unknown reason {args.reason!r}; use one of {', '.join(QUARANTINE_REASONS)}")
        q = q[q["reason"] == args.reason]
    q = q.sort_values(["source", "file", "row_number"]).reset_index(drop=True)
    if args.out:
        q.to_csv(args.out, index=False)
    if args.json:
        counts = q.groupby(["source", "reason"]).size()
        emit_json(
            {
                "rows": int(len(q)),
                "by_source": {
                    s: {r: int(n) for (s2, r), n in counts.items() if s2 == s} for s in sorted(q["source"].unique())
                },
                **({"out": args.out} if args.out else {"quarantined": q.to_dict(orient="records")}),
            }
        )
        return 0
    if not len(q):
        print("no quarantined rows" + (f" for {args.source}" if args.source else ""))
        return 0
    for (src, reason), part in q.groupby(["source", "reason"], sort=True):
        print(f"{src} {reason}: {len(part):,} row(s)")
        for _, r in part.head(args.limit).iterrows():
            print(f"    {r['file']}:{r['row_number']}  {r['detail']}")
    if args.out:
        print(f"wrote {len(q):,} row(s) to {args.out}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    import datetime as dt

    from ..ingest import portals

    for v in (args.start, args.end):
        if v:
            try:
                dt.date.fromisoformat(v)
            except ValueError:
                raise UserError(f"bad date {v!r}: use YYYY-MM-DD") from None
    try:
        if args.portal == "chicago":
            cond = [
                f"date >= '{args.start}T00:00:00'" if args.start else "",
                f"date < '{args.end}T00:00:00'" if args.end else "",
            ]
            n = portals.fetch_socrata(
                args.base_url or portals.CHICAGO_BASE,
                portals.CHICAGO_DATASET,
                args.out,
                where=" AND ".join(c for c in cond if c) or None,
                page_size=args.page_size,
                app_token=args.app_token,
            )
        else:
            # dispatch_date is the local (America/New_York) date, like the Socrata side's local 'date'.
            cond = [
                f"dispatch_date >= '{args.start}'" if args.start else "",
                f"dispatch_date < '{args.end}'" if args.end else "",
            ]
            n = portals.fetch_carto(
                args.out,
                where=" AND ".join(c for c in cond if c) or None,
                base_url=args.base_url or portals.CARTO_SQL,
                page_size=args.page_size,
            )
    except portals.PortalError as e:
        raise UserError(str(e)) from None
    if args.json:
        emit_json({"portal": args.portal, "rows": n, "out": args.out})
    else:
        print(f"wrote {n:,} row(s) to {args.out}; load them with: rtcc-geo ingest --format {args.portal} {args.out}")
    return 0
