"""``rtcc-geo mapping infer``: write the mapping of an unseen export for review."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from pathlib import Path

from .common import UserError, add_json_arg, add_store_args, emit_json


def add_infer_args(p: argparse.ArgumentParser) -> None:
    """The flags that decide what inference cannot (shared with ``ingest --format auto``)."""
    g = p.add_argument_group("inference (what --format auto cannot decide alone)")
    g.add_argument("--source", metavar="NAME", help="source name stored with each row (default: the agency's name)")
    g.add_argument(
        "--taxonomy",
        metavar="NAME|CSV",
        help="offence -> category table (a CSV, or a shipped name such as 'chicago'); it also picks the offence column",
    )
    g.add_argument(
        "--column",
        action="append",
        metavar="ROLE=COLUMN",
        default=[],
        help="fix a column role, e.g. --column id=case_no (ROLE= leaves it out); roles: id, occurred, "
        "occurred_date, occurred_time, occurred_hour, occurred_minute, reported, offense, "
        "offense_detail, offense_code, block, district, lon, lat, x, y",
    )
    g.add_argument("--crs", metavar="EPSG:CODE", help="CRS of projected x/y columns (when two readings fit)")
    g.add_argument(
        "--time-format",
        metavar="FMT",
        help="strftime format of the time column, e.g. '%%d/%%m/%%Y %%H:%%M' (when day-first and month-first both fit)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mapping",
        help="infer the column mapping of an unseen export (then review it and ingest)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent("""\
            Infer how an export is written (encoding, delimiter, decimal mark, the id, time,
            place and offence columns, the time layout, the CRS of projected coordinates,
            placeholder times) and write it as a mapping TOML to review. Every choice is
            printed with its reason; when two readings are plausible it stops and names the
            flag that decides. See docs/mapping.md."""),
    )
    sub2 = p.add_subparsers(dest="mapping_command", metavar="SUBCOMMAND")
    i = sub2.add_parser(
        "infer",
        help="infer a mapping TOML from an export",
        description="Infer a mapping TOML from an export (reads the head of the file).",
    )
    i.add_argument("file", metavar="FILE", help="the export (CSV)")
    i.add_argument(
        "--agency",
        required=True,
        metavar="NAME|FILE",
        help="the agency (time zone, boundary, taxonomy): stored in --store/--db (rtcc-geo agency add), "
        "a preset name, or an agency TOML",
    )
    i.add_argument("--out", metavar="TOML", help="write the mapping here (default: print it)")
    i.add_argument(
        "--taxonomy-out",
        metavar="CSV",
        help="write a proposed offence taxonomy (keyword guesses, with counts) to review",
    )
    add_infer_args(i)
    add_store_args(i)
    add_json_arg(i)
    i.set_defaults(func=run_infer)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _stored_or_none(args: argparse.Namespace):
    """The store named by the flags when there is one (the agency may be stored there)."""
    import os

    from ..store import DEFAULT_STORE_DIR, open_store

    db = args.db or (None if args.store else os.environ.get("RTCC_DATABASE_URL"))
    d = args.store or os.environ.get("RTCC_STORE_DIR") or DEFAULT_STORE_DIR
    if not db and not Path(d).is_dir():
        return None
    try:
        return open_store(db=db, store_dir=d if not db else None)
    except Exception as e:  # noqa: BLE001 - a store that cannot be opened is a one-line error
        raise UserError(f"cannot open the store: {e}") from None


def infer_from_args(args: argparse.Namespace, path: str | Path, store=None, taxonomy_dir: Path | None = None):
    """Run the inference with the CLI's flags (the agency from ``store`` when stored
    there); ambiguity and bad input are one-line errors. A taxonomy stored with the agency
    is written to ``taxonomy_dir`` (default: a temporary folder) for the reader."""
    from ..config import load_agency
    from ..ingest.base import IngestError
    from ..ingest.infer import AmbiguousMapping, infer_mapping

    overrides = {}
    for item in args.column or ():
        if "=" not in item:
            raise UserError(f"--column takes ROLE=COLUMN, not {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    try:
        agency = load_agency(args.agency, store)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    taxonomy = args.taxonomy
    if not taxonomy and agency.taxonomy_csv:
        import tempfile

        d = taxonomy_dir or Path(tempfile.mkdtemp(prefix="rtcc-taxonomy-"))
        taxonomy = str(d / f"{agency.name}_taxonomy.csv")
        Path(taxonomy).write_text(agency.taxonomy_csv, encoding="utf-8")
    elif not taxonomy and agency.taxonomy_file:
        found = agency.find_file(agency.taxonomy_file)
        taxonomy = str(found) if found else None
    try:
        inf = infer_mapping(
            path,
            agency,
            source=args.source,
            overrides=overrides or None,
            crs=args.crs,
            time_format=args.time_format,
            taxonomy=taxonomy,
            near=[Path(path)],
        )
    except AmbiguousMapping as e:
        raise UserError(f"{Path(path).name}: ambiguous: {e}") from None
    except (IngestError, ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    # The mapping file names the agency it was inferred for (its boundary checks the points).
    ref = Path(args.agency)
    ref_text = str(ref.resolve()) if ref.suffix and ref.exists() else args.agency
    inf.mapping = dataclasses.replace(inf.mapping, agency=ref_text)
    return inf


def print_inference(inf, out=sys.stderr) -> None:
    print("inferred:", file=out)
    for r in inf.reasons:
        print(f"  {r}", file=out)
    for w in inf.warnings:
        print(f"  warning: {w}", file=out)


def run_infer(args: argparse.Namespace) -> int:
    store = _stored_or_none(args)
    try:
        inf = infer_from_args(args, args.file, store, Path(args.out).resolve().parent if args.out else None)
    finally:
        if store is not None:
            store.close()
    text = inf.to_toml()
    if args.out:
        Path(args.out).write_text(text)
    if args.taxonomy_out:
        from ..ingest.infer import propose_taxonomy

        propose_taxonomy(inf.offences).to_csv(args.taxonomy_out, index=False)
    if args.json:
        emit_json({**inf.as_dict(), "out": args.out, "taxonomy_out": args.taxonomy_out})
        return 0
    print_inference(inf, sys.stdout)
    if args.out:
        print(f"wrote {args.out}; review it, then: rtcc-geo ingest --format generic --mapping {args.out} FILES")
    else:
        print(text)
    return 0
