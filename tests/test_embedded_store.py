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
    pd.testing.assert_frame_equal(
        got, city.sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True)
    )


def test_unknown_source_is_refused(tmp_path, city):
    with pytest.raises(ValueError, match="register_source"):
        EmbeddedStore(tmp_path).write_incidents(city.iloc[:3])


def test_hour_of_week_counts_equal_direct_pandas(store, city):
    got = store.counts(9, ("cell", "hour_of_week", "category"))
    known = city[city.time_known]
    local = known.occurred_from.dt.tz_convert("America/New_York")
    ref = (
        pd.DataFrame(
            {"cell": known.h3_r9, "hour_of_week": local.dt.day_of_week * 24 + local.dt.hour, "category": known.category}
        )
        .groupby(["cell", "hour_of_week", "category"])
        .size()
        .rename("n")
        .reset_index()
    )
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
    ref = city[
        (local >= pd.Timestamp("2024-03-10", tz="America/New_York"))
        & (local < pd.Timestamp("2024-03-11", tz="America/New_York"))
        & city.category.isin(["burglary", "theft"])
        & local.dt.hour.between(8, 19)
        & city.time_known
    ]
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


# --- the partitioned layout (issue 16) ------------------------------------------


def _month_parts(root, month):
    return sorted((root / "incidents" / f"source={synth.SOURCE}" / f"month={month}").glob("part-*.parquet"))


def test_hive_layout_is_plain_geoparquet_sorted_by_cell(store, city, tmp_path):
    """Any tool reads the tree: pyarrow's hive reader sees every row once with its source
    and month; geopandas reads a part's points; rows are sorted by cell."""
    import geopandas as gpd
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    t = ds.dataset(tmp_path / "incidents", format="parquet", partitioning="hive").to_table(
        columns=["id", "source", "month", "occurred_from", "h3_r7", "h3_r10"]
    )
    assert t.num_rows == len(city) and len(set(t.column("id").to_pylist())) == len(city)
    months = t.column("occurred_from").to_pandas().dt.strftime("%Y-%m")
    assert (months == t.column("month").to_pandas()).all()
    part = _month_parts(tmp_path, "2024-05")[0]
    g = gpd.read_parquet(part)
    assert g.crs.to_epsg() == 4326 and (g.geometry.x == g["lon"]).all() and (g.geometry.y == g["lat"]).all()
    r7 = pq.read_table(part, columns=["h3_r7"]).column("h3_r7").to_numpy()
    assert (np.diff(r7) >= 0).all()


def test_cell_filter_prunes_row_groups_by_statistics(tmp_path, city, monkeypatch):
    import pyarrow.dataset as ds

    from rtcc_geo.store import geoparquet

    monkeypatch.setattr(geoparquet, "ROW_GROUP_SIZE", 200)
    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    s.write_incidents(city)
    part = _month_parts(tmp_path, "2024-05")[0]
    frag = next(ds.dataset(part, format="parquet").get_fragments())
    one = int(pd.read_parquet(part, columns=["h3_r7"])["h3_r7"].iloc[-1])
    expr = ds.field("h3_r7") == one
    groups = frag.num_row_groups
    kept = len(list(frag.split_by_row_group(filter=expr)))
    assert groups > 5 and kept < groups / 2  # statistics let the scan skip most row groups
    assert s.count(Query(cells=(one,), cells_res=7)) == int((city.h3_r7 == one).sum())


