"""Infer a generic-reader mapping from an export the project has never seen.

``infer_mapping(path, agency)`` reads the head of a police export and writes the
:class:`~rtcc_geo.ingest.generic.Mapping` an analyst would have written by hand,
with the reason for every choice, so ``rtcc-geo ingest --format auto`` and
``rtcc-geo mapping infer`` onboard a city without code. What it decides:

* **file**: encoding (UTF-8, else cp1252 / Latin-1), delimiter (``, ; tab |``: the one
  that splits every line into the same number of fields), decimal comma.
* **id**: the column named like an incident key whose values are unique; with none,
  a content id (hash of the row's text + occurrence number, as the Vancouver reader
  does), said in the report.
* **time layout** (local to the agency's time zone unless the values say otherwise):
  one ISO date-time with or without UTC offset; US ``m/d/Y h:mm AM``; separate date and
  time columns; a date column plus an integer hour (and minute) column;
  year/month/day[/hour/minute] columns; Unix epoch seconds or milliseconds (UTC);
  date-only values written as local midnight in UTC (``2019/03/02 05:00:00+00``).
  A time of day that is heaped far beyond its neighbours (00:00, 12:00) is a
  placeholder for "time unknown": flagged, not read as midnight.
* **place**: lon/lat (values inside the agency's boundary) and/or projected x/y,
  whose CRS is found by projecting the values with every projected CRS whose area of
  use holds the boundary (UTM, State Plane in feet or metres, Web Mercator, ...) and
  keeping those that put the points inside it.
* **offence**: the text column the agency's taxonomy matches best (with a taxonomy),
  else the one named like an offence; a finer detail column when the taxonomy has
  details; a code column; the block address; the district.

When two readings are plausible and would give different incidents (two CRSs that
place the points metres apart, day-first vs month-first dates, two id columns) it
stops with :class:`AmbiguousMapping`, naming the readings and the flag that decides.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Agency
from .base import IngestError
from .generic import _COLUMN_KEYS, Mapping

#: Rows read to infer from (the head of the file).
SAMPLE_ROWS = 20_000
_DELIMITERS = (",", ";", "\t", "|")


class AmbiguousMapping(ValueError):
    """Two readings of the export are plausible; the message names the deciding flag."""


@dataclass
class Inference:
    """What :func:`infer_mapping` decided: the mapping, and why."""

    mapping: Mapping
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Offence texts of the sample with their row counts (for a proposed taxonomy).
    offences: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        m = self.mapping
        return {
            "source": m.source,
            "columns": dict(m.columns),
            "csv": {"encoding": m.encoding, "delimiter": m.delimiter, "decimal": m.decimal},
            "time": {
                "formats": list(m.formats),
                "utc": m.utc,
                "offsets": m.offsets,
                "epoch": m.epoch,
                "date_only": m.date_only,
                "unknown_times": list(m.unknown_times),
            },
            "crs": m.crs,
            "reasons": self.reasons,
            "warnings": self.warnings,
        }

    def to_toml(self) -> str:
        """The mapping as a TOML file for review (``rtcc-geo mapping infer --out``)."""
        m = self.mapping
        q = _toml_str
        lines = [
            "# Inferred by 'rtcc-geo mapping infer'. Review it, then:",
            "#   rtcc-geo ingest --format generic --mapping THIS_FILE FILES...",
            "#",
        ]
        lines += [f"# {r}" for r in self.reasons] + [f"# warning: {w}" for w in self.warnings]
        lines += ["", "[source]", f"name = {q(m.source)}"]
        lines += [f"agency = {q(m.agency)}"] if m.agency else []
        lines += [f"timezone = {q(m.timezone)}"] if m.timezone else []
        lines += [
            "",
            "[csv]",
            f"encoding = {q(m.encoding)}",
            f"delimiter = {q(m.delimiter)}",
            f"decimal = {q(m.decimal)}",
            "",
            "[columns]",
        ]
        lines += [f"{k} = {q(v)}" for k, v in m.columns.items()]
        if m.extras:
            lines.append("extras = [" + ", ".join(q(e) for e in m.extras) + "]")
        lines += [
            "",
            "[time]",
            "formats = [" + ", ".join(q(f) for f in m.formats) + "]",
            f"utc = {str(m.utc).lower()}",
            f"offsets = {str(m.offsets).lower()}",
            f"epoch = {q(m.epoch or '')}",
            f"date_only = {str(m.date_only).lower()}",
            "unknown_times = [" + ", ".join(q(t) for t in m.unknown_times) + "]",
        ]
        if m.crs:
            lines += ["", "[coordinates]", f"crs = {q(m.crs)}", "zero_is_missing = true"]
        if m.taxonomy:
            lines += ["", "[offense]", f"taxonomy = {q(str(m.taxonomy))}"]
        return "\n".join(lines) + "\n"


def _toml_str(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


# --- the file ----------------------------------------------------------------------


def sniff_encoding(path: Path, nbytes: int = 4 << 20) -> str:
    """``utf-8-sig`` when the head decodes as UTF-8, else ``cp1252`` (a superset of
    Latin-1's printable range), else ``latin-1`` (decodes anything)."""
    head = path.read_bytes()[:nbytes] if path.stat().st_size <= nbytes else _head(path, nbytes)
    for enc in ("utf-8-sig", "cp1252"):
        try:
            head.decode(enc)
            return enc
        except UnicodeDecodeError as e:
            if enc == "utf-8-sig" and e.start > len(head) - 4:  # a character cut by the head's end
                return enc
    return "latin-1"


def _head(path: Path, nbytes: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(nbytes)


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header and the first lines into the same number
    (> 1) of fields; the most fields wins."""
    best, best_n = None, 1
    lines = text.splitlines()[:50]
    for d in _DELIMITERS:
        try:
            counts = {len(r) for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=d) if r}
        except csv.Error:
            continue
        if len(counts) == 1 and (n := counts.pop()) > best_n:
            best, best_n = d, n
    if best is None:
        raise IngestError(
            "cannot tell the delimiter: no one of , ; tab | splits every line into the same number of fields"
        )
    return best


# --- column profiles --------------------------------------------------------------


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def _numeric(s: pd.Series, decimal: str) -> pd.Series:
    s = s.str.strip()
    if decimal != ".":
        s = s.str.replace(decimal, ".", regex=False)
    return pd.to_numeric(s, errors="coerce")


def _nonblank(s: pd.Series) -> pd.Series:
    return s[s.str.strip() != ""]


def _frac(mask) -> float:
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else 0.0


_ID_TIERS = (
    {
        "incident_id",
        "incident_number",
        "incident_no",
        "incident_num",
        "incidentnum",
        "dc_key",
        "event_number",
        "event_id",
        "report_number",
        "report_no",
        "occurrence_id",
        "offense_id",
        "cad_number",
        "id",
        "incident_key",
    },
    {"case_number", "case_no", "case_num", "caseno", "record_id", "inc_no", "key", "uid"},
)
_TIME_WORDS = (
    "occur",
    "dispatch",
    "date",
    "time",
    "start",
    "from",
    "incident",
    "offense",
    "crime",
    "epoch",
    "timestamp",
    "when",
    "datetime",
    "hour",
    "minute",
)
_REPORT_WORDS = ("report",)
_END_WORDS = ("end", "until", "_to", "thru", "through")
_SKIP_TIME_WORDS = ("update", "modif", "load", "extract", "created", "year", "month")
_OFFENSE_WORDS = (
    "offen",
    "crime",
    "type",
    "category",
    "text_general",
    "primary",
    "nature",
    "call_type",
    "description",
    "desc",
    "ucr_desc",
    "charge",
)
_CODE_WORDS = ("ucr", "iucr", "code", "nibrs", "fbi", "statute")
_BLOCK_WORDS = ("block", "address", "hundred", "street", "location_block", "addr")
_DISTRICT_WORDS = (
    "district",
    "dist",
    "precinct",
    "neighbourhood",
    "neighborhood",
    "sector",
    "division",
    "zone",
    "area_command",
    "beat",
    "psa",
    "ward",
)

_DATETIME_FORMATS = (
    "ISO8601",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S%z",
    "%m/%d/%Y %H:%M:%S%z",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
)
_DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%Y%m%d")
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(\s?[AaPp][Mm])?$")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$")


def _parse_rate(s: pd.Series, fmt: str) -> tuple[float, pd.Series]:
    if fmt == "ISO8601":
        # pandas' ISO8601 also reads bare numbers and m/d/Y; insist on the ISO shape.
        ok_shape = s.str.match(r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$")
        if _frac(ok_shape) < 0.99:
            return 0.0, pd.Series(pd.NaT, index=s.index)
    got = pd.to_datetime(s, format=fmt, errors="coerce", utc=bool(_OFFSET.search(str(s.iloc[0]))))
    return _frac(got.notna()), got


def _best_format(s: pd.Series, formats) -> tuple[str | None, list[str]]:
    """The format parsing (nearly) every value, and the others that parse as many
    (day-first vs month-first when no day exceeds 12)."""
    rates = {}
    for f in formats:
        try:
            rates[f] = _parse_rate(s, f)[0]
        except (ValueError, TypeError):
            rates[f] = 0.0
    good = [f for f, r in rates.items() if r >= 0.99]
    if not good:
        return None, []
    return good[0], good[1:]


def _has_time_part(fmt: str) -> bool:
    return fmt == "ISO8601" or "%H" in fmt or "%I" in fmt


# --- CRS --------------------------------------------------------------------------


def _crs_candidates(bounds: tuple[float, float, float, float]) -> list[str]:
    from pyproj.database import query_crs_info
    from pyproj.enums import PJType
    from pyproj.aoi import AreaOfInterest

    w, s, e, n = bounds
    infos = query_crs_info(
        auth_name="EPSG", pj_types=PJType.PROJECTED_CRS, area_of_interest=AreaOfInterest(w, s, e, n), contains=True
    )
    out = [f"EPSG:{i.code}" for i in infos if not i.deprecated]
    return out if "EPSG:3857" in out else [*out, "EPSG:3857"]


def _crs_rank(code: str) -> tuple:
    from pyproj import CRS

    name = CRS.from_user_input(code).name
    plain = bool(re.match(r"^(NAD83|WGS 84|NAD27) / ", name))
    return (not plain, "(" in name.split(" / ")[-1] and "ftUS" not in name, int(code.split(":")[1]))


def guess_crs(x: np.ndarray, y: np.ndarray, inside, bounds) -> tuple[list[str], list[list[str]]]:
    """CRS codes that place the points ``(x, y)`` inside the boundary (``inside(lon, lat)``
    -> bool array), grouped by where they put them (a group's members agree within 30 m):
    ``(best of each group, groups)``."""
    from .vancouver import transformer

    fits = []
    for code in _crs_candidates(bounds):
        try:
            lon, lat = transformer(code).transform(x, y)
        except Exception:  # noqa: BLE001 - a CRS pyproj cannot use here is simply not a candidate
            continue
        ok = np.isfinite(lon) & np.isfinite(lat)
        if ok.mean() > 0.95 and inside(np.where(ok, lon, 0), np.where(ok, lat, 0))[ok].mean() >= 0.9:
            fits.append((code, np.asarray(lon), np.asarray(lat)))
    groups: list[list[tuple]] = []
    for f in fits:
        for g in groups:
            ref = g[0]
            dx = (f[1] - ref[1]) * 111_320 * np.cos(np.radians(ref[2]))
            dy = (f[2] - ref[2]) * 110_540
            if np.nanmax(np.hypot(dx, dy)) < 30:
                g.append(f)
                break
        else:
            groups.append([f])
    named = [sorted((m[0] for m in g), key=_crs_rank) for g in groups]
    return [g[0] for g in named], named


# --- the inference ----------------------------------------------------------------


def infer_mapping(
    path: str | Path,
    agency: Agency,
    source: str | None = None,
    *,
    overrides: dict[str, str] | None = None,
    crs: str | None = None,
    time_format: str | None = None,
    taxonomy: str | Path | None = None,
    near: list[Path] | None = None,
) -> Inference:
    """Infer the mapping of ``path`` for ``agency`` (time zone, boundary).

    ``overrides`` fixes column roles (``{"id": "case_no"}``; a role mapped to ``""``
    is left out); ``crs`` fixes the CRS of projected x/y; ``time_format`` the strftime
    format of the time column (day-first vs month-first); ``taxonomy`` (a CSV or a
    shipped name) is the agency's offence -> category table, which also picks the
    offence column. Raises :class:`AmbiguousMapping` when the file allows two readings.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    overrides = dict(overrides or {})
    bad = sorted(set(overrides) - set(_COLUMN_KEYS))
    if bad:
        raise ValueError(f"unknown column role(s) {bad}; roles: {', '.join(_COLUMN_KEYS)}")
    source = source or agency.name
    reasons: list[str] = []
    warnings: list[str] = []

    enc = sniff_encoding(path)
    with open(path, encoding=enc, errors="replace", newline="") as f:
        head = f.read(1 << 16)
    delim = sniff_delimiter(head)
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            encoding=enc,
            sep=delim,
            nrows=SAMPLE_ROWS,
            low_memory=False,
        )
    except (UnicodeDecodeError, pd.errors.ParserError) as e:
        raise IngestError(f"{path.name}: not a readable CSV ({e})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    if len(raw) == 0:
        raise IngestError(f"{path.name}: no data rows under the header")
    if sum(bool(re.fullmatch(r"-?[\d.,:/ -]+", c)) for c in raw.columns) > len(raw.columns) / 2:
        raise IngestError(f"{path.name}: the first line looks like data, not a header; add a header row")
    reasons.append(
        f"file: encoding {enc}, delimiter {delim!r}, {len(raw.columns)} columns "
        f"(inferred from the first {len(raw):,} rows)"
    )
    # A decimal comma: numbers like 41,8781 in a file not delimited by commas.
    decimal = "."
    if delim != ",":
        commas = [c for c in raw.columns if _frac(_nonblank(raw[c]).str.fullmatch(r"-?\d+,\d+")) > 0.9]
        if commas:
            decimal = ","
            reasons.append(
                f"decimal comma: {', '.join(commas[:4])} hold values like {_nonblank(raw[commas[0]]).iloc[0]!r}"
            )
    names = {c: _norm_name(c) for c in raw.columns}
    used: set[str] = set()
    cols: dict[str, str] = {}

    def take(role: str, col: str | None, why: str) -> None:
        if col:
            cols[role] = col
            used.add(col)
            reasons.append(f"{role} = {col!r}: {why}")

    for role, col in overrides.items():
        if col and col not in raw.columns:
            raise ValueError(f"--column {role}={col}: no such column; the file has {list(raw.columns)}")
        if col:
            take(role, col, "given")
        else:
            used.add(role)  # a role explicitly left out

    numeric = {c: _numeric(raw[c], decimal) for c in raw.columns}
    nonblank = {c: _nonblank(raw[c]) for c in raw.columns}

    # -- id
    if "id" not in overrides:
        _infer_id(raw, names, nonblank, take, reasons, used)

    # -- time
    time_kw = _infer_time(
        raw, names, nonblank, numeric, agency.timezone, take, cols, used, reasons, warnings, overrides, time_format
    )

    # -- place
    area = _boundary(agency, near or [path])
    coord_crs = _infer_place(raw, names, numeric, area, take, cols, used, reasons, crs, overrides)

    # -- offence, code, block, district
    tax = _infer_offence(raw, names, nonblank, take, cols, used, reasons, warnings, taxonomy, overrides)
    for role, words in (("offense_code", _CODE_WORDS), ("block", _BLOCK_WORDS), ("district", _DISTRICT_WORDS)):
        if role in cols or role in overrides:
            continue
        cand = [
            c
            for c in raw.columns
            if c not in used and any(w in names[c] for w in words) and len(nonblank[c]) > 0.5 * len(raw)
        ]
        if role == "district":
            cand.sort(key=lambda c: next(i for i, w in enumerate(words) if w in names[c]))
        if cand:
            take(role, cand[0], f"named like the {role.replace('_', ' ')}")
    extras = tuple(c for c in raw.columns if c not in used)
    if "offense" not in cols:
        raise AmbiguousMapping(f"{path.name}: no column reads as the offence; name it with --column offense=COLUMN")
    offences = raw[cols["offense"]].str.strip().value_counts().to_dict()
    m = Mapping(
        path=path.parent / f"{source}.inferred.toml",
        source=source,
        columns=cols,
        extras=extras,
        agency=None,
        timezone=agency.timezone,
        crs=coord_crs,
        zero_is_missing=True,
        taxonomy=tax,
        encoding=enc,
        delimiter=delim,
        decimal=decimal,
        **time_kw,
    )
    return Inference(m, reasons, warnings, {str(k): int(v) for k, v in offences.items()})


def _infer_id(raw, names, nonblank, take, reasons, used) -> None:
    n = len(raw)
    for words in _ID_TIERS:
        cand = [
            c
            for c in raw.columns
            if names[c] in words
            and len(nonblank[c]) >= 0.99 * n
            and nonblank[c].str.strip().nunique() >= 0.99 * len(nonblank[c])
        ]
        if len(cand) > 1:
            raise AmbiguousMapping(f"two columns read as the incident id: {cand}; choose one with --column id=COLUMN")
        if cand:
            take(
                "id",
                cand[0],
                f"named like an incident key, {nonblank[cand[0]].nunique():,} distinct values in {n:,} rows",
            )
            return
    reasons.append(
        "id: no unique incident-key column; each row gets a content id (hash of the row's text "
        "+ its occurrence number), stable across re-ingests"
    )


def _infer_time(
    raw, names, nonblank, numeric, tz, take, cols, used, reasons, warnings, overrides, forced: str | None
) -> dict:
    n = len(raw)
    kw: dict = {
        "formats": ("ISO8601",),
        "utc": False,
        "offsets": False,
        "epoch": None,
        "date_only": False,
        "unknown_times": (),
    }

    def role_of(c: str) -> str:
        nm = names[c]
        if any(w in nm for w in _REPORT_WORDS):
            return "reported"
        if any(nm.endswith(w) or f"{w}_" in nm for w in _END_WORDS):
            return "occurred_to"
        return "occurred"

    def score(c: str) -> int:
        nm = names[c]
        return -sum(w in nm for w in ("occur", "dispatch", "incident", "offense", "crime", "start", "from"))

    timeish = [
        c
        for c in raw.columns
        if c not in used
        and any(w in names[c] for w in _TIME_WORDS)
        and not any(w in names[c] for w in _SKIP_TIME_WORDS)
        and len(nonblank[c]) >= 0.5 * n
    ]
    timeish.sort(key=score)
    single: dict[str, list[tuple[str, str, list[str]]]] = {}
    dates, times, hours, minutes = [], [], [], []
    epochs = []
    for c in timeish:
        s = nonblank[c].str.strip()
        num = numeric[c].dropna()
        if len(num) >= 0.99 * len(s) and len(num):
            lo, hi = float(num.min()), float(num.max())
            if (num == num.round()).all():
                if 6.3e8 <= lo and hi <= 2.1e9:
                    epochs.append((c, "s"))
                elif 6.3e11 <= lo and hi <= 2.1e12:
                    epochs.append((c, "ms"))
                elif 0 <= lo and hi <= 23 and "h" in names[c]:
                    hours.append(c)
                elif 0 <= lo and hi <= 59 and "min" in names[c]:
                    minutes.append(c)
            continue
        if _frac(s.str.match(_TIME_OF_DAY)) > 0.99:
            times.append(c)
            continue
        fmt, also = _best_format(s, _DATETIME_FORMATS)
        if fmt and _has_time_part(fmt) and _frac(s.str.contains(r"\d:\d")) > 0.99:
            single.setdefault(role_of(c), []).append((c, fmt, also))
            continue
        dfmt, dalso = _best_format(s, _DATE_FORMATS + ("ISO8601",))
        if dfmt:
            dates.append((c, dfmt, dalso))

    def check_ambiguous(c: str, fmt: str, also: list[str]) -> None:
        other = [a for a in also if _swap(a) == fmt or _swap(fmt) == a]
        if other:
            raise AmbiguousMapping(
                f"{c!r}: every value reads both as {fmt!r} and as {other[0]!r} (no day "
                f"above 12 in the sample); give the format with --time-format"
            )

    if "occurred" not in single and "reported" in single and not epochs and not dates:
        single["occurred"] = single.pop("reported")
        warnings.append(f"no occurrence time column: the report time {single['occurred'][0][0]!r} stands for it")
    # Priority: an epoch column, a single date-time, date + time, date + hour, parts.
    if epochs and not single.get("occurred"):
        c, unit = epochs[0]
        take(
            "occurred",
            c,
            f"whole numbers between {numeric[c].min():.0f} and {numeric[c].max():.0f}: Unix "
            f"epoch {'milliseconds' if unit == 'ms' else 'seconds'} (UTC)",
        )
        kw.update(epoch=unit)
    elif single.get("occurred"):
        c, fmt, also = single["occurred"][0]
        fmt = forced or fmt
        if not forced:
            check_ambiguous(c, fmt, also)
        s = nonblank[c].str.strip()
        take("occurred", c, f"date-times in format {fmt!r}")
        kw.update(formats=(fmt,))
        if _frac(s.str.contains(_OFFSET)) > 0.99:
            utc = pd.to_datetime(s, format=fmt, utc=True, errors="coerce").dropna()
            local = utc.dt.tz_convert(tz)
            kw.update(offsets=True)
            if len(local) and ((local.dt.hour == 0) & (local.dt.minute == 0)).all():
                kw.update(date_only=True)
                reasons.append(
                    f"{c!r}: every value is local midnight written with a UTC offset: dates only, time unknown"
                )
            else:
                reasons.append(f"{c!r}: values carry UTC offsets, read as exact instants")
        for role in ("reported", "occurred_to"):
            if single.get(role) and role not in overrides:
                rc, rfmt, _ = single[role][0]
                if rfmt == fmt:
                    take(role, rc, f"date-times named like {role.replace('_', ' ')}")
    elif dates and (times or hours):
        c, dfmt, dalso = dates[0]
        check_ambiguous(c, dfmt, dalso)
        take("occurred_date", c, f"dates in format {dfmt!r}")
        if times:
            t = nonblank[times[0]].str.strip().iloc[0]
            tf = (
                ("%I:%M:%S %p" if t.count(":") == 2 else "%I:%M %p")
                if re.search(r"[AaPp][Mm]$", t)
                else ("%H:%M:%S" if t.count(":") == 2 else "%H:%M")
            )
            take("occurred_time", times[0], f"times of day like {t!r}")
            kw.update(formats=(f"{dfmt} {tf}",))
        else:
            take("occurred_hour", hours[0], "whole numbers 0-23 named like an hour")
            if minutes:
                take("occurred_minute", minutes[0], "whole numbers 0-59 named like a minute")
            kw.update(formats=(dfmt,))
    else:
        parts = {}
        for role, words in (
            ("occurred_year", ("year", "yr")),
            ("occurred_month", ("month", "mon")),
            ("occurred_day", ("day",)),
            ("occurred_hour", ("hour", "hr")),
            ("occurred_minute", ("minute", "min")),
        ):
            cand = [
                c for c in raw.columns if c not in used and (names[c] in words or names[c].endswith("_" + words[0]))
            ]
            cand = [c for c in cand if numeric[c].notna().mean() > 0.99]
            if cand:
                parts[role] = cand[0]
        if {"occurred_year", "occurred_month", "occurred_day"} <= set(parts):
            for role, c in parts.items():
                take(role, c, "a date-part column (whole numbers)")
        elif not overrides.get("occurred") and not overrides.get("occurred_date"):
            raise AmbiguousMapping(
                "no column reads as the time of the incident; name it with "
                "--column occurred=COLUMN (or occurred_date/occurred_time) and --time-format"
            )
    # Placeholder times: a time of day heaped far above the other whole hours.
    if not kw["date_only"]:
        kw["unknown_times"] = _placeholders(raw, cols, kw, tz, reasons)
    return kw


def _swap(fmt: str) -> str:
    return fmt.replace("%m", "\0").replace("%d", "%m").replace("\0", "%d")


def _placeholders(raw, cols, kw, tz, reasons) -> tuple[str, ...]:
    from .generic import Mapping, _occurred

    mp = Mapping(path=Path("."), source="x", columns=cols, **{k: v for k, v in kw.items() if k != "unknown_times"})
    try:
        naive = _occurred(raw, mp, tz)[1].dropna()
    except (KeyError, ValueError):
        return ()
    if len(naive) < 200:
        return ()
    on_hour = naive[naive.dt.minute == 0]
    share = on_hour.dt.hour.value_counts().reindex(range(24), fill_value=0) / len(naive)
    out = []
    for h in (0, 12):
        others = share.drop([0, 12]).median()
        if share[h] > 0.01 and share[h] > 5 * max(others, 1 / 1440):
            out.append(f"{h:02d}:00")
            reasons.append(
                f"{h:02d}:00 holds {share[h]:.1%} of the times vs {others:.2%} for a typical whole "
                f"hour: a placeholder for 'time unknown' (those incidents count by day only)"
            )
    return tuple(out)


def _boundary(agency: Agency, near: list[Path]):
    """``(inside(lon, lat) -> bool array, (w, s, e, n))`` of the agency's boundary."""
    import geopandas as gpd
    import shapely

    geom = agency.boundary_geom  # a stored agency carries its polygon
    if geom is None:
        path = agency.find_file(agency.boundary_file, near=near)
        if path is not None:
            geom = shapely.union_all(gpd.read_file(path).to_crs(4326).geometry.values)
    if geom is None:
        raise ValueError(
            f"agency {agency.name!r} has no boundary; the coordinates cannot be checked "
            f"(add one with 'rtcc-geo agency add {agency.name} --boundary FILE --replace')"
        )
    grown = shapely.buffer(geom, 0.01)  # ~1 km: block-level geocodes on the city line
    shapely.prepare(grown)
    b = geom.bounds

    def inside(lon, lat):
        return shapely.contains_xy(grown, np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))

    return inside, (b[0], b[1], b[2], b[3])


def _infer_place(raw, names, numeric, area, take, cols, used, reasons, crs, overrides) -> str | None:
    inside, bounds = area
    nums = [c for c in raw.columns if c not in used and numeric[c].notna().sum() > 0.5 * len(raw)]
    rng = np.random.default_rng(0)

    def sample_pair(a, b):
        xa, yb = numeric[a].to_numpy(), numeric[b].to_numpy()
        ok = np.isfinite(xa) & np.isfinite(yb) & (xa != 0) & (yb != 0)
        idx = np.flatnonzero(ok)
        if len(idx) > 2000:
            idx = rng.choice(idx, 2000, replace=False)
        return xa[idx], yb[idx]

    # lon/lat: a pair of degree columns whose points fall inside the boundary.
    if "lon" not in overrides:
        best = None
        for a in nums:
            for b in nums:
                if a == b:
                    continue
                x, y = sample_pair(a, b)
                if len(x) < min(10, len(raw)) or not len(x) or np.abs(x).max() > 180 or np.abs(y).max() > 90:
                    continue
                f = inside(x, y).mean()
                if f >= 0.9 and (best is None or f > best[0]):
                    best = (f, a, b)
        if best:
            take(
                "lon",
                best[1],
                f"degrees; with {best[2]!r} as latitude {best[0]:.0%} of points fall in the agency boundary",
            )
            take("lat", best[2], "latitude in degrees (see lon)")
    # projected x/y: named like x/y or easting/northing, values too large for degrees.
    xs = [c for c in nums if c not in used and re.search(r"(^|_)(x|east|easting)(_|$)|x_coord|point_x|^x", names[c])]
    ys = [c for c in nums if c not in used and re.search(r"(^|_)(y|north|northing)(_|$)|y_coord|point_y|^y", names[c])]
    xs = [c for c in xs if np.nanmax(np.abs(numeric[c].to_numpy())) > 180]
    ys = [c for c in ys if np.nanmax(np.abs(numeric[c].to_numpy())) > 90]
    if "x" in overrides and "y" in overrides:
        xs, ys = [overrides["x"]], [overrides["y"]]
    if not xs or not ys:
        if "lon" not in cols:
            raise AmbiguousMapping(
                "no coordinate columns found (lon/lat in degrees inside the agency boundary, "
                "or projected x/y); name them with --column lon=COL --column lat=COL or "
                "--column x=COL --column y=COL --crs EPSG:CODE"
            )
        return None
    x, y = sample_pair(xs[0], ys[0])
    if crs:
        chosen = crs
        reasons.append(f"x/y CRS {crs}: given")
    else:
        fits, groups = guess_crs(x, y, inside, bounds)
        if not fits:
            raise AmbiguousMapping(
                f"no projected CRS whose area holds the agency boundary puts {xs[0]!r}/{ys[0]!r} "
                f"inside it; give it with --crs EPSG:CODE"
            )
        if len(fits) > 1:
            raise AmbiguousMapping(
                f"{xs[0]!r}/{ys[0]!r} fit several CRSs that place the points differently: "
                + "; ".join(f"{g[0]} (like {', '.join(g[1:3]) or 'no other'})" for g in groups)
                + ". Choose with --crs EPSG:CODE"
            )
        from pyproj import CRS

        chosen = fits[0]
        alike = len(groups[0]) - 1
        reasons.append(
            f"x/y CRS {chosen} ({CRS.from_user_input(chosen).name}): of the projected CRSs whose "
            f"area holds the boundary, it puts the points inside it"
            + (f" ({alike} equivalent realisation(s) agree within 30 m)" if alike else "")
        )
    take("x", xs[0], "projected easting")
    take("y", ys[0], "projected northing")
    return chosen


def _infer_offence(raw, names, nonblank, take, cols, used, reasons, warnings, taxonomy, overrides):
    from .taxonomy import _norm, load_taxonomy, taxonomy_path

    tax = load_taxonomy(taxonomy) if taxonomy else None
    texty = [
        c
        for c in raw.columns
        if c not in used and len(nonblank[c]) > 0.9 * len(raw) and _frac(nonblank[c].str.contains(r"[A-Za-z]{3}")) > 0.9
    ]
    if "offense" not in overrides:
        if tax is not None:
            scored = sorted(
                (
                    (
                        _frac(
                            _norm(nonblank[c]).isin(tax.by_offense.keys() | {k.split("\x1f")[0] for k in tax.by_detail})
                        ),
                        c,
                    )
                    for c in texty
                ),
                reverse=True,
            )
            if scored and scored[0][0] > 0.5:
                take("offense", scored[0][1], f"{scored[0][0]:.0%} of its values are in the taxonomy")
        if "offense" not in cols:
            cand = [
                c
                for c in texty
                if any(w in names[c] for w in _OFFENSE_WORDS) and nonblank[c].str.strip().nunique() <= 1000
            ]
            if cand:
                take("offense", cand[0], f"named like an offence, {nonblank[cand[0]].nunique()} distinct values")
    if tax is not None and tax.by_detail and "offense" in cols and "offense_detail" not in overrides:
        off = _norm(raw[cols["offense"]])
        keys = set(tax.by_detail)
        scored = sorted(
            ((_frac((off + "\x1f" + _norm(raw[c])).isin(keys)), c) for c in texty if c not in used), reverse=True
        )
        # Details refine a few offences only, so a small share is expected; chance matches are nil.
        if scored and scored[0][0] * len(raw) >= 5:
            take("offense_detail", scored[0][1], f"{scored[0][0]:.1%} of (offence, detail) pairs are taxonomy details")
    if tax is None:
        warnings.append(
            "no taxonomy given: every offence maps to 'other' until one is; 'rtcc-geo mapping infer "
            "--taxonomy-out FILE' proposes one to review"
        )
        return None
    return taxonomy_path(taxonomy)


# --- a proposed taxonomy -----------------------------------------------------------

_CATEGORY_WORDS = (
    ("robbery", ("robbery", "holdup", "hold-up", "carjack")),
    ("burglary", ("burglary", "break and enter", "breaking", "b&e", "home invasion")),
    (
        "vehicle",
        (
            "motor vehicle theft",
            "vehicle theft",
            "auto theft",
            "stolen vehicle",
            "theft of vehicle",
            "theft of auto",
            "carjacking",
        ),
    ),
    (
        "violent",
        (
            "homicide",
            "murder",
            "manslaughter",
            "assault",
            "rape",
            "sexual",
            "sex offen",
            "battery",
            "kidnap",
            "shooting",
            "stabbing",
            "against a person",
            "aggravated",
            "stalking",
            "intimidation",
            "threat",
        ),
    ),
    ("theft", ("theft", "larceny", "shoplift", "pickpocket", "purse", "stolen", "pocket-picking")),
    ("drugs", ("narcotic", "drug", "cannabis", "marijuana", "controlled substance")),
    (
        "property",
        (
            "vandalism",
            "mischief",
            "damage",
            "arson",
            "fraud",
            "forgery",
            "embezzle",
            "graffiti",
            "counterfeit",
            "stolen property",
            "receiving stolen",
            "deceptive",
        ),
    ),
    (
        "disorder",
        (
            "disorderly",
            "drunk",
            "liquor",
            "public intoxication",
            "prostitution",
            "gambling",
            "weapon",
            "trespass",
            "loitering",
            "noise",
            "vagrancy",
            "curfew",
            "public peace",
            "interference",
            "indecen",
        ),
    ),
)


def propose_taxonomy(offences: dict[str, int]) -> pd.DataFrame:
    """``offense, category, note`` for each offence text, guessed from keywords (first
    match in a fixed order: robbery before violent, vehicle theft before theft), with the
    row count and 'guessed' in the note, for a person to review."""
    rows = []
    for text, n in sorted(offences.items(), key=lambda kv: -kv[1]):
        low = text.lower()
        cat = next((c for c, words in _CATEGORY_WORDS if any(w in low for w in words)), "other")
        rows.append(
            {"offense": text, "category": cat, "note": f"guessed from the text ({n} rows in the sample); review"}
        )
    return pd.DataFrame(rows, columns=["offense", "category", "note"])


__all__ = [
    "AmbiguousMapping",
    "Inference",
    "infer_mapping",
    "propose_taxonomy",
    "guess_crs",
    "sniff_encoding",
    "sniff_delimiter",
]
