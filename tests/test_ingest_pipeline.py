"""The ingest pipeline and CLI into real stores: summary adds up, re-ingest adds
nothing, quarantine holds the rejects with their reason, and the embedded store
and PostGIS agree on loaded/quarantined counts for the same files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rtcc_geo.cli.main import main as cli
from rtcc_geo.ingest.base import count_data_rows
from rtcc_geo.ingest.pipeline import ingest_files
from rtcc_geo.schema import QUARANTINE_REASONS
from rtcc_geo.store.embedded import EmbeddedStore

# One file per city keeps this lean; test_ingest.py reads every real file.
SUBSET = {
    "philadelphia": ["philadelphia/incidents_2024_03.csv", "philadelphia/incidents_2024_11.csv"],
    "vancouver": ["vancouver/crimedata_csv_AllNeighbourhoods_2023.csv"],
    "chicago": ["chicago_sample/chicago_crimes_sample_2019.csv"],
}


def files_of(shared: Path, city: str) -> list[Path]:
    return [shared / f for f in SUBSET[city]]


def check_summary(s: dict, files: list[Path]) -> None:
    assert set(s) >= {"read", "loaded", "quarantined", "duplicates", "by_reason"}
    assert s["read"] == sum(count_data_rows(f) for f in files)
    assert s["read"] == s["loaded"] + s["quarantined"]
    assert sum(s["by_reason"].values()) == s["quarantined"]
    assert set(s["by_reason"]) <= set(QUARANTINE_REASONS)
    for f in s["files"]:
        assert f["read"] == f["loaded"] + f["quarantined"]


@pytest.fixture(scope="module")
def embedded_runs(shared_data, tmp_path_factory):
    """Each city ingested twice into one embedded store: (store, {city: (first, second)})."""
    store = EmbeddedStore(tmp_path_factory.mktemp("emb"))
    runs = {}
    for city in SUBSET:
        files = files_of(shared_data, city)
        first = ingest_files(city, files, store).as_dict()
        n1 = store.count()
        second = ingest_files(city, files, store).as_dict()
        assert store.count() == n1, f"{city}: re-ingest changed the row count"
        runs[city] = (first, second)
    return store, runs


@pytest.mark.parametrize("city", list(SUBSET))
def test_embedded_ingest_adds_up_and_is_idempotent(city, embedded_runs, shared_data):
    store, runs = embedded_runs
    first, second = runs[city]
    files = files_of(shared_data, city)
    check_summary(first, files)
    check_summary(second, files)
    assert first["duplicates"] == 0 and first["inserted"] == first["loaded"]
    assert first["boundary"]  # the agency's boundary file was found and used
    # the re-run reads/loads/quarantines the same, and everything loaded was already there
    for k in ("read", "loaded", "quarantined", "by_reason"):
        assert second[k] == first[k]
    assert second["duplicates"] == second["loaded"] and second["inserted"] == 0
    from rtcc_geo.store.base import Query

    assert store.count(Query(source=city)) == first["loaded"]
    q = store.quarantine(city)
    assert len(q) == first["quarantined"]  # quarantine is idempotent too
    assert q["reason"].value_counts().to_dict() == first["by_reason"]


def test_quarantine_holds_rows_without_coordinates(embedded_runs, shared_data):
    """Philadelphia rows without a point (all have a district) are loaded not geolocated;
    Vancouver's privacy rows without a neighbourhood stay quarantined with their raw row."""
    from rtcc_geo.store.base import Query

    store, runs = embedded_runs
    f = shared_data / SUBSET["philadelphia"][0]
    raw = pd.read_csv(f, dtype=str, keep_default_na=False)
    blank = raw.loc[(raw["point_x"].str.strip() == "") | (raw["point_y"].str.strip() == ""), "dc_key"]
    ungeo = store.incidents(Query(source="philadelphia", geolocated=False))
    got = ungeo["extras"].map(json.loads).map(lambda e: e["dc_key"])
    assert set(blank) <= set(got) and len(blank) > 100
    assert (
        store.counts(9, ("cell",), Query(source="philadelphia"))["n"].sum()
        == store.count(Query(source="philadelphia", geolocated=True))
        == store.count(Query(source="philadelphia")) - len(ungeo)
    )
    q = store.quarantine("vancouver")
    nc = q[q["reason"] == "no_coordinates"]
    assert len(nc) == runs["vancouver"][0]["by_reason"].get("no_coordinates", 0)
    vf = shared_data / SUBSET["vancouver"][0]
    vraw = pd.read_csv(vf, dtype=str, keep_default_na=False)
    for one in nc.itertuples():  # the raw row is the file's row number-th data row, exactly
        assert json.loads(one.raw) == vraw.iloc[int(one.row_number) - 1].to_dict()
        assert json.loads(one.raw)["NEIGHBOURHOOD"].strip() == ""


