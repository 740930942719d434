"""Readers and validation on the real extracts (no store involved).

Every real file is read once per session (cached fixture); the checks are the
issue's: read == loaded + quarantined per file (rows counted independently
with the csv module), rows without a usable point but with a district loaded
not geolocated (the rest quarantined as no_coordinates),
every offense value in the taxonomy, Philadelphia's hour-of-day from the UTC
field against the portal's own local ``hour`` column, Vancouver 00:00 rows
time-unknown, DST edge cases, Chicago code restoration.
"""

from __future__ import annotations

import json
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest

from rtcc_geo.config import load_agency
from rtcc_geo.ingest import read, read_batch
from rtcc_geo.ingest.base import content_ids, count_data_rows, localize
from rtcc_geo.ingest.chicago import pad_digits, zfill_code
from rtcc_geo.ingest.taxonomy import load_taxonomy
from rtcc_geo.schema import CATEGORIES, CORE_DTYPES, INCIDENT_COLUMNS, NO_CELL, QUARANTINE_COLUMNS, QUARANTINE_REASONS

CITY_DIRS = {
    "philadelphia": ("philadelphia", "incidents_*.csv"),
    "vancouver": ("vancouver", "crimedata_csv_*.csv"),
    "chicago": ("chicago_sample", "chicago_crimes_sample_*.csv"),
}


def city_files(shared: Path, city: str) -> list[Path]:
    d, pat = CITY_DIRS[city]
    files = sorted((shared / d).glob(pat))
    assert files, f"no {city} files in {shared / d}"
    return files


@pytest.fixture(scope="session")
def city_reads(shared_data):
    """{city: [(path, incidents, quarantine, raw_rows_counted)]} for every real file."""
    cache: dict[str, list] = {}

    def get(city: str):
        if city not in cache:
            cache[city] = [(p, *read(city, p), count_data_rows(p)) for p in city_files(shared_data, city)]
        return cache[city]

    return get


@pytest.mark.parametrize("city", ["philadelphia", "vancouver", "chicago"])
def test_every_row_loaded_or_quarantined(city, city_reads):
    for path, inc, q, n in city_reads(city):
        assert len(inc) + len(q) == n, path.name
        # canonical frame, exact columns and dtypes
        assert tuple(inc.columns) == INCIDENT_COLUMNS
        for c, t in CORE_DTYPES.items():
            assert str(inc[c].dtype) == t, (c, inc[c].dtype)
        assert tuple(q.columns) == QUARANTINE_COLUMNS
        # one reason per quarantined row, from the contract list, with a detail
        assert q["reason"].isin(QUARANTINE_REASONS).all()
        assert q["detail"].str.len().gt(0).all()
        assert q["row_number"].between(1, n).all() and q["row_number"].is_unique
        # loaded rows are complete and unique
        assert inc["id"].is_unique and inc["id"].notna().all()
        assert inc["occurred_from"].notna().all()
        assert inc["category"].isin(CATEGORIES).all()
        # not geolocated (no usable point, but a district): NaN point, H3 = NO_CELL, reason kept
        ungeo = inc["lon"].isna()
        assert (inc["lat"].isna() == ungeo).all()
        assert (inc.loc[ungeo, ["h3_r7", "h3_r8", "h3_r9", "h3_r10"]] == NO_CELL).all().all()
        assert (inc.loc[~ungeo, ["h3_r7", "h3_r8", "h3_r9", "h3_r10"]] != NO_CELL).all().all()
        assert inc.loc[ungeo, "district"].str.strip().str.len().gt(0).all()
        assert inc.loc[ungeo, "extras"].str.contains('"not_geolocated"').all()
        assert (inc["source"] == city).all()


@pytest.mark.parametrize("city", ["philadelphia", "vancouver", "chicago"])
def test_h3_cells_match_h3_library(city, city_reads):
    _, inc, _, _ = city_reads(city)[0]
    s = inc[inc["lon"].notna()].sample(200, random_state=0)
    # Each resolution's column is the cell containing the point at that resolution
    # (not a roll-up of the res-10 cell: H3 children do not nest exactly).
    for lat, lon, c10, c9, c7 in zip(s["lat"], s["lon"], s["h3_r10"], s["h3_r9"], s["h3_r7"]):
        assert h3.api.basic_int.latlng_to_cell(lat, lon, 10) == c10
        assert h3.api.basic_int.latlng_to_cell(lat, lon, 9) == c9
        assert h3.api.basic_int.latlng_to_cell(lat, lon, 7) == c7


