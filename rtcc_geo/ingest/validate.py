"""Validation with quarantine: every row ends loaded or quarantined, never lost.

Rules, in :data:`rtcc_geo.schema.QUARANTINE_REASONS` order; a rejected row
carries the *first* rule it fails, with a human ``detail`` and the raw input
row as JSON (``raw``), so ``read == loaded + quarantined`` for every file:

1. ``missing_id``          no usable incident key;
2. ``invalid_field``       a value no store can hold or announce: a text field
   longer than :data:`FIELD_LIMITS` (the id also keys a B-tree index and
   rides in a NOTIFY payload capped at 8000 bytes), a NUL character or
   broken Unicode (lone surrogates), ``extras`` over 16 kB; readers add
   their own (the feed: wrong JSON types);
3. ``unparseable_time``    the occurrence time is missing or not a date-time;
4. ``implausible_time``    before the floor (:func:`plausible_window`: default
   1990-01-01, ``$RTCC_TIME_FLOOR``) or after now + 1 day: a typo'd year
   would otherwise stretch every time axis and move the live clock;
5. ``no_coordinates``      lon/lat (or x/y) blank, or a source's privacy 0/0;
6. ``invalid_coordinates`` outside the WGS84 range, exactly (0, 0), or outside
   the agency's rough ``bbox`` (junk geocodes such as Philadelphia's
   (-80.5, 42.2), 400 km away);
7. ``outside_boundary``    inside the bbox but farther than
   ``boundary_buffer_m`` from the agency boundary. The buffer is applied in
   metres in a local projection (the boundary's UTM zone), points projected
   the same way, and the test is a vectorised ``shapely.contains_xy``;
8. ``duplicate_key``       an id repeated within the file among rows that pass
   1-7; the first copy is loaded;
9. ``unknown_offense``     the offense text is blank.

A row whose *only* failures are location rules (5-7) but which has a district
is still a crime, not an unusable row: it is loaded **not geolocated**
(``lon = lat = NaN``, H3 = :data:`~rtcc_geo.schema.NO_CELL`, the location
rule's detail in ``extras.not_geolocated``), so counts by district and time
match the agency's own. Only rows no count can use stay in quarantine.

Rows that pass are indexed on H3 (:func:`rtcc_geo.grid.index_points`) at the
agency's resolutions plus the schema's default ones, and conformed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .. import grid
from ..config import Agency
from ..schema import DEFAULT_RESOLUTIONS, NO_CELL, QUARANTINE_COLUMNS, QUARANTINE_REASONS, conform, h3_column
from .base import Batch, _arrow, _text_bytes, add_json_member, details_at, json_records

#: Longest text (characters) each field may hold; longer values are
#: ``invalid_field``. 15 ids of 128 characters plus the other announced
#: columns stay well under PostgreSQL's 8000-byte NOTIFY payload.
FIELD_LIMITS: dict[str, int] = {
    "id": 128,
    "offense_code": 128,
    "district": 128,
    "offense_raw": 1000,
    "block": 1000,
    "extras": 16_384,
}

#: Default earliest plausible incident time (``$RTCC_TIME_FLOOR`` overrides).
TIME_FLOOR = "1990-01-01"


def plausible_window(
    floor: str | pd.Timestamp | None = None, now: pd.Timestamp | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[floor, now + 1 day]`` in UTC: the incident times validation accepts.

    ``floor`` defaults to ``$RTCC_TIME_FLOOR`` or :data:`TIME_FLOOR` (naive
    values are UTC); ``now`` to the wall clock.
    """
    import os

    f = pd.Timestamp(floor if floor is not None else os.environ.get("RTCC_TIME_FLOOR") or TIME_FLOOR)
    f = f.tz_localize("UTC") if f.tzinfo is None else f.tz_convert("UTC")
    n = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    n = n.tz_localize("UTC") if n.tzinfo is None else n.tz_convert("UTC")
    return f, n + pd.Timedelta(days=1)


