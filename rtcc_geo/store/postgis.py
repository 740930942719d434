"""PostGIS store: the deployment engine of the :class:`~rtcc_geo.store.base.Store` API.

Layout (created by the migrations in ``sql/``, in the first schema of the
connection's ``search_path``)::

    sources(name, timezone)
    incidents(source, id, ... canonical columns ..., h3_r7..h3_r10 BIGINT, extras jsonb,
              geom geometry(Point, 4326) generated from lon/lat)
        PARTITION BY RANGE (occurred_from): incidents_yYYYYmMM per UTC month + incidents_default;
        BRIN (occurred_from), GiST (geom), btree h3_r7..h3_r10 and category, on every partition
    incident_keys(source, id)       PK: (source, id) unique across all months, kept by triggers
    quarantine(source, file, row_number, reason, detail, raw jsonb) PK (source, file, row_number)
    ingest_log(...)                 one row per ingested file
    rtcc_tables(name, tbl, columns) catalogue of put_table tables rtcc_t_<name>
    rtcc_h3_parent(cell, res)       H3 roll-up on BIGINT, same bits as grid.parent

Writes: the months a batch touches get their partition first (a short
transaction of its own, see :meth:`PostGISStore._ensure_partitions`). Then, in
one transaction under a ``SHARE ROW EXCLUSIVE`` lock on ``incidents`` (writers
queue, readers are not blocked, so the check is exact and no ``ON CONFLICT``
is needed), the batch's keys alone are staged with psycopg 3 ``COPY`` and
probed in ``incident_keys``' index (O(batch), never a scan of the store); the
rows whose key is not stored go straight into ``incidents`` by ``COPY`` (CSV
produced by pyarrow, vectorised, in time order for BRIN), and a statement
trigger adds their keys. So re-ingest adds nothing, and the same incident
re-sent with another time (another month) is still a duplicate. When no key of
the batch's sources is stored yet the probe is skipped; when the batch is at
least twice the table (and >= :data:`BULK_MIN_ROWS`), the indexes are dropped
and rebuilt after the load. Reads stream ``COPY (SELECT ...) TO STDOUT`` back
through pyarrow's CSV reader. Aggregations (:meth:`PostGISStore.counts`) run in
SQL with local-time keys from ``occurred_from AT TIME ZONE sources.timezone``;
time filters reach the planner as constants, so it reads only the months they
cover (partition pruning).

The answers are the embedded store's, row for row and dtype for dtype (see
``tests/test_store_parity.py``), with two documented differences: timestamps
keep microseconds (PostgreSQL's resolution), and ``extras`` / ``raw`` come
back as PostgreSQL's jsonb text (same JSON, keys in jsonb order).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from .. import grid
from ..schema import (
    CORE_DTYPES,
    DEFAULT_RESOLUTIONS,
    INCIDENT_COLUMNS,
    QUARANTINE_COLUMNS,
    conform,
    empty_incidents,
    h3_column,
)
from .base import (
    prepare_incidents,
    Query,
    Store,
    WriteResult,
    check_keys,
    check_table_name,
    geolocated_filter,
    local_bound,
    needs_known_time,
)
from .migrate import migrate, scalar
from .pgwire import copy_in, copy_out

_TS_COLS = ("occurred_from", "occurred_to", "reported_at")
_H3_COLS = tuple(h3_column(r) for r in DEFAULT_RESOLUTIONS)
#: Batches at least this big, and at least as big as the table, load in bulk mode
#: (secondary indexes rebuilt after the insert; see write_incidents).
BULK_MIN_ROWS = 50_000

#: Count-key dtypes, identical to the embedded store's.
_COUNT_DTYPES = {
    "cell": "int64",
    "category": "string",
    "district": "string",
    "hour": "int64",
    "dow": "int64",
    "hour_of_week": "int64",
    "day": "datetime64[ns]",
    "week": "datetime64[ns]",
    "month": "datetime64[ns]",
}

_ROW = "__rtcc_row"  # hidden row-order column of put_table tables


def _serialised(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            if self.conn.broken and not self._closed:
                # The server restarted or the network dropped since the last call:
                # open a fresh session rather than fail every call from now on.
                self._connect()
            return method(self, *args, **kwargs)

    return wrapper


class PostGISError(RuntimeError):
    """The database could not be reached or used; the message says what to do."""


class PostGISStore(Store):
    """The Store API on PostgreSQL + PostGIS.

    Parameters
    ----------
    url : str
        libpq URL, e.g. ``postgresql://user@host:5432/db``. Tables go into the
        first schema of its ``search_path`` (``?options=-csearch_path%3Dmine,public``).
    auto_migrate : bool
        Apply pending ``sql/`` migrations on open (idempotent; default True).
    """

    kind = "postgis"

    def __init__(self, url: str, auto_migrate: bool = True):
        self.url = url
        self.auto_migrate = auto_migrate
        # One connection per store: calls from several threads (the Dash app) are
        # serialised, so no call ever runs inside another's transaction.
        self._lock = threading.RLock()
        self._closed = False
        self._connect()

    def _connect(self) -> None:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as e:
            raise PostGISError(
                f"cannot connect to PostGIS at {_redact(self.url)}: {str(e).strip()}. "
                "Check --db / $RTCC_DATABASE_URL and that the server is running."
            ) from None
        try:
            # JIT compilation costs more than it saves on these short aggregates;
            # staging tables and GROUP BYs of a few 100k rows should stay in memory.
            conn.execute("SET jit = off")
            conn.execute("SET temp_buffers = '256MB'")
            conn.execute("SET work_mem = '64MB'")
            if self.auto_migrate:
                migrate(conn)
        except Exception:
            conn.close()
            raise
        old, self.conn = getattr(self, "conn", None), conn
        if old is not None and not old.closed:
            old.close()

    def reconnect(self) -> None:
        """Drop the session and open a new one (after a database restart).

        Calls reconnect by themselves when the connection is known to be
        broken; the live feed calls this after a failed write.
        """
        with self._lock:
            self._closed = False
            self._connect()

    def __repr__(self) -> str:
        return f"PostGISStore({_redact(self.url)!r})"

    def close(self) -> None:
        self._closed = True
        if not self.conn.closed:
            self.conn.close()

    # --- sources ---------------------------------------------------------
    @_serialised
    def register_source(self, name: str, timezone: str) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown IANA time zone {timezone!r} for source {name!r} (e.g. 'America/New_York')"
            ) from None
        self.conn.execute(
            "INSERT INTO sources (name, timezone) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET timezone = EXCLUDED.timezone",
            (name, timezone),
        )

    @_serialised
    def sources(self) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, timezone FROM sources ORDER BY name").fetchall())

    # --- writes ----------------------------------------------------------
    @_serialised
    def write_incidents(self, df: pd.DataFrame) -> WriteResult:
        received = len(df)
        if not received:
            return WriteResult(0, 0)
        df = prepare_incidents(self, df)
        table = _incidents_wire(df)
        cols = list(INCIDENT_COLUMNS)
        self._ensure_partitions(df["occurred_from"])
        with self.conn.transaction():
            # Writers queue here (readers do not), so every committed key is visible
            # to the check below and no row can conflict: no ON CONFLICT needed
            # (whose speculative insertion doubled the load time).
            self.conn.execute("LOCK TABLE incidents IN SHARE ROW EXCLUSIVE MODE")
            fresh = not scalar(
                self.conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM incident_keys WHERE source = ANY(%s::text[]))",
                    (sorted(df["source"].unique().tolist()),),
                )
            )
            if not fresh:
                # Drop the rows whose key is stored (in any month): only the keys are
                # staged and looked up, then the rest goes straight into incidents.
                stored = self._stored_rows(table)
                if len(stored):
                    keep = np.ones(table.num_rows, dtype=bool)
                    keep[stored] = False
                    table = table.filter(pa.array(keep))
            restore = self._drop_indexes_for_bulk(table.num_rows)
            try:
                if table.num_rows:
                    # The keys trigger (sql/060) adds them to incident_keys: a key stored
                    # meanwhile would fail the COPY, never be stored twice.
                    copy_in(self.conn, "incidents", table, columns=cols)
            except psycopg.errors.InvalidTextRepresentation as e:
                raise ValueError(f"incidents.extras must hold JSON object text: {e.diag.message_primary}") from None
            for ddl in restore:
                self.conn.execute(ddl)
        keys = set(zip(table["source"].to_pylist(), table["id"].to_pylist()))
        return WriteResult(received, len(keys), keys)

    def _stored_rows(self, table: pa.Table) -> np.ndarray:
        """Positions in ``table`` of the rows whose ``(source, id)`` is in ``incident_keys``.

        O(batch): the batch's keys are staged (two columns, C collation so the
        primary key's index serves the join) and each is probed in that index;
        the store is never scanned.
        """
        self.conn.execute(
            'CREATE TEMP TABLE rtcc_stage_keys (n bigint, source text COLLATE "C", id text COLLATE "C") ON COMMIT DROP'
        )
        copy_in(
            self.conn,
            "rtcc_stage_keys",
            pa.table(
                {"n": pa.array(np.arange(table.num_rows, dtype=np.int64)), "source": table["source"], "id": table["id"]}
            ),
        )
        # One index probe per staged key. Left to itself the planner hashes the whole of
        # incident_keys once the batch is a few % of the store: O(store) per append, and
        # slower already at 280k keys (measured: 227 ms hashed vs 111 ms probed, 20k keys).
        self.conn.execute(
            "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
        )
        got = copy_out(
            self.conn,
            "SELECT s.n FROM rtcc_stage_keys s JOIN incident_keys k ON k.source = s.source AND k.id = s.id",
            [],
            {"n": pa.int64()},
        )
        self.conn.execute("RESET enable_hashjoin; RESET enable_mergejoin")
        return got["n"].to_numpy()

    def _ensure_partitions(self, occurred: pd.Series) -> None:
        """Create the monthly partitions (UTC months) a batch needs that do not exist yet.

        In one short transaction of its own before the load, so readers wait at
        most for a catalogue change, never for a load. ``rtcc_create_incident_partition``
        takes the writers' lock and re-checks, so concurrent writers needing the
        same month create it once. A row whose partition is missing anyway (a
        writer of another version) lands in the DEFAULT partition: never lost.
        """
        utc = occurred.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        utc = utc[~np.isnat(utc)]  # a missing time is refused by the table (NOT NULL), not here
        months = [pd.Timestamp(m).to_pydatetime() for m in np.unique(utc.astype("datetime64[M]"))]
        missing = self.conn.execute(
            "SELECT m FROM unnest(%s::timestamp[]) m WHERE to_regclass("
            "format('%%I.%%I', current_schema(), rtcc_incidents_partition_name(m))) IS NULL ORDER BY m",
            (months,),
        ).fetchall()
        if missing:
            with self.conn.transaction():
                for (m,) in missing:
                    self.conn.execute("SELECT rtcc_create_incident_partition(%s)", (m,))

    def _drop_indexes_for_bulk(self, n: int) -> list[sql.SQL | sql.Composed]:
        """Bulk mode: for a batch of ``n >= BULK_MIN_ROWS`` rows at least twice the
        table, drop every index of ``incidents`` (on every partition) and the
        primary key of ``incident_keys``, and return the statements that rebuild
        them after the load.

        One sorted index build beats 100k+ random inserts into each of 8 indexes
        (GiST above all). Readers wait for the commit meanwhile; DDL is
        transactional, so a failed load leaves every index as it was.
        """
        if n < BULK_MIN_ROWS or n < 2 * self._estimated_rows("incidents"):
            return []
        restore: list[sql.SQL | sql.Composed] = []
        pkey = self.conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'incident_keys'::regclass AND contype = 'p'"
        ).fetchone()
        for name, ddl in self._secondary_indexes("incidents"):
            self.conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            # A partitioned index reads "ON ONLY": rebuilt without it, on every partition.
            restore.append(sql.SQL(ddl.replace(" ON ONLY ", " ON ", 1)))
        if pkey:
            self.conn.execute(sql.SQL("ALTER TABLE incident_keys DROP CONSTRAINT {}").format(sql.Identifier(pkey[0])))
            restore.insert(
                0,
                sql.SQL("ALTER TABLE incident_keys ADD CONSTRAINT {} {}").format(
                    sql.Identifier(pkey[0]), sql.SQL(pkey[1])
                ),
            )
        return restore

    def _estimated_rows(self, table: str) -> int:
        """The planner's row estimate (scaled to the table's current size; no scan)."""
        plan = scalar(self.conn.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table}"))
        return int(plan[0]["Plan"]["Plan Rows"])

    def _secondary_indexes(self, table: str) -> list[tuple[str, str]]:
        """``(name, CREATE INDEX ...)`` of the indexes of ``table`` that back no constraint."""
        return self.conn.execute(
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) "
            "ORDER BY i.relname",
            (table,),
        ).fetchall()

    @_serialised
    def write_quarantine(self, df: pd.DataFrame) -> WriteResult:
        received = len(df)
        if not received:
            return WriteResult(0, 0)
        missing = [c for c in QUARANTINE_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"quarantine frame lacks column(s) {missing}; expected {list(QUARANTINE_COLUMNS)}")
        q = df.loc[:, list(QUARANTINE_COLUMNS)].reset_index(drop=True)
        q["row_number"] = q["row_number"].astype("int64")
        for c in ("source", "file", "reason", "detail", "raw"):
            q[c] = q[c].astype("string")
        q = q.drop_duplicates(["source", "file", "row_number"], keep="first")
        table = pa.Table.from_pandas(q, preserve_index=False)
        with self.conn.transaction():
            self.conn.execute(
                "CREATE TEMP TABLE rtcc_stage_quarantine (source text, file text, row_number bigint, "
                "reason text, detail text, raw text) ON COMMIT DROP"
            )
            copy_in(self.conn, "rtcc_stage_quarantine", table)
            try:
                cur = self.conn.execute(
                    "INSERT INTO quarantine (source, file, row_number, reason, detail, raw) "
                    "SELECT source, file, row_number, reason, detail, raw::jsonb FROM rtcc_stage_quarantine "
                    "ON CONFLICT (source, file, row_number) DO NOTHING"
                )
            except psycopg.errors.InvalidTextRepresentation as e:
                raise ValueError(f"quarantine.raw must hold JSON text: {e.diag.message_primary}") from None
            except psycopg.errors.NotNullViolation as e:
                raise ValueError(
                    f"quarantine rows need source, file, row_number and reason: {e.diag.message_primary}"
                ) from None
        return WriteResult(received, cur.rowcount)

    # --- reads -----------------------------------------------------------
    @_serialised
    def incidents(self, q: Query = Query(), columns: Sequence[str] | None = None) -> pd.DataFrame:
        want = list(INCIDENT_COLUMNS) if columns is None else list(columns)
        bad = [c for c in want if c not in INCIDENT_COLUMNS]
        if bad:
            raise KeyError(f"unknown incident column(s) {bad}; use any of {list(INCIDENT_COLUMNS)}")
        where, params, join = self._where(q, needs_known_time((), q))
        if where is None:
            out = empty_incidents()
            return out if columns is None else out.loc[:, want]
        # Only the columns asked for travel (hot-spot code asks for one H3 column).
        fetch = list(dict.fromkeys(want))
        exprs, types = [], {}
        for c in fetch:
            if c in _TS_COLS:
                exprs.append(_epoch_us(f"i.{c}"))
                types[c] = pa.int64()
            elif c == "extras":
                exprs.append("i.extras::text")
                types[c] = pa.string()
            else:
                exprs.append(f"i.{c}")
                types[c] = _arrow_type(CORE_DTYPES.get(c, "int64"))
        query = (
            f"SELECT {', '.join(exprs)} FROM incidents i {join} WHERE {where} "
            'ORDER BY i.source COLLATE "C", i.occurred_from, i.id COLLATE "C"'
        )
        t = self._copy_out(query, params, types)
        for c in _TS_COLS:
            if c in types:
                t = t.set_column(t.schema.get_field_index(c), c, pc.cast(t[c], pa.timestamp("us", tz="UTC")))
        got = t.to_pandas(types_mapper=_pandas_type)
        if columns is None:
            return conform(got)
        out = pd.DataFrame(index=got.index)
        for c in want:  # the canonical dtypes, as conform() gives them
            out[c] = got[c].astype(CORE_DTYPES.get(c, "int64"))
        return out

    @_serialised
    def count(self, q: Query = Query()) -> int:
        where, params, join = self._where(q, needs_known_time((), q))
        if where is None:
            return 0
        return int(scalar(self.conn.execute(f"SELECT count(*) FROM incidents i {join} WHERE {where}", params)))

    @_serialised
    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        types = {
            "source": pa.string(),
            "file": pa.string(),
            "row_number": pa.int64(),
            "reason": pa.string(),
            "detail": pa.string(),
            "raw": pa.string(),
        }
        where, params = ("WHERE source = %s", [source]) if source is not None else ("", [])
        t = self._copy_out(
            f"SELECT source, file, row_number, reason, detail, raw::text FROM quarantine {where} "
            'ORDER BY source COLLATE "C", file COLLATE "C", row_number',
            params,
            types,
        )
        out = t.to_pandas(types_mapper=_pandas_type)
        out["row_number"] = out["row_number"].astype("int64")
        for c in ("source", "file", "reason", "detail", "raw"):
            out[c] = out[c].astype("string")
        return out

    @_serialised
    def counts(self, res: int, by: Sequence[str] = ("cell",), q: Query = Query()) -> pd.DataFrame:
        by = check_keys(by)
        plan = self._counts_sql(int(res), by, q)
        if plan is None:
            return _empty_counts(by)
        query, params, types = plan
        t = self._copy_out(query, params, types)
        out = t.to_pandas(types_mapper=_pandas_type)
        for k in ("day", "week", "month"):
            if k in out.columns:
                out[k] = pd.to_datetime(out[k].astype("int64"), unit="us")
        for k in by:
            out[k] = out[k].astype(_COUNT_DTYPES[k])
        out["n"] = out["n"].astype("int64")
        if len(by) and len(out):
            # SQL already sorted (C collation = code-point order, NULLs last); this
            # makes the order exactly pandas' whatever the server's settings.
            out = out.sort_values(list(by), kind="mergesort", na_position="last")
        return out.reset_index(drop=True)

    def _counts_sql(
        self, res: int, by: tuple[str, ...], q: Query
    ) -> tuple[str, list[object], dict[str, pa.DataType]] | None:
        """The aggregate :meth:`counts` runs (``None`` when nothing can match).

        Time bounds reach SQL as constants on ``occurred_from`` (COPY merges the
        parameters client-side), so the planner prunes the monthly partitions
        outside them before running anything.
        """
        local = bool({"hour", "dow", "hour_of_week", "day", "week", "month"} & set(by))
        where, params, join = self._where(
            q, needs_known_time(by, q), force_join=local, geolocated=geolocated_filter(by, q)
        )
        cell_expr = _cell_expr(res) if "cell" in by else None  # validates res even if nothing matches
        if where is None:
            return None
        lt = "(i.occurred_from AT TIME ZONE s.timezone)"
        dow = f"(extract(isodow FROM {lt})::int - 1)"
        hour = f"extract(hour FROM {lt})::int"
        exprs = {
            "cell": cell_expr,
            "category": 'i.category COLLATE "C"',
            "district": 'i.district COLLATE "C"',
            "hour": hour,
            "dow": dow,
            "hour_of_week": f"({dow} * 24 + {hour})",
            "day": _epoch_us(f"date_trunc('day', {lt})"),
            "week": _epoch_us(f"date_trunc('week', {lt})"),  # ISO week: Monday
            "month": _epoch_us(f"date_trunc('month', {lt})"),
        }
        types = {k: (pa.string() if k in ("category", "district") else pa.int64()) for k in by}
        types["n"] = pa.int64()
        sel = ", ".join(f"{exprs[k]} AS {k}" for k in by)
        if by:
            grp = ", ".join(str(i + 1) for i in range(len(by)))
            query = f"SELECT {sel}, count(*) AS n FROM incidents i {join} WHERE {where} GROUP BY {grp} ORDER BY {grp}"
        else:
            query = f"SELECT count(*) AS n FROM incidents i {join} WHERE {where} HAVING count(*) > 0"
        return query, params, types

    # --- derived tables --------------------------------------------------
    @_serialised
    def put_table(self, name: str, df: pd.DataFrame) -> None:
        name = check_table_name(name)
        df = df.reset_index(drop=True)
        names = [str(c) for c in df.columns]
        long = [c for c in names if len(c.encode()) > 63]
        if long:
            raise ValueError(f"put_table({name!r}): column names longer than 63 bytes {long} (PostgreSQL's limit)")
        if any(not isinstance(c, str) for c in df.columns) or len(set(names)) != len(names):
            raise ValueError(f"put_table({name!r}): column names must be unique strings, got {list(df.columns)}")
        if _ROW in names:
            raise ValueError(f"put_table({name!r}): column name {_ROW!r} is reserved")
        geo = [c for c in df.columns if str(df[c].dtype) == "geometry"]
        if geo:
            raise TypeError(
                f"put_table({name!r}): geometry column(s) {geo} are not stored; drop them "
                "(keep the H3 cell ids: grid.cells_to_geodataframe rebuilds the shapes)"
            )
        spec, wire = [], {}
        for c in names:
            pgtype, arr = _table_column(name, c, df[c])
            spec.append({"name": c, "dtype": str(df[c].dtype), "pg": pgtype})
            wire[c] = arr
        wire[_ROW] = pa.array(np.arange(len(df), dtype=np.int64))
        table = pa.table(wire)
        tbl = _physical_table(name)
        cols_sql = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(s["name"]), sql.SQL(s["pg"])) for s in spec
        )
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('rtcc_table:' || %s))", (name,))
            self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(tbl)))
            sep = sql.SQL(", ") if spec else sql.SQL("")
            self.conn.execute(
                sql.SQL("CREATE TABLE {} ({}{}{} bigint NOT NULL)").format(
                    sql.Identifier(tbl), cols_sql, sep, sql.Identifier(_ROW)
                )
            )
            copy_in(self.conn, tbl, table, columns=names + [_ROW])
            self.conn.execute(
                "INSERT INTO rtcc_tables (name, tbl, columns, n_rows, updated_at) VALUES (%s, %s, %s, %s, now()) "
                "ON CONFLICT (name) DO UPDATE SET tbl = EXCLUDED.tbl, columns = EXCLUDED.columns, "
                "n_rows = EXCLUDED.n_rows, updated_at = now()",
                (name, tbl, json.dumps(spec), len(df)),
            )

    @contextlib.contextmanager
    def table_lock(self, name: str):
        # One transaction holding the table's advisory lock (the one put_table and
        # append_table take): other workers' writers of this table wait for it,
        # and a failure rolls the whole read-modify-write back.
        name = check_table_name(name)
        with self._lock:
            if self.conn.broken and not self._closed:
                self._connect()
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('rtcc_table:' || %s))", (name,))
                yield

    @_serialised
    def append_table(self, name: str, df: pd.DataFrame) -> None:
        name = check_table_name(name)
        df = df.reset_index(drop=True)
        row = self.conn.execute("SELECT tbl, columns, n_rows FROM rtcc_tables WHERE name = %s", (name,)).fetchone()
        spec_new = [{"name": str(c), "dtype": str(df[c].dtype)} for c in df.columns]
        if row is None or [{k: s[k] for k in ("name", "dtype")} for s in row[1]] != spec_new:
            # New table, or a shape the stored one cannot take: the generic path
            # (which also raises the clear errors).
            return Store.append_table(self, name, df)  # the store's lock is re-entrant
        if not len(df):
            return None
        tbl, spec, n0 = row
        wire = {c: _table_column(name, c, df[c])[1] for c in df.columns}
        wire[_ROW] = pa.array(np.arange(n0, n0 + len(df), dtype=np.int64))
        names = [str(c) for c in df.columns]
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('rtcc_table:' || %s))", (name,))
            copy_in(self.conn, tbl, pa.table(wire), columns=names + [_ROW])
            self.conn.execute(
                "UPDATE rtcc_tables SET n_rows = n_rows + %s, updated_at = now() WHERE name = %s", (len(df), name)
            )
        return None

    @_serialised
    def get_table(self, name: str) -> pd.DataFrame | None:
        name = check_table_name(name)
        row = self.conn.execute("SELECT tbl, columns FROM rtcc_tables WHERE name = %s", (name,)).fetchone()
        if row is None:
            return None
        tbl, spec = row
        exprs, types = [], {}
        for s in spec:
            ident = sql.Identifier(s["name"]).as_string(self.conn)
            if s["pg"] in ("timestamptz", "timestamp"):
                exprs.append(_epoch_us(ident))
                types[s["name"]] = pa.int64()
            else:
                exprs.append(ident)
                types[s["name"]] = {
                    "bigint": pa.int64(),
                    "double precision": pa.float64(),
                    "boolean": pa.bool_(),
                    "text": pa.string(),
                }[s["pg"]]
        if not spec:
            n = scalar(self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(tbl))))
            return pd.DataFrame(index=pd.RangeIndex(n))
        t = self._copy_out(
            f"SELECT {', '.join(exprs)} FROM {sql.Identifier(tbl).as_string(self.conn)} "
            f"ORDER BY {sql.Identifier(_ROW).as_string(self.conn)}",
            [],
            types,
        )
        out = {}
        for s in spec:
            col = t[s["name"]]
            if s["pg"] == "timestamptz":
                ser = pd.Series(pc.cast(col, pa.timestamp("us", tz="UTC")).to_pandas())
            elif s["pg"] == "timestamp":
                ser = pd.Series(pc.cast(col, pa.timestamp("us")).to_pandas())
            else:
                ser = pd.Series(col.to_pandas(types_mapper=_pandas_type))
            out[s["name"]] = _restore_dtype(ser, s["dtype"])
        return pd.DataFrame(out)

    # --- internals -------------------------------------------------------
    def _where(self, q: Query, hour_level: bool, force_join: bool = False, geolocated: bool | None | str = "auto"):
        """SQL condition (on alias ``i``, and ``s`` = sources when joined) for ``q``.

        Returns ``(where, params, join)``; ``where`` is None when nothing can match.
        """
        conds: list[str] = []
        params: list[object] = []
        if q.source is not None:
            conds.append("i.source = %s")
            params.append(q.source)
        if q.start is not None or q.end is not None:
            # Naive bounds are local to each source: one UTC interval per source.
            srcs = self.sources()
            if q.source is not None:
                srcs = {q.source: srcs[q.source]} if q.source in srcs else {}
            ors = []
            for name, tz in sorted(srcs.items()):
                lo, hi = local_bound(q.start, tz), local_bound(q.end, tz)
                c = ["i.source = %s"]
                params.append(name)
                if lo is not None:
                    c.append("i.occurred_from >= %s")
                    params.append(lo.to_pydatetime())
                if hi is not None:
                    c.append("i.occurred_from < %s")
                    params.append(hi.to_pydatetime())
                ors.append("(" + " AND ".join(c) + ")")
            if not ors:
                return None, [], ""
            conds.append("(" + " OR ".join(ors) + ")")
        if q.categories is not None:
            conds.append("i.category = ANY(%s::text[])")
            params.append([str(c) for c in q.categories])
        if q.districts is not None:
            conds.append("i.district = ANY(%s::text[])")
            params.append([str(d) for d in q.districts])
        if q.cells is not None:
            cells = np.asarray(q.cells, dtype=np.int64)
            if not len(cells):
                return None, [], ""
            res = q.cells_res if q.cells_res is not None else int(grid.resolution(cells[:1])[0])
            conds.append(f"{_cell_expr(int(res))} = ANY(%s::bigint[])")
            params.append([int(c) for c in cells])
        if geolocated == "auto":
            geolocated = geolocated_filter((), q)
        if geolocated is not None:  # not geolocated: lon/lat NULL, geom NULL, H3 = NO_CELL
            conds.append("i.lon IS NOT NULL" if geolocated else "i.lon IS NULL")
        if hour_level:
            conds.append("i.time_known")
        lt = "(i.occurred_from AT TIME ZONE s.timezone)"
        join = ""
        if q.hours is not None or q.dows is not None or force_join:
            join = "JOIN sources s ON s.name = i.source"
        if q.hours is not None:
            conds.append(f"extract(hour FROM {lt})::int = ANY(%s::int[])")
            params.append([int(h) for h in q.hours])
        if q.dows is not None:
            conds.append(f"(extract(isodow FROM {lt})::int - 1) = ANY(%s::int[])")
            params.append([int(d) for d in q.dows])
        return (" AND ".join(conds) if conds else "true"), params, join

    def _copy_out(self, query: str, params: Sequence[object], types: dict[str, pa.DataType]) -> pa.Table:
        return copy_out(self.conn, query, params, types)


# --- helpers -----------------------------------------------------------------


def _redact(url: str) -> str:
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _epoch_us(expr: str) -> str:
    """Microseconds since the epoch of a timestamp(tz) expression, exactly (numeric, no float)."""
    return f"(extract(epoch FROM {expr}) * 1000000)::bigint"


def _cell_expr(res: int) -> str:
    """SQL for an incident's H3 cell at ``res``: the indexed column or a roll-up of the nearest finer one."""
    if res in DEFAULT_RESOLUTIONS:
        return f"i.{h3_column(res)}"
    finer = [r for r in DEFAULT_RESOLUTIONS if r > res]
    if not finer or res < 0:
        raise ValueError(f"resolution {res} is finer than any indexed resolution {DEFAULT_RESOLUTIONS}")
    return f"rtcc_h3_parent(i.{h3_column(min(finer))}, {int(res)})"


