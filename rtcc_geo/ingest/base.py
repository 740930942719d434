"""What every reader shares: the :class:`Batch` a reader hands to validation,
CSV reading, local-time conversion (DST-explicit), JSON columns and
deterministic ids — all vectorised (no per-row Python).

A reader turns one source file into a :class:`Batch`: the raw rows exactly as
read (strings), a frame with the canonical columns (no H3 yet) aligned to them,
and *flags*: which rows already fail a quarantine rule the reader knows about
(e.g. Vancouver's privacy-zeroed X/Y is ``no_coordinates``, not a junk point).
:func:`rtcc_geo.ingest.validate.validate` adds the generic rules, resolves
each rejected row to exactly one reason (the first in
:data:`rtcc_geo.schema.QUARANTINE_REASONS` order) and indexes the rest on H3.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from ..schema import QUARANTINE_REASONS


#: A flag's detail: one text, one per row, or built on demand for the given row positions.
Detail: TypeAlias = "str | pd.Series | np.ndarray | Callable[[np.ndarray], Any]"


class IngestError(ValueError):
    """A file that cannot be read as the format asked for (wrong columns,
    not a CSV, ...). The message says what was expected."""


@dataclass
class Batch:
    """One file read by a reader, before validation.

    ``raw`` and ``frame`` share the index ``0..n-1``; data row ``i`` of the
    file (1-based, header excluded) is index ``i - 1 - first_row``.
    """

    source: str
    file: str
    raw: pd.DataFrame
    frame: pd.DataFrame
    #: ``{reason: [(mask, detail), ...]}`` in the order flagged (see :meth:`flag`).
    flags: dict[str, list[tuple[np.ndarray, Detail]]] = field(default_factory=dict)
    #: ``{offense text: rows}`` for offense values the taxonomy does not list
    #: (they get category ``other``; the pipeline reports them, never silently).
    unmapped: dict[str, int] = field(default_factory=dict)
    #: 0-based position in the file of the batch's first data row (a file is read
    #: in batches of rows, see :func:`iter_csv_strings`; 0 for the first or only one).
    first_row: int = 0

    def __len__(self) -> int:
        return len(self.raw)

    def flag(self, reason: str, mask, detail: Detail) -> None:
        """Mark rows in ``mask`` as failing ``reason`` with ``detail``: a string,
        a per-row Series/array, or a callable ``rows -> texts`` given the
        positions of the rows that end up carrying it (so a message is only
        built for the few rows quarantined, never for every row). Several
        flags may hit a row; validation keeps the first in
        :data:`QUARANTINE_REASONS` order, and within one reason the first
        flagged."""
        if reason not in QUARANTINE_REASONS:
            raise ValueError(f"unknown quarantine reason {reason!r}; use one of {QUARANTINE_REASONS}")
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self.flags.setdefault(reason, []).append((mask, detail))

    def flagged(self, reason: str) -> np.ndarray:
        """Rows any ``reason`` flag hits."""
        out = np.zeros(len(self), dtype=bool)
        for m, _ in self.flags.get(reason, ()):
            out |= m
        return out


def details_at(detail: Detail, rows: np.ndarray) -> np.ndarray:
    """``detail`` (see :meth:`Batch.flag`) as texts for the row positions ``rows``."""
    if isinstance(detail, str):
        return np.full(len(rows), detail, dtype=object)
    if callable(detail):
        got = detail(rows)
    elif isinstance(detail, pd.Series):
        got = detail.iloc[rows]
    else:
        got = np.asarray(detail, dtype=object)[rows]
    return np.asarray(pd.Series(got).astype(str).to_numpy(), dtype=object)


# --- reading ------------------------------------------------------------------


def read_csv_strings(
    path: str | Path,
    required: list[str] | tuple[str, ...] = (),
    fmt: str = "",
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
) -> pd.DataFrame:
    """Read a CSV keeping every value as the exact text in the file ('' for blank).

    Raises :class:`IngestError` naming the missing columns when ``required``
    ones are absent, which is how a wrong ``--format`` shows up. A row with
    the wrong number of fields or bytes that are not UTF-8 does not fail the
    file: it is read leniently (padded/cut to the header, U+FFFD for bad
    bytes) and listed in ``df.attrs["malformed_rows"]`` ``{row index:
    why}``, which validation quarantines (``invalid_field``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    df = _read_csv_arrow(path, encoding, delimiter)
    if df is None:  # pandas' reader is the reference: every case Arrow does not read exactly
        df = _read_csv_pandas(path, encoding, delimiter)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise IngestError(
            f"{path.name}: missing column(s) {missing} for format {fmt!r}; "
            f"the file has {list(df.columns)[:30]}. Check --format, or describe the file "
            f"with a mapping (--format generic --mapping FILE)."
        )
    return df.reset_index(drop=True)


def iter_csv_strings(
    path: str | Path,
    required: list[str] | tuple[str, ...] = (),
    fmt: str = "",
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
    batch_rows: int | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`read_csv_strings` in batches of about ``batch_rows`` data rows
    (default ``RTCC_BATCH_ROWS``, else :data:`rtcc_geo.temporal.stream.INGEST_BATCH_ROWS`),
    so memory holds one batch, never the whole file.

    Each frame is indexed ``0..k-1`` and has ``attrs["first_row"]``, the 0-based
    position of its first data row in the file (``attrs["malformed_rows"]``, when
    present, is keyed by position in the frame). A file estimated to hold no more
    than ``batch_rows`` rows is read whole by :func:`read_csv_strings` (one frame,
    the same as before). Larger ones stream through Arrow's CSV reader; a row
    Arrow refuses switches the rest of the file to pandas' chunked reader or, if
    pandas refuses a row anywhere, to the lenient one, resuming after the rows
    already given, so the frames are those the whole-file readers give, cut in
    batches."""
    from ..temporal.stream import INGEST_BATCH_ROWS
    from ..temporal.stream import batch_rows as default_batch_rows

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    limit = int(batch_rows or default_batch_rows(INGEST_BATCH_ROWS))
    rows, row_bytes = _estimated_rows(path)
    if rows <= limit:
        df = read_csv_strings(path, required, fmt, encoding, delimiter)
        df.attrs["first_row"] = 0
        yield df
        return
    done = 0
    # Arrow's streaming reader reads up to 32 blocks ahead in the background, so the block
    # bounds that read-ahead (64 MB at 2 MB). Larger blocks also parse slower (measured: a
    # 5 M-row file 1.6 s in 2 MB blocks, 3.0 s in 8 MB, 5.3 s in 34 MB).
    block = int(min(_BLOCK_BYTES, max(64 << 10, limit * row_bytes / 4)))
    for df in _iter_csv(path, encoding, delimiter, limit, block):
        df.columns = [str(c).strip() for c in df.columns]
        if done == 0:
            missing = [c for c in required if c not in df.columns]
            if missing:
                raise IngestError(
                    f"{path.name}: missing column(s) {missing} for format {fmt!r}; "
                    f"the file has {list(df.columns)[:30]}. Check --format, or describe the file "
                    f"with a mapping (--format generic --mapping FILE)."
                )
        df = df.reset_index(drop=True)
        df.attrs["first_row"] = done
        done += len(df)
        yield df


#: Arrow's CSV block size for files read in batches (see :func:`iter_csv_strings`).
_BLOCK_BYTES = 2 << 20


def _estimated_rows(path: Path) -> tuple[float, float]:
    """``(rows, bytes a row)`` of a CSV estimated from its first MB (exact rows for a
    smaller file, up to quoted line breaks)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    lines = head.count(b"\n") or 1
    return lines * size / max(len(head), 1), max(len(head), 1) / lines


def _iter_csv(path: Path, encoding: str, delimiter: str, limit: int, block: int) -> Iterator[pd.DataFrame]:
    """Batches of a large CSV: Arrow's; where Arrow refuses a row, the rest from the
    reader the whole file would have fallen back to (pandas if it reads the whole
    file, found by a dry run that keeps nothing, else the lenient one)."""
    done = 0
    try:
        for df in _iter_arrow(path, encoding, delimiter, limit, block):
            done += len(df)
            yield df
        return
    except _Unreadable:
        pass
    try:
        for _ in _iter_pandas(path, encoding, delimiter, limit, 0):
            pass
        rest = _iter_pandas
    except _Unreadable:
        rest = _iter_lenient
    yield from rest(path, encoding, delimiter, limit, done)


class _Unreadable(Exception):
    """This reader cannot give (the rest of) the file exactly: the next one takes over."""


#: Suffixes Arrow decompresses by itself (such files are not screened byte by byte).
_COMPRESSED = (".gz", ".bz2", ".lz4", ".zst", ".zstd", ".br")


def _arrow_header(path: Path, encoding: str, delimiter: str) -> list[str] | None:
    """The file's header when Arrow can read the file exactly as pandas would, else
    ``None``: not UTF-8, a delimiter of more than one character, or a header with blank
    or repeated names (pandas renames them)."""
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf-8-sig", "utf8") or len(delimiter) != 1:
        return None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
    except (UnicodeDecodeError, csv.Error):
        return None
    if not header or any(h.strip() == "" for h in header) or len(set(header)) != len(header):
        return None
    return header


def _arrow_as_text(header: list[str]):
    """Arrow's convert options for "every value its text" (pandas' ``dtype=str``, no NA)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(
        column_types={h: pa.string() for h in header},
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _iter_arrow(path: Path, encoding: str, delimiter: str, limit: int, block: int) -> Iterator[pd.DataFrame]:
    """Arrow's streaming CSV reader in blocks of ``block`` bytes, every value its text
    (the options of :func:`_read_csv_arrow`)."""
    header = _arrow_header(path, encoding, delimiter)
    if header is None:
        raise _Unreadable
    import pyarrow as pa
    import pyarrow.csv as pacsv

    compressed = path.suffix.lower() in _COMPRESSED
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=compressed or _has_byte(path, b'"')
            ),
            convert_options=_arrow_as_text(header),
        )
        if reader.schema.names != header:
            raise _Unreadable
        held: list = []
        n, given = 0, False
        for rb in reader:
            held.append(rb)
            n += rb.num_rows
            if n >= limit:
                yield pa.Table.from_batches(held, reader.schema).to_pandas()
                held, n, given = [], 0, True
        if n or not given:  # the rest, or the header alone
            yield pa.Table.from_batches(held, reader.schema).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        raise _Unreadable from None


def _has_byte(path: Path, b: bytes) -> bool:
    """Whether ``b`` occurs in the file (read in 16 MB pieces)."""
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            if b in chunk:
                return True
    return False


def _iter_pandas(path: Path, encoding: str, delimiter: str, limit: int, skip: int) -> Iterator[pd.DataFrame]:
    """pandas' C parser in chunks (the options of :func:`_read_csv_pandas`), from data row ``skip`` on."""
    try:
        chunks = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding=encoding,
            sep=delimiter,
            chunksize=limit,
        )
        with chunks:
            for df in chunks:
                if skip >= len(df):
                    skip -= len(df)
                    continue
                yield df.iloc[skip:]
                skip = 0
    except pd.errors.EmptyDataError:
        raise IngestError(f"{path}: empty file (expected a CSV with a header row)") from None
    except (UnicodeDecodeError, pd.errors.ParserError):
        raise _Unreadable from None


def _iter_lenient(path: Path, encoding: str, delimiter: str, limit: int, skip: int) -> Iterator[pd.DataFrame]:
    """:func:`_read_csv_lenient` in batches, from data row ``skip`` on."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = (r for r in csv.reader(f) if r)  # pandas skips blank lines too
        header = next(rows, None)
        if header is None:
            raise IngestError(f"{path}: empty file (expected a CSV with a header row)")
        n = len(header)
        data: list[list[str]] = []
        bad: dict[int, str] = {}
        for i, r in enumerate(rows):
            if i < skip:
                continue
            if len(r) != n:
                bad[len(data)] = f"malformed CSV row: {len(r)} fields where the header has {n}"
                r = (r + [""] * n)[:n]
            elif any("\ufffd" in v for v in r):
                bad[len(data)] = "malformed CSV row: bytes that are not UTF-8"
            data.append(r)
            if len(data) >= limit:
                yield _lenient_frame(data, header, bad)
                data, bad = [], {}
        if data:
            yield _lenient_frame(data, header, bad)


def _lenient_frame(data: list[list[str]], header: list[str], bad: dict[int, str]) -> pd.DataFrame:
    df = pd.DataFrame(data, columns=header, dtype=str)
    df.attrs["malformed_rows"] = bad
    return df


def _read_csv_pandas(path: Path, encoding: str = "utf-8-sig", delimiter: str = ",") -> pd.DataFrame:
    """The reference reader (pandas' C parser, every value text), lenient on malformed rows."""
    try:
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding=encoding, sep=delimiter, low_memory=False
        )
    except pd.errors.EmptyDataError:
        raise IngestError(f"{path}: empty file (expected a CSV with a header row)") from None
    except (UnicodeDecodeError, pd.errors.ParserError):
        return _read_csv_lenient(path)


def _read_csv_arrow(path: Path, encoding: str = "utf-8-sig", delimiter: str = ",") -> pd.DataFrame | None:
    """Arrow's multi-threaded CSV reader, every value as its text: the same frame
    as :func:`_read_csv_pandas` (tested on every real file), several times
    faster. ``None`` wherever the two could differ, so the caller falls back
    to pandas: not UTF-8, a header with blank or repeated names (pandas renames
    them), or any row Arrow refuses (a wrong field count, bytes that are not
    UTF-8; pandas pads short rows, the lenient reader flags the rest)."""
    header = _arrow_header(path, encoding, delimiter)
    if header is None:
        return None
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Line breaks inside values exist only inside quotes: a file with no quote character
    # (every real Philadelphia file) is read by Arrow's faster, parallel line splitter.
    # (Compressed files, which Arrow decompresses by their suffix, are not screened.)
    data = None if path.suffix.lower() in _COMPRESSED else path.read_bytes()
    try:
        t = pacsv.read_csv(
            path if data is None else pa.BufferReader(data),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=data is None or b'"' in data),
            convert_options=_arrow_as_text(header),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    if t.column_names != header:
        return None
    return t.to_pandas()


def _read_csv_lenient(path: Path) -> pd.DataFrame:
    """The slow path for a CSV with malformed rows: the csv module, row by row."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r]  # pandas skips blank lines too
    if not rows:
        raise IngestError(f"{path}: empty file (expected a CSV with a header row)")
    header, n = rows[0], len(rows[0])
    bad: dict[int, str] = {}
    data = []
    for i, r in enumerate(rows[1:]):
        if len(r) != n:
            bad[i] = f"malformed CSV row: {len(r)} fields where the header has {n}"
            r = (r + [""] * n)[:n]
        elif any("\ufffd" in v for v in r):
            bad[i] = "malformed CSV row: bytes that are not UTF-8"
        data.append(r)
    if len(bad) == len(data) and data:
        raise IngestError(f"{path}: not a readable CSV (every row is malformed, e.g. {bad[0]})")
    df = pd.DataFrame(data, columns=header, dtype=str)
    df.attrs["malformed_rows"] = bad
    return df


def count_data_rows(path: str | Path) -> int:
    """Data rows of a CSV (header excluded), counted with the csv module so
    quoted newlines count once. Used by tests to check read == loaded + quarantined."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return sum(1 for _ in csv.reader(f)) - 1


def blank_to_na(s: pd.Series) -> pd.Series:
    """Text stripped of surrounding white space, blank -> null (``string`` dtype)."""
    return pd.Series(pd.arrays.ArrowStringArray(_stripped(_arrow(s))), index=s.index)


def _stripped(arr):
    """An Arrow text array stripped of surrounding white space, blank -> null."""
    import pyarrow.compute as pc

    t = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(t, ""), None, t)


