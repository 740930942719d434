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
from rtcc_geo.store.migrate import PYTHON_STEPS, SQL_DIR, MigrationError, load_migrations, migrate, status
from rtcc_geo.store.pgwire import copy_in
from rtcc_geo.store.postgis import PostGISError, PostGISStore, _incidents_wire

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
    return {
        "id": f"p{i}",
        "source": "philadelphia",
        "occurred_from": t,
        "lon": lon,
        "lat": lat,
        "category": "theft",
        "offense_raw": "Thefts",
        "district": "06",
        **kw,
    }


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
        steps = {n: hashlib.sha256(f"python step {n}".encode()).hexdigest() for n in PYTHON_STEPS}
        assert "055_h3_own_cells" in steps
        assert rows == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files} | steps
        where = dict(
            s.conn.execute(
                "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relname IN ('sources', 'incidents', 'quarantine', 'ingest_log', 'rtcc_tables', "
                "'schema_migrations') AND n.nspname = ANY(current_schemas(false))"
            ).fetchall()
        )
        assert where == {
            t: schema for t in ("sources", "incidents", "quarantine", "ingest_log", "rtcc_tables", "schema_migrations")
        }
        fn = s.conn.execute(
            "SELECT n.nspname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE p.proname = 'rtcc_h3_parent' AND n.nspname = %s",
            (schema,),
        ).fetchall()
        assert fn == [(schema,)]
        # idempotent: opening again applies nothing, and so does migrate()
        assert migrate(s.conn) == []
    with PostGISStore(pg_url) as s2:
        assert s2.conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(files) + len(steps)


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
    assert out["applied"] == [m.name for m in load_migrations()] and out["schema"].startswith("t_")
    assert "055_h3_own_cells" in out["applied"] and "060_partition_incidents.sql" in out["applied"]
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


def _indexdefs(conn, table: str) -> list[str]:
    return [
        d
        for (d,) in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s", (table,)
        )
    ]


def test_incident_table_types_and_indexes(store):
    types = dict(
        store.conn.execute(
            "SELECT column_name, udt_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'incidents'"
        ).fetchall()
    )
    assert types["occurred_from"] == types["occurred_to"] == types["reported_at"] == "timestamptz"
    assert types["time_known"] == "bool" and types["lon"] == types["lat"] == "float8"
    assert all(types[h3_column(r)] == "int8" for r in DEFAULT_RESOLUTIONS)
    assert types["extras"] == "jsonb" and types["geom"] == "geometry" and types["id"] == "text"
    # partitioned by range of occurred_from, a DEFAULT partition from the start
    assert store.conn.execute(
        "SELECT p.partstrat, a.attname FROM pg_partitioned_table p "
        "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
        "WHERE p.partrelid = 'incidents'::regclass"
    ).fetchone() == ("r", "occurred_from")
    assert _partitions(store.conn) == {"incidents_default": "DEFAULT"}
    # a new month gets every index of the parent
    store.write_incidents(frame([phl(1, "2024-03-10 12:00")]))
    assert set(_partitions(store.conn)) == {"incidents_default", "incidents_y2024m03"}
    for tbl in ("incidents", "incidents_y2024m03"):
        idx = _indexdefs(store.conn, tbl)
        assert len(idx) == 8, idx
        assert any("USING gist (geom)" in d for d in idx)
        assert any("USING brin (occurred_from)" in d for d in idx)
        for r in DEFAULT_RESOLUTIONS:
            assert any(f"btree (h3_r{r})" in d for d in idx)
        assert any("btree (category)" in d for d in idx)
        assert any("btree (source, occurred_from) WHERE (lon IS NULL)" in d for d in idx)
    # (source, id) is unique across the whole table, whatever the month: incident_keys
    assert any("UNIQUE" in d and "(source, id)" in d for d in _indexdefs(store.conn, "incident_keys"))
    assert store.conn.execute(
        "SELECT type, srid FROM geometry_columns WHERE f_table_schema = current_schema() AND f_table_name = 'incidents'"
    ).fetchone() == ("POINT", 4326)