def test_append_adds_a_part_and_leaves_other_months_alone(tmp_path, city):
    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    may = city[city.occurred_from.dt.strftime("%Y-%m") == "2024-05"]
    june = city[city.occurred_from.dt.strftime("%Y-%m") == "2024-06"]
    s.write_incidents(may.iloc[::2])
    s.write_incidents(june)
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "incidents").rglob("*.parquet")}
    w = s.write_incidents(may)  # half new, half already stored
    assert w.inserted == len(may) - len(may.iloc[::2]) and w.duplicates == len(may.iloc[::2])
    after = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "incidents").rglob("*.parquet")}
    assert all(after[p] == v for p, v in before.items())  # nothing rewritten, June untouched
    assert len(_month_parts(tmp_path, "2024-05")) == 2
    assert s.count() == len(may) + len(june)
    assert set(s.incidents(Query(start="2024-05-10", end="2024-06-20")).id) == set(
        city[
            (city.occurred_from.dt.tz_convert(synth.TIMEZONE) >= pd.Timestamp("2024-05-10", tz=synth.TIMEZONE))
            & (city.occurred_from.dt.tz_convert(synth.TIMEZONE) < pd.Timestamp("2024-06-20", tz=synth.TIMEZONE))
        ].id
    )


def test_many_small_appends_are_merged_and_dedup_stays_exact(tmp_path, city):
    s = EmbeddedStore(tmp_path)
    s.max_parts = 3
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    may = city[city.occurred_from.dt.strftime("%Y-%m") == "2024-05"]
    chunks = np.array_split(np.arange(len(may)), 7)
    for c in chunks:
        assert s.write_incidents(may.iloc[c]).inserted == len(c)
        assert len(_month_parts(tmp_path, "2024-05")) <= 3
    assert s.write_incidents(may).inserted == 0
    got = s.incidents()
    assert len(got) == len(may) and got.id.is_unique
    pd.testing.assert_frame_equal(
        got, may.sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True)
    )


def test_an_incident_moved_to_another_month_is_still_a_duplicate(tmp_path, city):
    """A corrected re-export can move an incident across months: its (source, id) is
    stored, so it is a duplicate (found through the source-wide key runs)."""
    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    s.write_incidents(city)
    moved = city.iloc[:50].copy()
    moved["occurred_from"] = moved["occurred_from"] + pd.DateOffset(months=13)  # a month with no data yet
    fresh = city.iloc[:20].assign(id=lambda d: "new-" + d["id"].astype(str))
    w = s.write_incidents(pd.concat([moved, fresh]))
    assert w.inserted == 20 and w.duplicates == 50
    assert s.count() == len(city) + 20


