"""Generic CSV reader driven by a small TOML mapping: onboard an export without code.

A mapping file says which column is what (example:
``data/mappings/chicago_portal.toml``, which reads the Chicago portal files
exactly as the ``chicago`` reader does — tested)::

    [source]
    name = "springfield"             # stored as ``source``
    agency = "springfield"           # data/agencies/<name>.toml or a path (time zone,
                                     # boundary); or give timezone = "America/Chicago"

    [columns]                        # CSV column names; all but offense optional
    id = "incident_no"               # omit -> a content id (hash of the row + occurrence)
    occurred = "occurred_at"         # one date-time column ...
    # occurred_date = "date"         # ... or a date column and a time column
    # occurred_time = "time"
    occurred_to = "occurred_until"   # optional end of a from/to window
    reported = "reported_at"
    offense = "offense"
    offense_detail = "offense_desc"  # optional, finer text for the taxonomy
    offense_code = "ucr"
    block = "address"
    district = "beat"
    lon = "lon"                      # WGS84 lon/lat ...
    lat = "lat"
    x = "x"                          # ... and/or projected x/y (used where lon/lat blank)
    y = "y"
    extras = ["case_no", "premise"]  # kept as JSON in ``extras``

    # occurred_hour = "hour"         # ... or a date column and an integer hour column
    # occurred_minute = "minute"     #     (+ minute), `formats` then describe the date
    # occurred_year = "YEAR" ...     # ... or year/month/day[/hour/minute] columns
    #                                #     (occurred_year, occurred_month, occurred_day)

    [csv]                            # how the file is written (defaults shown)
    encoding = "utf-8-sig"           # e.g. "latin-1" (cp1252) for many RMS exports
    delimiter = ","                  # e.g. ";" where the comma is the decimal mark
    decimal = "."                    # "," : 40,0123 in coordinate and number columns

    [time]
    formats = ["%m/%d/%Y %H:%M", "ISO8601"]   # tried in order
    utc = false                      # true: times are UTC (else local to the time zone)
    offsets = false                  # true: texts carry UTC offsets (+00, -05:00): exact instants
    epoch = ""                       # "s" or "ms": the occurred column holds Unix epoch numbers (UTC)
    date_only = false                # true: only the local date is known (a time part, e.g.
                                     # local midnight written in UTC, is ignored): time unknown
    unknown_times = ["00:00"]        # local HH:MM values meaning "time unknown"

    [coordinates]
    crs = "EPSG:3435"                # CRS of x/y
    zero_is_missing = true           # 0/0 means "no location" (else it is junk)

    [codes]                          # restore codes that lost leading zeros
    zfill = { ucr = 4 }              # pad the whole code to N characters
    pad_digits = { fbi_code = 2 }    # pad the leading number to N digits
    booleans = ["arrest"]            # true/false/1/0/yes/no -> JSON booleans in extras
    unpad = ["beat"]                 # "014" / "14.0" -> "14"

    [offense]
    taxonomy = "springfield.csv"     # offense -> category CSV (path relative to this
                                     # file, or a name in data/taxonomy/)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Agency, load_agency
from .base import (
    Batch,
    IngestError,
    RunningCount,
    blank_to_na,
    content_ids,
    extras_json,
    localize,
    parse_local,
    read_csv_strings,
)
from .chicago import coordinates, pad_digits, to_bool, unpad, zfill_code
from .taxonomy import Taxonomy, load_taxonomy, taxonomy_path

_COLUMN_KEYS = (
    "id",
    "occurred",
    "occurred_date",
    "occurred_time",
    "occurred_hour",
    "occurred_minute",
    "occurred_year",
    "occurred_month",
    "occurred_day",
    "occurred_to",
    "reported",
    "offense",
    "offense_detail",
    "offense_code",
    "block",
    "district",
    "lon",
    "lat",
    "x",
    "y",
)
_PARTS = ("occurred_year", "occurred_month", "occurred_day")


@dataclass(frozen=True)
class Mapping:
    path: Path
    source: str
    columns: dict[str, str]
    extras: tuple[str, ...] = ()
    agency: str | None = None
    timezone: str | None = None
    formats: tuple[str, ...] = ("ISO8601",)
    utc: bool = False
    unknown_times: tuple[str, ...] = ()
    crs: str | None = None
    zero_is_missing: bool = True
    zfill: dict[str, int] = field(default_factory=dict)
    pad_digits: dict[str, int] = field(default_factory=dict)
    booleans: tuple[str, ...] = ()
    unpad: tuple[str, ...] = ()
    taxonomy: Path | None = None
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    decimal: str = "."
    offsets: bool = False
    epoch: str | None = None
    date_only: bool = False

    def load_agency(self) -> Agency:
        if self.agency:
            p = Path(self.agency)
            if p.suffix and not p.is_absolute():
                p = self.path.parent / p
            a = load_agency(p if p.suffix else self.agency)
            return a if not self.timezone else Agency(**{**a.__dict__, "timezone": self.timezone})
        if not self.timezone:
            raise ValueError(f"{self.path}: give [source] agency = ... or timezone = ...")
        return Agency(name=self.source, timezone=self.timezone)


def load_mapping(path: str | Path) -> Mapping:
    """Read and check a mapping TOML; errors say which key is wrong."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no mapping file {p}; see data/mappings/ for examples")
    try:
        m = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from None
    src = m.get("source", {})
    cols = {k: v for k, v in m.get("columns", {}).items() if k != "extras"}
    bad = sorted(set(cols) - set(_COLUMN_KEYS))
    if bad:
        raise ValueError(f"{p}: unknown [columns] key(s) {bad}; known: {list(_COLUMN_KEYS)} + extras")
    if "name" not in src:
        raise ValueError(f'{p}: [source] name = "..." is required (the source name stored with each row)')
    if "offense" not in cols:
        raise ValueError(f'{p}: [columns] offense = "..." is required')
    if "occurred" not in cols and "occurred_date" not in cols and not set(_PARTS) <= set(cols):
        raise ValueError(
            f'{p}: [columns] needs occurred = "...", or occurred_date (+ occurred_time or '
            f"occurred_hour), or occurred_year + occurred_month + occurred_day"
        )
    if "occurred_time" in cols and "occurred_hour" in cols:
        raise ValueError(f"{p}: give occurred_time or occurred_hour, not both")
    if ("x" in cols) != ("y" in cols) or ("lon" in cols) != ("lat" in cols):
        raise ValueError(f"{p}: give both x and y (or both lon and lat)")
    if "x" not in cols and "lon" not in cols:
        raise ValueError(f"{p}: [columns] needs lon/lat or x/y")
    coords = m.get("coordinates", {})
    if "x" in cols and not coords.get("crs"):
        raise ValueError(f'{p}: [coordinates] crs = "EPSG:..." is required for x/y columns')
    t = m.get("time", {})
    if t.get("epoch") and t["epoch"] not in ("s", "ms"):
        raise ValueError(f'{p}: [time] epoch is "s" or "ms", not {t["epoch"]!r}')
    csv_ = m.get("csv", {})
    tax = m.get("offense", {}).get("taxonomy")
    taxp = None
    if tax:
        cand = p.parent / tax
        taxp = cand if cand.exists() else taxonomy_path(tax)
    codes = m.get("codes", {})
    return Mapping(
        path=p,
        source=src["name"],
        columns=cols,
        extras=tuple(m.get("columns", {}).get("extras", ())),
        agency=src.get("agency"),
        timezone=src.get("timezone"),
        formats=tuple(t.get("formats", ("ISO8601",))),
        utc=bool(t.get("utc", False)),
        unknown_times=tuple(t.get("unknown_times", ())),
        crs=coords.get("crs"),
        zero_is_missing=bool(coords.get("zero_is_missing", True)),
        zfill=dict(codes.get("zfill", {})),
        pad_digits=dict(codes.get("pad_digits", {})),
        booleans=tuple(codes.get("booleans", ())),
        unpad=tuple(codes.get("unpad", ())),
        taxonomy=taxp,
        encoding=str(csv_.get("encoding", "utf-8-sig")),
        delimiter=str(csv_.get("delimiter", ",")),
        decimal=str(csv_.get("decimal", ".")),
        offsets=bool(t.get("offsets", False)),
        epoch=t.get("epoch") or None,
        date_only=bool(t.get("date_only", False)),
    )


