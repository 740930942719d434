"""``rtcc-geo db``: manage a store's schema: PostGIS migrations in ``sql/``, or an
embedded store's layout (``--store DIR``: month files of the layout before issue 16
converted to the partitioned one, H3 cells recomputed)."""

from __future__ import annotations

import argparse
import os

from .common import UserError, add_json_arg, emit_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "db",
        help="PostGIS schema: apply migrations, show their status",
        description=(
            "Manage the PostGIS store's schema. The schema is the ordered SQL files in sql/ "
            "(NNN_name.sql); each is applied once, in its own transaction, and recorded with its "
            "checksum in the table schema_migrations of the first schema on the URL's search_path. "
            "An applied file that changed on disk stops the runner: put changes in a new file. "
            "Opening the store also applies pending migrations, so 'db migrate' is for deploys and checks. "
            "With --store DIR (and no --db or $RTCC_DATABASE_URL) the commands act on an embedded store: "
            "'migrate' converts month files of an older layout (which its first write would also do), "
            "'status' lists them."
        ),
    )
    sub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    for name, func, text in (
        ("migrate", _migrate, "apply pending sql/ migrations (idempotent)"),
        ("status", _status, "list migrations: applied, pending, changed on disk, or unknown to this version"),
    ):
        sp = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sp.add_argument(
            "--db",
            metavar="URL",
            default=None,
            help="PostGIS connection URL (default: $RTCC_DATABASE_URL), e.g. postgresql://postgres@127.0.0.1:5432/rtcc",
        )
        sp.add_argument(
            "--store",
            metavar="DIR",
            default=None,
            help="an embedded store directory instead of PostGIS (used when neither --db "
            "nor $RTCC_DATABASE_URL is given)",
        )
        add_json_arg(sp)
        sp.set_defaults(func=func)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _connect(args: argparse.Namespace):
    import psycopg

    url = args.db or os.environ.get("RTCC_DATABASE_URL")
    if not url:
        raise UserError("no database given: pass --db postgresql://USER@HOST:PORT/DB or set RTCC_DATABASE_URL")
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as e:
        raise UserError(
            f"cannot connect to {url}: {str(e).strip()}. Is PostgreSQL running and the URL right?"
        ) from None


def _embedded_dir(args: argparse.Namespace):
    """The ``--store`` directory when the command is for an embedded store, else None."""
    from pathlib import Path

    if args.db or os.environ.get("RTCC_DATABASE_URL") or not args.store:
        return None
    d = Path(args.store)
    if not (d / "incidents").is_dir() and not (d / "sources.json").is_file():
        raise UserError(f"{d} is not an rtcc-geo store (no incidents/ in it)")
    return d


def _pending_files(d) -> list[str]:
    from ..store.parts import legacy_parts, legacy_sources

    return [f"{s}/{p.month}" for s in legacy_sources(d) for p in legacy_parts(d, s)]


def _migrate(args: argparse.Namespace) -> int:
    from ..store.migrate import MigrationError, migrate, scalar, status

    d = _embedded_dir(args)
    if d is not None:
        from ..store.embedded import EmbeddedStore

        pending = _pending_files(d)
        converted = EmbeddedStore(d, create=False).migrate()
        if args.json:
            emit_json({"store": str(d), "converted": converted, "files": pending})
        elif converted:
            print(f"converted {converted} month file(s) in {d} to the partitioned layout")
        else:
            print(f"store {d} is up to date")
        return 0
    with _connect(args) as conn:
        try:
            applied = migrate(conn)
        except MigrationError as e:
            raise UserError(str(e)) from None
        states = status(conn)
        schema = scalar(conn.execute("SELECT current_schema()"))
    if args.json:
        emit_json({"schema": schema, "applied": applied, "total": len(states)})
    elif applied:
        print(f"applied {len(applied)} migration(s) in schema {schema}: {', '.join(applied)}")
    else:
        print(f"schema {schema} is up to date ({len(states)} migrations)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ..store.migrate import MigrationError, scalar, status

    d = _embedded_dir(args)
    if d is not None:
        pending = _pending_files(d)
        if args.json:
            emit_json({"store": str(d), "pending": pending})
        else:
            print(
                f"store {d}: "
                + (
                    f"{len(pending)} month file(s) of an older layout to convert "
                    f"(rtcc-geo db migrate --store {d}): {', '.join(pending)}"
                    if pending
                    else "up to date"
                )
            )
        return 1 if pending else 0
    with _connect(args) as conn:
        try:
            states = status(conn)
        except MigrationError as e:
            raise UserError(str(e)) from None
        schema = scalar(conn.execute("SELECT current_schema()"))
    if args.json:
        emit_json(
            {
                "schema": schema,
                "migrations": [
                    {"name": s.name, "state": s.state, "checksum": s.checksum, "applied_at": s.applied_at}
                    for s in states
                ],
            }
        )
    else:
        print(f"schema {schema}")
        for s in states:
            print(f"  {s.state:8s} {s.name}" + (f"  ({s.applied_at})" if s.applied_at else ""))
    # Non-zero when something needs attention, so deploy scripts can check it.
    return 1 if any(s.state in ("pending", "changed") for s in states) else 0
