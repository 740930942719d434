"""The ingest fast paths against their references, on every real file.

* the Arrow CSV reader gives the very frame pandas' C parser gives (values,
  dtypes, columns), and falls back to pandas wherever the two could differ;
* the column-wise ``extras`` JSON parses to what pandas' ``to_json`` (the
  former implementation, kept here as the reference) gives;
* the vectorised H3 path equals h3-py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rtcc_geo import grid
from rtcc_geo.ingest.base import (
    _read_csv_arrow,
    _read_csv_pandas,
    add_json_member,
    blank_to_na,
    extras_json,
    json_records,
    read_csv_strings,
)

FILES = (
    "philadelphia/incidents_20*.csv",
    "vancouver/crimedata_csv_*.csv",
    "chicago_sample/chicago_crimes_sample_*.csv",
)


@pytest.fixture(scope="module")
def real_files(shared_data):
    files = [f for pat in FILES for f in sorted(shared_data.glob(pat))]
    assert len(files) == 24 + 6 + 3
    return files


def test_arrow_reader_equals_pandas_on_every_real_file(real_files):
    for f in real_files:
        fast, ref = _read_csv_arrow(f), _read_csv_pandas(f)
        assert fast is not None, f
        pd.testing.assert_frame_equal(fast, ref, check_exact=True, obj=f.name)


@pytest.mark.parametrize(
    "text, why",
    [
        ("a,b\n1,2\n3\n", "a short row (pandas pads it with '')"),
        ("a,b\n1,2\n3,4,5\n", "a long row (the lenient reader flags it)"),
        (b"a,b\n1,2\n1,\xff\n", "bytes that are not UTF-8"),
        ("a,a\n1,2\n", "a repeated column name (pandas renames it)"),
        ("a,\n1,2\n", "a blank column name"),
    ],
)
def test_arrow_reader_falls_back_to_pandas_where_they_could_differ(tmp_path, text, why):
    p = tmp_path / "x.csv"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert _read_csv_arrow(p) is None, why
    got, ref = read_csv_strings(p), _read_csv_pandas(p)
    pd.testing.assert_frame_equal(got, ref)
    assert got.attrs.get("malformed_rows", {}) == ref.attrs.get("malformed_rows", {})


def test_arrow_reader_keeps_quoted_newlines_bom_and_blank_lines(tmp_path):
    p = tmp_path / "x.csv"
    p.write_bytes('\ufeffid,text\n1,"two\nlines"\n\n2, spaced \n'.encode())
    fast = _read_csv_arrow(p)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, _read_csv_pandas(p))
    assert fast["text"].tolist() == ["two\nlines", " spaced "]


def _extras_reference(cols: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """The former ``extras_json``: pandas' ``to_json`` per row, null members cut by regex."""
    data = {}
    for k, v in cols.items():
        kind = pd.api.types.infer_dtype(v, skipna=True) if v.dtype == object else None
        if kind == "boolean":
            v = v.astype("boolean")
        elif (v.dtype != object and pd.api.types.is_string_dtype(v.dtype)) or kind in ("string", "empty"):
            v = blank_to_na(v).astype(object)
            v = v.where(v.notna(), None)
        data[k] = v
    out = json_records(pd.DataFrame(data, index=index))
    return out.str.replace(r'"[^"]+":null,?', "", regex=True).str.replace(",}", "}", regex=False)