def _partitions(conn) -> dict[str, str]:
    """``{partition name: bounds}`` of incidents."""
    return dict(
        conn.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits h "
            "JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhparent = 'incidents'::regclass"
        ).fetchall()
    )


# --- writes and reads ----------------------------------------------------------------

ROWS = [
    phl(1, "2024-03-10 06:30:00", extras='{"psa": "1", "note": "café \\"quoted\\""}'),
    phl(
        2, "2024-03-10 07:30:00.123456", occurred_to="2024-03-10 09:00:00", block="", district=None, offense_code="600"
    ),
    phl(3, "2024-03-11 03:00:00", lon=-75.2, lat=40.0, category="burglary", reported_at="2024-03-11 04:00:00"),
    {
        "id": "v1",
        "source": "vancouver",
        "occurred_from": "2024-03-11 07:00:00",
        "lon": -123.1,
        "lat": 49.28,
        "category": "theft",
        "district": "Kitsilano",
        "time_known": False,
    },
]


def _counts(w):
    return (w.received, w.inserted)


def test_write_and_read_back_exactly(store):
    df = frame(ROWS)
    w = store.write_incidents(df)
    assert (w.received, w.inserted) == (4, 4)
    assert w.inserted_keys == {
        ("philadelphia", "p1"),
        ("philadelphia", "p2"),
        ("philadelphia", "p3"),
        ("vancouver", "v1"),
    }
    assert store.write_incidents(df).inserted_keys == set()
    got = store.incidents()
    want = df.sort_values(["source", "occurred_from", "id"]).reset_index(drop=True)
    assert list(got.columns) == list(INCIDENT_COLUMNS)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    pd.testing.assert_frame_equal(got.drop(columns="extras"), want.drop(columns="extras"), check_exact=True)
    assert want["extras"].isna().sum() == 3  # only p1 has extras: NULL stays NULL
    assert [None if pd.isna(x) else json.loads(x) for x in got["extras"]] == [
        None if pd.isna(x) else json.loads(x) for x in want["extras"]
    ]
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
    dup = frame(
        [
            phl(9, "2024-05-01 12:00", category="first"),
            phl(9, "2024-05-02 12:00", category="second"),
            phl(1, "2024-01-01", category="changed"),
        ]
    )
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
        return sorted(
            store.conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = 'incidents'"
            ).fetchall()
        )

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
    q = pd.DataFrame(
        {
            "source": ["vancouver", "vancouver", "philadelphia"],
            "file": ["a.csv", "a.csv", "b.csv"],
            "row_number": [7, 3, 1],
            "reason": ["no_coordinates", "outside_boundary", "unparseable_time"],
            "detail": ["X = Y = 0", None, "bad"],
            "raw": ['{"X": "0", "Y": "0"}', '{"X": "1"}', '{"t": ""}'],
        }
    )
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
    assert store.count(Query(hours=(3, 0))) == 1  # v1 has no known hour
    assert store.count(Query(hours=(3, 0), include_unknown_time=True)) == 2
    assert store.count(Query(dows=(0,))) == 1  # day level: v1 counts
    assert store.count(Query(categories=("burglary",))) == 1
    assert store.count(Query(districts=("06",))) == 2 and store.count(Query(districts=(6,))) == 0
    assert store.count(Query(source="vancouver", start="2024-01-01")) == 1
    c = store.counts(9, ("category", "district"))
    assert c["category"].dtype == "string" and c["district"].dtype == "string"
    assert c.astype(object).where(c.notna(), None).values.tolist() == [
        ["burglary", "06", 1],
        ["theft", "06", 1],
        ["theft", "Kitsilano", 1],
        ["theft", None, 1],
    ]
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
    cells = [
        h3.api.basic_int.latlng_to_cell(float(a), float(b), 15)
        for a, b in zip(rng.uniform(-80, 80, 200), rng.uniform(-180, 180, 200))
    ]
    got = store.conn.execute(
        "SELECT c, r, rtcc_h3_parent(c, r) FROM unnest(%s::bigint[]) c, generate_series(0, 15) r", (cells,)
    ).fetchall()
    assert len(got) == 200 * 16
    for c, r, p in got:
        assert p == h3.api.basic_int.cell_to_parent(c, r)
    c9 = h3.api.basic_int.cell_to_parent(cells[0], 9)
    assert store.conn.execute("SELECT rtcc_h3_parent(%s, 10)", (c9,)).fetchone()[0] is None  # no finer parent


