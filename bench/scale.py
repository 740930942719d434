"""Scale benchmark: synthetic stores of 1, 10 and 50 M incidents, every pipeline timed.

    python bench/scale.py [--sizes 1,10,50] [--out DIR] [--keep] [--json] [--skip-dask]
    python bench/scale.py --report results.json      # the markdown of a saved --json run

For each size (millions of incidents) the script

1. **builds** Philadelphia-format CSVs (the portal's 16 columns, one file per
   year, 2015-2024 by default, plus one month, January 2025, to append) with a
   seeded, vectorised generator that streams month by month to disk, so the
   builder's memory does not grow with the size (:func:`build`);
2. runs each **step** through the public CLI / API, each in its own fresh
   interpreter: ``ingest`` (``rtcc-geo ingest --format philadelphia`` of the
   yearly files into an empty store), ``counts`` (``Store.counts`` by cell and
   by category x district x month), ``hotspots`` (Gi* at res 9), ``temporal``
   (the overall signature), ``emerging`` (EHSA, res 9, weekly), ``compstat``
   (through the last day), ``backtest`` (``rtcc-geo forecast backtest``, 4
   weekly origins over the last 4 weeks), ``append`` (the January 2025 file into
   the full store) and ``append_empty`` (the same file into an empty store);
3. records each step's **wall time** and **peak RSS**: ``os.wait4`` returns the
   step process's own ``ru_maxrss`` (the kernel's high-water mark, including any
   child it waited for); on a ``distributed.LocalCluster`` (``--workers``
   processes, 3 by default) the peak is the largest sampled sum (every 50 ms,
   psutil) of the step's process tree *and* every worker process, since the
   work runs there. Workers are restarted before each step so a step does not
   inherit the previous one's memory;
4. prints the **growth exponent** between consecutive sizes,
   ``log(t2/t1) / log(n2/n1)`` (1 = linear in the rows, 0 = independent of
   them), for time and for RSS;
5. prints the **acceptance ratios** of issue 16 with PASS/MISS: (1) ingest of
   the real Philadelphia CSVs vs ``pyarrow.csv.read_csv`` of the same files in
   the same run (>= 0.25x) and re-ingest vs first ingest (>= 1x), both from the
   in-process seconds (the CLI's ``--json`` ``seconds``, and the time
   ``read_csv`` takes inside its interpreter), so interpreter start-up and
   imports are in neither; (2) append of one month into the 10 M store vs into
   an empty store (<= 1.5x, in-process seconds; the medians of the first pair and
   ``--append-repeats`` more, interleaved, each appending into a hard-link copy of
   the store as it was before the first append); (3) peak RSS of temporal,
   emerging, CompStat and hot spots on the 50 M store (<= 2 GB each).

The Dask half runs only when the CLI has a ``--dask ADDRESS`` option (else
every Dask cell reads "n/a"): the same commands, with ``$RTCC_DASK_SCHEDULER``
set to the LocalCluster's address, into a separate store.

The synthetic city (:func:`city_model`) lies over the shipped, simplified
Philadelphia police districts: a smooth background (a mixture of broad
Gaussian blobs on a 150 m grid of points inside the districts) plus 60 hot
spots (~120 m spread, Pareto weights) carrying 35 % of incidents, each with a
kind (night life, retail, residential) that tilts its offense mix and its hours;
one hot spot appears and one fades in the last quarter of the span (so
emerging hot spots have something to find). Offenses follow the real 2023-2024
Philadelphia shares; times follow an hour-of-week rhythm per kind, a summer
peak (+20 %) and a mild trend; points snap to a ~30 m block grid; 1 % of rows
have no coordinates (stored as not geolocated: CompStat counts them, maps do
not; 4 % of the real rows are). Every draw is a pure function of ``(seed, year, month)``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TIMEZONE = "America/New_York"
DISTRICTS_FILE = ROOT / "rtcc_geo" / "data" / "boundaries" / "synthetic_city_districts.geojson"

#: (ucr_general, text_general_code, share): the real Philadelphia 2023-2024 mix.
OFFENSES: tuple[tuple[int, str, float], ...] = (
    (600, "Thefts", 0.2352),
    (800, "Other Assaults", 0.1620),
    (700, "Motor Vehicle Theft", 0.1128),
    (1400, "Vandalism/Criminal Mischief", 0.0955),
    (2600, "All Other Offenses", 0.0839),
    (600, "Theft from Vehicle", 0.0724),
    (1100, "Fraud", 0.0496),
    (400, "Aggravated Assault No Firearm", 0.0326),
    (500, "Burglary Residential", 0.0220),
    (400, "Aggravated Assault Firearm", 0.0186),
    (1500, "Weapon Violations", 0.0180),
    (1800, "Narcotic / Drug Law Violations", 0.0169),
    (300, "Robbery No Firearm", 0.0161),
    (300, "Robbery Firearm", 0.0130),
    (500, "Burglary Non-Residential", 0.0105),
    (1300, "Receiving Stolen Property", 0.0084),
    (1700, "Other Sex Offenses (Not Commercialized)", 0.0072),
    (2100, "DRIVING UNDER THE INFLUENCE", 0.0054),
    (900, "Arson", 0.0043),
    (200, "Rape", 0.0033),
    (2400, "Disorderly Conduct", 0.0027),
    (2000, "Offenses Against Family and Children", 0.0024),
    (100, "Homicide - Criminal", 0.0020),
    (1600, "Prostitution and Commercialized Vice", 0.0017),
    (1200, "Embezzlement", 0.0013),
    (1000, "Forgery and Counterfeiting", 0.0012),
    (2200, "Liquor Law Violations", 0.0005),
    (1900, "Gambling Violations", 0.0003),
    (2300, "Public Drunkenness", 0.0002),
    (2500, "Vagrancy/Loitering", 0.0001),
)
#: Hot-spot kinds: offense-mix multipliers (by text) and the hour of the daily peak.
KINDS = {
    "nightlife": (
        {
            "Other Assaults": 3,
            "Aggravated Assault No Firearm": 3,
            "Aggravated Assault Firearm": 2,
            "Robbery No Firearm": 2,
            "Robbery Firearm": 2,
            "Disorderly Conduct": 4,
            "DRIVING UNDER THE INFLUENCE": 3,
            "Public Drunkenness": 4,
        },
        23,
    ),
    "retail": ({"Thefts": 3, "Fraud": 2, "Receiving Stolen Property": 2, "Forgery and Counterfeiting": 2}, 15),
    "residential": ({"Burglary Residential": 4, "Theft from Vehicle": 2, "Motor Vehicle Theft": 2}, 12),
}
CSV_COLUMNS = (
    "the_geom",
    "cartodb_id",
    "the_geom_webmercator",
    "objectid",
    "dc_dist",
    "psa",
    "dispatch_date_time",
    "dispatch_date",
    "dispatch_time",
    "hour",
    "dc_key",
    "location_block",
    "ucr_general",
    "text_general_code",
    "point_x",
    "point_y",
)
STREETS = (
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
    "OLNEY",
    "COTTMAN",
    "CASTOR",
    "FRANKFORD",
    "RIDGE",
    "LANCASTER",
    "BALTIMORE",
    "WOODLAND",
    "PASSYUNK",
    "SNYDER",
    "OREGON",
    "TASKER",
    "MORRIS",
    "DIAMOND",
    "SUSQUEHANNA",
    "YORK",
    "CUMBERLAND",
    "HUNTINGDON",
)
M_PER_DEG_LAT = 111_320.0
HOT_SHARE, N_HOTSPOTS, NO_COORD_SHARE = 0.35, 60, 0.01

#: The analyses whose 50 M peak RSS acceptance 3 bounds, and its bound.
RSS_STEPS, RSS_GOAL = ("temporal", "emerging", "compstat", "hotspots"), 2 * 1024**3
INGEST_GOAL, REINGEST_GOAL, APPEND_GOAL = 0.25, 1.0, 1.5


# =============================================================================
# the synthetic city
# =============================================================================
@dataclass
class City:
    """Everything drawn once per seed: candidate points, densities, hot spots."""

    x: np.ndarray  # lon of the 150 m grid points inside the districts
    y: np.ndarray  # lat
    district: np.ndarray  # their district (str)
    p_background: np.ndarray  # probability of each grid point for background crime
    hs_point: np.ndarray  # grid point of each hot spot
    hs_weight: np.ndarray
    hs_kind: np.ndarray  # index into kind names (1..3; 0 = background)
    hs_cdf: np.ndarray  # (n_hotspots, n_offenses) cumulative offense mix
    base_cdf: np.ndarray  # background cumulative offense mix
    hour_cdf: np.ndarray  # (4 kinds, 7 dows, 24) cumulative hour profile
    x0: float
    y0: float


def city_model(seed: int) -> City:
    """Draw the city's fixed structure (grid, background density, hot spots)."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng([seed, 0])
    d = gpd.read_file(DISTRICTS_FILE).to_crs(4326)
    minx, miny, maxx, maxy = d.total_bounds
    lat0 = (miny + maxy) / 2
    m_lon = M_PER_DEG_LAT * math.cos(math.radians(lat0))
    gx, gy = np.meshgrid(np.arange(minx, maxx, 150 / m_lon), np.arange(miny, maxy, 150 / M_PER_DEG_LAT))
    gx, gy = gx.ravel(), gy.ravel()
    dist = np.full(len(gx), "", dtype=object)
    for geom, name in zip(d.geometry, d["district"].astype(str)):
        inside = shapely.contains_xy(geom, gx, gy)
        dist[inside & (dist == "")] = name
    keep = dist != ""
    gx, gy, dist = gx[keep], gy[keep], dist[keep]
    n = len(gx)
    # Background: a floor plus a dozen broad blobs (1-3 km), so density varies
    # ~10x across the city as it does between Philadelphia's districts.
    dens = np.full(n, 0.15)
    for c in rng.choice(n, 12, replace=False):
        s = rng.uniform(1000, 3000)
        r2 = ((gx - gx[c]) * m_lon) ** 2 + ((gy - gy[c]) * M_PER_DEG_LAT) ** 2
        dens += (rng.pareto(1.5) + 1) * np.exp(-r2 / (2 * s * s))
    p_bg = dens / dens.sum()
    hs_point = rng.choice(n, N_HOTSPOTS, replace=False, p=p_bg)
    hs_weight = rng.pareto(1.5, N_HOTSPOTS) + 1.0
    hs_weight[:2] = np.median(hs_weight) * 2.0  # 0 = emerging, 1 = fading (see month_frame)
    kinds = list(KINDS)
    hs_kind = rng.choice(len(kinds), N_HOTSPOTS, p=[0.35, 0.4, 0.25]) + 1
    share = np.array([o[2] for o in OFFENSES])
    texts = [o[1] for o in OFFENSES]
    base_cdf = np.cumsum(share / share.sum())
    hs_cdf = np.empty((N_HOTSPOTS, len(OFFENSES)))
    for i, k in enumerate(hs_kind):
        tilt = np.array([KINDS[kinds[k - 1]][0].get(t, 1.0) for t in texts])
        w = share * tilt * rng.lognormal(0, 0.3, len(share))
        hs_cdf[i] = np.cumsum(w / w.sum())
    # Hours of the week per kind: a daily cycle peaking at the kind's hour
    # (background: trough ~05:00, peak ~17:00) and a weekend-night bump.
    h = np.arange(24)
    hour_cdf = np.empty((4, 7, 24))
    for k, (peak, amp) in enumerate(
        ((17, 0.9), (KINDS["nightlife"][1], 1.6), (KINDS["retail"][1], 1.4), (KINDS["residential"][1], 0.8))
    ):
        for dow in range(7):
            w = np.exp(amp * np.cos(2 * np.pi * (h - peak) / 24))
            if dow in (5, 6):  # Saturday/Sunday small hours (Friday/Saturday nights)
                w[:4] *= 1.8 if k == 1 else 1.3
            if dow in (4, 5) and k == 1:
                w[20:] *= 1.8
            hour_cdf[k, dow] = np.cumsum(w / w.sum())
    return City(
        gx,
        gy,
        dist.astype(str),
        p_bg,
        hs_point,
        hs_weight,
        hs_kind,
        hs_cdf,
        base_cdf,
        hour_cdf,
        float(minx),
        float(miny),
    )