def test_extras_json_parses_to_the_to_json_reference(real_files):
    f = next(f for f in real_files if f.name.startswith("chicago"))
    raw = read_csv_strings(f)
    n = len(raw)
    cols = {c: raw[c] for c in ("case_number", "description", "block", "updated_on")}
    cols["arrest"] = raw["arrest"].str.lower().map({"true": True, "false": False}).astype("object")
    cols["odd"] = pd.Series(
        ['quote " and \\ and \n and \x01 and é', "", None] * (n // 3) + [" x "] * (n % 3), dtype="object"
    )
    cols["num"] = pd.Series([1, None, 2.5] * (n // 3) + [0] * (n % 3), dtype="object")
    cols["none"] = pd.Series([None] * n, dtype="object")
    got = extras_json(cols, raw.index)
    ref = _extras_reference(cols, raw.index)
    assert got.dtype == "string"
    assert [json.loads(x) for x in got] == [json.loads(x) for x in ref]
    # A note appended to some rows keeps the rest of each object and parses back.
    where = np.arange(n) % 4 == 0
    noted = add_json_member(got, "block_raw", raw["block"], where)
    for i in (0, 1, 4):
        obj = json.loads(noted.iloc[i])
        assert ("block_raw" in obj) == bool(where[i])
        assert {k: v for k, v in obj.items() if k != "block_raw"} == json.loads(got.iloc[i])
    assert (
        add_json_member(pd.Series(["{}"], dtype="string"), "k", pd.Series(['a"b']), np.array([True])).iloc[0]
        == '{"k":"a\\"b"}'
    )


def test_vectorised_cells_equal_h3py_with_repeated_points():
    rng = np.random.default_rng(3)
    lat = np.round(rng.uniform(39.87, 40.13, 5000), 4)  # rounded: many repeats, as block geocodes are
    lon = np.round(rng.uniform(-75.28, -74.96, 5000), 4)
    cells = grid.index_points(lat, lon, (7, 8, 9, 10))
    for r in (7, 8, 9, 10):
        assert np.array_equal(cells[r], grid.latlng_to_cells_h3(lat, lon, r)), r


def test_cells_cached_across_calls_equal_h3py():
    """Points seen by an earlier call (the next file's block geocodes) take their cells
    from the per-process cache; old and new points mixed still equal h3-py."""
    rng = np.random.default_rng(5)
    lat = np.round(rng.uniform(39.87, 40.13, 9000), 4)
    lon = np.round(rng.uniform(-75.28, -74.96, 9000), 4)
    for part in (slice(0, 5000), slice(3000, 9000), slice(0, 9000)):
        cells = grid.index_points(lat[part], lon[part], (7, 8, 9, 10))
        for r in (7, 8, 9, 10):
            assert np.array_equal(cells[r], grid.latlng_to_cells_h3(lat[part], lon[part], r)), (part, r)


def test_block_normal_form_in_arrow_equals_the_python_form_on_every_real_block(real_files):
    """The Arrow passes of :func:`rtcc_geo.places.normalise_block` give exactly
    ``_normalise_one`` on every distinct block of every real file, and on texts
    that take the Python path (other blanks, non-ASCII) or hit each rule's edges."""
    import pyarrow as pa

    from rtcc_geo.places import _normalise_many, _normalise_one

    cols = {"incidents": "location_block", "crimedata": "HUNDRED_BLOCK", "chicago": "block"}
    texts: set[str] = set()
    for f in real_files:
        raw = read_csv_strings(f)
        texts |= set(raw[next(c for k, c in cols.items() if f.name.startswith(k))].tolist())
    texts |= {
        "a&&b",
        "&x st",
        " x  st , y av/ z la ",
        "LA SALLE ST",
        "blk 5 st&",
        "x st,st",
        "MAIN ST ST",
        "x\tst",
        "\u00dftreet st",
        "x\x1cst",
        "",
        "  ",
        "x ST  &  y avenue",
        "av/",
        "5 BLK",
        " & ",
        "la la",
    }
    texts_l = sorted(texts)
    got = _normalise_many(pa.array(texts_l, type=pa.large_string())).to_pylist()
    assert len(texts_l) > 50_000
    assert [t for t, g in zip(texts_l, got) if g != _normalise_one(t)] == []


@pytest.mark.parametrize(
    "source, pattern, offense, detail",
    [
        ("chicago", "chicago_sample/chicago_crimes_sample_2018.csv", "primary_type", "description"),
        ("philadelphia", "philadelphia/incidents_2024_01.csv", "text_general_code", None),
        ("vancouver", "vancouver/crimedata_csv_AllNeighbourhoods_2021.csv", "TYPE", None),
    ],
)
def test_taxonomy_on_distinct_texts_equals_a_row_by_row_lookup(shared_data, source, pattern, offense, detail):
    """Categories looked up once per distinct text, spread back, equal a plain
    per-row lookup; unlisted texts (injected) are counted as the raw text stripped."""
    from rtcc_geo.ingest.taxonomy import _norm, load_taxonomy

    raw = read_csv_strings(shared_data / pattern)
    off = raw[offense].astype("object").copy()
    off.iloc[:50] = ["  Weird Thing ", "weird thing", "", None, "NEW one"] * 10
    det = raw[detail] if detail else None
    tax = load_taxonomy(source)
    got, unmapped = tax.categorise(pd.Series(off, dtype="string"), det)

    o = _norm(pd.Series(off, dtype="string")).tolist()
    d = _norm(det).tolist() if det is not None else [""] * len(o)
    ref = [
        tax.by_detail.get(a + "\x1f" + b, tax.by_offense.get(a)) if det is not None else tax.by_offense.get(a)
        for a, b in zip(o, d)
    ]
    assert got.tolist() == [r if r is not None else "other" for r in ref]
    want: dict[str, int] = {}
    for text, a, r in zip(off.tolist(), o, ref):
        if r is None and a != "":
            want[str(text).strip()] = want.get(str(text).strip(), 0) + 1
    assert unmapped == want and want == {"Weird Thing": 10, "weird thing": 10, "NEW one": 10}
