"""The commander app in real headless Chromium on Philadelphia 2024 (one browser session).

Log in, draw the map (and prove no request leaves the machine), change the
category filter and see the hexagons recolour with the right counts (zoom
kept), click a hexagon and see its profile, open the planner and change the
operator count. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from .test_app_common import PASSWORD, philly_app, philly_store  # noqa: F401  (fixtures)
from .browser import ARTIFACTS, served_browser

pytestmark = pytest.mark.browser


def _cells(ctx, s) -> np.ndarray:
    """The H3 cells the browser colours (positions in the app's universe -> ids)."""
    return ctx.universe(s["res"])[np.asarray(s["ids"], dtype=np.int64)]


@pytest.fixture(scope="module")
def browser(philly_app):
    with served_browser(philly_app.server) as (d, url):
        yield d, url


def shot(d, name: str) -> None:
    d.save_screenshot(str(ARTIFACTS / f"app_{name}.png"))


def map_state(d, pred=lambda s: True, timeout=60.0, what="map drawn"):
    from tests.browser import JS_MAP_STATE, wait_for

    def ok():
        s = d.execute_script(JS_MAP_STATE)
        return s if s and s["drawn"] > 0 and pred(s) else None

    return wait_for(ok, timeout=timeout, what=what)


#: Every rendered hexagon: its id and the fill colour MapLibre evaluates for it (premultiplied
#: rgba in 0..1, from the layer's baked colours or a recolour's feature state).
JS_RENDERED_COLOURS = """
const m = window.rtccHex.map, p = m.getLayer('rtcc-hex-fill').paint.get('fill-color');
return m.queryRenderedFeatures({layers: ['rtcc-hex-fill']}).map(f => {
  const c = p.evaluate({type: 3, id: f.id, properties: f.properties}, f.state || {});
  return [f.id, c.r, c.g, c.b, c.a]; });
"""


def assert_rendered_colours(d, s) -> int:
    """The colour of every rendered hexagon is its value's palette colour (with the map's
    opacity), transparent for a cell without a value; returns how many are coloured."""
    from rtcc_geo.app.figures import HEX_OPACITY, HEX_PALETTE, _rgba

    assert s["palette"] == HEX_PALETTE
    pal = np.array([_rgba(c) for c in HEX_PALETTE])
    want = {i: pal[k] for i, k in zip(s["ids"], s["k"])}
    coloured = 0
    for fid, r, g, b, a in d.execute_script(JS_RENDERED_COLOURS):
        w = want.get(int(fid))
        if w is None:
            assert a == 0, (fid, r, g, b, a)
            continue
        wa = w[3] * HEX_OPACITY
        assert abs(a - wa) < 0.01 and np.allclose([r, g, b], w[:3] / 255 * wa, atol=0.01), (fid, [r, g, b, a], w)
        coloured += 1
    return coloured


def test_map_renders_without_any_remote_request(browser, philly_app):
    """Every request from the log-in page to the drawn map stays on 127.0.0.1."""
    from tests.browser import login, non_local, requested_urls

    d, url = browser
    requested_urls(d)  # drain whatever the empty browser did before
    # The trap proxy does catch off-machine requests, from the page and from a web
    # worker alike (so an empty list below means something). The app's CSP would refuse
    # both before they reach the network, so the control runs with CSP bypassed.
    d.execute_cdp_cmd("Page.setBypassCSP", {"enabled": True})
    d.get(url + "/login")
    d.execute_script(
        "fetch('http://offsite-check.invalid/page').catch(() => 0);"
        "new Worker(URL.createObjectURL(new Blob(["
        "\"fetch('http://offsite-check.invalid/worker').catch(() => 0)\"])));"
    )
    from tests.browser import wait_for

    wait_for(
        lambda: {"http://offsite-check.invalid/page", "http://offsite-check.invalid/worker"} <= set(d.offsite),
        timeout=20,
        what="the trap proxy to see the control requests",
    )
    d.execute_cdp_cmd("Page.setBypassCSP", {"enabled": False})
    d.offsite.clear()
    requested_urls(d)
    served = len(d.served)
    login(d, url, "chief", PASSWORD)
    s = map_state(d)
    time.sleep(0.5)  # let late requests (workers, fonts, tiles) show up
    urls = requested_urls(d)
    # The log does see the page's own traffic (so an empty 'non_local' means something).
    assert any("/_dash-update-component" in u for u in urls)
    assert any("plotly.min.js" in u for u in urls)
    assert non_local(urls) == [], non_local(urls)
    # The hexagon tiles come from a MapLibre worker: the server saw them, the trap nothing.
    assert any(p.startswith("/geo/tiles/9/") for p in d.served[served:])
    assert d.offsite == [], d.offsite
    assert s["drawn"] > 1000 and len(s["v"]) == len(s["ids"]) > 2000
    shot(d, "1_map")


def test_commander_flow(browser, philly_app):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from tests.browser import login, wait_for

    d, url = browser
    ctx = philly_app.rtcc
    store = ctx.store
    from tests.browser import JS_MAP_STATE

    if "/login" in d.current_url or not d.execute_script(JS_MAP_STATE):
        login(d, url, "chief", PASSWORD)
    before = map_state(d)
    f = ctx.default_filters()
    q = f.query("philadelphia", ctx.categories)
    assert sum(v or 0 for v in before["v"]) == store.count(q.with_(geolocated=True))  # the map: located ones
    # Each drawn cell has its own count (an independent tally from the store).
    want0 = store.counts(9, ("cell",), q).set_index("cell")["n"]
    got0 = pd.Series(before["v"], index=_cells(ctx, before))
    assert (got0.reindex(want0.index) == want0).all() and len(got0) == len(want0)
    # And each rendered hexagon is drawn in its value's colour (the layer's baked colours).
    assert assert_rendered_colours(d, before) > 1000

    # Zoom in (as a user would); the zoom must survive the filter change.
    d.execute_script(
        "const gd=document.querySelector('#map .js-plotly-plot');"
        "window.Plotly.relayout(gd, {'map.zoom': gd._fullLayout.map.zoom + 0.6});"
    )
    zoomed = map_state(d, lambda s: abs(s["zoom"] - (before["zoom"] + 0.6)) < 0.05, what="zoom")

    # Untick 'theft': the hexagons recolour to the counts without theft.
    d.find_element(By.CSS_SELECTOR, "#f-cats input[value='theft']").click()
    want = store.count(q.with_(categories=tuple(c for c in ctx.categories if c != "theft"), geolocated=True))
    after = map_state(d, lambda s: sum(v or 0 for v in s["v"]) == want, what="recolour without theft")
    assert after["v"] != before["v"] and after["painted"] > before["painted"]
    assert after["tiles"] == before["tiles"]  # same geometry, only the colours moved
    # Recoloured: baked colours where unchanged, feature state where not, transparent where
    # a cell lost every incident.
    assert assert_rendered_colours(d, after) > 1000
    assert abs(after["zoom"] - zoomed["zoom"]) < 0.05, "zoom was reset by the filter change"
    wait_for(
        lambda: (
            "theft" not in d.find_element(By.ID, "summary-text").text
            or "violent" in d.find_element(By.ID, "summary-text").text
        ),
        what="summary",
    )
    shot(d, "2_recoloured")

    # Click the busiest hexagon (centred and zoomed in so it is many pixels wide):
    # its drill-down shows the hour-of-week profile.
    import h3

    z = np.array([v or 0 for v in after["v"]], dtype=float)
    hexid = format(int(_cells(ctx, after)[int(np.argmax(z))]), "x")
    lat, lon = h3.api.basic_int.cell_to_latlng(int(hexid, 16))
    d.execute_script(
        "const gd=document.querySelector('#map .js-plotly-plot');"
        "window.Plotly.relayout(gd, {'map.center': {lon: arguments[0], lat: arguments[1]}, 'map.zoom': 14});",
        lon,
        lat,
    )
    map_state(d, lambda s: abs(s["zoom"] - 14) < 0.05, what="zoom to the cell")
    canvas = d.find_element(By.CSS_SELECTOR, "#map canvas.maplibregl-canvas")
    ActionChains(d).move_to_element(canvas).pause(0.3).click().perform()
    wait_for(
        lambda: d.find_element(By.ID, "drill-cell").text == hexid, timeout=30, what="drill-down of the clicked cell"
    )
    prof = wait_for(
        lambda: d.execute_script(
            "const g=document.querySelector('#drill-profile .js-plotly-plot'); return g && g.data && g.data[0] && g.data[0].z"
        ),
        what="profile",
    )
    cell = int(hexid, 16)
    qc = q.with_(categories=tuple(c for c in ctx.categories if c != "theft"), cells=(cell,), cells_res=9)
    want_how = store.counts(9, ("hour_of_week",), qc)
    assert np.array(prof).sum() == want_how["n"].sum() > 0
    # The commander sees the recent-incident table.
    assert d.find_elements(By.CSS_SELECTOR, "#drill-incidents table")
    shot(d, "3_drilldown")

    # PNG of the view (the page's button; plotly's own export would drop the hexagons):
    # the image holds the coloured hexagons under the pointer's cell.
    import base64
    import io

    from PIL import Image

    assert d.find_element(By.ID, "btn-png").is_displayed()
    png = d.execute_script("return window.rtccHex.png()")
    assert png.startswith("data:image/png;base64,")
    im = np.asarray(Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1]))).convert("RGB")).astype(int)
    (ARTIFACTS / "app_3b_export.png").write_bytes(base64.b64decode(png.split(",", 1)[1]))
    h, w, _ = im.shape
    centre = im[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20]
    bg = np.array([0xEE, 0xF0, 0xF2])
    # The busiest cell is at the centre: the brown top of the scale (drawn lighter at street
    # zoom so the streets show through), not background.
    assert np.abs(centre - bg).sum(axis=2).mean() > 100
    assert (centre[..., 0] > centre[..., 2] + 40).mean() > 0.5

    # Planner page: change the operator count and the plan is re-run.
    d.find_element(By.ID, "nav-planner").click()
    text0 = wait_for(lambda: d.find_element(By.ID, "p-summary-text").text, timeout=90, what="planner summary")
    curve = wait_for(
        lambda: d.execute_script(
            "const g=document.querySelector('#p-curve .js-plotly-plot'); return g && g.data && g.data.length && g.data"
        ),
        what="planner curve",
    )
    assert len(curve[0]["y"]) == 168
    shot(d, "4_planner")
    box = d.find_element(By.ID, "p-operators")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("20", Keys.ENTER)
    text1 = wait_for(
        lambda: (lambda t: t if t != text0 else None)(d.find_element(By.ID, "p-summary-text").text),
        timeout=90,
        what="re-planned summary",
    )
    assert "20 operators" in text1
    shot(d, "5_planner_20")
    # Nothing in the whole flow (filters, drill-down, planner) went off the machine either.
    from tests.browser import non_local, requested_urls

    urls = requested_urls(d)
    assert any("/_dash-update-component" in u for u in urls)
    assert non_local(urls) == [], non_local(urls)
    assert d.offsite == [], d.offsite


