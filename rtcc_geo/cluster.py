"""The same pipelines on a Dask cluster: a :class:`Store` wrapper whose reads run
as Dask tasks over the store's partitions, and an ingest whose parsing runs on
the workers.

>>> from rtcc_geo.cluster import connect, DaskStore
>>> client, cluster = connect("tcp://scheduler:8786")          # doctest: +SKIP
>>> store = DaskStore(open_store(store_dir="/shared/store"), client)  # doctest: +SKIP
>>> hotspots(store, res=9)  # counts run on the workers       # doctest: +SKIP

Why a Store wrapper: every analysis (hot spots, emerging hot spots, temporal
signatures, CompStat, forecasts and their backtests) reads incidents only
through :meth:`Store.counts`, :meth:`Store.count` and :meth:`Store.incidents`.
:class:`DaskStore` runs those three as Dask tasks, one per partition file of
the embedded store (``EmbeddedStore.partition_paths``), each calling the same
partition-level code the local store runs (``count_partition``), and sums the
partial counts with the same :func:`~rtcc_geo.store.embedded.combine_counts`
in a tree on the workers. Partial counts are sums of integers over disjoint
partitions, so the result is identical to the local one, not merely close.
Everything else (sources, writes, derived tables, agencies) is delegated to the
wrapped store unchanged: writes stay on the client, which holds the store's
writer lock.

The workers open the store by its path, so the store directory must be on
storage every worker mounts at the same path (NFS, a cluster file system);
:meth:`DaskStore.check_workers` verifies that (every partition visible, same
size, same rtcc-geo version) and says which worker cannot see it. A PostGIS
store already aggregates in the database: its reads are delegated, and only
ingest's parsing is distributed.

Ingest (:func:`ingest_files`): each file is read, validated and H3-indexed on a
worker by the pipeline's own :func:`~rtcc_geo.ingest.pipeline.ingest_one`,
given a store that only records what it would write; the client then replays
those writes into the real store in file order. Deduplication and the
quarantine therefore happen exactly as in a local ingest, and the summary
(read, loaded, quarantined, duplicates, reasons) is the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .store.base import Query, Store, WriteResult, check_keys

if TYPE_CHECKING:
    from .config import Agency
    from .ingest.generic import Mapping
    from .ingest.pipeline import IngestSummary

#: Environment variable naming the scheduler when ``--dask`` is not given.
ENV_SCHEDULER = "RTCC_DASK_SCHEDULER"
#: Partial count frames combined per reduction task (a tree of fan-in 8: the
#: client receives one frame, not one per partition).
FAN_IN = 8


class ClusterError(RuntimeError):
    """The cluster cannot run the work (unreachable scheduler, no worker, a worker
    that cannot read the store); the message says what to fix."""


# --------------------------------------------------------------------------
# connecting
# --------------------------------------------------------------------------
def connect(address: str, timeout: float = 10.0):
    """A ``distributed.Client`` for ``address`` and the cluster it started, if any.

    ``address``: a scheduler address (``tcp://host:8786``) or ``local`` /
    ``local:N``, which starts a ``LocalCluster`` of N single-threaded worker
    processes on this machine (default: one per core). Returns ``(client,
    cluster)``; ``cluster`` is None for a remote scheduler. Raises
    :class:`ClusterError` when the scheduler cannot be reached or no worker
    joins within ``timeout`` seconds.
    """
    from distributed import Client, LocalCluster

    address = address.strip()
    cluster = None
    if address == "local" or address.startswith("local:"):
        n_text = address.partition(":")[2]
        try:
            n = int(n_text) if n_text else (os.cpu_count() or 1)
        except ValueError:
            raise ClusterError(f"bad Dask address {address!r}: use local, local:N or tcp://host:port") from None
        if n < 1:
            raise ClusterError(f"bad Dask address {address!r}: local:N needs N >= 1 workers")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        try:
            _reachable(address, timeout)
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as e:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address!r}: {e}. Start one "
                "(dask scheduler; dask worker ADDRESS on each machine) or fix --dask / "
                f"${ENV_SCHEDULER}"
            ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError):
        client.close()
        if cluster is not None:
            cluster.close()
        raise ClusterError(
            f"the Dask scheduler at {address!r} has no worker after {timeout:g} s: "
            "start workers with: dask worker ADDRESS"
        ) from None
    return client, cluster


def _reachable(address: str, timeout: float) -> None:
    """Fail fast (OSError) on a TCP scheduler that refuses connections: the client
    itself would retry until ``timeout``."""
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    scheme, loc = parse_address(address)
    if scheme in ("tcp", "tls"):
        host, port = parse_host_port(loc)
        socket.create_connection((host, port), timeout=timeout).close()


def open_dask_store(store: Store, address: str) -> DaskStore:
    """``store`` wrapped to run on the cluster at ``address`` (see :func:`connect`),
    its workers checked (:meth:`DaskStore.check_workers`). The client (and a
    local cluster) close with the returned store."""
    client, cluster = connect(address)
    ds = DaskStore(store, client, cluster=cluster)
    try:
        ds.check_workers()
    except BaseException:
        ds.close()
        raise
    return ds


# --------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------
class DaskStore(Store):
    """``store`` with its reads (``counts``, ``count``, ``incidents``) run as Dask
    tasks over its partitions on ``client``'s cluster; everything else delegated.

    Only an embedded store has partitions to map over; any other store (PostGIS
    aggregates in SQL already) is read directly. Attributes the wrapper does not
    define (``root``, ``url``, ...) are the wrapped store's.
    """

    def __init__(self, store: Store, client, cluster=None):
        if isinstance(store, DaskStore):
            raise TypeError("the store is already on a Dask cluster")
        self.store = store
        self.client = client
        self._cluster = cluster
        #: The store's directory as the workers open it (absolute: their working
        #: directory is not ours); None when the store has no partitions to map.
        self._root: str | None = None
        if hasattr(store, "partition_paths") and hasattr(store, "count_partition") and hasattr(store, "root"):
            self._root = str(Path(store.root).resolve())

    @property
    def kind(self) -> str:  # type: ignore[override]  # the wrapped engine's kind (postgis, embedded)
        return self.store.kind

    @property
    def distributed(self) -> bool:
        """Whether reads run on the workers (an embedded store) or are delegated."""
        return self._root is not None

    def __getattr__(self, name: str) -> Any:
        if name in ("store", "client", "_cluster", "_root"):  # not set yet (during unpickling)
            raise AttributeError(name)
        return getattr(self.store, name)

    def __repr__(self) -> str:
        return f"DaskStore({self.store!r}, {self.client.scheduler.address})"

    # --- the cluster -----------------------------------------------------
    def check_workers(self) -> None:
        """:class:`ClusterError` unless every worker runs this rtcc-geo version and
        sees the store's partitions at the same path with the same sizes (shared
        storage). A no-op for a store that is not distributed."""
        from . import __version__

        if self._root is None:
            return
        expect = {str(p): _size(p) for _, p in self.store.partition_paths(Query())}  # type: ignore[attr-defined]
        got = self.client.run(_check_worker, self._root, expect, __version__)
        bad = {w: msg for w, msg in got.items() if msg}
        if bad:
            lines = "; ".join(f"{w}: {m}" for w, m in sorted(bad.items()))
            raise ClusterError(
                f"{len(bad)} of {len(got)} Dask worker(s) cannot use the store {self._root}: {lines}. "
                "The store directory must be on storage every worker mounts at the same path "
                "(see docs/scale.md, 'Running on a Dask cluster')"
            )

    def close(self) -> None:
        try:
            self.store.close()
        finally:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()

    # --- reads on the cluster --------------------------------------------
    def counts(self, res: int, by: Sequence[str] = ("cell",), q: Query = Query()) -> pd.DataFrame:
        by = check_keys(by)
        if self._root is None:
            return self.store.counts(res, by, q)
        return self._consistent(lambda: self._counts(res, by, q))

    def _counts(self, res: int, by: tuple[str, ...], q: Query) -> pd.DataFrame:
        from .store.embedded import combine_counts

        parts = self.store.partition_paths(q)  # type: ignore[attr-defined]
        if not parts:
            return combine_counts([], by)
        futs = self.client.map(
            _count_partition,
            [self._root] * len(parts),
            [s for s, _ in parts],
            [str(p) for _, p in parts],
            res=res,
            by=by,
            q=q,
            pure=False,
        )
        # Sum the partials in a tree on the workers; the client receives one frame.
        while len(futs) > 1:
            futs = [
                self.client.submit(combine_counts, futs[i : i + FAN_IN], by, pure=False)
                for i in range(0, len(futs), FAN_IN)
            ]
        return futs[0].result()

    def count(self, q: Query = Query()) -> int:
        if self._root is None:
            return self.store.count(q)
        # Counts by month keep every row the count keeps (the month of a row is
        # never missing) and apply the same filters as count(q).
        return int(self.counts(max(_resolutions()), ("month",), q)["n"].sum())

    def incidents(self, q: Query = Query(), columns: Sequence[str] | None = None) -> pd.DataFrame:
        if self._root is None:
            return self.store.incidents(q, columns)
        return self._consistent(lambda: self._incidents(q, columns))

    def _incidents(self, q: Query, columns: Sequence[str] | None) -> pd.DataFrame:
        from .schema import empty_incidents

        parts = self.store.partition_paths(q)  # type: ignore[attr-defined]
        keep = None if columns is None else list(dict.fromkeys([*columns, *_ORDER]))
        futs = self.client.map(
            _incidents_partition,
            [self._root] * len(parts),
            [s for s, _ in parts],
            [str(p) for _, p in parts],
            q=q,
            columns=keep,
            pure=False,
        )
        frames = [f for f in self.client.gather(futs) if len(f)]
        if not frames:
            out = empty_incidents()
        else:
            out = pd.concat(frames, ignore_index=True)
            out = out.sort_values(list(_ORDER), kind="mergesort").reset_index(drop=True)
        return out if columns is None else out.loc[:, list(columns)]

    def _consistent(self, read):
        # The embedded store's seqlock (retry when a write overlapped the read);
        # a worker's FileNotFoundError reaches us as such and is retried too.
        consistent = getattr(self.store, "_consistent", None)
        return consistent(read) if consistent is not None else read()

    # --- everything else: the wrapped store ---------------------------------
    def register_source(self, name: str, timezone: str) -> None:
        self.store.register_source(name, timezone)

    def sources(self) -> dict[str, str]:
        return self.store.sources()

    def write_incidents(self, df: pd.DataFrame) -> WriteResult:
        return self.store.write_incidents(df)

    def write_quarantine(self, df: pd.DataFrame) -> WriteResult:
        return self.store.write_quarantine(df)

    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        return self.store.quarantine(source)

    def put_table(self, name: str, df: pd.DataFrame) -> None:
        self.store.put_table(name, df)

    def get_table(self, name: str) -> pd.DataFrame | None:
        return self.store.get_table(name)

    def append_table(self, name: str, df: pd.DataFrame) -> None:
        self.store.append_table(name, df)

    def table_lock(self, name: str):
        return self.store.table_lock(name)


#: The order :meth:`Store.incidents` returns rows in.
_ORDER = ("source", "occurred_from", "id")


def _resolutions() -> tuple[int, ...]:
    from .schema import DEFAULT_RESOLUTIONS

    return tuple(DEFAULT_RESOLUTIONS)


# --- what runs on a worker (module-level: workers import it by name) -------
def _worker_store(root: str):
    from .store.embedded import EmbeddedStore

    try:
        return EmbeddedStore(root, create=False)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Dask worker {_worker_name()} cannot see the store directory {root}: "
            "put the store on storage every worker mounts at the same path"
        ) from None


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except ValueError:  # not inside a worker (called directly)
        return "(local)"


def _worker_partition(path: str) -> Path:
    # FileNotFoundError (not another type): a partition replaced by a concurrent
    # write is retried by the client's consistent read; a worker that never sees
    # it ends with this message.
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Dask worker {_worker_name()} cannot see the store's partition {path}: the store must "
            "be on storage every worker mounts at the same path"
        )
    return Path(path)


def _count_partition(root: str, source: str, path: str, res: int, by: tuple[str, ...], q: Query) -> pd.DataFrame:
    return _worker_store(root).count_partition(source, _worker_partition(path), res, by, q)


def _incidents_partition(root: str, source: str, path: str, q: Query, columns: list[str] | None) -> pd.DataFrame:
    # The store's own incidents() on a view of it that holds this one partition:
    # the rows, filters and dtypes are exactly those its incidents() keeps from it.
    store = _worker_store(root)
    part = _worker_partition(path)

    def one_partition(qq: Query = Query()) -> list[tuple[str, Path]]:
        return [(source, part)] if qq.source in (None, source) else []

    store.partition_paths = one_partition  # type: ignore[method-assign]
    return store.incidents(q.with_(source=source), columns)


def _size(path) -> int:
    """A partition's size in bytes (-1 for a directory: only its presence is compared)."""
    st = os.stat(path)
    return -1 if Path(path).is_dir() else st.st_size


