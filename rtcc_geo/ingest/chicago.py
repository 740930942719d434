"""City of Chicago "Crimes - 2001 to present" (Socrata dataset ijzp-q8t2).

Columns used
------------
``id``                  incident key.
``date``                local America/Chicago: ``M/D/YYYY H:MM`` (the shared
                        sample), ``MM/DD/YYYY HH:MM:SS AM`` (the portal's CSV
                        export) or ISO 8601 (the SODA API, as written by
                        :mod:`rtcc_geo.ingest.portals`); DST-explicit.
``iucr``, ``fbi_code``  codes that lost their leading zeros in spreadsheet round
                        trips are restored: IUCR to 4 characters (``266`` ->
                        ``0266``, ``31A`` -> ``031A``), the FBI code's number
                        to 2 digits (``2`` -> ``02``, ``4A`` -> ``04A``).
                        ``iucr`` -> ``offense_code``.
``primary_type``        -> ``offense_raw``; with ``description`` it picks the
                        category (``data/taxonomy/chicago.csv``).
``latitude/longitude``  WGS84; where blank, ``x_coordinate/y_coordinate``
                        (Illinois State Plane East, EPSG:3435, US feet) are
                        projected with pyproj; 0/0 or blank -> ``no_coordinates``.
``district``            without padding (the API writes ``014``, exports ``14``);
                        ``block`` as published.
kept in ``extras``      case_number, description, location_description, arrest,
                        domestic, beat, ward, community_area, fbi_code, year,
                        updated_on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .base import Batch, blank_to_na, extras_json, localize, parse_local, read_csv_strings
from .taxonomy import load_taxonomy
from .vancouver import project_to_wgs84

SOURCE = "chicago"
TIMEZONE = "America/Chicago"
XY_CRS = "EPSG:3435"
REQUIRED = ("id", "date", "iucr", "primary_type", "latitude", "longitude")
TIME_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "ISO8601")
EXTRAS = (
    "case_number",
    "description",
    "location_description",
    "arrest",
    "domestic",
    "beat",
    "ward",
    "community_area",
    "fbi_code",
    "year",
    "updated_on",
)


def zfill_code(s: pd.Series, width: int) -> pd.Series:
    """Left-pad codes of digits (+ an optional letter) to ``width`` characters."""
    s = s.astype("string").str.strip()
    ok = s.str.fullmatch(r"\d+[A-Za-z]?").fillna(False)
    return s.where(~ok, s.str.upper().str.zfill(width))


def pad_digits(s: pd.Series, width: int) -> pd.Series:
    """Left-pad the leading number of a code to ``width`` digits (``4A`` -> ``04A``)."""
    s = s.astype("string").str.strip()
    m = s.str.extract(r"^(\d+)([A-Za-z]*)$")
    ok = m[0].notna()
    return s.where(~ok, m[0].str.zfill(width) + m[1].str.upper())


def unpad(s: pd.Series) -> pd.Series:
    """Numbers written with padding or a decimal tail (``014``, ``14.0``) -> ``14``;
    other text unchanged. The portal API pads districts, CSV exports do not."""
    s = s.astype("string").str.strip().str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    return s.str.replace(r"^0+(?=\d)", "", regex=True)


def to_bool(s: pd.Series) -> pd.Series:
    t = s.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[t.isin(["true", "t", "1", "y", "yes"]).fillna(False)] = True
    out[t.isin(["false", "f", "0", "n", "no"]).fillna(False)] = False
    return out


def coordinates(
    lat: pd.Series, lon: pd.Series, x: pd.Series | None, y: pd.Series | None, xy_crs: str = XY_CRS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, from_xy): lat/lon where given, else projected x/y; 0 means missing."""
    la = pd.to_numeric(lat, errors="coerce").to_numpy(dtype="float64")
    lo = pd.to_numeric(lon, errors="coerce").to_numpy(dtype="float64")
    la = np.where((la == 0) & (lo == 0), np.nan, la)
    lo = np.where(np.isnan(la), np.nan, lo)
    need = np.isnan(la) | np.isnan(lo)
    from_xy = np.zeros(len(la), dtype=bool)
    if need.any() and x is not None and y is not None:
        xx = pd.to_numeric(x, errors="coerce").to_numpy(dtype="float64")[need]
        yy = pd.to_numeric(y, errors="coerce").to_numpy(dtype="float64")[need]
        zero = (xx == 0) | (yy == 0)
        xx[zero] = np.nan
        yy[zero] = np.nan
        plo, pla = project_to_wgs84(xx, yy, xy_crs)
        lo = lo.copy()
        la = la.copy()
        lo[need], la[need] = plo, pla
        from_xy[need] = np.isfinite(plo)
    return lo, la, from_xy


def read(
    path: str | Path,
    timezone: str = TIMEZONE,
    source: str = SOURCE,
    raw: pd.DataFrame | None = None,
    state: dict | None = None,
) -> Batch:
    """Read one Chicago portal file into a :class:`Batch` (canonical columns, no H3).
    ``raw``: one batch of the file's rows already read (:func:`base.iter_csv_strings`);
    ``state`` is not needed (ids are the portal's)."""
    if raw is None:
        raw = read_csv_strings(path, REQUIRED, "chicago")
    idx = raw.index
    col = lambda c: raw[c] if c in raw.columns else pd.Series("", index=idx)  # noqa: E731

    naive = parse_local(raw["date"], TIME_FORMATS)
    utc, dst = localize(naive, timezone)
    lon, lat, from_xy = coordinates(raw["latitude"], raw["longitude"], raw.get("x_coordinate"), raw.get("y_coordinate"))
    offense = blank_to_na(raw["primary_type"])
    category, unmapped = load_taxonomy(SOURCE).categorise(offense, col("description"))
    frame = pd.DataFrame(
        {
            "id": blank_to_na(raw["id"]),
            "source": source,
            "occurred_from": utc,
            "occurred_to": pd.NaT,
            "reported_at": pd.NaT,
            "time_known": True,
            "offense_raw": offense,
            "offense_code": blank_to_na(zfill_code(raw["iucr"], 4)),
            "category": category,
            "lon": lon,
            "lat": lat,
            "block": blank_to_na(col("block")),
            "district": blank_to_na(unpad(col("district"))),
        },
        index=idx,
    )
    ex = {c: col(c) for c in EXTRAS if c in raw.columns}
    if "fbi_code" in ex:
        ex["fbi_code"] = pad_digits(ex["fbi_code"], 2)
    for c in ("arrest", "domestic"):
        if c in ex:
            ex[c] = to_bool(ex[c])
    ex["xy_projected"] = pd.Series(np.where(from_xy, True, None), index=idx, dtype="object")  # type: ignore[call-overload]  # numpy stubs refuse None; an object array is meant
    ex["dst"] = dst
    frame["extras"] = extras_json(ex, idx)
    b = Batch(source, Path(path).name, raw, frame, unmapped=unmapped)
    bad = frame["occurred_from"].isna().to_numpy()
    if bad.any():
        b.flag("unparseable_time", bad, "date '" + raw["date"] + "' matches none of " + str(list(TIME_FORMATS)))
    nocoord = ~np.isfinite(lon) | ~np.isfinite(lat)
    if nocoord.any():
        b.flag("no_coordinates", nocoord, "latitude/longitude and x_coordinate/y_coordinate blank or 0")
    return b