def test_empty_cells_drawn_apart_from_one_incident(browser, philly_app):
    """With "draw empty cells", a cell with 0 incidents is drawn in its own colour: not that
    of a cell with 1 (the ramp's lightest), and neither is the background's. Colours as
    MapLibre evaluates them for rendered hexagons, then as painted (screenshot pixels)."""
    from selenium.webdriver.common.by import By

    from rtcc_geo.app.figures import EMPTY_COLOUR, HEX_OPACITY, _rgba
    from rtcc_geo.app.layers import MAP_BACKGROUND
    from tests.browser import login, wait_for

    from .test_app_map import delta_e

    d, url = browser
    if "/login" in d.current_url or not d.execute_script("return !!window.rtccHex"):
        login(d, url, "chief", PASSWORD)
    # The city view (no streets over the cells, full fill opacity: pixels are exact).
    d.get(url + "/?res=10&empty=1")
    s = map_state(d, lambda s: s["res"] == 10, timeout=180, what="res 10 with empty cells")
    assert len(s["ids"]) == len(philly_app.rtcc.universe(10))  # every cell drawn
    v = {i: x for i, x in zip(s["ids"], s["v"])}
    assert assert_rendered_colours(d, s) > 100
    bg = _rgba(MAP_BACKGROUND)[:3]

    def painted(rgba) -> str:  # premultiplied colour over the background, as the map shows it
        r, g, b, a = rgba
        c = np.array([r, g, b]) * 255 + bg * (1 - a)
        return "#" + "".join(f"{int(round(x)):02x}" for x in c)

    seen: dict[float, str] = {}
    for fid, r, g, b, a in d.execute_script(JS_RENDERED_COLOURS):
        if v.get(int(fid)) in (0, 1):
            seen.setdefault(v[int(fid)], painted((r, g, b, a)))
    assert set(seen) == {0, 1}, seen
    zero, one = seen[0], seen[1]
    want0 = _rgba(EMPTY_COLOUR)[:3] * HEX_OPACITY + bg * (1 - HEX_OPACITY)
    assert np.allclose(_rgba(zero)[:3], want0, atol=3), (zero, want0)
    assert delta_e(zero, one) > 40 and delta_e(zero, MAP_BACKGROUND) > 15 and delta_e(one, MAP_BACKGROUND) > 20
    # The legend names the class.
    legend = wait_for(lambda: d.find_element(By.ID, "legend").text, what="legend")
    assert "0 (no incidents)" in legend, legend
    shot(d, "0_empty_cells")
    # The screenshot's pixels: the empty grey is on the map, distinct from the background.
    import io

    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(d.get_screenshot_as_png())).convert("RGB")).astype(int)
    near = np.abs(im - np.round(want0)).sum(axis=2) <= 6
    assert near.mean() > 0.02, near.mean()
    # For a person to look at: closer in, streets over the cells.
    d.get(url + "/?res=10&empty=1&cam=13.00,39.95240,-75.16360")
    map_state(d, lambda s: abs(s["zoom"] - 13) < 0.05, timeout=180, what="zoom 13")
    time.sleep(0.5)
    shot(d, "0_empty_cells_z13")
