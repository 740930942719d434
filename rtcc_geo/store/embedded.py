"""Embedded store: a local directory of GeoParquet files, no server needed.

Layout (every file is plain (Geo)Parquet any tool can read; the incident tree
is a hive layout, so ``pyarrow.dataset.dataset(DIR / "incidents",
partitioning="hive")`` or Dask reads it as one table)::

    DIR/sources.json                                          {source: IANA time zone}
    DIR/incidents/source=<s>/month=<YYYY-MM>/part-<lo>-<hi>.parquet   GeoParquet rows of one UTC month
    DIR/keys/source=<s>/month=<YYYY-MM>/part-<lo>-<hi>.npy    sorted 64-bit hashes of that part's ids
    DIR/quarantine/<source>.parquet       rejected rows with their reason and raw JSON
    DIR/tables/<name>.parquet             derived tables (put_table / get_table)
    DIR/.write.lock                       the cross-process writer lock
    DIR/.generation                       bumped around every write (readers' consistency check)

Writes cost the batch, not the store. An append writes each month it touches
as a new part file (rows sorted by cell, row groups with statistics, see
:mod:`.geoparquet`) and that part's key index; it never reads or rewrites
another file's rows. A month with more than :attr:`EmbeddedStore.max_parts`
parts is merged into one (what a live feed's small batches need); parts are
immutable and named by number range, so a crash mid-merge is harmless (see
:mod:`.parts`).

Reads push their filters into the scan: whole months outside the time range
are skipped by path, and time, category, district, cells, geolocation and
known-time filters go to ``pyarrow.dataset`` (row groups skipped on their
statistics, rows filtered in Arrow); only the columns asked for are read.
Aggregations (:meth:`EmbeddedStore.counts`) run part by part
(:meth:`~EmbeddedStore.partition_paths`, :meth:`~EmbeddedStore.count_partition`,
:func:`combine_counts`, the seam the Dask layer maps over), one row group at a
time, so memory is one row group's needed columns plus the counts, never the
incident rows, whatever the size of a part.

Concurrency (see docs/store.md): every write takes an exclusive file lock on
``.write.lock`` (any process, any thread), so writers queue and none loses or
duplicates a row. Files are created by atomic rename, and a write bumps
``.generation`` to odd before and to even after it touches files: a reader
that sees the generation change (or odd) while it read retries, so it never
mixes months from before and after one write.

Deduplication reads only key indexes: per part, the sorted ``hash64(id)``
array (8 bytes a row, memory-mapped). The batch's own months are checked
first (where a re-sent incident lives); only hashes not found there are
checked against the source's other months (a corrected re-export can move an
incident across months), in whichever direction of the sorted search costs
less. A hash hit is confirmed against that part's stored ids, so a 64-bit
collision can never drop a row.

Stores in the layout before issue 16 (``incidents/<source>/<YYYY-MM>.parquet``)
are read as they are and converted by the first write (or :meth:`~EmbeddedStore.migrate`):
every month becomes part 0 of its hive directory with each H3 column
recomputed from lon/lat (old files hold roll-ups of res 10).
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from filelock import FileLock

from .. import grid
from ..schema import CORE_DTYPES, DEFAULT_RESOLUTIONS, NO_CELL, QUARANTINE_COLUMNS, conform, empty_incidents, h3_column
from . import geoparquet as gpq
from .base import (
    Query,
    Store,
    WriteResult,
    check_keys,
    check_table_name,
    geolocated_filter,
    local_bound,
    needs_known_time,
)
from .keyruns import KeyRuns
from .parts import (
    Part,
    keys_dir,
    keys_files,
    legacy_keys_path,
    legacy_parts,
    legacy_sources,
    live_parts,
    live_parts_by_month,
    month_parts,
    part_path,
)


class EmbeddedStore(Store):
    """The default store: GeoParquet files under ``root``."""

    kind = "embedded"

    #: Seconds a writer waits for the lock before giving up (an ingest holds it
    #: for one file's write at a time, so waits are seconds, not minutes).
    lock_timeout: float = 600.0

    #: Live part files a month may have; the append that exceeds it merges the
    #: month's parts into one (O(month), once every ``max_parts`` appends).
    max_parts: int = 16

    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise FileNotFoundError(
                f"store directory {str(self.root)!r} does not exist "
                "(create it by ingesting: rtcc-geo ingest --store DIR ...)"
            )
        # Re-entrant within a thread; exclusive across threads and processes (flock).
        self._lock = FileLock(str(self.root / ".write.lock"), timeout=self.lock_timeout)

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.root)!r})"

    # --- sources ---------------------------------------------------------
    def register_source(self, name: str, timezone: str) -> None:
        if self.sources().get(name) == timezone:
            return
        with self._writing():
            src = self.sources()  # re-read under the lock: another writer may have added one
            if src.get(name) != timezone:
                src[name] = timezone
                _atomic_write_text(self.root / "sources.json", json.dumps(src, indent=2, sort_keys=True))

    def sources(self) -> dict[str, str]:
        p = self.root / "sources.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def _tz(self, source: str) -> str:
        try:
            return self.sources()[source]
        except KeyError:
            raise ValueError(f"unknown source {source!r}: register_source() it first") from None

    # --- writes ----------------------------------------------------------
    def write_incidents(self, df: pd.DataFrame) -> WriteResult:
        received = len(df)
        if not received:
            return WriteResult(0, 0)
        with self._writing():
            self._migrate_legacy()
            df, hashes = self._prepare(df)
            table: pa.Table | None = None  # Arrow rows, converted once if any row is new
            ids = pa.array(df["id"].array, type=pa.large_string())
            month_of, months = _utc_months(df["occurred_from"])
            source_of = df["source"].to_numpy(dtype=object)
            inserted = 0
            written: list[tuple[str, pa.Array]] = []  # (source, ids) of each part, for the lazy key set
            for source in sorted(set(source_of.tolist())):
                rows = np.flatnonzero(source_of == source)
                by_month = live_parts_by_month(self.root, source)
                runs = self._runs(source, by_month)
                batch_months = [months[i] for i in np.unique(month_of[rows])]
                new = rows[~self._stored(source, ids.take(rows), hashes[rows], batch_months, by_month, runs)]
                # Part numbers run across the source's months (0 is a migrated month), so one
                # number range tells which parts the source-wide key runs cover.
                first = n = max([0, runs.top(), *(p.hi for ps in by_month.values() for p in ps)]) + 1
                for mi in np.unique(month_of[new]):
                    sel = new[month_of[new] == mi]
                    if table is None:
                        table = gpq.arrow_rows(df)
                    self._append_part(source, months[mi], n, table.take(sel), hashes[sel])
                    written.append((source, ids.take(sel)))
                    inserted += len(sel)
                    n += 1
                if len(new):
                    runs.add(first, n - 1, hashes[new])  # after the parts: a crash leaves it behind, repaired
        return WriteResult(received, inserted, lambda: {(s, i) for s, a in written for i in a.to_pylist()})

    def _prepare(self, df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """:func:`~.base.prepare_incidents` (conform, known sources, the first copy of a
        key repeated in the batch) and the rows' id hashes. Distinct hashes mean distinct
        ids, so the usual batch skips pandas' duplicate search; otherwise it runs as before."""
        df = conform(df)
        unknown = set(df["source"].unique()) - set(self.sources())
        if unknown:
            raise ValueError(f"unknown source(s) {sorted(unknown)}: register_source() first")
        hashes = hash_ids(df["id"])
        if len(np.unique(hashes)) < len(hashes):
            df = df.drop_duplicates(["source", "id"], keep="first")
            hashes = hash_ids(df["id"])
        return df, hashes

    def _append_part(self, source: str, month: str, n: int, rows: pa.Table, hashes: np.ndarray) -> None:
        """Add ``rows`` (:data:`.geoparquet.SCHEMA`; all of ``source`` and UTC ``month``, none
        stored) as part ``n``."""
        part = Part(source, month, part_path(self.root, source, month, n, n), n, n)
        old_keys = self._month_keys(source, month, month_parts(self.root, source, month))
        table = gpq.sort_rows(rows)
        _atomic(part.path, lambda tmp: gpq.write_table(table, tmp))
        # After the part: a crash in between leaves the index behind, which its name shows.
        self._save_month_keys(source, month, n, np.concatenate([old_keys, hashes]))
        live = month_parts(self.root, source, month)
        if len(live) > self.max_parts:
            self._compact(source, month, live)

    def _compact(self, source: str, month: str, live: list[Part]) -> None:
        """Merge a month's live parts into one ``part-<lo>-<hi>`` (then delete them:
        covered by the new range, they are dead even if a crash leaves them)."""
        lo, hi = min(p.lo for p in live), max(p.hi for p in live)
        merged = Part(source, month, part_path(self.root, source, month, lo, hi), lo, hi)
        table = pa.concat_tables([pq.read_table(p.path, columns=gpq.SCHEMA.names) for p in live])
        table = table.cast(gpq.SCHEMA).sort_by([(k, "ascending") for k in gpq.SORT_KEYS])
        _atomic(merged.path, lambda tmp: gpq.write_table(table, tmp))
        # The month's key index is unchanged: the same ids, the same highest number.
        for p in month_parts(self.root, source, month, live_only=False):
            if p != merged:
                p.path.unlink(missing_ok=True)

    # --- migration from the pre-hive layout ----------------------------------
    def migrate(self) -> int:
        """Convert month files of the layout before issue 16 into the hive layout,
        recomputing every H3 column from lon/lat; returns the number of files
        converted (0 when there is nothing to do). Idempotent, safe to interrupt."""
        with self._writing():
            return self._migrate_legacy()

    def _migrate_legacy(self) -> int:
        done = 0
        for source in legacy_sources(self.root):
            for old in legacy_parts(self.root, source):
                df = conform(reindex_cells(_read_legacy(old.path)))
                part = Part(source, old.month, part_path(self.root, source, old.month, 0, 0), 0, 0)
                table = gpq.to_table(df)
                _atomic(part.path, lambda tmp, t=table: gpq.write_table(t, tmp))
                self._save_month_keys(source, old.month, 0, hash_ids(df["id"]))
                # Only now the old file goes: a crash before leaves both, and readers
                # take the migrated part 0 over the legacy file (parts.live_parts).
                old.path.unlink()
                legacy_keys_path(self.root, old).unlink(missing_ok=True)
                done += 1
            for d in (self.root / "incidents" / source, self.root / "keys" / source):
                try:
                    d.rmdir()
                except OSError:
                    pass  # not empty (a file we do not know) or already gone
        return done

    def write_quarantine(self, df: pd.DataFrame) -> WriteResult:
        received = len(df)
        if not received:
            return WriteResult(0, 0)
        df = df.loc[:, list(QUARANTINE_COLUMNS)].copy()
        df["row_number"] = df["row_number"].astype("int64")
        for c in ("source", "file", "reason", "detail", "raw"):
            df[c] = df[c].astype("string")
        df = df.drop_duplicates(["source", "file", "row_number"], keep="first")
        inserted = 0
        with self._writing():
            inserted = self._append_quarantine(df)
        return WriteResult(received, inserted)

    def _append_quarantine(self, df: pd.DataFrame) -> int:
        inserted = 0
        for source, part in df.groupby("source", sort=True):
            path = self.root / "quarantine" / f"{source}.parquet"
            old = pd.read_parquet(path) if path.exists() else None
            if old is not None:
                key_old = pd.MultiIndex.from_frame(old[["file", "row_number"]])
                key_new = pd.MultiIndex.from_frame(part[["file", "row_number"]])
                part = part[~key_new.isin(key_old)]
            if len(part):
                merged = part if old is None else pd.concat([old, part], ignore_index=True)
                _atomic_parquet(merged.reset_index(drop=True), path)
                inserted += len(part)
        return inserted

    # --- reads -----------------------------------------------------------
    def incidents(self, q: Query = Query(), columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self._consistent(lambda: self._incidents(q, columns))

    def _incidents(self, q: Query, columns: Sequence[str] | None) -> pd.DataFrame:
        want = list(columns) if columns is not None else list(gpq.SCHEMA.names)
        read = list(dict.fromkeys([*want, "source", "occurred_from", "id"]))
        frames = [
            self._read(source, path, read, q, needs_known_time((), q), geolocated_filter((), q))
            for source, path in self.partition_paths(q)
        ]
        frames = [f for f in frames if len(f)]
        if not frames:
            out = empty_incidents()
        else:
            out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            out = out.sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True)
        return out.loc[:, want]

    def count(self, q: Query = Query()) -> int:
        return self._consistent(lambda: sum(self._count_part(s, p, q) for s, p in self.partition_paths(q)))

    def _count_part(self, source: str, path: Path, q: Query) -> int:
        scan = _Scan(source, self._tz(source), q, needs_known_time((), q), geolocated_filter((), q))
        if scan.post_columns:
            return len(self._read(source, path, ["occurred_from"], q, scan.hour_level, scan.geolocated))
        return ds.dataset(path, format="parquet").count_rows(filter=scan.expression)

    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        d = self.root / "quarantine"
        paths = [d / f"{source}.parquet"] if source else sorted(d.glob("*.parquet"))
        frames = [pd.read_parquet(p) for p in paths if p.exists()]
        if not frames:
            return pd.DataFrame(
                {c: pd.Series(dtype="int64" if c == "row_number" else "string") for c in QUARANTINE_COLUMNS}
            )
        return pd.concat(frames, ignore_index=True)

    def counts(self, res: int, by: Sequence[str] = ("cell",), q: Query = Query()) -> pd.DataFrame:
        by = check_keys(by)
        return self._consistent(lambda: self._counts(res, by, q))

    def _counts(self, res: int, by: tuple[str, ...], q: Query) -> pd.DataFrame:
        # Streams row group by row group (:meth:`_batches`): one row group's needed columns
        # and the partial counts are all that is ever in memory, and partials are folded
        # every so often, so they stay grid-sized.
        paths = self.partition_paths(q)
        return self._count_paths(paths, res, by, q)

    def _count_paths(
        self, paths: Sequence[tuple[str, Path]], res: int, by: Sequence[str], q: Query, fold: int = 64
    ) -> pd.DataFrame:
        """:meth:`counts` of the rows of ``paths`` (``(source, file)``), row group by row group."""
        frames: list[pd.DataFrame] = []
        for source in dict.fromkeys(s for s, _ in paths):
            mine = [p for s, p in paths if s == source]
            for batch in self._batches(source, mine, _count_columns(res, by), q, by):
                frames.append(self._count_table(batch, source, res, by))
                if len(frames) >= fold:
                    frames = [combine_counts(frames, by)]
        return combine_counts(frames, by)

    # --- partition-level primitives (what the Dask layer maps over) --------
    def partition_paths(self, q: Query = Query()) -> list[tuple[str, Path]]:
        """``(source, file)`` of every part file that may hold rows matching ``q``
        (whole months outside ``[q.start, q.end)`` pruned by their path)."""
        out = []
        for source in self._sources_for(q):
            tz = self._tz(source)
            start, end = local_bound(q.start, tz), local_bound(q.end, tz)
            for p in live_parts(self.root, source):
                m = pd.Timestamp(p.month + "-01", tz="UTC")
                if end is not None and m >= end:
                    continue
                if start is not None and m + pd.offsets.MonthBegin(1) <= start:
                    continue
                out.append((source, p.path))
        return out

    def count_partition(self, source: str, path: Path, res: int, by: Sequence[str], q: Query) -> pd.DataFrame:
        """Partial :meth:`counts` of one part file; :func:`combine_counts` sums partials."""
        return self._count_paths([(source, path)], res, check_keys(by), q)

    def _batches(self, source: str, paths: Sequence[Path], columns: Sequence[str], q: Query, by: Sequence[str]):
        """Rows matching ``q`` in ``paths``, one row group at a time (those whose statistics
        rule the filter out are skipped unread), in file and row-group order.

        Row groups are read one by one on purpose: a ``pyarrow.dataset`` scanner over the
        files decodes ahead of its consumer whatever its readahead settings (measured: 46 MB
        in flight for 3 columns of 4 M rows in 12 files, 13 MB for 1 M; this way 4-8 MB for
        both), so its memory grew with the rows of a part file."""
        scan = _Scan(source, self._tz(source), q, needs_known_time(by, q), geolocated_filter(by, q))
        read = list(dict.fromkeys([*columns, *scan.post_columns]))

        def groups():
            for path in paths:
                d = ds.dataset(str(path), format="parquet")
                for frag in d.get_fragments():
                    for rg in frag.split_by_row_group(scan.expression, schema=d.schema):
                        yield rg, d.schema

        def read_one(item):
            rg, schema = item
            return rg.to_table(schema=schema, columns=read, filter=scan.expression)

        # The next row group is read while this one is counted (Arrow releases the GIL):
        # two in memory at most (10 M store: ~30 % faster than one at a time, as much memory).
        with ThreadPoolExecutor(1) as ex:
            it = groups()
            nxt = next(it, None)
            fut = ex.submit(read_one, nxt) if nxt is not None else None
            while fut is not None:
                t = fut.result()
                nxt = next(it, None)
                fut = ex.submit(read_one, nxt) if nxt is not None else None
                if t.num_rows:
                    yield scan.post_filter(t)

    def _count_table(self, table: pa.Table, source: str, res: int, by: Sequence[str]) -> pd.DataFrame:
        """Counts of ``table``'s rows (already filtered) by ``by``, keys and groups in Arrow."""
        if not table.num_rows:
            return _empty_counts(by)
        keys: dict[str, pa.Array | pa.ChunkedArray] = {}
        if set(by) & _TIME_KEYS:
            keys.update(_arrow_local_keys(table.column("occurred_from"), self._tz(source), by))
        if "cell" in by:
            col = table.column(_cell_source_column(res))
            keys["cell"] = col if res in DEFAULT_RESOLUTIONS else pa.array(grid.parent(col.to_numpy(), res))
        for k in ("category", "district"):
            if k in by:
                keys[k] = table.column(k)
        grouped = pa.table({k: keys[k] for k in by}).group_by(list(by)).aggregate([([], "count_all")])
        return _normalise_count_dtypes(gpq.to_pandas(grouped).rename(columns={"count_all": "n"}))

    def _read(
        self, source: str, path: Path, columns: Sequence[str], q: Query, hour_level: bool, geolocated: bool | None
    ) -> pd.DataFrame:
        """Rows of one part matching ``q`` (filters pushed into the scan), ``columns`` and
        whatever the filters left to pandas need."""
        return gpq.to_pandas(self._scan(source, path, columns, q, hour_level, geolocated))

    def _scan(
        self, source: str, path: Path, columns: Sequence[str], q: Query, hour_level: bool, geolocated: bool | None
    ) -> pa.Table:
        """:meth:`_read` as an Arrow table."""
        scan = _Scan(source, self._tz(source), q, hour_level, geolocated)
        read = list(dict.fromkeys([*columns, *scan.post_columns]))
        return scan.post_filter(ds.dataset(path, format="parquet").to_table(columns=read, filter=scan.expression))

    # --- derived tables --------------------------------------------------
    def put_table(self, name: str, df: pd.DataFrame) -> None:
        path = self.root / "tables" / f"{check_table_name(name)}.parquet"
        with self._writing():
            _atomic_parquet(df.reset_index(drop=True), path)

    def append_table(self, name: str, df: pd.DataFrame) -> None:
        # Read and rewrite under one lock hold: two appenders must not both read the old table.
        with self._writing():
            super().append_table(name, df)

    def table_lock(self, name: str):
        # The writer lock (flock): exclusive across threads and processes.
        return self._writing()

    def get_table(self, name: str) -> pd.DataFrame | None:
        p = self.root / "tables" / f"{check_table_name(name)}.parquet"
        return pd.read_parquet(p) if p.exists() else None

    # --- deduplication ------------------------------------------------------
    def _stored(
        self,
        source: str,
        ids: pa.Array,
        h: np.ndarray,
        batch_months: Sequence[str],
        by_month: dict[str, list[Part]],
        runs: KeyRuns,
    ) -> np.ndarray:
        """Which of ``ids`` (hashes ``h``) are stored for ``source``.

        The batch's own months first (each month's key index; where a re-sent
        incident lives). Hashes still unmatched are looked up in the source-wide
        key runs; only a hit there (an incident moved across months, or a 64-bit
        collision) searches the other months' indexes, for those hashes alone.
        Every hash hit is confirmed against the stored ids of its month.
        """
        hit = np.zeros(len(h), dtype=bool)
        own = [m for m in batch_months if m in by_month]
        search = _SortedSearch(h)
        for month in own:
            self._confirm(
                source,
                ids,
                search.members(self._month_keys(source, month, by_month[month])) & ~hit,
                by_month[month],
                hit,
            )
        others = [m for m in by_month if m not in set(own)]
        todo = ~hit
        if not others or not todo.any():
            return hit
        maybe = np.zeros(len(h), dtype=bool)
        for k in runs.arrays():
            maybe |= search.members(k)
        maybe &= todo
        if maybe.any():
            sub = np.flatnonzero(maybe)
            few = _SortedSearch(h[sub])
            for month in others:
                cand = np.zeros(len(h), dtype=bool)
                cand[sub] = few.members(self._month_keys(source, month, by_month[month]))
                self._confirm(source, ids, cand & ~hit, by_month[month], hit)
        return hit

    @staticmethod
    def _confirm(source: str, ids: pa.Array, cand: np.ndarray, parts: Sequence[Part], hit: np.ndarray) -> None:
        """Set ``hit`` for the candidates whose id is really stored in ``parts``."""
        if not cand.any():
            return
        stored = pa.concat_arrays(
            [pq.read_table(p.path, columns=["id"]).column("id").cast(pa.large_string()).combine_chunks() for p in parts]
        )
        sub = np.flatnonzero(cand)
        found = pc.is_in(ids.take(sub), value_set=stored).to_numpy(zero_copy_only=False)
        hit[sub[found]] = True

    def _runs(self, source: str, by_month: dict[str, list[Part]]) -> KeyRuns:
        """The source-wide key runs, brought up to date with the live parts first (an
        older store has none; a crash after a part's rename leaves them behind)."""
        runs = KeyRuns(self.root / "keys" / f"source={source}" / "all", _save_npy)
        top = runs.top()
        live = [p for ps in by_month.values() for p in ps]
        newer = [p for p in live if p.hi > top]
        if not newer:
            return runs
        hi = max(p.hi for p in newer)
        if top >= 0 and all(p.lo > top for p in newer):
            runs.add(min(p.lo for p in newer), hi, np.concatenate([self._part_hashes(p) for p in newer]))
        else:  # none yet, or a merged part straddles them: rebuild from the month indexes
            runs.reset(hi, np.concatenate([self._month_keys(source, m, ps) for m, ps in by_month.items()]))
        return runs

    @staticmethod
    def _part_hashes(p: Part) -> np.ndarray:
        return hash_ids(pq.read_table(p.path, columns=["id"]).column("id").to_pandas())

    def _month_keys(self, source: str, month: str, live: Sequence[Part]) -> np.ndarray:
        """The month's key index (hashes of the ids of its ``live`` parts). Brought up
        to date first when it is missing (an older store) or behind the parts (a crash
        between a part's rename and the index's): only writers call this."""
        files = keys_files(self.root, source, month)
        top = max((p.hi for p in live), default=-1)
        n, f = files[-1] if files else (-1, None)
        if f is not None and n >= top:
            return np.load(f)
        newer = [p for p in live if p.hi > n]
        if f is not None and all(p.lo > n for p in newer):
            old, rebuild = np.load(f), newer
        else:  # no index, or a merged part straddles it: rebuild from every part
            old, rebuild = np.empty(0, dtype=np.uint64), list(live)
        k = np.concatenate([old, *(self._part_hashes(p) for p in rebuild)])
        return self._save_month_keys(source, month, top, k) if len(live) else k

    def _save_month_keys(self, source: str, month: str, n: int, hashes: np.ndarray) -> np.ndarray:
        """Write ``upto-<n>.npy`` (sorted) and drop the month's older index files."""
        k = np.sort(np.asarray(hashes, dtype=np.uint64))
        _save_npy(keys_dir(self.root, source, month) / f"upto-{n:08d}.npy", k)
        for m, old in keys_files(self.root, source, month):
            if m != n:
                old.unlink(missing_ok=True)
        return k

    # --- locking and consistent reads -------------------------------------
    def _writing(self):
        """Hold the writer lock and mark the generation odd while files change."""
        from contextlib import contextmanager

        @contextmanager
        def cm():
            with self._lock:
                outer = self._lock.lock_counter == 1
                if outer:
                    self._bump_generation(odd=True)
                try:
                    yield
                finally:
                    if outer:
                        self._bump_generation(odd=False)

        return cm()

    def _generation(self) -> int:
        try:
            return int((self.root / ".generation").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _bump_generation(self, odd: bool) -> None:
        g = self._generation()
        if (g % 2 == 1) != odd:
            g += 1
        else:
            g += 2  # a crashed writer left it odd (or even): keep the parity we need, still change it
        _atomic_write_text(self.root / ".generation", str(g))

    def _consistent(self, read, tries: int = 200):
        """Run ``read`` until no write overlapped it (seqlock on ``.generation``).

        A write in progress makes the generation odd; a reader that saw it odd
        or changed reads again. After ``tries`` overlapping attempts (a writer
        that crashed mid-write leaves it odd for good) it waits for the lock:
        the files then are as the last completed write left them.
        """
        import time

        for i in range(tries):
            g0 = self._generation()
            if g0 % 2 == 0:
                try:
                    out = read()
                except (OSError, pa.ArrowException):  # a file replaced under us
                    out = _RETRY
                if out is not _RETRY and self._generation() == g0:
                    return out
            time.sleep(min(0.005 * (i + 1), 0.1))
        with self._lock:
            return read()

    def _sources_for(self, q: Query) -> list[str]:
        src = sorted(self.sources())
        if q.source is not None:
            if q.source not in src:
                return []
            return [q.source]
        return src


class _Scan:
    """One query's filters on one source: what ``pyarrow.dataset`` evaluates in the
    scan (:attr:`expression`, row groups pruned on their statistics) and what is
    left to pandas (local hours and days of week, cells coarser than any column)."""

    def __init__(self, source: str, tz: str, q: Query, hour_level: bool, geolocated: bool | None):
        self.tz, self.q, self.hour_level, self.geolocated = tz, q, hour_level, geolocated
        terms = []
        start, end = local_bound(q.start, tz), local_bound(q.end, tz)
        t = pc.field("occurred_from")
        if start is not None:
            terms.append(t >= pa.scalar(start.value, pa.timestamp("ns", tz="UTC")))
        if end is not None:
            terms.append(t < pa.scalar(end.value, pa.timestamp("ns", tz="UTC")))
        if q.categories is not None:
            terms.append(pc.field("category").isin(pa.array([str(c) for c in q.categories], pa.string())))
        if q.districts is not None:
            terms.append(pc.field("district").isin(pa.array([str(d) for d in q.districts], pa.string())))
        self.cells_res: int | None = None
        if q.cells is not None:
            res = q.cells_res if q.cells_res is not None else int(grid.resolution(np.asarray(q.cells[:1]))[0])
            if res in DEFAULT_RESOLUTIONS:
                terms.append(pc.field(h3_column(res)).isin(pa.array(np.asarray(q.cells, dtype=np.int64))))
            else:
                self.cells_res = res
        if geolocated is not None:  # not geolocated = NO_CELL in every H3 column
            g = pc.field(_GEO_COLUMN)
            terms.append(g != NO_CELL if geolocated else g == NO_CELL)
        if hour_level:
            terms.append(pc.field("time_known"))
        self.expression = None
        for term in terms:
            self.expression = term if self.expression is None else self.expression & term
        self.post_columns: list[str] = []
        if q.hours is not None or q.dows is not None:
            self.post_columns.append("occurred_from")
        if self.cells_res is not None:
            self.post_columns.append(_cell_source_column(self.cells_res))

    def post_filter(self, t: pa.Table) -> pa.Table:
        if not self.post_columns or not t.num_rows:
            return t
        keep = np.ones(t.num_rows, dtype=bool)
        q = self.q
        if self.cells_res is not None:
            finer = t.column(_cell_source_column(self.cells_res)).to_numpy()
            keep &= np.isin(grid.parent(finer, self.cells_res), np.asarray(q.cells, dtype=np.int64))
        if q.hours is not None or q.dows is not None:
            local = _arrow_local_keys(t.column("occurred_from"), self.tz, ("hour", "dow"))
            if q.hours is not None:
                keep &= np.isin(local["hour"].to_numpy(), list(q.hours))
            if q.dows is not None:
                keep &= np.isin(local["dow"].to_numpy(), list(q.dows))
        return t.filter(pa.array(keep))


class _SortedSearch:
    """Membership of a batch's hashes in sorted key indexes. The batch is sorted once;
    each index is searched in whichever direction costs less: the batch in the index
    (``B log N``) for a small batch, the index in the batch (``N log B``) for a large one."""

    def __init__(self, h: np.ndarray):
        self.order = np.argsort(np.asarray(h, dtype=np.uint64), kind="stable")
        self.hs = np.asarray(h, dtype=np.uint64)[self.order]

    def members(self, keys: np.ndarray) -> np.ndarray:
        hs, n = self.hs, len(keys)
        out = np.zeros(len(hs), dtype=bool)
        if not n or not len(hs):
            return out
        if len(hs) * np.log2(n + 1) <= n * np.log2(len(hs) + 1):
            pos = np.minimum(np.searchsorted(keys, hs), n - 1)
            out[self.order] = keys[pos] == hs
            return out
        lo, hi = np.searchsorted(hs, keys, "left"), np.searchsorted(hs, keys, "right")
        runs = hi - lo
        sel = runs > 0
        if sel.any():  # equal hashes within the batch (distinct ids colliding) all get marked
            starts, lens = lo[sel], runs[sel]
            idx = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
            out[self.order[idx]] = True
        return out


def reindex_cells(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every H3 column recomputed from lon/lat (:func:`rtcc_geo.grid.index_points`:
    each resolution's own cell), :data:`~rtcc_geo.schema.NO_CELL` where not geolocated."""
    lon, lat = df["lon"].to_numpy(dtype="float64"), df["lat"].to_numpy(dtype="float64")
    ok = np.isfinite(lon) & np.isfinite(lat)
    cells = grid.index_points(lat[ok], lon[ok], DEFAULT_RESOLUTIONS)
    out = df.copy()
    for r, c in cells.items():
        col = np.full(len(df), NO_CELL, dtype=np.int64)
        col[ok] = c
        out[h3_column(r)] = col
    return out


def _read_legacy(path: Path) -> pd.DataFrame:
    cols = [c for c in CORE_DTYPES if c in pq.read_schema(path).names]
    return gpq.to_pandas(pq.read_table(path, columns=cols))


def _utc_months(t: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each row's UTC month as an index into the sorted list of ``YYYY-MM`` labels."""
    m = t.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[M]")
    uniq, inv = np.unique(m, return_inverse=True)
    return inv, [str(u) for u in np.datetime_as_string(uniq, unit="M")]


# --- the query layer's shared helpers (pure functions on canonical frames) ---


def cell_column(df: pd.DataFrame, res: int) -> np.ndarray:
    """H3 cells of ``df`` at ``res``: the indexed column, or rolled up from the
    nearest finer indexed one."""
    col = h3_column(res)
    if col in df.columns:
        return df[col].to_numpy(dtype=np.int64)
    finer = [r for r in DEFAULT_RESOLUTIONS if r > res and h3_column(r) in df.columns]
    if not finer:
        raise ValueError(f"resolution {res} is finer than any indexed resolution {DEFAULT_RESOLUTIONS}")
    return grid.parent(df[h3_column(min(finer))].to_numpy(dtype=np.int64), res)


def _arrow_local_keys(t: pa.ChunkedArray, tz: str, by: Sequence[str]) -> dict[str, pa.ChunkedArray]:
    """Local-time count keys (see :data:`~rtcc_geo.store.base.COUNT_KEYS`) of UTC times, in Arrow:
    wall-clock time from the time zone database, days/weeks/months as naive local midnights."""
    local = pc.local_timestamp(t.cast(pa.timestamp("ns", tz=tz)))
    keys: dict[str, pa.ChunkedArray] = {}
    hour = pc.cast(pc.hour(local), pa.int64())
    dow = pc.day_of_week(local)  # Monday = 0
    if "hour" in by:
        keys["hour"] = hour
    if "dow" in by:
        keys["dow"] = dow
    if "hour_of_week" in by:
        keys["hour_of_week"] = pc.add(pc.multiply(dow, 24), hour)
    if "day" in by:
        keys["day"] = pc.floor_temporal(local, unit="day")
    if "week" in by:
        keys["week"] = pc.floor_temporal(local, unit="week", week_starts_monday=True)
    if "month" in by:
        keys["month"] = pc.floor_temporal(local, unit="month")
    return keys


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


def _normalise_count_dtypes(out: pd.DataFrame) -> pd.DataFrame:
    for k, t in _COUNT_DTYPES.items():
        if k in out.columns:
            out[k] = out[k].astype(t)
    out["n"] = out["n"].astype("int64")
    return out.reset_index(drop=True)


def combine_counts(frames: Sequence[pd.DataFrame], by: Sequence[str]) -> pd.DataFrame:
    """Sum partial counts (per partition, per worker) into :meth:`Store.counts`' result, sorted by ``by``."""
    by = list(by)
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty_counts(by)
    allp = pd.concat(frames, ignore_index=True)
    out = allp.groupby(by, sort=True, dropna=False)["n"].sum().reset_index()
    return _normalise_count_dtypes(out)


def _empty_counts(by: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame({k: pd.Series(dtype=_COUNT_DTYPES[k]) for k in by})
    df["n"] = pd.Series(dtype="int64")
    return df


#: Not geolocated = NO_CELL in every H3 column; the coarsest one is the cheapest to
#: test and, as rows are sorted by it, its statistics prune whole row groups.
_GEO_COLUMN = h3_column(min(DEFAULT_RESOLUTIONS))
_TIME_KEYS = frozenset({"hour", "dow", "hour_of_week", "day", "week", "month"})


def _count_columns(res: int, by: Sequence[str]) -> list[str]:
    """The stored columns a count by ``by`` reads."""
    cols = [_cell_source_column(res)] if "cell" in by else []
    cols += [k for k in ("category", "district") if k in by]
    if set(by) & _TIME_KEYS:
        cols.append("occurred_from")
    return cols


def _cell_source_column(res: int) -> str:
    """The stored column :func:`cell_column` reads for ``res``."""
    if res in DEFAULT_RESOLUTIONS:
        return h3_column(res)
    finer = [r for r in DEFAULT_RESOLUTIONS if r > res]
    if not finer:
        raise ValueError(f"resolution {res} is finer than any indexed resolution {DEFAULT_RESOLUTIONS}")
    return h3_column(min(finer))


_RETRY = object()


def hash_ids(ids: pd.Series) -> np.ndarray:
    """64-bit hashes of incident ids (SipHash-2-4 with a fixed key, as pandas
    implements it; the index format in ``keys/`` depends on it)."""
    from pandas.util import hash_array

    return hash_array(ids.astype(str).to_numpy(dtype=object), encoding="utf8", hash_key=_HASH_KEY, categorize=False)


_HASH_KEY = "rtcc-geo-ids-v01"  # 16 bytes


def _save_npy(path: Path, a: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, a)

    _atomic(path, write)


def _atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(text))


def _atomic(path: Path, write) -> None:
    """Write to a temp file beside ``path`` and rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
