"""Temporal analyses read the store in bounded time batches (rtcc_geo.temporal.stream):
on real Philadelphia incidents (April-July 2024, through the ingest pipeline), cut into
batches of a few thousand rows, every figure equals an independent pandas computation
on the raw rows, and the embedded store and PostGIS give the same signature."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.store import Query
from rtcc_geo.temporal import stream
from rtcc_geo.temporal.signatures import SEASONS, signature_from_store

SRC = "philadelphia"
TZ = "America/New_York"
SMALL = 6000  # rows per batch: ~20 batches over the four months


@pytest.fixture(scope="module")
def rows(phl_apr_jul_store):
    return phl_apr_jul_store.incidents(Query(source=SRC, include_unknown_time=True))


def test_batch_windows_tile_the_query_and_bound_every_batch(phl_apr_jul_store):
    store = phl_apr_jul_store
    q = Query(source=SRC, start="2024-04-15 12:00", end="2024-07-20 18:00", categories=("theft", "burglary"))
    ws = stream.batch_windows(store, q, max_rows=1500)
    assert ws[0].start == q.start and ws[-1].end == q.end
    assert all(a.end == b.start for a, b in zip(ws, ws[1:]))
    sizes = [store.count(w) for w in ws]
    assert len(ws) >= 5 and max(sizes) <= 1500 and sum(sizes) == store.count(q)
    # Concatenated batches are the one-shot read, row for row and in order.
    got = pd.concat(stream.iter_incidents(store, q, ["id", "occurred_from"], max_rows=1500), ignore_index=True)
    pd.testing.assert_frame_equal(got, store.incidents(q, columns=["id", "occurred_from"]))
    assert stream.batch_windows(store, q.with_(start="1990-01-01", end="1990-02-01")) == []
    with pytest.raises(ValueError, match="max_rows"):
        stream.batch_windows(store, q, max_rows=0)


@pytest.mark.parametrize("by", [None, "category", "district", "cell"])
def test_signature_in_batches_equals_pandas_on_the_raw_rows(phl_apr_jul_store, rows, by, monkeypatch):
    monkeypatch.setenv("RTCC_BATCH_ROWS", str(SMALL))
    assert len(stream.batch_windows(phl_apr_jul_store, Query(source=SRC))) >= 8
    sig = signature_from_store(phl_apr_jul_store, Query(source=SRC), by=by, res=9)

    # Independent: Philadelphia publishes instants (no from/to windows), so an incident
    # counts 1 in its local hour; time-unknown rows stay in day-level figures only.
    assert rows["occurred_to"].isna().all()
    df = rows[rows["h3_r9"] != 0] if by == "cell" else rows
    key = (
        pd.Series("all", index=df.index)
        if by is None
        else df["h3_r9"]
        if by == "cell"
        else df[by].astype("string").fillna("(none)")
    )
    local = df["occurred_from"].dt.tz_convert(TZ)
    known = df["time_known"].to_numpy(bool)
    how = pd.crosstab(key[known], (local.dt.day_of_week * 24 + local.dt.hour)[known])
    dow = pd.crosstab(key, local.dt.day_of_week)
    month = pd.crosstab(key, local.dt.tz_localize(None).dt.to_period("M").dt.to_timestamp())
    groups = sorted(set(key))
    assert list(sig.hour_of_week.index) == groups
    np.testing.assert_allclose(
        sig.hour_of_week.to_numpy(),
        how.reindex(index=groups, columns=range(168), fill_value=0).to_numpy(),
        rtol=0,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        sig.dow.to_numpy(), dow.reindex(index=groups, columns=range(7), fill_value=0).to_numpy(), rtol=0, atol=1e-9
    )
    months = pd.date_range(month.columns.min(), month.columns.max(), freq="MS")  # every month between, empty ones too
    assert list(sig.month.columns) == list(months)
    assert (sig.month.to_numpy() == month.reindex(index=groups, columns=months, fill_value=0).to_numpy()).all()
    season = month.T.groupby((month.columns.month % 12) // 3).sum().T  # DJF, MAM, JJA, SON
    assert (sig.season.to_numpy() == season.reindex(index=groups, columns=range(4), fill_value=0).to_numpy()).all()
    assert list(sig.season.columns) == list(SEASONS)
    assert sig.n_incidents == len(df) and sig.n_time_unknown == int((~known).sum())

    # And the same figures as reading everything at once (the sums are additive).
    one = signature_from_store(phl_apr_jul_store, Query(source=SRC), by=by, res=9, max_rows=10**9)
    for part in ("hour", "dow", "hour_of_week", "month", "season", "trend"):
        pd.testing.assert_frame_equal(getattr(sig, part), getattr(one, part), check_exact=False, rtol=1e-12)


def test_hotspot_profile_in_batches_equals_one_frame_and_pandas(phl_apr_jul_store, rows):
    from rtcc_geo.temporal.profile import hotspot_profiles

    counts = rows.loc[rows["h3_r9"] != 0, "h3_r9"].value_counts()
    hot = counts.index[:12].to_numpy(np.int64)
    cols = ["occurred_from", "occurred_to", "time_known", "h3_r9"]
    batches = stream.iter_incidents(
        phl_apr_jul_store, Query(source=SRC, include_unknown_time=True), cols, max_rows=4000
    )
    a = hotspot_profiles(batches, TZ, hot, 9)
    b = hotspot_profiles(rows[cols], TZ, hot, 9)
    for part in ("table", "hot_hours", "members"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), check_exact=False, rtol=1e-12)
    # Each hot spot's hour-of-week counts are its member cells' known-time incidents.
    known = rows[rows["time_known"].to_numpy(bool)]
    local = known["occurred_from"].dt.tz_convert(TZ)
    how = (local.dt.day_of_week * 24 + local.dt.hour).to_numpy()
    for h, members in a.members.groupby("hotspot")["cell"]:
        inside = known["h3_r9"].isin(members).to_numpy()
        want = np.bincount(how[inside], minlength=168)
        got = a.table.loc[a.table["hotspot"] == h, "n"].to_numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_cli_temporal_json_is_the_same_in_small_batches(phl_apr_jul_store, rows, monkeypatch):
    from rtcc_geo.cli.main import main

    root = str(phl_apr_jul_store.root)

    def run(*argv):
        buf = io.StringIO()
        with redirect_stdout(buf):
            assert main(["temporal", "--store", root, "--source", SRC, "--json", *argv]) == 0
        out = json.loads(buf.getvalue())
        out.pop("seconds")
        return out

    args = ("--by", "district", "--offense", "Thefts", "--offense", "Burglary Residential")
    monkeypatch.setenv("RTCC_BATCH_ROWS", "10000000")
    whole = run(*args)
    prof_whole = run("--hotspot-profile", "--category", "burglary")
    monkeypatch.setenv("RTCC_BATCH_ROWS", "3000")
    assert run(*args) == whole
    assert run("--hotspot-profile", "--category", "burglary") == prof_whole
    want = rows["offense_raw"].str.lower().isin(["thefts", "burglary residential"])
    assert whole["n_incidents"] == int(want.sum()) > 1000
    assert sum(sum(g["season"].values()) for g in whole["groups"].values()) == whole["n_incidents"]
    assert prof_whole["hotspot_profile"]


def test_postgis_gives_the_same_signature_in_batches(phl_apr_jul_store, rows, pg_url, monkeypatch):
    from rtcc_geo.store.postgis import PostGISStore

    pg = PostGISStore(pg_url)
    try:
        pg.register_source(SRC, TZ)
        june = rows[
            (rows["occurred_from"] >= pd.Timestamp("2024-06-01", tz=TZ))
            & (rows["occurred_from"] < pd.Timestamp("2024-07-01", tz=TZ))
        ]
        assert pg.write_incidents(june).inserted == len(june)
        monkeypatch.setenv("RTCC_BATCH_ROWS", "2500")
        q = Query(source=SRC, start="2024-06-01", end="2024-07-01")
        assert len(stream.batch_windows(pg, q)) >= 5
        for by in ("category", "cell"):
            a = signature_from_store(pg, q, by=by, res=9)
            b = signature_from_store(phl_apr_jul_store, q, by=by, res=9)
            for part in ("hour_of_week", "dow", "month", "season"):
                pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), check_exact=False, rtol=1e-12)
            assert (a.n_incidents, a.n_time_unknown) == (b.n_incidents, b.n_time_unknown)
    finally:
        pg.close()


def test_sen_slope_in_row_chunks_equals_the_pairwise_median(monkeypatch):
    from rtcc_geo.temporal import mannkendall

    x = np.random.default_rng(3).poisson(4.0, size=(2000, 30)).astype(np.float64)
    i, j = np.triu_indices(30, k=1)
    want = np.median((x[:, j] - x[:, i]) / (j - i), axis=1)  # every row at once
    monkeypatch.setattr(mannkendall, "_SEN_CHUNK", 1000)  # 2 rows a chunk
    assert np.array_equal(mannkendall.sen_slope(x), want)
    assert np.array_equal(mannkendall.sen_slope(x[0]), want[:1])