def test_philadelphia_not_geolocated(city_reads, shared_data):
    """Every Philadelphia row has a district and a time: rows with a blank or junk point
    are loaded not geolocated (counted by district and time), none quarantined."""
    rows = city_reads("philadelphia")
    q = pd.concat([r[2] for r in rows], ignore_index=True)
    total = sum(r[3] for r in rows)
    assert len(q) == 0
    blank = 0
    notes = []
    for path, inc, _, _ in rows:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        is_blank = (raw["point_x"].str.strip() == "") | (raw["point_y"].str.strip() == "")
        blank += int(is_blank.sum())
        # loaded rows keep file order (nothing quarantined): row i of the file is row i here
        ungeo = inc["lon"].isna().to_numpy()
        assert (ungeo[is_blank.to_numpy()]).all(), path.name
        assert (inc["district"].to_numpy() == raw["dc_dist"].to_numpy()).all()
        notes.append(inc.loc[ungeo & ~is_blank.to_numpy(), "extras"].map(json.loads))
    assert 0.03 < blank / total < 0.05  # "~4 % of rows have no coordinates"
    # Junk (0, 0) and (-80.5, 42.2) points are not geolocated either, the reason kept.
    junk = pd.concat(notes, ignore_index=True)
    assert len(junk) >= 10
    assert all("junk geocode" in e["not_geolocated"] or "outside" in e["not_geolocated"] for e in junk)


def test_philadelphia_ids_and_homicides(city_reads):
    inc = pd.concat([r[1] for r in city_reads("philadelphia")], ignore_index=True)
    q = pd.concat([r[2] for r in city_reads("philadelphia")], ignore_index=True)
    dc = inc["extras"].str.extract(r'"dc_key":"([^"]+)"')[0].str.replace(r"\.0+$", "", regex=True)
    hom = inc["offense_code"] == "100"
    # ordinary rows: the id is the dc_key as text
    assert (inc.loc[~hom, "id"] == dc[~hom]).all()
    assert not inc["id"].str.contains(r"\.").any()
    # homicide-victim rows: <dc_key>-H<date>-<n>, time unknown, none lost as duplicates
    assert inc.loc[hom, "id"].str.fullmatch(r"\d+-H\d{8}-\d+").all()
    assert (~inc.loc[hom, "time_known"]).all()
    assert "duplicate_key" not in set(q["reason"])
    ids_all = pd.concat([inc["id"]], ignore_index=True)
    assert ids_all.is_unique  # across all 24 monthly files too
    # time_known is False only for those date-only homicides
    assert inc.loc[~hom, "time_known"].all()


def test_philadelphia_hour_from_utc_matches_portal_hour(city_reads):
    """Acceptance 2: local hour from the UTC field vs the portal's local ``hour``."""
    inc = pd.concat([r[1] for r in city_reads("philadelphia")], ignore_index=True)
    portal = pd.to_numeric(inc["extras"].str.extract(r'"hour":"(\d+)"')[0], errors="coerce").astype("float64")
    has = portal.notna()
    local = inc["occurred_from"].dt.tz_convert("America/New_York")
    ours = local.dt.hour.astype("float64")
    eq = ours[has] == portal[has]
    share = float(eq.mean())
    on_the_hour = (local.dt.minute == 0) & (local.dt.second == 0)
    mism = has & (ours != portal)
    print(
        f"\nPhiladelphia hour agreement: {int(eq.sum())}/{int(has.sum())} = {share:.4%} of rows with a portal hour; "
        f"mismatches: {int((mism & ~inc['time_known']).sum())} date-only homicides, "
        f"{int((mism & inc['time_known']).sum())} rows at exactly HH:00:00"
    )
    # Every time-known row not exactly on the hour agrees (DST included): 100 %.
    core = has & inc["time_known"] & ~on_the_hour
    assert (ours[core] == portal[core]).all()
    # The only other disagreements are explained: date-only homicides (placeholder time), and
    # rows at exactly HH:00:00 where the portal's hour is one less (its dispatch_time is rounded
    # to the minute, its hour truncated from the unrounded time).
    odd = mism & inc["time_known"]
    assert on_the_hour[odd].all()
    assert (((ours[odd] - portal[odd]) % 24) == 1).all()
    # DST really is exercised: rows on both sides of each 2023/2024 transition agree.
    for day in ("2023-03-12", "2023-11-05", "2024-03-10", "2024-11-03"):
        d = local.dt.strftime("%Y-%m-%d") == day
        assert (d & core).sum() > 50 and (ours[d & core] == portal[d & core]).all()
    # Against the portal's local dispatch_date + dispatch_time columns: every loaded row, 100 %.
    loc_cols = []
    for path, _, q, _ in city_reads("philadelphia"):
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["dispatch_date", "dispatch_time"])
        keep = np.ones(len(raw), dtype=bool)
        keep[q["row_number"].to_numpy() - 1] = False  # loaded rows keep file order
        loc_cols.append(raw[keep])
    loc_cols = pd.concat(loc_cols, ignore_index=True)
    portal_local = pd.to_datetime(loc_cols["dispatch_date"] + " " + loc_cols["dispatch_time"])
    assert (local.dt.tz_localize(None).to_numpy() == portal_local.to_numpy()).all()
    # Rows with a portal hour and a known time that agree: >= 99 % (see the report for 99.9 %).
    assert float((ours[has & inc["time_known"]] == portal[has & inc["time_known"]]).mean()) > 0.99