def csv_options(mp: Mapping) -> tuple[list[str], str, str, str]:
    """``(required columns, format label, encoding, delimiter)`` for :func:`.base.read_csv_strings`."""
    return list(mp.columns.values()) + list(mp.extras), f"generic ({mp.path.name})", mp.encoding, mp.delimiter


def read(
    path: str | Path,
    mapping: Mapping | str | Path,
    timezone: str | None = None,
    raw: pd.DataFrame | None = None,
    state: dict | None = None,
) -> Batch:
    """Read one CSV through ``mapping`` into a :class:`Batch`. ``raw``: one batch of
    the file's rows already read (:func:`.base.iter_csv_strings`), ``state`` carried from
    batch to batch of the file (content ids' repeat numbers)."""
    mp = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    tz = timezone or mp.timezone or mp.load_agency().timezone
    c = mp.columns
    if raw is None:
        raw = read_csv_strings(path, *csv_options(mp))
    if mp.decimal != ".":
        for k in ("lon", "lat", "x", "y"):
            if k in c:
                raw[c[k]] = raw[c[k]].str.replace(mp.decimal, ".", regex=False)
    idx = raw.index
    get = lambda k: raw[c[k]] if k in c else None  # noqa: E731
    fixed = {}
    for name, w in mp.zfill.items():
        fixed[name] = zfill_code(raw[name], int(w))
    for name, w in mp.pad_digits.items():
        fixed[name] = pad_digits(raw[name], int(w))
    for name in mp.booleans:
        fixed[name] = to_bool(raw[name])
    for name in mp.unpad:
        fixed[name] = unpad(raw[name])
    val = lambda name: fixed.get(name, raw[name])  # noqa: E731

    # time
    text, naive, occurred, dst = _occurred(raw, mp, tz)
    conv = lambda k: _instant(raw[c[k]], mp, tz) if k in c else pd.NaT  # noqa: E731
    if mp.date_only:
        time_known = np.zeros(len(raw), dtype=bool)
    elif mp.unknown_times:
        hhmm = naive.dt.strftime("%H:%M")
        time_known = ~hhmm.isin(list(mp.unknown_times)).to_numpy()
    else:
        time_known = np.ones(len(raw), dtype=bool)

    # place
    if "lon" in c:
        lon, lat, from_xy = coordinates(raw[c["lat"]], raw[c["lon"]], get("x"), get("y"), mp.crs or "EPSG:4326")
        if not mp.zero_is_missing:
            zero = (pd.to_numeric(raw[c["lon"]], errors="coerce") == 0) & (
                pd.to_numeric(raw[c["lat"]], errors="coerce") == 0
            )
            lon = np.where(zero, 0.0, lon)
            lat = np.where(zero, 0.0, lat)
    else:
        assert mp.crs is not None  # load_mapping requires a crs for x/y columns
        lon, lat, from_xy = coordinates(
            pd.Series(np.nan, index=idx), pd.Series(np.nan, index=idx), raw[c["x"]], raw[c["y"]], mp.crs
        )
        from_xy = np.zeros(len(raw), dtype=bool)  # x/y is the only source: no note needed

    offense = blank_to_na(raw[c["offense"]])
    if mp.taxonomy or taxonomy_path(mp.source).exists():
        tax = load_taxonomy(mp.taxonomy if mp.taxonomy else mp.source)
    else:  # no taxonomy yet: every offence is 'other' and reported as unmapped, never silently
        tax = Taxonomy(Path("(none)"), {}, {})
    category, unmapped = tax.categorise(offense, get("offense_detail"))
    if "id" in c:
        ids = blank_to_na(raw[c["id"]])
    else:
        ids = content_ids(
            raw, prefix=f"{mp.source[:3]}-", seen=state.setdefault("ids", RunningCount()) if state is not None else None
        )
    frame = pd.DataFrame(
        {
            "id": ids,
            "source": mp.source,
            "occurred_from": occurred,
            "occurred_to": conv("occurred_to"),
            "reported_at": conv("reported"),
            "time_known": time_known,
            "offense_raw": offense,
            "offense_code": blank_to_na(val(c["offense_code"])) if "offense_code" in c else pd.NA,
            "category": category,
            "lon": lon,
            "lat": lat,
            "block": blank_to_na(get("block")) if "block" in c else pd.NA,
            "district": blank_to_na(val(c["district"])) if "district" in c else pd.NA,
        },
        index=idx,
    )
    ex = {name: val(name) for name in mp.extras}
    if "lon" in c and "x" in c:
        ex["xy_projected"] = pd.Series(np.where(from_xy, True, None), index=idx, dtype="object")  # type: ignore[call-overload]  # numpy stubs refuse None; an object array is meant
    ex["dst"] = dst
    frame["extras"] = extras_json(ex, idx)
    b = Batch(mp.source, Path(path).name, raw, frame, unmapped=unmapped)
    bad = frame["occurred_from"].isna().to_numpy()
    if bad.any():
        what = c.get("occurred") or "+".join(c[k] for k in _TIME_KEYS[1:] if k in c)
        how = f"epoch {mp.epoch}" if mp.epoch else str(list(mp.formats))
        b.flag("unparseable_time", bad, f"{what} '" + text.astype(str) + "' matches none of " + how)
    nocoord = ~np.isfinite(lon) | ~np.isfinite(lat)
    if nocoord.any():
        names = " and ".join(f"{c[a]}/{c[b_]}" for a, b_ in (("lat", "lon"), ("x", "y")) if a in c)
        b.flag("no_coordinates", nocoord, f"{names} blank" + (" or 0" if mp.zero_is_missing else ""))
    return b