def _unstorable_text(s: pd.Series, limit: int) -> tuple[np.ndarray, pd.Series]:
    """Rows whose text is over ``limit`` characters or holds a NUL (PostgreSQL text cannot).

    Screened on the column's Arrow buffers first (longest value in bytes, a
    NUL byte anywhere), so a clean column costs two array scans; only a
    column that may hold a bad value is checked row by row."""
    import pyarrow.compute as pc

    arr = _arrow(s)
    if not len(arr):
        return np.zeros(0, dtype=bool), pd.Series([], index=s.index, dtype="object")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=len(arr) + 1, offset=arr.offset * 8)
    body = _text_bytes(arr).tobytes()
    may_be_long = int(np.diff(offsets).max()) > limit  # bytes >= characters
    # (Lone surrogates cannot reach here: pandas' Arrow strings refuse them; the feed screens them.)
    may_nul = b"\x00" in body or (s.name == "extras" and b"\\u0000" in body)
    if not (may_be_long or may_nul):
        return np.zeros(len(s), dtype=bool), pd.Series("", index=s.index, dtype="object")
    too_long = pc.fill_null(pc.greater(pc.utf8_length(arr), limit), False).to_numpy(zero_copy_only=False)
    broken = pc.fill_null(pc.match_substring(arr, "\x00"), False).to_numpy(zero_copy_only=False)
    if s.name == "extras":  # ... nor its JSON escape in extras (PostgreSQL's jsonb refuses \u0000)
        broken |= pc.fill_null(pc.match_substring(arr, "\\u0000"), False).to_numpy(zero_copy_only=False)
    det = pd.Series(
        np.where(too_long, "longer than " + str(limit) + " characters", "holds a NUL character"),
        index=s.index,
        dtype="object",
    )
    return too_long | broken, det


def safe_json_text(s: pd.Series) -> pd.Series:
    """Raw rows as JSON any store accepts: NUL and lone-surrogate escapes (which
    PostgreSQL's jsonb refuses) become U+FFFD, so the quarantine keeps the rest."""
    t = s.astype("string")
    t = t.str.replace(r"\\u0000|\\ud[89a-fA-F][0-9a-fA-F]{2}", "\\\\ufffd", regex=True)
    return t.str.replace("\x00", "\ufffd", regex=False)


#: Rules that only say the point is unusable: a row failing just these, with a
#: district, is loaded not geolocated instead of quarantined.
LOCATION_REASONS: tuple[str, ...] = ("no_coordinates", "invalid_coordinates", "outside_boundary")

#: Margin (degrees) around the boundary's bounds used as the junk box when an
#: agency config gives no ``bbox``.
BBOX_MARGIN_DEG = 0.5


