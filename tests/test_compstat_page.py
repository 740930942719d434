"""The CompStat page in real headless Chromium on two years of Philadelphia: the table a
commander reads equals the compstat module's numbers, the district switch works, what
changed names places, the exports come back, and no request leaves the machine."""

from __future__ import annotations

import json

import pytest

from .test_app_common import login_post
from .browser import ARTIFACTS, served_browser

pytestmark = pytest.mark.browser
PASSWORD = "test-password-cs"


@pytest.fixture(scope="module")
def cs_app(shared_data):
    from rtcc_geo.app import create_app
    from rtcc_geo.auth import Users
    from rtcc_geo.datasets import example_store

    store = example_store("philadelphia", years=(2023, 2024))
    Users(store).add("viewer_cs", PASSWORD, "viewer", replace=True)  # the least privileged role sees CompStat
    return create_app(store, source="philadelphia", secret_key="cs-secret", warm=False, live=False)


@pytest.fixture(scope="module")
def browser(cs_app):
    with served_browser(cs_app.server) as (d, url):
        yield d, url


def _row(d, cat: str) -> list[str]:
    from selenium.webdriver.common.by import By

    tr = d.find_element(By.CSS_SELECTOR, f"#cs-compstat-table tr[data-category='{cat}']")
    return [td.text for td in tr.find_elements(By.TAG_NAME, "td")]


def test_compstat_page(browser, cs_app):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from rtcc_geo.compstat import compstat
    from rtcc_geo.store.base import Query
    from tests.browser import login, non_local, requested_urls, wait_for

    d, url = browser
    login(d, url, "viewer_cs", PASSWORD)
    wait_for(lambda: d.find_elements(By.ID, "nav-compstat"), timeout=60, what="nav")
    d.find_element(By.ID, "nav-compstat").click()
    wait_for(
        lambda: d.find_elements(By.CSS_SELECTOR, "#cs-compstat-table tr[data-category='all']"),
        timeout=90,
        what="CompStat table",
    )
    # The page opens on the last day with data (2024-12-31: 'yesterday' is later than the data).
    periods = d.find_element(By.ID, "cs-periods-text").text
    assert "Week: Wed 25 Dec 2024 to Tue 31 Dec 2024" in periods and "Year to date" in periods
    cs = compstat(cs_app.rtcc.store, Query(source="philadelphia"), end="2024-12-31")
    want = cs.rows[(cs.rows.district == "all")].set_index(["category", "period"])
    for cat in ("all", "violent", "theft"):
        cells = _row(d, cat)
        assert cells[1] == f"{want.loc[(cat, 'week'), 'count']:,}"
        assert cells[2] == f"{want.loc[(cat, 'week'), 'prior_year']:,}"
        assert cells[6] == f"{want.loc[(cat, '28d'), 'count']:,}"
        assert cells[11] == f"{want.loc[(cat, 'ytd'), 'count']:,}"
    # significant changes are marked in words/arrows, not colour alone
    sig = d.find_elements(By.CSS_SELECTOR, "#cs-compstat-table .cs-significant")
    assert len(sig) == int(want["significant"].sum()) and all(s.text[0] in "\u25b2\u25bc" for s in sig)
    wait_for(lambda: d.find_elements(By.ID, "cs-changes-list"), timeout=90, what="what changed")
    assert d.find_element(By.ID, "cs-pdf").is_displayed() and "briefing" in d.find_element(By.ID, "cs-pdf").text
    d.save_screenshot(str(ARTIFACTS / "compstat_1_all.png"))

    # District 24, mid-year: the table follows, and what changed names block addresses.
    d.find_element(By.ID, "cs-district").click()
    wait_for(
        lambda: d.find_elements(By.XPATH, "//*[@role='option' and normalize-space()='District 24']"),
        what="district options",
    )[0].click()
    date = d.find_element(By.ID, "cs-end")  # typed dates apply on Enter
    date.send_keys(Keys.CONTROL, "a")
    date.send_keys("2024-06-30", Keys.ENTER)
    d.find_element(By.TAG_NAME, "h3").click()  # close the picker
    wait_for(
        lambda: "Sun 30 Jun 2024" in d.find_element(By.ID, "cs-periods-text").text,
        timeout=120,
        what="period line for 2024-06-30",
    )
    cs24 = compstat(cs_app.rtcc.store, Query(source="philadelphia", districts=("24",)), end="2024-06-30")
    w24 = cs24.rows[cs24.rows.district == "24"].set_index(["category", "period"])
    wait_for(
        lambda: _row(d, "all")[1] == f"{w24.loc[('all', 'week'), 'count']:,}", timeout=60, what="district 24 numbers"
    )
    assert _row(d, "drugs")[11] == f"{w24.loc[('drugs', 'ytd'), 'count']:,}"

    def kensington():
        t = d.find_element(By.ID, "cs-changes-list").text
        return t if "KENSINGTON" in t else None

    changes = wait_for(kensington, timeout=120, what="what changed for district 24")
    assert "rose beyond chance" in changes
    d.save_screenshot(str(ARTIFACTS / "compstat_2_district24.png"))
    urls = requested_urls(d)
    assert any("/_dash-update-component" in u for u in urls)
    assert non_local(urls) == [], non_local(urls)


def test_exports_from_the_page(cs_app):
    """The export callback's files (the same Flask app, logged in): CSV, JSON, HTML."""
    c = cs_app.server.test_client()
    r = login_post(c, "viewer_cs", PASSWORD)
    assert r.status_code in (302, 303)
    body = {
        "output": "..cs-download.data...cs-pdf-status.children..",
        "outputs": [{"id": "cs-download", "property": "data"}, {"id": "cs-pdf-status", "property": "children"}],
        "inputs": [
            {"id": "cs-csv", "property": "n_clicks", "value": None},
            {"id": "cs-json", "property": "n_clicks", "value": 1},
            {"id": "cs-html", "property": "n_clicks", "value": None},
            {"id": "cs-pdf", "property": "n_clicks", "value": None},
        ],
        "state": [
            {"id": "cs-end", "property": "date", "value": "2024-12-31"},
            {"id": "cs-district", "property": "value", "value": "all"},
        ],
        "changedPropIds": ["cs-json.n_clicks"],
    }
    r = c.post("/_dash-update-component", json=body)
    assert r.status_code == 200, r.data[:500]
    data = r.get_json()["response"]["cs-download"]["data"]
    out = json.loads(data["content"])
    assert data["filename"] == "compstat_philadelphia_2024-12-31.json"
    assert out["end"] == "2024-12-31" and len(out["rows"]) > 100