def _legacy_store(root, city):
    """A store as written before issue 16, by hand: incidents/<source>/<YYYY-MM>.parquet,
    keys/<source>/<YYYY-MM>.npy, and H3 columns rolled up from res 10."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rtcc_geo import grid
    from rtcc_geo.schema import CORE_DTYPES, NO_CELL, h3_column
    from rtcc_geo.store.embedded import hash_ids

    (root / "sources.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "sources.json").write_text(f'{{"{synth.SOURCE}": "{synth.TIMEZONE}"}}')
    old = city.copy()
    located = old.h3_r10 != NO_CELL
    for r in (7, 8, 9):
        old.loc[located, h3_column(r)] = grid.parent(old.loc[located, "h3_r10"].to_numpy(), r)
    month = old.occurred_from.dt.strftime("%Y-%m")
    for m, part in old.groupby(month):
        d = root / "incidents" / synth.SOURCE
        d.mkdir(parents=True, exist_ok=True)
        t = pa.Table.from_pandas(part[list(CORE_DTYPES) + [h3_column(r) for r in (7, 8, 9, 10)]], preserve_index=False)
        pq.write_table(t, d / f"{m}.parquet")
        (root / "keys" / synth.SOURCE).mkdir(parents=True, exist_ok=True)
        np.save(root / "keys" / synth.SOURCE / f"{m}.npy", np.sort(hash_ids(part["id"])))
    return old


def test_old_layout_is_read_then_migrated_with_cells_recomputed(tmp_path, city):
    import h3

    from rtcc_geo.schema import NO_CELL

    city = city.copy()
    gone = city.index[:30]  # a few not geolocated
    city.loc[gone, ["lon", "lat"]] = np.nan
    city.loc[gone, ["h3_r7", "h3_r8", "h3_r9", "h3_r10"]] = NO_CELL
    old = _legacy_store(tmp_path, city)
    assert (old.h3_r7 != city.h3_r7).mean() > 0.02  # the roll-ups really are wrong for some rows
    s = EmbeddedStore(tmp_path)
    assert s.count() == len(city)  # read as it is, before any write
    assert not (tmp_path / "incidents" / f"source={synth.SOURCE}").exists()  # reads never write

    extra = city.iloc[:5].assign(id=lambda d: "extra-" + d["id"].astype(str))
    w = s.write_incidents(pd.concat([city.iloc[:100], extra]))  # the first write migrates
    assert w.inserted == 5 and w.duplicates == 100
    assert not (tmp_path / "incidents" / synth.SOURCE).exists() and not (tmp_path / "keys" / synth.SOURCE).exists()
    got = s.incidents()
    want = (
        pd.concat([city, extra]).sort_values(["source", "occurred_from", "id"], kind="mergesort").reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(got, want)  # rows, ids, times kept; cells are those of city (correct)
    located = got[got.h3_r10 != NO_CELL]
    for r in (7, 8, 9, 10):
        ref = [h3.str_to_int(h3.latlng_to_cell(a, b, r)) for a, b in zip(located.lat, located.lon)]
        assert located[f"h3_r{r}"].tolist() == ref
    assert (got.loc[got.lon.isna(), ["h3_r7", "h3_r10"]] == NO_CELL).all().all()
    assert s.migrate() == 0  # nothing left to convert
    assert s.write_incidents(city).inserted == 0


def test_a_migration_interrupted_before_deleting_the_old_file_counts_each_row_once(tmp_path, city):
    import shutil

    _legacy_store(tmp_path, city)
    keep = tmp_path / "keep"
    shutil.copytree(tmp_path / "incidents" / synth.SOURCE, keep)
    s = EmbeddedStore(tmp_path)
    assert s.migrate() > 0
    shutil.copytree(keep, tmp_path / "incidents" / synth.SOURCE)  # as if the deletes never happened
    assert s.count() == len(city)
    assert s.write_incidents(city).inserted == 0 and s.count() == len(city)
    assert not (tmp_path / "incidents" / synth.SOURCE).exists()


_PEAK = """
import json, sys
from rtcc_geo.store.embedded import EmbeddedStore

def kb(key):
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1])

s = EmbeddedStore(sys.argv[1], create=False)
s.count()  # imports and first-use allocations out of the way
open("/proc/self/clear_refs", "w").write("5")  # peak (VmHWM) := current RSS, so it measures only what follows
base = kb("VmRSS")
if sys.argv[2] == "counts":
    n = int(s.counts(9, ("cell",))["n"].sum())
    assert int(s.counts(8, ("category", "hour_of_week"))["n"].sum()) <= n
else:  # the control: what materialising the rows costs
    n = len(s.incidents(columns=["id", "h3_r9", "occurred_from"]))
