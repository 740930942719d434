"""Ingest streams each file in batches of rows (``RTCC_BATCH_ROWS``): the batches give
exactly what the whole file gives, and peak memory does not grow with the file.

* real files (Philadelphia with homicide victims' numbered ids, Vancouver's content
  ids with true repeats, Chicago) ingested in batches of 2,000 rows and whole: the
  same incidents, quarantine and summaries;
* what crosses batches (ids loaded, content-hash counts) spills to disk beyond
  ``SPILL_KEYS`` and is found there exactly; far dates from a per-day tally equal
  pandas' quantiles of the days;
* a key repeated in a later batch is ``duplicate_key`` naming the first copy's row,
  as within one batch; a malformed row in a later batch hands the rest of the file
  to pandas, then to the lenient reader, and the frames are the whole-file ones;
* ``rtcc-geo ingest`` of a Philadelphia file of N and of 4N real rows, in a fresh
  process each: its peak RSS (VmHWM) grows far less than the one-batch control's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.ingest import ingest_files, iter_raw, spill
from rtcc_geo.ingest.base import iter_csv_strings, read_csv_strings
from rtcc_geo.store.embedded import EmbeddedStore

BATCH = "2000"


def _ingest_twice(fmt: str, files: list[Path], root: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    store = EmbeddedStore(root)
    sums = []
    for _ in range(2):
        d = ingest_files(fmt, files, store).as_dict()
        d.pop("seconds")
        d.pop("store")
        for f in d["files"]:
            f.pop("seconds")
        sums.append(d)
    inc = store.incidents().sort_values(["source", "id"]).reset_index(drop=True)
    q = store.quarantine().sort_values(["source", "file", "row_number"]).reset_index(drop=True)
    return inc, q, sums


@pytest.mark.parametrize(
    "fmt,pattern",
    [
        ("philadelphia", "philadelphia/incidents_2023_0[5-6].csv"),
        ("vancouver", "vancouver/crimedata_csv_AllNeighbourhoods_202[45].csv"),
        ("chicago", "chicago_sample/chicago_crimes_sample_2018.csv"),
    ],
)
def test_batches_equal_the_whole_file_on_real_data(shared_data, tmp_path, monkeypatch, fmt, pattern):
    files = sorted(shared_data.glob(pattern))
    assert files
    whole = _ingest_twice(fmt, files, tmp_path / "whole")
    monkeypatch.setenv("RTCC_BATCH_ROWS", BATCH)
    monkeypatch.setattr(spill, "SPILL_KEYS", 1_500)  # the carried ids and counts go to disk
    assert all(len(list(iter_raw(fmt, f))) > 2 for f in files)  # really streamed
    streamed = _ingest_twice(fmt, files, tmp_path / "streamed")
    pd.testing.assert_frame_equal(whole[0], streamed[0])
    pd.testing.assert_frame_equal(whole[1], streamed[1])
    assert whole[2] == streamed[2]
    first, again = streamed[2]
    assert first["inserted"] == first["loaded"] > 0 and again["inserted"] == 0
    if fmt == "philadelphia":  # victims numbered across batches (a key's victims can be far apart)
        assert whole[0]["id"].str.contains("-H").sum() > 20
    if fmt == "vancouver":  # true repeats numbered across batches
        assert (whole[0]["id"].str.endswith("-1")).sum() > 100


def test_key_repeated_in_a_later_batch_is_a_duplicate(shared_data, tmp_path, monkeypatch):
    lines = (shared_data / "philadelphia" / "incidents_2024_03.csv").read_text().splitlines()
    data = lines[1:9001]
    cols = lines[0].split(",")
    ucr, y = cols.index("ucr_general"), cols.index("point_y")
    # Two located non-homicide rows (a homicide row repeated is another victim, not a copy).
    i, j = [k for k, ln in enumerate(data) if ln.split(",")[ucr] != "100" and ln.split(",")[y]][:2]
    # The first's incident again three batches later, the second's as the very last row.
    f = tmp_path / "incidents_2024_03.csv"
    f.write_text("\n".join([lines[0], *data[:7000], data[i], *data[7000:], data[j]]) + "\n")
    whole = _ingest_twice("philadelphia", [f], tmp_path / "whole")
    monkeypatch.setenv("RTCC_BATCH_ROWS", BATCH)
    monkeypatch.setattr(spill, "SPILL_KEYS", 1_500)
    streamed = _ingest_twice("philadelphia", [f], tmp_path / "streamed")
    pd.testing.assert_frame_equal(whole[1], streamed[1])
    pd.testing.assert_frame_equal(whole[0], streamed[0])
    assert whole[2] == streamed[2]
    q = streamed[1]
    dup = q[q["reason"] == "duplicate_key"]
    assert list(dup["row_number"]) == [7001, 9002]
    assert dup["detail"].str.contains(f"repeats data row {i + 1} of this file").iloc[0]
    assert dup["detail"].str.contains(f"repeats data row {j + 1} of this file").iloc[1]


def test_malformed_rows_in_later_batches_fall_back_as_the_whole_file_does(tmp_path):
    head = "a,b,c"
    rows = [f"{i},x{i},{i % 7}" for i in range(9000)]
    rows[5000] = "5000,only-two"  # Arrow refuses it (pandas would pad it)
    rows[7500] = "7500,x,y,z,too-many"  # pandas refuses it: the lenient reader takes over
    f = tmp_path / "odd.csv"
    f.write_text("\n".join([head, *rows]) + "\n")
    whole = read_csv_strings(f)
    parts = list(iter_csv_strings(f, batch_rows=1000))
    assert len(parts) > 5 and [p.attrs["first_row"] for p in parts] == list(
        np.cumsum([0] + [len(p) for p in parts[:-1]])
    )
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), whole)
    bad = {p.attrs["first_row"] + i: why for p in parts for i, why in (p.attrs.get("malformed_rows") or {}).items()}
    assert bad == whole.attrs["malformed_rows"] and 7500 in bad


_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from rtcc_geo.cli.main import main

rc = main(["ingest", "--format", "philadelphia", "--quiet", "--json", "--store", sys.argv[1], sys.argv[2]])
with open("/proc/self/status") as f:  # VmHWM: this process's own peak (ru_maxrss starts at the parent's)
    peak = next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) * 1024
print(json.dumps({"rc": rc, "peak": peak}))
"""