def test_vancouver_privacy_and_unknown_time(city_reads):
    rows = city_reads("vancouver")
    inc = pd.concat([r[1] for r in rows], ignore_index=True)
    q = pd.concat([r[2] for r in rows], ignore_index=True)
    raw_q = q["raw"].map(json.loads)
    # privacy-zeroed / blank X,Y: not geolocated when the neighbourhood is published,
    # else no_coordinates with their reason
    nc = q[q["reason"] == "no_coordinates"]
    xy = [(r["X"].strip(), r["Y"].strip()) for r in raw_q[nc.index]]
    assert all(t in {("0", "0"), ("0.0", "0.0"), ("", "")} for t in xy)
    assert all(r["NEIGHBOURHOOD"].strip() == "" for r in raw_q[nc.index])
    ungeo = inc[inc["lon"].isna()]
    assert len(nc) + len(ungeo) >= 22_400  # README: 22,505 rows with X = Y = 0 or blank
    ex = ungeo["extras"].map(json.loads)
    zero = ex.map(lambda e: e.get("x_utm", "").strip() in {"0", "0.0", ""})
    assert (
        zero.sum() >= 20_000
        and ex[zero].map(lambda e: "privacy" in e["not_geolocated"] or "blank" in e["not_geolocated"]).all()
    )
    # every loaded row whose raw time was 00:00 is time-unknown; others known
    loc = inc["occurred_from"].dt.tz_convert("America/Vancouver")
    midnight = (loc.dt.hour == 0) & (loc.dt.minute == 0)
    assert (~inc.loc[midnight, "time_known"]).all()
    assert inc.loc[~midnight, "time_known"].all()
    assert midnight.sum() > 5_000  # most 00:00 rows are person offences, with no point for privacy
    # UTM -> WGS84 lands in Vancouver and inside the agency bbox
    geo = inc[inc["lon"].notna()]
    assert geo["lon"].between(-123.3, -122.98).all() and geo["lat"].between(49.18, 49.33).all()
    # ids are unique although ~10k rows are exact repeats of another row
    assert inc["id"].is_unique and inc["id"].str.fullmatch(r"van-[0-9a-f]{16}-\d+").all()
    assert (inc["id"].str.endswith("-1")).sum() >= 1  # true repeats that are loaded


