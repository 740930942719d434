"""Vancouver Police Department GeoDASH open data (``crimedata_csv_*.csv``).

Columns used
------------
``YEAR MONTH DAY HOUR MINUTE``  local America/Vancouver wall time -> UTC, with
                    the DST edge cases explicit (:func:`base.localize`: a time in
                    the spring-forward gap is read as standard time, one in the
                    repeated fall-back hour as its first occurrence; both are
                    noted in ``extras.dst``).
                    Exactly 00:00 is VPD's "time unknown" placeholder (14.7 %
                    of rows): ``time_known = False``, kept at day level.
``X``, ``Y``        UTM zone 10N NAD83 (EPSG:26910) metres -> WGS84 with pyproj.
                    X = Y = 0 or blank is VPD's privacy suppression (all person
                    offences, homicides) -> ``no_coordinates``.
``TYPE``            -> ``offense_raw``; ``NEIGHBOURHOOD`` -> ``district``;
                    ``HUNDRED_BLOCK`` -> ``block``.

Ids
---
The source has no incident key. The id is ``van-<hash of the row's text>-<k>``
(:func:`base.content_ids`): the same file always gives the same ids, so
re-ingest adds nothing, while true repeats (two thefts at the same hundred
block in the same minute — 10,446 such rows in 2020-2025) stay distinct via
``k`` = 0, 1, ... in file order.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .base import Batch, RunningCount, blank_to_na, content_ids, extras_json, localize, read_csv_strings
from .taxonomy import load_taxonomy

SOURCE = "vancouver"
TIMEZONE = "America/Vancouver"
CRS = "EPSG:26910"
TIME_COLS = ("YEAR", "MONTH", "DAY", "HOUR", "MINUTE")
REQUIRED = ("TYPE",) + TIME_COLS + ("X", "Y")


@lru_cache(maxsize=8)
def transformer(crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True)


def project_to_wgs84(x: np.ndarray, y: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    """Projected x/y -> (lon, lat); NaN in, NaN out."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    lon = np.full(x.shape, np.nan)
    lat = np.full(x.shape, np.nan)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.any():
        lon[ok], lat[ok] = transformer(crs).transform(x[ok], y[ok])
    return lon, lat


def read(
    path: str | Path,
    timezone: str = TIMEZONE,
    source: str = SOURCE,
    raw: pd.DataFrame | None = None,
    state: dict[str, Any] | None = None,
) -> Batch:
    """Read one GeoDASH yearly file into a :class:`Batch` (canonical columns, no H3).
    ``raw``: one batch of the file's rows already read (:func:`base.iter_csv_strings`),
    ``state`` carried from batch to batch of the file (the ids' repeat numbers)."""
    if raw is None:
        raw = read_csv_strings(path, REQUIRED, "vancouver")
    idx = raw.index
    parts = {c.lower(): pd.to_numeric(raw[c].str.strip(), errors="coerce") for c in TIME_COLS}
    naive = pd.to_datetime(
        pd.DataFrame(
            {
                "year": parts["year"],
                "month": parts["month"],
                "day": parts["day"],
                "hour": parts["hour"],
                "minute": parts["minute"],
            }
        ),
        errors="coerce",
    )
    utc, dst = localize(naive, timezone)
    placeholder = ((parts["hour"] == 0) & (parts["minute"] == 0)).to_numpy()

    x = pd.to_numeric(raw["X"].str.strip(), errors="coerce").to_numpy()
    y = pd.to_numeric(raw["Y"].str.strip(), errors="coerce").to_numpy()
    privacy = (x == 0) & (y == 0)
    blank = ~np.isfinite(x) | ~np.isfinite(y)
    x = np.where(privacy, np.nan, x)
    y = np.where(privacy, np.nan, y)
    lon, lat = project_to_wgs84(x, y, CRS)

    offense = blank_to_na(raw["TYPE"])
    category, unmapped = load_taxonomy(SOURCE).categorise(offense)
    frame = pd.DataFrame(
        {
            "id": content_ids(
                raw,
                list(REQUIRED) + [c for c in ("HUNDRED_BLOCK", "NEIGHBOURHOOD") if c in raw],
                prefix="van-",
                seen=state.setdefault("ids", RunningCount()) if state is not None else None,
            ),
            "source": source,
            "occurred_from": utc,
            "occurred_to": pd.NaT,
            "reported_at": pd.NaT,
            "time_known": ~placeholder,
            "offense_raw": offense,
            "offense_code": pd.NA,
            "category": category,
            "lon": lon,
            "lat": lat,
            "block": blank_to_na(raw.get("HUNDRED_BLOCK", pd.Series("", index=idx))),
            "district": blank_to_na(raw.get("NEIGHBOURHOOD", pd.Series("", index=idx))),
        },
        index=idx,
    )
    frame["extras"] = extras_json({"x_utm": raw["X"], "y_utm": raw["Y"], "dst": dst}, idx)
    b = Batch(source, Path(path).name, raw, frame, unmapped=unmapped)
    bad = frame["occurred_from"].isna().to_numpy()
    if bad.any():
        b.flag(
            "unparseable_time",
            bad,
            "YEAR/MONTH/DAY/HOUR/MINUTE '"
            + raw["YEAR"]
            + "/"
            + raw["MONTH"]
            + "/"
            + raw["DAY"]
            + " "
            + raw["HOUR"]
            + ":"
            + raw["MINUTE"]
            + "' is not a valid date-time",
        )
    if privacy.any():
        b.flag("no_coordinates", privacy, "X = Y = 0: location withheld for privacy by VPD")
    if blank.any():
        b.flag("no_coordinates", blank, "X/Y blank")
    return b
