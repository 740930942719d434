"""bench/scale.py cannot rot: a tiny run (50 k incidents, local only) through the
real CLI must report every step with a positive wall time and peak RSS, the
stores must hold what the builder wrote, and the acceptance ratios must be
computed from the measured times."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import scale  # noqa: E402


def test_builder_is_seeded_and_streams_real_portal_layout(tmp_path):
    """Same seed -> same bytes; the CSV has the portal's columns; rows are near the target."""
    a = scale.build(tmp_path / "a", 0.02, seed=3, years=2)
    scale.build(tmp_path / "b", 0.02, seed=3, years=2)
    for f in [*a["files"], a["append"]]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    header = (tmp_path / "a" / a["files"][0]).read_text().splitlines()[0].split(",")
    assert tuple(header) == scale.CSV_COLUMNS
    # Poisson around 20,000 (sd ~141): 5 sd either side.
    assert abs(a["span_rows"] - 20_000) < 700, a["span_rows"]
    assert (tmp_path / "a" / "police_districts.geojson").is_file()


def test_exponent():
    assert scale.exponent(1.0, 10.0, 1, 10) == pytest.approx(1.0)
    assert scale.exponent(2.0, 2.0, 1, 10) == pytest.approx(0.0)
    assert scale.exponent(0.0, 1.0, 1, 10) is None


def test_tiny_bench_reports_every_step(shared_data, tmp_path):
    phl = sorted((shared_data / "philadelphia").glob("incidents_2024_01.csv"))
    assert phl, "Philadelphia January 2024 extract missing"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scale.py"),
            "--sizes",
            "0.05",
            "--skip-dask",
            "--json",
            "--years",
            "4",
            "--out",
            str(tmp_path / "work"),
            "--philly",
            str(phl[0]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    size = res["sizes"]["0.05"]
    assert size["build"]["rows"] > 40_000 and size["build"]["peak_rss"] > 0
    local = size["local"]
    assert set(local) == set(scale.STEPS)
    for name, step in local.items():
        assert step["rc"] == 0, (name, step.get("error"))
        assert step["wall_s"] > 0 and step["peak_rss"] > 10 * 1024**2, (name, step)
    # Everything the builder wrote was read and accounted for; the month appends once.
    assert local["ingest"]["read"] == size["build"]["rows"]
    assert local["ingest"]["loaded"] + local["ingest"]["quarantined"] == size["build"]["rows"]
    for k in ("append", "append_empty"):
        assert local[k]["read"] == size["build"]["append_rows"] == local[k]["loaded"] + local[k]["quarantined"]
        assert local[k]["inserted"] == local[k]["loaded"] > 0, (k, local[k])
        # Acceptance 2 from three interleaved samples (default --append-repeats 2), the first the step's own.
        assert len(local[k]["inproc_runs"]) == 3 and local[k]["inproc_runs"][0] == local[k]["inproc_s"], local[k]
    a2 = next(a for a in res["acceptance"] if a["id"].startswith("2"))
    assert a2["ratio"] == pytest.approx(
        statistics.median(local["append"]["inproc_runs"]) / statistics.median(local["append_empty"]["inproc_runs"]),
        rel=1e-6,
    )
    ph = res["philadelphia"]
    for k in ("pyarrow_read", "ingest", "reingest"):
        assert ph[k]["rc"] == 0 and ph[k]["wall_s"] > 0 and ph[k]["peak_rss"] > 0, (k, ph[k])
    assert ph["pyarrow_read"]["rows"] == ph["ingest"]["read"] == ph["reingest"]["read"]
    assert ph["reingest"]["inserted"] == 0
    acc = {a["id"]: a for a in res["acceptance"]}
    assert acc["1a"]["ratio"] == pytest.approx(ph["pyarrow_read"]["inproc_s"] / ph["ingest"]["inproc_s"])
    assert acc["1b"]["status"] in ("PASS", "MISS")
    assert res["dask_status"].startswith("skipped")
    assert res["failed"] == []
