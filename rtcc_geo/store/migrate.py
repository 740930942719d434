"""A small migration runner for the PostGIS store.

The schema is a list of ordered SQL files ``sql/NNN_name.sql``, plus the few
steps SQL cannot do (PostgreSQL has no H3 here), written in Python and listed
in :data:`PYTHON_STEPS` under a number of the same sequence. :func:`migrate`
applies the ones not yet applied, in order, each inside its own transaction,
and records each in ``schema_migrations`` (name, SHA-256 of the file's bytes or
of the step's name, time). A file that was applied and has since changed on
disk makes the runner refuse to do anything: an applied migration is history;
fix it with a new file (or a new step).

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
from collections.abc import Callable
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
    sql: str  # the file's SQL; for a Python step, its docstring
    run: Callable[[psycopg.Connection], None] | None = None  # a Python step, run instead of ``sql``

    @property
    def number(self) -> int:
        return int(self.name.split("_", 1)[0])


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    state: str  # "applied" | "pending" | "changed" | "unknown" (in the db, not on disk)
    checksum: str | None
    applied_at: str | None


def load_migrations(sql_dir: str | Path | None = None) -> list[Migration]:
    """The migration files and Python steps, in order.

    File names must be ``NNN_lower_case.sql``; numbers are unique across files and steps.
    """
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
    for name, step in PYTHON_STEPS.items():
        num = int(name.split("_", 1)[0])
        if num in seen:
            raise MigrationError(f"Python step {name} and {seen[num]} share number {num}; renumber the file")
        seen[num] = name
        # The name is the step's identity: its code may be tidied, its effect not (that is a new step).
        out.append(
            Migration(name, hashlib.sha256(f"python step {name}".encode()).hexdigest(), step.__doc__ or name, step)
        )
    return sorted(out, key=lambda m: m.number)  # NNN_, checked above


def _lock(conn: psycopg.Connection) -> None:
    # One runner at a time per schema (two stores opened at once must not race).
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('rtcc_migrate:' || current_schema()))")


def _ensure_table(conn: psycopg.Connection) -> None:
    with conn.transaction():
        _lock(conn)
        conn.execute(
            sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                   name        text        PRIMARY KEY,
                   checksum    text        NOT NULL,
                   applied_at  timestamptz NOT NULL DEFAULT now()
               )"""
            ).format(_table(conn))
        )


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


def migrate(conn: psycopg.Connection, sql_dir: str | Path | None = None, upto: int | None = None) -> list[str]:
    """Apply pending migrations in order; return the names applied now (``[]`` if up to date).

    ``conn`` must be in autocommit mode (each file gets its own transaction).
    ``upto``: apply only migrations numbered up to it (to rebuild an older
    schema, e.g. in tests of a later migration). Raises
    :class:`MigrationError` if an applied file changed on disk.
    """
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection (it manages its own transactions)")
    files = [m for m in load_migrations(sql_dir) if upto is None or m.number <= upto]
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
            row = conn.execute(
                sql.SQL("SELECT checksum FROM {} WHERE name = %s").format(_table(conn)), (m.name,)
            ).fetchone()
            if row is not None:
                _check_unchanged([m], {m.name: (row[0], None)})
                continue
            try:
                if m.run is not None:
                    m.run(conn)
                else:
                    conn.execute(m.sql)  # no parameters: may hold several statements
            except psycopg.Error as e:
                raise MigrationError(f"{m.name} failed and was rolled back: {e}") from e
            conn.execute(
                sql.SQL("INSERT INTO {} (name, checksum) VALUES (%s, %s)").format(_table(conn)), (m.name, m.checksum)
            )
        done.append(m.name)
    return done


# --- Python steps --------------------------------------------------------------

#: The H3 columns of ``incidents`` as 001_core.sql made them (fixed here: an applied
#: step is history and must not follow later changes of the defaults).
_H3_RESOLUTIONS = (7, 8, 9, 10)
#: Heap pages read per batch of :func:`_h3_own_cells` (~100k incidents, a few tens of MB).
_H3_PAGES = 4096


def _h3_own_cells(conn: psycopg.Connection) -> None:
    """055: every H3 column of every geolocated incident becomes the cell that
    contains its point at that resolution (``h3.latlng_to_cell``).

    Stores written before this held the parents of the res-10 cell at res 7..9.
    H3 children do not nest exactly in their parent's hexagon, so for ~7 % of
    points the parent is a neighbouring cell (up to 25 m away at res 9, 200 m
    at res 7). PostgreSQL has no H3 here, so the cells are computed in Python
    (``rtcc_geo.grid.index_points``), in batches of heap pages read by TID
    range (no sort, no index, memory bounded by the batch), and only the rows
    whose cells change are written back, by TID, in one UPDATE. Writers are
    held off meanwhile (the writers' lock), so no row escapes the pass; the
    number of rows updated must equal the number found stale.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..grid import index_points
    from .pgwire import copy_in, copy_out

    conn.execute("LOCK TABLE incidents IN SHARE ROW EXCLUSIVE MODE")
    pages = int(scalar(conn.execute("SELECT pg_relation_size('incidents') / current_setting('block_size')::bigint")))
    cols = [f"h3_r{r}" for r in _H3_RESOLUTIONS]
    conn.execute(
        "CREATE TEMP TABLE rtcc_h3_fix (row_id tid, " + ", ".join(f"{c} bigint" for c in cols) + ") ON COMMIT DROP"
    )
    types = {"row_id": pa.string(), "lat": pa.float64(), "lon": pa.float64(), **{c: pa.int64() for c in cols}}
    stale_rows = 0
    for lo in range(0, pages, _H3_PAGES):
        t = copy_out(
            conn,
            f"SELECT ctid::text, lat, lon, {', '.join(cols)} FROM incidents "
            f"WHERE ctid >= '({lo},0)'::tid AND ctid < '({lo + _H3_PAGES},0)'::tid "
            "AND lon IS NOT NULL",
            [],
            types,
        )
        if not t.num_rows:
            continue
        own = index_points(t["lat"].to_numpy(), t["lon"].to_numpy(), _H3_RESOLUTIONS)
        stale = np.zeros(t.num_rows, dtype=bool)
        for r, c in zip(_H3_RESOLUTIONS, cols):
            stale |= pc.fill_null(t[c], -1).to_numpy() != own[r]  # a NULL cell is stale too
        if stale.any():
            idx = np.flatnonzero(stale)
            fix = {"row_id": t["row_id"].take(pa.array(idx))}
            fix.update({c: pa.array(own[r][idx]) for r, c in zip(_H3_RESOLUTIONS, cols)})
            copy_in(conn, "rtcc_h3_fix", pa.table(fix))
            stale_rows += len(idx)
    if not stale_rows:
        return
    n = conn.execute(
        "UPDATE incidents i SET "
        + ", ".join(f"{c} = f.{c}" for c in cols)
        + " FROM rtcc_h3_fix f WHERE i.ctid = f.row_id"
    ).rowcount
    if n != stale_rows:
        raise MigrationError(f"055_h3_own_cells: {stale_rows} rows had stale cells but {n} were updated")


#: Python steps by name (``NNN_lower_case``), in the same number sequence as the files.
PYTHON_STEPS: dict[str, Callable[[psycopg.Connection], None]] = {
    "055_h3_own_cells": _h3_own_cells,
}
