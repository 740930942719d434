"""Forecast models and the backtest harness, on hand-made counts and real Philadelphia data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.forecast.backtest import backtest, default_models, parse_horizon
from rtcc_geo.forecast.data import Counts, select_target
from rtcc_geo.forecast.io import counts_from_store
from rtcc_geo.forecast.kde import STKDE
from rtcc_geo.forecast.learned import LearnedPoisson
from rtcc_geo.forecast.naive import NaiveHotspot
from rtcc_geo.forecast.prospective import ProspectiveHotspot
from rtcc_geo.forecast.sepp import SEPP
from rtcc_geo.store.base import Query


def _line_cells(n: int) -> np.ndarray:
    import h3

    c0 = h3.api.basic_int.latlng_to_cell(39.95, -75.16, 10)
    return np.array(sorted(h3.api.basic_int.grid_disk(c0, 3)), dtype=np.int64)[:n]


def test_naive_by_hand_and_week_scaling():
    cells = _line_cells(5)
    X = np.zeros((5, 40))
    X[0, 30:40] = 1  # cell 0: one a day over the last 10 days
    X[1, [5, 39]] = [3, 2]  # cell 1: only the last day is within 28 days
    c = Counts.from_daily(cells, X)
    m = NaiveHotspot(days=28).fit(c, until=c.day_start(40))
    p = m.predict(cells, c.day_start(40), c.day_start(47))
    assert p.loc[cells[0]] == pytest.approx(10 / 28 * 7)
    assert p.loc[cells[1]] == pytest.approx(2 / 28 * 7)
    assert p.loc[cells[2:]].sum() == 0
    # unknown cells get 0; order follows the request
    q = m.predict([cells[1], 12345], c.day_start(40), c.day_start(47))
    assert list(q.index) == [cells[1], 12345] and q.iloc[1] == 0


def test_shift_forecasts_add_up_to_the_week():
    cells = _line_cells(7)
    rng = np.random.default_rng(0)
    X = rng.poisson(0.5, (7, 60))
    c = Counts.from_daily(cells, X)
    m = STKDE().fit(c, until=c.day_start(60))
    week = m.predict(None, c.day_start(60), c.day_start(67))
    t = c.day_start(60)
    shifts = sum(m.predict(None, t + pd.Timedelta(hours=8 * i), t + pd.Timedelta(hours=8 * (i + 1))) for i in range(21))
    np.testing.assert_allclose(shifts.to_numpy(), week.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize(
    "model",
    [
        NaiveHotspot(),
        ProspectiveHotspot(),
        STKDE(),
        SEPP(),
        LearnedPoisson(horizon_days=7, n_origins=2, max_iter=10, min_history_days=14),
        LearnedPoisson(horizon_days=7, n_origins=2, estimator="glm", min_history_days=14),
    ],
    ids=lambda m: m.name,
)
def test_models_see_only_the_past(model):
    cells = _line_cells(30)
    rng = np.random.default_rng(1)
    X = rng.poisson(0.3, (30, 80)).astype(float)
    c1 = Counts.from_daily(cells, X)
    X2 = X.copy()
    X2[:, 60:] = rng.poisson(3.0, (30, 20))  # a different future
    c2 = Counts.from_daily(cells, X2)
    until = c1.day_start(60)
    p1 = model.fit(c1, until=until).predict(None, until, until + pd.Timedelta(days=7))
    import copy

    fresh = copy.deepcopy(model)
    for k in [k for k in vars(fresh) if k.endswith("_")]:
        delattr(fresh, k)
    p2 = fresh.fit(c2, until=until).predict(None, until, until + pd.Timedelta(days=7))
    np.testing.assert_allclose(p1.to_numpy(), p2.to_numpy(), rtol=1e-6)
    assert (p1 >= 0).all() and p1.sum() > 0


def test_api_errors():
    cells = _line_cells(3)
    c = Counts.from_daily(cells, np.ones((3, 10)))
    with pytest.raises(RuntimeError, match="not fitted"):
        NaiveHotspot().predict(cells)
    with pytest.raises(ValueError, match="no complete day"):
        NaiveHotspot().fit(c, until=c.day_start(0))
    m = NaiveHotspot().fit(c, until=c.day_start(5))
    with pytest.raises(ValueError, match="empty forecast window"):
        m.predict(None, c.day_start(5), c.day_start(5))
    with pytest.raises(ValueError, match="bad horizon"):
        parse_horizon("fortnight")
    assert parse_horizon("shift") == pd.Timedelta(hours=8) and parse_horizon("2w") == pd.Timedelta(days=14)


def test_targets_on_real_rows(phl_apr_jul_store):
    df = phl_apr_jul_store.incidents(Query(source="philadelphia", start="2024-07-01", end="2024-07-08"))
    code = pd.to_numeric(df["offense_code"], errors="coerce")
    assert len(select_target(df, "violent_ucr")) == int(((code >= 100) & (code < 500)).sum())
    tfv = select_target(df, "theft_from_vehicle")
    assert len(tfv) > 0 and set(tfv["offense_raw"]) == {"Theft from Vehicle"}
    nb = select_target(df, "all_but_enforcement")
    assert not nb["category"].isin(["drugs", "disorder"]).any()
    assert len(select_target(df, "burglary")) == int((df["category"] == "burglary").sum())
    with pytest.raises(ValueError, match="unknown forecast target"):
        select_target(df, "everything")


def test_counts_match_the_store(phl_apr_jul_store):
    """Observed counts per cell from the Counts arrays equal store.counts (independent path)."""
    c = counts_from_store(phl_apr_jul_store, "philadelphia", "all", end="2024-08-01", res=10)
    obs = c.window_counts("2024-07-08", "2024-07-15")
    ref = phl_apr_jul_store.counts(
        10, ("cell",), Query(source="philadelphia", start="2024-07-08", end="2024-07-15", include_unknown_time=True)
    )
    got = pd.Series(obs, index=c.cells)
    got = got[got > 0]
    ref = ref.set_index("cell")["n"]
    pd.testing.assert_series_equal(
        got.sort_index(), ref.astype(float).sort_index(), check_names=False, check_index_type=False
    )
    # the study area is the city cover (many empty cells), about 24-25 thousand res-10 cells
    assert 20_000 < len(c.cells) < 30_000


def test_backtest_on_philadelphia(phl_apr_jul_store):
    c = counts_from_store(phl_apr_jul_store, "philadelphia", "all", end="2024-07-29", res=10)
    models = {k: v for k, v in default_models("7d").items() if k in ("naive", "stkde", "sepp")}
    r = backtest(c, models, "2024-07-01", "2024-07-15", "7d")
    s = r.summary()
    assert list(s.index) == ["naive", "stkde", "sepp"] and (s["origins"] == 2).all()
    # naive by hand for the first origin: mean of last 28 days x 7, top 1 % of cells
    from rtcc_geo.forecast import metrics

    until = pd.Timestamp("2024-07-01")
    prev = phl_apr_jul_store.counts(
        10,
        ("cell",),
        Query(source="philadelphia", start=until - pd.Timedelta(days=28), end=until, include_unknown_time=True),
    ).set_index("cell")["n"]
    nxt = pd.Series(c.window_counts(until, until + pd.Timedelta(days=7)), index=c.cells)
    fc = prev.reindex(c.cells, fill_value=0) / 28 * 7
    row = r.scores[(r.scores["model"] == "naive") & (r.scores["origin"] == until)].iloc[0]
    k = metrics.k_for_fraction(len(c.cells), 0.01)
    assert row["pai@1%"] == pytest.approx(metrics.pai(fc.to_numpy(float), nxt.to_numpy(), k))
    # every model beats a random map by far on real data
    assert (s["pai@1%"] > 5).all()
    cal = r.calibration[r.calibration["bin"] == "all"].set_index("model")["ratio"]
    assert ((cal > 0.7) & (cal < 1.3)).all()
    # a shift horizon works too
    r2 = backtest(c, {"naive": NaiveHotspot()}, "2024-07-01 16:00", "2024-07-02 16:00", "shift")
    assert len(r2.scores) == 3


def test_fit_on_a_canonical_frame_equals_fit_on_counts(phl_apr_jul_store):
    df = phl_apr_jul_store.incidents(Query(source="philadelphia", end="2024-07-15"))
    until = pd.Timestamp("2024-07-08")
    a = NaiveHotspot().fit(df, until=until, res=10, tz="America/New_York").predict(None, until, "2024-07-15")
    c = counts_from_store(phl_apr_jul_store, "philadelphia", "all", end="2024-07-15", res=10)
    b = NaiveHotspot().fit(c, until=until).predict(a.index, until, "2024-07-15")
    pd.testing.assert_series_equal(a, b, check_names=False)


@pytest.mark.postgis
def test_same_counts_from_postgis(shared_data, pg_url, phl_apr_jul_store):
    """The forecast input is engine-independent: PostGIS gives the same Counts as the embedded store."""
    from rtcc_geo.ingest import ingest_files
    from rtcc_geo.store import open_store

    pg = open_store(db=pg_url)
    try:
        ingest_files("philadelphia", [shared_data / "philadelphia" / "incidents_2024_07.csv"], pg)
        a = counts_from_store(pg, "philadelphia", "theft_from_vehicle", start="2024-07-01", end="2024-07-29", res=10)
        b = counts_from_store(
            phl_apr_jul_store, "philadelphia", "theft_from_vehicle", start="2024-07-01", end="2024-07-29", res=10
        )
        assert np.array_equal(a.cells, b.cells) and a.n_days == b.n_days == 28
        np.testing.assert_array_equal(a.cell_idx, b.cell_idx)
        np.testing.assert_allclose(a.hours, b.hours)
        assert (a.daily != b.daily).nnz == 0
    finally:
        pg.close()


@pytest.mark.parametrize("span_days", [1, 10, 365])
def test_daily_counts_by_spans_equal_one_scan_and_the_rows(phl_apr_jul_store, span_days, monkeypatch):
    """The cells x days matrix of a query target from a first day, asked of the store a span of
    days at a time (its aggregation holds one span's groups), is the one-scan matrix and the
    events' own, cut anywhere (a start and end inside a day, spans of one day)."""
    from rtcc_geo.forecast import io
    from rtcc_geo.forecast.data import daily_from_counts

    monkeypatch.setattr(io, "SPAN_DAYS", span_days)
    start, end = "2024-04-08 06:00", "2024-07-29 13:00"
    c = counts_from_store(phl_apr_jul_store, "philadelphia", "all", start=start, end=end, res=10)
    q = Query(source="philadelphia", start=start, end=end, geolocated=True)
    one = daily_from_counts(phl_apr_jul_store.counts(10, ("cell", "day"), q), c.cells, c.origin, c.n_days)
    assert c.daily.nnz > 10_000 and c.n_days == 113
    assert (c.daily != one).nnz == 0 and c.daily.sum() == one.sum()
    c.load_events()  # the rows themselves, by day
    rows = Counts(c.cells, c.cell_idx, c.hours, c.time_known, c.origin, c.tz, c.n_days, c.res).daily
    assert (c.daily != rows).nnz == 0
