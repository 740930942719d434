"""Block addresses: one spelling per place at ingest (raw text kept), and top_places against
pandas on the portal's own location_block column."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rtcc_geo.places import describe, normalise_block, top_places, top_places_by_cell
from rtcc_geo.store.base import Query


def test_normal_form():
    got = normalise_block(
        pd.Series(
            [
                "5500 BLOCK Tulip St",
                "5500 BLOCK TULIP ST",
                " 5500  BLOCK TULIP STREET ",
                "7100 BLOCK TORRESDALE AV",
                "7100 BLOCK Torresdale Avenue",
                "N 42ND ST  & MARKET ST",
                "n 42nd St&Market St",
                "100 BLOCK LA SALLE ST",
                "200 BLK ROSE LA",
                "  ",
                None,
            ]
        )
    ).tolist()
    assert got[:3] == ["5500 BLOCK TULIP ST"] * 3
    assert got[3:5] == ["7100 BLOCK TORRESDALE AVE"] * 2
    assert got[5:7] == ["N 42ND ST & MARKET ST"] * 2
    assert got[7] == "100 BLOCK LA SALLE ST"  # a name's LA is not a lane
    assert got[8] == "200 BLOCK ROSE LN"
    assert pd.isna(got[9]) and pd.isna(got[10])


@pytest.fixture(scope="module")
def phl_store(shared_data):
    from rtcc_geo.datasets import example_store

    return example_store("philadelphia", years=(2023, 2024))


def test_spellings_are_one_place_and_raw_is_kept(phl_store, shared_data):
    raw = pd.read_csv(shared_data / "philadelphia" / "incidents_2024_06.csv", dtype=str, keep_default_na=False)
    variants = raw["location_block"][raw["location_block"] != raw["location_block"].str.upper()]
    assert len(variants) > 100  # the portal really mixes case (README: ~6 % of rows)
    q = Query(source="philadelphia", start="2024-05-31", end="2024-07-02")
    inc = phl_store.incidents(q, columns=["id", "block", "extras"])
    assert (inc["block"].dropna() == inc["block"].dropna().str.upper()).all()
    ex = inc["extras"].map(json.loads)
    kept = ex.map(lambda e: e.get("block_raw"))
    changed = kept.notna()
    assert changed.sum() > len(variants) / 2
    assert (normalise_block(kept[changed]) == inc.loc[changed, "block"]).all()  # raw -> stored, reproducibly


def test_top_places_equals_pandas_on_the_portal_file(phl_store, shared_data):
    raw = pd.read_csv(shared_data / "philadelphia" / "incidents_2024_06.csv", dtype=str, keep_default_na=False)
    local = pd.to_datetime(raw["dispatch_date"])
    sel = raw[(raw["dc_dist"] == "24") & (local >= "2024-06-03") & (local < "2024-06-24")]
    want = normalise_block(sel["location_block"]).value_counts()
    got = top_places(phl_store, Query(source="philadelphia", start="2024-06-03", end="2024-06-24"), district="24", n=5)
    assert got["n"].tolist() == want.sort_values(ascending=False).head(5).tolist()
    assert got["block"].iloc[0] == want.idxmax() and 0 < got["share"].iloc[0] < 1
    assert describe(got).startswith(got["block"].iloc[0])
    # by cell, one pass, agrees with the per-area call
    q = Query(source="philadelphia", start="2024-06-03", end="2024-06-24", districts=("24",))
    by = top_places_by_cell(phl_store, q, res=9, n=2)
    cell = max(by, key=lambda c: phl_store.count(q.with_(cells=(c,), cells_res=9)))
    assert by[cell] == top_places(phl_store, q, cells=[cell], res=9, n=2)["block"].tolist()
    with pytest.raises(ValueError):
        top_places(phl_store, q, cells=[], res=9)