_TIME_KEYS = ("occurred", "occurred_date", "occurred_time", "occurred_hour", "occurred_minute", *_PARTS)


def _number(s: pd.Series, decimal: str) -> pd.Series:
    s = s.astype("string").str.strip()
    if decimal != ".":
        s = s.str.replace(decimal, ".", regex=False)
    return pd.to_numeric(s, errors="coerce")


def _instant(text: pd.Series, mp: Mapping, tz: str) -> pd.Series:
    """UTC instants of one time column written as ``mp`` says (epoch, offsets, UTC or local)."""
    if mp.epoch:
        n = _number(text, mp.decimal)
        return pd.to_datetime(n, unit=mp.epoch, utc=True, errors="coerce").astype("datetime64[ns, UTC]")
    if mp.offsets:
        t = text.astype("string").str.strip()
        out = pd.Series(pd.NaT, index=t.index, dtype="datetime64[ns, UTC]")
        todo = t.notna() & (t != "")
        for fmt in mp.formats:
            if not todo.any():
                break
            out[todo] = pd.to_datetime(t[todo], format=fmt, utc=True, errors="coerce").astype("datetime64[ns, UTC]")
            todo = todo & out.isna()
        return out
    naive = parse_local(text, mp.formats)
    if mp.utc:
        return naive.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
    return localize(naive, tz)[0]


