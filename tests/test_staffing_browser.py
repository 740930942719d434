"""The planner page in real headless Chromium on Philadelphia 2024 (a real server).

A planner changes the operators, a weight and part-time staff; each time the
page re-plans and shows the roster, the downtime plan and plain-language
figures, with no solver status code on the main view (only in the closed
details panel). A bad input gets a plain message. Screenshots go to
``test-artifacts/planner_*.png``.
"""

from __future__ import annotations

import re

import pytest

from .test_app_common import PASSWORD, philly_app, philly_store  # noqa: F401  (fixtures)
from .browser import ARTIFACTS, served_browser

pytestmark = pytest.mark.browser
STATUS = re.compile(r"HiGHS|Status \d|Time limit|kOptimal|mip_gap", re.IGNORECASE)


def _when(get, ok):
    """``get()`` if ``ok`` of it, else None (for wait_for)."""
    v = get()
    return v if ok(v) else None


@pytest.fixture(scope="module")
def page(philly_app):  # noqa: F811
    from tests.browser import login, wait_for

    with served_browser(philly_app.server) as (d, url):
        d.set_window_size(1400, 1000)
        login(d, url, "plan", PASSWORD)
        wait_for(lambda: d.find_element("id", "nav-planner"), timeout=60, what="navigation")
        d.get(url + "/planner")
        yield d, url


def _main_text(d) -> str:
    """What the page shows outside the (closed) details panel."""
    return d.execute_script("""
        let t = document.getElementById('p-summary').parentElement.innerText;
        const det = document.getElementById('p-details');
        return det ? t.replace(det.innerText, '') : t;""")


def _wait_change(d, old: str, what: str) -> str:
    from tests.browser import wait_for

    return wait_for(
        lambda: _when(
            lambda: d.find_element("id", "p-summary-text").text,
            lambda t: t and t != old and not t.startswith("No plan"),
        ),
        timeout=90,
        what=what,
    )


