"""Memory is bounded by the grid and the batch, not by the number of incidents.

A synthetic embedded store (rtcc_geo.synth's city with from/to windows and date-only
rows): one 4-week draw repeated for four years, so every monthly partition has the
same size and only their number grows. A fresh process analyses the first year
(~53 k incidents), then all four (~211 k), and reports its peak RSS (VmHWM) after
each; the growth is compared, in the same run, with the growth of the pre-batch way
(reading every row of the query at once, ~1 kB an incident). Temporal signatures,
emerging hot spots and Gi* hot spots must grow less than a fifth as much, and the
batched results must equal the one-shot ones. (Per-cell signatures and cubes also
grow with cells x months, the grid in time; that is not rows, so it is kept small
here: signatures overall and per category, the cube at res 8.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.store import Query

BLOCKS = 52  # 4-week blocks: four years
BATCH = "5000"
TZ = "America/New_York"
SMALL_END = "2025-01-01"  # the first year


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    """One 4-week draw of the synthetic city repeated 52 times, 28 days apart (new ids
    each time), written through the store API as source ``synth``."""
    from rtcc_geo.store.embedded import EmbeddedStore
    from rtcc_geo.synth import SyntheticCity, generate

    base = generate(SyntheticCity(daily_rate=160, start="2024-01-01", end="2024-01-29"))
    store = EmbeddedStore(tmp_path_factory.mktemp("synth_memory"))
    store.register_source("synth", TZ)
    reps = []
    for j in range(BLOCKS):
        d = base.copy()
        d["source"] = "synth"
        d["id"] = d["id"] + f"-{j}"
        for c in ("occurred_from", "occurred_to", "reported_at"):
            d[c] = d[c] + pd.Timedelta(days=28 * j)
        reps.append(d)
    store.write_incidents(pd.concat(reps, ignore_index=True))
    return store


_CHILD = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")


def peak_rss():
    # VmHWM: this process image's own peak. ru_maxrss would start at the parent's peak,
    # as Linux carries it across fork + exec (pytest, the parent, is large).
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore

root, mode, small_end = sys.argv[1:4]
store = EmbeddedStore(root, create=False)
peaks, sizes = [], []
for end in (small_end, None):
    q, tz = Query(source="synth", end=end), store.sources()["synth"]
    sizes.append(int(store.counts(7, ("month",), q)["n"].sum()))  # store.count() holds every row's keys
    if mode == "batched":
        from rtcc_geo import hotspots as hs
        from rtcc_geo.temporal.cube import build_cube
        from rtcc_geo.temporal.emerging import emerging_hotspots
        from rtcc_geo.temporal.signatures import signature_from_store

        signature_from_store(store, q, by=None)
        signature_from_store(store, q, by="category")
        emerging_hotspots(build_cube(store, 8, "month", q, study_area="data"))
        hs.hotspots(store, "gistar", 9, q, boundary="incidents", permutations=0)
    else:  # the pre-batch way: every row of the query at once
        from rtcc_geo.temporal.signatures import signature_columns, signature_query, temporal_signature

        df = store.incidents(signature_query(q, "category"), columns=signature_columns("category", 9))
        temporal_signature(df, tz, by="category")
        del df
    peaks.append(peak_rss())
print(json.dumps({"peaks": peaks, "sizes": sizes}))
"""


def _peaks(store, mode: str) -> dict:
    env = {**os.environ, "RTCC_BATCH_ROWS": BATCH, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store.root), mode, SMALL_END],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_peak_memory_grows_far_less_than_the_rows(synth_store):
    ours, ref = _peaks(synth_store, "batched"), _peaks(synth_store, "one_shot")
    small, big = ours["sizes"]
    assert ref["sizes"] == ours["sizes"] and big >= 3.9 * small and big > 150_000
    grow_ref = ref["peaks"][1] - ref["peaks"][0]
    grow_ours = ours["peaks"][1] - ours["peaks"][0]
    print(
        f"\n{small:,} -> {big:,} incidents: peak RSS one-shot {ref['peaks'][0] / 2**20:.0f} -> "
        f"{ref['peaks'][1] / 2**20:.0f} MB, batched {ours['peaks'][0] / 2**20:.0f} -> {ours['peaks'][1] / 2**20:.0f} MB"
    )
    # The reference must show the rows' cost, or this test could not fail.
    assert grow_ref > 40 * (big - small)  # > 40 bytes an extra row
    assert grow_ours < 0.2 * grow_ref