def _occurred(raw: pd.DataFrame, mp: Mapping, tz: str) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """``(text for messages, naive local time, UTC instant, DST note)`` of the occurrence,
    whatever layout the export uses (see the module doc)."""
    c = mp.columns
    none = pd.Series(None, index=raw.index, dtype="object")
    if "occurred" in c:
        text = raw[c["occurred"]]
        if mp.epoch or mp.offsets or mp.utc:
            utc = _instant(text, mp, tz)
            naive = utc.dt.tz_convert(tz).dt.tz_localize(None).astype("datetime64[ns]")
            if not mp.date_only:
                return text, naive, utc, none
            naive = naive.dt.normalize()
        else:
            naive = parse_local(text, mp.formats)
    elif "occurred_date" in c:
        text = raw[c["occurred_date"]].str.strip()
        if "occurred_time" in c:
            text = text + " " + raw[c["occurred_time"]].str.strip()
            naive = parse_local(text, mp.formats)
        else:
            naive = parse_local(text, mp.formats)
            if "occurred_hour" in c:
                h = _number(raw[c["occurred_hour"]], mp.decimal)
                m = _number(raw[c["occurred_minute"]], mp.decimal) if "occurred_minute" in c else 0
                text = text + " h" + raw[c["occurred_hour"]].str.strip()
                ok = h.between(0, 23) & (pd.Series(m, index=raw.index).between(0, 59))
                naive = (naive.dt.normalize() + pd.to_timedelta(h, unit="h") + pd.to_timedelta(m, unit="m")).where(ok)
    else:
        parts = {
            k.removeprefix("occurred_"): _number(raw[c[k]], mp.decimal)
            for k in (*_PARTS, "occurred_hour", "occurred_minute")
            if k in c
        }
        text = (
            raw[c["occurred_year"]].str.strip()
            + "-"
            + raw[c["occurred_month"]].str.strip()
            + "-"
            + raw[c["occurred_day"]].str.strip()
        )
        naive = pd.to_datetime(pd.DataFrame(parts), errors="coerce")
    if mp.date_only:
        naive = naive.dt.normalize()
    if mp.utc and not mp.date_only:
        return text, naive, naive.dt.tz_localize("UTC").astype("datetime64[ns, UTC]"), none
    utc, dst = localize(naive, tz)
    return text, naive, utc, dst


def check_columns(path: str | Path, mapping: Mapping) -> None:
    """Raise :class:`IngestError` if ``path`` lacks a column the mapping names."""
    read_csv_strings(
        path,
        list(mapping.columns.values()) + list(mapping.extras),
        mapping.path.name,
        encoding=mapping.encoding,
        delimiter=mapping.delimiter,
    )


__all__ = ["Mapping", "load_mapping", "read", "check_columns", "IngestError"]
