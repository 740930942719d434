"""PostGIS at scale: append cost and time-filtered counts on a partitioned store.

Issue 16, acceptance 2 for PostGIS ("appending one month into a big store costs
<= 1.5x appending it into an empty store"), plus partition pruning. Builds, in
a fresh schema of the given database, a seeded synthetic store of ``--rows``
incidents over ``--months`` months (one source, ids increasing with time like
CAD numbers, points drawn from a fixed set of addresses), written month chunk
by month chunk through ``PostGISStore.write_incidents``. Then, in the same run:

* **append**: the next month (``rows / months`` incidents) written into the
  big store, and the same month into an empty store of its own (fresh schema),
  ``--repeat`` times with different months; printed: seconds, the ratio
  big / empty (the reference is the empty store measured in the same run);
  also the same month re-sent (all duplicates) into the big store;
* **counts with a time filter**: ``counts(9, ("cell",), one month)`` vs the same
  over the whole store, the ratio, and the partitions the plan reads (EXPLAIN).

* with ``--migrate-rows N``: converting an old store (schema up to 050, N rows
  with res 7..9 rolled up from res 10, as stores were written before) with
  ``migrate()``: seconds, rows/s, rows whose cells were corrected.

Timings are best-of ``--repeat``. The schemas are dropped at the end unless ``--keep``.

    python bench/postgis_scale.py [--db URL] [--rows 3000000] [--months 36] [--repeat 2] [--migrate-rows 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/rtcc_test"
SOURCE, TZ = "synthcity", "America/New_York"
START = pd.Timestamp("2021-01-01", tz="UTC")
CATEGORIES = np.array(["theft", "burglary", "assault", "robbery", "vehicle", "vandalism", "drugs", "other"])


class Synth:
    """Seeded synthetic incidents, one month at a time (memory: one month)."""

    def __init__(self, seed: int = 16, n_addresses: int = 60_000):
        from rtcc_geo import grid
        from rtcc_geo.schema import DEFAULT_RESOLUTIONS

        self.rng = np.random.default_rng(seed)
        # Addresses clustered around a few centres (a city has hot blocks); cells computed once each.
        centres = self.rng.normal([-75.16, 39.98], 0.05, size=(40, 2))
        pick = self.rng.integers(0, len(centres), n_addresses)
        pts = centres[pick] + self.rng.normal(0, 0.012, size=(n_addresses, 2))
        self.lon, self.lat = np.round(pts[:, 0], 5), np.round(pts[:, 1], 5)
        self.cells = grid.index_points(self.lat, self.lon, DEFAULT_RESOLUTIONS)
        self.seq = 0

    def month(self, k: int, n: int) -> pd.DataFrame:
        from rtcc_geo.schema import conform, h3_column

        m0 = START + pd.DateOffset(months=k)
        span = int(((m0 + pd.DateOffset(months=1)) - m0).total_seconds())
        secs = np.sort(self.rng.integers(0, span, n))
        addr = self.rng.integers(0, len(self.lon), n)
        df = pd.DataFrame(
            {
                "id": [f"S{i:010d}" for i in range(self.seq, self.seq + n)],
                "source": SOURCE,
                "occurred_from": m0 + pd.to_timedelta(secs, unit="s"),
                "category": CATEGORIES[self.rng.integers(0, len(CATEGORIES), n)],
                "offense_raw": "synthetic",
                "district": (addr % 25).astype(str),
                "lon": self.lon[addr],
                "lat": self.lat[addr],
            }
        )
        for r, c in self.cells.items():
            df[h3_column(r)] = c[addr]
        self.seq += n
        df = conform(df)
        df["extras"] = pd.array([pd.NA] * n, dtype="string")
        return df


def schema_url(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema},public"


def timed(f, *args):
    t = time.perf_counter()
    out = f(*args)
    return time.perf_counter() - t, out


def plan_partitions(store, res, by, q) -> list[str]:
    import psycopg

    query, params, _ = store._counts_sql(res, by, q)
    with psycopg.ClientCursor(store.conn) as cur:
        plan = cur.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0][0]["Plan"]

    def rels(p):
        out = [p["Relation Name"]] if "Relation Name" in p else []
        for c in p.get("Plans", []):
            out += rels(c)
        return out

    return sorted(r for r in rels(plan) if r.startswith("incidents"))


def migrate_old_store(db: str, n: int, keep: bool) -> None:
    """Time ``migrate()`` converting an old, unpartitioned store of ``n`` rows with rolled-up cells."""
    import psycopg

    from rtcc_geo import grid
    from rtcc_geo.schema import INCIDENT_COLUMNS, h3_column
    from rtcc_geo.store.migrate import migrate
    from rtcc_geo.store.pgwire import copy_in
    from rtcc_geo.store.postgis import _incidents_wire

    schema = f"bench_{uuid.uuid4().hex[:8]}_old"
    synth, months = Synth(seed=55), 12
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with psycopg.connect(schema_url(db, schema), autocommit=True) as conn:
            migrate(conn, upto=50)
            conn.execute("INSERT INTO sources VALUES (%s, %s)", (SOURCE, TZ))
            stale = 0
            for k in range(months):
                df = synth.month(k, n // months)
                new = df[[h3_column(r) for r in (7, 8, 9)]].to_numpy().copy()
                for r in (7, 8, 9):  # what old stores hold: the parents of the res-10 cell
                    df[h3_column(r)] = grid.parent(df["h3_r10"].to_numpy(), r)
                stale += int((df[[h3_column(r) for r in (7, 8, 9)]].to_numpy() != new).any(axis=1).sum())
                with conn.transaction():
                    copy_in(conn, "incidents", _incidents_wire(df), columns=list(INCIDENT_COLUMNS))
            rows = conn.execute("SELECT count(*) FROM incidents").fetchone()[0]
            dt, applied = timed(migrate, conn)
            fixed = conn.execute(
                "SELECT count(*) FROM incidents WHERE h3_r9 <> rtcc_h3_parent(h3_r10, 9) "
                "OR h3_r8 <> rtcc_h3_parent(h3_r10, 8) OR h3_r7 <> rtcc_h3_parent(h3_r10, 7)"
            ).fetchone()[0]
        print(
            f"migrate an old store of {rows:,} rows ({', '.join(applied)}): {dt:.1f} s, {rows / dt:,.0f} rows/s; "
            f"{stale:,} rows had rolled-up cells that differ from their own, {fixed:,} now differ from the roll-up"
        )
    finally:
        if not keep:
            with psycopg.connect(db, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", default=os.environ.get("RTCC_TEST_DATABASE_URL", DEFAULT_DB))
    p.add_argument("--rows", type=int, default=3_000_000, help="incidents in the big store (default 3,000,000)")
    p.add_argument("--months", type=int, default=36, help="months they span (default 36)")
    p.add_argument("--repeat", type=int, default=2, help="appends measured per store (best of; default 2)")
    p.add_argument("--migrate-rows", type=int, default=0, help="also time converting an old store of N rows")
    p.add_argument("--keep", action="store_true", help="keep the bench schemas")
    args = p.parse_args(argv)
    if args.migrate_rows:
        migrate_old_store(args.db, args.migrate_rows, args.keep)

    import psycopg

    from rtcc_geo.store.base import Query
    from rtcc_geo.store.postgis import PostGISStore

    per_month = args.rows // args.months
    tag = uuid.uuid4().hex[:8]
    big_schema = f"bench_{tag}_big"
    schemas = [big_schema]
    with psycopg.connect(args.db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {big_schema}")
    synth = Synth()
    try:
        big = PostGISStore(schema_url(args.db, big_schema))
        big.register_source(SOURCE, TZ)
        t0 = time.perf_counter()
        for k in range(args.months):
            big.write_incidents(synth.month(k, per_month))
            if (k + 1) % 12 == 0 or k + 1 == args.months:
                print(f"  built {k + 1:3d} months, {big.count():,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
        big.conn.execute("ANALYZE incidents")
        big.conn.execute("ANALYZE incident_keys")
        n_big = big.count()
        print(
            f"big store: {n_big:,} incidents in {args.months} monthly partitions "
            f"({time.perf_counter() - t0:.0f} s to build)"
        )

        t_empty, t_big, t_dup = [], [], []
        for rep in range(args.repeat):
            month = synth.month(args.months + rep, per_month)
            empty_schema = f"bench_{tag}_empty{rep}"
            schemas.append(empty_schema)
            with psycopg.connect(args.db, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {empty_schema}")
            with PostGISStore(schema_url(args.db, empty_schema)) as empty:  # migrations run here, untimed
                empty.register_source(SOURCE, TZ)
                dt, r = timed(empty.write_incidents, month)
                assert r.inserted == len(month), r
                t_empty.append(dt)
            dt, r = timed(big.write_incidents, month)
            assert r.inserted == len(month), r
            t_big.append(dt)
            dt, r = timed(big.write_incidents, month)
            assert r.inserted == 0, r
            t_dup.append(dt)
            print(
                f"  append {len(month):,} rows: empty {t_empty[-1]:.2f} s, big {t_big[-1]:.2f} s, "
                f"re-sent {t_dup[-1]:.2f} s",
                flush=True,
            )

        # counts with a time filter (one month, local bounds) vs the whole store
        m = (START + pd.DateOffset(months=args.months // 2)).tz_localize(None)
        q_month = Query(source=SOURCE, start=m, end=m + pd.DateOffset(months=1))
        big.counts(9, ("cell",), q_month)  # warm the catalogue caches
        t_month = min(timed(big.counts, 9, ("cell",), q_month)[0] for _ in range(args.repeat))
        t_all = min(timed(big.counts, 9, ("cell",), Query(source=SOURCE))[0] for _ in range(args.repeat))
        n_month = int(big.counts(9, ("cell",), q_month)["n"].sum())
        parts_month = plan_partitions(big, 9, ("cell",), q_month)
        parts_all = plan_partitions(big, 9, ("cell",), Query(source=SOURCE))
        big.close()
    finally:
        if not args.keep:
            with psycopg.connect(args.db, autocommit=True) as conn:
                for s in schemas:
                    conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")

    e, b, d = min(t_empty), min(t_big), min(t_dup)
    print()
    print(f"append one month ({per_month:,} rows), best of {args.repeat}:")
    print(f"  into an empty store            {e:7.2f} s  {per_month / e:10,.0f} rows/s")
    print(f"  into the store of {n_big / 1e6:4.1f} M rows    {b:7.2f} s  {per_month / b:10,.0f} rows/s")
    print(f"  the same month re-sent (dups)  {d:7.2f} s  {per_month / d:10,.0f} rows/s")
    print(f"  ratio big / empty: {b / e:.2f}x (goal <= 1.5x: {'met' if b / e <= 1.5 else 'NOT met'})")
    print()
    print(f"counts(9, cell) with a one-month filter ({n_month:,} incidents) vs the whole store, best of {args.repeat}:")
    print(f"  one month   {t_month:7.3f} s   plan reads {len(parts_month)} partition(s): {', '.join(parts_month)}")
    print(f"  all months  {t_all:7.3f} s   plan reads {len(parts_all)} partitions")
    print(f"  ratio month / all: {t_month / t_all:.3f} (rows ratio {n_month / n_big:.3f})")
    try:
        print(f"(machine load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
