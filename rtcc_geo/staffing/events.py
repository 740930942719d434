"""Large public events: expected incident load around the venue and the extra
RTCC staffing it implies.

Baseline
    The ordinary load of the place at those hours: the weighted incidents
    inside the event area in the same local clock window ``w`` weeks earlier,
    :math:`w = 1..W` (same day of week and hours; DST-correct because the
    shift is done on local wall-clock time). Per hour offset ``k`` of the
    window, :math:`b_k = \\operatorname{mean}_w y_{k}(t_0 - 7w\\,\\mathrm{d})`
    with its week-to-week sd. Shifted windows that overlap a comparable past
    event (or the event itself) are skipped - they are not ordinary hours.

Uplift from comparable past events
    For each past event ``i`` at the same venue (e.g. last season's games):
    observed :math:`o_{ik}` minus that event's own baseline :math:`b_{ik}`
    (the ``W`` ordinary weeks before it); the uplift per hour offset is
    :math:`u_k = \\operatorname{mean}_i (o_{ik} - b_{ik})` over the past
    events that lasted at least ``k + 1`` hours, and 0 beyond. Additive,
    because an event brings its own crowd-driven incidents on top of the
    usual ones. Without comparables a planner can state an assumed
    multiplier (``uplift_factor``: :math:`u_k = (f - 1)\\,b_k`).

Expected load
    :math:`e_k = \\max(0, b_k + u_k)` events per hour in the area.

Staffing
    The uplift adds to the city-wide workload curve in the event's hours of
    the week; the extra operators are
    :math:`N(\\lambda_h + u_k) - N(\\lambda_h)` with :math:`N` the Erlang-C
    requirement (:func:`rtcc_geo.staffing.erlang.required_agents`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..store.base import naive_local
from .erlang import offered_load, required_agents
from .workload import load_weights

__all__ = [
    "EventLoad",
    "crowd_event",
    "crowd_settings",
    "event_area",
    "event_load",
    "event_load_from_incidents",
    "extra_staffing",
]


def event_area(polygon=None, lon: float | None = None, lat: float | None = None, radius_m: float | None = None):
    """The event area as a shapely polygon in EPSG:4326.

    Either ``polygon`` (shapely geometry, GeoJSON-like mapping, or a path to a
    GeoJSON file) or ``lon``, ``lat`` and ``radius_m`` (a true circle on the
    ground: buffered in an azimuthal equidistant projection centred on the point).
    """
    from shapely.geometry import Point, shape

    if polygon is not None:
        if isinstance(polygon, (str,)) or hasattr(polygon, "__fspath__"):
            import geopandas as gpd

            g = gpd.read_file(polygon).to_crs(4326)
            geom = g.union_all()
        elif isinstance(polygon, Mapping):
            geom = shape(polygon.get("geometry", polygon))
        else:
            geom = polygon
        if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError("the event area must be a polygon (or give a point and a radius in metres)")
        return geom
    if lon is None or lat is None or radius_m is None:
        raise ValueError("give the event area as a polygon, or as lon, lat and radius_m")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"lon/lat out of range: ({lon}, {lat}); give WGS84 degrees, lon first")
    if not radius_m > 0:
        raise ValueError(f"radius_m must be > 0 metres (got {radius_m})")
    from pyproj import CRS, Transformer

    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    back = Transformer.from_crs(aeqd, "EPSG:4326", always_xy=True)
    return _reproject(Point(0, 0).buffer(float(radius_m), quad_segs=64), back)


def _reproject(geom, transformer):
    import shapely

    return shapely.transform(geom, lambda x, y: transformer.transform(x, y), interleaved=False)


def _buffer_m(area, metres: float):
    from pyproj import CRS, Transformer

    c = area.centroid
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={c.y} +lon_0={c.x} +datum=WGS84 +units=m")
    fwd = Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)
    back = Transformer.from_crs(aeqd, "EPSG:4326", always_xy=True)
    return _reproject(_reproject(area, fwd).buffer(metres), back)


@dataclass
class EventLoad:
    """Expected incident load of one event, per local hour of its window.

    Attributes
    ----------
    hours : local start of each hour of the event (naive, local time).
    baseline, baseline_sd : ordinary weighted incidents per hour in the area.
    uplift : extra events per hour attributed to the event.
    expected : ``baseline + uplift``.
    comparables : one row per past event (start, end, observed, baseline, uplift).
    n_weeks : ordinary weeks in the baseline.
    extra_operators, operators_without, operators_with : filled by
        :func:`extra_staffing` (per hour of the event).
    """

    start: pd.Timestamp
    end: pd.Timestamp
    hours: pd.DatetimeIndex
    baseline: np.ndarray
    baseline_sd: np.ndarray
    uplift: np.ndarray
    expected: np.ndarray
    comparables: pd.DataFrame
    n_weeks: int
    extra_operators: np.ndarray | None = None
    operators_without: np.ndarray | None = None
    operators_with: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def expected_total(self) -> float:
        return float(self.expected.sum())

    @property
    def uplift_total(self) -> float:
        return float(self.uplift.sum())

    def frame(self) -> pd.DataFrame:
        d = {
            "hour": self.hours,
            "baseline": self.baseline,
            "baseline_sd": self.baseline_sd,
            "uplift": self.uplift,
            "expected": self.expected,
        }
        if self.extra_operators is not None:
            d.update(
                operators_without=self.operators_without,
                operators_with=self.operators_with,
                extra_operators=self.extra_operators,
            )
        return pd.DataFrame(d)

    def to_dict(self) -> dict:
        out = {
            "start": str(self.start),
            "end": str(self.end),
            "n_weeks": self.n_weeks,
            "baseline_total": round(float(self.baseline.sum()), 4),
            "uplift_total": round(self.uplift_total, 4),
            "expected_total": round(self.expected_total, 4),
            "hours": [str(h) for h in self.hours],
            "expected": [round(float(v), 4) for v in self.expected],
            "comparables": self.comparables.astype({"start": str, "end": str}).to_dict(orient="records"),
        }
        if self.extra_operators is not None:
            out["extra_operators"] = [int(v) for v in self.extra_operators]
            out["max_extra_operators"] = int(self.extra_operators.max()) if len(self.extra_operators) else 0
            out["extra_operator_hours"] = int(self.extra_operators.sum())
        return out


def _window_hours(start: pd.Timestamp, end: pd.Timestamp) -> int:
    n = (end - start) / pd.Timedelta(hours=1)
    if n <= 0:
        raise ValueError(f"the event must end after it starts (start {start}, end {end})")
    return int(np.ceil(n - 1e-9))


def _hourly(local: np.ndarray, w: np.ndarray, start: pd.Timestamp, nh: int, end: pd.Timestamp) -> np.ndarray:
    """Weighted counts per hour offset of the window [start, end) (local naive ns)."""
    s, e = start.value, end.value
    m = (local >= s) & (local < e)
    k = ((local[m] - s) // 3_600_000_000_000).astype(np.int64)
    return np.bincount(k, weights=w[m], minlength=nh)[:nh]


def _overlaps(a0, a1, spans) -> bool:
    return any(a0 < b1 and b0 < a1 for b0, b1 in spans)


def event_load_from_incidents(
    incidents: pd.DataFrame,
    area,
    start,
    end,
    tz: str,
    weights: Mapping[str, float] | str | None = None,
    *,
    weeks: int = 8,
    comparables: Sequence[tuple] = (),
    uplift_factor: float | None = None,
    data_start=None,
) -> EventLoad:
    """Event load from a canonical incident frame (``occurred_from`` UTC, ``lon``, ``lat``, ``category``).

    ``start``/``end`` (and the comparables' bounds) are naive local times or
    tz-aware instants. See the module docstring for the maths. Shifted
    windows that begin before ``data_start`` (default: the first incident of
    ``incidents``, inside the area or not) are skipped: no data is not zero
    incidents.
    """
    from shapely import contains_xy

    if weeks < 1:
        raise ValueError("weeks must be >= 1 (ordinary weeks in the baseline)")
    if uplift_factor is not None and uplift_factor < 0:
        raise ValueError("uplift_factor is a multiplier >= 0 (1.5 = half as much again)")
    w = load_weights(weights) if weights is not None else None
    t0, t1 = naive_local(start, tz), naive_local(end, tz)
    nh = _window_hours(t0, t1)
    comps = [(naive_local(a, tz), naive_local(b, tz)) for a, b in comparables]
    for a, b in comps:
        _window_hours(a, b)
    df = incidents
    if data_start is None:
        data_start = pd.to_datetime(df["occurred_from"], utc=True).min() if len(df) else None
    d0 = None if data_start is None or pd.isna(data_start) else naive_local(data_start, tz)
    inside = contains_xy(area, df["lon"].to_numpy(float), df["lat"].to_numpy(float)) if len(df) else np.zeros(0, bool)
    df = df.loc[inside]
    wt = df["category"].astype(str).map(w).fillna(0.0).to_numpy(float) if w is not None else np.ones(len(df))
    local = pd.DatetimeIndex(pd.to_datetime(df["occurred_from"], utc=True)).tz_convert(tz).tz_localize(None)
    loc = local.as_unit("ns").asi8 if len(local) else np.zeros(0, np.int64)
    busy = [(t0, t1)] + comps

    def baseline_of(a: pd.Timestamp, b: pd.Timestamp, n: int) -> tuple[np.ndarray, int]:
        rows: list[np.ndarray] = []
        k = 0
        j = 1
        while len(rows) < weeks and j <= weeks * 4:
            d = pd.Timedelta(days=7 * j)
            s, e = a - d, b - d
            j += 1
            if _overlaps(s, e, busy):
                continue
            if d0 is not None and s < d0:
                break
            rows.append(_hourly(loc, wt, s, n, e))
            k += 1
        if not rows:
            raise ValueError(
                f"no ordinary week before {a} to compare with (data from {d0}; windows overlapping "
                "an event are skipped): load earlier data or drop that comparable"
            )
        return np.vstack(rows), k

    B, n_weeks = baseline_of(t0, t1, nh)
    base = B.mean(0)
    sd = B.std(0, ddof=1) if len(B) > 1 else np.zeros(nh)
    rows = []
    diffs = []
    for a, b in comps:
        n = _window_hours(a, b)
        o = _hourly(loc, wt, a, n, b)
        bb, _ = baseline_of(a, b, n)
        d = o - bb.mean(0)
        diffs.append(d)
        rows.append(
            {
                "start": a,
                "end": b,
                "observed": float(o.sum()),
                "baseline": float(bb.mean(0).sum()),
                "uplift": float(d.sum()),
            }
        )
    up = np.zeros(nh)
    if diffs:
        for k in range(nh):
            vals = [d[k] for d in diffs if len(d) > k]
            up[k] = np.mean(vals) if vals else 0.0
    elif uplift_factor is not None:
        up = (uplift_factor - 1.0) * base
    return EventLoad(
        start=t0,
        end=t1,
        hours=pd.date_range(t0, periods=nh, freq="h"),
        baseline=base,
        baseline_sd=sd,
        uplift=up,
        expected=np.maximum(base + up, 0.0),
        comparables=pd.DataFrame(rows, columns=["start", "end", "observed", "baseline", "uplift"]),
        n_weeks=n_weeks,
        extra={"timezone": tz, "uplift_factor": uplift_factor},
    )


def event_load(
    store,
    area,
    start,
    end,
    q=None,
    weights: Mapping[str, float] | str | None = None,
    *,
    weeks: int = 8,
    comparables: Sequence[tuple] = (),
    uplift_factor: float | None = None,
    prefilter_res: int = 9,
) -> EventLoad:
    """:func:`event_load_from_incidents` on the incidents of ``store`` (one read
    spanning every window, pre-filtered to the H3 cells around the area)."""
    from ..grid import cover
    from ..store.base import Query
    from .workload import _local_bounds

    q = q or Query()
    _, _, tz = _local_bounds(store, q)
    if tz is None:
        raise ValueError("the store has no source: ingest incidents first")
    t0, t1 = naive_local(start, tz), naive_local(end, tz)
    comps = [(naive_local(a, tz), naive_local(b, tz)) for a, b in comparables]
    lo = min([t0] + [a for a, _ in comps]) - pd.Timedelta(days=7 * weeks * 4 + 1)
    hi = max([t1] + [b for _, b in comps])
    cells = cover(_buffer_m(area, 500.0), prefilter_res)  # res-9 cells reach ~200 m past their centre
    qq = q.with_(
        start=lo, end=hi, cells=tuple(int(c) for c in cells), cells_res=prefilter_res, include_unknown_time=False
    )
    inc = store.incidents(qq, columns=["occurred_from", "lon", "lat", "category", "time_known"])
    if "time_known" in inc.columns:
        inc = inc[inc["time_known"].astype(bool)]
    # where the data begins (city-wide, not just around the venue)
    days = store.counts(7, ("day",), q.with_(start=lo, end=hi, cells=None, cells_res=None))
    d0 = pd.Timestamp(days["day"].min()) if len(days) else None
    return event_load_from_incidents(
        inc, area, t0, t1, tz, weights, weeks=weeks, comparables=comps, uplift_factor=uplift_factor, data_start=d0
    )


def extra_staffing(
    ev: EventLoad,
    citywide: np.ndarray,
    *,
    handle_minutes: float = 20.0,
    service_level: float = 0.9,
    target_seconds: float = 60.0,
) -> EventLoad:
    """Fill ``ev.extra_operators``: Erlang-C operators for the city-wide curve
    plus the event's uplift, minus those for the curve alone, hour by hour.

    ``citywide`` is the (168,) workload curve (events per local hour of week).
    """
    lam = np.asarray(citywide, float)
    if lam.shape != (168,):
        raise ValueError("citywide must be the 168-value workload curve (events per local hour of week)")
    how = np.asarray(ev.hours.day_of_week * 24 + ev.hours.hour)
    base = lam[how]
    plus = base + np.maximum(ev.uplift, 0.0)
    kw: dict[str, Any] = dict(
        service_level_target=service_level, target_seconds=target_seconds, handle_seconds=handle_minutes * 60
    )
    n0 = required_agents(offered_load(base, handle_minutes), **kw)
    n1 = required_agents(offered_load(plus, handle_minutes), **kw)
    ev.operators_without, ev.operators_with, ev.extra_operators = n0, n1, n1 - n0
    return ev


def crowd_settings(source: str | None = None, path=None) -> dict:
    """``{"rate", "radius_m", "venues": [{"name", "lon", "lat"}]}`` from ``data/staffing/events.toml``
    (venues of ``source`` only)."""
    from ..config import DATA_DIR, read_toml

    default = DATA_DIR / "staffing" / "events.toml"
    raw = read_toml(path or default, "event settings", default)
    c = raw.get("crowd", {})
    rate = float(c.get("extra_events_per_10k_per_hour", 0.5))
    if not np.isfinite(rate) or rate < 0:
        raise ValueError("extra_events_per_10k_per_hour must be a number >= 0")
    venues = [
        {"name": str(v["name"]), "lon": float(v["lon"]), "lat": float(v["lat"])}
        for v in raw.get("venue", [])
        if source is None or v.get("source") == source
    ]
    return {"rate": rate, "radius_m": float(c.get("radius_m", 800.0)), "venues": venues}


def crowd_event(
    store,
    q,
    weights,
    lon: float,
    lat: float,
    start,
    hours: int,
    crowd: float,
    *,
    rate: float,
    radius_m: float = 800.0,
    weeks: int = 8,
) -> EventLoad:
    """A large public event given by its crowd: the ordinary load of the place at those
    hours (from the data) plus :math:`u = \\text{crowd} / 10^4 \\times \\text{rate}` extra
    events per hour (``rate``: the agency's stated assumption, see ``events.toml``).

    When the event lies after the data, the ordinary load is taken from the
    latest weeks the data holds (same weekday and hours), so a future event still
    has a measured baseline; ``extra["baseline_from"]`` says which date was used.
    """
    from .workload import _local_bounds

    if not 1 <= int(hours) <= 72:
        raise ValueError("an event lasts 1 to 72 hours")
    if not crowd >= 0:
        raise ValueError("the expected crowd is a number of people >= 0")
    _, _, tz = _local_bounds(store, q)
    t0 = naive_local(start, tz)
    last = store.counts(7, ("day",), q.with_(start=None, end=None) if hasattr(q, "with_") else q)
    ref = t0
    if len(last):
        data_end = pd.Timestamp(last["day"].max()) + pd.Timedelta(days=1)
        if getattr(data_end, "tzinfo", None) is not None:
            data_end = data_end.tz_localize(None)
        while ref + pd.Timedelta(hours=int(hours)) > data_end:
            ref -= pd.Timedelta(days=7)
    area = event_area(lon=lon, lat=lat, radius_m=radius_m)
    ev = event_load(
        store,
        area,
        ref + pd.Timedelta(days=7),
        ref + pd.Timedelta(days=7, hours=int(hours)),
        q,
        weights,
        weeks=weeks,
        uplift_factor=1.0,
    )
    up = np.full(len(ev.baseline), float(crowd) / 1e4 * float(rate))
    ev.start, ev.end = t0, t0 + pd.Timedelta(hours=int(hours))
    ev.hours = pd.date_range(t0, periods=len(ev.baseline), freq="h")
    ev.uplift, ev.expected = up, np.maximum(ev.baseline + up, 0.0)
    ev.extra.update(
        crowd=float(crowd),
        rate=float(rate),
        radius_m=radius_m,
        lon=lon,
        lat=lat,
        baseline_from=str((ref - pd.Timedelta(days=7 * (weeks - 1))).date()) if ref != t0 else None,
    )
    return ev