def _peak(tmp_path: Path, name: str, csv: Path, batch: str) -> tuple[int, dict]:
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / name), str(csv)],
        capture_output=True,
        text=True,
        env={**os.environ, "RTCC_BATCH_ROWS": batch, "PYTHONWARNINGS": "ignore"},
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    assert out["rc"] == 0
    return out["peak"], json.loads("\n".join(lines[:-1]))


def test_ingest_memory_does_not_grow_with_the_file(shared_data, tmp_path):
    """A file of N real Philadelphia rows and one of 4N (the first rows of every month of
    2023-2024, so every month's part grows, not their number): with batches of 2,000 rows
    the peak RSS grows under a fifth of what it grows by when the file is one batch."""
    months = sorted((shared_data / "philadelphia").glob("incidents_20*.csv"))
    texts = [m.read_text().splitlines() for m in months]
    sizes = {}
    for name, k in (("small", 2_000), ("big", 8_000)):
        f = tmp_path / f"incidents_{name}.csv"
        f.write_text("\n".join([texts[0][0], *(ln for t in texts for ln in t[1 : k + 1])]) + "\n")
        sizes[name] = f
    peaks: dict[str, list[int]] = {}
    for mode, batch in (("batched", BATCH), ("one_batch", "100000000")):
        got = [_peak(tmp_path, f"{mode}_{name}", sizes[name], batch) for name in ("small", "big")]
        peaks[mode] = [p for p, _ in got]
        reads = [s["read"] for _, s in got]
        assert reads == [48_000, 192_000] and all(s["read"] == s["loaded"] + s["quarantined"] for _, s in got)
        peaks.setdefault("summaries", []).append([{k: v for k, v in s.items() if k != "seconds"} for _, s in got])  # type: ignore[arg-type]
    mb = {m: [f"{p / 2**20:.0f}" for p in peaks[m]] for m in ("batched", "one_batch")}
    print(f"\n48,000 -> 192,000 rows: peak RSS batched {mb['batched']} MB, one batch {mb['one_batch']} MB")
    grow_ref = peaks["one_batch"][1] - peaks["one_batch"][0]
    grow_ours = peaks["batched"][1] - peaks["batched"][0]
    assert grow_ref > 500 * 144_000  # the control shows the rows' cost (> 500 bytes an extra row)
    assert grow_ours < 0.2 * grow_ref
    # The same counts either way (stores differ by path only).
    a, b = peaks["summaries"]  # type: ignore[misc]
    for x, y in zip(a, b):
        x.pop("store"), y.pop("store")
        for f in (*x["files"], *y["files"]):
            f.pop("seconds")
        assert x == y


