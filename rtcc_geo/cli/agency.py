"""``rtcc-geo agency``: the agency (time zone, boundary, districts, taxonomy, base
layers) stored in the store, so every command, notebook and the app read it
from there and no repository file is needed."""

from __future__ import annotations

import argparse
import sys

from .common import UserError, add_json_arg, add_store_args, emit_json, store_from_args

EPILOG = """\
examples:
  rtcc-geo agency add springfield --boundary city.geojson --timezone America/Chicago \\
      --districts beats.geojson --district-field BEAT --district-label-field NAME --taxonomy offences.csv
  rtcc-geo agency add --preset philadelphia
  rtcc-geo agency list --json
  rtcc-geo agency show vancouver
  rtcc-geo agency remove springfield

District names are compared after one normalisation (case, spaces/hyphens, leading
zeros); names the data spells differently go in --alias 'Data name=Polygon name'.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agency",
        help="add, list, show or remove the agency stored with the incidents",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_subparsers(dest="agency_command", metavar="SUBCOMMAND")
    a = s.add_parser(
        "add",
        help="store an agency (from files or a preset)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument(
        "name",
        nargs="?",
        default=None,
        help="agency = source name: lower case, e.g. springfield (default with --preset: the preset's)",
    )
    a.add_argument(
        "--preset",
        metavar="NAME",
        default=None,
        help="copy a shipped preset (data/agencies/NAME.toml; paths in it resolve relative to it)",
    )
    a.add_argument("--boundary", metavar="FILE", default=None, help="boundary polygon(s), any CRS GeoPandas reads")
    a.add_argument("--timezone", metavar="TZ", default=None, help="IANA time zone, e.g. America/Chicago")
    a.add_argument("--districts", metavar="FILE", default=None, help="district polygons (optional)")
    a.add_argument("--district-field", metavar="F", default=None, help="field of --districts holding the district name")
    a.add_argument(
        "--district-label-field",
        metavar="L",
        default=None,
        help="field with a display label (default: --district-field)",
    )
    a.add_argument(
        "--alias",
        metavar="DATA=POLYGON",
        action="append",
        default=None,
        help="a district the data names differently from its polygon (repeatable)",
    )
    a.add_argument(
        "--taxonomy", metavar="CSV", default=None, help="offence -> category CSV (offense,detail,category,note)"
    )
    a.add_argument(
        "--basemap", metavar="FILE", action="append", default=None, help="a base layer to store (repeatable)"
    )
    a.add_argument(
        "--buffer-m",
        type=float,
        default=250.0,
        help="points this far outside the boundary are still accepted at ingest (default 250)",
    )
    a.add_argument("--replace", action="store_true", help="replace a stored agency of that name")
    add_store_args(a)
    add_json_arg(a)
    a.set_defaults(func=run_add)
    for name, hlp, fn in (
        ("list", "the stored agencies", run_list),
        ("show", "one stored agency", run_show),
        ("remove", "remove a stored agency (its incidents stay)", run_remove),
    ):
        x = s.add_parser(name, help=hlp)
        if name != "list":
            x.add_argument("name")
        add_store_args(x)
        add_json_arg(x)
        x.set_defaults(func=fn)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_add(args) -> int:
    from .. import agencies as A

    store = store_from_args(args, create=True)  # onboarding starts here: a new store is made
    try:
        if args.preset:
            if args.boundary or args.districts or args.timezone:
                raise UserError(
                    "--preset takes the boundary, districts and time zone from the preset; "
                    "give either --preset or --boundary/--timezone"
                )
            name = args.name or args.preset
            if name != args.preset:
                raise UserError(f"the preset {args.preset} stores agency {args.preset}, not {name}")
            if A.get_agency(store, name) is not None and not args.replace:
                raise UserError(f"the store already holds agency {name}; add --replace to overwrite it")
            a = A.add_preset(store, args.preset, replace_existing=True)
        else:
            if not args.name or not args.timezone or not (args.boundary or args.districts):
                raise UserError("give NAME --boundary FILE --timezone TZ (or --preset NAME)")
            if A.get_agency(store, args.name) is not None and not args.replace:
                raise UserError(f"the store already holds agency {args.name}; add --replace to overwrite it")
            aliases = {}
            for x in args.alias or []:
                if "=" not in x:
                    raise UserError(f"--alias {x!r}: write 'Data name=Polygon name'")
                k, v = x.split("=", 1)
                aliases[k.strip()] = v.strip()
            a = A.build_agency(
                args.name,
                args.timezone,
                args.boundary,
                args.districts,
                args.district_field,
                args.district_label_field,
                args.taxonomy,
                args.basemap or (),
                aliases,
                args.buffer_m,
            )
            A.put_agency(store, a)
            stored = A.get_agency(store, a.name)
            assert stored is not None  # just put
            a = stored
        d = A.describe(a)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    finally:
        store.close()
    return _emit(args, d, f"stored agency {d['name']} in {store!r}")


def run_list(args) -> int:
    from .. import agencies as A

    store = store_from_args(args)
    try:
        # (an agency removed between the listing and the read is not listed)
        rows = [A.describe(a) for n in A.list_agencies(store) if (a := A.get_agency(store, n)) is not None]
    finally:
        store.close()
    if args.json:
        emit_json(
            [
                {k: r[k] for k in ("name", "timezone", "boundary", "base_layers")} | {"districts": len(r["districts"])}
                for r in rows
            ]
        )
        return 0
    if not rows:
        print(
            "no agency stored: add one with rtcc-geo agency add NAME --boundary FILE --timezone TZ "
            "(or --preset philadelphia)"
        )
    for r in rows:
        print(
            f"{r['name']:<16} {r['timezone']:<22} {r['boundary']['area_km2']:>9,.1f} km2  "
            f"{len(r['districts']):>3} districts"
        )
    return 0


def run_show(args) -> int:
    from .. import agencies as A

    store = store_from_args(args)
    try:
        a = A.get_agency(store, args.name)
        if a is None:
            raise UserError(f"no agency {args.name!r} in {store!r}; stored: {A.list_agencies(store)}")
        d = A.describe(a)
    finally:
        store.close()
    return _emit(args, d, f"agency {d['name']}")


def run_remove(args) -> int:
    from .. import agencies as A

    store = store_from_args(args)
    try:
        ok = A.remove_agency(store, args.name)
    finally:
        store.close()
    if not ok:
        raise UserError(f"no agency {args.name!r} in the store")
    if args.json:
        emit_json({"removed": args.name})
    else:
        print(f"removed agency {args.name} (its incidents stay in the store)")
    return 0


def _emit(args, d: dict, title: str) -> int:
    if args.json:
        emit_json(d)
    else:
        _print(d, sys.stdout, title)
    return 0


def _print(d: dict, out, title: str) -> None:
    w = out.write
    w(f"{title}\n  time zone  {d['timezone']}\n")
    w(f"  boundary   {d['boundary']['area_km2']:,.1f} km2, bounds {d['boundary']['bounds']}\n")
    ds = d["districts"]
    w(
        f"  districts  {len(ds)}"
        + (
            ": " + ", ".join(x["label"] for x in ds[:12]) + (" ..." if len(ds) > 12 else "")
            if ds
            else " (none: district filters are unavailable)"
        )
        + "\n"
    )
    if d["district_aliases"]:
        w("  aliases    " + ", ".join(f"{k} -> {v}" for k, v in d["district_aliases"].items()) + "\n")
    w(f"  taxonomy   {d['taxonomy_rows']} rows\n")
    if d["base_layers"]:
        w("  base layers " + ", ".join(f"{k} ({n} features)" for k, n in d["base_layers"].items()) + "\n")
