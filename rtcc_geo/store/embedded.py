"""Embedded store: a local directory of GeoParquet files, no server needed.

Layout (every file is plain (Geo)Parquet any tool can read)::

    DIR/sources.json                      {source: IANA time zone}
    DIR/incidents/<source>/<YYYY-MM>.parquet   one file per UTC month (GeoParquet, point geometry)
    DIR/quarantine/<source>.parquet       rejected rows with their reason and raw JSON
    DIR/tables/<name>.parquet             derived tables (put_table / get_table)
    DIR/keys/<source>/<YYYY-MM>.npy       sorted 64-bit hashes of that partition's ids
    DIR/.write.lock                       the cross-process writer lock
    DIR/.generation                       bumped around every write (readers' consistency check)

Monthly partitions keep re-ingest cheap (only touched months are rewritten)
and map one-to-one onto Dask partitions should an agency outgrow one machine.

Concurrency (see docs/store.md): every write takes an exclusive file lock on
``.write.lock`` (any process, any thread), so writers queue and none loses or
duplicates a row. Files are replaced by atomic rename, and a write bumps
``.generation`` to odd before and to even after it touches files: a reader
that sees the generation change (or odd) while it read retries, so it never
mixes months from before and after one write.

Deduplication reads only the key index: per partition, the sorted
``hash64(id)`` array (8 bytes a row); a hash hit is confirmed against that
partition's stored ids, so a 64-bit collision can never drop a row. Memory
is O(batch + one partition), never a set of every stored id. Stores written
before the index existed get it built lazily, partition by partition, on
their first write (a missing or stale index file is rebuilt from the
partition; staleness is a row-count mismatch).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import pandas as pd
from filelock import FileLock

from .. import grid
from ..schema import CORE_DTYPES, DEFAULT_RESOLUTIONS, NO_CELL, QUARANTINE_COLUMNS, conform, empty_incidents, h3_column
from .base import (prepare_incidents, Query, Store, WriteResult, check_keys, check_table_name, geolocated_filter,
                   local_bound, needs_known_time)


class EmbeddedStore(Store):
    """The default store: GeoParquet files under ``root``."""

    kind = "embedded"

    #: Seconds a writer waits for the lock before giving up (an ingest holds it
    #: for one file's write at a time, so waits are seconds, not minutes).
    lock_timeout: float = 600.0

    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise FileNotFoundError(f"store directory {str(self.root)!r} does not exist "
                                    "(create it by ingesting: rtcc-geo ingest --store DIR ...)")
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
            df = prepare_incidents(self, df)
            month = df["occurred_from"].dt.strftime("%Y-%m")
            hashes = hash_ids(df["id"])
            inserted = 0
            keys: set[tuple[str, str]] = set()
            for source, part_src in df.groupby("source", sort=True):
                # A key's partition follows its time, but a corrected re-export could move
                # an incident across months: every partition's key index is checked.
                h = hashes[df.index.get_indexer(part_src.index)]
                new_src = part_src[~self._stored(source, part_src["id"], h)]
                for m, part in new_src.groupby(month.loc[new_src.index], sort=True):
                    path = self._partition(source, m)
                    old = _read_parquet(path) if path.exists() else None
                    merged = part if old is None else pd.concat([old, part], ignore_index=True)
                    merged = merged.sort_values(["occurred_from", "id"], kind="mergesort")
                    _write_geoparquet(conform(merged), path)
                    _save_keys(self._keyfile(source, m), hash_ids(merged["id"]))
                    keys.update((source, i) for i in part["id"].tolist())
                    inserted += len(part)
        return WriteResult(received, inserted, keys)

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
        frames = [self._filtered(source, q) for source in self._sources_for(q)]
        frames = [f for f in frames if len(f)]
        if not frames:
            out = empty_incidents()
        else:
            out = pd.concat(frames, ignore_index=True)
            out = out.sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True)
        return out if columns is None else out.loc[:, list(columns)]

    def count(self, q: Query = Query()) -> int:
        return self._consistent(lambda: sum(len(self._filtered(s, q, columns=_QUERY_COLUMNS)) for s in self._sources_for(q)))

    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        d = self.root / "quarantine"
        paths = [d / f"{source}.parquet"] if source else sorted(d.glob("*.parquet"))
        frames = [pd.read_parquet(p) for p in paths if p.exists()]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row_number" else "string") for c in QUARANTINE_COLUMNS})
        return pd.concat(frames, ignore_index=True)

    def counts(self, res: int, by: Sequence[str] = ("cell",), q: Query = Query()) -> pd.DataFrame:
        by = check_keys(by)
        return self._consistent(lambda: self._counts(res, by, q))

    def _counts(self, res: int, by: tuple[str, ...], q: Query) -> pd.DataFrame:
        # Streams partition by partition: only one partition's rows are ever in memory.
        frames = [self.count_partition(source, path, res, by, q) for source, path in self.partition_paths(q)]
        return combine_counts(frames, by)

    # --- partition-level primitives (what the Dask layer maps over) --------
    def partition_paths(self, q: Query = Query()) -> list[tuple[str, Path]]:
        """``(source, file)`` of every partition that may hold rows matching ``q``
        (whole partitions outside ``[q.start, q.end)`` pruned)."""
        out = []
        for source in self._sources_for(q):
            tz = self._tz(source)
            start, end = local_bound(q.start, tz), local_bound(q.end, tz)
            for p in self._partitions(source):
                m = pd.Timestamp(p.stem + "-01", tz="UTC")
                if end is not None and m >= end:
                    continue
                if start is not None and m + pd.offsets.MonthBegin(1) <= start:
                    continue
                out.append((source, p))
        return out

    def count_partition(self, source: str, path: Path, res: int, by: Sequence[str], q: Query) -> pd.DataFrame:
        """Partial :meth:`counts` of one partition file; :func:`combine_counts` sums partials."""
        by = check_keys(by)
        df = self._filter_frame(_read_parquet(path, _QUERY_COLUMNS), source, q,
                                hour_level=needs_known_time(by, q), geolocated=geolocated_filter(by, q))
        if not len(df):
            return _empty_counts(by)
        keys = _local_keys(df, self._tz(source), by)
        if "cell" in by:
            keys["cell"] = cell_column(df, res)
        for k in ("category", "district"):
            if k in by:
                keys[k] = df[k].astype("string")
        out = pd.DataFrame(keys)[list(by)].groupby(list(by), sort=False, dropna=False).size().rename("n").reset_index()
        return _normalise_count_dtypes(out)

    # --- derived tables --------------------------------------------------
    def put_table(self, name: str, df: pd.DataFrame) -> None:
        path = self.root / "tables" / f"{check_table_name(name)}.parquet"
        with self._writing():
            _atomic_parquet(df.reset_index(drop=True), path)

    def append_table(self, name: str, df: pd.DataFrame) -> None:
        # Read and rewrite under one lock hold: two appenders must not both read the old table.
        with self._writing():
            super().append_table(name, df)

    def get_table(self, name: str) -> pd.DataFrame | None:
        p = self.root / "tables" / f"{check_table_name(name)}.parquet"
        return pd.read_parquet(p) if p.exists() else None

    # --- internals -------------------------------------------------------
    def _partition(self, source: str, month: str) -> Path:
        return self.root / "incidents" / source / f"{month}.parquet"

    def _partitions(self, source: str) -> list[Path]:
        return sorted((self.root / "incidents" / source).glob("*.parquet"))

    def _keyfile(self, source: str, month: str) -> Path:
        return self.root / "keys" / source / f"{month}.npy"

    def _stored(self, source: str, ids: pd.Series, h: np.ndarray) -> np.ndarray:
        """Which of ``ids`` (hashes ``h``) are stored for ``source``: a hash hit in a
        partition's key index, confirmed against that partition's ids."""
        hit = np.zeros(len(ids), dtype=bool)
        ids_np = ids.astype(str).to_numpy(dtype=object)
        for p in self._partitions(source):
            k = self._keys(source, p)
            cand = _isin_sorted(h, k) & ~hit
            if cand.any():
                stored = pd.read_parquet(p, columns=["id"])["id"].astype(str).to_numpy(dtype=object)
                hit[cand] = pd.Series(ids_np[cand]).isin(stored).to_numpy()
        return hit

    def _keys(self, source: str, partition: Path) -> np.ndarray:
        """The partition's key index; (re)built when missing or stale (an older
        store, or a crash between the partition's rename and the index's)."""
        import pyarrow.parquet as pq

        f = self._keyfile(source, partition.stem)
        n = pq.ParquetFile(partition).metadata.num_rows
        if f.exists():
            k = np.load(f)
            if len(k) == n:
                return k
        k = hash_ids(pd.read_parquet(partition, columns=["id"])["id"])
        _save_keys(f, k)
        return np.sort(k)

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
                except (FileNotFoundError, OSError):
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

    def _filtered(self, source: str, q: Query, hour_level: bool | None = None,
                  columns: Sequence[str] | None = None, geolocated: bool | None | str = "auto") -> pd.DataFrame:
        parts = [self._filter_frame(_read_parquet(p, columns), source, q, hour_level, geolocated)
                 for _, p in self.partition_paths(q.with_(source=source))]
        if not parts:
            return empty_incidents()
        nonempty = [p for p in parts if len(p)]
        if len(nonempty) <= 1:
            return nonempty[0] if nonempty else parts[0]
        return pd.concat(nonempty, ignore_index=True)

    def _filter_frame(self, df: pd.DataFrame, source: str, q: Query, hour_level: bool | None = None,
                      geolocated: bool | None | str = "auto") -> pd.DataFrame:
        tz = self._tz(source)
        start, end = local_bound(q.start, tz), local_bound(q.end, tz)
        keep = np.ones(len(df), dtype=bool)
        if start is not None:
            keep &= (df["occurred_from"] >= start).to_numpy()
        if end is not None:
            keep &= (df["occurred_from"] < end).to_numpy()
        if q.categories is not None:
            keep &= df["category"].isin(list(q.categories)).fillna(False).to_numpy(dtype=bool)
        if q.districts is not None:
            keep &= df["district"].isin([str(d) for d in q.districts]).fillna(False).to_numpy(dtype=bool)
        if q.cells is not None:
            res = q.cells_res if q.cells_res is not None else int(grid.resolution(np.asarray(q.cells[:1]))[0])
            keep &= np.isin(cell_column(df, res), np.asarray(q.cells, dtype=np.int64))
        if geolocated == "auto":
            geolocated = geolocated_filter((), q)
        if geolocated is not None:  # not geolocated = NO_CELL in every H3 column
            keep &= (df[_GEO_COLUMN].to_numpy() != NO_CELL) == geolocated
        if hour_level is None:
            hour_level = needs_known_time((), q)
        if hour_level:
            keep &= df["time_known"].to_numpy(dtype=bool)
        if q.hours is not None or q.dows is not None:
            local = df["occurred_from"].dt.tz_convert(tz)
            if q.hours is not None:
                keep &= local.dt.hour.isin(list(q.hours)).to_numpy()
            if q.dows is not None:
                keep &= local.dt.day_of_week.isin(list(q.dows)).to_numpy()
        return df.loc[keep].reset_index(drop=True)


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


def _local_keys(df: pd.DataFrame, tz: str, by: Sequence[str]) -> dict[str, object]:
    keys: dict[str, object] = {}
    if not set(by) & {"hour", "dow", "hour_of_week", "day", "week", "month"}:
        return keys
    local = df["occurred_from"].dt.tz_convert(tz)
    hour = local.dt.hour.to_numpy(dtype=np.int64)
    dow = local.dt.day_of_week.to_numpy(dtype=np.int64)
    day = local.dt.tz_localize(None).dt.normalize()
    if "hour" in by:
        keys["hour"] = hour
    if "dow" in by:
        keys["dow"] = dow
    if "hour_of_week" in by:
        keys["hour_of_week"] = dow * 24 + hour
    if "day" in by:
        keys["day"] = day.to_numpy()
    if "week" in by:
        keys["week"] = (day - pd.to_timedelta(dow, unit="D")).to_numpy()
    if "month" in by:
        keys["month"] = (day - pd.to_timedelta(local.dt.day.to_numpy() - 1, unit="D")).to_numpy()
    return keys


_COUNT_DTYPES = {
    "cell": "int64", "category": "string", "district": "string", "hour": "int64", "dow": "int64",
    "hour_of_week": "int64", "day": "datetime64[ns]", "week": "datetime64[ns]", "month": "datetime64[ns]",
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


#: What filters and counts need: aggregations skip the text columns (offense, block,
#: extras), which are most of each partition's bytes.
_GEO_COLUMN = h3_column(max(DEFAULT_RESOLUTIONS))
_QUERY_COLUMNS = ("source", "occurred_from", "time_known", "category", "district",
                  *(h3_column(r) for r in DEFAULT_RESOLUTIONS))


_RETRY = object()


def hash_ids(ids: pd.Series) -> np.ndarray:
    """64-bit hashes of incident ids (SipHash-2-4 with a fixed key, as pandas
    implements it; the index format in ``keys/`` depends on it)."""
    from pandas.util import hash_array

    return hash_array(ids.astype(str).to_numpy(dtype=object), encoding="utf8", hash_key=_HASH_KEY, categorize=False)


_HASH_KEY = "rtcc-geo-ids-v01"  # 16 bytes


def _isin_sorted(h: np.ndarray, keys: np.ndarray) -> np.ndarray:
    if not len(keys) or not len(h):
        return np.zeros(len(h), dtype=bool)
    pos = np.minimum(np.searchsorted(keys, h), len(keys) - 1)
    return keys[pos] == h


def _save_keys(path: Path, hashes: np.ndarray) -> None:
    def write(tmp):
        with open(tmp, "wb") as fh:
            np.save(fh, np.sort(np.asarray(hashes, dtype=np.uint64)))
    _atomic(path, write)


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    # The geometry column is derivable from lon/lat; never decode it.
    cols = list(columns) if columns is not None else list(CORE_DTYPES) + [h3_column(r) for r in DEFAULT_RESOLUTIONS]
    return pd.read_parquet(path, columns=cols)


def _write_geoparquet(df: pd.DataFrame, path: Path) -> None:
    import geopandas as gpd
    import shapely

    pts = shapely.points(df["lon"].to_numpy(), df["lat"].to_numpy())
    pts[~np.isfinite(df["lon"].to_numpy(dtype="float64"))] = None  # not geolocated: no geometry
    gdf = gpd.GeoDataFrame(df, geometry=pts, crs="EPSG:4326")
    _atomic(path, lambda tmp: gdf.to_parquet(tmp, index=False))


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
