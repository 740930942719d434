"""The drill-down says why a cell's forecast is what it is (real Chromium, Philadelphia 2024)."""

from __future__ import annotations


import numpy as np
import pytest

from .test_app_common import PASSWORD, philly_app, philly_store  # noqa: F401  (fixtures)
from .browser import ARTIFACTS, served_browser

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(philly_app):  # noqa: F811
    with served_browser(philly_app.server) as (d, url):
        yield d, url


def test_drilldown_explains_the_forecast(browser, philly_app):  # noqa: F811
    import h3
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from rtcc_geo.forecast.explain import TERM_LABELS
    from rtcc_geo.forecast.terms import TERMS
    from tests.browser import JS_MAP_STATE, login, wait_for

    d, url = browser
    ctx = philly_app.rtcc
    login(d, url, "chief", PASSWORD)

    def drawn():
        st = d.execute_script(JS_MAP_STATE)
        return st if st and st["drawn"] > 0 else None

    s = wait_for(drawn, timeout=60, what="map drawn")
    z = np.array([v or 0 for v in s["v"]], dtype=float)
    cell = int(ctx.universe(s["res"])[np.asarray(s["ids"], dtype=np.int64)][int(np.argmax(z))])
    hexid = format(cell, "x")
    lat, lon = h3.api.basic_int.cell_to_latlng(cell)
    d.execute_script(
        "const gd=document.querySelector('#map .js-plotly-plot');"
        "window.Plotly.relayout(gd, {'map.center': {lon: arguments[0], lat: arguments[1]}, 'map.zoom': 14});",
        lon,
        lat,
    )
    wait_for(lambda: abs(d.execute_script(JS_MAP_STATE)["zoom"] - 14) < 0.05, what="zoom to the cell")
    canvas = d.find_element(By.CSS_SELECTOR, "#map canvas.maplibregl-canvas")
    ActionChains(d).move_to_element(canvas).pause(0.3).click().perform()
    wait_for(lambda: d.find_element(By.ID, "drill-cell").text == hexid, timeout=30, what="drill-down of the cell")
    why = wait_for(
        lambda: (d.find_elements(By.ID, "drill-forecast-why") or [None])[0],
        timeout=180,
        what="the forecast explanation",
    ).text
    rows = d.find_elements(By.CSS_SELECTOR, "#drill-forecast-terms tr")
    vals = {r.find_elements(By.TAG_NAME, "td")[0].text: float(r.find_elements(By.TAG_NAME, "td")[1].text) for r in rows}
    terms = {t: vals[TERM_LABELS[t]] for t in TERMS}
    total = vals["forecast, next 7 days"]
    # The page's terms add up to the page's forecast (2-decimal rounding of six numbers).
    assert abs(sum(terms.values()) - total) <= 0.03 and total > 0
    # The words name the largest term first, and quote the cell's year of incidents.
    top = max(terms, key=terms.get)
    assert f"because of {TERM_LABELS[top]}:" in why, why
    assert why.startswith(("high", "elevated", "moderate", "low"))
    d.execute_script("document.getElementById('drill-forecast').scrollIntoView();")
    d.save_screenshot(str(ARTIFACTS / "forecast_drilldown_why.png"))
