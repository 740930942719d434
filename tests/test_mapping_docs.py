"""The worked examples in docs/mapping.md run as written: each CSV through its mapping gives
the UTC instants its ``expected:`` line states, and (for the layouts inference covers) the
inferred mapping reads the same CSV to the same instants."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from rtcc_geo.ingest.generic import load_mapping, read

DOC = Path(__file__).resolve().parent.parent / "docs" / "mapping.md"
_BLOCK = re.compile(
    r"^### (?P<title>.+?)\n.*?```csv\n(?P<csv>.*?)```.*?```toml\n(?P<toml>.*?)```.*?"
    r"^expected: (?P<expected>.+?)$",
    re.S | re.M,
)


def _examples() -> list[tuple[str, str, str, dict[str, str]]]:
    out = []
    for m in _BLOCK.finditer(DOC.read_text()):
        exp = dict(kv.split("=", 1) for kv in m["expected"].split())
        out.append((m["title"], m["csv"], m["toml"], exp))
    return out


EXAMPLES = _examples()


def test_the_doc_has_every_layout():
    assert len(EXAMPLES) == 9, [e[0] for e in EXAMPLES]


@pytest.mark.parametrize("title,csv,toml,expected", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_worked_example(tmp_path, shared_data, title, csv, toml, expected):
    f = tmp_path / "export.csv"
    f.write_text(csv)
    m = tmp_path / "mapping.toml"
    head = '[source]\nname = "doc"\ntimezone = "America/New_York"\n'
    # The examples show only the time columns; every one also has offense, lon and lat.
    body = toml.replace("[columns]\n", '[columns]\noffense = "offense"\nlon = "lon"\nlat = "lat"\n', 1)
    m.write_text(head + body)
    b = read(f, load_mapping(m))
    got = dict(zip(b.frame["id"].astype(str), b.frame["occurred_from"]))
    for k, v in expected.items():
        assert got[k] == pd.Timestamp(v), (title, k, got[k], v)
    if "placeholder" in title.lower() or "dates only" in title.lower():
        known = dict(zip(b.frame["id"].astype(str), b.frame["time_known"]))
        first = next(iter(expected))
        assert not known[first]
    if "placeholder" in title.lower():
        return  # two rows cannot show heaping; tests/test_ingest_auto.py infers it on Vancouver
    # Inference reads the same file to the same instants, with no mapping written.
    from rtcc_geo.config import Agency
    from rtcc_geo.ingest.infer import infer_mapping

    agency = Agency(
        name="doc",
        timezone="America/New_York",
        boundary_file=str(shared_data / "philadelphia" / "police_districts.geojson"),
    )
    inf = infer_mapping(f, agency)
    b2 = read(f, inf.mapping)
    got2 = dict(zip(b2.frame["id"].astype(str), b2.frame["occurred_from"]))
    assert got2 == got, (title, inf.reasons)
