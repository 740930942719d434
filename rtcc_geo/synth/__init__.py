"""A seeded synthetic city: a realistic incident stream for offline demos and tests.

The stream is drawn over a real outline (the shipped, simplified Philadelphia
police districts, ``data/boundaries/synthetic_city_districts.geojson``) and has
the structure crime analysts look for, so every analysis has something to find:

* **stable hot spots**: a few dozen places (Gaussian, ~120 m spread) that carry
  about a third of all incidents, each with its own category mix and its own
  hours (night-life places peak Friday/Saturday nights, retail places in the
  afternoon);
* **emerging / fading places**: one hot spot switches on half-way through the
  period, one fades out, so emerging-hot-spot analysis has a *new* and a
  *diminishing* pattern to report;
* **an hour-of-week rhythm** (trough ~05:00, peak ~17:00, weekend-night bump),
  **seasonality** (summer ~+20 %) and a mild **trend**;
* **near-repeat contagion**: burglaries and vehicle crimes trigger offspring
  nearby (< ~200 m) within days (a Hawkes-type branching process), as in the
  near-repeat literature;
* **block-level geocoding**: points snap to a ~100 m block grid with block
  addresses, so many incidents share a point, as in real portal data;
* **time quality**: ~3 % of rows are date-only (``time_known = False``) and
  ~15 % of burglaries are known only within a from/to window.

Everything is a pure function of the seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import grid
from ..config import DATA_DIR
from ..schema import DEFAULT_RESOLUTIONS, conform, h3_column

SOURCE = "synthetic"
TIMEZONE = "America/New_York"
BOUNDARY_FILE = DATA_DIR / "boundaries" / "synthetic_city_districts.geojson"

# Base category mix of background crime (shares sum to 1).
_BACKGROUND_MIX = {
    "theft": 0.26,
    "property": 0.16,
    "vehicle": 0.14,
    "violent": 0.13,
    "disorder": 0.09,
    "burglary": 0.07,
    "drugs": 0.06,
    "robbery": 0.04,
    "other": 0.05,
}
_OFFENSE_TEXT = {
    "violent": ["Aggravated Assault No Firearm", "Other Assaults", "Aggravated Assault Firearm"],
    "robbery": ["Robbery No Firearm", "Robbery Firearm"],
    "burglary": ["Burglary Residential", "Burglary Non-Residential"],
    "vehicle": ["Motor Vehicle Theft", "Theft from Vehicle"],
    "theft": ["Thefts", "Retail Theft"],
    "property": ["Vandalism/Criminal Mischief", "Fraud"],
    "drugs": ["Narcotic / Drug Law Violations"],
    "disorder": ["Disorderly Conduct", "Public Drunkenness"],
    "other": ["All Other Offenses"],
}
_PREFIX = ["", "N ", "S ", "W "]
_SUFFIX = ["ST", "AVE", "RD", "BLVD", "LN"]
_STREETS = [
    "MARKET",
    "CHESTNUT",
    "WALNUT",
    "SPRUCE",
    "PINE",
    "LOCUST",
    "ARCH",
    "RACE",
    "VINE",
    "GIRARD",
    "BROAD",
    "FRONT",
    "KENSINGTON",
    "GERMANTOWN",
    "LEHIGH",
    "ALLEGHENY",
    "ERIE",
    "HUNTING PARK",
    "OLNEY",
    "COTTMAN",
    "CASTOR",
    "FRANKFORD",
    "RIDGE",
    "LANCASTER",
]


@dataclass(frozen=True)
class SyntheticCity:
    """Parameters of the synthetic stream (all defaults are sensible for a demo)."""

    seed: int = 0
    start: str = "2024-01-01"
    end: str = "2025-01-01"  # exclusive, local dates
    daily_rate: float = 300.0  # mean background + hot-spot incidents a day (before contagion)
    n_hotspots: int = 30
    hotspot_share: float = 0.35
    contagion: float = 0.5  # mean offspring per burglary / vehicle incident
    contagion_days: float = 2.0
    contagion_m: float = 60.0
    date_only_share: float = 0.03
    window_share_burglary: float = 0.15


def generate(city: SyntheticCity = SyntheticCity(), boundary=None, progress: bool = False) -> pd.DataFrame:
    """Draw the incident stream; returns canonical incidents (see :mod:`rtcc_geo.schema`)."""
    import geopandas as gpd

    rng = np.random.default_rng(city.seed)
    districts = boundary if boundary is not None else gpd.read_file(BOUNDARY_FILE)
    outline = districts.union_all()
    # A local metric frame for offsets (UTM 18N covers the outline).
    to_m = districts.estimate_utm_crs()
    outline_m = gpd.GeoSeries([outline], crs=4326).to_crs(to_m).iloc[0]

    days = pd.date_range(city.start, city.end, freq="D", inclusive="left")
    nd = len(days)
    t_frac = np.arange(nd) / max(nd - 1, 1)
    doy = days.day_of_year.to_numpy()
    season = 1.0 + 0.2 * np.cos(2 * np.pi * (doy - 200) / 365.25)  # peak mid-July
    trend = 1.0 + 0.05 * (t_frac - 0.5)
    day_rate = city.daily_rate * season * trend

    # --- hot spots -----------------------------------------------------------
    hs_xy = _sample_in(outline_m, city.n_hotspots + 2, rng)
    hs_weight = rng.pareto(1.5, city.n_hotspots + 2) + 1.0
    hs_kind = rng.choice(["nightlife", "retail", "residential"], size=city.n_hotspots + 2, p=[0.35, 0.4, 0.25])
    on = np.ones((city.n_hotspots + 2, nd), dtype=bool)
    on[-2, : nd // 2] = False  # emerging: switches on half-way
    on[-1, nd // 2 :] = False  # fading: stops half-way
    hs_weight[-2:] = np.median(hs_weight) * 2.0

    rows = []
    n_days = rng.poisson(day_rate)
    for i in range(nd):
        n = int(n_days[i])
        n_hot = rng.binomial(n, city.hotspot_share)
        active = np.flatnonzero(on[:, i])
        w = hs_weight[active] / hs_weight[active].sum()
        which = active[rng.choice(len(active), size=n_hot, p=w)]
        kinds = hs_kind[which]
        xy = hs_xy[which] + rng.normal(0, 120.0, size=(n_hot, 2))
        cats = np.array([_hotspot_category(k, rng) for k in kinds], dtype=object)
        hours = _hours(kinds, days[i].day_of_week, rng)
        rows.append((np.full(n_hot, i), xy, cats, hours))
        # Background: smooth density = mixture of broad blobs over the city.
        nb = n - n_hot
        bxy = _sample_in(outline_m, nb, rng, centres=hs_xy[:8], spread=2500.0)
        bcats = rng.choice(list(_BACKGROUND_MIX), size=nb, p=list(_BACKGROUND_MIX.values()))
        bh = _hours(np.full(nb, "background"), days[i].day_of_week, rng)
        rows.append((np.full(nb, i), bxy, bcats.astype(object), bh))

    day_i = np.concatenate([r[0] for r in rows])
    xy = np.vstack([r[1] for r in rows])
    cat = np.concatenate([r[2] for r in rows])
    hour = np.concatenate([r[3] for r in rows])

    # --- near-repeat contagion (one generation deep is plenty for a demo) ----
    parents = np.flatnonzero(np.isin(cat, ["burglary", "vehicle"]))
    kids = rng.poisson(city.contagion, size=len(parents))
    pidx = np.repeat(parents, kids)
    if len(pidx):
        lag = rng.exponential(city.contagion_days, size=len(pidx))
        kd = day_i[pidx] + np.floor(hour[pidx] / 24 + lag).astype(int)
        keep = kd < nd
        pidx, kd = pidx[keep], kd[keep]
        kxy = xy[pidx] + rng.normal(0, city.contagion_m, size=(len(pidx), 2))
        kh = _hours(np.full(len(pidx), "background"), 0, rng)
        day_i = np.concatenate([day_i, kd])
        xy = np.vstack([xy, kxy])
        cat = np.concatenate([cat, cat[pidx]])
        hour = np.concatenate([hour, kh])

    # Keep points inside the outline (offsets can step outside on the edges).
    import shapely

    inside = shapely.contains_xy(outline_m, xy[:, 0], xy[:, 1])
    day_i, xy, cat, hour = day_i[inside], xy[inside], cat[inside], hour[inside]

    # Block-level geocoding: snap to a 100 m grid, one block address per node.
    bx = np.round(xy[:, 0] / 100.0).astype(np.int64)
    by = np.round(xy[:, 1] / 100.0).astype(np.int64)
    xy = np.column_stack([bx * 100.0, by * 100.0])
    block = pd.Series(
        [
            f"{a % 400 * 100} BLOCK {_PREFIX[b // 24 % 4]}{_STREETS[b % 24]} {_SUFFIX[b // 96 % 5]}"
            for a, b in zip(bx.tolist(), by.tolist())
        ],
        dtype="string",
    )

    lonlat = gpd.GeoSeries(gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=to_m).to_crs(4326)
    lon, lat = lonlat.x.to_numpy(), lonlat.y.to_numpy()

    # Local time -> UTC (DST handled by pandas; nonexistent hours shift forward).
    local = pd.to_datetime(days[day_i]) + pd.to_timedelta(hour, unit="h")
    local = pd.DatetimeIndex(local).floor("min")
    occ = local.tz_localize(TIMEZONE, ambiguous="NaT", nonexistent="shift_forward")
    occ = pd.Series(occ).fillna(pd.Series(local.tz_localize(TIMEZONE, ambiguous=True, nonexistent="shift_forward")))
    occ = occ.dt.tz_convert("UTC")

    n = len(occ)
    time_known = rng.random(n) >= city.date_only_share
    # Date-only rows carry local midnight, as the portals publish them.
    midnight = pd.Series(
        local.normalize().tz_localize(TIMEZONE, ambiguous=True, nonexistent="shift_forward")
    ).dt.tz_convert("UTC")
    occ = occ.where(time_known, midnight)
    window = (cat == "burglary") & (rng.random(n) < city.window_share_burglary) & time_known
    occ_to = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    occ_to[window] = occ[window] + pd.to_timedelta(rng.uniform(2, 14, size=int(window.sum())), unit="h").round("min")
    reported = occ.where(~window, occ_to) + pd.to_timedelta(rng.exponential(25, size=n), unit="min").round("min")

    offense = np.array([_OFFENSE_TEXT[c][rng.integers(len(_OFFENSE_TEXT[c]))] for c in cat], dtype=object)
    dist = _district_of(lon, lat, districts)

    order = np.lexsort((lon, occ.to_numpy()))
    df = pd.DataFrame(
        {
            "source": SOURCE,
            "occurred_from": occ.to_numpy()[order],
            "occurred_to": occ_to.to_numpy()[order],
            "reported_at": reported.to_numpy()[order],
            "time_known": time_known[order],
            "offense_raw": offense[order],
            "category": cat[order],
            "lon": lon[order],
            "lat": lat[order],
            "block": block.to_numpy()[order],
            "district": dist[order],
        }
    )
    df["occurred_from"] = pd.to_datetime(df["occurred_from"], utc=True)
    df["occurred_to"] = pd.to_datetime(df["occurred_to"], utc=True)
    df["reported_at"] = pd.to_datetime(df["reported_at"], utc=True)
    df.insert(0, "id", [f"S{city.seed}-{i:07d}" for i in range(len(df))])
    df["offense_code"] = pd.NA
    df["extras"] = json.dumps({"generator": "rtcc_geo.synth", "seed": city.seed})
    cells = grid.index_points(df["lat"].to_numpy(), df["lon"].to_numpy(), DEFAULT_RESOLUTIONS)
    for r, c in cells.items():
        df[h3_column(r)] = c
    return conform(df)


def build_demo(store, city: SyntheticCity = SyntheticCity(), progress: bool = False) -> dict:
    """Generate the synthetic city and write it into ``store`` (idempotent).

    Returns an ingest-style summary ``{"read", "loaded", "quarantined", "duplicates"}``.
    """
    df = generate(city, progress=progress)
    store.register_source(SOURCE, TIMEZONE)
    res = store.write_incidents(df)
    return {
        "source": SOURCE,
        "read": len(df),
        "loaded": len(df),
        "quarantined": 0,
        "duplicates": res.duplicates,
        "inserted": res.inserted,
    }


def boundary():
    """The synthetic city's district polygons (GeoDataFrame, EPSG:4326, column ``district``)."""
    import geopandas as gpd

    return gpd.read_file(BOUNDARY_FILE)