def test_vancouver_dst_edges(tmp_path):
    """Nonexistent (spring-forward) and ambiguous (fall-back) wall times, explicitly."""
    csv = tmp_path / "v.csv"
    csv.write_text(
        "TYPE,YEAR,MONTH,DAY,HOUR,MINUTE,HUNDRED_BLOCK,NEIGHBOURHOOD,X,Y\n"
        "Mischief,2024,3,10,2,30,1XX MAIN ST,Strathcona,493000,5458000\n"  # gap: 02:30 does not exist
        "Mischief,2024,11,3,1,30,1XX MAIN ST,Strathcona,493000,5458000\n"  # 01:30 happens twice
        "Mischief,2024,7,1,0,0,1XX MAIN ST,Strathcona,493000,5458000\n"  # placeholder 00:00
        "Mischief,2024,7,1,0,0,1XX MAIN ST,Strathcona,493000,5458000\n"  # its exact repeat
        "Mischief,2024,2,30,10,0,1XX MAIN ST,Strathcona,493000,5458000\n"  # no such date
    )
    inc, q = read("vancouver", csv)
    assert len(inc) == 4 and len(q) == 1
    assert q["reason"].tolist() == ["unparseable_time"] and "2024/2/30" in q["detail"][0]
    t = inc["occurred_from"].tolist()
    # 02:30 PST (clock not yet moved) = 10:30 UTC = 03:30 PDT
    assert t[0] == pd.Timestamp("2024-03-10 10:30", tz="UTC")
    # 01:30 ambiguous -> the first (PDT, UTC-7) occurrence
    assert t[1] == pd.Timestamp("2024-11-03 08:30", tz="UTC")
    ex = [json.loads(s) for s in inc["extras"]]
    assert ex[0]["dst"] == "nonexistent" and ex[1]["dst"] == "ambiguous" and "dst" not in ex[2]
    assert inc["time_known"].tolist() == [True, True, False, False]
    assert inc["id"][2].endswith("-0") and inc["id"][3].endswith("-1") and inc["id"][2][:-2] == inc["id"][3][:-2]
    # re-reading gives the same ids (idempotent re-ingest)
    assert read("vancouver", csv)[0]["id"].tolist() == inc["id"].tolist()


def test_localize_matches_zoneinfo():
    """The vectorised converter agrees with zoneinfo on ordinary times across a year."""
    from zoneinfo import ZoneInfo

    naive = pd.Series(pd.date_range("2024-01-01", "2025-01-01", freq="37min"))
    utc, note = localize(naive, "America/Chicago")
    z = ZoneInfo("America/Chicago")
    ok = note.isna()
    ref = [pd.Timestamp(t.to_pydatetime().replace(tzinfo=z)).tz_convert("UTC") for t in naive[ok]]
    assert (utc[ok].reset_index(drop=True) == pd.Series(ref).astype("datetime64[ns, UTC]")).all()
    assert note.eq("ambiguous").sum() == 2 and note.eq("nonexistent").sum() == 2  # 60 min / 37 min steps


def test_content_id_is_pinned():
    """The content hash must not change between runs or installs (ids are primary keys)."""
    raw = pd.DataFrame({"TYPE": ["Mischief"], "YEAR": ["2024"], "X": ["493000.5"]})
    assert content_ids(raw).tolist() == [content_ids(raw.copy()).tolist()[0]]
    assert content_ids(raw).tolist() == ["c29d82b2fd299280-0"]


def test_chicago_codes_and_coordinates(city_reads, shared_data, tmp_path):
    inc = pd.concat([r[1] for r in city_reads("chicago")], ignore_index=True)
    assert inc["offense_code"].str.fullmatch(r"\d{4}|\d{3}[A-Z]").all()
    assert (inc["offense_code"] == "0266").any() and (inc["offense_code"] == "031A").any()
    fbi = inc["extras"].map(lambda s: json.loads(s).get("fbi_code"))
    assert fbi.str.fullmatch(r"\d{2}[A-Z]?").all()
    assert zfill_code(pd.Series(["266", "31A", "0110", "", "X1"]), 4).tolist() == ["0266", "031A", "0110", "", "X1"]
    assert pad_digits(pd.Series(["2", "4A", "01A", "26"]), 2).tolist() == ["02", "04A", "01A", "26"]
    # State Plane fallback: blank lat/lon -> projected x/y lands within a few metres of the published point
    path = city_files(shared_data, "chicago")[0]
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).head(50)
    cut = raw.copy()
    cut.loc[:, ["latitude", "longitude", "location"]] = ""
    p = tmp_path / "c.csv"
    cut.to_csv(p, index=False)
    a, _ = read("chicago", path)
    b, qb = read("chicago", p)
    a = a.set_index("id").loc[b["id"]]
    dx = (a["lon"].to_numpy() - b["lon"].to_numpy()) * 85_000
    dy = (a["lat"].to_numpy() - b["lat"].to_numpy()) * 111_000
    assert len(b) == 50 and np.hypot(dx, dy).max() < 5.0
    assert all(json.loads(s).get("xy_projected") is True for s in b["extras"])