print(json.dumps({"n": n, "peak_mb": (kb("VmHWM") - base) / 1024}))
"""


def _peak(root, mode: str) -> dict:
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK, str(root), mode], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_counts_memory_does_not_grow_with_the_rows(tmp_path_factory):
    """``counts`` streams part by part: from a store of 24 months to one 6x larger (1.8 M
    rows, 144 months) its peak RSS (measured from after the imports) barely moves, while
    reading the same rows' three columns into memory (the control) grows ~6x."""
    base = synth.generate(
        synth.SyntheticCity(seed=11, start="2024-01-01", end="2024-02-01", daily_rate=450)
    )  # ~12.5 k rows

    def build(copies: int):
        root = tmp_path_factory.mktemp(f"store{copies}")
        s = EmbeddedStore(root)
        s.register_source(synth.SOURCE, synth.TIMEZONE)
        for first in range(0, copies, 24):
            batch = []
            for c in range(first, min(first + 24, copies)):
                b = base.copy()
                b["id"] = f"c{c}-" + b["id"].astype(str)
                b["occurred_from"] = b["occurred_from"] - pd.DateOffset(months=c)
                batch.append(b)
            s.write_incidents(pd.concat(batch, ignore_index=True))
        return root, copies * len(base)

    (small, n_small), (big, n_big) = build(24), build(144)
    assert n_big > 1_750_000
    s_small, s_big = _peak(small, "counts"), _peak(big, "counts")
    assert (s_small["n"], s_big["n"]) == (n_small, n_big)
    c_small, c_big = _peak(small, "rows"), _peak(big, "rows")
    assert (c_small["n"], c_big["n"]) == (n_small, n_big)
    growth, control_growth = s_big["peak_mb"] - s_small["peak_mb"], c_big["peak_mb"] - c_small["peak_mb"]
    print(
        f"counts peak {s_small['peak_mb']:.0f} -> {s_big['peak_mb']:.0f} MB, "
        f"rows control {c_small['peak_mb']:.0f} -> {c_big['peak_mb']:.0f} MB"
    )
    assert control_growth > 120, control_growth  # the test can see memory that grows with the rows ...
    # ... and counts' peak stays near-flat (the Arrow scanner's read-ahead and memory pool reach a
    # plateau: ~70 MB on a 10 M-row store of 768 parts, measured), far below the rows' growth.
    # (Measured growth 29-52 MB against the control's 340 MB over runs: the Arrow pool's plateau
    # varies with thread timing, so the bound is a quarter of the control's growth, not a tenth.)
    assert growth < 0.25 * control_growth and s_big["peak_mb"] < 150, (growth, control_growth)


