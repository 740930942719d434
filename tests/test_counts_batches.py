"""Row readers that stream: forecast event arrays and address concentration read the
store in bounded time batches with only the columns they need. On real Philadelphia
incidents (April-July 2024) cut into batches of a few thousand rows, they equal the
one-shot computation and an independent pandas computation on the raw rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.store import Query

SRC = "philadelphia"
TZ = "America/New_York"


@pytest.fixture(scope="module")
def rows(phl_apr_jul_store):
    return phl_apr_jul_store.incidents(Query(source=SRC, include_unknown_time=True))


@pytest.mark.parametrize("target", ["all", "burglary", "all_but_enforcement", "violent_ucr", "theft_from_vehicle"])
def test_forecast_counts_in_batches_equal_one_frame_and_pandas(phl_apr_jul_store, rows, target, monkeypatch):
    from rtcc_geo.forecast.data import Counts, select_target
    from rtcc_geo.forecast.io import boundary_cells, counts_from_store
    from rtcc_geo.scope import agency_of

    monkeypatch.setenv("RTCC_BATCH_ROWS", "5000")
    start, end = "2024-04-08", "2024-07-29"
    c = counts_from_store(phl_apr_jul_store, SRC, target, start=start, end=end, res=9)

    # The same Counts from every row at once (the pre-batch code path) ...
    q = Query(source=SRC, start=start, end=end, geolocated=True)
    df = select_target(phl_apr_jul_store.incidents(q), target)
    cells = np.union1d(boundary_cells(agency_of(phl_apr_jul_store, SRC), 9, phl_apr_jul_store), df["h3_r9"])
    one = Counts.from_incidents(df, cells=cells, res=9, tz=TZ, origin=start, end=end)
    for k in ("cells", "cell_idx", "hours", "time_known", "block", "block_names", "category", "category_names"):
        a, b = getattr(c, k), getattr(one, k)
        assert a.dtype == b.dtype and np.array_equal(a, b), k
    assert (c.origin, c.n_days, c.tz) == (one.origin, one.n_days, one.tz)
    # A query-shaped target's cells x days matrix comes from store.counts; the event path agrees.
    assert ("daily" in c.__dict__) == (target in ("all", "burglary"))
    assert c.daily.shape == one.daily.shape and (c.daily != one.daily).nnz == 0
    assert len(c.hours) == len(df) > 100

    # ... and the cells x days matrix is pandas' count per (cell, local day).
    local = df["occurred_from"].dt.tz_convert(TZ).dt.tz_localize(None)
    day = ((local.dt.normalize() - pd.Timestamp(start)) // pd.Timedelta(days=1)).to_numpy()
    want = pd.crosstab(df["h3_r9"].to_numpy(), day)
    got = pd.DataFrame(c.daily.toarray(), index=c.cells)
    assert got.to_numpy().sum() == len(df)
    np.testing.assert_array_equal(got.loc[want.index, want.columns].to_numpy(), want.to_numpy())
    # Labels decode to each event's own block / category.
    blk = np.where(c.block >= 0, c.block_names[np.maximum(c.block, 0)], None)
    assert sorted(map(str, blk)) == sorted(map(str, df["block"].astype(object).where(df["block"].notna(), None)))


def test_forecast_counts_of_a_query_target_hold_no_events_until_asked(phl_apr_jul_store, monkeypatch):
    """``all`` from --train-from is a :class:`LazyCounts`: a weekly backtest of the models that work
    on the cells x days matrix reads no incident row, and scores exactly as on eager event arrays;
    a sub-day window (a shift) then reads the rows, the same ones."""
    from rtcc_geo.forecast.backtest import backtest, default_models
    from rtcc_geo.forecast.data import Counts, LazyCounts
    from rtcc_geo.forecast.io import counts_from_store

    monkeypatch.setenv("RTCC_BATCH_ROWS", "5000")
    start, end = "2024-04-08", "2024-07-29"
    c = counts_from_store(phl_apr_jul_store, SRC, "all", start=start, end=end, res=9)
    assert isinstance(c, LazyCounts) and not c.__dict__["_events_loaded"]
    eager = Counts.from_batches(
        [phl_apr_jul_store.incidents(Query(source=SRC, start=start, end=end, geolocated=True))],
        cells=c.cells,
        res=9,
        tz=TZ,
        origin=start,
        end=end,
    )
    n = c.n_events
    models = {
        k: m for k, m in default_models("7d").items() if k in ("naive", "prospective", "stkde", "sepp", "seasonal")
    }
    a = backtest(c, models, "2024-07-01", "2024-07-22", "7d")
    assert not c.__dict__["_events_loaded"]  # daily counts only: no row was read
    models2 = {k: m for k, m in default_models("7d").items() if k in models}
    b = backtest(eager, models2, "2024-07-01", "2024-07-22", "7d")
    pd.testing.assert_frame_equal(a.scores, b.scores, check_exact=False, rtol=1e-12)
    assert n == len(eager.hours) > 1000
    w = c.window_counts("2024-07-20 06:00", "2024-07-20 14:00")  # a shift: needs the rows
    assert c.__dict__["_events_loaded"] and np.array_equal(
        w, eager.window_counts("2024-07-20 06:00", "2024-07-20 14:00")
    )
    for k in ("cell_idx", "hours", "time_known", "block", "category"):
        assert np.array_equal(getattr(c, k), getattr(eager, k)), k


def test_forecast_target_columns_are_only_what_the_target_needs():
    from rtcc_geo.forecast.io import target_columns

    assert target_columns("all", 10) == ["occurred_from", "time_known", "category", "block", "h3_r10"]
    assert "offense_code" in target_columns("violent_ucr", 9)
    assert "offense_raw" in target_columns("all_but_enforcement", 9)
    assert not {"id", "lon", "lat", "extras", "district"} & set(target_columns("theft_from_vehicle", 9))


def test_block_concentration_in_batches_equals_pandas(phl_apr_jul_store, rows, monkeypatch):
    from rtcc_geo.hotspots.api import block_counts, concentration_report

    monkeypatch.setenv("RTCC_BATCH_ROWS", "4000")
    q = Query(source=SRC, start="2024-05-01", end="2024-08-01")
    got = block_counts(phl_apr_jul_store, q)
    inq = rows[
        (rows["occurred_from"] >= pd.Timestamp("2024-05-01", tz=TZ))
        & (rows["occurred_from"] < pd.Timestamp("2024-08-01", tz=TZ))
    ]
    b = inq["block"].dropna().astype(str)
    want = b[b.str.strip() != ""].value_counts()
    assert got.sum() == want.sum() > 10000
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False, check_dtype=False)
    rep = concentration_report(phl_apr_jul_store, 9, q)
    monkeypatch.setenv("RTCC_BATCH_ROWS", "100000000")
    one = concentration_report(phl_apr_jul_store, 9, q)
    assert rep["block"].gini == one["block"].gini
    pd.testing.assert_frame_equal(rep["block"].lorenz, one["block"].lorenz)