def _set(d, el, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(value, Keys.ENTER)


def _check_plain(d, operators: int) -> None:
    from tests.browser import wait_for

    try:
        text = wait_for(
            lambda: _when(lambda: _main_text(d), lambda t: f"{operators} full-time" in t and "Downtime plan" in t),
            timeout=60,
            what="result blocks",
        )
    except TimeoutError:
        d.save_screenshot(str(ARTIFACTS / "planner_failed.png"))
        raise AssertionError(_main_text(d)[:2000]) from None
    assert not STATUS.search(text), STATUS.search(text).group(0)
    # every figure carries its meaning
    assert re.search(r"cover \d+ %: \d+ of 100 RTCC events are picked up within 60 s", text)
    assert "at once" in text and "do not contradict" in text
    assert "downtime per person a week" in text
    # the roster: named patterns and one line per operator with days off
    title = d.find_element("id", "p-roster-title-247").text
    assert re.match(r"(Day|Evening|Night) \d\d-\d\d( \(part-time\))? ×\d", title), title
    rows = d.find_elements("css selector", "#p-roster table tbody tr")
    assert len(rows) >= operators * 0.8
    assert "off" in d.find_element("id", "p-roster").text
    href = d.find_element("id", "p-roster-csv-247").get_attribute("href")
    assert href.startswith("data:text/csv") and "operator%2Ckind%2Cpattern" in href and "downtime_hours" in href
    # the downtime plan is exported too: the agency's tasks with their hours
    dt = d.find_element("id", "p-downtime-csv-247").get_attribute("href")
    assert "case%20support" in dt and "hours_per_week" in dt
    # solver internals only behind the details panel, which is closed
    det = d.find_element("id", "p-details")
    assert det.get_attribute("open") is None
    assert "Solver details" in det.text


def test_planner_changes_operators_weights_part_time(page):
    from selenium.webdriver.common.by import By

    from tests.browser import wait_for

    d, _ = page
    text0 = wait_for(
        lambda: _when(lambda: d.find_element(By.ID, "p-summary-text").text, lambda t: t.startswith("Result for")),
        timeout=120,
        what="first plan",
    )
    _check_plain(d, 12)
    d.save_screenshot(str(ARTIFACTS / "planner_1_default.png"))

    # operators 12 -> 16
    _set(d, d.find_element(By.ID, "p-operators"), "16")
    text1 = _wait_change(d, text0, "re-plan with 16 operators")
    assert "16 operators" in text1
    _check_plain(d, 16)

    # what counts as an event: vehicle theft now weighs 1 (was 0.25): more events a week
    ev0 = d.find_element(By.ID, "p-card-events").text
    w = d.find_element(By.CSS_SELECTOR, "#p-w-vehicle")
    _set(d, w, "1")
    text2 = _wait_change(d, text1, "re-plan with new weights")
    assert "vehicle 1" in text2
    ev1 = wait_for(
        lambda: _when(lambda: d.find_element(By.ID, "p-card-events").text, lambda t: t != ev0), what="events card"
    )
    n0, n1 = (float(re.search(r"([\d,]+)\n", t).group(1).replace(",", "")) for t in (ev0, ev1))
    assert n1 > n0
    _check_plain(d, 16)

    # part-time staff on: part-time lines appear in a roster
    d.find_element(By.CSS_SELECTOR, "#p-parttime input").click()
    text3 = _wait_change(d, text2, "re-plan with part-time staff")
    assert "part-time staff on" in text3
    _check_plain(d, 16)
    assert "part-time" in d.find_element(By.ID, "p-compare").text
    d.save_screenshot(str(ARTIFACTS / "planner_2_parttime.png"))
    d.execute_script("document.getElementById('p-roster').scrollIntoView()")
    d.save_screenshot(str(ARTIFACTS / "planner_3_roster.png"))
    d.execute_script("document.getElementById('p-downtime').scrollIntoView()")
    d.save_screenshot(str(ARTIFACTS / "planner_4_downtime.png"))

    # the details panel, opened, holds the solver's status
    d.execute_script(
        "document.getElementById('p-details').open = true;document.getElementById('p-details').scrollIntoView()"
    )
    assert STATUS.search(d.find_element(By.ID, "p-details").text)
    d.save_screenshot(str(ARTIFACTS / "planner_5_details.png"))

    # a bad input: a plain message, no plan
    _set(d, d.find_element(By.ID, "p-sl"), "120")
    msg = wait_for(lambda: d.find_element(By.ID, "p-error-text").text, what="validation message")
    assert re.search(r"Service level: .*50.*99 %", msg), msg  # the browser blanks an out-of-range number
    _set(d, d.find_element(By.ID, "p-sl"), "90")
    wait_for(lambda: d.find_element(By.ID, "p-summary-text").text.startswith("Result for"), what="plan again")


def test_planner_large_event(page):
    from selenium.webdriver.common.by import By

    from tests.browser import wait_for

    d, _ = page
    wait_for(lambda: d.find_element(By.ID, "p-summary-text").text.startswith("Result for"), timeout=90, what="plan")
    d.find_element(By.CSS_SELECTOR, "#p-ev-venue input[value='Citizens Bank Park']").click()
    _set(d, d.find_element(By.ID, "p-ev-start"), "2025-09-14 13:00")
    _set(d, d.find_element(By.ID, "p-ev-crowd"), "45000")
    head = wait_for(
        lambda: _when(
            lambda: d.find_element(By.CSS_SELECTOR, "#p-event h3").text, lambda t: t.startswith("Event: add")
        ),
        timeout=90,
        what="event result",
    )
    assert re.match(r"Event: add \d+ operators? for those hours", head)
    body = d.find_element(By.ID, "p-event").text
    assert "Citizens Bank Park" in body and "45,000 people" in body and "Ordinary load" in body
    assert "Citizens Bank Park" in d.find_element(By.ID, "p-summary-text").text
    d.execute_script("document.getElementById('p-event').scrollIntoView()")
    d.save_screenshot(str(ARTIFACTS / "planner_6_event.png"))