# --- helpers ---------------------------------------------------------------

# Relative intensity by local hour for three place types and the background.
_HOURLY = {
    "background": np.array([5, 4, 3, 2.5, 2, 2, 3, 4.5, 6, 7, 7.5, 8, 8.5, 8.5, 8.5, 9, 9.5, 10, 9.5, 9, 8.5, 8, 7, 6]),
    "nightlife": np.array([9, 8, 6, 4, 2, 1, 1, 1, 1, 1.5, 2, 2.5, 3, 3, 3, 3, 3.5, 4, 5, 6, 7, 8, 9, 10]),
    "retail": np.array([1, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 2, 4, 6, 8, 9, 10, 10, 10, 10, 9.5, 9, 7, 5, 3, 2, 1.5, 1]),
    "residential": np.array([3, 2, 2, 1.5, 1.5, 2, 3, 5, 7, 8, 8, 8, 7.5, 7.5, 7, 7, 7.5, 8, 7.5, 7, 6, 5, 4, 3.5]),
}
for _k, _v in _HOURLY.items():
    _HOURLY[_k] = _v / _v.sum()
_WEEKEND_NIGHT = np.array([1.6] * 4 + [1.0] * 18 + [1.4] * 2)


def _hours(kinds: np.ndarray, dow: int, rng: np.random.Generator) -> np.ndarray:
    """Fractional local hours for incidents of the given place kinds on a day of week."""
    out = np.empty(len(kinds))
    for kind in np.unique(kinds):
        sel = kinds == kind
        p = _HOURLY[str(kind)]
        if dow in (4, 5, 6) and kind in ("background", "nightlife"):
            p = p * _WEEKEND_NIGHT
            p = p / p.sum()
        out[sel] = rng.choice(24, size=int(sel.sum()), p=p) + rng.random(int(sel.sum()))
    return out


