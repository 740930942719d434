"""Derived tables shared by processes (``serve --workers N``, CLI runs): each alert stored once,
no alert lost to a concurrent acknowledgement, snoozes seen by every worker, no user lost.

Two real processes, each with its own store object (its own connection / file
handles), race on one store, embedded and PostGIS. The store is read back
afterwards with a fresh object.
"""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import pytest

from rtcc_geo.live.alerts import Alert, AlertLog


def _open(where: str):
    if where.startswith("postgresql://"):
        from rtcc_geo.store.postgis import PostGISStore

        return PostGISStore(where)
    from rtcc_geo.store.embedded import EmbeddedStore

    return EmbeddedStore(where)


def _alerts(keys) -> list[Alert]:
    return [
        Alert(kind="hotspot", source="x", reason=f"cell is a hot spot ({k})", data={"key": str(k)}, incident_id=str(k))
        for k in keys
    ]


def _worker(where: str, role: str, start_at: float) -> list[str]:
    """Both roles store alerts 0..119 (the same ones, as two serve workers do);
    ``ack`` then acknowledges 0..59 one by one while ``new`` stores 120..179."""
    import time

    log = AlertLog(_open(where))
    while time.time() < start_at:  # start together, so the writes interleave
        time.sleep(0.001)
    for i in range(0, 120, 10):
        log.add(_alerts(range(i, i + 10)))
    acked: list[str] = []
    if role == "ack":
        for a in _alerts(range(60)):
            if log.acknowledge(a.alert_id, "chief"):
                acked.append(a.alert_id)
    else:
        for i in range(120, 180, 5):
            log.add(_alerts(range(i, i + 5)))
    return acked


@pytest.fixture(params=["embedded", "postgis"])
def where(request, tmp_path) -> str:
    if request.param == "embedded":
        return str(tmp_path / "store")
    url = request.getfixturevalue("pg_url")
    _open(url).close()  # migrations once, before the race
    return url


def test_two_processes_store_each_alert_once_and_lose_none(where):
    import time

    start_at = time.time() + 2.0
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        futs = [ex.submit(_worker, where, role, start_at) for role in ("ack", "new")]
        acked = futs[0].result(timeout=300)
        futs[1].result(timeout=300)
    df = _open(where).get_table("alerts")
    ids = df["alert_id"].astype(str)
    assert ids.is_unique, f"{ids.duplicated().sum()} alerts stored twice"
    assert set(ids) == {a.alert_id for a in _alerts(range(180))}  # none lost
    assert sorted(acked) == sorted(a.alert_id for a in _alerts(range(60)))
    done = df[df["acknowledged"].astype(bool)]
    assert set(done["alert_id"]) == set(acked) and (done["ack_by"] == "chief").all()
    assert done["ack_at"].notna().all()


def test_acknowledge_keeps_the_first_acknowledgement(where):
    log = AlertLog(_open(where))
    log.add(_alerts(range(3)))
    ids = [a.alert_id for a in _alerts(range(3))]
    assert log.acknowledge_many(ids[:2], "chief") == ids[:2]
    assert log.acknowledge_many(ids, "deputy") == ids[2:]  # the first two were done already
    df = AlertLog(_open(where)).frame().set_index("alert_id")
    assert list(df.loc[ids, "ack_by"]) == ["chief", "chief", "deputy"]
    assert not log.acknowledge("no-such-alert", "chief")


def test_a_snooze_is_seen_by_another_worker_and_expires(where):
    a, b = AlertLog(_open(where)), AlertLog(_open(where))
    now = pd.Timestamp.now(tz="UTC")
    a.snooze("hotspot|cell 1", now + pd.Timedelta(hours=1), "chief")
    a.snooze("near_repeat|cell 2", now - pd.Timedelta(seconds=1), "chief")  # already over
    seen = b.snoozed()
    assert set(seen) == {"hotspot|cell 1"}
    assert abs(seen["hotspot|cell 1"] - (now + pd.Timedelta(hours=1))) < pd.Timedelta(seconds=1)
    b.snooze("hotspot|cell 1", now + pd.Timedelta(hours=2), "deputy")  # a later snooze replaces it
    assert a.snoozed()["hotspot|cell 1"] > now + pd.Timedelta(minutes=90)
    assert len(_open(where).get_table("alert_snoozes")) == 1  # the expired one was dropped


def _add_users(where: str, prefix: str, start_at: float) -> None:
    import time

    from rtcc_geo.auth import Users

    users = Users(_open(where), actor="test")
    while time.time() < start_at:
        time.sleep(0.001)
    for k in range(6):
        users.add(f"{prefix}{k}", "amber-kettle-orbit-river", "analyst")


def test_two_processes_adding_users_lose_none(where):
    """The users table is read, changed and rewritten: two admins at once (two CLI
    runs, two serve workers) must not drop each other's user."""
    import time

    from rtcc_geo.auth import Users

    start_at = time.time() + 2.0
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        for f in [ex.submit(_add_users, where, p, start_at) for p in ("a", "b")]:
            f.result(timeout=300)
    names = Users(_open(where)).list()["username"].tolist()
    assert sorted(names) == sorted(f"{p}{k}" for p in "ab" for k in range(6))
