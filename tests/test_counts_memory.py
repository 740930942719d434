"""Memory is bounded by the grid and the batch, not by the number of incidents.

A synthetic embedded store (rtcc_geo.synth's city with from/to windows and date-only
rows) holds the same year twice: as source ``synth1`` (one copy of a 4-week draw per
4 weeks, ~55 k incidents) and ``synth4`` (four copies, ~220 k): same cells, same
months, four times the rows. A fresh process analyses synth1, then synth4, and
reports its peak RSS after each; the growth between the two is compared, in the same
run, with the growth of the pre-batch way (reading every row of the query at once).
Temporal signatures, emerging hot spots and Gi* hot spots must grow less than a fifth
as much as the one-shot read, and the batched results must equal the one-shot ones.
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

BLOCKS = 13  # 4-week blocks: a year
BATCH = "5000"
TZ = "America/New_York"


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory):
    """One 4-week draw of the synthetic city repeated 13 times, 28 days apart (new ids
    each time), once per block as ``synth1`` and four times per block as ``synth4``,
    written through the store API."""
    from rtcc_geo.store.embedded import EmbeddedStore
    from rtcc_geo.synth import SyntheticCity, generate

    base = generate(SyntheticCity(daily_rate=160, start="2024-01-01", end="2024-01-29"))
    store = EmbeddedStore(tmp_path_factory.mktemp("synth_memory"))
    for source, copies in (("synth1", 1), ("synth4", 4)):
        store.register_source(source, TZ)
        reps = []
        for j in range(BLOCKS):
            for k in range(copies):
                d = base.copy()
                d["source"] = source
                d["id"] = d["id"] + f"-{j}-{k}"
                for c in ("occurred_from", "occurred_to", "reported_at"):
                    d[c] = d[c] + pd.Timedelta(days=28 * j)
                reps.append(d)
        store.write_incidents(pd.concat(reps, ignore_index=True))
    return store


_CHILD = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore

root, mode = sys.argv[1:3]
store = EmbeddedStore(root, create=False)
peaks, sizes = [], []
for src in ("synth1", "synth4"):
    q, tz = Query(source=src), store.sources()[src]
    sizes.append(store.count(q))
    if mode == "batched":
        from rtcc_geo import hotspots as hs
        from rtcc_geo.temporal.cube import build_cube
        from rtcc_geo.temporal.emerging import emerging_hotspots
        from rtcc_geo.temporal.signatures import signature_from_store

        signature_from_store(store, q, by=None)
        signature_from_store(store, q, by="cell", res=9)
        emerging_hotspots(build_cube(store, 9, "month", q, study_area="data"))
        hs.hotspots(store, "gistar", 9, q, boundary="incidents", permutations=0)
    else:  # the pre-batch way: every row of the query at once
        from rtcc_geo.temporal.signatures import signature_columns, signature_query, temporal_signature

        df = store.incidents(signature_query(q, "cell"), columns=signature_columns("cell", 9))
        temporal_signature(df, tz, by="cell", res=9)
        del df
    peaks.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps({"peaks": peaks, "sizes": sizes}))
"""


def _peaks(store, mode: str) -> dict:
    env = {**os.environ, "RTCC_BATCH_ROWS": BATCH, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(store.root), mode], capture_output=True, text=True, env=env, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_peak_memory_grows_far_less_than_the_rows(synth_store):
    ours, ref = _peaks(synth_store, "batched"), _peaks(synth_store, "one_shot")
    small, big = ours["sizes"]
    assert ref["sizes"] == ours["sizes"] and big == 4 * small and big > 150_000
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

    q = Query(source="synth1", start="2024-03-01", end="2024-11-01")
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