def day_rates(first_year: int, years: int, n_total: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected incidents per local day over the span plus one appended month,
    scaled so the span (without that month) expects ``n_total``: summer +20 %,
    Friday/Saturday +5-8 %, a +5 % trend end to end."""
    import pandas as pd

    days = pd.date_range(f"{first_year}-01-01", f"{first_year + years}-02-01", freq="D", inclusive="left")
    t = np.arange(len(days)) / len(days)
    doy = days.day_of_year.to_numpy()
    dow = np.array([1.0, 1.0, 1.0, 1.02, 1.08, 1.05, 0.95])[days.day_of_week.to_numpy()]
    w = (1 + 0.2 * np.cos(2 * np.pi * (doy - 200) / 365.25)) * (1 + 0.05 * (t - 0.5)) * dow
    span = days < pd.Timestamp(f"{first_year + years}-01-01")
    return days.to_numpy(), w * n_total / w[span].sum()


def month_frame(
    city: City,
    seed: int,
    year: int,
    month: int,
    days: np.ndarray,
    lam: np.ndarray,
    frac: float,
    first_id: int,
    seq0: int,
):
    """One month of incidents as a pyarrow table in the portal's CSV layout.

    ``frac``: the month's position in the span (0..1; the emerging hot spot is
    on and the fading one off from 0.75). ``first_id``: cartodb_id/objectid of
    the first row; ``seq0``: the first dc_key sequence number of this year.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng([seed, year, month])
    sel = (days >= np.datetime64(f"{year}-{month:02d}-01")) & (
        days < np.datetime64(f"{year + month // 12}-{month % 12 + 1:02d}-01")
    )
    mdays, mlam = days[sel], lam[sel]
    n = int(rng.poisson(mlam.sum()))
    day = mdays[rng.choice(len(mdays), n, p=mlam / mlam.sum())]
    hot = rng.random(n) < HOT_SHARE
    nh = int(hot.sum())
    # --- where -------------------------------------------------------------
    active = np.ones(N_HOTSPOTS, bool)
    active[0 if frac < 0.75 else 1] = False
    w = city.hs_weight * active
    hs = rng.choice(N_HOTSPOTS, nh, p=w / w.sum())
    pt = np.empty(n, np.int64)
    pt[hot] = city.hs_point[hs]
    pt[~hot] = rng.choice(len(city.x), n - nh, p=city.p_background)
    m_lon = M_PER_DEG_LAT * math.cos(math.radians(city.y0 + 0.14))
    off = np.empty((n, 2))
    off[hot] = rng.normal(0, 120.0, (nh, 2))
    off[~hot] = rng.uniform(-75, 75, (n - nh, 2))
    lon = city.x[pt] + off[:, 0] / m_lon
    lat = city.y[pt] + off[:, 1] / M_PER_DEG_LAT
    # Snap to a ~30 m block grid: many incidents share a geocode, as in portal data.
    lon = np.round(lon / 0.0003) * 0.0003
    lat = np.round(lat / 0.0003) * 0.0003
    kind = np.zeros(n, np.int64)
    kind[hot] = city.hs_kind[hs]
    # --- what ---------------------------------------------------------------
    u = rng.random(n)
    off_i = np.searchsorted(city.base_cdf, u, side="right")
    hi = np.flatnonzero(hot)
    order = np.argsort(hs, kind="stable")
    bounds = np.searchsorted(hs[order], np.arange(N_HOTSPOTS + 1))
    for h in range(N_HOTSPOTS):
        idx = hi[order[bounds[h] : bounds[h + 1]]]
        off_i[idx] = np.searchsorted(city.hs_cdf[h], u[idx], side="right")
    off_i = np.minimum(off_i, len(OFFENSES) - 1)
    # --- when (local) ---------------------------------------------------------
    dow = (day.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    hour = np.empty(n, np.int64)
    uh = rng.random(n)
    for k in range(4):
        for dw in range(7):
            m = (kind == k) & (dow == dw)
            hour[m] = np.searchsorted(city.hour_cdf[k, dw], uh[m], side="right")
    hour = np.minimum(hour, 23)
    secs = hour * 3600 + rng.integers(0, 3600, n)
    local = day.astype("datetime64[s]") + secs.astype("timedelta64[s]")
    order = np.argsort(local, kind="stable")  # file in time order, as the portal's
    local, lon, lat, off_i, pt, hour = local[order], lon[order], lat[order], off_i[order], pt[order], hour[order]
    utc = (
        pd.DatetimeIndex(local)
        .tz_localize(TIMEZONE, ambiguous=np.ones(n, bool), nonexistent="shift_forward")
        .tz_convert("UTC")
        .tz_localize(None)
        .to_numpy()
        .astype("datetime64[s]")
    )
    no_xy = rng.random(n) < NO_COORD_SHARE
    ucr = np.array([o[0] for o in OFFENSES])[off_i]
    text = np.array([o[1] for o in OFFENSES], dtype=object)[off_i]
    block_no = (((lon - city.x0) * m_lon) // 100 * 100).astype(np.int64) % 9900 + 100
    street = np.array(STREETS, dtype=object)[(((lat - city.y0) * M_PER_DEG_LAT) // 80).astype(np.int64) % len(STREETS)]
    block = pd.Series(block_no).astype(str).to_numpy(dtype=object) + " BLOCK " + street
    ids = np.arange(first_id, first_id + n)
    loc = pa.array(local, pa.timestamp("s"))
    cols = {
        "the_geom": pa.nulls(n, pa.string()),
        "cartodb_id": pa.array(ids),
        "the_geom_webmercator": pa.nulls(n, pa.string()),
        "objectid": pa.array(ids + 30_000_000),
        "dc_dist": pa.array(city.district[pt]),
        "psa": pa.array(rng.integers(1, 4, n).astype(str)),
        "dispatch_date_time": pc.strftime(pa.array(utc, pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S+00"),
        "dispatch_date": pc.strftime(loc, format="%Y-%m-%d"),
        "dispatch_time": pc.strftime(loc, format="%H:%M:%S"),
        "hour": pa.array(hour),
        "dc_key": pa.array(year * 100_000_000 + seq0 + np.arange(n)),
        "location_block": pa.array(block, pa.string()),
        "ucr_general": pa.array(ucr),
        "text_general_code": pa.array(text, pa.string()),
        "point_x": pa.array(np.round(lon, 6), mask=no_xy),
        "point_y": pa.array(np.round(lat, 6), mask=no_xy),
    }
    return pa.table(cols)


def build(out: Path, n_million: float, seed: int = 0, first_year: int = 2015, years: int = 10) -> dict:
    """Write ``year_YYYY.csv`` per year and ``append_YYYY_01.csv`` under ``out``,
    streaming month by month (memory: one month's rows). Returns the manifest."""
    import pyarrow.csv as pcsv

    import geopandas as gpd

    out.mkdir(parents=True, exist_ok=True)
    city = city_model(seed)
    # The city's own outline, where ingest looks first (beside the input files),
    # under the name and district field the Philadelphia preset expects: the
    # synthetic stores need nothing from the shared data.
    g = gpd.read_file(DISTRICTS_FILE)
    g["dist_numc"] = g["district"].astype(str)
    g.to_file(out / "police_districts.geojson", driver="GeoJSON")
    days, lam = day_rates(first_year, years, n_million * 1e6)
    months = [(y, m) for y in range(first_year, first_year + years) for m in range(1, 13)]
    # Unquoted, as the portal writes it (pyarrow would quote the header, so it is written here).
    opts = pcsv.WriteOptions(quoting_style="none", include_header=False)
    files, rows, next_id = [], {}, 1
    append_year = first_year + years
    for y in [*range(first_year, first_year + years), append_year]:
        name = f"year_{y}.csv" if y < append_year else f"append_{y}_01.csv"
        path = out / name
        seq = 0
        writer = None
        with open(path, "wb") as fh:
            fh.write((",".join(CSV_COLUMNS) + "\n").encode())
            for m in range(1, 13 if y < append_year else 2):
                frac = months.index((y, m)) / len(months) if y < append_year else 1.0
                t = month_frame(city, seed, y, m, days, lam, frac, next_id, seq)
                if writer is None:
                    writer = pcsv.CSVWriter(fh, t.schema, write_options=opts)
                writer.write_table(t)
                next_id += t.num_rows
                seq += t.num_rows
            assert writer is not None
            writer.close()
        rows[name] = seq
        files.append(name)
    manifest = {
        "n_million": n_million,
        "seed": seed,
        "first_year": first_year,
        "years": years,
        "files": files[:-1],
        "append": files[-1],
        "rows": rows,
        "span_rows": sum(rows[f] for f in files[:-1]),
        "last_day": f"{append_year - 1}-12-31",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# =============================================================================
# running steps in fresh interpreters
# =============================================================================
def cli(*args: str) -> list[str]:
    """``rtcc-geo`` of this checkout, run by this interpreter (fresh process)."""
    return [sys.executable, "-m", "rtcc_geo.cli.main", *args]


COUNTS_SNIPPET = """
import json, os, sys, time
from rtcc_geo.store import open_store, Query
t = time.perf_counter()
store = open_store(store_dir=sys.argv[1])
if os.environ.get("RTCC_DASK_SCHEDULER"):   # on the cluster, as the CLI's store options do
    from rtcc_geo.cluster import open_dask_store
    store = open_dask_store(store, os.environ["RTCC_DASK_SCHEDULER"])
a = store.counts(9, ("cell",), Query(source="philadelphia"))
b = store.counts(9, ("category", "district", "month"), Query(source="philadelphia"))
assert len(a) and len(b), "empty counts"
print(json.dumps({"cells": len(a), "incidents": int(a["n"].sum()), "groups": len(b),
                  "seconds": time.perf_counter() - t}))
"""

READ_SNIPPET = """
import json, sys, time
import pyarrow.csv as pc
for f in sys.argv[1:]:          # warm the page cache, untimed (ingest reads warm files too)
    pc.read_csv(f)
t = time.perf_counter()
n = sum(pc.read_csv(f).num_rows for f in sys.argv[1:])
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t}))
"""


def _tree_rss(procs) -> int:
    import psutil

    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


#: A step whose processes pass this many bytes is killed (the machine is shared;
#: ``--max-rss-gb``), and reported as failed with the limit it hit.
MAX_RSS = [0]


def run_step(name: str, argv: list[str], log: Path, env: dict, workers_of: int | None = None) -> dict:
    """Run ``argv`` in a fresh process; wall time, peak RSS, exit code and the
    parsed JSON of its stdout (when it is JSON). ``workers_of``: pid of a
    LocalCluster process whose descendants (the workers) count towards the peak.
    The process tree is sampled every 50 ms (psutil) only to enforce
    :data:`MAX_RSS` and, on a cluster, to add the workers; the local peak is the
    kernel's exact high-water mark from ``os.wait4``."""
    import psutil

    log.parent.mkdir(parents=True, exist_ok=True)
    killed = False
    with open(log.with_suffix(".out"), "wb") as fo, open(log.with_suffix(".err"), "wb") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=fo, stderr=fe, env=env, cwd=ROOT)
        sampled = 0
        me = psutil.Process(p.pid)
        cl = psutil.Process(workers_of) if workers_of is not None else None
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            try:
                procs = [me, *me.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            now = _tree_rss(procs)
            if cl is not None:
                sampled = max(sampled, now + _tree_rss(cl.children(recursive=True)))
            if MAX_RSS[0] and now > MAX_RSS[0] and not killed:
                killed = True
                for q in reversed(procs):
                    try:
                        q.kill()
                    except psutil.NoSuchProcess:
                        pass
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    rss = max(ru.ru_maxrss * 1024, sampled)  # ru_maxrss is in KiB on Linux
    out = log.with_suffix(".out").read_text(errors="replace")
    res: dict = {"step": name, "wall_s": round(wall, 3), "peak_rss": int(rss), "rc": p.returncode}
    try:
        j = json.loads(out)
        if isinstance(j, dict) and "seconds" in j:
            res["inproc_s"] = round(float(j["seconds"]), 3)
        if isinstance(j, dict) and "loaded" in j:
            res.update(
                read=j.get("read"), loaded=j["loaded"], inserted=j.get("inserted"), quarantined=j.get("quarantined")
            )
        if isinstance(j, dict) and "rows" in j:
            res["rows"] = j["rows"]
    except ValueError:
        pass
    if killed:
        res["error"] = f"killed: its processes passed --max-rss-gb {MAX_RSS[0] / 1024**3:g} GB"
    elif p.returncode != 0:
        res["error"] = log.with_suffix(".err").read_text(errors="replace")[-2000:]
    return res


class Cluster:
    """A LocalCluster of ``n`` worker processes in its own process (so the bench
    process stays small and the workers' RSS can be read as that process's tree)."""

    def __init__(self, n: int, env: dict, work: Path):
        self.n, self.work = n, work
        self._start(env)

    def _start(self, env: dict) -> None:
        work = self.work
        (work / "logs").mkdir(parents=True, exist_ok=True)
        addr_file = work / "scheduler.addr"
        addr_file.unlink(missing_ok=True)
        self.log = open(work / "logs" / "cluster.log", "ab")  # the workers' chatter (restarts)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--_cluster", str(self.n), str(addr_file)],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        for _ in range(600):
            if addr_file.exists() and addr_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError("the LocalCluster process died")
            time.sleep(0.1)
        self.address = addr_file.read_text().strip()
        self.env = env

    def restart(self) -> None:
        """Restart the workers, so a step does not inherit the previous one's memory.

        Seen here (distributed 2026.8.0, in each of four 1 M runs, after a different step
        each time): the nanny kills its workers and none comes back, a known race
        (dask/distributed#7312, open). A restart that has not brought every worker back
        within 3 minutes is therefore replaced by a new cluster (a new address: read
        :attr:`address` after this call)."""
        code = (
            "import sys; from distributed import Client; c = Client(sys.argv[1]); "
            "c.restart(timeout=170); n = len(c.nthreads()); c.close(); sys.exit(0 if n >= int(sys.argv[2]) else 3)"
        )
        try:
            r = subprocess.run(
                [sys.executable, "-c", code, self.address, str(self.n)],
                env=self.env,
                check=False,
                capture_output=True,
                timeout=180,
            )
            ok = r.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if not ok:
            _log("  (the workers did not come back from a restart: starting a new LocalCluster)")
            self.close()
            self._start(self.env)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _serve_cluster(n: int, addr_file: str) -> int:
    from distributed import LocalCluster

    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        Path(addr_file).write_text(c.scheduler_address)
        sys.stdin.read()  # until the bench closes our stdin
    return 0


def cli_has_dask(env: dict) -> bool:
    """Whether this checkout's CLI runs on Dask (a ``--dask`` option, global or
    among a command's store options, which ``$RTCC_DASK_SCHEDULER`` defaults)."""
    for a in (cli("--help"), cli("hotspots", "--help")):
        r = subprocess.run(a, capture_output=True, text=True, env=env, cwd=ROOT)
        if "--dask" in r.stdout:
            return True
    return False


def size_steps(store: Path, empty: Path, data: Path, man: dict) -> list[tuple[str, list[str]]]:
    """The timed steps on one synthetic size, in run order (analyses before the append,
    so they see exactly the built store). On a cluster the same commands run with
    ``$RTCC_DASK_SCHEDULER`` set, which the CLI's store options honour."""
    s = ["--store", str(store)]
    last = np.datetime64(man["last_day"])
    first = str(last - np.timedelta64(27, "D"))  # 4 weekly origins: last-27d, -20d, -13d, -6d
    years = [str(data / f) for f in man["files"]]
    counts = [sys.executable, "-c", COUNTS_SNIPPET, str(store)]
    return [
        ("ingest", cli("ingest", "--format", "philadelphia", "--quiet", "--json", *s, *years)),
        ("counts", counts),
        ("hotspots", cli("hotspots", *s, "--res", "9", "--json")),
        ("temporal", cli("temporal", *s, "--json")),
        ("emerging", cli("emerging", *s, "--res", "9", "--step", "week", "--json")),
        ("compstat", cli("compstat", *s, "--end", man["last_day"], "--json")),
        (
            "backtest",
            cli(
                "forecast",
                "backtest",
                *s,
                "--from",
                first,
                "--to",
                str(last + np.timedelta64(1, "D")),
                "--horizon",
                "7d",
                "--train-from",
                f"{man['first_year']}-01-01",
                "--json",
            ),
        ),
        (
            "append",
            cli(
                "ingest",
                "--format",
                "philadelphia",
                "--quiet",
                "--json",
                *s,
                str(data / man["append"]),
            ),
        ),
        (
            "append_empty",
            cli(
                "ingest",
                "--format",
                "philadelphia",
                "--quiet",
                "--json",
                "--store",
                str(empty),
                str(data / man["append"]),
            ),
        ),
    ]


STEPS = ("ingest", "counts", "hotspots", "temporal", "emerging", "compstat", "backtest", "append", "append_empty")


def _link_copy(src: Path, dst: Path) -> None:
    """``dst`` = a hard-link copy of the store ``src`` (cheap; safe because the
    embedded store never changes a file in place: every write is a new file
    renamed into place, so writing to one copy leaves the other as it was)."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link)


def append_repeats(r: dict, snap: Path, d: Path, data: Path, man: dict, env: dict, n: int) -> None:
    """Acceptance 2 from more than one sample: ``n`` more append / append_empty pairs,
    interleaved, each appending into a fresh hard-link copy of the store as it was
    before the first append (``snap``) and into a fresh empty store. The first pair
    runs right after the backtest (the largest process of the run) with whatever it
    left in the page cache and the memory, so one sample can be off by more than the
    effect measured; the medians of all pairs are compared. The in-process seconds
    of every sample are kept in ``inproc_runs``."""
    if not (r.get("append") and r.get("append_empty")):
        return
    work, empty = d / "append_repeat_store", d / "append_repeat_empty"
    for k in ("append", "append_empty"):
        if "inproc_s" in r[k]:
            r[k]["inproc_runs"] = [r[k]["inproc_s"]]
    for i in range(n):
        _link_copy(snap, work)
        shutil.rmtree(empty, ignore_errors=True)
        for k, store in (("append", work), ("append_empty", empty)):
            argv = cli(
                "ingest",
                "--format",
                "philadelphia",
                "--quiet",
                "--json",
                "--store",
                str(store),
                str(data / man["append"]),
            )
            res = run_step(k, argv, d / "logs" / f"local_{k}_repeat{i + 1}", env)
            _log(f"  [local] {k} (repeat {i + 1}) {_fmt_step(res)}")
            if res.get("rc") or "inproc_s" not in res:
                r[k]["repeat_error"] = res.get("error", "no --json seconds")
                continue
            r[k].setdefault("inproc_runs", []).append(res["inproc_s"])
    for p in (work, empty, snap):
        shutil.rmtree(p, ignore_errors=True)


def philly_steps(work: Path, files: list[str], env: dict) -> dict:
    """Acceptance 1 on the real CSVs: pyarrow read, first ingest, re-ingest."""
    store = work / "philly_store"
    shutil.rmtree(store, ignore_errors=True)
    argv = cli("ingest", "--format", "philadelphia", "--quiet", "--json", "--store", str(store), *files)
    out = {"files": len(files)}
    for name, a in (
        ("pyarrow_read", [sys.executable, "-c", READ_SNIPPET, *files]),
        ("ingest", argv),
        ("reingest", argv),
    ):
        _log(f"  philadelphia {name} ...")
        out[name] = run_step(name, a, work / "logs" / f"philly_{name}", env)
        _log(f"    {_fmt_step(out[name])}")
    shutil.rmtree(store, ignore_errors=True)
    return out


# =============================================================================
# reporting
# =============================================================================
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _gb(b: float) -> str:
    return f"{b / 1024**3:.2f} GB"


def _fmt_step(r: dict) -> str:
    if r.get("rc"):
        return f"{r['step']}: FAILED rc={r['rc']}: {r.get('error', '')[-300:]}"
    extra = f", in-process {r['inproc_s']:.2f} s" if "inproc_s" in r else ""
    return f"{r['step']}: {r['wall_s']:.2f} s{extra}, peak RSS {_gb(r['peak_rss'])}"


def _label(n: float) -> str:
    return f"{n:g} M"


def exponent(a: float, b: float, na: float, nb: float) -> float | None:
    """Growth exponent log(b/a) / log(nb/na) (None if undefined)."""
    if a <= 0 or b <= 0 or na == nb:
        return None
    return math.log(b / a) / math.log(nb / na)


def table(results: dict, mode: str) -> str:
    """Markdown table of one mode ('local' or 'dask') over all sizes."""
    sizes = sorted(results["sizes"], key=float)
    head = "| step | " + " | ".join(f"{_label(float(s))}: s | {_label(float(s))}: peak RSS" for s in sizes)
    pairs = list(zip(sizes, sizes[1:]))
    head += "".join(f" | exponent {_label(float(a))}→{_label(float(b))}: time / RSS" for a, b in pairs) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(sizes) + len(pairs))]
    for step in STEPS:
        cells = []
        for s in sizes:
            r = results["sizes"][s].get(mode, {}).get(step)
            if r is None:
                skipped = step in results["sizes"][s].get("skipped", ())
                cells += ["skipped", "skipped"] if skipped else ["n/a", "n/a"]
            elif r.get("rc"):
                killed = r.get("error", "").startswith("killed")
                cells += ["killed", f"> {_gb(r['peak_rss'])}"] if killed else ["failed", "failed"]
            else:
                cells += [f"{r['wall_s']:.1f}", _gb(r["peak_rss"])]
        for a, b in pairs:
            ra = results["sizes"][a].get(mode, {}).get(step)
            rb = results["sizes"][b].get(mode, {}).get(step)
            if not ra or not rb or ra.get("rc") or rb.get("rc"):
                cells.append("n/a")
                continue
            et = exponent(ra["wall_s"], rb["wall_s"], float(a), float(b))
            er = exponent(ra["peak_rss"], rb["peak_rss"], float(a), float(b))
            cells.append(f"{et:.2f} / {er:.2f}" if et is not None and er is not None else "n/a")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _append_seconds(step: dict) -> float:
    """An append step's in-process seconds: the median of its samples when it was
    repeated (``--append-repeats``), else its one sample (wall time without ``--json``)."""
    runs = step.get("inproc_runs")
    if runs:
        return float(np.median(runs))
    return step.get("inproc_s", step["wall_s"])


def acceptance(results: dict) -> list[dict]:
    """The three ratios of issue 16 (PASS / MISS / n/a)."""
    acc = []
    ph = results.get("philadelphia")
    if ph and not any(ph[k].get("rc") for k in ("pyarrow_read", "ingest", "reingest")):
        read, ing, re = ph["pyarrow_read"], ph["ingest"], ph["reingest"]
        t_read, t_ing, t_re = read["inproc_s"], ing.get("inproc_s", ing["wall_s"]), re.get("inproc_s", re["wall_s"])
        r1 = t_read / t_ing
        acc.append(
            {
                "id": "1a",
                "what": f"ingest of {ph['files']} Philadelphia CSVs vs pyarrow.csv.read_csv "
                f"({read.get('rows', 0):,} rows: {t_ing:.2f} s vs {t_read:.2f} s; wall {ing['wall_s']:.2f} s "
                f"vs {read['wall_s']:.2f} s)",
                "ratio": r1,
                "goal": f">= {INGEST_GOAL}",
                "status": "PASS" if r1 >= INGEST_GOAL else "MISS",
            }
        )
        r2 = t_ing / t_re
        acc.append(
            {
                "id": "1b",
                "what": f"re-ingest speed vs first ingest ({t_re:.2f} s vs {t_ing:.2f} s)",
                "ratio": r2,
                "goal": f">= {REINGEST_GOAL}",
                "status": "PASS" if r2 >= REINGEST_GOAL else "MISS",
            }
        )
    else:
        acc.append(
            {
                "id": "1",
                "what": "Philadelphia ingest vs pyarrow",
                "ratio": None,
                "goal": f">= {INGEST_GOAL}",
                "status": "n/a (not run or failed)",
            }
        )
    sizes = sorted(results["sizes"], key=float)
    for s in sizes:
        loc = results["sizes"][s].get("local", {})
        a, e = loc.get("append"), loc.get("append_empty")
        if a and e and not a.get("rc") and not e.get("rc"):
            ta, te = _append_seconds(a), _append_seconds(e)
            r = ta / te
            is10 = float(s) == 10
            runs = ""
            if len(a.get("inproc_runs", [])) > 1 or len(e.get("inproc_runs", [])) > 1:
                runs = (
                    f"; medians of {'/'.join(f'{x:.2f}' for x in a.get('inproc_runs', []))} s vs "
                    f"{'/'.join(f'{x:.2f}' for x in e.get('inproc_runs', []))} s, interleaved"
                )
            acc.append(
                {
                    "id": "2" if is10 else f"2 ({_label(float(s))}, informative)",
                    "what": f"append one month ({a.get('loaded', 0):,} rows) into the {_label(float(s))} store "
                    f"vs into an empty store ({ta:.2f} s vs {te:.2f} s{runs})",
                    "ratio": r,
                    "goal": f"<= {APPEND_GOAL} at 10 M",
                    "status": ("PASS" if r <= APPEND_GOAL else "MISS")
                    if is10
                    else ("(pass)" if r <= APPEND_GOAL else "(miss)"),
                }
            )
    if sizes:
        s = "50" if any(float(x) == 50 for x in sizes) else sizes[-1]
        s = next(x for x in sizes if float(x) == float(s))
        loc = results["sizes"][s].get("local", {})
        first = results["sizes"][sizes[0]].get("local", {})
        for step in RSS_STEPS:
            r = loc.get(step)
            if not r or r.get("rc"):
                continue
            at50 = float(s) == 50
            what = f"peak RSS of {step} on the {_label(float(s))} store ({_gb(r['peak_rss'])})"
            status = "PASS" if r["peak_rss"] <= RSS_GOAL else "MISS"
            r0 = first.get(step)
            if not at50 and r0 and not r0.get("rc") and float(sizes[0]) < float(s):
                # Not measured at 50 M: the straight line through the smallest and largest size.
                slope = (r["peak_rss"] - r0["peak_rss"]) / (float(s) - float(sizes[0]))
                proj = r["peak_rss"] + slope * (50 - float(s))
                what += f"; projected to 50 M along RSS = a + b*n: {_gb(proj)}"
                status = "(projected pass)" if proj <= RSS_GOAL else "(projected miss)"
            elif not at50:
                status = f"({status.lower()} at {_label(float(s))})"
            acc.append(
                {
                    "id": "3" if at50 else f"3 ({_label(float(s))}, informative)",
                    "what": what,
                    "ratio": r["peak_rss"] / RSS_GOAL,
                    "goal": "<= 1 (2 GB) at 50 M",
                    "status": status,
                }
            )
    return acc


def report(results: dict) -> str:
    out = [
        f"Measured on commit {results['commit']} ({results['date']}), {results['cpus']} cores, "
        f"load average at start {results['load']:.1f}. Wall time of each step's fresh process "
        "(interpreter start and imports included); peak RSS = that process's high-water mark "
        "(on the cluster: the sampled peak of the step's processes plus all workers).",
        "",
        "**Local (one process per step)**",
        "",
        table(results, "local"),
        "",
    ]
    if results.get("dask_status") == "run":
        out += [
            f"**Dask `distributed.LocalCluster`, {results['workers']} worker processes**",
            "",
            table(results, "dask"),
            "",
        ]
    else:
        out += [f"**Dask**: n/a ({results.get('dask_status')})", ""]
    b = [
        f"{_label(float(s))}: {r['build']['rows']:,} rows + {r['build']['append_rows']:,} to append, "
        f"{r['build']['wall_s']:.1f} s, peak RSS {_gb(r['build']['peak_rss'])}"
        for s, r in sorted(results["sizes"].items(), key=lambda kv: float(kv[0]))
        if "build" in r
    ]
    if b:
        out += ["Builder (CSV generation, not a pipeline step): " + "; ".join(b) + ".", ""]
    out += ["**Acceptance (issue 16)**", "", "| # | measured | ratio | goal | result |", "|---|---|---|---|---|"]
    for a in results["acceptance"]:
        ratio = "n/a" if a["ratio"] is None else f"{a['ratio']:.3f}"
        out.append(f"| {a['id']} | {a['what']} | {ratio} | {a['goal']} | {a['status']} |")
    return "\n".join(out)


def _commit() -> str:
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=ROOT
        ).stdout
        return c.strip() + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


# =============================================================================
# main
# =============================================================================
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_cluster"]:
        return _serve_cluster(int(argv[1]), argv[2])
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="1,10,50", help="store sizes in millions of incidents (default 1,10,50)")
    ap.add_argument("--out", metavar="DIR", help="work directory (default: a new temporary one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the CSVs and stores (default: delete them)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout (progress on stderr)")
    ap.add_argument("--skip-dask", action="store_true", help="local steps only")
    ap.add_argument("--workers", type=int, default=3, help="LocalCluster worker processes (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--years", type=int, default=10, help="years of data per store (default 10: 2015-2024)")
    ap.add_argument(
        "--philly",
        metavar="GLOB",
        default=None,
        help="real CSVs for acceptance 1 (default: incidents_20*.csv of the shared Philadelphia data)",
    )
    ap.add_argument("--skip-philly", action="store_true", help="no acceptance-1 run on the real CSVs")
    ap.add_argument(
        "--skip",
        metavar="STEP@SIZE",
        default="",
        help="steps not to run at a size, e.g. backtest@50 (comma-separated; reported as skipped)",
    )
    ap.add_argument(
        "--append-repeats",
        type=int,
        default=2,
        help="extra append / append_empty pairs, each from the same pre-append store (a hard-link "
        "snapshot), interleaved; acceptance 2 compares the medians (default 2; 0 = one pair)",
    )
    ap.add_argument("--build-only", action="store_true", help="only build the CSVs (reports the builder's RSS)")
    ap.add_argument(
        "--max-rss-gb",
        type=float,
        default=None,
        help="kill a step whose processes pass this RSS (default: 75 %% of this machine's memory); 0 = no limit",
    )
    ap.add_argument("--report", metavar="JSON", help="print the markdown report of a saved --json run and exit")
    args = ap.parse_args(argv)
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        saved["acceptance"] = acceptance(saved)  # this version's rules on the saved measurements
        print(report(saved))
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    try:
        if any(float(s) <= 0 for s in sizes):
            raise ValueError
    except ValueError:
        ap.error(f"--sizes {args.sizes!r}: give positive numbers of millions, e.g. 1,10,50")
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    skips = set()
    for item in filter(None, (x.strip() for x in args.skip.split(","))):
        step, _, at = item.partition("@")
        if step not in STEPS or at not in sizes or step in ("append", "append_empty"):
            ap.error(f"--skip {item!r}: give STEP@SIZE with a step of {', '.join(STEPS[:-2])} and one of --sizes")
        skips.add((step, at))
    import psutil

    MAX_RSS[0] = int(0.75 * psutil.virtual_memory().total if args.max_rss_gb is None else args.max_rss_gb * 1024**3)
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="rtcc-scale-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        RTCC_NO_PROGRESS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    env.pop("RTCC_DATABASE_URL", None)  # every step uses its embedded --store
    env.pop("RTCC_DASK_SCHEDULER", None)  # local steps are local; the Dask ones set it
    results: dict = {
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
        "workers": args.workers,
        "work_dir": str(work),
        "sizes": {},
    }
    _log(f"scale bench in {work} (commit {results['commit']})")
    try:
        if not args.skip_philly and not args.build_only:
            if args.philly:
                import glob

                files = sorted(glob.glob(args.philly))
            else:
                sys.path.insert(0, str(ROOT))
                from rtcc_geo.config import shared_data_dir

                files = sorted(str(p) for p in (shared_data_dir() / "philadelphia").glob("incidents_20*.csv"))
            if not files:
                raise SystemExit(
                    "no Philadelphia CSVs found for acceptance 1 (set RTCC_SHARED_DATA, or give "
                    "--philly GLOB or --skip-philly)"
                )
            _log(f"acceptance 1 on {len(files)} Philadelphia CSVs")
            results["philadelphia"] = philly_steps(work, files, env)
        dask_ok = not args.skip_dask and not args.build_only and cli_has_dask(env)
        results["dask_status"] = (
            "run"
            if dask_ok
            else "skipped (--skip-dask)"
            if args.skip_dask
            else "skipped (--build-only)"
            if args.build_only
            else "the CLI has no --dask option on this commit"
        )
        for s in sizes:
            n = float(s)
            d = work / f"n{s}"
            data = d / "csv"
            r: dict = {}
            results["sizes"][s] = r
            _log(f"size {_label(n)}: building CSVs ...")
            shutil.rmtree(data, ignore_errors=True)
            b = run_step(
                "build",
                [sys.executable, __file__, "--_build", str(data), s, str(args.seed), str(args.years)],
                d / "logs" / "build",
                env,
            )
            if b["rc"]:
                raise SystemExit(f"the builder failed: {b.get('error')}")
            man = json.loads((data / "manifest.json").read_text())
            b.update(
                rows=man["span_rows"],
                append_rows=man["rows"][man["append"]],
                csv_bytes=sum(p.stat().st_size for p in data.glob("*.csv")),
            )
            r["build"] = b
            _log(f"  {_fmt_step(b)}; {b['rows']:,} rows, {b['csv_bytes'] / 1e9:.2f} GB of CSV")
            if args.build_only:
                continue
            modes = [("local", None)] + ([("dask", "cluster")] if dask_ok else [])
            for mode, _ in modes:
                store, empty = d / f"store_{mode}", d / f"empty_{mode}"
                shutil.rmtree(store, ignore_errors=True)
                shutil.rmtree(empty, ignore_errors=True)
                cluster = Cluster(args.workers, env, d) if mode == "dask" else None
                try:
                    r[mode] = {}
                    step_env = dict(env, RTCC_DASK_SCHEDULER=cluster.address) if cluster else env
                    snap = d / f"pre_append_{mode}"
                    for name, a in size_steps(store, empty, data, man):
                        if (name, s) in skips:
                            _log(f"  [{mode}] {name}: skipped (--skip {name}@{s})")
                            r.setdefault("skipped", []).append(name)
                            continue
                        if cluster:
                            cluster.restart()
                            step_env = dict(env, RTCC_DASK_SCHEDULER=cluster.address)
                        if name == "append" and mode == "local" and args.append_repeats > 0:
                            _link_copy(store, snap)  # the state every repeat appends into
                        _log(f"  [{mode}] {name} ...")
                        res = run_step(
                            name,
                            a,
                            d / "logs" / f"{mode}_{name}",
                            step_env,
                            workers_of=cluster.proc.pid if cluster else None,
                        )
                        r[mode][name] = res
                        _log(f"    {_fmt_step(res)}")
                    if mode == "local" and args.append_repeats > 0:
                        append_repeats(r[mode], snap, d, data, man, env, args.append_repeats)
                finally:
                    if cluster:
                        cluster.close()
                    if not args.keep:
                        shutil.rmtree(store, ignore_errors=True)
                        shutil.rmtree(empty, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if not args.keep and not args.out:
            shutil.rmtree(work, ignore_errors=True)
    results["acceptance"] = acceptance(results)
    failed = [
        f"{s}/{m}/{k}"
        for s, r in results["sizes"].items()
        for m in ("local", "dask")
        for k, v in r.get(m, {}).items()
        if v.get("rc")
    ]
    failed += [
        f"philadelphia/{k}" for k, v in results.get("philadelphia", {}).items() if isinstance(v, dict) and v.get("rc")
    ]
    results["failed"] = failed
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(report(results))
        if failed:
            print(f"\nFAILED steps: {', '.join(failed)} (logs under {work}/n*/logs with --keep)")
    return 1 if failed else 0


def _build_main(argv: list[str]) -> int:
    data, size, seed, years = Path(argv[0]), float(argv[1]), int(argv[2]), int(argv[3])
    sys.path.insert(0, str(ROOT))
    build(data, size, seed=seed, years=years)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_build"]:
        sys.exit(_build_main(sys.argv[2:]))
    sys.exit(main())
