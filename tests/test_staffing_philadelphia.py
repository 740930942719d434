"""Staffing on real data: Philadelphia 2024 through the embedded store.

* the workload curve equals an independent pandas count from the portal's own
  *local* date/time columns (no time-zone code shared with the store);
* the store's count path equals the incident path (offense overrides +
  the temporal module's aoristic hour of week);
* every shift MILP is optimal by HiGHS status and independently feasible;
* the comparison table in docs/staffing.md is what the code computes now;
* the CLI answers with the documented JSON fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.staffing import erlang, plan
from rtcc_geo.staffing.report import IN_PROGRESS_WEIGHTS, comparison
from rtcc_geo.staffing.shifts import shift_columns
from rtcc_geo.staffing.workload import workload_curve
from rtcc_geo.store.base import Query

pytestmark = pytest.mark.slow  # ingests a year of the real Philadelphia extract

DOC = Path(__file__).resolve().parent.parent / "docs" / "staffing.md"
Q2024 = Query(source="philadelphia", start="2024-01-01", end="2025-01-01")
IN_PROGRESS = {  # Philadelphia offense texts of the in-progress-like workload (violent w/o simple assault)
    "Homicide - Criminal",
    "Rape",
    "Aggravated Assault Firearm",
    "Aggravated Assault No Firearm",
    "Robbery Firearm",
    "Robbery No Firearm",
    "Burglary Residential",
    "Burglary Non-Residential",
}


@pytest.fixture(scope="module")
def phl_files(shared_data):
    files = sorted((shared_data / "philadelphia").glob("incidents_2024_*.csv"))
    assert len(files) == 12
    return files


@pytest.fixture(scope="module")
def store_dir(phl_files, tmp_path_factory):
    from rtcc_geo.ingest.pipeline import ingest_files
    from rtcc_geo.store.embedded import EmbeddedStore

    d = tmp_path_factory.mktemp("staffing_store")
    ingest_files("philadelphia", phl_files, EmbeddedStore(d))
    return d


@pytest.fixture(scope="module")
def store(store_dir):
    from rtcc_geo.store.embedded import EmbeddedStore

    return EmbeddedStore(store_dir)


def test_curve_equals_portal_local_columns(store, phl_files):
    cols = ["dispatch_date", "dispatch_time", "text_general_code", "ucr_general", "point_x", "point_y"]
    raw = pd.concat([pd.read_csv(f, dtype=str, usecols=cols) for f in phl_files], ignore_index=True)
    # every row counts in the workload, with or without a usable point (all have a district:
    # the ones without are loaded not geolocated)
    date_only = raw["ucr_general"].str.startswith("100") & (raw["dispatch_time"] == "00:00:00")
    raw = raw[~date_only & raw["text_general_code"].isin(IN_PROGRESS)]  # hour known, in scope
    local = pd.to_datetime(raw["dispatch_date"] + " " + raw["dispatch_time"])
    how = local.dt.day_of_week * 24 + local.dt.hour
    week = local.dt.normalize() - pd.to_timedelta(local.dt.day_of_week, unit="D")
    sel = (week >= "2024-01-01") & (week <= "2024-12-23")
    m = pd.crosstab(how[sel], week[sel]).reindex(range(168), fill_value=0).to_numpy().T

    c = workload_curve(store, Q2024, IN_PROGRESS_WEIGHTS, seasonal=False)
    assert c.n_weeks == 52 and c.weekly.shape == (52, 168)
    assert np.array_equal(c.weekly, m)
    assert np.allclose(c.expected, m.mean(0)) and np.allclose(c.sd, m.std(0, ddof=1))
    # the busiest hours are evenings, the quietest early mornings (sanity, not the check)
    prof = c.expected.reshape(7, 24).mean(0)
    assert prof.argmin() in range(3, 9) and prof.argmax() in range(12, 24)


def test_count_path_equals_incident_path(store):
    by_counts = workload_curve(store, Q2024, {"violent": 1, "robbery": 1, "burglary": 0.5})
    by_rows = workload_curve(
        store, Q2024, {"violent": 1, "robbery": 1, "burglary": 0.5, "offense": {"Robbery Firearm": 1.0}}
    )
    assert by_counts.weekly_total > 0
    assert np.allclose(by_counts.weekly, by_rows.weekly)
    assert np.allclose(by_counts.expected, by_rows.expected)


def _check_feasible(p, budget):
    for k, o in p.options.items():
        assert o.optimal, (k, o.status)
        assert "Optimal" in o.status
        A, s, L = shift_columns(168, p.params["shift_lengths"])
        x = np.zeros(A.shape[1], int)
        for r in o.shifts.itertuples():
            j = np.flatnonzero((s == r.start) & (L == r.length))
            x[j] += r.count
        on = A @ x
        assert np.array_equal(on, o.on_duty)
        assert o.staff_hours == (x * L).sum()
        lam = p.curve.expected
        # erlang rule: coverage = share of events picked up within the target, by Erlang C directly
        sl = erlang.service_level(on, p.load, p.params["target_seconds"], p.params["handle_minutes"] * 60)
        assert o.coverage == pytest.approx((lam * sl).sum() / lam.sum(), abs=1e-3)
        if k == "24/7":
            assert (on >= 1).all()
        if budget is None:
            if k == "24/7":
                assert (on >= p.required).all()
            else:
                assert o.coverage >= p.params["min_coverage"] - 1e-9
        else:
            assert o.staff_hours <= budget


@pytest.mark.parametrize("operators", [None, 6])
def test_milp_optimal_and_feasible(store, operators):
    p = plan(store, Q2024, operators, weights=IN_PROGRESS_WEIGHTS, part_time=True)
    _check_feasible(p, None if operators is None else operators * 42.0)
    assert 4 in p.params["shift_lengths"]
    # more money never covers less
    if operators is not None:
        assert p.coverage["part-time"] >= p.coverage["24/7"] - 1e-9


def test_doc_table_is_current(store):
    tab = comparison(store, Q2024, (4, 6, 8))
    text = DOC.read_text()
    for r in tab.itertuples(index=False):
        row = (
            f"| {r.operators} | {r.option} | {r.covered_share:.1%} | {r.staff_hours:.0f} | "
            f"{r.downtime_share:.1%} | {r.hours_open} | {r.max_on_duty} |"
        )
        assert row in text, f"docs/staffing.md is out of date: expected the row {row!r}"
        assert r.covered_share == pytest.approx(r.answered_in_target, abs=2e-3)  # erlang rule: the same measure
    assert tab["optimal"].all()


def test_cli_json_and_text(store_dir, capsys):
    from rtcc_geo.cli.main import main

    rc = main(
        [
            "staff",
            "--store",
            str(store_dir),
            "--source",
            "philadelphia",
            "--from",
            "2024-01-01",
            "--to",
            "2025-01-01",
            "--operators",
            "6",
            "--weights",
            str(IN_PROGRESS_WEIGHTS),
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["options"]) == {"24/7", "part-time"}
    assert len(out["curve"]) == 168 and len(out["required"]) == 168
    for o in out["options"].values():
        assert {"coverage", "staff_hours", "downtime_share", "shifts", "optimal"} <= set(o)
        assert o["staff_hours"] <= 6 * 42
    rc = main(
        [
            "staff",
            "--store",
            str(store_dir),
            "--from",
            "2024-01-01",
            "--to",
            "2025-01-01",
            "--service-level",
            "0.8",
            "--answer-within",
            "120",
            "--handle-minutes",
            "15",
            "--shift-lengths",
            "8,12",
            "--starts",
            "6,7,8,14,15,16,22,23",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "24/7" in text and "part-time" in text and "80% within 120 s" in text
    rc = main(["staff", "--store", str(store_dir), "--service-level", "90"])
    assert rc == 2
    assert "share in (0, 1)" in capsys.readouterr().err