def test_batched_signature_with_windows_equals_one_shot(synth_store):
    from rtcc_geo.temporal.signatures import signature_from_store, temporal_signature

    q = Query(source="synth", start="2024-03-01", end="2024-11-01")
    df = synth_store.incidents(q.with_(include_unknown_time=True))
    assert df["occurred_to"].notna().sum() > 300 and (~df["time_known"]).sum() > 300  # windows and date-only rows
    for by in ("category", "cell"):
        for unknown in ("exclude", "spread"):
            a = signature_from_store(synth_store, q, by=by, res=9, unknown_time=unknown, max_rows=3000)
            geo = df[df["h3_r9"] != 0] if by == "cell" else df
            b = temporal_signature(geo, TZ, by=by, res=9, unknown_time=unknown)
            for part in ("hour", "dow", "hour_of_week", "month", "season", "trend"):
                pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), check_exact=False, rtol=1e-12)
            assert (a.n_incidents, a.n_time_unknown) == (b.n_incidents, b.n_time_unknown)
            # Aoristic weights sum to one per incident kept.
            kept = len(geo) - (b.n_time_unknown if unknown == "exclude" else 0)
            assert np.isclose(a.hour_of_week.to_numpy().sum(), kept)


_BACKTEST_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")


def peak_rss():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) * 1024


import pandas as pd

from rtcc_geo.forecast.backtest import backtest, default_models
from rtcc_geo.forecast.data import Counts
from rtcc_geo.forecast.io import counts_from_store
from rtcc_geo.scope import Scope
from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore

root, mode, first = sys.argv[1:4]
store = EmbeddedStore(root, create=False)
scope = Scope(store, Query(source="synth"), None, study_area="incidents")
peaks, sizes = [], []
for years in (1, 4):
    start = pd.Timestamp(first) + pd.DateOffset(years=4 - years)  # the last `years` years, same origins
    end = pd.Timestamp(first) + pd.DateOffset(years=4) - pd.Timedelta(days=8)
    if mode == "counts":  # the store's own aggregation, the floor under ours
        q = Query(source="synth", start=str(start.date()), end=str(end.date()), geolocated=True)
        sizes.append(int(store.counts(10, ("cell", "day"), q)["n"].sum()))
        store.counts(10, ("cell",), q)
        peaks.append(peak_rss())
        continue
    if mode == "ours":
        c = counts_from_store(scope, None, "all", start=str(start.date()), end=str(end.date()), res=10, agency="synth")
    else:  # the rows control: every row of the span in memory, then events
        df = store.incidents(Query(source="synth", start=str(start.date()), end=str(end.date()), geolocated=True))
        c = Counts.from_incidents(df, res=10, tz="America/New_York", origin=start, end=end)
        del df
    models = {k: m for k, m in default_models("7d").items() if k in ("naive", "prospective", "stkde", "sepp")}
    o0 = end - pd.Timedelta(days=28)
    r = backtest(c, models, o0, o0 + pd.Timedelta(days=21), "7d")
    sizes.append(c.n_events)
    peaks.append(peak_rss())
    del c, r
print(json.dumps({"peaks": peaks, "sizes": sizes}))
"""


def test_backtest_memory_grows_far_less_than_the_rows(synth_store):
    """The bench's backtest (default models, weekly origins, ``all`` from a first day) on one
    and on four years: on top of what the store's own ``counts`` by cell and day take (which
    grow with the rows at this size too: ~220 bytes a row here), it adds under a quarter of what
    holding the rows adds (the non-zero cell-days, not the incidents; SEPP's lag pairs are
    walked, not listed)."""

    def run(mode):
        r = subprocess.run(
            [sys.executable, "-c", _BACKTEST_CHILD, str(synth_store.root), mode, "2024-01-01"],
            capture_output=True,
            text=True,
            env={**os.environ, "RTCC_BATCH_ROWS": BATCH},
            timeout=900,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    ours, ref, floor = run("ours"), run("rows"), run("counts")
    small, big = ours["sizes"]
    assert ref["sizes"] == ours["sizes"] == floor["sizes"] and big >= 3.5 * small and big > 150_000
    grow_ref, grow_ours, grow_floor = (r["peaks"][1] - r["peaks"][0] for r in (ref, ours, floor))
    mb = [f"{r['peaks'][0] / 2**20:.0f} -> {r['peaks'][1] / 2**20:.0f} MB" for r in (ref, ours, floor)]
    print(f"\n{small:,} -> {big:,} incidents: peak RSS rows {mb[0]}, backtest {mb[1]}, store counts {mb[2]}")
    assert grow_ref > 40 * (big - small)  # the control shows the rows' cost
    # A quarter of the rows' growth on top of the floor: measured 1-16 MB over the floor against
    # 111 MB for the rows (allocator noise varies between runs); holding the rows would add ~100 %.
    assert grow_ours < grow_floor + 0.25 * grow_ref


@pytest.fixture(scope="module")
def same_keys_stores(tmp_path_factory):
    """Two embedded stores with the same keys and 4x the rows: twelve 4-week blocks of the
    synthetic city (~320 k incidents), and the same rows four times over under new ids
    (~1.3 M). Cells, categories, districts and times are the same, so every count by any key
    has the same groups in both; only the rows (per part file: ~27 k against ~107 k) differ.
    Row groups of 8 k rows, so both stores' files hold whole row groups (the unit a scan
    reads; the store's own default is 64 k) and the small one is not below the batch size."""
    from rtcc_geo.store import geoparquet as gpq
    from rtcc_geo.store.embedded import EmbeddedStore
    from rtcc_geo.synth import SyntheticCity, generate

    base = generate(SyntheticCity(daily_rate=1000, start="2024-01-01", end="2024-01-29"))
    blocks = []
    for j in range(12):
        d = base.copy()
        d["source"] = "synth"
        d["id"] = d["id"] + f"-{j}"
        for c in ("occurred_from", "occurred_to", "reported_at"):
            d[c] = d[c] + pd.Timedelta(days=28 * j)
        blocks.append(d)
    one = pd.concat(blocks, ignore_index=True)
    stores = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gpq, "ROW_GROUP_SIZE", 8192)
        for copies in (1, 4):
            store = EmbeddedStore(tmp_path_factory.mktemp(f"same_keys_{copies}"))
            store.register_source("synth", TZ)
            frames = []
            for k in range(copies):
                d = one.copy()
                d["id"] = d["id"] + f"-c{k}"
                frames.append(d)
            store.write_incidents(pd.concat(frames, ignore_index=True))
            stores.append(store)
    return stores