def test_sorted_runs_find_every_equal_key_in_memory_and_on_disk():
    """Keys with repeats (and 64-bit "collisions": equal keys, different texts) added in
    batches across several spilled runs and the memory part: ``find`` gives every
    (query, entry) pair a brute-force search gives, with the entry's value and text."""
    import pyarrow as pa

    rng = np.random.default_rng(7)
    runs = spill.SortedRuns(spill_keys=700, with_text=True)
    all_k, all_v, all_t = [], [], []
    for b in range(9):
        k = rng.integers(0, 900, 400).astype(np.uint64)
        v = np.arange(b * 400, (b + 1) * 400, dtype=np.int64)
        t = pa.array([f"id{x}-{y}" for x, y in zip(k, v)])
        runs.add(k, v, t)
        all_k.append(k), all_v.append(v), all_t.extend(t.to_pylist())
    assert runs.n_runs >= 4 and len(runs) == 3_600
    keys, vals = np.concatenate(all_k), np.concatenate(all_v)
    q = rng.integers(0, 1_000, 500).astype(np.uint64)
    qi, v, t = runs.find(q)
    got = sorted(zip(qi.tolist(), v.tolist(), t.to_pylist()))
    want = sorted((i, int(vals[j]), all_t[j]) for i, x in enumerate(q) for j in np.flatnonzero(keys == x))
    assert got == want and len(want) > 500
    d = runs._dir
    assert d is not None and d.is_dir()
    runs.close()
    assert not d.exists()


def test_running_count_across_spilled_runs_equals_cumcount():
    from rtcc_geo.ingest.base import RunningCount

    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2_000, 20_000).astype(np.uint64)
    want = pd.Series(keys).groupby(keys).cumcount().to_numpy()
    rc = RunningCount(spill_keys=1_000)
    got = np.concatenate([rc.number(part) for part in np.array_split(keys, 17)])
    assert rc.runs.n_runs >= 3
    np.testing.assert_array_equal(got, want)


def test_far_dates_from_day_tallies_equal_pandas_quantiles_of_the_days():
    from rtcc_geo.scope import DayTally, far_dates

    rng = np.random.default_rng(5)
    t = pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365 * 86400, 50_000), unit="s"))
    t = pd.concat([t, pd.Series(pd.to_datetime(["2005-03-01", "2005-04-02", "1999-01-01", "2040-01-01"]))])
    tally = DayTally()
    for part in np.array_split(t.sample(frac=1, random_state=1).to_numpy(), 7):
        tally.add(part)
    got = far_dates(tally)
    assert got == far_dates(t)
    day = t.dt.floor("D")
    lo, hi, gap = day.quantile(0.01), day.quantile(0.99), pd.Timedelta(days=365.25 * 5)
    assert got["before"] == int((day < lo - gap).sum()) == 3 and got["after"] == int((day > hi + gap).sum()) == 1
    assert (got["bulk_from"], got["bulk_to"]) == (str(lo.date()), str(hi.date()))
    assert (got["earliest"], got["latest"]) == ("1999-01-01", "2040-01-01")