def test_cli_ingest_json_and_quarantine(shared_data, tmp_path, capsys):
    files = [str(p) for p in files_of(shared_data, "chicago")]
    args = ["ingest", "--format", "chicago", *files, "--store", str(tmp_path), "--json"]
    assert cli(args) == 0
    s = json.loads(capsys.readouterr().out)
    check_summary(s, [Path(f) for f in files])
    assert cli(args) == 0
    s2 = json.loads(capsys.readouterr().out)
    assert s2["duplicates"] == s2["loaded"] == s["loaded"]
    # readable summary
    assert cli(["ingest", "--format", "chicago", *files, "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"read {s['read']:,} = loaded {s['loaded']:,}" in out
    # quarantine listing (Chicago's sample may have none: still a clean answer)
    assert cli(["quarantine", "--store", str(tmp_path), "--json"]) == 0
    qj = json.loads(capsys.readouterr().out)
    assert qj["rows"] == s["quarantined"]


def test_cli_errors_are_clear(shared_data, tmp_path, capsys):
    van = str(files_of(shared_data, "vancouver")[0])
    assert cli(["ingest", "--format", "chicago", van, "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing column" in err and "--format" in err
    assert cli(["ingest", "--format", "generic", van, "--store", str(tmp_path)]) == 2
    assert "--mapping" in capsys.readouterr().err
    assert cli(["ingest", "--format", "vancouver", str(tmp_path / "nope.csv"), "--store", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli(["quarantine", "--store", str(tmp_path), "--reason", "bogus"]) == 2


@pytest.mark.postgis
def test_postgis_same_counts_and_idempotent(pg_url, embedded_runs, shared_data):
    """Acceptance 1 on a subset: into PostGIS the summary adds up, a re-run leaves the row
    count unchanged, and loaded/quarantined equal the embedded store's."""
    from rtcc_geo.store import open_store

    _, runs = embedded_runs
    store = open_store(db=pg_url)
    try:
        for city in SUBSET:
            files = files_of(shared_data, city)
            first = ingest_files(city, files, store).as_dict()
            n1 = store.count()
            second = ingest_files(city, files, store).as_dict()
            assert store.count() == n1
            check_summary(first, files)
            assert second["duplicates"] == second["loaded"] == first["loaded"]
            emb = runs[city][0]
            for k in ("read", "loaded", "quarantined", "by_reason"):
                assert first[k] == emb[k], (city, k)
            q = store.quarantine(city)
            assert len(q) == first["quarantined"]
    finally:
        store.close()


def test_a_file_that_fails_leaves_the_files_before_it_stored(shared_data, tmp_path):
    """Files are parsed while the previous one is written (one writer thread): a file
    that cannot be read still raises, after every file before it is stored, in order."""
    from rtcc_geo.ingest.base import IngestError

    good = files_of(shared_data, "philadelphia")
    bad = tmp_path / "incidents_bad.csv"
    bad.write_text("not,a,philadelphia,file\n1,2,3,4\n")
    store = EmbeddedStore(tmp_path / "s")
    with pytest.raises(IngestError, match="missing column"):
        ingest_files("philadelphia", [*good, bad], store)
    want = ingest_files("philadelphia", good, EmbeddedStore(tmp_path / "ref"))
    assert store.count() == want.inserted > 0
    again = ingest_files("philadelphia", good, store)
    assert again.inserted == 0 and again.duplicates == again.loaded == want.loaded
    # The summary's seconds are the loop's wall time: no more than the files' own seconds added up.
    assert 0 < again.seconds <= sum(f.seconds for f in again.files) + 0.05


def test_embedded_inserted_keys_are_the_rows_this_write_inserted(shared_data, tmp_path):
    """``inserted_keys`` (built only when asked) names exactly the new ``(source, id)`` keys."""
    from rtcc_geo.ingest import read

    inc, _ = read("philadelphia", files_of(shared_data, "philadelphia")[0])
    store = EmbeddedStore(tmp_path)
    store.register_source("philadelphia", "America/New_York")
    head = inc.iloc[:100]
    w = store.write_incidents(head)
    assert w.inserted == 100 and w.inserted_keys == {("philadelphia", i) for i in head["id"]}
    w = store.write_incidents(inc.iloc[50:150])
    assert w.inserted == 50 and w.inserted_keys == {("philadelphia", i) for i in inc["id"].iloc[100:150]}
    assert store.write_incidents(head).inserted_keys == set()
