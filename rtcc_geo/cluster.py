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
worker, batch by batch, by the pipeline's own
:func:`~rtcc_geo.ingest.pipeline.parse_batches` (in a :class:`_FileParser`
actor); the client asks for the batches one at a time and writes each into the
real store with the pipeline's own ``store_batch``, in file order and batch
order. Deduplication and the quarantine therefore happen exactly as in a local
ingest, the summary (read, loaded, quarantined, duplicates, reasons, far-dated
incidents) is the same, and neither the client nor a worker holds more than a
few batches of a file, whatever its size.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import queue
import threading
import time
import weakref
from collections.abc import Generator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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
#: Parsed batches a file's parser keeps ready on its worker, waiting for the
#: client to ask for them. With the batch it is parsing and the one on the wire,
#: a worker holds at most ``AHEAD + 2`` batches per file in flight.
AHEAD = 1
#: Seconds between the client's checks that the worker parsing the file it waits
#: for is still in the cluster (a lost worker is an error, never a hang).
_CHECK_EVERY = 2.0


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
    validation and H3 indexing on a Dask worker, and the writes, in file order
    and batch order, on the client (which holds the store's writer lock).

    Equal to a local ingest of the same files into the same store: the same
    rows loaded and quarantined, the same duplicates (deduplication happens in
    the store, in the same order), the same summary (each batch is counted into
    the file's tally on the client by the pipeline's own ``store_batch``). The
    input files must be readable by the workers at the same (absolute) path.

    Memory is bounded by the batch (``RTCC_BATCH_ROWS``), not the file: each
    file is parsed on a worker by a :class:`_FileParser` actor that keeps at
    most :data:`AHEAD` parsed batches waiting, and the client asks for the next
    batch of the file it is writing while it writes the current one, so it
    holds two batches. As many files are parsed at once as the cluster has
    worker threads (one file per thread, the next one started as one is
    written), so workers parse ahead while the client writes.
    """
    from .ingest.pipeline import FileTally, prepare_ingest, store_batch

    if not isinstance(store, DaskStore):
        raise TypeError(f"ingest on Dask needs a DaskStore, not {type(store).__name__}")
    paths, mapping, ag, area, summary = prepare_ingest(fmt, files, store, agency, mapping)
    source = summary.source
    paths = [p.resolve() for p in paths]  # the workers' working directory is not ours

    client = store.client
    threads = client.nthreads()  # {worker address: threads}
    if not threads:
        raise ClusterError("the Dask cluster has no worker: start workers with: dask worker ADDRESS")
    shared = client.scatter([ag, area, mapping], broadcast=True)  # sent once, not once per file
    parsers: dict[int, Any] = {}  # file index -> the future of its parser (an actor)
    placed: dict[int, str] = {}  # file index -> the worker asked to parse it

    def start(i: int) -> None:
        # The least busy worker per thread: an actor's creation is instant, so the
        # scheduler alone would put every parser on the first idle worker.
        load = {w: sum(a == w for a in placed.values()) / n for w, n in threads.items()}
        w = min(load, key=load.__getitem__)
        parsers[i] = client.submit(
            _FileParser,
            fmt,
            str(paths[i]),
            shared[0],
            shared[1],
            source,
            shared[2],
            time_floor,
            actor=True,
            workers=[w],
            allow_other_workers=True,  # a worker gone before it starts: another one parses the file
            pure=False,
        )
        placed[i] = w

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="file", desc=f"ingest {source} on Dask", leave=True)
    t0 = time.perf_counter()
    started = 0
    try:
        for i, path in enumerate(paths):  # in file order, so deduplication is what a local ingest does
            while started < len(paths) and len(parsers) < sum(threads.values()):
                start(started)
                started += 1
            parser = parsers[i].result()
            tally = FileTally(path.name)
            ask = _ask(parser, path)
            while (parsed := _receive(client, ask, parser, path)) is not None:
                ask = _ask(parser, path)  # the worker sends batch k + 1 while batch k is written
                store_batch(parsed, store, tally)
                del parsed  # hold two batches, not three, while the next one arrives
            summary.files.append(fs := tally.summary())
            parsers.pop(i).release()  # the actor goes, its thread stops (see _FileParser)
            del placed[i]
            if bar is not None:
                bar.set_postfix_str(f"{fs.file}: {fs.loaded:,} loaded, {fs.quarantined:,} quarantined")
                bar.update(1)
    finally:
        # An error or an interrupt: release the other files' parsers, which stops
        # their threads and frees what they had parsed.
        for f in parsers.values():
            f.release()
        client.cancel(shared)
        if bar is not None:
            bar.close()
    summary.wall = time.perf_counter() - t0
    return summary


def _ask(parser, path: Path):
    """``parser.next()`` called (the reply comes later, see :func:`_receive`)."""
    try:
        return parser.next()
    except Exception as e:  # the Actor's own check: the worker holding it was lost
        raise _lost(parser, path, e) from e


def _receive(client, ask, parser, path: Path):
    """The reply to ``parser``'s ``next()`` call ``ask``: a parsed batch, or None
    after the file's last; the parse's error raised; :class:`ClusterError` if the
    call fails or the parser's worker leaves the cluster while the client waits
    (the call itself may then never return)."""
    while True:
        try:
            kind, value = ask.result(timeout=_CHECK_EVERY)
        except TimeoutError:
            if parser._address not in client.nthreads():
                raise _lost(parser, path) from None
            continue
        except Exception as e:  # the call failed, not the parse (whose error is a reply)
            raise _lost(parser, path, e) from e
        if kind == "error":
            raise value
        return value


def _lost(parser, path: Path, why: Exception | None = None) -> ClusterError:
    return ClusterError(
        f"the Dask worker {parser._address} parsing {path.name} was lost mid-file "
        f"({why or 'it left the cluster'}): that file's batches written so far stay in the store; "
        "run the ingest again (the rows already loaded count as duplicates)"
    )


class _FileParser:
    """One file parsed on a worker, batch by batch (a Dask actor).

    A thread of its own runs the pipeline's
    :func:`~rtcc_geo.ingest.pipeline.parse_batches` and keeps at most
    :data:`AHEAD` parsed batches in a queue; :meth:`next` hands them to the
    client one call at a time, so the parse of a file runs ahead of the client's
    writes by at most ``AHEAD`` batches (back-pressure: the thread waits while
    the queue is full). When the client releases the actor (done, failed or
    interrupted) the worker drops it and the thread stops and lets go of its
    batches; a client that disconnects releases it too.
    """

    def __init__(self, fmt: str, path: str, ag, area, source: str, mapping, time_floor: str | None):
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"Dask worker {_worker_name()} cannot read {path}: input files must be on "
                "storage every worker mounts at the same path"
            )
        self._ready: queue.Queue = queue.Queue(maxsize=AHEAD)
        stop = threading.Event()
        threading.Thread(
            target=_parse_into,
            args=(self._ready, stop, fmt, Path(path), ag, area, source, mapping, time_floor),
            name=f"rtcc-parse-{Path(path).name}",
            daemon=True,
        ).start()
        # The thread holds no reference to the actor, so the worker dropping it
        # (released by the client) runs this and the thread stops.
        weakref.finalize(self, stop.set)

    async def next(self) -> tuple[str, Any]:
        """``("batch", Parsed)`` for the next batch, ``("batch", None)`` after the
        last, ``("error", exception)`` if the parse failed: returned, not raised,
        so that an error the call raises on the client is the cluster's. Waits on
        the worker's event loop (polling), not in its one actor thread, so the
        parsers of two files on one worker do not wait for each other."""
        while True:
            try:
                return self._ready.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.005)


def _parse_into(ready: queue.Queue, stop: threading.Event, fmt, path: Path, ag, area, source, mapping, time_floor):
    """The parser's thread: ``("batch", Parsed)`` per batch into ``ready``, then
    ``("batch", None)``; ``("error", exception)`` if the parse fails."""
    from .ingest.pipeline import parse_batches

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # A generator: closed early (released, or failed) it closes the file it reads.
    batches = cast(Generator, parse_batches(fmt, path, ag, area, source, mapping, time_floor))
    try:
        for p in batches:
            # The client's tally needs the batch's length and unmapped offences,
            # not its raw text and columns: do not send them.
            p.batch = dataclasses.replace(
                p.batch, raw=pd.DataFrame(index=pd.RangeIndex(len(p.batch))), frame=pd.DataFrame(), flags={}
            )
            if not put(("batch", p)):
                return
            del p
        put(("batch", None))
    except BaseException as e:  # the client re-raises it
        try:
            pickle.dumps(e)
        except Exception:  # it must reach the client
            e = RuntimeError(f"{type(e).__name__}: {e}")
        put(("error", e))
    finally:
        batches.close()
        if stop.is_set():  # released: let go of what is queued
            while not ready.empty():
                ready.get_nowait()
