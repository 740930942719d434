"""CompStat against an independent reference: pandas on the raw Philadelphia portal
CSVs (their local ``dispatch_date`` and ``dc_dist`` columns, every row, with or
without coordinates) and scipy's exact binomial test; the periods, DST spans,
the exports and the CLI's ``--json`` contract."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from rtcc_geo.compstat import compstat, local_bounds, periods, poisson_change_p
from rtcc_geo.config import DATA_DIR
from rtcc_geo.store.base import Query

CONTRACT = [
    "district",
    "category",
    "period",
    "start",
    "end",
    "count",
    "prior_year",
    "previous_period",
    "change_pct",
    "significant",
]


@pytest.fixture(scope="session")
def phl_store(shared_data):
    from rtcc_geo.datasets import example_store

    return example_store("philadelphia", years=(2023, 2024))


@pytest.fixture(scope="session")
def portal(shared_data):
    """Every row of the 24 portal files: local date, district, category by the taxonomy file."""
    files = sorted((shared_data / "philadelphia").glob("incidents_*.csv"))
    assert len(files) == 24
    raw = pd.concat(
        [
            pd.read_csv(f, dtype=str, keep_default_na=False, usecols=["dispatch_date", "dc_dist", "text_general_code"])
            for f in files
        ],
        ignore_index=True,
    )
    assert len(raw) == 329_405  # README: 329,405 rows in all
    tax = pd.read_csv(DATA_DIR / "taxonomy" / "philadelphia.csv", dtype=str, keep_default_na=False)
    cat = dict(zip(tax["offense"].str.strip(), tax["category"]))
    raw["category"] = raw["text_general_code"].str.strip().map(cat).fillna("other")
    raw["day"] = pd.to_datetime(raw["dispatch_date"]).dt.date
    return raw


def _reference(portal: pd.DataFrame, start: dt.date, end: dt.date) -> dict[tuple[str, str], int]:
    sub = portal[(portal["day"] >= start) & (portal["day"] <= end)]
    out = {(d, c): int(n) for (d, c), n in sub.groupby(["dc_dist", "category"]).size().items()}
    for d, n in sub.groupby("dc_dist").size().items():
        out[(d, "all")] = int(n)
    for c, n in sub.groupby("category").size().items():
        out[("all", c)] = int(n)
    out[("all", "all")] = len(sub)
    return out


def _check_against_portal(rows: pd.DataFrame, portal: pd.DataFrame, end: dt.date) -> None:
    per = periods(end)
    for name, p in per.items():
        sub = rows[rows["period"] == name]
        assert len(sub) and (sub["start"] == p.current.start.isoformat()).all()
        for col, span in (("count", p.current), ("prior_year", p.prior_year), ("previous_period", p.previous)):
            ref = _reference(portal, span.start, span.end)
            got = {(r.district, r.category): int(getattr(r, col)) for r in sub.itertuples(index=False)}
            # every group of the files is in the table, and every table value is the files' count
            assert {k for k, v in ref.items() if v} <= set(got), (name, col)
            bad = {k: (v, ref.get(k, 0)) for k, v in got.items() if v != ref.get(k, 0)}
            assert not bad, f"{name} {col} {span}: (ours, portal) {dict(list(bad.items())[:5])}"


def test_cli_json_equals_portal_counts_and_scipy(phl_store, portal, tmp_path):
    """Acceptance 1: `rtcc-geo compstat --end 2024-12-31 --json` = pandas on the CSVs; flags = scipy."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtcc_geo.cli.main",
            "compstat",
            "--store",
            str(phl_store.root),
            "--end",
            "2024-12-31",
            "--json",
            "--out",
            str(tmp_path / "cs.csv"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["end"] == "2024-12-31"
    rows = pd.DataFrame(out["rows"])
    assert list(rows.columns[:10]) == CONTRACT
    assert set(rows["period"]) == {"week", "28d", "ytd"}
    assert {"all"} < set(rows["district"]) and {"all"} < set(rows["category"])
    # 21 districts + a few stray codes in the files (04, 77), 9 categories, + "all" margins
    assert len(rows) == 3 * rows["district"].nunique() * rows["category"].nunique()
    _check_against_portal(rows, portal, dt.date(2024, 12, 31))
    tot = rows[(rows.district == "all") & (rows.category == "all")].set_index("period")
    assert tot.loc["ytd", "count"] == int((portal["day"] >= dt.date(2024, 1, 1)).sum())  # all of 2024, local
    # the significance flag is scipy's exact test at alpha 0.05, on every row
    days = {"week": 7, "28d": 28, "ytd": 366}
    for x in rows.itertuples(index=False):
        n = x.count + x.prior_year
        p_py = 365 if x.period == "ytd" else days[x.period]  # 2023-01-01..12-31 vs 2024's 366 days
        ref = binomtest(x.count, n, days[x.period] / (days[x.period] + p_py)).pvalue if n else 1.0
        assert x.significant == (ref < 0.05), x
        if x.prior_year:
            assert x.change_pct == pytest.approx(round(100 * (x.count - x.prior_year) / x.prior_year, 1))
        else:
            assert pd.isna(x.change_pct)
    assert all(r["change_pct"] is None for r in out["rows"] if r["prior_year"] == 0)  # JSON null, not NaN
    assert out["alpha"] == 0.05 and "binomial" in out["test"]
    # the CSV export holds the same rows
    csv = pd.read_csv(tmp_path / "cs.csv", dtype={"district": str})
    assert len(csv) == len(rows) and (csv["count"].to_numpy() == rows["count"].to_numpy()).all()


@pytest.mark.parametrize("end", ["2024-03-10", "2024-11-05"])
def test_dst_weeks_equal_portal_counts(phl_store, portal, end):
    """Weeks holding the spring-forward / fall-back day: 167 / 169 local hours, counts exact."""
    cs = compstat(phl_store, Query(source="philadelphia"), end=end)
    _check_against_portal(cs.rows, portal, dt.date.fromisoformat(end))
    wk = cs.spans()["week"]["current"]
    assert wk["hours"] == (167 if end.startswith("2024-03") else 169)
    assert wk["from_local"].endswith("-05:00" if end.startswith("2024-03") else "-04:00")
    assert wk["until_local"].endswith("-04:00" if end.startswith("2024-03") else "-05:00")


def test_periods_and_bounds():
    p = periods(dt.date(2024, 2, 29))
    assert (p["week"].current.start, p["week"].current.end) == (dt.date(2024, 2, 23), dt.date(2024, 2, 29))
    assert p["week"].prior_year.end == dt.date(2023, 2, 28)  # 29 February -> 28 February
    assert p["28d"].current.days == 28 and p["28d"].previous.end == dt.date(2024, 2, 1)
    assert p["ytd"].current.start == dt.date(2024, 1, 1) and p["ytd"].previous.days == 60
    assert [s.start.year for s in p["ytd"].years_back] == [2023, 2022, 2021]
    lo, hi = local_bounds(p["week"].current, "America/New_York")
    assert str(lo) == "2024-02-23 00:00:00-05:00" and str(hi) == "2024-03-01 00:00:00-05:00"


def test_exact_test_against_scipy():
    assert poisson_change_p(1, 2) == 1.0 and poisson_change_p(2, 1) == 1.0  # "+100 %" on 1 -> 2 is chance
    assert poisson_change_p(0, 0) == 1.0
    rng = np.random.default_rng(7)
    for _ in range(200):
        a, b = (int(x) for x in rng.integers(0, 400, 2))
        ta, tb = (float(x) for x in rng.choice([7, 28, 365, 366], 2))
        ref = binomtest(a, a + b, ta / (ta + tb)).pvalue if a + b else 1.0
        mine = poisson_change_p(a, b, ta, tb)
        if ref > 1e-100:
            assert mine == pytest.approx(ref, rel=1e-6)
        else:  # far in the tail both are ~0 (their last digits differ below 1e-100)
            assert mine < 1e-99
    with pytest.raises(ValueError):
        poisson_change_p(-1, 2)


def test_not_geolocated_counted_here_but_not_in_cells(phl_store):
    """The 4 % without a point count in CompStat, never in a cell count."""
    q = Query(source="philadelphia", start="2024-01-01", end="2025-01-01")
    ungeo = phl_store.count(q.with_(geolocated=False))
    assert 0.03 * phl_store.count(q) < ungeo < 0.05 * phl_store.count(q)
    assert phl_store.counts(9, ("cell",), q)["n"].sum() == phl_store.count(q) - ungeo
    cs = compstat(phl_store, Query(source="philadelphia"), end="2024-12-31")
    tot = cs.rows[(cs.rows.district == "all") & (cs.rows.category == "all") & (cs.rows.period == "ytd")]
    assert int(tot["count"].iloc[0]) == phl_store.count(q)


def test_exports_and_errors(phl_store, tmp_path):
    from rtcc_geo.compstat.api import daily_counts

    cs = compstat(phl_store, Query(source="philadelphia", districts=("24",)), end="2024-06-30")
    # the app's path (one daily frame, sliced) gives the same table
    daily = daily_counts(phl_store, "philadelphia")
    for q in (Query(source="philadelphia", districts=("24",)), Query(source="philadelphia", categories=("theft",))):
        pd.testing.assert_frame_equal(
            compstat(phl_store, q, end="2024-06-30", daily=daily).rows, compstat(phl_store, q, end="2024-06-30").rows
        )
    assert set(cs.rows["district"]) == {"all", "24"}
    h = cs.export(tmp_path / "cs.html").read_text()
    assert "Year to date" in h and "2024-01-01" in h and "Beyond chance" in h
    j = json.loads(cs.export(tmp_path / "cs.json").read_text())
    assert j["end"] == "2024-06-30" and len(j["rows"]) == len(cs.rows)
    with pytest.raises(ValueError, match="use a .csv"):
        cs.export(tmp_path / "cs.xlsx")
    with pytest.raises(ValueError, match="nothing to compare"):
        compstat(phl_store, Query(source="philadelphia"), end="2030-06-30")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        compstat(phl_store, Query(source="philadelphia"), end="yesterday")


def test_postgis_gives_the_same_table(pg_url, shared_data, tmp_path):
    """Both stores, same files (June 2023 and June 2024, with their rows without a point):
    the same CompStat rows, and PostGIS keeps not-geolocated rows without geometry."""
    from rtcc_geo.ingest.pipeline import ingest_files
    from rtcc_geo.store.embedded import EmbeddedStore
    from rtcc_geo.store.postgis import PostGISStore

    files = [shared_data / "philadelphia" / f for f in ("incidents_2023_06.csv", "incidents_2024_06.csv")]
    emb, pg = EmbeddedStore(tmp_path / "e"), PostGISStore(pg_url)
    try:
        for s in (emb, pg):
            ingest_files("philadelphia", files, s)
        a = compstat(emb, Query(source="philadelphia"), end="2024-06-27").rows
        b = compstat(pg, Query(source="philadelphia"), end="2024-06-27").rows
        pd.testing.assert_frame_equal(a, b)
        assert a.loc[(a.district == "all") & (a.category == "all") & (a.period == "28d"), "prior_year"].iloc[0] > 0
        ungeo = pg.count(Query(geolocated=False))
        assert ungeo == emb.count(Query(geolocated=False)) > 100
        n = pg.conn.execute("SELECT count(*) FROM incidents WHERE geom IS NULL AND h3_r9 = 0").fetchone()[0]
        assert n == ungeo
    finally:
        pg.close()