def _arrow_type(dtype: str) -> pa.DataType:
    if dtype == "string":
        return pa.string()
    if dtype == "bool":
        return pa.bool_()
    if dtype == "float64":
        return pa.float64()
    return pa.int64()


def _pandas_type(t: pa.DataType):
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pd.StringDtype()
    if pa.types.is_int64(t):
        return pd.Int64Dtype()
    if pa.types.is_boolean(t):
        return pd.BooleanDtype()
    return None


def _ts_text(arr: pa.Array) -> pa.Array:
    """A timestamp column as ISO text at microseconds ('...00.000001Z' when UTC), for COPY."""
    return pc.cast(pc.cast(arr, pa.timestamp("us", tz=arr.type.tz), safe=False), pa.string())


def _incidents_wire(df: pd.DataFrame) -> pa.Table:
    """Canonical frame -> what COPY reads (timestamps as ISO text, UTC), in column order.

    Rows in time order: each month's heap then fills in ``occurred_from`` order,
    which keeps its BRIN block ranges narrow.
    """
    t = pa.Table.from_pandas(df.loc[:, list(INCIDENT_COLUMNS)], preserve_index=False)
    t = t.take(pc.sort_indices(t["occurred_from"]))
    for c in _TS_COLS:
        t = t.set_column(t.schema.get_field_index(c), c, _ts_text(t[c].combine_chunks()))
    return t