_HOTSPOT_MIX = {
    "nightlife": {"violent": 0.35, "robbery": 0.12, "disorder": 0.2, "theft": 0.13, "vehicle": 0.1, "drugs": 0.1},
    "retail": {"theft": 0.55, "property": 0.15, "robbery": 0.08, "vehicle": 0.12, "violent": 0.1},
    "residential": {"burglary": 0.35, "vehicle": 0.3, "property": 0.15, "violent": 0.1, "theft": 0.1},
}


def _hotspot_category(kind: str, rng: np.random.Generator) -> str:
    mix = _HOTSPOT_MIX[kind]
    return str(rng.choice(list(mix), p=list(mix.values())))


def _sample_in(poly, n: int, rng: np.random.Generator, centres=None, spread: float = 0.0) -> np.ndarray:
    """``n`` points inside ``poly`` (metres): uniform, or around ``centres`` when given."""
    import shapely

    out = np.empty((0, 2))
    minx, miny, maxx, maxy = poly.bounds
    while len(out) < n:
        m = max(2 * (n - len(out)), 16)
        if centres is not None and spread > 0:
            half = rng.random(m) < 0.5
            c = centres[rng.integers(len(centres), size=m)]
            pts = np.where(
                half[:, None],
                c + rng.normal(0, spread, size=(m, 2)),
                np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)]),
            )
        else:
            pts = np.column_stack([rng.uniform(minx, maxx, m), rng.uniform(miny, maxy, m)])
        pts = pts[shapely.contains_xy(poly, pts[:, 0], pts[:, 1])]
        out = np.vstack([out, pts])
    return out[:n]


def _district_of(lon: np.ndarray, lat: np.ndarray, districts) -> np.ndarray:
    import geopandas as gpd

    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(lon, lat), crs=4326)
    j = gpd.sjoin(pts, districts[["district", "geometry"]], how="left", predicate="within")
    j = j[~j.index.duplicated(keep="first")]
    miss = j["district"].isna().to_numpy()
    if miss.any():  # slivers between simplified polygons: take the nearest district
        m = gpd.sjoin_nearest(
            pts[miss].to_crs(districts.estimate_utm_crs()),
            districts[["district", "geometry"]].to_crs(districts.estimate_utm_crs()),
            how="left",
        )
        m = m[~m.index.duplicated(keep="first")]
        j.loc[m.index, "district"] = m["district"]
    return j["district"].astype("string").to_numpy()


__all__ = ["SyntheticCity", "generate", "build_demo", "boundary", "SOURCE", "TIMEZONE", "BOUNDARY_FILE"]
