"""The generic (mapping-driven) reader: the shipped Chicago mapping gives exactly what
the chicago reader gives, and a minimal agency mapping works on a hand-made export."""

from __future__ import annotations

import json

import pandas as pd
import pandas.testing as pdt
import pytest

from rtcc_geo.config import DATA_DIR
from rtcc_geo.ingest import read
from rtcc_geo.ingest.generic import load_mapping

CHICAGO_MAPPING = DATA_DIR / "mappings" / "chicago_portal.toml"


def test_generic_mapping_parity_with_chicago_reader(shared_data):
    for path in sorted((shared_data / "chicago_sample").glob("*.csv")):
        a_inc, a_q = read("chicago", path)
        b_inc, b_q = read("generic", path, mapping=CHICAGO_MAPPING)
        pdt.assert_frame_equal(a_inc, b_inc)
        pdt.assert_frame_equal(a_q, b_q)
        assert len(a_inc) > 5000


def test_generic_parity_on_messy_rows(shared_data, tmp_path):
    """Parity also where the readers' special paths run: blank lat/lon (State Plane
    fallback), unparseable date, blank id, a junk point, the portal's ISO dates."""
    src = sorted((shared_data / "chicago_sample").glob("*.csv"))[0]
    raw = pd.read_csv(src, dtype=str, keep_default_na=False).head(40)
    raw.loc[0:4, ["latitude", "longitude"]] = ""
    raw.loc[5, "date"] = "not a date"
    raw.loc[6, "id"] = ""
    raw.loc[7, ["latitude", "longitude"]] = ["0", "0"]
    raw.loc[7, ["x_coordinate", "y_coordinate"]] = ["0", "0"]
    raw.loc[8, "date"] = "2017-03-12T02:30:00.000"  # ISO and in the spring-forward gap
    raw.loc[9, ["latitude", "longitude"]] = ["41.0", "-80.0"]
    f = tmp_path / "messy.csv"
    raw.to_csv(f, index=False)
    a_inc, a_q = read("chicago", f)
    b_inc, b_q = read("generic", f, mapping=CHICAGO_MAPPING)
    pdt.assert_frame_equal(a_inc, b_inc)
    pdt.assert_frame_equal(a_q, b_q)
    reasons = dict(zip(a_q["row_number"], a_q["reason"]))
    assert reasons == {6: "unparseable_time", 7: "missing_id"}
    assert len(a_inc) == 38
    # no usable point but a district: loaded not geolocated, the reason kept
    ungeo = a_inc[a_inc["lon"].isna()]
    assert set(ungeo["id"]) == {raw.loc[7, "id"], raw.loc[9, "id"]}
    assert ungeo["extras"].str.contains('"not_geolocated"').all()
    row9 = a_inc[a_inc["id"] == raw.loc[8, "id"]].iloc[0]
    assert row9["occurred_from"] == pd.Timestamp("2017-03-12 08:30", tz="UTC")  # 02:30 CST


def test_example_agency_mapping(tmp_path):
    """A minimal onboarding mapping: separate date/time columns, 00:00 = unknown, content ids."""
    f = tmp_path / "export.csv"
    f.write_text(
        "Date,Time,Offense,Address,Beat,Longitude,Latitude,Premise\n"
        "2024-07-04,21:15,ASSAULT,100 BLOCK MAIN ST,B1,-75.16,39.95,STREET\n"
        "2024-07-04,00:00,LARCENY,200 BLOCK MAIN ST,B2,-75.17,39.96,\n"
        "2024-07-04,00:00,LARCENY,200 BLOCK MAIN ST,B2,-75.17,39.96,\n"
        "07/05/2024,08:00,THEFT FROM AUTO,,B1,,,LOT\n"
        "2024-07-05,09:00,ARSON,1 ELM ST,B3,-75.18,39.97,\n"
    )
    mp = load_mapping(DATA_DIR / "mappings" / "example_agency.toml")
    inc, q = read("generic", f, mapping=mp)
    # the row without a point but with a beat (district) is loaded, not geolocated
    assert len(inc) == 5 and len(q) == 0
    assert inc["lon"].isna().tolist() == [False, False, False, True, False]
    inc = inc[inc["lon"].notna()].reset_index(drop=True)
    assert inc["source"].eq("example_agency").all()
    assert inc["time_known"].tolist() == [True, False, False, True]
    assert inc["occurred_from"][0] == pd.Timestamp("2024-07-05 01:15", tz="UTC")  # 21:15 EDT
    assert inc["id"].is_unique and inc["id"][1][:-2] == inc["id"][2][:-2]
    assert inc["category"].tolist() == ["violent", "theft", "theft", "other"]  # ARSON not in its taxonomy
    assert json.loads(inc["extras"][0]) == {"Premise": "STREET"}
    # re-reading gives the same ids
    again = read("generic", f, mapping=mp)[0]
    assert again.loc[again["lon"].notna(), "id"].tolist() == inc["id"].tolist()


def test_mapping_errors_are_clear(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('[source]\nname = "x"\ntimezone = "UTC"\n[columns]\noffense = "o"\nlon = "a"\nlat = "b"\n')
    with pytest.raises(ValueError, match="occurred"):
        load_mapping(bad)
    bad.write_text('[source]\nname = "x"\n[columns]\noffense = "o"\noccurred = "t"\nx = "x"\ny = "y"\n')
    with pytest.raises(ValueError, match="crs"):
        load_mapping(bad)
    bad.write_text('[source]\nname = "x"\n[columns]\noffense = "o"\noccured = "t"\n')
    with pytest.raises(ValueError, match="unknown \\[columns\\] key"):
        load_mapping(bad)