def _check_worker(root: str, expect: dict[str, int], version: str) -> str | None:
    """Why this worker cannot serve the store (None: it can)."""
    from . import __version__

    if __version__ != version:
        return f"rtcc-geo {__version__} on the worker, {version} on the client: install the same version"
    if not Path(root).is_dir():
        return f"no directory {root}"
    wrong = []
    for p, size in expect.items():
        try:
            if _size(p) != size:
                wrong.append(f"{p} differs")
        except OSError:
            wrong.append(f"{p} missing")
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return f"{len(wrong)} of {len(expect)} partition file(s) not as on the client: {', '.join(wrong[:3])}{more}"
    return None


# --------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------
def ingest_files(
    fmt: str,
    files: Iterable[str | Path],
    store: Store,
    agency: Agency | str | Path | None = None,
    mapping: Mapping | str | Path | None = None,
    progress: bool = False,
    time_floor: str | None = None,
) -> IngestSummary:
    """:func:`rtcc_geo.ingest.pipeline.ingest_files` with each file's reading,
    validation and H3 indexing on a Dask worker, and the writes, in file order,
    on the client (which holds the store's writer lock).

    Equal to a local ingest of the same files into the same store: the same
    rows loaded and quarantined, the same duplicates (deduplication happens in
    the store, in the same order), the same summary. The input files must be
    readable by the workers at the same (absolute) path.
    """
    from .ingest.pipeline import prepare_ingest

    if not isinstance(store, DaskStore):
        raise TypeError(f"ingest on Dask needs a DaskStore, not {type(store).__name__}")
    paths, mapping, ag, area, summary = prepare_ingest(fmt, files, store, agency, mapping)
    source = summary.source
    paths = [p.resolve() for p in paths]  # the workers' working directory is not ours

    client = store.client
    shared = client.scatter([ag, area, mapping], broadcast=True)  # sent once, not once per file
    futs = client.map(
        _parse_file,
        [fmt] * len(paths),
        [str(p) for p in paths],
        ag=shared[0],
        area=shared[1],
        source=source,
        mapping=shared[2],
        time_floor=time_floor,
        pure=False,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="file", desc=f"ingest {source} on Dask", leave=True)
    try:
        for fut in futs:  # in file order, so deduplication is what a local ingest does
            fs, writes = fut.result()
            fut.release()
            t0 = time.perf_counter()
            dup = 0
            for kind, df in writes:
                if kind == "incidents":
                    w = store.write_incidents(df)
                    dup += w.received - w.inserted
                else:
                    store.write_quarantine(df)
            fs.duplicates = int(dup)
            fs.seconds += time.perf_counter() - t0
            summary.files.append(fs)
            if bar is not None:
                bar.set_postfix_str(f"{fs.file}: {fs.loaded:,} loaded, {fs.quarantined:,} quarantined")
                bar.update(1)
    finally:
        client.cancel(futs)
        if bar is not None:
            bar.close()
    return summary


