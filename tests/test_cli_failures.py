"""Clear failure instead of empty success, bad CSV rows, time plausibility, progress
bars (issue 12): every check runs the real ``rtcc-geo`` command in a subprocess."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import termios

import pandas as pd
import pytest

from rtcc_geo.ingest.pipeline import ingest_files
from rtcc_geo.store.embedded import EmbeddedStore

from .test_store_concurrency import RTCC, _env

MONTH = "incidents_2024_06.csv"


def _run_all(cmds: list[list[str]], **kw) -> list[subprocess.CompletedProcess]:
    """Run commands side by side (each is a cold interpreter start: seconds)."""
    procs = [
        subprocess.Popen(RTCC + c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), **kw)
        for c in cmds
    ]
    out = []
    for p in procs:
        o, e = p.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, o, e))
    return out


@pytest.fixture(scope="module")
def small(shared_data, tmp_path_factory):
    """300 real June rows, a store holding them, and the same file with four bad rows added."""
    d = tmp_path_factory.mktemp("cli")
    text = (shared_data / "philadelphia" / MONTH).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header, data = rows[0], rows[1:301]
    good = d / "good.csv"
    _write(good, header, data)
    store = EmbeddedStore(d / "store")
    ref = ingest_files("philadelphia", [good], store)
    # Four bad rows, each a copy of a geocoded row with a new key.
    proto = next(r for r in data if r[header.index("point_x")])
    key = header.index("dc_key")

    def variant(k, **changes):
        r = list(proto)
        r[key] = f"99990000000{k}"
        for col, v in changes.items():
            r[header.index(col)] = v
        return r

    bad = d / "bad.csv"
    lines = [
        header,
        *data[:100],
        variant(1) + ["an extra field"],  # too many fields
        variant(2, dispatch_date_time="1970-01-02 10:00:00+00", dispatch_date="1970-01-02"),
        *data[100:200],
        variant(3, dispatch_date_time="2099-01-02 10:00:00+00", dispatch_date="2099-01-02"),
        variant(4, location_block="\udcff\udcfe BLOCK"),  # bytes that are not UTF-8
        *data[200:],
    ]
    _write(bad, None, lines)
    return d, good, bad, ref


def _write(path, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header is not None:
        w.writerow(header)
    w.writerows(rows)
    # surrogateescape writes the two lone surrogates back as the raw bytes 0xff 0xfe.
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogateescape"))


def test_bad_csv_rows_are_quarantined_not_the_file(small, tmp_path):
    _, _, bad, ref = small
    [r] = _run_all([["ingest", "--format", "philadelphia", "--json", "--store", str(tmp_path / "s"), str(bad)]])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["read"] == ref.read + 4 == out["loaded"] + out["quarantined"]
    assert out["loaded"] == ref.loaded  # every good row of the file is loaded
    assert out["by_reason"] == {**ref.by_reason, "invalid_field": 2, "implausible_time": 2}
    q = EmbeddedStore(tmp_path / "s").quarantine()
    details = " | ".join(q["detail"])
    assert "fields where the header has" in details and "not UTF-8" in details and "plausible window" in details
    # The floor is configurable: from 1960 the 1970 row is plausible and loads.
    s2 = ingest_files("philadelphia", [bad], EmbeddedStore(tmp_path / "s2"), time_floor="1960-01-01")
    assert s2.loaded == ref.loaded + 1 and s2.by_reason["implausible_time"] == 1


def test_clear_failures_exit_2_with_one_line(small, tmp_path):
    d, *_ = small
    store = str(d / "store")
    missing = tmp_path / "no" / "such-store"
    cases = {
        "missing store": (["hotspots", "--store", str(missing)], "does not exist"),
        "missing store (temporal)": (["temporal", "--store", str(missing)], "does not exist"),
        "from after to": (
            ["hotspots", "--store", store, "--from", "2024-06-20", "--to", "2024-06-01"],
            "is not before --to",
        ),
        "empty window": (
            ["hotspots", "--store", store, "--from", "2030-01-01", "--to", "2030-02-01"],
            "no incidents match",
        ),
        "empty window (temporal)": (
            ["temporal", "--store", store, "--from", "2030-01-01", "--to", "2030-02-01"],
            "no incidents match",
        ),
        "unknown source": (["hotspots", "--store", store, "--source", "atlantis"], "unknown source 'atlantis'"),
        "bad date": (["hotspots", "--store", store, "--from", "2024-13-45"], "bad --from"),
        "missing store (quarantine)": (["quarantine", "--store", str(missing)], "does not exist"),
    }
    results = _run_all([c for c, _ in cases.values()])
    for (name, (_, want)), r in zip(cases.items(), results):
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and want in lines[0], (name, r.returncode, r.stderr[-800:])
        assert r.stdout == "", name
    assert not missing.exists() and not missing.parent.exists()  # read commands create nothing


def test_ingest_progress_bars_only_on_a_terminal(small, tmp_path):
    _, good, _, _ = small

    env = {k: v for k, v in _env().items() if k != "RTCC_NO_PROGRESS"}

    def on_pty(args):
        master, slave = pty.openpty()
        # A real terminal has a size; tqdm draws nothing in a 0-column one.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        p = subprocess.Popen(RTCC + args, stdout=subprocess.PIPE, stderr=slave, text=True, env=env)
        os.close(slave)
        chunks = []
        while True:
            try:
                b = os.read(master, 65536)
            except OSError:
                break
            if not b:
                break
            chunks.append(b)
        p.communicate(timeout=120)
        os.close(master)
        return p.returncode, b"".join(chunks).decode("utf-8", "replace")

    rc, err = on_pty(["ingest", "--format", "philadelphia", "--store", str(tmp_path / "a"), str(good)])
    assert rc == 0 and "ingest philadelphia" in err and "rows" in err and "1/1" in err, err[-500:]
    rc, err = on_pty(["ingest", "--format", "philadelphia", "--quiet", "--store", str(tmp_path / "b"), str(good)])
    assert rc == 0 and "ingest philadelphia" not in err, err[-500:]
    [r] = _run_all([["ingest", "--format", "philadelphia", "--store", str(tmp_path / "c"), str(good)]])
    assert r.returncode == 0 and "ingest philadelphia" not in r.stderr  # not a terminal: no bar


def test_live_clock_cannot_be_moved_by_one_record(small, tmp_path):
    """One plausible-but-wrong future record does not move the engine's clock;
    a second, later incident does; the state stays equal to a full recompute."""
    from rtcc_geo.live.engine import LiveEngine

    _, good, _, _ = small
    store = EmbeddedStore(tmp_path / "s")
    ingest_files("philadelphia", [good], store)
    eng = LiveEngine(store, "philadelphia", background_alerts=False)
    # The live engine places incidents on cells: only located ones move it (not-geolocated rows count
    # in CompStat, not on the map).
    from rtcc_geo.store.base import Query

    hist = store.incidents(Query(geolocated=True))
    eng.ingest(hist.head(50))
    clock = eng.state.now
    assert clock is not None and clock <= hist.head(50)["occurred_from"].max()
    stray = hist.head(1).assign(id="stray", occurred_from=pd.Timestamp.now(tz="UTC") + pd.Timedelta(hours=20))
    store.write_incidents(stray)
    eng.ingest(stray)
    assert eng.state.now == max(clock, hist.head(50)["occurred_from"].max())  # not 20 h ahead
    nxt = hist.iloc[50:51].assign(id="next", occurred_from=hist.head(50)["occurred_from"].max() + pd.Timedelta("1h"))
    store.write_incidents(nxt)
    eng.ingest(nxt)
    assert eng.state.now == nxt["occurred_from"].iloc[0]
    before = eng.state.y.copy()
    assert eng.recompute(eng.state.now)["drift"] == 0 and (eng.state.y == before).all()


def test_map_default_period_ignores_outliers(small, tmp_path):
    from rtcc_geo.app.context import context_for

    _, good, _, _ = small
    store = EmbeddedStore(tmp_path / "s")
    ingest_files("philadelphia", [good], store)
    strays = store.incidents().head(2).assign(id=["old-stray", "new-stray"])
    strays["occurred_from"] = [pd.Timestamp("1995-03-01", tz="UTC"), pd.Timestamp.now(tz="UTC")]
    store.write_incidents(strays)
    ctx = context_for(store, source="philadelphia")
    assert ctx.date_range == ("2024-06-01", "2024-06-30")