def _physical_table(name: str) -> str:
    tbl = f"rtcc_t_{name}"
    if len(tbl) > 63:  # PostgreSQL truncates identifiers at 63 bytes: keep long names distinct
        tbl = f"rtcc_t_{name[:46]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return tbl


def _table_column(table: str, col: str, s: pd.Series) -> tuple[str, pa.Array]:
    """PostgreSQL type and wire array (for CSV COPY) of one put_table column."""
    dt = s.dtype
    kind = getattr(dt, "kind", "O")
    if isinstance(dt, pd.DatetimeTZDtype) or (kind == "M" and getattr(dt, "tz", None) is not None):
        return "timestamptz", _ts_text(pa.array(s.dt.tz_convert("UTC")))
    if kind == "M":
        return "timestamp", _ts_text(pa.array(s))
    if pd.api.types.is_bool_dtype(dt):
        return "boolean", pa.array(s, type=pa.bool_(), from_pandas=True)
    if pd.api.types.is_integer_dtype(dt):
        return "bigint", pa.array(s, type=pa.int64(), from_pandas=True)
    if pd.api.types.is_float_dtype(dt):
        return "double precision", pa.array(s, type=pa.float64(), from_pandas=True)
    if isinstance(dt, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_string_dtype(dt) or isinstance(dt, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dt):
        vals = s.astype(object)
        bad = vals[vals.notna() & ~vals.map(lambda v: isinstance(v, str))]
        if len(bad):
            raise TypeError(
                f"put_table({table!r}): column {col!r} holds non-string objects (e.g. {bad.iloc[0]!r}); "
                "store int64, float64, bool, string or datetime columns (serialise others to JSON text)"
            )
        return "text", pa.array(vals, type=pa.string(), from_pandas=True)
    raise TypeError(
        f"put_table({table!r}): column {col!r} has dtype {dt}, which is not stored; "
        "use int64, float64, bool, string, UTC or naive datetime columns"
    )


def _restore_dtype(s: pd.Series, dtype: str) -> pd.Series:
    if dtype == "object":
        return s.astype(object).where(s.notna(), None)
    try:
        return s.astype(dtype)
    except (TypeError, ValueError):
        return s


def _empty_counts(by: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame({k: pd.Series(dtype=_COUNT_DTYPES[k]) for k in by})
    df["n"] = pd.Series(dtype="int64")
    return df