_SCAN_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")


def peak_rss():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) * 1024


from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore

root, mode = sys.argv[1:3]
store = EmbeddedStore(root, create=False)
q = Query(source="synth")
if mode == "counts":  # what counts, hot spots, CompStat and emerging (the cube) ask the store for
    a = store.counts(9, ("cell",), q)
    b = store.counts(9, ("category", "district", "month"), q)
    c = store.counts(7, ("day", "category", "district"), q)
    d = store.counts(9, ("cell", "week"), q)
    out = {"n": int(b["n"].sum()), "groups": [len(a), len(b), len(c), len(d)]}
else:  # the rows control: the columns a count by category x district x month needs, in Arrow
    import pyarrow.dataset as ds

    t = ds.dataset(f"{root}/incidents", format="parquet", partitioning="hive").to_table(
        columns=["category", "district", "occurred_from"]
    )
    out = {"n": t.num_rows, "groups": None}
print(json.dumps({**out, "peak": peak_rss()}))
"""


def test_count_scan_memory_does_not_grow_with_the_rows(same_keys_stores):
    """The counts behind counts, hot spots, CompStat and emerging hold one row group and
    grid-sized partials, so with the same groups and 4x the rows (per part file) their peak
    RSS grows by less than a quarter of what merely holding three of the rows' columns in
    Arrow grows. Measured: 0-1 MB against 28-33 MB for the rows; before (a dataset scanner
    over the files decoding ahead of the counts, and Arrow's mimalloc pool) 22-40 MB."""

    def run(store, mode):
        r = subprocess.run(
            [sys.executable, "-c", _SCAN_CHILD, str(store.root), mode],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    small, big = same_keys_stores
    ours = [run(s, "counts") for s in (small, big)]
    rows = [run(s, "rows") for s in (small, big)]
    assert ours[0]["groups"] == ours[1]["groups"]  # the same groups ...
    assert ours[1]["n"] == 4 * ours[0]["n"] == 4 * rows[0]["n"] == rows[1]["n"] > 1_000_000  # ... 4x the rows
    grow_ours, grow_rows = ours[1]["peak"] - ours[0]["peak"], rows[1]["peak"] - rows[0]["peak"]
    print(
        f"\n{ours[0]['n']:,} -> {ours[1]['n']:,} incidents, same groups: peak RSS counts "
        f"{ours[0]['peak'] / 2**20:.0f} -> {ours[1]['peak'] / 2**20:.0f} MB, rows (Arrow, 3 columns) "
        f"{rows[0]['peak'] / 2**20:.0f} -> {rows[1]['peak'] / 2**20:.0f} MB"
    )
    assert grow_rows > 15 * (ours[1]["n"] - ours[0]["n"])  # the control shows the rows' cost (~25 bytes a row)
    assert grow_ours < 0.25 * grow_rows


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jemalloc is chosen on Linux only")
def test_jemalloc_is_arrows_pool_whatever_was_imported_first():
    """A notebook imports pandas (and so pyarrow) before rtcc_geo: Arrow's default pool is
    jemalloc all the same, unless the environment chose another one."""
    code = "import pandas, pyarrow as pa; import rtcc_geo; print(pa.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "jemalloc"
    env["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "system"