OFFENSE_COLS = {
    "philadelphia": ("text_general_code", None),
    "vancouver": ("TYPE", None),
    "chicago": ("primary_type", "description"),
}


@pytest.mark.parametrize("city", ["philadelphia", "vancouver", "chicago"])
def test_taxonomy_covers_every_offense_in_the_data(city, shared_data):
    """No offense value falls through to 'other' unless the taxonomy says so."""
    tax = load_taxonomy(city)
    off, det = OFFENSE_COLS[city]
    for path in city_files(shared_data, city):
        cols = [c for c in (off, det) if c]
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=cols).drop_duplicates()
        cat, unmapped = tax.categorise(raw[off], raw[det] if det else None)
        assert unmapped == {}, f"{path.name}: not in data/taxonomy/{city}.csv: {unmapped}"
        assert cat.isin(CATEGORIES).all()
    # the unmapped report works (a value not listed is counted, never silently 'other') ...
    cat, unmapped = tax.categorise(pd.Series(["Definitely Not An Offense", None]))
    assert cat.tolist() == ["other", "other"] and unmapped == {"Definitely Not An Offense": 1}


def test_unmapped_offense_reaches_the_batch(shared_data, tmp_path):
    """... and the reader carries it to the pipeline summary."""
    src = city_files(shared_data, "vancouver")[0]
    raw = pd.read_csv(src, dtype=str, keep_default_na=False).head(3)
    raw.loc[0, "TYPE"] = "Brand New Offence"
    f = tmp_path / "v.csv"
    raw.to_csv(f, index=False)
    assert read_batch("vancouver", f).unmapped == {"Brand New Offence": 1}


def test_outside_boundary_uses_metre_buffer(tmp_path, shared_data):
    """A point 150 m outside the Philadelphia boundary is kept; 1 km outside is not used as
    a point: with its district it is loaded not geolocated, without one quarantined."""
    import geopandas as gpd

    ag = load_agency("philadelphia")
    path = ag.find_file(ag.boundary_file)
    assert path is not None, f"police_districts.geojson not found under {shared_data}"
    g = gpd.read_file(path).to_crs(32618).union_all()
    # Walk east from the boundary's easternmost point (the Delaware river edge).
    minx, miny, maxx, maxy = g.bounds
    y = (miny + maxy) / 2
    from shapely.geometry import LineString

    edge = g.intersection(LineString([(minx - 1, y), (maxx + 1, y)])).bounds[2]
    pts = gpd.GeoSeries.from_xy([edge + 150, edge + 1000], [y, y], crs=32618).to_crs(4326)
    rows = "\n".join(
        f"x,1,x,{i},01,1,2024-03-01 12:00:00+00,2024-03-01,07:00:00,7,20240100000{i}.00000000,1 BLOCK A ST,600,Thefts,{p.x:.8f},{p.y:.8f}"
        for i, p in enumerate(pts)
    )
    f = tmp_path / "p.csv"
    f.write_text(
        "the_geom,cartodb_id,the_geom_webmercator,objectid,dc_dist,psa,dispatch_date_time,dispatch_date,"
        "dispatch_time,hour,dc_key,location_block,ucr_general,text_general_code,point_x,point_y\n" + rows + "\n"
    )
    inc, q = read("philadelphia", f)
    assert inc["id"].tolist() == ["202401000000", "202401000001"] and len(q) == 0
    assert inc["lon"].notna().tolist() == [True, False]
    assert "250 m" in json.loads(inc["extras"][1])["not_geolocated"]
    f.write_text(f.read_text().replace(",1,x,1,01,", ",1,x,1,,"))  # no district: unusable
    inc, q = read("philadelphia", f)
    assert inc["id"].tolist() == ["202401000000"]
    assert q["reason"].tolist() == ["outside_boundary"] and "250 m" in q["detail"][0]


def test_bad_format_is_a_clear_error(shared_data):
    from rtcc_geo.ingest.base import IngestError

    with pytest.raises(IngestError, match=r"missing column.*--format"):
        read("chicago", city_files(shared_data, "vancouver")[0])
