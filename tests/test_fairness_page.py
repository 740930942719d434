"""The fairness page in real headless Chromium on two years of Philadelphia: a planner opens
it, the week's default plans are audited, and what the page shows (summary, warnings, the
district and tract tables, the day-to-day overlap) equals :func:`rtcc_geo.fairness.audit_week`
for the same inputs; a viewer is refused; no request leaves the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import missing

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PASSWORD = "test-password-fa"


@pytest.fixture(scope="module")
def fa_app(shared_data):
    from rtcc_geo.app import create_app
    from rtcc_geo.auth import Users
    from rtcc_geo.datasets import example_store

    store = example_store("philadelphia", years=(2023, 2024))
    Users(store).add("planner_fa", PASSWORD, "planner", replace=True)
    Users(store).add("viewer_fa", PASSWORD, "viewer", replace=True)
    return create_app(store, source="philadelphia", secret_key="fa-secret", warm=False, live=False)


@pytest.fixture(scope="module")
def browser(fa_app):
    from tests.browser import LiveServer, chromium, find_browser

    chrome, driver = find_browser()
    if not chrome or not driver:
        missing("headless Chromium", "install Debian 'chromium' and 'chromium-driver'")
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(fa_app.server) as url, chromium(chrome, driver) as d:
        yield d, url


def _rows(d, table_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in d.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    ]


def test_fairness_page_shows_the_week_audit(browser, fa_app):
    from selenium.webdriver.common.by import By

    from rtcc_geo.app.pages.fairness import default_week, result_for
    from tests.browser import login, non_local, requested_urls, wait_for

    d, url = browser
    ctx = fa_app.rtcc
    login(d, url, "planner_fa", PASSWORD)
    wait_for(lambda: d.find_elements(By.ID, "nav-fairness"), timeout=60, what="nav link")
    d.find_element(By.ID, "nav-fairness").click()
    wait_for(
        lambda: d.find_elements(By.ID, "fa-report") or d.find_elements(By.ID, "fa-error"), timeout=400, what="the audit"
    )
    assert not d.find_elements(By.ID, "fa-error"), d.find_element(By.ID, "fa-error").text
    # The page opens on the last full week of data (the data ends on Tue 31 Dec 2024).
    week = default_week(ctx)
    assert week.isoformat() == "2024-12-23"
    wa = result_for(ctx, week.isoformat(), 8, 3.0, False, False)  # the page's own inputs: cached, same object
    a = wa.audit
    summary = d.find_element(By.ID, "fa-summary").text
    assert "Mon 23 Dec to Sun 29 Dec 2024" in summary and f"{a.summary['minutes']:,.0f} patrol minutes" in summary
    assert f"{a.summary['median_per_1000']:.1f} min per 1,000 residents" in summary
    warn = d.find_element(By.ID, "fa-warnings").text
    if a.warnings:
        assert f"{len(a.warnings)} tract(s) above the limit" in warn and a.warnings[0] in warn
    else:
        assert "No tract above the limit" in warn
    # District table: every dosed district with its minutes, in the same order as the audit (most dosed first).
    dist = _rows(d, "fa-district-table")
    bd = a.by_district.sort_values("per_1000", ascending=False)
    assert [r[1] for r in dist] == [f"{m:,.0f}" for m in bd["minutes"]]
    assert sum(float(r[1].replace(",", "")) for r in dist) == pytest.approx(
        a.summary["minutes"] - a.summary["minutes_outside_tracts"], abs=len(dist)
    )
    # Tract table: the 15 most-dosed tracts, "(over)" exactly where the audit flags one.
    tr = _rows(d, "fa-tract-table")
    top = a.by_tract.head(15)
    assert [r[0] for r in tr] == top["tract"].tolist()
    assert [r[4].endswith("(over)") for r in tr] == top["over_limit"].tolist()
    # Victim-reported vs enforcement-driven, and the day-to-day overlap (6 pairs of consecutive days).
    rep = _rows(d, "fa-reporting-table")
    assert [r[0] for r in rep] == ["city", "patrolled cells"]
    assert rep[0][1] == f"{int(a.reporting.iloc[0]['incidents']):,}"
    assert len(_rows(d, "fa-concentration-table")) == 6
    d.save_screenshot(str(ARTIFACTS / "fairness_1_planner.png"))
    assert non_local(requested_urls(d)) == []


def test_fairness_page_refuses_a_viewer(fa_app):
    from .test_app_common import login_post

    c = fa_app.server.test_client()
    assert login_post(c, "viewer_fa", PASSWORD).status_code in (302, 303)
    from rtcc_geo.app.pages import fairness

    class _Ctx:  # the layout refuses before it touches the context
        pass

    with fa_app.server.test_request_context():
        div = fairness.layout(_Ctx(), "viewer")  # type: ignore[arg-type]
    assert div.id == "forbidden" and "not open to the viewer role" in div.children