# --- derived tables --------------------------------------------------------------------


def test_put_get_table_keeps_types_and_order(store):
    df = pd.DataFrame(
        {
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
        },
        index=[10, 11, 12],
    )
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
    users = pd.DataFrame(
        {
            "username": ["ana", "ben"],
            "role": ["commander", "analyst"],
            "password_hash": ["$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "$2b$12$abc/def."],
            "active": [True, False],
        }
    )
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


# --- partitions -------------------------------------------------------------------------


def _where_rows(conn) -> dict[str, str]:
    """``{id: partition holding it}``."""
    return dict(conn.execute("SELECT id, tableoid::regclass::text FROM incidents").fetchall())


def test_months_are_utc_partitions_created_on_demand(store):
    # 2024-03-31 22:00 in New York is 2024-04-01 02:00Z: the UTC month decides.
    store.write_incidents(
        frame(
            [
                phl(1, "2024-03-01 00:00"),
                phl(2, "2024-03-31 23:59:59.999999"),
                phl(3, "2024-04-01 02:00"),
                phl(4, "1999-12-31 23:00"),
                phl(5, "2024-07-15 12:00"),
            ]
        )
    )
    store.conn.execute("SET TimeZone = 'UTC'")  # bounds print in the session's zone
    assert _partitions(store.conn) == {
        "incidents_default": "DEFAULT",
        "incidents_y1999m12": "FOR VALUES FROM ('1999-12-01 00:00:00+00') TO ('2000-01-01 00:00:00+00')",
        "incidents_y2024m03": "FOR VALUES FROM ('2024-03-01 00:00:00+00') TO ('2024-04-01 00:00:00+00')",
        "incidents_y2024m04": "FOR VALUES FROM ('2024-04-01 00:00:00+00') TO ('2024-05-01 00:00:00+00')",
        "incidents_y2024m07": "FOR VALUES FROM ('2024-07-01 00:00:00+00') TO ('2024-08-01 00:00:00+00')",
    }
    where = _where_rows(store.conn)
    assert where == {
        "p1": "incidents_y2024m03",
        "p2": "incidents_y2024m03",
        "p3": "incidents_y2024m04",
        "p4": "incidents_y1999m12",
        "p5": "incidents_y2024m07",
    }
    assert store.conn.execute("SELECT count(*) FROM incidents_default").fetchone()[0] == 0
    # a month written again creates nothing new
    assert store.write_incidents(frame([phl(6, "2024-03-15")])).inserted == 1
    assert len(_partitions(store.conn)) == 5


def test_a_key_is_unique_across_months(store):
    store.write_incidents(frame([phl(1, "2024-03-10 12:00"), phl(2, "2024-03-11 12:00")]))
    # re-sent with another time (another month, even another year): a duplicate
    r = store.write_incidents(
        frame([phl(1, "2024-07-04 12:00", category="changed"), phl(2, "2023-01-01"), phl(3, "2024-07-04 13:00")])
    )
    assert (r.received, r.inserted, r.inserted_keys) == (3, 1, {("philadelphia", "p3")})
    assert _where_rows(store.conn) == {
        "p1": "incidents_y2024m03",
        "p2": "incidents_y2024m03",
        "p3": "incidents_y2024m07",
    }
    assert store.conn.execute("SELECT category FROM incidents WHERE id = 'p1'").fetchone()[0] == "theft"
    # the database enforces it for any insert, by hand too, into any month
    with pytest.raises(psycopg.errors.UniqueViolation, match="incident_keys"):
        store.conn.execute(
            "INSERT INTO incidents (source, id, occurred_from) VALUES ('philadelphia', 'p1', '2024-07-20Z')"
        )
    # keys follow deletes; (source, id) cannot be updated; truncate clears them
    assert store.conn.execute("SELECT count(*) FROM incident_keys").fetchone()[0] == 3
    store.conn.execute("DELETE FROM incidents WHERE id = 'p2'")
    assert store.write_incidents(frame([phl(2, "2024-07-05 08:00")])).inserted == 1
    with pytest.raises(psycopg.errors.RaiseException, match="cannot be changed"):
        store.conn.execute("UPDATE incidents SET id = 'p9' WHERE id = 'p1'")
    store.conn.execute("UPDATE incidents SET category = 'x' WHERE id = 'p1'")  # other columns may change
    store.conn.execute("TRUNCATE incidents")
    assert store.conn.execute("SELECT count(*) FROM incident_keys").fetchone()[0] == 0
    assert store.write_incidents(frame([phl(1, "2024-03-10 12:00")])).inserted == 1


def test_rows_in_the_default_partition_move_when_their_month_is_created(store):
    # written by hand before the month exists: kept in DEFAULT, keyed
    store.conn.execute(
        "INSERT INTO incidents (source, id, occurred_from, lon, lat, h3_r7, h3_r8, h3_r9, h3_r10) "
        "SELECT 'philadelphia', 'h' || g, timestamptz '2024-05-02Z' + g * interval '1 hour', -75.16, 39.95, "
        "1, 2, 3, 4 FROM generate_series(1, 3) g"
    )
    assert set(_where_rows(store.conn).values()) == {"incidents_default"}
    store.write_incidents(frame([phl(1, "2024-05-20 12:00"), dict(phl(2, "2024-05-21"), id="h2")]))
    where = _where_rows(store.conn)
    assert where == {
        "h1": "incidents_y2024m05",
        "h2": "incidents_y2024m05",
        "h3": "incidents_y2024m05",
        "p1": "incidents_y2024m05",
    }  # moved, and h2 re-sent stays a duplicate
    assert store.conn.execute("SELECT count(*) FROM incident_keys").fetchone()[0] == 4
    assert store.count() == 4


def test_concurrent_writers_create_each_month_once_and_lose_nothing(pg_url):
    import threading

    stores = [PostGISStore(pg_url) for _ in range(3)]
    stores[0].register_source("philadelphia", NY)
    rounds, barrier, results, errors = 4, threading.Barrier(3), [], []

    def writer(k: int) -> None:
        try:
            for r in range(rounds):
                # every writer touches the same new months each round, with overlapping keys
                rows = [phl(f"{r}-{i}", f"{2020 + r}-{1 + i % 12:02d}-15 12:00") for i in range(k * 10, k * 10 + 40)]
                barrier.wait(timeout=60)
                results.append(stores[k].write_incidents(frame(rows)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        want = {("philadelphia", f"p{r}-{i}") for r in range(rounds) for i in range(60)}
        got = [k for w in results for k in w.inserted_keys]
        assert len(got) == len(set(got)) and set(got) == want  # each key inserted once, by one writer
        assert stores[0].count() == len(want)
        assert set(_partitions(stores[0].conn)) == {"incidents_default"} | {
            f"incidents_y{2020 + r}m{m:02d}" for r in range(rounds) for m in range(1, 13)
        }
        assert stores[0].conn.execute("SELECT count(*) FROM incidents_default").fetchone()[0] == 0
    finally:
        for s in stores:
            s.close()


def test_duplicate_check_probes_the_key_index_and_never_scans_the_store(store):
    store.write_incidents(frame([phl(i, f"2024-03-{1 + i % 28:02d} 12:00") for i in range(3000)]))

    def scans() -> tuple[int, int]:
        store.conn.execute("SELECT pg_stat_force_next_flush()")  # this session's counters, now
        return store.conn.execute(
            "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relid = 'incident_keys'::regclass"
        ).fetchone()

    before = scans()
    # a third of the store re-sent plus new rows: a hash join would read all of incident_keys
    r = store.write_incidents(frame([phl(i, "2024-04-02 12:00") for i in range(2000, 4000)]))
    assert (r.received, r.inserted) == (2000, 1000)
    after = scans()
    assert after[0] == before[0], "incident_keys was scanned"
    assert after[1] > before[1]


def _plan_relations(plan: dict) -> set[str]:
    out = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for p in plan.get("Plans", []):
        out |= _plan_relations(p)
    return out


def test_time_filters_prune_partitions(store):
    store.write_incidents(
        frame(
            [phl(f"{m}-{i}", f"2024-{m:02d}-1{i} 12:00") for m in range(1, 13) for i in range(5)]
            + [dict(ROWS[3], id=f"v{m}", occurred_from=f"2024-{m:02d}-20") for m in (3, 9)]
        )
    )
    assert len(_partitions(store.conn)) == 13

    def scanned(res, by, q):
        query, params, _ = store._counts_sql(res, by, q)
        with psycopg.ClientCursor(store.conn) as cur:  # what counts() sends: constants, merged client-side
            plan = cur.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0][0]["Plan"]
        return {r for r in _plan_relations(plan) if r.startswith("incidents")}

    # March in New York = 2024-03-01 05:00Z .. 2024-04-01 04:00Z: the March and April partitions
    q = Query(source="philadelphia", start="2024-03-01", end="2024-04-01")
    assert scanned(9, ("cell", "day"), q) == {"incidents_y2024m03", "incidents_y2024m04"}
    assert int(store.counts(9, ("cell",), q)["n"].sum()) == 5 == store.count(q)
    # naive bounds for two sources: one UTC range per source, pruned as a union
    q = Query(start="2024-09-01", end="2024-09-30")
    assert scanned(9, ("category",), q) == {"incidents_y2024m09"}
    assert store.counts(9, ("category",), q)["n"].tolist() == [6]
    # open-ended: the months from June on, and DEFAULT (it would hold rows past the last month)
    assert scanned(9, ("hour",), Query(start=pd.Timestamp("2024-06-10", tz="UTC"))) == {
        f"incidents_y2024m{m:02d}" for m in range(6, 13)
    } | {"incidents_default"}
    # without a time filter every month is read (and the empty DEFAULT partition)
    assert len(scanned(9, ("cell",), Query())) == 13


def test_inserts_are_still_announced(store, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as listener:
        listener.execute("LISTEN rtcc_incidents")
        store.write_incidents(frame(ROWS[:2]))
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
    assert [r["id"] for r in notes[0]["rows"]] == ["p1", "p2"] and notes[0]["schema"] == _schema(store.conn)


# --- migrating an old store -----------------------------------------------------------------


def test_migrate_converts_an_old_unpartitioned_store(pg_url, shared_data):
    from rtcc_geo.ingest import read

    # An old store: the schema up to 050, rows written with res 7..9 rolled up from res 10.
    want = read("philadelphia", shared_data / "philadelphia" / "incidents_2024_03.csv")[0]
    hand = frame(
        [
            phl("x1", "1999-06-01 12:00"),
            phl("x2", "2024-11-03 06:30", lon=-75.2, lat=40.0),
            phl("x3", "2024-03-31 23:30"),
        ]
    )
    hand.loc[2, ["lon", "lat"]] = np.nan  # x3 not geolocated: no point, every cell NO_CELL
    hand.loc[2, [h3_column(r) for r in DEFAULT_RESOLUTIONS]] = 0
    want = conform(pd.concat([want, hand], ignore_index=True))
    old = want.copy()
    geo = old["lon"].notna()
    for r in (7, 8, 9):
        old.loc[geo, h3_column(r)] = grid.parent(old.loc[geo, "h3_r10"].to_numpy(), r)
    stale = int((old[[h3_column(r) for r in (7, 8, 9)]] != want[[h3_column(r) for r in (7, 8, 9)]]).any(axis=1).sum())
    assert 0.02 * len(want) < stale < 0.3 * len(want)  # the roll-up really is wrong for some rows
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, upto=50)[-1] == "050_agencies.sql"
        conn.execute("INSERT INTO sources VALUES ('philadelphia', %s)", (NY,))
        with conn.transaction():
            copy_in(conn, "incidents", _incidents_wire(old), columns=list(INCIDENT_COLUMNS))
        assert conn.execute("SELECT relkind FROM pg_class WHERE oid = 'incidents'::regclass").fetchone()[0] == "r"
    assert cli(["db", "migrate", "--db", pg_url, "--json"]) == 0  # what an operator runs

    with PostGISStore(pg_url) as s:
        assert [n for (n,) in s.conn.execute("SELECT name FROM schema_migrations WHERE name > '051'")] == [
            "055_h3_own_cells",
            "060_partition_incidents.sql",
        ]
        got = s.incidents()
        # every row, id and time kept; every cell now the point's own (from an independent h3 call)
        expect = want.sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True)
        pd.testing.assert_frame_equal(got.drop(columns="extras"), expect.drop(columns="extras"), check_exact=True)
        g = got[got["lon"].notna()]
        for r in DEFAULT_RESOLUTIONS:
            own = [h3.api.basic_int.latlng_to_cell(a, b, r) for a, b in zip(g["lat"], g["lon"])]
            assert g[h3_column(r)].tolist() == own
        assert (got.loc[got["lon"].isna(), [h3_column(r) for r in DEFAULT_RESOLUTIONS]] == 0).all().all()
        # partitioned: one partition per UTC month present, nothing in DEFAULT, every key kept
        months = {f"incidents_y{t.year}m{t.month:02d}" for t in want["occurred_from"].dt.tz_convert("UTC")}
        assert set(_partitions(s.conn)) == months | {"incidents_default"}
        assert s.conn.execute("SELECT count(*) FROM incidents_default").fetchone()[0] == 0
        assert s.conn.execute("SELECT count(*) FROM incident_keys").fetchone()[0] == len(want)
        assert {
            t
            for (t,) in s.conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'incidents'::regclass AND NOT tgisinternal"
            )
        } == {
            "incidents_notify",
            "incidents_keys_insert",
            "incidents_keys_delete",
            "incidents_keys_truncate",
            "incidents_keys_immutable",
        }
        # and the store works on it: re-sent rows (another month) are duplicates, new ones land
        again = want.iloc[:50].copy()
        again["occurred_from"] = pd.Timestamp("2024-08-01 12:00", tz="UTC")
        assert s.write_incidents(again).inserted == 0
        assert s.write_incidents(frame([phl("new", "2024-08-02 12:00")])).inserted == 1
        assert s.count() == len(want) + 1
        c = s.counts(8, ("cell",), Query(start="2024-03-01", end="2024-04-01"))
        inmar = want[
            (want["occurred_from"] >= pd.Timestamp("2024-03-01", tz=NY))
            & (want["occurred_from"] < pd.Timestamp("2024-04-01", tz=NY))
            & want["lon"].notna()
        ]
        assert c.set_index("cell")["n"].to_dict() == inmar["h3_r8"].value_counts().to_dict()
