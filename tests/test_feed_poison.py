"""Poison records against a running ``rtcc-geo serve`` (issue 12, acceptances 3 and 4).

Every case is sent to the real server process (embedded store and PostGIS):
a record that can never be stored is quarantined with its reason (or the
request is refused with a 4xx), never answered 503, and the good records
beside it, in the same request or the same group-commit window, are stored.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pandas as pd
import pytest

from rtcc_geo.store.embedded import EmbeddedStore

from .test_store_concurrency import TOKEN, _serve

GOOD = {
    "occurred_from": "2024-06-01T14:05:00-04:00",
    "offense_raw": "Thefts",
    "lon": -75.16,
    "lat": 39.95,
    "block": "1400 BLOCK MARKET ST",
    "district": "6",
}


def _post(url: str, body: bytes, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/api/feed/philadelphia/incidents",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _good(i: str) -> dict:
    return {**GOOD, "id": f"good-{i}"}


@pytest.fixture(scope="module", params=["embedded", "postgis"])
def server(request, shared_data, tmp_path_factory, pg_admin_url):
    """A running ``rtcc-geo serve`` with the feed, on a store holding a little history."""
    from rtcc_geo.ingest.pipeline import ingest_files

    d = tmp_path_factory.mktemp("poison")
    src = shared_data / "philadelphia" / "incidents_2024_05.csv"
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    hist = d / "history.csv"
    hist.write_text("".join(lines[:400]), encoding="utf-8")
    cleanup = None
    if request.param == "embedded":
        store = EmbeddedStore(d / "store")
        where = ["--store", str(d / "store")]
    else:
        from rtcc_geo.store.postgis import PostGISStore

        from .conftest import _schema_url

        cleanup = _schema_url(pg_admin_url)
        url = next(cleanup)
        store = PostGISStore(url)
        where = ["--db", url]
    ingest_files("philadelphia", [hist], store)
    try:
        with _serve(where) as url:
            yield url, store
    finally:
        store.close()
        if cleanup is not None:
            next(cleanup, None)


def _stored(store, ids) -> set[str]:
    got = store.incidents(columns=["id"])["id"].astype(str)
    return set(got) & set(ids)


def _reasons(store, ids) -> dict[str, str]:
    q = store.quarantine("philadelphia")
    raw = q["raw"].map(lambda r: json.loads(r).get("id"))
    return {str(i): r for i, r in zip(raw, q["reason"]) if str(i) in ids}


CASES = {
    # name: (poison record(s), expected quarantine reason)
    "time_before_floor": ([{**GOOD, "id": "p-1970", "occurred_from": "1970-01-01T00:00:00Z"}], "implausible_time"),
    "time_in_future": ([{**GOOD, "id": "p-2099", "occurred_from": "2099-06-01T12:00:00Z"}], "implausible_time"),
    "time_tomorrow_plus": (
        [
            {
                **GOOD,
                "id": "p-next-week",
                "occurred_from": (pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=7)).isoformat(),
            }
        ],
        "implausible_time",
    ),
    "long_id": ([{**GOOD, "id": "p-" + "x" * 5000}], "invalid_field"),
    "long_block": ([{**GOOD, "id": "p-block", "block": "B" * 20_000}], "invalid_field"),
    # 15 ids that fit the limit but not one NOTIFY payload together (multi-byte text).
    "notify_payload": ([{**GOOD, "id": f"p-n{k}-" + "é" * 120} for k in range(15)], None),
    "string_number": ([{**GOOD, "id": "p-strlon", "lon": "-75.16"}], "invalid_field"),
    "string_false": ([{**GOOD, "id": "p-strbool", "time_known": "false"}], "invalid_field"),
    "bool_number": ([{**GOOD, "id": "p-boollat", "lat": True}], "invalid_field"),
    "object_id": ([{**GOOD, "id": {"nested": 1}}], None),
    "nested_extras": ([{**GOOD, "id": "p-nested", "extras": {"a": {"b": {"c": [1, 2, 3]}}}}], None),
    "huge_record": ([{**GOOD, "id": "p-huge", "notes": "n" * 40_000}], "invalid_field"),
    "nul_char": ([{**GOOD, "id": "p-nul", "block": "12\u0000 MARKET"}], "invalid_field"),
    "nul_in_extras": ([{**GOOD, "id": "p-nul-extra", "cad_note": "a\u0000b"}], "invalid_field"),
    "not_an_object": (["just a string"], None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_poison_record_is_quarantined_and_its_neighbours_stored(server, case):
    url, store = server
    poison, reason = CASES[case]
    good = [_good(f"{case}-{k}") for k in range(3)]
    code, out = _post(url, json.dumps({"incidents": [good[0], *poison, good[1], good[2]]}).encode())
    assert code == 200, (code, out)
    assert out["received"] == len(poison) + 3 == out["loaded"] + out["quarantined"]
    assert _stored(store, [g["id"] for g in good]) == {g["id"] for g in good}
    if reason is not None:
        assert out["by_reason"].get(reason) == len(poison), out
        ids = {str(p["id"]) for p in poison}
        assert set(_reasons(store, ids).values()) == {reason}
    if case == "notify_payload":  # valid: all stored (and announced in size-safe chunks)
        assert out["loaded"] == 18 and _stored(store, [p["id"] for p in poison]) == {p["id"] for p in poison}
    if case == "nested_extras":
        assert out["loaded"] == 4
    if case in ("object_id", "not_an_object"):
        assert out["quarantined"] == 1


def test_lone_surrogate_is_quarantined(server):
    url, store = server
    body = (
        '[{"id": "p-surrogate", "occurred_from": "2024-06-01T10:00:00Z", "offense_raw": "Thefts \\ud800", '
        '"lon": -75.16, "lat": 39.95}, ' + json.dumps(_good("surrogate")) + "]"
    ).encode()
    code, out = _post(url, body)
    assert code == 200 and out["loaded"] == 1 and out["by_reason"] == {"invalid_field": 1}, out
    assert _stored(store, ["good-surrogate"]) == {"good-surrogate"}
    q = store.quarantine("philadelphia")
    mine = q[q["raw"].str.contains('"p-surrogate"', regex=False)]
    assert mine["detail"].tolist() == ["broken Unicode (lone surrogate)"]  # screened, not refused by the store


def test_request_limits_are_4xx(server):
    url, store = server
    deep = b"[" * 200 + b"]" * 200
    code, out = _post(url, deep)
    assert code == 400 and "nested" in out["error"]
    very_deep = b'{"incidents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert _post(url, very_deep)[0] in (400, 413)
    big = json.dumps([{**_good(f"big-{k}"), "notes": "n" * 1000} for k in range(9000)]).encode()
    assert len(big) > 8 * 1024 * 1024
    code, out = _post(url, big)
    assert code == 413, out
    assert _post(url, b"{not json")[0] == 400
    assert not _stored(store, ["good-big-0"])
    # ... and the server is still up and storing.
    code, out = _post(url, json.dumps(_good("after-limits")).encode())
    assert code == 200 and out["loaded"] == 1


def test_poison_in_the_same_group_commit_window(server):
    """Many requests at once (one group-commit batch), each with a poison record:
    every request gets 200, every good record is stored."""
    url, store = server
    results: list[tuple[int, dict]] = []

    def send(k: int):
        poison = {**GOOD, "id": f"w-bad-{k}", "occurred_from": "1901-01-01T00:00:00Z", "lon": "x"}
        results.append(_post(url, json.dumps([_good(f"window-{k}"), poison]).encode()))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 20 and {c for c, _ in results} == {200}, results[:3]
    assert all(o["loaded"] == 1 and o["quarantined"] == 1 for _, o in results)
    want = {f"good-window-{k}" for k in range(20)}
    assert _stored(store, want) == want


@pytest.mark.parametrize("server", ["postgis"], indirect=True)  # a database constraint: PostGIS only
def test_a_record_the_store_refuses_is_quarantined_alone(server):
    """A record that passes validation but that the database refuses (here: a real
    CHECK constraint added to the live table) poisons neither its request nor the
    group-commit window: it is quarantined with the store's message, the rest stored."""
    url, store = server
    assert getattr(store, "kind", "") == "postgis"
    store.conn.execute(
        "ALTER TABLE incidents ADD CONSTRAINT poison_block CHECK (block IS NULL OR block NOT LIKE '%POISON%') NOT VALID"
    )
    try:
        results: list[tuple[int, dict]] = []

        def send(k: int):
            recs = [_good(f"refused-{k}"), {**_good(f"refused-{k}-poison"), "block": "1 POISON ST"}]
            results.append(_post(url, json.dumps(recs).encode()))

        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        store.conn.execute("ALTER TABLE incidents DROP CONSTRAINT poison_block")
    assert len(results) == 8 and {c for c, _ in results} == {200}, results[:2]
    assert all(o["loaded"] == 1 and o["by_reason"] == {"invalid_field": 1} for _, o in results), results[:2]
    want = {f"good-refused-{k}" for k in range(8)}
    assert _stored(store, want | {f"good-refused-{k}-poison" for k in range(8)}) == want
    q = store.quarantine("philadelphia")
    refused = q[q["detail"].str.contains("the store refused this record", regex=False)]
    assert len(refused) == 8 and refused["detail"].str.contains("poison_block").all(), refused[
        ["file", "row_number", "detail", "raw"]
    ].to_string()
