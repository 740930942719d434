"""Benchmark: the CompStat page on two years of Philadelphia (2023-2024, 329,405 incidents).

    .venv/bin/python bench/compstat.py [--store DIR] [--repeat 5]

Data: ``--store`` (an embedded store), default the cached example store
(:func:`rtcc_geo.datasets.example_store`, built from ../shared/data once).

Measured, in the same run:

1. **page callback, server time**: POST /_dash-update-component of the CompStat
   table (the page's main callback) through the real Flask app, logged in, with a
   different end date each time (so no cache hit): median and max. Goal < 1 s.
2. **compstat() alone** (the module the page and ``rtcc-geo compstat`` call): median.
3. **pandas references** for the same table: (a) materialising the incidents
   (``store.incidents``) and grouping them with pandas, what the module would do
   without ``Store.counts``; (b) pandas on the portal CSVs themselves (read
   included). Both checked equal to the module's counts on the run's last end date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd

from rtcc_geo.compstat import compstat, periods
from rtcc_geo.config import DATA_DIR, shared_data_dir
from rtcc_geo.store.base import Query

PASSWORD = "bench-password-cs"


def _callback_body(end: str) -> dict:
    return {
        "output": "..cs-table.children...cs-periods.children..",
        "outputs": [{"id": "cs-table", "property": "children"}, {"id": "cs-periods", "property": "children"}],
        "inputs": [
            {"id": "cs-end", "property": "date", "value": end},
            {"id": "cs-district", "property": "value", "value": "all"},
        ],
        "changedPropIds": ["cs-end.date"],
    }


def _pandas_table(df: pd.DataFrame, end: dt.date, day_col: str) -> dict:
    """{(period, span, district, category): count} with pandas, margins included."""
    out = {}
    for name, p in periods(end).items():
        for span_name, s in (("count", p.current), ("prior_year", p.prior_year), ("previous", p.previous)):
            sub = df[(df[day_col] >= s.start) & (df[day_col] <= s.end)]
            g = sub.groupby(["district", "category"]).size()
            for (d, c), n in g.items():
                out[(name, span_name, d, c)] = int(n)
            for d, n in sub.groupby("district").size().items():
                out[(name, span_name, d, "all")] = int(n)
            for c, n in sub.groupby("category").size().items():
                out[(name, span_name, "all", c)] = int(n)
            out[(name, span_name, "all", "all")] = len(sub)
    return out


def _module_table(cs) -> dict:
    out = {}
    for r in cs.rows.itertuples(index=False):
        for span_name, v in (("count", r.count), ("prior_year", r.prior_year), ("previous", r.previous_period)):
            if v:
                out[(r.period, span_name, r.district, r.category)] = int(v)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=None, help="embedded store with Philadelphia 2023-2024")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    from rtcc_geo.app import create_app
    from rtcc_geo.auth import Users
    from rtcc_geo.datasets import example_store
    from rtcc_geo.store import open_store

    store = open_store(store_dir=args.store) if args.store else example_store("philadelphia", (2023, 2024))
    n = store.count(Query(source="philadelphia"))
    Users(store).add("bench_cs", PASSWORD, "viewer", replace=True)
    app = create_app(store, source="philadelphia", secret_key="bench", warm=False, live=False)
    client = app.server.test_client()
    client.post("/login", data={"username": "bench_cs", "password": PASSWORD})
    ends = [(dt.date(2024, 12, 31) - dt.timedelta(days=7 * i)).isoformat() for i in range(args.repeat + 1)]
    client.post("/_dash-update-component", json=_callback_body(ends[-1]))  # imports, agency files: warm-up
    page = []
    for e in ends[:-1]:
        t0 = time.perf_counter()
        r = client.post("/_dash-update-component", json=_callback_body(e))
        page.append(time.perf_counter() - t0)
        assert r.status_code == 200 and "cs-compstat-table" in r.get_data(as_text=True), r.status_code
    mod = []
    for e in ends[:-1]:
        t0 = time.perf_counter()
        compstat(store, Query(source="philadelphia"), end=e)
        mod.append(time.perf_counter() - t0)
    end = dt.date.fromisoformat(ends[0])
    ours = _module_table(compstat(store, Query(source="philadelphia"), end=end))

    # (a) materialise the rows, group with pandas
    t0 = time.perf_counter()
    inc = store.incidents(
        Query(source="philadelphia", start="2021-01-01", end=str(end + dt.timedelta(days=1))),
        columns=["occurred_from", "category", "district"],
    )
    inc["day"] = inc["occurred_from"].dt.tz_convert("America/New_York").dt.date
    ref_a = _pandas_table(inc, end, "day")
    t_a = time.perf_counter() - t0
    # (b) pandas on the portal CSVs (the files' local dispatch_date)
    t0 = time.perf_counter()
    files = sorted((shared_data_dir() / "philadelphia").glob("incidents_*.csv"))
    raw = pd.concat(
        [
            pd.read_csv(f, dtype=str, keep_default_na=False, usecols=["dispatch_date", "dc_dist", "text_general_code"])
            for f in files
        ]
    )
    tax = pd.read_csv(DATA_DIR / "taxonomy" / "philadelphia.csv", dtype=str, keep_default_na=False)
    raw["category"] = (
        raw["text_general_code"].str.strip().map(dict(zip(tax["offense"], tax["category"]))).fillna("other")
    )
    raw["district"] = raw["dc_dist"]
    raw["day"] = pd.to_datetime(raw["dispatch_date"]).dt.date
    ref_b = _pandas_table(raw, end, "day")
    t_b = time.perf_counter() - t0
    assert ours == {k: v for k, v in ref_a.items() if v} == {k: v for k, v in ref_b.items() if v}, "counts differ"

    import os

    out = {
        "incidents": n,
        "repeat": args.repeat,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "page_callback_s": {
            "median": round(statistics.median(page), 3),
            "max": round(max(page), 3),
            "goal": 1.0,
            "ok": statistics.median(page) < 1.0,
        },
        "compstat_module_s": round(statistics.median(mod), 3),
        "pandas_materialised_s": round(t_a, 3),
        "pandas_portal_csv_s": round(t_b, 3),
        "ratio_materialised_over_module": round(t_a / statistics.median(mod), 2),
        "counts_equal": True,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
