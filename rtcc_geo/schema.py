"""The canonical incident schema every reader produces and every store keeps.

One row is one incident as reported by one source (agency). Times are stored
in UTC (tz-aware ``datetime64[ns, UTC]``); the agency's IANA time zone lives
in its :class:`~rtcc_geo.config.Agency` config and is applied only when a
local-time figure (hour of week, shift) is asked for.

Columns
-------
id : str
    The source's own incident key (unique per ``source``). Together
    ``(source, id)`` is the primary key, which is what makes re-ingest
    idempotent.
source : str
    Agency / feed name, e.g. ``"philadelphia"``.
occurred_from : datetime64[ns, UTC]
    Start of the window in which the incident happened (or the instant).
occurred_to : datetime64[ns, UTC], nullable
    End of the window for from/to reports (burglary discovered on return);
    null when the source gives an instant.
reported_at : datetime64[ns, UTC], nullable
    When the incident was reported / dispatched, where the source says.
time_known : bool
    False where the source gives only a date, or a placeholder time such as
    Vancouver's 00:00. Such rows count at day level but are excluded from
    hour-level figures by default.
offense_raw : str
    The source's own offense text.
offense_code : str, nullable
    UCR / IUCR / NIBRS code as the source spells it.
category : str
    Normalised offense category, one of :data:`CATEGORIES` (mapping lives in
    ``data/taxonomy/<source>.csv``).
lon, lat : float64
    WGS84 coordinates; NaN for an incident that is *not geolocated* (see
    :data:`NO_CELL`).
block : str, nullable
    Block-level address as published.
district : str, nullable
    Police district / neighbourhood as published.
extras : str
    JSON object with the source-specific columns we keep but do not model.
h3_r7 .. h3_r10 : int64
    H3 cell ids (as signed 64-bit integers, which every valid H3 index fits)
    at the configured resolutions; computed at ingest. :data:`NO_CELL` (0)
    for an incident that is not geolocated.

Not-geolocated incidents
------------------------
A row whose coordinates are blank or unusable (junk geocode, outside the
boundary) but which has a district and a valid time is still a crime: it is
loaded with ``lon = lat = NaN``, every H3 column = :data:`NO_CELL` and
``extras.not_geolocated`` saying why. It counts wherever the question is not
spatial (CompStat, time profiles, district tables, staffing workload); spatial
analyses ask for ``Query(geolocated=True)``, and any count by cell or filter on
cells leaves it out by itself.
"""

from __future__ import annotations

import pandas as pd

#: Normalised offense categories shared by all sources.
CATEGORIES: tuple[str, ...] = (
    "violent",
    "robbery",
    "burglary",
    "vehicle",
    "theft",
    "property",
    "drugs",
    "disorder",
    "other",
)

#: Default H3 resolutions indexed at ingest (res 9 ~ 0.1 km², res 10 ~ 0.015 km²).
DEFAULT_RESOLUTIONS: tuple[int, ...] = (7, 8, 9, 10)

#: H3 value of every resolution for a not-geolocated incident (0 is no valid H3 index).
NO_CELL: int = 0


#: Column name of the H3 index at resolution ``r``.
def h3_column(res: int) -> str:
    return f"h3_r{res}"


#: Core columns in their canonical order, with pandas dtypes.
CORE_DTYPES: dict[str, str] = {
    "id": "string",
    "source": "string",
    "occurred_from": "datetime64[ns, UTC]",
    "occurred_to": "datetime64[ns, UTC]",
    "reported_at": "datetime64[ns, UTC]",
    "time_known": "bool",
    "offense_raw": "string",
    "offense_code": "string",
    "category": "string",
    "lon": "float64",
    "lat": "float64",
    "block": "string",
    "district": "string",
    "extras": "string",
}

INCIDENT_COLUMNS: tuple[str, ...] = tuple(CORE_DTYPES) + tuple(h3_column(r) for r in DEFAULT_RESOLUTIONS)

#: Quarantine reason codes. Every rejected row carries exactly one (the first
#: rule it fails, in this order).
QUARANTINE_REASONS: tuple[str, ...] = (
    "missing_id",  # no usable incident key
    "invalid_field",  # a value no store can hold: wrong type, over-long, NUL or broken Unicode
    "unparseable_time",  # occurred time missing or not parseable
    "implausible_time",  # before the plausible floor (default 1990) or after now + 1 day
    "no_coordinates",  # lon/lat (or projected x/y) blank, NaN or the privacy 0/0
    "invalid_coordinates",  # out of WGS84 range or a junk point far from the agency
    "outside_boundary",  # a real point, but outside the agency's boundary (+ buffer)
    "duplicate_key",  # key repeated within the same input (the first copy is kept)
    "unknown_offense",  # reserved: offense text that cannot be categorised at all
)

#: Quarantine table columns.
QUARANTINE_COLUMNS: tuple[str, ...] = (
    "source",
    "file",
    "row_number",  # 1-based data row number within ``file`` (header excluded)
    "reason",
    "detail",
    "raw",  # the input row as JSON, so nothing is lost
)


def empty_incidents() -> pd.DataFrame:
    """An empty frame with the canonical columns and dtypes."""
    df = pd.DataFrame({c: pd.Series(dtype=t) for c, t in CORE_DTYPES.items()})
    for r in DEFAULT_RESOLUTIONS:
        df[h3_column(r)] = pd.Series(dtype="int64")
    return df


def conform(df: pd.DataFrame, resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS) -> pd.DataFrame:
    """Return ``df`` with exactly the canonical columns, in order, with canonical dtypes.

    Missing optional columns are added as nulls; unknown columns are dropped
    (readers put source-specific values into ``extras`` first).
    """
    # Columns gathered first and the frame built once (inserting column by column
    # re-blocks the frame each time); a column already of its dtype is kept as is.
    cols: dict[str, pd.Series] = {}
    for col, dtype in CORE_DTYPES.items():
        if col in df.columns:
            s = df[col]
            if s.dtype == pd.api.types.pandas_dtype(dtype):
                pass
            elif dtype.startswith("datetime64"):
                s = pd.to_datetime(s, utc=True).astype(dtype)
            else:
                s = s.astype(dtype)
        else:
            s = pd.Series(pd.NA if dtype != "bool" else True, index=df.index).astype(dtype)
            if col == "extras":
                s = pd.Series("{}", index=df.index, dtype="string")
        cols[col] = s
    for r in resolutions:
        s = df[h3_column(r)]
        cols[h3_column(r)] = s if s.dtype == "int64" else s.astype("int64")
    out = pd.DataFrame(cols, index=df.index, copy=False)
    return out.reset_index(drop=True)
