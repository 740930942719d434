"""The commander map people can read, in headless Chromium behind the trap proxy
(Philadelphia 2024): streets and district labels at city and street zoom, a
tooltip that names a block, search, quick ranges, the view as a URL (another
session, back/forward), live dots that fade and hide, phone and tablet sizes.
Expected values come from pandas on the store's incident rows, not from the app.
Screenshots: ``test-artifacts/map_*.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.store.base import Query

from .conftest import missing
from .test_app_common import PASSWORD, philly_app, philly_store  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

JS_MAP = (
    "const gd=document.querySelector('#map .js-plotly-plot');"
    "return !!(gd && gd._fullLayout.map && gd._fullLayout.map._subplot && gd._fullLayout.map._subplot.map);"
)
JS_BASE = """
const H = window.rtccHex, m = H && H.map;
if (!m || !m.loaded() || !m.getLayer('rtcc-streets')) return null;
return {zoom: m.getZoom(), streets: m.queryRenderedFeatures({layers: ['rtcc-streets']}).length,
        labels: Array.from(document.querySelectorAll('.district-labels .district-label'))
                     .filter(e => e.style.display !== 'none').map(e => e.textContent)};
"""


def _browser(philly_app):
    from tests.browser import find_browser

    chrome, driver = find_browser()
    if not chrome or not driver:
        missing("headless Chromium", "install Debian 'chromium' and 'chromium-driver' (the README's test command does)")
    ARTIFACTS.mkdir(exist_ok=True)
    return chrome, driver


@pytest.fixture(scope="module")
def session(philly_app):
    from tests.browser import LiveServer, chromium, login

    chrome, driver = _browser(philly_app)
    server = LiveServer(philly_app.server)
    with server as url, chromium(chrome, driver) as d:
        d.served = server.paths
        login(d, url, "chief", PASSWORD)
        _ready(d)
        yield d, url
        # Nothing in the whole module's use of the map went off the machine.
        from tests.browser import non_local, requested_urls

        assert non_local(requested_urls(d)) == []
        assert _offsite(d) == [], d.offsite


def _offsite(d) -> list[str]:
    """What the trap proxy caught, less Chromium's own extension-update check
    (``update.googleapis.com``, ``redirector.gvt1.com``), which a fresh profile makes minutes after start-up
    whatever the page does (the browser's service, not the app's)."""
    own = ("update.googleapis.com:443", "http://update.googleapis.com/", "redirector.gvt1.com:443")
    return [u for u in d.offsite if not u.startswith(own)]


def _ready(d, timeout=60.0):
    from tests.browser import JS_MAP_STATE, wait_for

    return wait_for(
        lambda: (lambda s: s if s and s["drawn"] > 0 else None)(d.execute_script(JS_MAP_STATE)),
        timeout=timeout,
        what="map drawn",
    )


def _idle(d, timeout=30.0):
    """Wait for MapLibre to finish loading and drawing the current view."""
    from tests.browser import wait_for

    d.execute_script(
        "window.__idle = false; const m = window.rtccHex.map; m.once('idle', () => window.__idle = true);"
        "m.triggerRepaint();"
    )
    wait_for(lambda: d.execute_script("return window.__idle"), timeout=timeout, what="map idle")


def _jump(d, zoom, lon, lat):
    # As a user's zoom would: through Plotly, which keeps the view in its layout.
    d.execute_script("window.rtccHex.setView([arguments[1], arguments[2]], arguments[0])", zoom, lon, lat)
    _idle(d)


def shot(d, name):
    d.save_screenshot(str(ARTIFACTS / f"map_{name}.png"))


def _blocks(store) -> pd.DataFrame:
    df = store.incidents(Query(source="philadelphia", geolocated=True), columns=["block", "lon", "lat", "h3_r9"])
    df["b"] = df["block"].astype("string").str.upper().str.split().str.join(" ")
    return df


def test_streets_and_district_labels_at_city_and_street_zoom(session, philly_app):
    from tests.browser import wait_for

    d, _ = session
    ctx = philly_app.rtcc
    served = len(d.served)
    city_hall = (-75.1636, 39.9524)
    for z in (11, 15):
        _jump(d, z, *city_hall)
        s = wait_for(
            lambda: (lambda x: x if x and x["streets"] > 0 and x["labels"] else None)(d.execute_script(JS_BASE)),
            timeout=30,
            what=f"streets and labels at zoom {z}",
        )
        assert abs(s["zoom"] - z) < 0.01
        assert all(t.startswith("District ") for t in s["labels"])
        # The labels name real districts of the agency's polygons.
        names = {f"District {n}" for n in ctx.districts["district"].astype(str)}
        assert set(s["labels"]) <= names
        if z == 11:
            assert len(s["labels"]) >= 5  # several districts in view at city zoom
        else:
            # City Hall is in district 09 (the polygon containing it, by shapely).
            import shapely

            inside = ctx.districts[ctx.districts.contains(shapely.Point(*city_hall))]["district"].astype(str).tolist()
            assert inside and f"District {inside[0]}" in s["labels"], (inside, s["labels"])
        shot(d, f"1_streets_z{z}")
    paths = d.served[served:]
    assert any(p.startswith("/geo/base/streets/11/") for p in paths)
    assert any(p.startswith("/geo/base/streets/14/") for p in paths)  # zoom 15 over-zooms the z14 tiles


def test_cell_tooltip_names_its_most_frequent_block(session, philly_app):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tests.browser import wait_for

    d, _ = session
    ctx = philly_app.rtcc
    df = _blocks(ctx.store)
    busiest = int(df.groupby("h3_r9").size().idxmax())
    import h3

    lat, lon = h3.api.basic_int.cell_to_latlng(busiest)
    _jump(d, 15, lon, lat)
    canvas = d.find_element(By.CSS_SELECTOR, "#map canvas.maplibregl-canvas")
    ActionChains(d).move_to_element(canvas).pause(0.3).move_by_offset(2, 2).pause(0.3).perform()
    tip = wait_for(
        lambda: (lambda t: t if t and "BLOCK" in t else None)(
            d.execute_script(
                "const t=document.getElementById('hex-tip'); return t && t.style.display !== 'none' && t.textContent"
            )
        ),
        timeout=20,
        what="tooltip with a block address",
    )
    # Independent: the most frequent normalised block of that cell (pandas), ties alphabetical.
    vc = df[df["h3_r9"] == busiest]["b"].dropna().value_counts()
    top = min(vc[vc == vc.max()].index)
    assert tip.splitlines()[0].startswith(top + ", district "), (tip, top)
    assert "Incident counts:" in tip
    shot(d, "2_tooltip")


def test_search_market_st_zooms_to_it(session, philly_app):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.browser import wait_for

    d, _ = session
    ctx = philly_app.rtcc
    _jump(d, ctx.view["zoom"], ctx.view["center"]["lon"], ctx.view["center"]["lat"])
    z0 = d.execute_script("return window.rtccHex.map.getZoom()")
    box = d.find_element(By.ID, "search")
    box.clear()
    box.send_keys("MARKET ST", Keys.ENTER)
    wait_for(
        lambda: d.execute_script("return window.rtccHex.found && window.rtccHex.found.label"),
        timeout=20,
        what="search result shown",
    )
    _idle(d)
    cam = d.execute_script(
        "const m=window.rtccHex.map, c=m.getCenter(); return {z: m.getZoom(), lon: c.lng, lat: c.lat,"
        " b: m.getBounds().toArray()}"
    )
    # Every "<n> BLOCK MARKET ST" incident point, by pandas: the view is on them.
    df = _blocks(ctx.store)
    mk = df[df["b"].str.fullmatch(r"\d+ BLOCK MARKET ST", na=False)]
    assert len(mk) > 100
    w, e = mk["lon"].quantile([0.01, 0.99])
    s, n = mk["lat"].quantile([0.01, 0.99])
    assert cam["z"] > z0 + 0.8, (cam, z0)
    assert w <= cam["lon"] <= e and s <= cam["lat"] <= n, cam
    (bw, bs), (be, bn) = cam["b"]
    assert bw <= w and be >= e and bs <= s and bn >= n  # the whole street is in view
    first = d.find_elements(By.CSS_SELECTOR, "#search-results .search-hit")[0].text
    assert first.startswith("MARKET ST (whole street")
    shot(d, "3_search_market_st")


def test_quick_range_last_28_days_changes_the_header_dates(session, philly_app):
    from selenium.webdriver.common.by import By

    from tests.browser import wait_for

    d, _ = session
    ctx = philly_app.rtcc
    before = d.find_element(By.ID, "summary-dates").text
    d.find_element(By.CSS_SELECTOR, "#f-range input[value='28d']").click()
    # The data's last local day, from the incident rows (pandas), and 27 days before it.
    inc = ctx.store.incidents(Query(source="philadelphia", include_unknown_time=True), columns=["occurred_from"])
    last = inc["occurred_from"].dt.tz_convert("America/New_York").max().normalize().tz_localize(None)
    want = f"{(last - pd.Timedelta(days=27)):%Y-%m-%d} to {last:%Y-%m-%d} (28 days)"
    got = wait_for(
        lambda: (lambda t: t if t == want else None)(d.find_element(By.ID, "summary-dates").text),
        timeout=30,
        what=f"header dates {want}",
    )
    assert got != before
    assert d.find_element(By.ID, "f-start").get_attribute("value") == f"{(last - pd.Timedelta(days=27)):%Y-%m-%d}"
    n = ctx.store.count(
        Query(
            source="philadelphia",
            start=f"{last - pd.Timedelta(days=27):%Y-%m-%d}",
            end=f"{last + pd.Timedelta(days=1):%Y-%m-%d}",
            geolocated=True,
        )
    )  # the map's incidents
    wait_for(lambda: f"{n:,} incidents" in d.find_element(By.ID, "summary-text").text, timeout=20, what="count")
    # A typed date applies when the box loses focus (no Enter).
    box = d.find_element(By.ID, "f-start")
    d.execute_script("arguments[0].focus()", box)
    box.send_keys("12012024")  # Chromium's date field takes mm dd yyyy keystrokes
    d.find_element(By.ID, "search").click()  # blur
    wait_for(
        lambda: d.find_element(By.ID, "summary-dates").text.startswith("2024-12-01 to"),
        timeout=30,
        what="date applied on blur",
    )
    assert d.find_element(By.CSS_SELECTOR, "#f-range input[value='custom']").is_selected()
    shot(d, "4_last_28_days")


def test_url_reproduces_the_view_in_another_session_and_back_works(session, philly_app):
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, wait_for

    d, url = session
    ctx = philly_app.rtcc
    d.find_element(By.CSS_SELECTOR, "#f-range input[value='7d']").click()
    wait_for(lambda: "(7 days)" in d.find_element(By.ID, "summary-dates").text, timeout=30, what="7 days")
    d.find_element(By.CSS_SELECTOR, "#f-cats input[value='theft']").click()
    wait_for(lambda: "cats=" in d.current_url, timeout=20, what="filters in the URL")
    d.find_element(By.CSS_SELECTOR, "#f-res input[value='8']").click()
    wait_for(lambda: "res=8" in d.current_url, timeout=20, what="resolution in the URL")
    _jump(d, 12.5, -75.17, 39.98)
    wait_for(lambda: "cam=12.50," in d.current_url, timeout=20, what="camera in the URL")
    shared = d.current_url
    state = d.execute_script(
        "const H=window.rtccHex; return {res: H.data.res, v: H.data.v.reduce((a, b) => a + (b || 0), 0)}"
    )
    header = d.find_element(By.ID, "summary-text").text
    shot(d, "5a_view_session1")

    # Another browser session (fresh profile, log in again): the same view.
    chrome, driver = _browser(philly_app)
    with chromium(chrome, driver) as d2:
        # Opened before logging in: the log-in form (in place, at the shared address), then
        # straight to the shared view.
        d2.get(shared)
        wait_for(lambda: d2.find_element(By.ID, "login-form"), timeout=30, what="the log-in form")
        d2.find_element(By.ID, "username").send_keys("chief")
        d2.find_element(By.ID, "password").send_keys(PASSWORD)
        d2.find_element(By.ID, "login-button").click()
        wait_for(
            lambda: d2.current_url.split("&cam=")[0] == shared.split("&cam=")[0],
            timeout=30,
            what="redirected to the shared address",
        )
        wait_for(lambda: d2.execute_script(JS_MAP), timeout=60, what="map")
        try:
            wait_for(lambda: d2.find_element(By.ID, "summary-text").text == header, timeout=60, what="same header")
        except TimeoutError:
            raise AssertionError(
                (header, d2.find_element(By.ID, "summary-text").text, shared, d2.current_url)
            ) from None
        s2 = wait_for(
            lambda: d2.execute_script(
                "const H=window.rtccHex, m=H && H.map; if (!m || !H.data || H.shown !== H.data) return null;"
                "const c=m.getCenter(); return {res: H.data.res, v: H.data.v.reduce((a, b) => a + (b || 0), 0),"
                " z: m.getZoom(), lon: c.lng, lat: c.lat}"
            ),
            timeout=60,
            what="painted",
        )
        s2.update(
            wait_for(
                lambda: (lambda c: c if abs(c["z"] - 12.5) < 0.01 else None)(
                    d2.execute_script(
                        "const m=window.rtccHex.map, c=m.getCenter(); return {z: m.getZoom(), lon: c.lng, lat: c.lat}"
                    )
                ),
                timeout=20,
                what="the address's camera",
            )
        )
        assert s2["res"] == state["res"] == 8 and s2["v"] == state["v"]
        assert abs(s2["z"] - 12.5) < 0.01 and abs(s2["lon"] + 75.17) < 1e-4 and abs(s2["lat"] - 39.98) < 1e-4
        assert not d2.find_element(By.CSS_SELECTOR, "#f-cats input[value='theft']").is_selected()
        d2.save_screenshot(str(ARTIFACTS / "map_5b_view_session2.png"))
        from tests.browser import non_local, requested_urls

        assert non_local(requested_urls(d2)) == []
        assert _offsite(d2) == [], d2.offsite

    # Back: the resolution change is undone, then the category one.
    d.back()
    wait_for(lambda: d.execute_script("return window.rtccHex.data.res") == 9, timeout=30, what="back to res 9")
    assert "res=9" in d.current_url and "cats=" in d.current_url
    d.back()
    wait_for(
        lambda: d.find_element(By.CSS_SELECTOR, "#f-cats input[value='theft']").is_selected(),
        timeout=30,
        what="back: theft ticked again",
    )
    d.forward()
    wait_for(
        lambda: not d.find_element(By.CSS_SELECTOR, "#f-cats input[value='theft']").is_selected(),
        timeout=30,
        what="forward: theft unticked",
    )
    # Leave the default view for the tests after this one.
    d.find_element(By.CSS_SELECTOR, "#f-cats input[value='theft']").click()
    _ = ctx


def test_live_dots_fade_with_age_and_hide(session, philly_app):
    from selenium.webdriver.common.by import By

    from tests.browser import wait_for

    d, _ = session
    if not philly_app.rtcc.live:
        pytest.fail("the live layer is off in the app under test")
    # Three incidents as the stream delivers them: now, 1 h and 8 h before.
    t0 = pd.Timestamp("2024-12-31T20:00:00Z")
    rows = [
        {
            "lon": -75.16 + 0.01 * i,
            "lat": 39.95,
            "category": "theft",
            "cell": 0,
            "occurred_from": (t0 - pd.Timedelta(hours=h)).isoformat(),
        }
        for i, h in enumerate((0, 1, 8))
    ]
    d.execute_script("window.rtccLive.add(arguments[0])", rows)
    js = (
        "const gd=document.querySelector('#map .js-plotly-plot'); const t=gd.data.find(x => x.name === 'live');"
        "return t && {n: (t.lon || []).length, op: t.marker.opacity, text: t.customdata, visible: t.visible};"
    )
    s = wait_for(
        lambda: (lambda x: x if x and x["n"] >= 3 else None)(d.execute_script(js)), timeout=20, what="live dots"
    )
    op = s["op"][-3:]
    assert op[0] == 1 and 0.2 < op[1] < 1 and op[2] == 0.2 and op[0] > op[1] > op[2]
    # Local (Philadelphia) times in the tooltips: 15:00, 14:00 and 07:00 EST.
    for txt, h in zip(s["text"][-3:], (0, 1, 8)):
        want = (t0 - pd.Timedelta(hours=h)).tz_convert("America/New_York").strftime("%Y-%m-%d %H:%M")
        assert want in txt and "local time" in txt, (txt, want)
    _jump(d, 13, -75.15, 39.95)
    shot(d, "6a_live_dots")
    d.find_element(By.CSS_SELECTOR, "#live-show input").click()
    wait_for(lambda: d.execute_script(js)["visible"] is False, timeout=20, what="live dots hidden")
    shot(d, "6b_live_hidden")
    d.find_element(By.CSS_SELECTOR, "#live-show input").click()
    wait_for(lambda: d.execute_script(js)["visible"] is True, timeout=20, what="live dots shown again")


@pytest.mark.parametrize("size", [(390, 844), (1024, 768)])
def test_phone_and_tablet_show_the_map(session, philly_app, size):
    from tests.browser import JS_COLOURED, wait_for

    d, _ = session
    w, h = size
    v = philly_app.rtcc.view
    from selenium.webdriver.common.by import By

    twelve = d.find_element(By.CSS_SELECTOR, "#f-range input[value='12m']")
    if not twelve.is_selected():
        twelve.click()
        wait_for(lambda: "(366 days)" in d.find_element(By.ID, "summary-dates").text, timeout=30, what="12 months")
    try:
        d.set_window_size(w, h)
        _jump(d, v["zoom"] - (1 if w < 500 else 0.3), v["center"]["lon"], v["center"]["lat"])
        box = wait_for(
            lambda: (
                lambda r: (
                    r
                    if r and r["width"] > 0.8 * w and r["height"] > 300 or (w > 900 and r and r["width"] > 500)
                    else None
                )
            )(
                d.execute_script(
                    "const r=document.querySelector('#map .maplibregl-canvas').getBoundingClientRect();"
                    "return {width: r.width, height: r.height, left: r.left, top: r.top}"
                )
            ),
            timeout=20,
            what="map laid out",
        )
        _idle(d)
        assert box["height"] > 300
        wide = d.execute_script(
            "return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > "
            "window.innerWidth + 1 && getComputedStyle(e).display !== 'none').slice(0, 8).map(e => e.tagName + '#' + e.id + "
            "'.' + (typeof e.className === 'string' ? e.className : '') + ' ' + Math.round(e.getBoundingClientRect().right))"
        )
        assert d.execute_script("return document.documentElement.scrollWidth") <= w + 1, wide  # no sideways scrolling
        drawn = d.execute_script(
            JS_COLOURED + "const m=window.rtccHex.map; return m.queryRenderedFeatures({layers: ['rtcc-hex-fill']})"
            ".filter(f => coloured(m, f)).length"
        )
        assert drawn > 100
        shot(d, f"7_{'phone' if w < 500 else 'tablet'}")
        # The screenshot really shows hexagons (orange pixels) in the map's box.
        from PIL import Image

        im = np.asarray(Image.open(ARTIFACTS / f"map_7_{'phone' if w < 500 else 'tablet'}.png").convert("RGB")).astype(
            int
        )
        r0, c0 = int(box["top"]), int(box["left"])
        sub = im[r0 : r0 + int(box["height"]), c0 : c0 + int(box["width"])]
        orange = sub[..., 0] > sub[..., 2] + 60
        assert orange.mean() > 0.05, orange.mean()
    finally:
        d.set_window_size(1400, 900)
        time.sleep(0.3)