class _Recorder(Store):
    """A store that records the writes asked of it (on a worker) for the client to
    replay; it reports every row inserted (the client counts the duplicates).
    Reading from it is a bug in the caller, so it says so."""

    kind = "recorder"

    def __init__(self):
        self.writes: list[tuple[str, pd.DataFrame]] = []

    def write_incidents(self, df: pd.DataFrame) -> WriteResult:
        self.writes.append(("incidents", df))
        return WriteResult(len(df), len(df))

    def write_quarantine(self, df: pd.DataFrame) -> WriteResult:
        self.writes.append(("quarantine", df))
        return WriteResult(len(df), len(df))

    def _no(self, *a, **kw):
        raise RuntimeError("ingest on a Dask worker only writes; it cannot read the store")

    register_source = sources = incidents = count = quarantine = counts = put_table = get_table = _no  # type: ignore[assignment]


def _parse_file(fmt: str, path: str, ag, area, source: str, mapping, time_floor: str | None):
    """One file on a worker: the pipeline's ingest_one into a recorder."""
    from .ingest.pipeline import ingest_one

    if not Path(path).is_file():
        raise FileNotFoundError(
            f"Dask worker {_worker_name()} cannot read {path}: input files must be on "
            "storage every worker mounts at the same path"
        )
    rec = _Recorder()
    fs = ingest_one(fmt, Path(path), rec, ag, area, source, mapping, time_floor)
    return fs, rec.writes
