"""Concurrent writers with real processes: nothing lost, nothing twice (issue 12, acceptance 2).

Every test runs ``rtcc-geo ingest`` / ``rtcc-geo serve`` / ``rtcc-geo replay``
as subprocesses against one store, at the same time, on a real month of
Philadelphia split in two, then checks, independently of the store code where
it can (pyarrow on the partition files, psycopg on the table):

* stored rows == the rows the runs report as inserted (their ``--json`` counts);
* no id is stored twice;
* the stored id set equals that of one plain sequential ingest (the reference);
* every incident the feed acknowledged as loaded is stored.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from rtcc_geo.ingest.pipeline import ingest_files
from rtcc_geo.store.embedded import EmbeddedStore, hash_ids

_SCRIPT = Path(sys.executable).with_name("rtcc-geo")
RTCC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "rtcc_geo.cli.main"]
TOKEN = "concurrency-token"
MONTH = "incidents_2024_06.csv"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    env["RTCC_FEED_TOKEN"] = TOKEN
    env.pop("RTCC_DATABASE_URL", None)
    return env


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(RTCC + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _finish(p: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-2000:]
    return json.loads(out)


#: Rows of the month used, and the files they are cut into: each file is one write,
#: so writers interleave many times (a test of one write each could pass by luck).
ROWS, CHUNKS = 8000, 8


@pytest.fixture(scope="module")
def chunks(shared_data, tmp_path_factory) -> list[Path]:
    """The first ``ROWS`` rows of the June 2024 extract, cut into ``CHUNKS`` files."""
    src = shared_data / "philadelphia" / MONTH
    d = tmp_path_factory.mktemp("chunks")
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    header, rows = lines[0], lines[1 : ROWS + 1]
    out = []
    for k in range(CHUNKS):
        f = d / f"june_{k}.csv"
        f.write_text(header + "".join(rows[k::CHUNKS]), encoding="utf-8")
        out.append(f)
    return out


@pytest.fixture(scope="module")
def reference_ids(chunks, tmp_path_factory) -> set[str]:
    """Ids of one plain, sequential ingest of every chunk (no concurrency)."""
    s = EmbeddedStore(tmp_path_factory.mktemp("ref"))
    ingest_files("philadelphia", chunks, s)
    ids = s.incidents(columns=["id"])["id"].astype(str)
    assert ids.is_unique and len(ids) > 0.9 * ROWS
    return set(ids)


def _embedded_ids(root: Path) -> list[str]:
    """Stored ids read straight from the part files (pyarrow's hive reader, not the store code)."""
    assert not list((root / "incidents").glob("*/*.parquet")), "a month file of the pre-hive layout"
    return (
        ds.dataset(root / "incidents", format="parquet", partitioning="hive")
        .to_table(columns=["id"])
        .column("id")
        .to_pylist()
    )


def _pg_ids(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM incidents")]


def _check(stored: list[str], reports: list[dict], reference: set[str]) -> None:
    assert len(stored) == len(set(stored)), "an id is stored twice"
    assert len(stored) == sum(r["inserted"] for r in reports), (
        len(stored),
        [(r["loaded"], r["inserted"], r["duplicates"]) for r in reports],
    )
    assert set(stored) == reference
    for r in reports:
        assert r["read"] == r["loaded"] + r["quarantined"]


def _store_args(kind: str, tmp_path: Path, request) -> list[str]:
    if kind == "embedded":
        return ["--store", str(tmp_path / "store")]
    url = request.getfixturevalue("pg_url")
    from rtcc_geo.store.postgis import PostGISStore

    PostGISStore(url).close()  # the schema's migrations, once, before the writers race
    return ["--db", url]


def _stored(kind: str, args: list[str]) -> list[str]:
    return _embedded_ids(Path(args[1])) if kind == "embedded" else _pg_ids(args[1])


@pytest.mark.parametrize("kind", ["embedded", "postgis"])
def test_two_ingests_of_disjoint_halves_at_once(kind, chunks, reference_ids, tmp_path, request):
    where = _store_args(kind, tmp_path, request)
    procs = [
        _start(["ingest", "--format", "philadelphia", "--json", "--quiet", *where, *map(str, half)])
        for half in (chunks[0::2], chunks[1::2])
    ]
    reports = [_finish(p) for p in procs]
    _check(_stored(kind, where), reports, reference_ids)


@pytest.mark.parametrize("kind", ["embedded", "postgis"])
def test_the_same_files_twice_at_once(kind, chunks, reference_ids, tmp_path, request):
    where = _store_args(kind, tmp_path, request)
    procs = [
        _start(["ingest", "--format", "philadelphia", "--json", "--quiet", *where, *map(str, chunks)]) for _ in range(2)
    ]
    reports = [_finish(p) for p in procs]
    _check(_stored(kind, where), reports, reference_ids)
    # Both runs validated the same rows; whatever one inserted, the other counted as a duplicate.
    assert reports[0]["loaded"] == reports[1]["loaded"] >= len(reference_ids)
    assert reports[0]["loaded"] + reports[1]["loaded"] == len(reference_ids) + sum(r["duplicates"] for r in reports)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(where: list[str], *extra: str):
    port = _free_port()
    p = _start(["serve", *where, "--port", str(port), "--source", "philadelphia", *extra])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert p.poll() is None, p.communicate()[1][-2000:]
            try:
                urllib.request.urlopen(url + "/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (a login redirect or 401 is fine)
            except OSError:
                assert time.monotonic() < deadline, "rtcc-geo serve did not come up"
                time.sleep(0.3)
        yield url
    finally:
        p.terminate()
        try:
            p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()


def _replay(url: str, files: list[str], n: int) -> dict:
    """``rtcc-geo replay`` of the first ``n`` incidents of ``files`` into ``url``, as fast as taken."""
    args = ["replay", "--format", "philadelphia", "--speed", "max", "--limit", str(n), "--url", url, "--json"]
    return _finish(_start([*args, *files]), timeout=180)


@pytest.mark.parametrize("kind", ["embedded", "postgis"])
def test_replay_into_serve_while_an_ingest_writes_the_same_store(kind, chunks, reference_ids, tmp_path, request):
    """The feed (inside ``serve``) and an ingest write the same store and the same
    incidents at once: the second half is both replayed and ingested."""
    from rtcc_geo.live.replay import load_records

    a, b = chunks[: CHUNKS // 2], [str(f) for f in chunks[CHUNKS // 2 :]]
    where = _store_args(kind, tmp_path, request)
    first = _finish(_start(["ingest", "--format", "philadelphia", "--json", "--quiet", *where, *map(str, a)]))
    n_replay = 2000
    _, records = load_records("philadelphia", b, limit=n_replay)
    sent_ids = {str(r["id"]) for r in records}
    with _serve(where) as url:
        ing = _start(["ingest", "--format", "philadelphia", "--json", "--quiet", *where, *b])
        rep = _replay(url, b, n_replay)
        second = _finish(ing)
        assert rep["sent"] == n_replay == rep["loaded"] + rep["quarantined"]
    stored = _stored(kind, where)
    # Ingest reports and the feed's new rows add up to the stored rows, each id once.
    assert len(stored) == len(set(stored))
    assert len(stored) == first["inserted"] + second["inserted"] + (rep["loaded"] - rep["duplicates"])
    assert set(stored) == reference_ids
    # Every incident the feed acknowledged as loaded is stored.
    acked = sent_ids & reference_ids
    assert len(acked) == rep["loaded"] and acked <= set(stored)


def test_serve_workers_on_postgis_store_each_alert_once(chunks, tmp_path, request):
    """``serve --workers 2`` on PostGIS: every worker runs the live engine on the same
    feed and raises the same (deterministic) alerts; the alert log must hold each
    once. (Each worker used to check only the ids it had seen itself: duplicates.)"""
    import psycopg

    a, b = chunks[: CHUNKS // 2], [str(f) for f in chunks[CHUNKS // 2 :]]
    where = _store_args("postgis", tmp_path, request)
    _finish(_start(["ingest", "--format", "philadelphia", "--json", "--quiet", *where, *map(str, a)]))
    n_replay = 1500
    with _serve(where, "--workers", "2") as url:
        rep = _replay(url, b, n_replay)
        assert rep["loaded"] > 0
        time.sleep(3)  # the alert writers flush every 0.5 s
    with psycopg.connect(where[1]) as conn:
        ids = [r[0] for r in conn.execute("SELECT alert_id FROM rtcc_t_alerts")]
    assert len(ids) > 0, "the replay raised no alert: nothing was tested"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} alerts stored twice"


def test_key_index_is_built_for_old_stores_and_never_trusted_alone(chunks, tmp_path):
    """A store written before the key index (no keys/) dedups on its first append and
    gets the index; a 64-bit hash hit is confirmed against the stored ids."""
    root = tmp_path / "old"
    s = EmbeddedStore(root)
    first = ingest_files("philadelphia", chunks[:1], s)
    n = s.count()
    shutil.rmtree(root / "keys")  # as written by a version without the index
    again = ingest_files("philadelphia", chunks[:1], EmbeddedStore(root))
    assert again.duplicates == again.loaded == first.loaded and s.count() == n
    keyfiles = sorted((root / "keys").rglob("*.npy"))  # each month's index and the source-wide runs
    assert any(len(np.load(f)) == n for f in keyfiles if f.parent.name == "all")
    # Plant a new row's hash in every index (a collision): the row is still inserted.
    new = s.incidents().head(1).assign(id="collides")
    for f in keyfiles:
        k = np.load(f)
        k[0] = hash_ids(new["id"])[0]
        np.save(f, np.sort(k))
    w = s.write_incidents(new)
    assert w.inserted == 1 and s.count() == n + 1
    assert _embedded_ids(root).count("collides") == 1