@dataclass(frozen=True)
class Area:
    """An agency's spatial checks, prepared once (boundary buffered in metres)."""

    bbox: tuple[float, float, float, float] | None
    boundary_file: str | None
    buffer_m: float
    local_crs: str | None
    polygon: object | None  # buffered boundary in ``local_crs``, prepared

    def outside(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """True where a point is farther than the buffer from the boundary."""
        if self.polygon is None or len(lon) == 0:
            return np.zeros(len(lon), dtype=bool)
        import shapely

        x, y = _to_local(self.local_crs)(lon, lat)
        return ~shapely.contains_xy(self.polygon, x, y)


@lru_cache(maxsize=16)
def _to_local(crs: str):
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return t.transform


def agency_area(agency: Agency, near: list[Path] | None = None) -> Area:
    """Prepare ``agency``'s bbox and buffered boundary (boundary looked up beside
    the input files first, see :meth:`Agency.find_file`)."""
    path = agency.find_file(agency.boundary_file, near)
    return _area(agency.name, agency.bbox, str(path) if path else None, float(agency.boundary_buffer_m))


@lru_cache(maxsize=16)
def _area(name, bbox, path, buffer_m) -> Area:
    if path is None:
        return Area(bbox, None, buffer_m, None, None)
    import geopandas as gpd
    import shapely

    g = gpd.read_file(path)
    if g.crs is None:
        g = g.set_crs("EPSG:4326")
    g = g.to_crs("EPSG:4326")
    crs = g.estimate_utm_crs()
    geom = g.to_crs(crs).union_all().buffer(buffer_m)
    shapely.prepare(geom)
    if bbox is None:
        x0, y0, x1, y1 = g.total_bounds
        bbox = (x0 - BBOX_MARGIN_DEG, y0 - BBOX_MARGIN_DEG, x1 + BBOX_MARGIN_DEG, y1 + BBOX_MARGIN_DEG)
    return Area(tuple(bbox), Path(path).name, buffer_m, crs.to_string(), geom)


def _fmt_point(lon: pd.Series, lat: pd.Series) -> pd.Series:
    return "(" + lon.round(6).astype(str) + ", " + lat.round(6).astype(str) + ")"


def _point_detail(f: pd.DataFrame, suffix: str):
    """A flag detail naming each row's point (built only for the rows it ends up on)."""
    return lambda rows: (_fmt_point(f["lon"].iloc[rows], f["lat"].iloc[rows]) + suffix).to_numpy()


def validate(
    batch: Batch,
    area: Area,
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS,
    time_floor: str | pd.Timestamp | None = None,
    phases: dict[str, float] | None = None,
    seen: SeenIds | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch into ``(incidents, quarantine)``.

    ``incidents`` is canonical (:func:`schema.conform`, H3 columns filled);
    ``quarantine`` has :data:`schema.QUARANTINE_COLUMNS`. Their lengths add
    up to ``len(batch)``. ``phases``, when given, accumulates seconds spent
    in ``"h3"`` and ``"normalise"`` (block addresses) for the ingest bench.
    ``seen``: the ids loaded by the file's earlier batches (one per file, updated
    here), so a key repeated across batches is a ``duplicate_key`` as within one.
    """
    f = batch.frame
    n = len(f)
    lon = f["lon"].to_numpy(dtype="float64")
    lat = f["lat"].to_numpy(dtype="float64")

    idv = f["id"].astype("string").str.strip()
    batch.flag(
        "missing_id", (idv.isna() | (idv == "")).to_numpy(dtype=bool, na_value=True), "no incident key (id blank)"
    )
    for col, limit in FIELD_LIMITS.items():
        if col in f.columns:
            bad_text, det = _unstorable_text(f[col], limit)
            if bad_text.any():
                batch.flag("invalid_field", bad_text, col + " " + det)
    batch.flag("unparseable_time", f["occurred_from"].isna().to_numpy(), "occurrence time missing")
    lo, hi = plausible_window(time_floor)
    occ = f["occurred_from"]
    implausible = (occ.notna() & ((occ < lo) | (occ > hi))).to_numpy(dtype=bool)
    if implausible.any():
        batch.flag(
            "implausible_time",
            implausible,
            lambda rows: (
                "occurred "
                + occ.iloc[rows].astype(str)
                + f", outside the plausible window {lo:%Y-%m-%d} .. now + 1 day"
            ).to_numpy(),
        )
    nan = ~np.isfinite(lon) | ~np.isfinite(lat)
    batch.flag("no_coordinates", nan, "coordinates blank")

    has = ~nan
    with np.errstate(invalid="ignore"):
        bad_range = has & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
        zero = has & (lon == 0) & (lat == 0)
        if area.bbox is not None:
            x0, y0, x1, y1 = area.bbox
            out_box = has & ~((lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1))
        else:
            out_box = np.zeros(n, dtype=bool)
    batch.flag("invalid_coordinates", bad_range, _point_detail(f, " is outside the WGS84 range"))
    batch.flag("invalid_coordinates", zero, "(0, 0): a junk geocode")
    if out_box.any():
        batch.flag(
            "invalid_coordinates",
            out_box,
            _point_detail(f, f" is outside the agency's bounding box {list(area.bbox or ())} (junk geocode)"),
        )

    inbox = has & ~bad_range & ~zero & ~out_box
    outside = np.zeros(n, dtype=bool)
    if area.polygon is not None and inbox.any():
        outside[inbox] = area.outside(lon[inbox], lat[inbox])
        if outside.any():
            batch.flag(
                "outside_boundary",
                outside,
                _point_detail(f, f" is more than {area.buffer_m:g} m outside {area.boundary_file}"),
            )

    reason, detail = _resolve(batch, upto="duplicate_key")
    dist = f["district"].astype("string").str.strip() if "district" in f.columns else pd.Series(pd.NA, index=f.index)
    ungeo = np.isin(reason, LOCATION_REASONS) & (dist.fillna("") != "").to_numpy(dtype=bool)
    geo_note = pd.Series(detail, index=f.index).where(ungeo)
    for r in LOCATION_REASONS:  # these rows are judged by the remaining rules only
        if r in batch.flags:
            batch.flags[r] = [(m & ~ungeo, d) for m, d in batch.flags[r]]
    ok = pd.isna(reason) | ungeo
    dup = np.zeros(n, dtype=bool)
    if ok.any():
        ids_ok = idv[ok]
        rows = pd.Series(np.arange(1, n + 1) + batch.first_row, index=f.index)[ok]
        d = ids_ok.duplicated(keep="first").to_numpy().copy()
        first = rows.groupby(ids_ok.to_numpy()).transform("min") if d.any() else rows
        if seen is not None:  # a first copy in an earlier batch of the file
            earlier = seen.first_rows(ids_ok)
            d |= earlier > 0
            first = first.where(earlier == 0, pd.Series(earlier, index=first.index))
            seen.add(ids_ok[~d], rows[~d])
        if d.any():
            dup[np.flatnonzero(ok)[d]] = True
            det = pd.Series("", index=f.index, dtype="object")
            det[ok] = (
                "id " + ids_ok + " repeats data row " + first.astype(str) + " of this file (the first copy is loaded)"
            )
            batch.flag("duplicate_key", dup, det)
    off = f["offense_raw"].astype("string")
    blank_off = (off.isna() | (off.str.strip() == "")).to_numpy(dtype=bool, na_value=True)
    batch.flag("unknown_offense", blank_off, "offense text blank")

    reason, detail = _resolve(batch)
    bad = ~pd.isna(reason)

    good = f.loc[~bad].copy()
    res = tuple(sorted(set(resolutions) | set(DEFAULT_RESOLUTIONS)))
    located = ~ungeo[~bad]
    t0 = time.perf_counter()
    cells = (
        grid.index_points(good["lat"].to_numpy()[located], good["lon"].to_numpy()[located], res)
        if located.any()
        else {r: np.empty(0, dtype=np.int64) for r in res}
    )
    for level in res:
        ids = np.full(len(good), NO_CELL, dtype=np.int64)
        ids[located] = cells[level]
        good[h3_column(level)] = ids
    t1 = time.perf_counter()
    if (~located).any():
        good.loc[~located, ["lon", "lat"]] = np.nan
        good["extras"] = add_json_member(good.get("extras"), "not_geolocated", geo_note[~bad], ~located)
    if "block" in good.columns:  # one spelling per place; the published text kept
        from ..places import normalise_block

        raw_block = good["block"].astype("string")
        good["block"] = normalise_block(raw_block)
        changed = (raw_block.notna() & (raw_block != good["block"]).fillna(True)).to_numpy(dtype=bool)
        if changed.any():
            good["extras"] = add_json_member(good.get("extras"), "block_raw", raw_block, changed)
    if phases is not None:
        phases["h3"] = phases.get("h3", 0.0) + (t1 - t0)
        phases["normalise"] = phases.get("normalise", 0.0) + (time.perf_counter() - t1)
    incidents = conform(good)

    q = pd.DataFrame(
        {
            "source": batch.source,
            "file": batch.file,
            "row_number": np.flatnonzero(bad).astype("int64") + 1 + batch.first_row,
            "reason": reason[bad],
            "detail": detail[bad],
            "raw": safe_json_text(json_records(batch.raw.loc[bad])).to_numpy()
            if bad.any()
            else np.array([], dtype=object),
        }
    )
    for c in ("source", "file", "reason", "detail", "raw"):
        q[c] = q[c].astype("string")
    return incidents, q.loc[:, list(QUARANTINE_COLUMNS)]


class SeenIds:
    """The ids a file's earlier batches loaded, with the data row of each (first
    copies only): 64-bit hashes with the rows and the ids themselves (a hash match
    is confirmed on the text, so a collision never makes a duplicate), in memory
    and then on disk (:class:`~rtcc_geo.ingest.spill.SortedRuns`), so memory does
    not grow with the file. Hashed only when a later batch asks: a file read in one
    batch costs nothing."""

    def __init__(self, spill_keys: int | None = None) -> None:
        from .spill import SortedRuns

        self.runs = SortedRuns(spill_keys, with_text=True)
        self._pending: list[tuple[pd.Series, pd.Series, np.ndarray | None]] = []
        self._hashed: pd.Series | None = None  # the last ids asked about, hashed (by their index)

    def first_rows(self, ids: pd.Series) -> np.ndarray:
        """The data row each of ``ids`` was first loaded at in an earlier batch, else 0."""
        import pyarrow.compute as pc

        from ..store.embedded import hash_ids

        self._merge()
        out = np.zeros(len(ids), dtype=np.int64)
        self._hashed = None
        if not len(ids) or self.runs.empty:  # the first batch: nothing to hash against
            return out
        h = hash_ids(ids)
        self._hashed = pd.Series(h, index=ids.index)  # what add() keeps of them, hashed once
        qi, rows, texts = self.runs.find(h)
        if len(qi):
            text = _arrow(ids.astype("string")).take(qi)
            eq = pc.equal(texts, text.cast(texts.type)).to_numpy(zero_copy_only=False)
            out[qi[eq]] = rows[eq]
        return out

    def add(self, ids: pd.Series, rows: pd.Series) -> None:
        """Remember ``ids`` (first copies, none seen before) loaded at data ``rows``
        (some of the ids :meth:`first_rows` was last asked about, or new ones)."""
        if len(ids):
            h = None
            if self._hashed is not None and ids.index.isin(self._hashed.index).all():
                h = self._hashed.loc[ids.index].to_numpy()
            self._pending.append((ids, rows, h))

    def _merge(self) -> None:
        from ..store.embedded import hash_ids

        for ids, rows, h in self._pending:
            self.runs.add(
                hash_ids(ids) if h is None else h, rows.to_numpy(dtype=np.int64), _arrow(ids.astype("string"))
            )
        self._pending = []


def _resolve(batch: Batch, upto: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """First failing reason per row (in QUARANTINE_REASONS order, then flag
    order) and its detail, as object arrays (None where none)."""
    n = len(batch)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    open_ = np.ones(n, dtype=bool)
    for r in QUARANTINE_REASONS:
        if r == upto:
            break
        for m, d in batch.flags.get(r, ()):
            take = np.flatnonzero(m & open_)
            if len(take):
                reason[take] = r
                detail[take] = details_at(d, take)
                open_[take] = False
    return reason, detail
