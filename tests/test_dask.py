"""The same pipelines on a Dask cluster give the same results as on one machine.

One ``distributed.LocalCluster`` of 3 single-threaded worker *processes* serves
the module; the data are four real months of Philadelphia (April-July 2024)
ingested by the pipeline. Every comparison is exact (``check_exact``): partial
counts are integer sums over disjoint partitions, so a Dask result that is
merely close is a bug. Each analysis is run on the plain embedded store and on
the same store wrapped in :class:`~rtcc_geo.cluster.DaskStore`, and the
partition tasks are checked to have run on the workers (not in the client).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream

from rtcc_geo.cluster import ClusterError, DaskStore, ingest_files as ingest_on_dask
from rtcc_geo.ingest import ingest_files
from rtcc_geo.store.base import Query
from rtcc_geo.store.embedded import EmbeddedStore

from .conftest import PHL_APR_JUL

PHL = Query(source="philadelphia")


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def stores(phl_apr_jul_store, client):
    """(the local store, the same store on the cluster)."""
    return phl_apr_jul_store, DaskStore(phl_apr_jul_store, client)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def _on_workers(client, task: str, run, *args, **kw):
    """``run(*args, **kw)``, checking that it ran ``task`` tasks (partition reads) on the cluster."""
    with get_task_stream(client) as ts:
        out = run(*args, **kw)
    assert any(task in t["key"] for t in ts.data), f"no {task} task ran on the cluster"
    return out


def test_counts_identical_and_computed_on_the_workers(stores, client):
    local, dask = stores
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 3
    parts = local.partition_paths(PHL)
    assert len(parts) >= 4  # one task per partition: several, or nothing is distributed
    with get_task_stream(client) as ts:
        got = dask.counts(9, ("cell", "hour_of_week", "category"), PHL)
    ran = [t for t in ts.data if "_count_partition" in t["key"]]
    assert len(ran) == len(parts) and {t["worker"] for t in ran} <= workers
    assert len({t["worker"] for t in ran}) >= 2  # spread over processes, not one
    want = local.counts(9, ("cell", "hour_of_week", "category"), PHL)
    _same(want, got)
    assert len(want) > 10_000 and int(want["n"].sum()) > 40_000


@pytest.mark.parametrize(
    "res,by,q",
    [
        (9, ("cell",), PHL),
        (7, ("cell", "week"), PHL.with_(categories=("theft", "burglary"))),
        (6, ("cell",), PHL),  # coarser than any stored column: rolled up on the workers
        (10, ("cell", "day"), PHL.with_(start="2024-05-10", end="2024-06-20")),  # cuts inside partitions
        (9, ("district", "dow", "hour"), PHL.with_(hours=(0, 1, 2, 22, 23))),
        (9, ("month", "category", "district"), PHL.with_(include_unknown_time=True)),
        (9, ("day",), PHL.with_(geolocated=False)),
        (8, ("hour", "category"), PHL.with_(districts=("24", "25"), dows=(5, 6))),
    ],
)
def test_counts_by_keys_and_filters(stores, res, by, q):
    local, dask = stores
    want = local.counts(res, by, q)
    assert len(want) and int(want["n"].sum()) > 0
    _same(want, dask.counts(res, by, q))
    assert dask.count(q) == local.count(q) > 0


def test_cells_filter_count_and_incidents(stores):
    local, dask = stores
    top = local.counts(8, ("cell",), PHL).nlargest(5, "n")["cell"]
    q = PHL.with_(cells=tuple(int(c) for c in top), cells_res=8)
    assert dask.count(q) == local.count(q) == int(local.counts(8, ("cell",), PHL).nlargest(5, "n")["n"].sum())
    _same(local.incidents(q), dask.incidents(q))
    cols = ["occurred_from", "lon", "lat", "category"]
    _same(
        local.incidents(PHL.with_(categories=("robbery",)), cols),
        dask.incidents(PHL.with_(categories=("robbery",)), cols),
    )
    empty = PHL.with_(start="2030-01-01", end="2030-02-01")
    assert dask.count(empty) == 0
    _same(local.incidents(empty, cols), dask.incidents(empty, cols))
    _same(local.counts(9, ("cell",), empty), dask.counts(9, ("cell",), empty))


def test_hotspots_identical(stores, client):
    from geopandas.testing import assert_geodataframe_equal

    from rtcc_geo.hotspots.api import hotspots

    local, dask = stores
    for method in ("gistar", "lisa"):
        a = hotspots(local, method=method, res=9, q=PHL.with_(categories=("theft",)), permutations=99, seed=7)
        b = _on_workers(
            client,
            "_count_partition",
            hotspots,
            dask,
            method=method,
            res=9,
            q=PHL.with_(categories=("theft",)),
            permutations=99,
            seed=7,
        )
        assert len(a) > 1000
        assert_geodataframe_equal(a, b, check_less_precise=False)


def test_emerging_identical(stores, client):
    from rtcc_geo.temporal.cube import build_cube
    from rtcc_geo.temporal.emerging import emerging_hotspots

    local, dask = stores
    q = PHL.with_(start="2024-04-01", end="2024-08-01")
    a, b = build_cube(local, 8, "week", q), _on_workers(client, "_count_partition", build_cube, dask, 8, "week", q)
    np.testing.assert_array_equal(a.cells, b.cells)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.shape[1] >= 15 and a.values.sum() > 40_000
    ra, rb = emerging_hotspots(a), emerging_hotspots(b)
    _same(ra.table, rb.table)
    assert ra.table["category"].nunique() > 2


def test_temporal_signatures_identical(stores, client):
    from rtcc_geo.temporal.signatures import signature_from_store

    local, dask = stores
    for by, res in ((None, None), ("category", None), ("district", None), ("cell", 8)):
        a = signature_from_store(local, PHL, by=by, res=res)
        b = _on_workers(client, "_incidents_partition", signature_from_store, dask, PHL, by=by, res=res)
        assert a.n_incidents == b.n_incidents > 40_000 and a.n_time_unknown == b.n_time_unknown
        for part in ("hour", "dow", "hour_of_week", "month", "season", "trend"):
            _same(getattr(a, part), getattr(b, part))


def test_compstat_identical(stores, client):
    from rtcc_geo.compstat import compstat

    local, dask = stores
    a = compstat(local, PHL, end="2024-07-28")
    b = _on_workers(client, "_count_partition", compstat, dask, PHL, end="2024-07-28")
    assert len(a.rows) > 10
    _same(a.rows, b.rows)


def test_backtest_count_matrix_identical(stores, client):
    from rtcc_geo.forecast.backtest import backtest
    from rtcc_geo.forecast.io import counts_from_store
    from rtcc_geo.forecast.naive import NaiveHotspot

    local, dask = stores
    a = counts_from_store(local, "philadelphia", "all_but_enforcement", end="2024-08-01", res=9)
    b = _on_workers(
        client,
        "_incidents_partition",
        counts_from_store,
        dask,
        "philadelphia",
        "all_but_enforcement",
        end="2024-08-01",
        res=9,
    )
    np.testing.assert_array_equal(a.cells, b.cells)
    da, db = a.daily, b.daily
    assert da.shape == db.shape and da.sum() > 40_000 and (da != db).nnz == 0
    ra = backtest(a, {"naive": NaiveHotspot(28)}, "2024-07-01", "2024-07-25", horizon="7d")
    rb = backtest(b, {"naive": NaiveHotspot(28)}, "2024-07-01", "2024-07-25", horizon="7d")
    _same(ra.scores, rb.scores)
    _same(ra.curves, rb.curves)


def test_cli_hotspots_with_dask_address(stores, client, capsys):
    from rtcc_geo.cli.main import main

    local, _ = stores
    argv = ["hotspots", "--store", str(local.root), "--res", "9", "--category", "burglary", "--json"]
    assert main(argv) == 0
    want = json.loads(capsys.readouterr().out)
    assert _on_workers(client, "_count_partition", main, [*argv, "--dask", client.scheduler.address]) == 0
    got = json.loads(capsys.readouterr().out)
    for d in (want, got):
        d.pop("seconds", None)
    assert got == want and want.get("cells", 1) > 0


def test_cli_ingest_on_dask_env_equals_local(shared_data, client, tmp_path):
    """``rtcc-geo ingest`` with ``$RTCC_DASK_SCHEDULER`` (a real subprocess) loads and
    reports exactly what a local ingest does."""
    files = [shared_data / "philadelphia" / PHL_APR_JUL[0]]
    local = EmbeddedStore(tmp_path / "local")
    want = ingest_files("philadelphia", files, local).as_dict()
    env = {**os.environ, "RTCC_DASK_SCHEDULER": client.scheduler.address}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtcc_geo.cli.main",
            "ingest",
            "--format",
            "philadelphia",
            "--store",
            str(tmp_path / "dask"),
            "--json",
            *map(str, files),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got.pop("store").startswith("DaskStore(EmbeddedStore(") and want.pop("store").startswith("EmbeddedStore(")
    for d in (want, got):
        d.pop("seconds")
        for f in d["files"]:
            f.pop("seconds")
    assert got == want and want["read"] == want["loaded"] > 12_000
    _same(local.incidents(), EmbeddedStore(tmp_path / "dask").incidents())


def test_ingest_on_dask_equals_local_with_overlap(shared_data, client, tmp_path):
    """The same file twice (its incidents and quarantined rows overlap): parsed on the
    workers, deduplicated in file order as locally; the quarantine is the same."""
    f = [shared_data / "vancouver" / "crimedata_csv_AllNeighbourhoods_2025.csv"] * 2
    a, b = EmbeddedStore(tmp_path / "a"), DaskStore(EmbeddedStore(tmp_path / "b"), client)
    sa = ingest_files("vancouver", f, a)
    with get_task_stream(client) as ts:
        sb = ingest_on_dask("vancouver", f, b)
    assert sum("_FileParser" in t["key"] for t in ts.data) == 2  # one parser (actor) per file
    da, db = sa.as_dict(), sb.as_dict()
    for k in ("read", "loaded", "quarantined", "duplicates", "inserted", "by_reason", "unmapped_offenses", "far_dated"):
        assert da[k] == db[k], k
    assert [x.duplicates for x in sb.files] == [0, sb.files[0].loaded] and sb.files[0].quarantined > 0
    _same(a.incidents(), b.incidents())
    _same(a.quarantine(), b.quarantine())
    assert len(b.quarantine()) == sb.files[0].quarantined
    assert a.count(Query()) == b.count(Query()) == sa.files[0].loaded


@pytest.mark.postgis
def test_postgis_ingest_on_dask_equals_local(shared_data, client, pg_url, tmp_path):
    """Into PostGIS: files parsed on the workers, rows written through the PostGIS
    store on the client; reads are PostGIS's own (it aggregates in SQL)."""
    from rtcc_geo.store.postgis import PostGISStore

    f = [shared_data / "philadelphia" / PHL_APR_JUL[3]]
    emb = EmbeddedStore(tmp_path / "e")
    want = ingest_files("philadelphia", f, emb).as_dict()
    pg = DaskStore(PostGISStore(pg_url), client)
    try:
        assert not pg.distributed and pg.kind == "postgis"
        got = _on_workers(client, "_FileParser", ingest_on_dask, "philadelphia", f, pg).as_dict()
        for k in ("read", "loaded", "quarantined", "duplicates", "by_reason", "unmapped_offenses", "files"):
            if k == "files":
                for d in (want, got):
                    for x in d["files"]:
                        x.pop("seconds")
            assert got[k] == want[k], k
        assert want["loaded"] > 14_000
        _same(emb.counts(9, ("cell", "day"), PHL), pg.counts(9, ("cell", "day"), PHL))
    finally:
        pg.store.close()