def _text_bytes(arr) -> np.ndarray:
    """The UTF-8 bytes of every value of an Arrow ``large_string`` array, as uint8 (a view)."""
    data = arr.buffers()[2]
    if data is None or not len(arr):
        return np.zeros(0, dtype=np.uint8)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]


def _arrow(s: pd.Series):
    """A text Series as one Arrow ``large_string`` array (nulls kept)."""
    import pyarrow as pa

    arr = s.array
    if isinstance(arr, pd.arrays.ArrowStringArray):
        out = arr._pa_array  # the Arrow data itself, no copy
        out = out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out
        return out.cast(pa.large_string())
    return pa.array(s.astype("string").to_numpy(dtype=object, na_value=None), type=pa.large_string())


def _concat(*parts):
    """Element-wise concatenation of Arrow ``large_string`` arrays and ``str`` constants
    (null where any array part is null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    args = [pa.scalar(p, pa.large_string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", pa.large_string()))


def to_float(s: pd.Series) -> np.ndarray:
    """Numbers written as text -> float64, anything else NaN (``pd.to_numeric(errors="coerce")``):
    Arrow's cast when every non-blank value is a plain number, pandas otherwise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        t = pc.utf8_trim_whitespace(_arrow(s))
        t = pc.if_else(pc.equal(t, ""), None, t)
        return pc.cast(t, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


# --- time -----------------------------------------------------------------------


def localize(naive: pd.Series, tz: str) -> tuple[pd.Series, pd.Series]:
    """Local wall-clock times -> UTC, with DST edge cases handled explicitly.

    Returns ``(utc, dst_note)``. ``dst_note`` is ``"nonexistent"`` for wall
    times inside a spring-forward gap (e.g. 02:30 on the night clocks jump to
    03:00) — read as *standard* time, i.e. a clock not yet moved forward, so
    02:30 becomes 03:30 daylight time (the same instant); ``"ambiguous"`` for
    wall times in the repeated fall-back hour — read as the *first* (daylight)
    occurrence, since nothing in the row tells which one was meant; else null.
    """
    naive = pd.to_datetime(naive)
    if getattr(naive.dt, "tz", None) is not None:
        raise ValueError("localize() expects naive local times")
    ok = naive.notna().to_numpy()
    strict = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    first = naive.dt.tz_localize(tz, ambiguous=np.ones(len(naive), dtype=bool), nonexistent="NaT")
    nonexistent = ok & first.isna().to_numpy()
    ambiguous = ok & strict.isna().to_numpy() & ~nonexistent
    out = first
    if nonexistent.any():
        # Offset in force just before the gap (standard time), applied to the wall time.
        before = (naive[nonexistent] - pd.Timedelta(hours=3)).dt.tz_localize(
            tz, ambiguous=True, nonexistent="shift_forward"
        )
        offset = before.dt.tz_localize(None) - before.dt.tz_convert("UTC").dt.tz_localize(None)
        fixed = (naive[nonexistent] - offset).dt.tz_localize("UTC").dt.tz_convert(tz)
        out = out.copy()
        out[nonexistent] = fixed
    note = pd.Series(None, index=naive.index, dtype="object")
    note[nonexistent] = "nonexistent"
    note[ambiguous] = "ambiguous"
    return out.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), note


