"""Ingest speed: end to end into the embedded store vs merely reading the CSVs,
and the PostGIS COPY path vs ``GeoDataFrame.to_postgis``.

Both run by default (``--only embedded`` / ``--only postgis`` for one).

Embedded: acceptance 1 of issue 16 ("ingest at disk speed"). In one run, on
the 24 Philadelphia monthly CSVs (329,405 rows):

* reference: ``pyarrow.csv.read_csv`` of every file (default options, best of
  ``--repeat`` runs, taken before and after the ingests so machine load hits
  both alike);
* ingest: ``rtcc_geo.ingest.ingest_files("philadelphia", files, store)`` into
  a fresh ``EmbeddedStore`` (read, validate, H3, block normalisation, store
  write incl. dedup and the quarantine), then the same again (re-ingest:
  every row already stored).

Prints rows/s of each, the two ratios the issue asks for (ingest / read >=
0.25; re-ingest / ingest >= 1) and where the ingest's time goes, per step
(summed over files, from ``FileSummary.phases``; a file's store write runs in a
writer thread beside the next file's read and validation, so the steps can add
up to more than the ingest took: printed as "overlap"): read (CSV -> canonical
frame), validate (quarantine rules, conform), H3 (all resolutions), normalise
(block addresses), store write (``write_incidents`` + ``write_quarantine``)
and, from the re-ingest, dedup (the store write when every row is a
duplicate, i.e. the key check alone).

    .venv/bin/python bench/ingest.py --only embedded [--files N] [--repeat K] [--floor]

``--floor`` also times, alone and in the same run, the parts no ingest can skip
(each best of ``--repeat``, wall and CPU): H3 at res 7-10 of each file's
distinct points with the point cache cold (what a first ingest computes), and
the sort + GeoParquet write of the final rows by month; their sum with the
reference read is the least an ingest can take, so ``reference / (read + H3 +
write)`` is the highest ratio any ingest can reach, before validation, block
normalisation, deduplication or the quarantine cost anything.

PostGIS: acceptance 5 of the foundation issue: loads the same canonical rows
(Philadelphia 2023-2024 as read and validated by ``rtcc_geo.ingest``, plus the
seeded synthetic city; >= 300k rows) into PostGIS twice, each into its own
fresh schema of the same database, and prints rows/s for both and their ratio
(goal >= 10x):

* ours: ``PostGISStore.write_incidents`` = pyarrow CSV -> ``COPY`` into a TEMP
  staging table -> ``INSERT ... SELECT`` of the new keys into ``incidents``
  (primary key, GiST on geom, 6 btree indexes, generated geometry, jsonb);
* reference: ``GeoDataFrame.to_postgis`` (SQLAlchemy + GeoAlchemy2 over
  psycopg 3) of the same rows and columns with point geometry, into a new table
  with GeoAlchemy2's GiST index and no other index or key.

Only the load is timed (reading the CSVs is not). Also printed: re-ingesting
the same rows into our store (all duplicates, nothing inserted). The schemas
are dropped at the end unless ``--keep``.

    .venv/bin/python bench/ingest.py --only postgis [--db URL] [--rows N] [--no-synth]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/rtcc_test"


def load_rows(use_synth: bool, limit: int | None) -> tuple[pd.DataFrame, dict[str, str]]:
    from rtcc_geo.config import load_agency, shared_data_dir
    from rtcc_geo.ingest import read

    files = sorted((shared_data_dir() / "philadelphia").glob("incidents_20*.csv"))
    if not files:
        raise SystemExit(f"no Philadelphia extracts under {shared_data_dir()}; set RTCC_SHARED_DATA")
    t = time.perf_counter()
    frames = [read("philadelphia", f)[0] for f in files]
    tz = {"philadelphia": load_agency("philadelphia").timezone}
    print(
        f"read + validated {len(files)} Philadelphia files: {sum(map(len, frames)):,} valid rows "
        f"({time.perf_counter() - t:.1f} s)",
        flush=True,
    )
    if use_synth:
        try:
            from rtcc_geo import synth
        except ImportError:
            synth = None
        if synth is not None:
            t = time.perf_counter()
            s = synth.generate(synth.SyntheticCity())
            frames.append(s)
            tz[synth.SOURCE] = synth.TIMEZONE
            print(f"synthetic city ({synth.SOURCE}): {len(s):,} rows ({time.perf_counter() - t:.1f} s)", flush=True)
    df = pd.concat(frames, ignore_index=True)
    df = df.drop_duplicates(["source", "id"], keep="first").reset_index(drop=True)
    if limit:
        df = df.iloc[:limit].reset_index(drop=True)
    return df, tz


def schema_url(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema},public"


def read_reference(files: list[Path], repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` (wall, CPU) seconds to read every file with ``pyarrow.csv.read_csv``."""
    import pyarrow.csv as pacsv

    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        n = sum(pacsv.read_csv(f).num_rows for f in files)
        best, cpu = min(best, time.perf_counter() - t), min(cpu, time.process_time() - c)
    assert n > 0
    return best, cpu


