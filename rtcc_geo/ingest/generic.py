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

    [time]
    formats = ["%m/%d/%Y %H:%M", "ISO8601"]   # tried in order
    utc = false                      # true: times are UTC (else local to the time zone)
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
from .base import Batch, IngestError, blank_to_na, content_ids, extras_json, localize, parse_local, read_csv_strings
from .chicago import coordinates, pad_digits, to_bool, unpad, zfill_code
from .taxonomy import load_taxonomy, taxonomy_path

_COLUMN_KEYS = ("id", "occurred", "occurred_date", "occurred_time", "occurred_to", "reported", "offense",
                "offense_detail", "offense_code", "block", "district", "lon", "lat", "x", "y")


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
        raise ValueError(f"{p}: [source] name = \"...\" is required (the source name stored with each row)")
    if "offense" not in cols:
        raise ValueError(f"{p}: [columns] offense = \"...\" is required")
    if "occurred" not in cols and "occurred_date" not in cols:
        raise ValueError(f"{p}: [columns] needs occurred = \"...\" or occurred_date (+ occurred_time)")
    if ("x" in cols) != ("y" in cols) or ("lon" in cols) != ("lat" in cols):
        raise ValueError(f"{p}: give both x and y (or both lon and lat)")
    if "x" not in cols and "lon" not in cols:
        raise ValueError(f"{p}: [columns] needs lon/lat or x/y")
    coords = m.get("coordinates", {})
    if "x" in cols and not coords.get("crs"):
        raise ValueError(f"{p}: [coordinates] crs = \"EPSG:...\" is required for x/y columns")
    t = m.get("time", {})
    tax = m.get("offense", {}).get("taxonomy")
    taxp = None
    if tax:
        cand = p.parent / tax
        taxp = cand if cand.exists() else taxonomy_path(tax)
    codes = m.get("codes", {})
    return Mapping(
        path=p, source=src["name"], columns=cols, extras=tuple(m.get("columns", {}).get("extras", ())),
        agency=src.get("agency"), timezone=src.get("timezone"),
        formats=tuple(t.get("formats", ("ISO8601",))), utc=bool(t.get("utc", False)),
        unknown_times=tuple(t.get("unknown_times", ())), crs=coords.get("crs"),
        zero_is_missing=bool(coords.get("zero_is_missing", True)),
        zfill=dict(codes.get("zfill", {})), pad_digits=dict(codes.get("pad_digits", {})),
        booleans=tuple(codes.get("booleans", ())), unpad=tuple(codes.get("unpad", ())), taxonomy=taxp,
    )


def read(path: str | Path, mapping: Mapping | str | Path, timezone: str | None = None) -> Batch:
    """Read one CSV through ``mapping`` into a :class:`Batch`."""
    mp = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    tz = timezone or mp.timezone or mp.load_agency().timezone
    c = mp.columns
    need = [v for k, v in c.items()] + list(mp.extras)
    raw = read_csv_strings(path, need, f"generic ({mp.path.name})")
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
    if "occurred" in c:
        text = raw[c["occurred"]]
    else:
        text = raw[c["occurred_date"]].str.strip()
        if "occurred_time" in c:
            text = text + " " + raw[c["occurred_time"]].str.strip()
    naive = parse_local(text, mp.formats)
    if mp.utc:
        occurred = naive.dt.tz_localize("UTC").astype("datetime64[ns, UTC]")
        dst = pd.Series(None, index=idx, dtype="object")
    else:
        occurred, dst = localize(naive, tz)
    conv = lambda k: (localize(parse_local(raw[c[k]], mp.formats), tz)[0] if not mp.utc  # noqa: E731
                      else parse_local(raw[c[k]], mp.formats).dt.tz_localize("UTC")) if k in c else pd.NaT
    if mp.unknown_times:
        hhmm = naive.dt.strftime("%H:%M")
        time_known = ~hhmm.isin(list(mp.unknown_times)).to_numpy()
    else:
        time_known = np.ones(len(raw), dtype=bool)

    # place
    if "lon" in c:
        lon, lat, from_xy = coordinates(raw[c["lat"]], raw[c["lon"]], get("x"), get("y"), mp.crs or "EPSG:4326")
        if not mp.zero_is_missing:
            zero = (pd.to_numeric(raw[c["lon"]], errors="coerce") == 0) & (pd.to_numeric(raw[c["lat"]], errors="coerce") == 0)
            lon = np.where(zero, 0.0, lon); lat = np.where(zero, 0.0, lat)
    else:
        lon, lat, from_xy = coordinates(pd.Series(np.nan, index=idx), pd.Series(np.nan, index=idx),
                                        raw[c["x"]], raw[c["y"]], mp.crs)
        from_xy = np.zeros(len(raw), dtype=bool)  # x/y is the only source: no note needed

    offense = blank_to_na(raw[c["offense"]])
    tax = load_taxonomy(mp.taxonomy if mp.taxonomy else mp.source)
    category, unmapped = tax.categorise(offense, get("offense_detail"))
    if "id" in c:
        ids = blank_to_na(raw[c["id"]])
    else:
        ids = content_ids(raw, prefix=f"{mp.source[:3]}-")
    frame = pd.DataFrame({
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
    }, index=idx)
    ex = {name: val(name) for name in mp.extras}
    if "lon" in c and "x" in c:
        ex["xy_projected"] = pd.Series(np.where(from_xy, True, None), index=idx, dtype="object")
    ex["dst"] = dst
    frame["extras"] = extras_json(ex, idx)
    b = Batch(mp.source, Path(path).name, raw, frame, unmapped=unmapped)
    bad = frame["occurred_from"].isna().to_numpy()
    if bad.any():
        what = c.get("occurred") or "+".join(c[k] for k in ("occurred_date", "occurred_time") if k in c)
        b.flag("unparseable_time", bad, f"{what} '" + text.astype(str) + "' matches none of " + str(list(mp.formats)))
    nocoord = ~np.isfinite(lon) | ~np.isfinite(lat)
    if nocoord.any():
        names = " and ".join(f"{c[a]}/{c[b_]}" for a, b_ in (("lat", "lon"), ("x", "y")) if a in c)
        b.flag("no_coordinates", nocoord, f"{names} blank" + (" or 0" if mp.zero_is_missing else ""))
    return b


def check_columns(path: str | Path, mapping: Mapping) -> None:
    """Raise :class:`IngestError` if ``path`` lacks a column the mapping names."""
    read_csv_strings(path, list(mapping.columns.values()) + list(mapping.extras), mapping.path.name)


__all__ = ["Mapping", "load_mapping", "read", "check_columns", "IngestError"]
