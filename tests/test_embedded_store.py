"""Embedded store: idempotent writes, filters and local-time counts against direct pandas."""

import numpy as np
import pandas as pd
import pytest

from rtcc_geo import synth
from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore


@pytest.fixture(scope="module")
def city():
    # Spans both 2024 DST changes (10 March, 3 November).
    return synth.generate(synth.SyntheticCity(seed=3, start="2024-02-20", end="2024-11-20", daily_rate=60))


@pytest.fixture()
def store(tmp_path, city):
    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    s.write_incidents(city)
    return s


def test_rewrite_is_idempotent_and_batches_dedupe(tmp_path, city):
    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    first = s.write_incidents(city.iloc[: len(city) // 2])
    again = s.write_incidents(city)  # overlaps the first half
    assert first.inserted == len(city) // 2
    assert again.inserted == len(city) - len(city) // 2 and again.duplicates == len(city) // 2
    assert s.count() == len(city)
    dup = pd.concat([city.iloc[:5], city.iloc[:5]])
    assert s.write_incidents(dup).inserted == 0
    got = s.incidents()
    pd.testing.assert_frame_equal(got, city.sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True))


def test_unknown_source_is_refused(tmp_path, city):
    with pytest.raises(ValueError, match="register_source"):
        EmbeddedStore(tmp_path).write_incidents(city.iloc[:3])


def test_hour_of_week_counts_equal_direct_pandas(store, city):
    got = store.counts(9, ("cell", "hour_of_week", "category"))
    known = city[city.time_known]
    local = known.occurred_from.dt.tz_convert("America/New_York")
    ref = (pd.DataFrame({"cell": known.h3_r9, "hour_of_week": local.dt.day_of_week * 24 + local.dt.hour,
                         "category": known.category})
           .groupby(["cell", "hour_of_week", "category"]).size().rename("n").reset_index())
    assert got["n"].sum() == len(known)  # time-unknown rows left out of hour-level counts
    m = got.merge(ref, on=["cell", "hour_of_week", "category"], how="outer", suffixes=("", "_ref"))
    assert (m["n"] == m["n_ref"]).all()


def test_day_week_month_keys_and_rollup(store, city):
    got = store.counts(7, ("cell", "week"))
    assert got["n"].sum() == len(city)  # day-level keys keep time-unknown rows
    assert (got["week"].dt.day_of_week == 0).all()
    assert set(got["cell"]) == set(np.unique(city.h3_r7))
    r6 = store.counts(6, ("cell",))
    assert r6["n"].sum() == len(city) and r6["cell"].nunique() < got["cell"].nunique()
    months = store.counts(9, ("month",))
    local = city.occurred_from.dt.tz_convert("America/New_York")
    assert months["n"].tolist() == local.dt.month.value_counts().sort_index().tolist()


def test_filters(store, city):
    q = Query(start="2024-03-10", end="2024-03-11", categories=("burglary", "theft"), hours=tuple(range(8, 20)))
    got = store.incidents(q)
    local = city.occurred_from.dt.tz_convert("America/New_York")
    ref = city[(local >= pd.Timestamp("2024-03-10", tz="America/New_York"))
               & (local < pd.Timestamp("2024-03-11", tz="America/New_York"))
               & city.category.isin(["burglary", "theft"]) & local.dt.hour.between(8, 19) & city.time_known]
    assert len(got) == len(ref) > 0
    assert set(got.id) == set(ref.id)
    one = int(city.h3_r8.iloc[0])
    assert store.count(Query(cells=(one,), cells_res=8)) == int((city.h3_r8 == one).sum())
    assert store.count(Query(source="nowhere")) == 0


def test_put_get_table_roundtrip(store):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None], "t": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)})
    store.put_table("results_x", df)
    pd.testing.assert_frame_equal(store.get_table("results_x"), df)
    assert store.get_table("missing") is None
    with pytest.raises(ValueError):
        store.put_table("Bad-Name", df)
