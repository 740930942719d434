"""The PostGIS store on a real PostgreSQL + PostGIS (fresh schema per test).

Expected values are worked by hand (local times across DST) or come from an
independent source (``h3.cell_to_parent``, the frame written, ``hashlib``).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import h3
import numpy as np
import pandas as pd
import psycopg
import pytest

from rtcc_geo import grid
from rtcc_geo.cli.main import main as cli
from rtcc_geo.schema import DEFAULT_RESOLUTIONS, INCIDENT_COLUMNS, conform, h3_column
from rtcc_geo.store import open_store
from rtcc_geo.store.base import Query
from rtcc_geo.store.migrate import SQL_DIR, MigrationError, load_migrations, migrate, status
from rtcc_geo.store.postgis import PostGISError, PostGISStore

pytestmark = pytest.mark.postgis

NY, VAN = "America/New_York", "America/Vancouver"


def frame(rows: list[dict]) -> pd.DataFrame:
    """Canonical incidents from a few hand-written rows (H3 from grid.index_points)."""
    df = pd.DataFrame(rows)
    for c in ("occurred_from", "occurred_to", "reported_at"):
        if c in df.columns:
            df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601")
    cells = grid.index_points(df["lat"].to_numpy(), df["lon"].to_numpy(), DEFAULT_RESOLUTIONS)
    for r, c in cells.items():
        df[h3_column(r)] = c
    return conform(df)


def phl(i, t, lon=-75.16, lat=39.95, **kw):
    return {"id": f"p{i}", "source": "philadelphia", "occurred_from": t, "lon": lon, "lat": lat,
            "category": "theft", "offense_raw": "Thefts", "district": "06", **kw}


@pytest.fixture()
def store(pg_url):
    s = PostGISStore(pg_url)
    s.register_source("philadelphia", NY)
    s.register_source("vancouver", VAN)
    yield s
    s.close()


def _schema(conn) -> str:
    return conn.execute("SELECT current_schema()").fetchone()[0]


# --- migrations -------------------------------------------------------------------

def test_migrations_recorded_with_checksums_in_the_test_schema(pg_url):
    with PostGISStore(pg_url) as s:
        schema = _schema(s.conn)
        assert schema.startswith("t_")
        rows = dict(s.conn.execute("SELECT name, checksum FROM schema_migrations").fetchall())
        files = sorted(SQL_DIR.glob("*.sql"))
        assert len(files) >= 2
        assert rows == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
        where = dict(s.conn.execute(
            "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname IN ('sources', 'incidents', 'quarantine', 'ingest_log', 'rtcc_tables', "
            "'schema_migrations') AND n.nspname = ANY(current_schemas(false))").fetchall())
        assert where == {t: schema for t in ("sources", "incidents", "quarantine", "ingest_log", "rtcc_tables",
                                              "schema_migrations")}
        fn = s.conn.execute("SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                            "WHERE p.proname = 'rtcc_h3_parent' AND n.nspname = %s", (schema,)).fetchall()
        assert fn == [(schema,)]
        # idempotent: opening again applies nothing, and so does migrate()
        assert migrate(s.conn) == []
    with PostGISStore(pg_url) as s2:
        assert s2.conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(files)


def test_migrate_refuses_a_changed_applied_file_and_rolls_back_a_failing_one(pg_url, tmp_path):
    d = tmp_path / "sql"
    shutil.copytree(SQL_DIR, d)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, d) == [m.name for m in load_migrations(d)]
        (d / "900_extra.sql").write_text("CREATE TABLE extra_a (x int);\n")
        assert migrate(conn, d) == ["900_extra.sql"]
        # an applied file edited afterwards: refuse, say which, change nothing
        (d / "900_extra.sql").write_text("CREATE TABLE extra_a (x int, y int);\n")
        (d / "901_more.sql").write_text("CREATE TABLE extra_b (x int);\n")
        with pytest.raises(MigrationError, match="900_extra.sql"):
            migrate(conn, d)
        states = {s.name: s.state for s in status(conn, d)}
        assert states["900_extra.sql"] == "changed" and states["901_more.sql"] == "pending"
        assert conn.execute("SELECT to_regclass('extra_b')").fetchone()[0] is None
        # a failing file is rolled back whole and not recorded
        (d / "900_extra.sql").write_text("CREATE TABLE extra_a (x int);\n")
        (d / "901_more.sql").write_text("CREATE TABLE extra_b (x int);\nSELECT no_such_function();\n")
        with pytest.raises(MigrationError, match="901_more.sql"):
            migrate(conn, d)
        assert conn.execute("SELECT to_regclass('extra_b')").fetchone()[0] is None
        assert {s.name: s.state for s in status(conn, d)}["901_more.sql"] == "pending"


def test_cli_db_migrate_and_status(pg_url, capsys):
    assert cli(["db", "status", "--db", pg_url, "--json"]) == 1  # nothing applied yet
    st = json.loads(capsys.readouterr().out)
    assert {m["state"] for m in st["migrations"]} == {"pending"}
    assert cli(["db", "migrate", "--db", pg_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["applied"] == [p.name for p in sorted(SQL_DIR.glob("*.sql"))] and out["schema"].startswith("t_")
    assert cli(["db", "migrate", "--db", pg_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == []
    assert cli(["db", "status", "--db", pg_url]) == 0
    assert "applied  001_core.sql" in capsys.readouterr().out
    assert cli(["db", "migrate", "--db", "postgresql://postgres@127.0.0.1:1/none"]) == 2
    assert "cannot connect" in capsys.readouterr().err


def test_unreachable_database_is_a_clear_error():
    with pytest.raises(PostGISError, match="cannot connect to PostGIS"):
        PostGISStore("postgresql://postgres@127.0.0.1:1/none")


def test_open_store_selects_postgis(pg_url):
    with open_store(db=pg_url) as s:
        assert isinstance(s, PostGISStore) and s.kind == "postgis"


# --- schema -------------------------------------------------------------------------

def test_incident_table_types_and_indexes(store):
    types = dict(store.conn.execute(
        "SELECT column_name, udt_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'incidents'").fetchall())
    assert types["occurred_from"] == types["occurred_to"] == types["reported_at"] == "timestamptz"
    assert types["time_known"] == "bool" and types["lon"] == types["lat"] == "float8"
    assert all(types[h3_column(r)] == "int8" for r in DEFAULT_RESOLUTIONS)
    assert types["extras"] == "jsonb" and types["geom"] == "geometry" and types["id"] == "text"
    idx = [d for (d,) in store.conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'incidents'")]
    assert any("USING gist (geom)" in d for d in idx)
    for r in DEFAULT_RESOLUTIONS:
        assert any(f"btree (h3_r{r})" in d for d in idx)
    assert any("btree (source, occurred_from)" in d for d in idx)
    assert any("btree (category)" in d for d in idx)
    assert any("UNIQUE" in d and "(source, id)" in d for d in idx)
    assert store.conn.execute(
        "SELECT type, srid FROM geometry_columns WHERE f_table_schema = current_schema() "
        "AND f_table_name = 'incidents'").fetchone() == ("POINT", 4326)


# --- writes and reads ----------------------------------------------------------------

ROWS = [
    phl(1, "2024-03-10 06:30:00", extras='{"psa": "1", "note": "café \\"quoted\\""}'),
    phl(2, "2024-03-10 07:30:00.123456", occurred_to="2024-03-10 09:00:00", block="", district=None,
        offense_code="600"),
    phl(3, "2024-03-11 03:00:00", lon=-75.2, lat=40.0, category="burglary", reported_at="2024-03-11 04:00:00"),
    {"id": "v1", "source": "vancouver", "occurred_from": "2024-03-11 07:00:00", "lon": -123.1, "lat": 49.28,
     "category": "theft", "district": "Kitsilano", "time_known": False},
]


def _counts(w):
    return (w.received, w.inserted)


def test_write_and_read_back_exactly(store):
    df = frame(ROWS)
    w = store.write_incidents(df)
    assert (w.received, w.inserted) == (4, 4)
    assert w.inserted_keys == {("philadelphia", "p1"), ("philadelphia", "p2"), ("philadelphia", "p3"), ("vancouver", "v1")}
    assert store.write_incidents(df).inserted_keys == set()
    got = store.incidents()
    want = df.sort_values(["source", "occurred_from", "id"]).reset_index(drop=True)
    assert list(got.columns) == list(INCIDENT_COLUMNS)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    pd.testing.assert_frame_equal(got.drop(columns="extras"), want.drop(columns="extras"), check_exact=True)
    assert want["extras"].isna().sum() == 3  # only p1 has extras: NULL stays NULL
    assert [None if pd.isna(x) else json.loads(x) for x in got["extras"]] == \
        [None if pd.isna(x) else json.loads(x) for x in want["extras"]]
    assert got.loc[got["id"] == "p2", "block"].iloc[0] == ""  # empty string is not NULL
    assert pd.isna(got.loc[got["id"] == "p2", "district"].iloc[0])
    # geom is built in SQL from lon/lat
    xy = store.conn.execute("SELECT id, ST_X(geom), ST_Y(geom), ST_SRID(geom) FROM incidents ORDER BY id").fetchall()
    assert xy == [(r["id"], r["lon"], r["lat"], 4326) for r in sorted(ROWS, key=lambda r: r["id"])]
    # columns subset, in the order asked
    sub = store.incidents(Query(source="vancouver"), columns=["h3_r9", "id"])
    assert list(sub.columns) == ["h3_r9", "id"] and sub["id"].tolist() == ["v1"]
    with pytest.raises(KeyError):
        store.incidents(columns=["nope"])


def test_reingest_adds_nothing_and_first_copy_wins(store):
    df = frame(ROWS)
    store.write_incidents(df)
    assert _counts(store.write_incidents(df)) == (4, 0)
    dup = frame([phl(9, "2024-05-01 12:00", category="first"), phl(9, "2024-05-02 12:00", category="second"),
                 phl(1, "2024-01-01", category="changed")])
    r = store.write_incidents(dup)
    assert (r.received, r.inserted, r.duplicates) == (3, 1, 2)
    cats = dict(store.conn.execute("SELECT id, category FROM incidents WHERE id IN ('p1', 'p9')").fetchall())
    assert cats == {"p1": "theft", "p9": "first"}
    assert store.count() == 5


def test_unknown_source_and_bad_extras_are_refused(store):
    with pytest.raises(ValueError, match="register_source"):
        store.write_incidents(frame([dict(phl(1, "2024-01-01"), source="nowhere")]))
    with pytest.raises(ValueError, match="JSON"):
        store.write_incidents(frame([phl(1, "2024-01-01", extras="{not json")]))
    assert store.count() == 0
    with pytest.raises(ValueError, match="time zone"):
        store.register_source("x", "Mars/Olympus")


def test_bulk_mode_rebuilds_every_index(store, monkeypatch):
    import rtcc_geo.store.postgis as pgmod

    def idx():
        return sorted(store.conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'incidents'").fetchall())

    before = idx()
    monkeypatch.setattr(pgmod, "BULK_MIN_ROWS", 3)
    rows = [phl(i, f"2024-06-01 {i % 24:02d}:00", lon=-75.16 + i * 1e-3) for i in range(40)]
    df = frame(rows + [rows[0]])  # an in-batch repeat too
    assert _counts(store.write_incidents(df)) == (41, 40)
    assert idx() == before
    assert _counts(store.write_incidents(df)) == (41, 0)  # the key is back
    # a batch over twice the table, half of it already stored: staging + bulk rebuild
    more = frame([phl(i, f"2024-06-02 {i % 24:02d}:00", lon=-75.16 + i * 1e-3) for i in range(20, 120)])
    assert _counts(store.write_incidents(more)) == (100, 80)
    assert idx() == before and store.count() == 120
    assert store.count(Query(start=pd.Timestamp("2024-06-02", tz="UTC"))) == 80  # stored p20..p39 kept
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.conn.execute("INSERT INTO incidents (source, id, occurred_from) VALUES ('philadelphia', 'p1', now())")


def test_quarantine_roundtrip_idempotent(store):
    q = pd.DataFrame({
        "source": ["vancouver", "vancouver", "philadelphia"], "file": ["a.csv", "a.csv", "b.csv"],
        "row_number": [7, 3, 1], "reason": ["no_coordinates", "outside_boundary", "unparseable_time"],
        "detail": ["X = Y = 0", None, "bad"], "raw": ['{"X": "0", "Y": "0"}', '{"X": "1"}', '{"t": ""}'],
    })
    assert _counts(store.write_quarantine(q)) == (3, 3)
    assert _counts(store.write_quarantine(q)) == (3, 0)
    got = store.quarantine("vancouver")
    assert got["row_number"].tolist() == [3, 7] and got["row_number"].dtype == "int64"
    assert [json.loads(x) for x in got["raw"]] == [{"X": "1"}, {"X": "0", "Y": "0"}]
    assert pd.isna(got["detail"].iloc[0]) and got["reason"].dtype == "string"
    assert len(store.quarantine()) == 3 and len(store.quarantine("nowhere")) == 0


# --- counts ----------------------------------------------------------------------------

def test_counts_local_time_hand_worked_across_dst(store):
    # New York springs forward at 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z); Vancouver
    # at 02:00 PST -> 03:00 PDT (10:00Z).
    store.write_incidents(frame(ROWS))
    # p1 06:30Z = Sun 01:30 EST; p2 07:30Z = Sun 03:30 EDT; p3 03:00Z Mar 11 = Sun 23:00 EDT;
    # v1 07:00Z Mar 11 = Mon 00:00 PDT, time unknown.
    c = store.counts(9, ("hour", "dow", "hour_of_week"))
    assert c.values.tolist() == [[1, 6, 145, 1], [3, 6, 147, 1], [23, 6, 167, 1]]
    assert all(str(t) == "int64" for t in c.dtypes)
    c = store.counts(9, ("hour",), Query(include_unknown_time=True))
    assert c.values.tolist() == [[0, 1], [1, 1], [3, 1], [23, 1]]
    c = store.counts(9, ("day", "week", "month"))  # day level keeps time-unknown rows
    assert c["day"].dtype == "datetime64[ns]" and c["week"].dtype == "datetime64[ns]"
    assert c.astype(str).values.tolist() == [
        ["2024-03-10", "2024-03-04", "2024-03-01", "3"],
        ["2024-03-11", "2024-03-11", "2024-03-01", "1"],
    ]
    # naive bounds are local to each source: 02:00 does not exist on both clocks,
    # so it reads as 03:00 local -> 07:00Z in New York, 10:00Z in Vancouver.
    q = Query(start="2024-03-10 02:00")
    assert store.count(q) == 3
    assert sorted(store.incidents(q)["id"]) == ["p2", "p3", "v1"]
    assert store.count(Query(end="2024-03-10 02:00")) == 1
    assert store.count(Query(start=pd.Timestamp("2024-03-11 06:59", tz="UTC"))) == 1
    assert store.count(Query(hours=(3, 0))) == 1                     # v1 has no known hour
    assert store.count(Query(hours=(3, 0), include_unknown_time=True)) == 2
    assert store.count(Query(dows=(0,))) == 1                        # day level: v1 counts
    assert store.count(Query(categories=("burglary",))) == 1
    assert store.count(Query(districts=("06",))) == 2 and store.count(Query(districts=(6,))) == 0
    assert store.count(Query(source="vancouver", start="2024-01-01")) == 1
    c = store.counts(9, ("category", "district"))
    assert c["category"].dtype == "string" and c["district"].dtype == "string"
    assert c.astype(object).where(c.notna(), None).values.tolist() == [
        ["burglary", "06", 1], ["theft", "06", 1], ["theft", "Kitsilano", 1], ["theft", None, 1]]
    empty = store.counts(9, ("cell", "day"), Query(source="nowhere"))
    assert len(empty) == 0 and empty.dtypes.to_dict() == {"cell": "int64", "day": "datetime64[ns]", "n": "int64"}


def test_counts_cells_at_every_resolution_match_h3(store):
    rng = np.random.default_rng(1)
    lon, lat = -75.16 + rng.normal(0, 0.03, 300), 39.95 + rng.normal(0, 0.03, 300)
    store.write_incidents(frame([phl(i, "2024-06-01", lon=lon[i], lat=lat[i]) for i in range(300)]))
    # Indexed resolutions (7..10) count each point's own cell; coarser ones roll up res 7.
    own = {r: [h3.api.basic_int.latlng_to_cell(a, b, r) for a, b in zip(lat, lon)] for r in (7, 9, 10)}
    for res in (3, 6, 7, 9, 10):
        cells = own[res] if res in own else [h3.api.basic_int.cell_to_parent(c, res) for c in own[7]]
        want = pd.Series(cells).value_counts().sort_index()
        got = store.counts(res, ("cell",))
        assert got["cell"].tolist() == want.index.tolist() and got["n"].tolist() == want.tolist()
    top = store.counts(6, ("cell",)).nlargest(1, "n")
    assert store.count(Query(cells=(int(top["cell"].iloc[0]),))) == int(top["n"].iloc[0])
    c8 = store.counts(8, ("cell",))
    assert store.count(Query(cells=tuple(int(x) for x in c8["cell"][:2]), cells_res=8)) == int(c8["n"][:2].sum())
    with pytest.raises(ValueError, match="finer than any indexed"):
        store.counts(11, ("cell",))
    with pytest.raises(ValueError, match="unknown count key"):
        store.counts(9, ("cell", "weekday"))


def test_sql_h3_parent_matches_h3_at_every_resolution(store):
    rng = np.random.default_rng(7)
    cells = [h3.api.basic_int.latlng_to_cell(float(a), float(b), 15)
             for a, b in zip(rng.uniform(-80, 80, 200), rng.uniform(-180, 180, 200))]
    got = store.conn.execute(
        "SELECT c, r, rtcc_h3_parent(c, r) FROM unnest(%s::bigint[]) c, generate_series(0, 15) r",
        (cells,)).fetchall()
    assert len(got) == 200 * 16
    for c, r, p in got:
        assert p == h3.api.basic_int.cell_to_parent(c, r)
    c9 = h3.api.basic_int.cell_to_parent(cells[0], 9)
    assert store.conn.execute("SELECT rtcc_h3_parent(%s, 10)", (c9,)).fetchone()[0] is None  # no finer parent


# --- derived tables --------------------------------------------------------------------

def test_put_get_table_keeps_types_and_order(store):
    df = pd.DataFrame({
        "cell": np.array([2, 1, 3], dtype="int64"),
        "z": [1.5, np.nan, -1e-300],
        "hot": [True, False, True],
        "label": pd.array(["a", None, ""], dtype="string"),
        "plain": ["x", "y", "z"],
        "at": pd.to_datetime(["2024-01-01 00:00:00.000001", None, "2024-06-01 12:00"], utc=True, format="ISO8601"),
        "day": pd.to_datetime(["2024-01-01", "2024-01-02", None]).astype("datetime64[ns]"),
        "k": pd.array([1, None, 3], dtype="Int64"),
        "flag": pd.array([True, None, False], dtype="boolean"),
        "odd name!": [1, 2, 3],
    }, index=[10, 11, 12])
    assert store.get_table("hotspots") is None
    store.put_table("hotspots", df)
    got = store.get_table("hotspots")
    want = df.reset_index(drop=True)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # replacing drops the old table, columns and all
    store.put_table("hotspots", pd.DataFrame({"only": [1]}))
    pd.testing.assert_frame_equal(store.get_table("hotspots"), pd.DataFrame({"only": [1]}))
    store.put_table("empty", df.iloc[:0])
    e = store.get_table("empty")
    assert len(e) == 0 and list(e.columns) == list(df.columns)
    long = "t" * 63
    store.put_table(long, pd.DataFrame({"a": [1]}))
    store.put_table(long[:-1] + "u", pd.DataFrame({"a": [2]}))
    assert store.get_table(long)["a"].tolist() == [1]


def test_put_table_users_and_refusals(store):
    users = pd.DataFrame({"username": ["ana", "ben"], "role": ["commander", "analyst"],
                          "password_hash": ["$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "$2b$12$abc/def."],
                          "active": [True, False]})
    store.put_table("users", users)
    pd.testing.assert_frame_equal(store.get_table("users"), users)
    assert store.conn.execute("SELECT count(*) FROM rtcc_t_users").fetchone()[0] == 2
    with pytest.raises(ValueError, match="bad table name"):
        store.put_table("Users; drop", users)
    with pytest.raises(TypeError, match="non-string"):
        store.put_table("bad", pd.DataFrame({"obj": [{"a": 1}, None]}))
    with pytest.raises(TypeError, match="dtype"):
        store.put_table("bad", pd.DataFrame({"td": pd.to_timedelta([1, 2], unit="s")}))
    with pytest.raises(TypeError, match="geometry"):
        store.put_table("bad", grid.cells_to_geodataframe(np.array([h3.api.basic_int.latlng_to_cell(40, -75, 9)])))
    assert store.get_table("bad") is None


def test_reconnects_after_the_session_is_killed(store, pg_admin_url):
    store.write_incidents(frame(ROWS))
    pid = store.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    with pytest.raises(psycopg.OperationalError):  # the call in flight fails ...
        store.count()
    assert store.count() == 4  # ... the next one runs on a new session
    assert store.conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
    store.reconnect()
    assert store.counts(9, ("category",))["n"].sum() == 4