def parse_local(text: pd.Series, formats: list[str] | tuple[str, ...]) -> pd.Series:
    """Parse naive local date-times trying each ``strftime`` format in turn
    (``"ISO8601"`` allowed); rows no format fits are NaT."""
    text = text.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    todo = text.notna() & (text != "")
    for fmt in formats:
        if not todo.any():
            break
        got = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        if getattr(got.dt, "tz", None) is not None:  # an offset in the text: keep the wall time
            got = got.dt.tz_localize(None)
        got = got.astype("datetime64[ns]")
        out[todo] = got
        todo = todo & out.isna()
    return out


# --- JSON columns -------------------------------------------------------------------


def json_records(df: pd.DataFrame) -> pd.Series:
    """One compact JSON object per row (vectorised through ``DataFrame.to_json``)."""
    if len(df) == 0:
        return pd.Series([], index=df.index, dtype="string")
    if len(df.columns) == 0:
        return pd.Series("{}", index=df.index, dtype="string")
    text = df.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    lines = text.rstrip("\n").split("\n")
    return pd.Series(lines, index=df.index, dtype="string")


def extras_json(cols: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """The ``extras`` column: source columns we keep but do not model, as JSON
    (blank text becomes null; keys whose value is null are left out).

    Built column-wise with Arrow string kernels: each member is
    ``"key":value,`` or empty where the value is null, the members of a row
    are concatenated and the last comma dropped, so no row is serialised in
    Python.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(index):
        return pd.Series([], index=index, dtype="string")
    members = []
    for k, v in cols.items():
        kind = pd.api.types.infer_dtype(v, skipna=True) if v.dtype == object else None
        if kind == "boolean" or pd.api.types.is_bool_dtype(v.dtype):
            b = v.astype("boolean")
            val = pa.array(np.where(b.fillna(False).to_numpy(dtype=bool), "true", "false"), type=pa.large_string())
            val = pc.if_else(pa.array(b.isna().to_numpy()), None, val)
        elif (v.dtype != object and pd.api.types.is_string_dtype(v.dtype)) or kind in ("string", "empty"):
            t = _stripped(_arrow(v))
            b = _text_bytes(t)
            if ((b < 0x20) | (b == 0x22) | (b == 0x5C) | (b == 0x7F)).any():  # something to escape
                val = _arrow(json_strings(pd.Series(pd.arrays.ArrowStringArray(t), index=index)))
            else:  # quoted by the member's own concatenation (one kernel call, not two)
                if t.null_count < len(t):
                    members.append(_concat(json.dumps(k, ensure_ascii=False) + ':"', t, '",'))
                continue
        else:  # numbers and the like: pandas' JSON of each value
            txt = json_records(pd.DataFrame({"v": v}, index=index)).str.slice(5, -1)  # {"v":...}
            val = pc.if_else(pa.array(v.isna().to_numpy()), None, _arrow(txt))
        if val.null_count == len(val):
            continue
        members.append(_concat(json.dumps(k, ensure_ascii=False) + ":", val, ","))
    if not members:
        return pd.Series("{}", index=index, dtype="string")
    body = pc.binary_join_element_wise(
        *members, pa.scalar("", pa.large_string()), null_handling="replace", null_replacement=""
    )
    out = _concat("{", pc.utf8_slice_codeunits(body, 0, -1), "}")
    return pd.Series(pd.arrays.ArrowStringArray(out), index=index)


_NEEDS_JSON_ESCAPE = r'["\\\x00-\x1f\x7f]'


def json_strings(s: pd.Series) -> pd.Series:
    """Each text as a JSON string literal (quotes included), null stays null.

    Texts with nothing to escape are quoted by string concatenation; the rest
    (quotes, backslashes, control characters) go through ``json.dumps``, one
    distinct value at a time."""
    return pd.Series(pd.arrays.ArrowStringArray(_json_literals(_arrow(s))), index=s.index)


def _json_literals(t):
    """:func:`json_strings` of an Arrow ``large_string`` array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = _concat('"', t, '"')
    b = _text_bytes(t)
    if not ((b < 0x20) | (b == 0x22) | (b == 0x5C) | (b == 0x7F)).any():  # nothing to escape anywhere
        return out
    esc = pc.fill_null(pc.match_substring_regex(t, _NEEDS_JSON_ESCAPE), False)
    if not pc.any(esc).as_py():
        return out
    enc = pc.dictionary_encode(t.filter(esc))
    dumped = pa.array([json.dumps(u, ensure_ascii=False) for u in enc.dictionary.to_pylist()], type=pa.large_string())
    return pc.replace_with_mask(out, esc, dumped.take(enc.indices))


def add_json_member(extras: pd.Series | None, key: str, value: pd.Series, where: np.ndarray) -> pd.Series:
    """``extras`` JSON objects (as :func:`extras_json` writes them: compact,
    ``{}`` when empty) with ``"key": value`` (a text) appended on the ``where``
    rows; other rows unchanged. Vectorised on Arrow: only the ``where`` rows
    are rebuilt, then put back in place."""
    import pyarrow as pa
    import pyarrow.compute as pc

    where = np.asarray(where, dtype=bool)
    if extras is None:
        extras = pd.Series("{}", index=value.index, dtype="string")
    if not where.any():
        return extras.astype("string")
    e = pc.fill_null(_arrow(extras), pa.scalar("{}", pa.large_string()))
    mask = pa.array(where)
    sub = e.filter(mask)
    v = _json_literals(pc.fill_null(_arrow(value).filter(mask), pa.scalar("None", pa.large_string())))
    head = pc.utf8_slice_codeunits(sub, 0, -1)
    sep = pc.if_else(pc.equal(sub, "{}"), pa.scalar("", pa.large_string()), pa.scalar(",", pa.large_string()))
    new = _concat(head, sep, json.dumps(key, ensure_ascii=False) + ":", v, "}")
    return pd.Series(pd.arrays.ArrowStringArray(pc.replace_with_mask(e, mask, new)), index=extras.index)


# --- ids ------------------------------------------------------------------------------

_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


def hex64(h: np.ndarray) -> np.ndarray:
    """uint64 -> 16-character lower-case hex strings, vectorised."""
    h = np.asarray(h, dtype=np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nib = ((h[:, None] >> shifts) & np.uint64(15)).astype(np.intp)
    return _HEX[nib].view("S16").ravel().astype(str)


class RunningCount:
    """How often each key has occurred so far in a file read in batches: numbers
    each row's key ``0, 1, ...`` in file order across the batches, as a
    ``groupby(key).cumcount()`` of the whole file would. ``uint64`` keys (hashes)
    are kept as each batch's distinct keys with their counts, in memory and then on
    disk (:class:`~rtcc_geo.ingest.spill.SortedRuns`: memory bounded, not 16 bytes
    a distinct key); other keys (few, e.g. homicide keys) in a dict."""

    def __init__(self, spill_keys: int | None = None) -> None:
        from .spill import SortedRuns

        self.runs = SortedRuns(spill_keys)
        self.other: dict = {}

    def number(self, keys) -> np.ndarray:
        """0-based occurrence of each of ``keys`` (a batch, in file order) in the file so far."""
        k = pd.Series(np.asarray(keys))
        within = k.groupby(k.to_numpy(), sort=False).cumcount().to_numpy(dtype=np.int64)
        if not len(k):
            return within
        if k.dtype == np.uint64:
            h = k.to_numpy()
            u, inv, c = np.unique(h, return_inverse=True, return_counts=True)
            qi, n, _ = self.runs.find(u)  # a key's earlier count may sit in several runs
            before = np.bincount(qi, weights=n, minlength=len(u)).astype(np.int64)
            self.runs.add(u, c.astype(np.int64))
            return within + before[inv.ravel()]
        before = np.array([self.other.get(x, 0) for x in k.tolist()], dtype=np.int64)
        for x, c in k.value_counts(sort=False).items():
            self.other[x] = self.other.get(x, 0) + int(c)
        return within + before


def content_ids(
    raw: pd.DataFrame, columns: list[str] | None = None, prefix: str = "", seen: RunningCount | None = None
) -> pd.Series:
    """Deterministic ids for sources without an incident key.

    ``<prefix><16-hex hash of the row's text>-<k>`` where ``k`` = 0, 1, ... numbers
    identical rows in file order. The same file always gives the same ids
    (re-ingest adds nothing), while rows that are true repeats (two thefts at
    the same hundred block in the same minute) stay distinct. The hash is
    pandas' SipHash with its fixed key over the stripped cell texts, so it
    does not depend on the process (tested against a pinned value). ``seen``
    carries ``k`` across the batches of one file (see :func:`iter_csv_strings`).
    """
    cols = list(columns) if columns else list(raw.columns)
    text = raw[cols].apply(lambda s: s.astype(str).str.strip())
    h = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    hx = pd.Series(hex64(h), index=raw.index)
    k = pd.Series((seen or RunningCount()).number(h), index=raw.index).astype(str)
    return (prefix + hx + "-" + k).astype("string")


def summarise_reasons(frame_reason: pd.Series) -> dict[str, int]:
    vc = frame_reason.value_counts()
    return {r: int(vc.get(r, 0)) for r in QUARANTINE_REASONS if vc.get(r, 0)}


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
