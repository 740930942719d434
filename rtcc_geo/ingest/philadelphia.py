"""Philadelphia Police Department incidents (Carto table ``incidents_part1_part2``).

Columns used
------------
``dispatch_date_time``  UTC instant (``2024-03-15 04:00:00+00``) -> ``occurred_from``
                        and ``reported_at`` (it is the dispatch time, the best
                        time the portal publishes). If blank, the local
                        ``dispatch_date`` + ``dispatch_time`` (America/New_York)
                        are used instead, DST-explicit (:func:`base.localize`).
``dc_key``              incident key, text without the ``.00000000`` Carto adds.
``ucr_general``         -> ``offense_code``; ``text_general_code`` -> ``offense_raw``.
``dc_dist``             -> ``district``; ``location_block`` -> ``block``.
``point_x``/``point_y`` lon/lat (WGS84); ~4 % blank -> ``no_coordinates``; junk
                        (0, 0) / (-80.5, 42.2) -> ``invalid_coordinates`` (bbox).
kept in ``extras``      ``dc_key`` (as published), ``psa``, ``objectid``,
                        ``cartodb_id`` and the portal's local ``hour``.

Homicide rows and repeated keys
-------------------------------
PPD adds one UCR-100 row *per homicide victim* under the DC number of the
originating incident (often an aggravated assault that is already in the
table), dated the day of death with a placeholder time 00:00. The portal's
``hour`` on these rows is the (rounded) hour of the *originating* incident,
weeks earlier in some cases (e.g. assault 2023-04-28 15:37, homicide row
2023-05-31 with hour 16), so it does not belong to that date. So:

* these rows are ``time_known = False`` (they count at day level only), and
  the portal hour is kept in ``extras.hour``;
* they are victims, not copies, and an analyst comparing our homicide counts
  with the city's (counted per victim) expects every one of them. They keep
  their rows with id ``<dc_key>-H<YYYYMMDD>-<n>`` (``n`` = 1, 2, ... among that
  key's victims on that local date, in file order). The id depends on the
  file alone, so re-ingest is idempotent and monthly files can be loaded in
  any order (one key's victims can fall in two months);
* any *other* repeated key within a file (none in 2023-2024) is quarantined
  as ``duplicate_key`` by validation, first copy kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from .base import Batch, RunningCount, blank_to_na, extras_json, localize, parse_local, read_csv_strings, to_float
from .taxonomy import load_taxonomy

SOURCE = "philadelphia"
TIMEZONE = "America/New_York"
REQUIRED = (
    "dc_key",
    "dispatch_date_time",
    "dispatch_date",
    "dispatch_time",
    "ucr_general",
    "text_general_code",
    "point_x",
    "point_y",
)
HOMICIDE_UCR = "100"


def read(
    path: str | Path,
    timezone: str = TIMEZONE,
    source: str = SOURCE,
    raw: pd.DataFrame | None = None,
    state: dict[str, Any] | None = None,
) -> Batch:
    """Read one Philadelphia extract into a :class:`Batch` (canonical columns, no H3).
    ``raw``: one batch of the file's rows already read (:func:`base.iter_csv_strings`),
    ``state`` carried from batch to batch of the file (the victims' numbering)."""
    if raw is None:
        raw = read_csv_strings(path, REQUIRED, "philadelphia")
    idx = raw.index
    col = lambda c: raw[c] if c in raw.columns else pd.Series("", index=idx)  # noqa: E731

    key = raw["dc_key"].str.strip().str.replace(r"\.0+$", "", regex=True)
    ucr = raw["ucr_general"].str.strip().str.replace(r"\.0+$", "", regex=True)
    dtime = raw["dispatch_time"].str.strip()
    ddate = raw["dispatch_date"].str.strip()

    # Time: the UTC field first; the local date+time where it is blank.
    utc = pd.to_datetime(raw["dispatch_date_time"].str.strip(), format="ISO8601", utc=True, errors="coerce")
    utc = utc.astype("datetime64[ns, UTC]")
    dst = pd.Series(None, index=idx, dtype="object")
    need = utc.isna() & (ddate != "")
    if need.any():
        naive = parse_local(
            ddate[need] + " " + dtime[need].replace("", "00:00:00"), ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
        )
        loc, note = localize(naive, timezone)
        utc[need] = loc
        dst[need] = note
    homicide = ucr == HOMICIDE_UCR
    date_only = homicide & ((dtime == "00:00:00") | (dtime == "00:00") | (dtime == ""))

    # Ids: dc_key; homicide-victim rows get -H<local date>-<n> (see module doc).
    ids = key.copy()
    if homicide.any():
        day = ddate[homicide].str.replace("-", "", regex=False).str.slice(0, 8)
        day = day.where(day != "", utc[homicide].dt.tz_convert(timezone).dt.strftime("%Y%m%d").fillna(""))
        hk = key[homicide] + "-H" + day
        victims = state.setdefault("victims", RunningCount()) if state is not None else RunningCount()
        n = pd.Series(victims.number(hk.to_numpy(dtype=object)), index=hk.index) + 1
        ids[homicide] = hk + "-" + n.astype(str)

    tax = load_taxonomy(SOURCE)
    offense = blank_to_na(raw["text_general_code"])
    category, unmapped = tax.categorise(offense)

    frame = pd.DataFrame(
        {
            "id": blank_to_na(ids.where(key != "", "")),
            "source": source,
            "occurred_from": utc,
            "occurred_to": pd.NaT,
            "reported_at": utc,
            "time_known": ~date_only.to_numpy(),
            "offense_raw": offense,
            "offense_code": blank_to_na(ucr),
            "category": category,
            "lon": to_float(raw["point_x"]),
            "lat": to_float(raw["point_y"]),
            "block": blank_to_na(col("location_block")),
            "district": blank_to_na(col("dc_dist")),
        },
        index=idx,
    )
    frame["extras"] = extras_json(
        {
            "dc_key": raw["dc_key"],
            "psa": col("psa"),
            "objectid": col("objectid"),
            "cartodb_id": col("cartodb_id"),
            "hour": col("hour"),
            "dst": dst,
        },
        idx,
    )
    b = Batch(source, Path(path).name, raw, frame, unmapped=unmapped)
    bad_time = frame["occurred_from"].isna().to_numpy()
    if bad_time.any():
        b.flag(
            "unparseable_time",
            bad_time,
            "dispatch_date_time '"
            + raw["dispatch_date_time"]
            + "' and dispatch_date/time '"
            + ddate
            + " "
            + dtime
            + "' not parseable",
        )
    nocoord = frame["lon"].isna().to_numpy() | frame["lat"].isna().to_numpy()
    if nocoord.any():
        b.flag("no_coordinates", nocoord, "point_x/point_y blank (not geocoded by the portal)")
    return b