def embedded_main(args) -> int:
    import tempfile

    from rtcc_geo.config import shared_data_dir
    from rtcc_geo.grid import backend
    from rtcc_geo.ingest import ingest_files
    from rtcc_geo.store.embedded import EmbeddedStore

    files = sorted((shared_data_dir() / "philadelphia").glob("incidents_20*.csv"))[: args.files]
    if not files:
        raise SystemExit(f"no Philadelphia extracts under {shared_data_dir()}; set RTCC_SHARED_DATA")
    # Warm-up (imports, the agency's boundary, taxonomy): one file into a throw-away store.
    with tempfile.TemporaryDirectory() as d:
        ingest_files("philadelphia", files[:1], EmbeddedStore(d))
    t_read, c_read = read_reference(files, args.repeat)
    with tempfile.TemporaryDirectory() as d:
        store = EmbeddedStore(d)
        t, c = time.perf_counter(), time.process_time()
        first = ingest_files("philadelphia", files, store)
        t_first, c_first = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        again = ingest_files("philadelphia", files, store)
        t_again, c_again = time.perf_counter() - t, time.process_time() - c
        assert again.inserted == 0 and first.inserted == first.loaded, (first.as_dict(), again.as_dict())
        assert first.read == first.loaded + first.quarantined
    t2, c2 = read_reference(files, args.repeat)
    t_read, c_read = min(t_read, t2), min(c_read, c2)
    n = first.read

    def rate(sec: float) -> str:
        return f"{n / sec:12,.0f}"

    print(
        f"Philadelphia: {len(files)} files, {n:,} rows ({first.loaded:,} loaded, {first.quarantined:,} "
        f"quarantined); H3 backend: {backend()}"
    )
    print(f"{'step':40s} {'seconds':>8s} {'rows/s':>12s} {'CPU s':>8s}")
    print(f"{'pyarrow.csv.read_csv (reference)':40s} {t_read:8.2f} {rate(t_read)} {c_read:8.2f}")
    print(f"{'ingest into an empty embedded store':40s} {t_first:8.2f} {rate(t_first)} {c_first:8.2f}")
    print(f"{'re-ingest (every row already stored)':40s} {t_again:8.2f} {rate(t_again)} {c_again:8.2f}")
    r1, r2 = t_read / t_first, t_first / t_again
    print()
    print(f"ingest speed / read speed:      {r1:.3f}x (goal >= 0.25: {'met' if r1 >= 0.25 else 'NOT met'})")
    print(f"re-ingest speed / ingest speed: {r2:.3f}x (goal >= 1: {'met' if r2 >= 1 else 'NOT met'})")
    # CPU seconds (all threads) are far less sensitive to other processes on the machine than wall time.
    print(f"the same in CPU time:           {c_read / c_first:.3f}x and {c_first / c_again:.3f}x")

    def phase(summary, name: str, cpu: bool = False) -> float:
        return sum((f.cpu if cpu else f.phases).get(name, 0.0) for f in summary.files)

    print()
    print(
        "where the first ingest's time goes (summed over files; CPU: the step's own thread, H3 and normalise "
        "inside validate):"
    )
    print(f"  {'step':40s} {'seconds':>8s} {'share':>7s} {'CPU s':>8s}")
    rows = [
        ("read (CSV -> canonical frame)", "read"),
        ("validate (rules, quarantine, conform)", "validate"),
        ("H3 (res 7, 8, 9, 10)", "h3"),
        ("normalise (block addresses, notes)", "normalise"),
        ("store write (incidents + quarantine)", "store"),
        ("summary (far dates)", "summary"),
    ]
    for name, key in rows:
        sec = phase(first, key)
        cpu = f"{phase(first, key, cpu=True):8.2f}" if key not in ("h3", "normalise") else f"{'':8s}"
        print(f"  {name:40s} {sec:8.2f} {100 * sec / t_first:6.1f}% {cpu}")
    other = t_first - sum(phase(first, k) for _, k in rows)
    if other >= 0:
        print(f"  {'other (agency, boundary, bars)':40s} {other:8.2f} {100 * other / t_first:6.1f}%")
    else:  # each file is stored (writer thread) while the next is read: the steps overlap
        print(
            f"  {'overlap (store beside next file read)':40s} {-other:8.2f} {100 * -other / t_first:6.1f}%"
            "  (steps above add up to more than the ingest took)"
        )
    print(
        f"  {'dedup (store write on re-ingest)':40s} {phase(again, 'store'):8.2f} "
        f"{100 * phase(again, 'store') / t_again:6.1f}% {phase(again, 'store', cpu=True):8.2f}  (of the re-ingest)"
    )
    if args.floor:
        floor(files, args.repeat, t_read, c_read)
    try:
        print(f"(machine load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    except OSError:
        pass
    return 0


def floor(files: list[Path], repeat: int, t_read: float, c_read: float) -> None:
    """Print the irreducible parts of an ingest of ``files`` (see the module doc, ``--floor``)."""
    import tempfile

    from rtcc_geo import grid
    from rtcc_geo.ingest import ingest_files
    from rtcc_geo.store import geoparquet as gpq
    from rtcc_geo.store.embedded import EmbeddedStore

    def best(f) -> tuple[float, float]:
        bw = bc = float("inf")
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            f()
            bw, bc = min(bw, time.perf_counter() - t), min(bc, time.process_time() - c)
        return bw, bc

    with tempfile.TemporaryDirectory() as d:
        store = EmbeddedStore(d)
        ingest_files("philadelphia", files, store)
        inc = store.incidents()
    month = inc["occurred_from"].dt.strftime("%Y-%m")
    # Each file's located points (a file is a UTC month), as the ingest indexes them.
    points = [g[["lat", "lon"]].dropna().to_numpy() for _, g in inc.groupby(month)]
    tables = [gpq.arrow_rows(g) for _, g in inc.groupby(month)]

    def h3() -> None:
        grid._POINTS[:] = []  # cold: a first ingest computes every distinct point
        for p in points:
            grid.index_points(p[:, 0], p[:, 1], (7, 8, 9, 10))

    def write() -> None:
        with tempfile.TemporaryDirectory() as w:
            for i, t in enumerate(tables):
                gpq.write_table(gpq.sort_rows(t), Path(w) / f"{i}.parquet")

    t_h3, c_h3 = best(h3)
    t_w, c_w = best(write)
    grid._POINTS[:] = []
    print()
    print("floor: the parts no ingest can skip, alone (best of --repeat):")
    print(f"  {'part':52s} {'seconds':>8s} {'CPU s':>8s}")
    print(f"  {'pyarrow.csv.read_csv (reference)':52s} {t_read:8.2f} {c_read:8.2f}")
    print(f"  {'H3 res 7-10 of each file distinct points (cache cold)':52s} {t_h3:8.2f} {c_h3:8.2f}")
    print(f"  {'sort + GeoParquet write of the final rows by month':52s} {t_w:8.2f} {c_w:8.2f}")
    t_f, c_f = t_read + t_h3 + t_w, c_read + c_h3 + c_w
    print(f"  {'sum (read + H3 + write)':52s} {t_f:8.2f} {c_f:8.2f}")
    print(
        f"  highest reachable ingest / read ratio: {t_read / t_f:.3f}x wall, {c_read / c_f:.3f}x CPU "
        f"(2 cores, perfectly overlapped: {t_read / max(t_f / 2, t_read, t_h3, t_w):.3f}x wall)"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--only",
        choices=("embedded", "postgis"),
        default=None,
        help="run one of the two benches (default: both, embedded first)",
    )
    p.add_argument("--files", type=int, default=None, help="embedded: only the first N monthly files")
    p.add_argument("--repeat", type=int, default=3, help="embedded: reads of the reference (best taken)")
    p.add_argument(
        "--floor", action="store_true", help="embedded: also time the parts no ingest can skip (H3, the write)"
    )
    p.add_argument(
        "--db",
        default=os.environ.get("RTCC_TEST_DATABASE_URL", DEFAULT_DB),
        help=f"PostGIS database to create the two bench schemas in (default {DEFAULT_DB})",
    )
    p.add_argument("--rows", type=int, default=None, help="load only the first N rows")
    p.add_argument("--no-synth", action="store_true", help="Philadelphia rows only")
    p.add_argument("--keep", action="store_true", help="keep the bench schemas")
    args = p.parse_args(argv)
    if args.only != "postgis":
        embedded_main(args)
        if args.only == "embedded":
            return 0
        print()

    import geopandas as gpd
    import psycopg
    import shapely
    from sqlalchemy import create_engine

    from rtcc_geo.store.postgis import PostGISStore

    df, tz = load_rows(not args.no_synth, args.rows)
    n = len(df)
    print(f"rows to load: {n:,} ({', '.join(f'{k}: {v:,}' for k, v in df['source'].value_counts().items())})")
    tag = uuid.uuid4().hex[:8]
    ours_schema, ref_schema = f"bench_{tag}_copy", f"bench_{tag}_ref"
    with psycopg.connect(args.db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {ours_schema}")
        conn.execute(f"CREATE SCHEMA {ref_schema}")
    try:
        # --- ours ---------------------------------------------------------------
        store = PostGISStore(schema_url(args.db, ours_schema))  # migrations run here, untimed
        for name, zone in tz.items():
            store.register_source(name, zone)
        t = time.perf_counter()
        r = store.write_incidents(df)
        t_ours = time.perf_counter() - t
        assert r.inserted == n, r
        t = time.perf_counter()
        r2 = store.write_incidents(df)
        t_again = time.perf_counter() - t
        store.close()

        # --- reference: GeoDataFrame.to_postgis ----------------------------------
        gdf = gpd.GeoDataFrame(df, geometry=shapely.points(df["lon"].to_numpy(), df["lat"].to_numpy()), crs="EPSG:4326")
        sa_url = args.db.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(sa_url)
        t = time.perf_counter()
        gdf.to_postgis("incidents", engine, schema=ref_schema, index=False)
        t_ref = time.perf_counter() - t
        engine.dispose()
        # What it takes to give the reference table what ours has: the key and indexes.
        t = time.perf_counter()
        with psycopg.connect(args.db, autocommit=True) as conn:
            ref = f"{ref_schema}.incidents"
            conn.execute(f"ALTER TABLE {ref} ADD PRIMARY KEY (source, id)")
            for cols in ("h3_r7", "h3_r8", "h3_r9", "h3_r10", "source, occurred_from", "category"):
                conn.execute(f"CREATE INDEX ON {ref} ({cols})")
        t_ref_idx = time.perf_counter() - t
        with psycopg.connect(args.db) as conn:
            n_ref = conn.execute(f"SELECT count(*) FROM {ref_schema}.incidents").fetchone()[0]
            n_ours = conn.execute(f"SELECT count(*) FROM {ours_schema}.incidents").fetchone()[0]
        assert n_ref == n_ours == n, (n_ref, n_ours, n)
    finally:
        if not args.keep:
            with psycopg.connect(args.db, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {ours_schema} CASCADE")
                conn.execute(f"DROP SCHEMA IF EXISTS {ref_schema} CASCADE")

    print()
    print(f"{'path':44s} {'rows':>9s} {'seconds':>8s} {'rows/s':>10s}")
    print(f"{'ours: write_incidents (COPY, key + 7 indexes)':44s} {n:9,d} {t_ours:8.2f} {n / t_ours:10,.0f}")
    print(f"{'reference: GeoDataFrame.to_postgis':44s} {n:9,d} {t_ref:8.2f} {n / t_ref:10,.0f}")
    print(
        f"{'reference + the same key and 6 btree indexes':44s} {n:9,d} {t_ref + t_ref_idx:8.2f} "
        f"{n / (t_ref + t_ref_idx):10,.0f}"
    )
    print(
        f"{'ours again (re-ingest, all duplicates)':44s} {n:9,d} {t_again:8.2f} {n / t_again:10,.0f}"
        f"   inserted {r2.inserted}"
    )
    print()
    ratio = t_ref / t_ours
    print(
        f"speed-up of our COPY path over to_postgis: {ratio:.1f}x (goal >= 10x: {'met' if ratio >= 10 else 'NOT met'})"
    )
    print(f"speed-up over to_postgis + the same key and indexes: {(t_ref + t_ref_idx) / t_ours:.1f}x")
    print(
        "note: GeoDataFrame.to_postgis itself loads with COPY (geopandas' _psql_insert_copy, CSV from "
        "Python's csv module) into a table with one GiST index and no key."
    )
    try:
        load = os.getloadavg()[0]
        print(f"(machine load average during the run: {load:.1f} on {os.cpu_count()} cores)")
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
