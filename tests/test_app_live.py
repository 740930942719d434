"""Real time in the app, end to end: PostGIS + feed + LISTEN/NOTIFY + event stream + headless Chromium.

November 2024 of Philadelphia is the stored history; the morning of 1 December
is replayed through the app's feed as if live. The browser must show the
replayed incidents on the map and alerts in the panel, with no request leaving
the machine; a viewer's stream and panel carry no incident detail.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from rtcc_geo.auth import Users
from rtcc_geo.config import load_agency

from .conftest import _schema_url, missing

pytestmark = [pytest.mark.browser, pytest.mark.postgis]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PASSWORD = "live-test-password"
TOKEN = "live-test-token"

JS_LIVE = """
const gd = document.querySelector('#map .js-plotly-plot');
const live = gd && gd.data && gd.data.find(t => t.name === 'live');
if (!live) return null;
const rows = document.querySelectorAll('#alerts-panel .alert-row').length;
return {points: live.lon.length, received: (window.rtccLive || {}).received || 0, alertRows: rows,
        alertsSeen: (window.rtccLive || {}).alerts || 0};
"""


@pytest.fixture(scope="module")
def live_url(pg_admin_url):
    """A schema of its own (the session schema belongs to the parity tests' loads)."""
    yield from _schema_url(pg_admin_url)


@pytest.fixture(scope="module")
def live_app(live_url, shared_data):
    from rtcc_geo.app import create_app
    from rtcc_geo.ingest.pipeline import ingest_files
    from rtcc_geo.store.postgis import PostGISStore

    store = PostGISStore(live_url)
    ingest_files(
        "philadelphia",
        [shared_data / "philadelphia" / "incidents_2024_11.csv"],
        store,
        agency=load_agency("philadelphia"),
    )
    users = Users(store)
    users.add("chief", PASSWORD, "commander")
    users.add("eye", PASSWORD, "viewer")
    app = create_app(store, source="philadelphia", secret_key="live-secret", warm=False, feed_token=TOKEN)
    assert app.rtcc_live is not None and app.rtcc_live.listener is not None
    yield app
    app.rtcc_live.listener.stop()


def test_replayed_incidents_and_alerts_appear_in_the_browser(live_app, shared_data):
    from tests.browser import LiveServer, chromium, find_browser, login, non_local, requested_urls, wait_for
    from rtcc_geo.live.replay import load_records, replay

    chrome, driver = find_browser()
    if not chrome or not driver:
        missing("headless Chromium", "install Debian 'chromium' and 'chromium-driver' (the README's test command does)")
    ARTIFACTS.mkdir(exist_ok=True)
    _, recs = load_records(
        "philadelphia",
        [shared_data / "philadelphia" / "incidents_2024_12.csv"],
        start="2024-12-01 00:00",
        end="2024-12-01 12:00",
    )
    assert len(recs) > 100
    with LiveServer(live_app.server) as url, chromium(chrome, driver) as d:
        requested_urls(d)
        login(d, url, "chief", PASSWORD)
        wait_for(lambda: d.execute_script(JS_LIVE), timeout=60, what="map with its live trace")
        # The page holds the event stream open before the replay starts.
        try:
            wait_for(
                lambda: d.execute_script("return window.rtccLive && window.rtccLive.source.readyState === 1"),
                timeout=30,
                what="event stream open",
            )
        except TimeoutError:
            d.save_screenshot(str(ARTIFACTS / "live_0_fail.png"))
            print(
                d.get_log("browser"),
                d.execute_script(
                    "return [typeof window.rtccLive, !!document.getElementById('live-incidents'), Array.from(document.scripts).map(s => s.src)]"
                ),
            )
            raise
        out = {}
        t = threading.Thread(target=lambda: out.update(rep=replay(recs, "philadelphia", url, TOKEN, speed="7200x")))
        t.start()
        t.join(120)
        rep = out["rep"]
        assert rep.sent == len(recs) == rep.loaded + rep.quarantined and rep.duplicates == 0
        # Every stored incident reaches the map's live trace, and alerts reach the panel.
        s = wait_for(
            lambda: (lambda x: x if x and x["points"] >= rep.loaded and x["alertRows"] > 0 else None)(
                d.execute_script(JS_LIVE)
            ),
            timeout=60,
            what="live points and alert rows",
        )
        assert s["points"] == rep.loaded == s["received"], s
        d.save_screenshot(str(ARTIFACTS / "live_1_map.png"))
        assert non_local(requested_urls(d)) == []

        # Alerts carry their reason, and the engine's incremental state equals a full recompute.
        alerts = live_app.rtcc_live.engine.alerts.list()
        assert len(alerts) and set(alerts["kind"]) <= {"hotspot", "near_repeat", "stp_cluster"}
        assert alerts["reason"].str.len().min() > 20
        eng = live_app.rtcc_live.engine
        before = eng.state.y.copy()
        assert eng.recompute(eng.state.now)["drift"] == 0 and (eng.state.y == before).all()

        # A row says when it was raised and when its incident happened, in Philadelphia time.
        import json

        from selenium.webdriver.common.by import By

        row = d.find_elements(By.CSS_SELECTOR, "#alerts-panel .alert-row")[0]
        aid = json.loads(row.find_element(By.TAG_NAME, "button").get_attribute("id"))["id"]
        a = eng.alerts.list().set_index("alert_id").loc[aid]
        tz = "America/New_York"
        assert f"raised {pd.Timestamp(a.created_at).tz_convert(tz):%H:%M:%S}" in row.text
        if a.kind in ("hotspot", "near_repeat"):
            occurred = pd.Timestamp(json.loads(a.data)["occurred_from"]).tz_convert(tz)
            assert f"(incident {occurred:%Y-%m-%d %H:%M})" in row.text, row.text

        # Acknowledge one from the panel: it leaves the open list.
        n_open = len(eng.alerts.list(open_only=True))
        d.find_elements(By.CSS_SELECTOR, "#alerts-panel .alert-row button")[0].click()
        wait_for(lambda: len(eng.alerts.list(open_only=True)) == n_open - 1, timeout=20, what="acknowledged")
        d.save_screenshot(str(ARTIFACTS / "live_2_ack.png"))


def test_viewer_stream_and_panel_carry_no_incident_detail(live_app):
    from rtcc_geo.app import live
    from rtcc_geo.app.live import alerts_list

    ev = {
        "type": "incidents",
        "source": "philadelphia",
        "rows": [
            {
                "id": "202412X",
                "lon": -75.16,
                "lat": 39.95,
                "category": "theft",
                "occurred_from": "2024-12-01T10:00:00+00:00",
                "cell": 617733343613812735,
                "bin": 0,
            }
        ],
    }
    # Aggregate-only roles get how many arrived, never where or when (one incident in a cell
    # would be a cell/time aggregate of 1, below the suppression threshold).
    for role in ("viewer", "planner"):
        v = live.redact(ev, role)
        assert v["rows"] == [] and v["count"] == 1
        a = live.redact(
            {
                "type": "alerts",
                "rows": [
                    {
                        "kind": "near_repeat",
                        "cell": 617733343613812735,
                        "incident_id": "202412X",
                        "reason": "2 within 200 m",
                    }
                ],
            },
            role,
        )
        assert a["rows"] == [{"kind": "near_repeat"}] and a["count"] == 1
    assert live.redact(ev, "commander") == ev
    store = live_app.rtcc.store
    if live_app.rtcc_live.engine.alerts.list().empty:
        pytest.fail("no alerts to check: run after the replay test")
    viewer_panel = str(alerts_list(store, "viewer"))
    chief_panel = str(alerts_list(store, "commander"))
    assert "incident" in chief_panel and "incident" not in viewer_panel
    assert "alert-when" not in viewer_panel
    assert "ack" in chief_panel and "'ack'" not in viewer_panel