def test_unreachable_scheduler_is_a_clear_cli_error(stores, capsys):
    from rtcc_geo.cli.main import main

    local, _ = stores
    assert main(["hotspots", "--store", str(local.root), "--dask", "tcp://127.0.0.1:9", "--json"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err and "Traceback" not in err


def test_worker_without_the_shared_store_is_refused(tmp_path, shared_data):
    """A worker that does not see the store's directory (here: a worker process in
    its own mount namespace, with an empty file system over the store's parent)
    makes the wrapper refuse the cluster, naming that worker."""
    parent = tmp_path / "shared"
    store = EmbeddedStore(parent / "store")
    ingest_files("philadelphia", [shared_data / "philadelphia" / PHL_APR_JUL[0]], store)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    hidden = subprocess.Popen(
        [
            "unshare",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            f'mount -t tmpfs tmpfs "{parent}" && exec "{sys.executable}" -m distributed.cli.dask_worker '
            f'"{cluster.scheduler_address}" --nthreads 1 --no-nanny --no-dashboard --name hidden',
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    c = Client(cluster)
    try:
        try:
            c.wait_for_workers(2, timeout=60)
        except TimeoutError:
            hidden.kill()
            pytest.fail(f"the mount-namespaced worker did not start (needs unshare): {hidden.stderr.read()[-2000:]}")
        ds = DaskStore(store, c)
        with pytest.raises(ClusterError, match=r"1 of 2 Dask worker\(s\) cannot use the store .*no directory"):
            ds.check_workers()
    finally:
        c.close()
        hidden.terminate()
        hidden.wait(30)
        hidden.stderr.close()
        cluster.close()


# --- ingest streams: a file larger than the batch ---------------------------
BATCH = 2_500  # rows a batch: a Philadelphia month (~14,000 rows) is 6 batches


@pytest.fixture
def small_batches(client, monkeypatch):
    """``RTCC_BATCH_ROWS`` = :data:`BATCH` here and in every worker (each reads it
    when it parses a file), restored afterwards."""
    monkeypatch.setenv("RTCC_BATCH_ROWS", str(BATCH))
    client.run(lambda: os.environ.__setitem__("RTCC_BATCH_ROWS", str(BATCH)))
    yield
    client.run(lambda: os.environ.pop("RTCC_BATCH_ROWS", None))


def _watch_writes(store: EmbeddedStore) -> list[tuple[int, int]]:
    """Record, at each ``write_incidents`` of ``store``, (rows written, frames of the
    earlier writes still alive): what the client holds, seen from its writes."""
    import gc
    import weakref

    seen: list[tuple[int, int]] = []
    earlier: list[weakref.ref] = []
    write = store.write_incidents

    def watched(df):
        gc.collect()
        seen.append((len(df), sum(r() is not None for r in earlier)))
        earlier.append(weakref.ref(df))
        return write(df)

    store.write_incidents = watched  # type: ignore[method-assign]
    return seen


def _parsers_left(client) -> dict:
    """{worker: (actors, parser threads)} still alive on the workers."""
    import threading

    def left(dask_worker):
        threads = [t for t in threading.enumerate() if t.name.startswith("rtcc-parse-")]
        return len(dask_worker.state.actors), len(threads)

    return client.run(left)


def _no_parsers_left(client, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while (left := _parsers_left(client)) and any(a or t for a, t in left.values()):
        assert time.monotonic() < deadline, f"parsers left on the workers: {left}"
        time.sleep(0.2)


def test_ingest_on_dask_streams_batches_and_equals_local(shared_data, client, small_batches, tmp_path):
    """Files of several batches each, parsed on the workers: the client receives
    and writes them one batch at a time (never the whole file, never more than
    the batch it writes and the next), and the store, the quarantine and the
    summary (per file: counts, reasons, far-dated incidents, the steps timed)
    are those of a local ingest with the same batches."""
    files = [shared_data / "philadelphia" / f for f in PHL_APR_JUL[:3]] + [
        shared_data / "philadelphia" / PHL_APR_JUL[0]
    ]
    a, b = EmbeddedStore(tmp_path / "a"), DaskStore(EmbeddedStore(tmp_path / "b"), client)
    seen_local, seen = _watch_writes(a), _watch_writes(b.store)
    sa = ingest_files("philadelphia", files, a)
    with get_task_stream(client) as ts:
        sb = ingest_on_dask("philadelphia", files, b)
    parsers = [t for t in ts.data if "_FileParser" in t["key"]]
    assert len(parsers) == len(files) and len({t["worker"] for t in parsers}) == 3  # spread over the workers

    da, db = sa.as_dict(), sb.as_dict()
    for d in (da, db):
        d.pop("store"), d.pop("seconds")
        for f in d["files"]:
            f.pop("seconds")
    assert db == da
    assert [f.duplicates for f in sb.files] == [0, 0, 0, sb.files[0].loaded] > [0]
    for fa, fb in zip(sa.files, sb.files):
        assert fb.phases.keys() == fa.phases.keys() and fb.cpu.keys() == fa.cpu.keys()
        assert fb.phases["store"] > 0 and fb.phases["read"] > 0
    _same(a.incidents(), b.incidents())
    _same(a.quarantine(), b.quarantine())

    # One write per batch on the client, the same batches as locally (batches are
    # about BATCH rows: cut at line ends), and every earlier batch gone by the time
    # the next is written: no file was ever whole in the client.
    assert [n for n, _ in seen] == [n for n, _ in seen_local]
    assert len(seen) >= 4 * len(files) and max(n for n, _ in seen) < 1.5 * BATCH < min(f.loaded for f in sb.files) / 3
    assert max(alive for _, alive in seen) == 0
    _no_parsers_left(client)


def test_ingest_on_dask_interrupted_cleans_up(shared_data, client, small_batches, tmp_path):
    """An ingest stopped mid-file (here: the store fails on the third batch) raises
    that error, and leaves no parser (actor, thread, batches) on the workers."""
    files = [shared_data / "philadelphia" / f for f in PHL_APR_JUL]
    b = DaskStore(EmbeddedStore(tmp_path / "b"), client)
    write, calls = b.store.write_incidents, []

    def failing(df):
        calls.append(len(df))
        if len(calls) == 3:
            raise KeyboardInterrupt  # what Ctrl-C does to the client
        return write(df)

    b.store.write_incidents = failing  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        ingest_on_dask("philadelphia", files, b)
    assert len(calls) == 3
    _no_parsers_left(client)


def test_ingest_on_dask_parse_error_is_raised(client, tmp_path):
    """A file that fails to parse on a worker raises its error on the client."""
    bad = tmp_path / "bad.csv"
    bad.write_text("this,is,not\na,philadelphia,file\n")
    b = DaskStore(EmbeddedStore(tmp_path / "b"), client)
    with pytest.raises(Exception) as err:
        ingest_on_dask("philadelphia", [bad], b)
    local = EmbeddedStore(tmp_path / "a")
    with pytest.raises(type(err.value)) as want:
        ingest_files("philadelphia", [bad], local)
    assert str(err.value) == str(want.value)
    _no_parsers_left(client)


def test_ingest_on_dask_lost_worker_is_an_error(shared_data, tmp_path, monkeypatch):
    """The worker parsing a file dies mid-file: the ingest fails with an error
    naming it, and does not hang."""
    import signal

    monkeypatch.setenv("RTCC_BATCH_ROWS", str(BATCH))  # the workers start with it
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = Client(cluster)
    try:
        b = DaskStore(EmbeddedStore(tmp_path / "b"), c)
        pids = c.run(os.getpid)
        write, calls = b.store.write_incidents, []

        def killing(df):
            calls.append(len(df))
            if len(calls) == 2:  # kill both workers: whichever parses the first file dies
                for pid in pids.values():
                    os.kill(pid, signal.SIGKILL)
            return write(df)

        b.store.write_incidents = killing  # type: ignore[method-assign]
        files = [shared_data / "philadelphia" / PHL_APR_JUL[0]]
        with pytest.raises(ClusterError, match=r"parsing incidents_2024_04.csv was lost mid-file"):
            ingest_on_dask("philadelphia", files, b)
        assert len(calls) >= 2
    finally:
        c.close()
        cluster.close()
