"""Options and helpers every command shares (store selection, JSON output, progress)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..store import DEFAULT_STORE_DIR, Store, open_store


def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--db URL`` (or ``$RTCC_DATABASE_URL``) for PostGIS, else ``--store DIR``."""
    g = p.add_argument_group("store (where incidents live)")
    g.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help="PostGIS connection URL (default: $RTCC_DATABASE_URL). Given, it wins over --store.",
    )
    g.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help=f"embedded store directory, no server needed (default: $RTCC_STORE_DIR or {DEFAULT_STORE_DIR})",
    )
    g.add_argument(
        "--dask",
        metavar="ADDRESS",
        default=None,
        help="run counts, reads and ingest parsing on a Dask cluster: a scheduler address "
        "(tcp://host:8786) or local[:N] for N local worker processes (default: "
        "$RTCC_DASK_SCHEDULER). The store must be on storage the workers mount at the same path",
    )


#: Commands that may create a missing ``--store`` directory (they write the first data);
#: every other command refuses one, so a typo'd path is an error, not an empty success.
CREATING_COMMANDS = frozenset({"ingest", "users", "demo"})
#: Commands that never run on Dask (a server reopens its store in each worker process).
NO_DASK_COMMANDS = frozenset({"serve", "demo"})


def store_from_args(args: argparse.Namespace, create: bool | None = None) -> Store:
    """Open the store the options select. A missing embedded directory is a
    :class:`UserError` unless ``create`` (default: the command is one of
    :data:`CREATING_COMMANDS`); with :func:`add_filter_args`' options, an unknown
    ``--source`` or a window holding no incident is one too."""
    from pathlib import Path

    db = args.db or (None if args.store else os.environ.get("RTCC_DATABASE_URL"))
    if create is None:
        create = getattr(args, "command", None) in CREATING_COMMANDS
    if not db:
        d = Path(args.store or os.environ.get("RTCC_STORE_DIR") or DEFAULT_STORE_DIR)
        if not create and not d.is_dir():
            raise UserError(
                f"store directory {str(d)!r} does not exist, so the store is empty: load data into it first "
                f"(rtcc-geo ingest --store {d} ...) or give --db URL"
            )
    store = open_store(db=db, store_dir=args.store)
    store = _on_dask(args, store)
    if getattr(args, "_rtcc_filters", False):
        try:
            check_selection(store, query_from_args(args))
        except BaseException:
            store.close()
            raise
    return store


def _on_dask(args: argparse.Namespace, store: Store) -> Store:
    """``store`` on the Dask cluster ``--dask`` (or ``$RTCC_DASK_SCHEDULER``) names, else as is."""
    from ..cluster import ENV_SCHEDULER

    address = getattr(args, "dask", None)
    if getattr(args, "command", None) in NO_DASK_COMMANDS:
        if address:
            store.close()
            raise UserError(f"--dask is not supported by {args.command}: it reads the store directly")
        return store
    address = address or os.environ.get(ENV_SCHEDULER)
    if not address:
        return store
    from ..cluster import ClusterError, open_dask_store

    try:
        return open_dask_store(store, address)
    except ClusterError as e:
        store.close()
        raise UserError(str(e)) from None


def check_selection(store: Store, q) -> None:
    """:class:`UserError` for an unknown source or a selection with no incident."""
    have = store.sources()
    if q.source is not None and q.source not in have:
        raise UserError(f"unknown source {q.source!r}; the store holds: {', '.join(sorted(have)) or 'no source yet'}")
    if store.count(q) == 0:
        what = [
            f"{k} {', '.join(v) if isinstance(v, (tuple, list)) else v}"
            for k, v in (
                ("source", q.source),
                ("from", q.start),
                ("to", q.end),
                ("category", q.categories),
                ("district", q.districts),
            )
            if v
        ]
        hint = "widen the window or the filters"
        if q.districts and store.count(q.with_(districts=None)) > 0:  # most likely a misspelt district
            known = store.counts(7, ("district",), q.with_(districts=None))["district"].dropna().astype(str)
            hint = "the data's districts are " + ", ".join(sorted(set(known))[:40])
        raise UserError("no incidents match " + (", ".join(what) if what else "(the store is empty)") + f": {hint}")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print a machine-readable JSON summary on stdout")


def emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def progress_enabled() -> bool:
    """Progress bars go to stderr, and only when it is a terminal (quiet in CI logs)."""
    return sys.stderr.isatty() and not os.environ.get("RTCC_NO_PROGRESS")


class UserError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""


def split_values(values) -> tuple[str, ...] | None:
    """Repeated and/or comma-separated option values -> a tuple (None when none given)."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out += [x.strip() for x in str(v).split(",") if x.strip()]
    return tuple(out) or None


def add_filter_args(
    p: argparse.ArgumentParser, district_help: str = "district(s) as published (repeat or comma-separate)"
) -> argparse._ArgumentGroup:
    """The incident filters every analysis command shares: --source, --from, --to,
    --category, --district. Returns the group so a command can add its own."""
    f = p.add_argument_group("filters")
    f.add_argument("--source", default=None, help="agency / source name (default: the store's only source)")
    f.add_argument(
        "--from", dest="start", metavar="DATE", default=None, help="first local date/time included, e.g. 2024-01-01"
    )
    f.add_argument(
        "--to",
        dest="end",
        metavar="DATE",
        default=None,
        help="local date/time the window stops before (exclusive), e.g. 2025-01-01",
    )
    f.add_argument(
        "--category",
        action="append",
        metavar="CAT",
        help="offense category (repeat or comma-separate): violent, robbery, burglary, "
        "vehicle, theft, property, drugs, disorder, other",
    )
    f.add_argument("--district", action="append", metavar="D", help=district_help)
    p.set_defaults(_rtcc_filters=True)  # store_from_args checks the selection is not empty
    return f


def check_window(start, end) -> None:
    """``--from``/``--to`` must be dates and ``--from`` before ``--to`` (:class:`UserError`)."""
    import pandas as pd

    t = {}
    for flag, v in (("--from", start), ("--to", end)):
        if v is not None:
            try:
                t[flag] = pd.Timestamp(v)
            except ValueError:
                raise UserError(f"bad {flag} {v!r}: use a date such as 2024-01-31") from None
            if t[flag] is pd.NaT:
                raise UserError(f"bad {flag} {v!r}: use a date such as 2024-01-31")
    if len(t) == 2 and t["--from"] >= t["--to"]:
        raise UserError(f"--from {start} is not before --to {end}: the window is empty")


def query_from_args(args: argparse.Namespace):
    """The :class:`~rtcc_geo.store.base.Query` of :func:`add_filter_args`' options;
    unknown categories are a :class:`UserError`."""
    from ..schema import CATEGORIES
    from ..store.base import Query

    cats = split_values(getattr(args, "category", None))
    bad = [c for c in cats or () if c not in CATEGORIES]
    if bad:
        raise UserError(f"unknown --category {bad}; use any of {', '.join(CATEGORIES)}")
    check_window(args.start, args.end)
    return Query(
        source=args.source,
        start=args.start,
        end=args.end,
        categories=cats,
        districts=split_values(getattr(args, "district", None)),
    )


def add_study_area_arg(p: argparse.ArgumentParser, choices: tuple[str, ...] = ("agency", "incidents")) -> None:
    """``--study-area``: the stored agency's boundary (default) or, explicitly, only
    the cells with incidents (biased for Gi*; said so in the output and JSON)."""
    p.add_argument(
        "--study-area",
        choices=choices,
        default=choices[0],
        help="the cells analysed: the stored agency's boundary or selected districts (default), or "
        "'incidents' = only cells with incidents (biased, reported as such)",
    )


def scope_from_args(args: argparse.Namespace, store: Store, q=None, need_area: bool = True):
    """The :class:`~rtcc_geo.scope.Scope` of a command's store and filters; the
    scope's errors (no agency, several sources, a district that cannot be
    honoured) become :class:`UserError`."""
    from ..scope import ScopeError, resolve_scope

    sa = getattr(args, "study_area", "agency")
    sa = {"boundary": "agency", "data": "incidents"}.get(sa, sa)
    try:
        return resolve_scope(store, q if q is not None else query_from_args(args), study_area=sa, need_area=need_area)
    except ScopeError as e:
        raise UserError(str(e)) from None


def default_source(store: Store, source: str | None) -> str:
    """``--source`` checked against the store, or the store's only source (UserError otherwise)."""
    from ..scope import ScopeError, pick_source

    try:
        return pick_source(store, source)
    except ScopeError as e:
        raise UserError(str(e)) from None
