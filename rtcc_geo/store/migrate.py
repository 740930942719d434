"""A small migration runner for the PostGIS store.

The schema is a list of ordered SQL files ``sql/NNN_name.sql``. :func:`migrate`
applies the ones not yet applied, in order, each inside its own transaction,
and records each in ``schema_migrations`` (file name, SHA-256 of its bytes,
time). A file that was applied and has since changed on disk makes the runner
refuse to do anything: an applied migration is history; fix it with a new file.

Everything lands in the first schema of the connection's ``search_path``
(``current_schema()``), so one database can hold several isolated stores.

>>> import psycopg  # doctest: +SKIP
>>> with psycopg.connect(url, autocommit=True) as conn:   # doctest: +SKIP
...     migrate(conn)
['001_core.sql', '002_h3_parent.sql']
"""

from __future__ import annotations

import hashlib
import os
import re
from importlib import resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

#: Where the migration files live: ``$RTCC_SQL_DIR`` or the package's ``sql/`` (in a
#: checkout a link to ``sql/`` at the repository root).
SQL_DIR = Path(os.environ.get("RTCC_SQL_DIR", str(resources.files("rtcc_geo") / "sql")))

_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


def scalar(cur: psycopg.Cursor) -> Any:
    """The first value of the one row ``cur`` returns (aggregates and catalogue probes always return a row)."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row[0]


class MigrationError(RuntimeError):
    """The database and the ``sql/`` files disagree in a way the runner must not paper over."""


@dataclass(frozen=True)
class Migration:
    name: str
    checksum: str
    sql: str


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    state: str  # "applied" | "pending" | "changed" | "unknown" (in the db, not on disk)
    checksum: str | None
    applied_at: str | None


def load_migrations(sql_dir: str | Path | None = None) -> list[Migration]:
    """The migration files, in order. Names must be ``NNN_lower_case.sql`` with unique numbers."""
    d = Path(sql_dir) if sql_dir is not None else SQL_DIR
    if not d.is_dir():
        raise MigrationError(f"no migrations directory {d}; set RTCC_SQL_DIR to the repository's sql/ folder")
    out: list[Migration] = []
    seen: dict[int, str] = {}
    for p in sorted(d.glob("*.sql")):
        m = _NAME.match(p.name)
        if not m:
            raise MigrationError(f"{p}: migration files must be named NNN_lower_case_name.sql")
        num = int(m.group(1))
        if num in seen:
            raise MigrationError(f"{p.name} and {seen[num]} share number {num}; renumber the newer one")
        seen[num] = p.name
        data = p.read_bytes()
        out.append(Migration(p.name, hashlib.sha256(data).hexdigest(), data.decode("utf-8")))
    return sorted(out, key=lambda m: int(m.name.split("_", 1)[0]))  # NNN_, checked above


def _lock(conn: psycopg.Connection) -> None:
    # One runner at a time per schema (two stores opened at once must not race).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('rtcc_migrate:' || current_schema()))")


def _ensure_table(conn: psycopg.Connection) -> None:
    with conn.transaction():
        _lock(conn)
        conn.execute(sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                   name        text        PRIMARY KEY,
                   checksum    text        NOT NULL,
                   applied_at  timestamptz NOT NULL DEFAULT now()
               )""").format(_table(conn)))


def _ensure_postgis(conn: psycopg.Connection) -> None:
    if scalar(conn.execute("SELECT to_regtype('geometry') IS NOT NULL")):
        return
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public")
    except psycopg.Error as e:
        raise MigrationError(
            f"PostGIS is not installed in this database and could not be created ({e.diag.message_primary}). "
            "Install the package (apt-get install postgresql-15-postgis-3) and run "
            "'CREATE EXTENSION postgis' as a superuser, then retry."
        ) from None
    if not scalar(conn.execute("SELECT to_regtype('geometry') IS NOT NULL")):
        raise MigrationError("PostGIS is installed but not on search_path: add public to search_path")


def _table(conn: psycopg.Connection) -> sql.Composable:
    """``<current_schema>.schema_migrations``, qualified: an unqualified name could
    resolve to another store's table further down search_path (e.g. public's)."""
    schema = scalar(conn.execute("SELECT current_schema()"))
    if schema is None:
        raise MigrationError(
            "no schema to create tables in: the first schema of search_path does not exist "
            "(create it, or fix options=-csearch_path=... in the URL)"
        )
    return sql.Identifier(schema, "schema_migrations")


def _applied(conn: psycopg.Connection) -> dict[str, tuple[str, object]]:
    rows = conn.execute(sql.SQL("SELECT name, checksum, applied_at FROM {}").format(_table(conn))).fetchall()
    return {n: (c, t) for n, c, t in rows}


def status(conn: psycopg.Connection, sql_dir: str | Path | None = None) -> list[MigrationStatus]:
    """State of every migration on disk and in the database (read-only)."""
    files = load_migrations(sql_dir)
    tbl = _table(conn).as_string(conn)
    exists = scalar(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (tbl,)))
    applied = _applied(conn) if exists else {}
    out = []
    for m in files:
        if m.name not in applied:
            out.append(MigrationStatus(m.name, "pending", m.checksum, None))
        else:
            c, t = applied[m.name]
            out.append(MigrationStatus(m.name, "applied" if c == m.checksum else "changed", c, str(t)))
    on_disk = {m.name for m in files}
    for n, (c, t) in sorted(applied.items()):
        if n not in on_disk:
            out.append(MigrationStatus(n, "unknown", c, str(t)))
    return out


def _check_unchanged(files: list[Migration], applied: dict[str, tuple[str, object]]) -> None:
    changed = [m.name for m in files if m.name in applied and applied[m.name][0] != m.checksum]
    if changed:
        raise MigrationError(
            f"applied migration(s) {changed} changed on disk since they ran; refusing to migrate. "
            "Restore the original file(s) and put the change in a new sql/NNN_*.sql file."
        )


def migrate(conn: psycopg.Connection, sql_dir: str | Path | None = None) -> list[str]:
    """Apply pending migrations in order; return the names applied now (``[]`` if up to date).

    ``conn`` must be in autocommit mode (each file gets its own transaction).
    Raises :class:`MigrationError` if an applied file changed on disk.
    """
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection (it manages its own transactions)")
    files = load_migrations(sql_dir)
    _ensure_postgis(conn)
    _ensure_table(conn)
    applied = _applied(conn)
    _check_unchanged(files, applied)
    done: list[str] = []
    for m in files:
        if m.name in applied:
            continue
        with conn.transaction():
            _lock(conn)
            # Another process may have applied it while we waited for the lock.
            row = conn.execute(sql.SQL("SELECT checksum FROM {} WHERE name = %s").format(_table(conn)),
                               (m.name,)).fetchone()
            if row is not None:
                _check_unchanged([m], {m.name: (row[0], None)})
                continue
            try:
                conn.execute(m.sql)  # no parameters: may hold several statements
            except psycopg.Error as e:
                raise MigrationError(f"{m.name} failed and was rolled back: {e}") from e
            conn.execute(sql.SQL("INSERT INTO {} (name, checksum) VALUES (%s, %s)").format(_table(conn)),
                         (m.name, m.checksum))
        done.append(m.name)
    return done
