"""The live feed end to end over real HTTP: validation, idempotence, NOTIFY, restarts."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.config import load_agency
from rtcc_geo.live.feed import FeedService
from rtcc_geo.live.replay import load_records, replay
from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore

from .live_support import TOKEN, feed_server, wait_until


def _post(url, body, token=TOKEN, raw=None):
    req = urllib.request.Request(
        f"{url}/api/feed/philadelphia/incidents",
        data=raw if raw is not None else json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture()
def phl_store(tmp_path):
    s = EmbeddedStore(tmp_path)
    s.register_source("philadelphia", load_agency("philadelphia").timezone)
    return s


GOOD = {
    "id": "F-1",
    "occurred_from": "2024-06-01T14:05:00-04:00",
    "offense_raw": "Thefts",
    "lon": -75.16,
    "lat": 39.95,
    "block": "1400 BLOCK MARKET ST",
}


def test_feed_validates_quarantines_and_is_idempotent(phl_store):
    bad = [
        {**GOOD, "id": "F-2", "lon": None, "lat": None},  # no coordinates
        {**GOOD, "id": "F-3", "occurred_from": "yesterday-ish"},  # unparseable time
        {**GOOD, "id": "F-4", "lon": -80.5, "lat": 42.2},  # junk geocode
        {**GOOD, "id": "F-5", "lon": -75.02, "lat": 39.90},  # Cherry Hill, NJ: outside the city
        {**GOOD, "id": "", "occurred_from": "2024-06-01T15:00:00"},  # missing id
    ]
    with feed_server(phl_store, "philadelphia") as (url, _):
        code, out = _post(url, {"incidents": [GOOD, *bad]})
        assert code == 200
        assert out["received"] == 6 == out["loaded"] + out["quarantined"]
        assert out["loaded"] == 1 and out["by_reason"] == {
            "no_coordinates": 1,
            "unparseable_time": 1,
            "invalid_coordinates": 1,
            "outside_boundary": 1,
            "missing_id": 1,
        }
        # Re-sent (at-least-once): nothing new anywhere.
        code, again = _post(url, {"incidents": [GOOD, *bad]})
        assert code == 200 and again["duplicates"] == 1
        assert phl_store.count() == 1 and len(phl_store.quarantine()) == 5
        got = phl_store.incidents().iloc[0]
        assert got.category == "theft"  # derived from the offense with the source's taxonomy
        assert got.occurred_from == pd.Timestamp("2024-06-01T18:05:00Z")
        # Naive times are local to the source.
        code, out = _post(url, {**GOOD, "id": "F-6", "occurred_from": "2024-06-01T15:00:00"})
        assert phl_store.incidents(Query(start="2024-06-01 15:00", end="2024-06-01 15:01")).id.tolist() == ["F-6"]
        # Refusals say what to do.
        assert _post(url, GOOD, token="wrong")[0] == 401
        code, err = _post(url, None, raw=b"{not json")
        assert code == 400 and "JSON" in err["error"]
        code, err = _post(url, ["x"])
        assert code == 400


def _pg_store(url):
    from rtcc_geo.store.postgis import PostGISStore

    s = PostGISStore(url)
    s.register_source("philadelphia", load_agency("philadelphia").timezone)
    return s


@pytest.fixture(scope="module")
def june_records(shared_data):
    return load_records(
        "philadelphia",
        [shared_data / "philadelphia" / "incidents_2024_06.csv"],
        start="2024-06-01",
        end="2024-07-01",
        limit=10_000,
    )[1]


def test_postgis_notify_keeps_incremental_state_equal_to_full_recompute(pg_url, june_records):
    """Replay 10k incidents through the feed into PostGIS; the app-side state is
    fed only by LISTEN/NOTIFY, and equals a full recompute from the table."""
    from rtcc_geo.live.listen import Listener

    store = _pg_store(pg_url)
    with feed_server(store, "philadelphia", None) as (url, engine):
        listener = Listener(pg_url, {"philadelphia": engine})
        listener.start()
        assert listener.ready.wait(10)
        rep = replay(june_records, "philadelphia", url, TOKEN, speed="max", max_batch=250)
        assert rep.sent == 10_000 == rep.loaded + rep.quarantined
        assert wait_until(lambda: listener.received >= rep.loaded, 60), (listener.received, rep.loaded)
        listener.stop()
        listener.join(5)
        incremental = engine.state.y.copy()
        now = engine.state.now
        assert engine.recompute(now)["drift"] == 0
        assert np.array_equal(incremental, engine.state.y)
        # ... and both equal the window (now - 28 days, now] counted from the table.
        inc = store.incidents(Query(source="philadelphia"))
        t = inc.occurred_from
        win = inc[(t > now - pd.Timedelta("28D")) & (t <= now)]
        direct = win.h3_r9.value_counts().reindex(engine.cells, fill_value=0).to_numpy()
        assert np.array_equal(direct, incremental) and incremental.sum() > 5000


def test_killing_postgres_during_a_replay_loses_and_duplicates_nothing(pg_url, june_records, tmp_path):
    store = _pg_store(pg_url)
    recs = june_records[:6000]
    watch = _pg_store(pg_url)
    with feed_server(store, "philadelphia", None) as (url, engine):
        out = {}

        def run():
            out["rep"] = replay(recs, "philadelphia", url, TOKEN, speed=float("inf"), max_batch=100, give_up_after=120)

        t = threading.Thread(target=run)
        t.start()
        # Kill the database once the replay is under way (a few batches stored), not
        # after a fixed delay that a fast machine could outrun.
        deadline = time.monotonic() + 60
        while t.is_alive() and time.monotonic() < deadline and watch.count(Query(source="philadelphia")) < 400:
            time.sleep(0.02)
        assert t.is_alive(), "the replay ended before the database could be killed"
        watch.close()
        ver = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        # An immediate stop is a crash as far as clients can tell.
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", ver, "main", "stop", "-m", "immediate"],
            check=True,
            capture_output=True,
        )
        time.sleep(2.0)
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", ver, "main", "start"], check=True, capture_output=True
        )
        t.join(180)
        rep = out["rep"]
    assert rep.retries > 0  # the restart really hit the replay
    # The same records through the same validation, with no server and no restart.
    control = EmbeddedStore(tmp_path)
    svc = FeedService(control)
    for i in range(0, len(recs), 100):
        svc.accept("philadelphia", recs[i : i + 100])
    check = _pg_store(pg_url)
    assert rep.sent == len(recs) == rep.loaded + rep.quarantined
    assert check.count(Query(source="philadelphia")) == control.count() > 3000
    ids = check.incidents(Query(source="philadelphia"), columns=["id"])["id"]
    assert ids.is_unique and set(ids) == set(control.incidents(columns=["id"])["id"])
    assert len(check.quarantine("philadelphia")) == len(control.quarantine()) == rep.quarantined