def test_key_indexes_left_behind_by_a_crash_are_brought_up_to_date(tmp_path, city):
    """A crash after a part's rename but before its key indexes were written leaves
    them behind the parts: the next write adds the missing parts' ids before trusting them."""
    import shutil

    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    a, b = city.iloc[: len(city) // 2], city.iloc[len(city) // 2 :]
    s.write_incidents(a)
    shutil.copytree(tmp_path / "keys", tmp_path / "keys_then")
    s.write_incidents(b)
    shutil.rmtree(tmp_path / "keys")
    shutil.move(tmp_path / "keys_then", tmp_path / "keys")  # the indexes as before b's write
    again = s.write_incidents(city.sample(frac=1.0, random_state=1))
    assert again.inserted == 0 and s.count() == len(city)
    assert s.write_incidents(city.iloc[:3].assign(id=lambda d: "n-" + d["id"].astype(str))).inserted == 3


def test_db_migrate_and_status_convert_an_old_embedded_store_from_the_cli(tmp_path, city):
    """``rtcc-geo db status/migrate --store DIR`` (the real CLI process) on an old-layout store."""
    import json
    import os
    import subprocess
    import sys

    _legacy_store(tmp_path, city)
    env = {k: v for k, v in os.environ.items() if k != "RTCC_DATABASE_URL"}

    def cli(*a):
        return subprocess.run(
            [sys.executable, "-m", "rtcc_geo.cli.main", "db", *a, "--store", str(tmp_path), "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    months = sorted(city.occurred_from.dt.strftime("%Y-%m").unique())
    st = cli("status")
    assert st.returncode == 1, st.stderr  # something to do: deploy scripts can check it
    assert json.loads(st.stdout)["pending"] == [f"{synth.SOURCE}/{m}" for m in months]
    mg = cli("migrate")
    assert mg.returncode == 0, mg.stderr
    out = json.loads(mg.stdout)
    assert out["converted"] == len(months) and len(out["files"]) == len(months)
    st = cli("status")
    assert st.returncode == 0 and json.loads(st.stdout)["pending"] == []
    assert EmbeddedStore(tmp_path, create=False).count() == len(city)
    assert json.loads(cli("migrate").stdout)["converted"] == 0  # idempotent


def _files(root):
    return {p: (p.stat().st_ino, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_an_append_writes_its_batch_not_the_store(tmp_path, city, monkeypatch):
    """Issue 16: an append costs O(batch). Over many small appends into a store whose
    source-wide key runs have reached their merge cap, each append writes only its
    part(s), its months' key indexes and at most ``max_merge`` hashes of runs (never
    the big runs), leaves every other month's files alone, and dedup stays exact
    (re-sends and incidents moved to another month are duplicates)."""
    from rtcc_geo.store.keyruns import KeyRuns

    cap = 1000
    monkeypatch.setattr(KeyRuns, "max_merge", cap)
    s = EmbeddedStore(tmp_path)
    s.register_source(synth.SOURCE, synth.TIMEZONE)
    months = city.occurred_from.dt.strftime("%Y-%m")
    base = city[months < "2024-04"]
    s.write_incidents(base)
    runs_dir = tmp_path / "keys" / f"source={synth.SOURCE}" / "all"
    tail = city[months >= "2024-04"]
    chunks = np.array_split(np.arange(len(tail)), 30)
    for c in chunks:
        batch = tail.iloc[c]
        touched_months = set(batch.occurred_from.dt.tz_convert("UTC").dt.strftime("%Y-%m"))
        before = _files(tmp_path)
        assert s.write_incidents(batch).inserted == len(c)
        after = _files(tmp_path)
        written = {p: after[p][1] for p in after if before.get(p) != after[p]}
        run_bytes = sum(n for p, n in written.items() if p.parent == runs_dir)
        assert run_bytes <= 8 * (cap + len(c)) + 2 * 128, run_bytes  # .npy headers are 128 bytes
        for p in written:  # nothing of another month, nor the big runs
            month = next((d.name[6:] for d in p.parents if d.name.startswith("month=")), None)
            assert month is None or month in touched_months, p
    # The first write's run (all of base) is larger than the cap: never rewritten.
    runs = KeyRuns(runs_dir, None).runs()
    assert runs[0][0] == 1 and len(np.load(runs[0][2], mmap_mode="r")) == len(base)
    n = len(city)
    assert len(runs) <= 2 * n / cap + np.log2(cap / (len(tail) / 30)) + 3, [r[:2] for r in runs]
    # Exact dedup through all those runs: everything again, and incidents moved across months.
    assert s.write_incidents(city.sample(frac=1.0, random_state=2)).inserted == 0
    moved = city.iloc[::97].copy()
    moved["occurred_from"] = moved["occurred_from"] - pd.DateOffset(months=3)
    w = s.write_incidents(pd.concat([moved, city.iloc[:7].assign(id=lambda d: "x-" + d["id"].astype(str))]))
    assert w.inserted == 7 and w.duplicates == len(moved)
    got = s.incidents(columns=["id"])
    assert len(got) == n + 7 and got.id.is_unique


def test_key_runs_merge_work_is_bounded_and_lookups_exact(tmp_path):
    """:class:`KeyRuns` alone: however many batches, no add writes more than the batch
    and one merged run of at most ``max_merge`` hashes, the number of runs stays near ``2 N / C + log2(C / B)``,
    and every hash added is in exactly one live run."""
    from rtcc_geo.store.embedded import _save_npy
    from rtcc_geo.store.keyruns import KeyRuns

    written = []

    def save(path, a):
        written.append(len(a))
        _save_npy(path, a)

    cap, b = 4000, 250
    runs = KeyRuns(tmp_path, save, max_merge=cap)
    rng = np.random.default_rng(5)
    added = []
    for i in range(120):
        h = rng.integers(0, 2**63, b).astype(np.uint64)
        written.clear()
        runs.add(i, i, h)
        added.append(h)
        assert len(written) <= 2 and sum(written) <= cap + b, written
    live = list(runs.arrays())
    assert len(live) <= 2 * 120 * b / cap + np.log2(cap / b) + 2, [len(k) for k in live]
    every = np.sort(np.concatenate(added))
    np.testing.assert_array_equal(np.sort(np.concatenate([np.asarray(k) for k in live])), every)
    assert all(np.all(np.diff(k.astype(np.float64)) >= 0) for k in live)
