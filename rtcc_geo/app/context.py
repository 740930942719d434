"""What the app knows about its data: the store, the source, outlines, the cell universe.

The app only *presents*: figures come from the store API and ``rtcc_geo``
functions. This module turns filter widgets into a :class:`~rtcc_geo.store.base.Query`,
caches per-resolution geometry (the hexagon GeoJSON is built once and never
resent on a recolour), and keeps a small LRU of layer results so the map,
the export and the drill-down of one view share one computation.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from collections.abc import Callable

import h3
import numpy as np
import pandas as pd

from rtcc_geo import grid
from rtcc_geo.schema import CATEGORIES
from rtcc_geo.store.base import Query, Store

#: Day-of-week labels, 0 = Monday (the store's ``dow`` key).
DOW_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Resolutions the map offers (the indexed ones, coarse to fine).
MAP_RESOLUTIONS = (7, 8, 9, 10)
_DECIMALS = 5  # ~1 m: enough for hexagons of >= 65 m edge, and 40% less JSON than full floats


def cell_hex(cells: np.ndarray) -> list[str]:
    """int64 H3 ids -> the hex strings the map uses as feature ids."""
    return [format(int(c), "x") for c in np.asarray(cells, dtype=np.int64)]


def parse_cell(s: Any) -> int | None:
    """A feature id from the browser -> int64 cell, or None if it is not a valid H3 cell."""
    try:
        c = int(str(s), 16)
    except (TypeError, ValueError):
        return None
    return c if h3.api.basic_int.is_valid_cell(c) else None


@dataclass
class Filters:
    """The commander map's filter widgets, validated (never trust the browser)."""

    start: str | None = None  # first local day, inclusive (YYYY-MM-DD)
    end: str | None = None  # last local day, inclusive
    categories: tuple[str, ...] | None = None
    hours: tuple[int, int] = (0, 24)  # [from, to) local hours
    dows: tuple[int, ...] | None = None
    districts: tuple[str, ...] | None = None
    res: int = 9
    show_empty: bool = False  # draw cells with no value too (presentation only)

    @classmethod
    def from_widgets(cls, start, end, categories, hours, dows, districts, res, show_empty=None) -> Filters:
        def day(v):
            if not v:
                return None
            try:
                return pd.Timestamp(str(v)[:10]).strftime("%Y-%m-%d")
            except ValueError:
                return None  # not a date: no bound (the widget never sends one)

        def ints(vals, lo, hi):
            out = []
            for x in vals or []:
                try:
                    x = int(x)
                except (TypeError, ValueError):
                    continue
                if lo <= x <= hi:
                    out.append(x)
            return out

        cats = tuple(sorted(c for c in (categories or []) if c in CATEGORIES))
        h = tuple(ints(hours if hours is not None else (0, 24), 0, 24))
        h = (min(h), max(h)) if len(h) == 2 and h[0] != h[1] else (0, 24)
        dw = tuple(sorted(set(ints(dows, 0, 6))))
        dist = tuple(sorted(str(d) for d in (districts or []) if isinstance(d, (str, int))))
        r = ints([res], 0, 15)
        r = r[0] if r and r[0] in MAP_RESOLUTIONS else 9
        return cls(
            start=day(start),
            end=day(end),
            categories=cats,
            hours=h,
            dows=dw,
            districts=dist or None,
            res=r,
            show_empty=bool(show_empty),
        )

    def query(self, source: str | None, all_categories: tuple[str, ...]) -> Query:
        end = None if self.end is None else (pd.Timestamp(self.end) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        cats = self.categories
        if cats is not None and set(all_categories) <= set(cats):
            cats = None  # everything ticked: no filter (also keeps rows of categories not listed)
        hours = None if self.hours == (0, 24) else tuple(range(self.hours[0], self.hours[1]))
        dows = None if not self.dows or len(self.dows) == 7 else self.dows
        return Query(
            source=source, start=self.start, end=end, categories=cats, districts=self.districts, hours=hours, dows=dows
        )


class LRU:
    """A tiny thread-safe LRU for computed frames (server threads share it)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, make: Callable[[], Any]):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        val = make()
        with self._lock:
            self._d[key] = val
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return val


@dataclass
class AppContext:
    """Everything a page needs: the store, which source it shows, outlines, caches."""

    store: Store
    source: str | None = None
    timezone: str = "UTC"
    boundary: Any = None  # shapely geometry (EPSG:4326) or None
    districts: Any = None  # GeoDataFrame with a 'district' column, or None
    agency: Any = None  # the stored agency (rtcc_geo.config.Agency), or None
    streets: Any = None  # street centre lines (shapely lines, EPSG:4326), or None
    title: str = "rtcc-geo"
    default_res: int = 9
    default_show_empty: bool = False
    live: bool = False  # the live layer and alert panel are on
    cache: LRU = field(default_factory=LRU)
    _geom: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _build_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- data facts (computed once) ------------------------------------
    @cached_property
    def _months(self) -> pd.DataFrame:
        return self.store.counts(7, ("month", "category"), Query(source=self.source))

    @cached_property
    def date_range(self) -> tuple[str | None, str | None]:
        m = self._months
        if m.empty:
            return None, None
        # Outliers ignored: the data's main run of months (split where a year or more
        # has no incident; the run with most incidents), so a stray record dated 1970
        # or years ahead does not stretch the default period.
        per = m.groupby("month")["n"].sum().sort_index()
        run = (pd.Series(per.index).diff() > pd.Timedelta(days=366)).cumsum().to_numpy()
        main = per.groupby(run).sum().idxmax()
        months = per.index[run == main]
        lo = pd.Timestamp(months.min())
        hi = pd.Timestamp(months.max()) + pd.offsets.MonthEnd(0)
        return lo.strftime("%Y-%m-%d"), hi.strftime("%Y-%m-%d")

    @cached_property
    def last_day(self) -> str | None:
        """The last local day with an incident: quick ranges ("last 28 days") end here."""
        d = self.store.counts(7, ("day",), Query(source=self.source, include_unknown_time=True))
        if d.empty:
            return None
        return pd.Timestamp(d["day"].max()).strftime("%Y-%m-%d")

    @cached_property
    def weeks(self) -> list[str]:
        """Local Mondays of every week from the first to the last day of data (the week slider)."""
        lo, _ = self.date_range
        if lo is None or self.last_day is None:
            return []
        first = pd.Timestamp(lo)
        first -= pd.Timedelta(days=first.day_of_week)
        return [w.strftime("%Y-%m-%d") for w in pd.date_range(first, pd.Timestamp(self.last_day), freq="7D")]

    @cached_property
    def categories(self) -> tuple[str, ...]:
        present = set(self._months["category"].dropna().astype(str))
        return tuple(c for c in CATEGORIES if c in present)

    @cached_property
    def district_names(self) -> tuple[str, ...]:
        d = self.store.counts(7, ("district",), Query(source=self.source))
        names = [str(x) for x in d["district"].dropna()]
        return tuple(sorted(set(names), key=lambda s: (len(s), s)))

    def scope(self, f: Filters):
        """The :class:`~rtcc_geo.scope.Scope` of a view: the same resolution as the CLI's
        (district aliases, no silent whole-city fallback: a district without a polygon raises)."""
        from rtcc_geo.scope import resolve_scope

        return resolve_scope(self.store, f.query(self.source, self.categories))

    def default_filters(self) -> Filters:
        """The last 12 months of data (or all of it), every category, all hours."""
        lo, hi = self.date_range
        hi = self.last_day or hi
        if hi is not None:
            start = max(pd.Timestamp(lo), pd.Timestamp(hi) - pd.DateOffset(years=1) + pd.Timedelta(days=1))
            lo = start.strftime("%Y-%m-%d")
        return Filters(
            start=lo, end=hi, categories=self.categories, res=self.default_res, show_empty=self.default_show_empty
        )

    # --- geometry --------------------------------------------------------
    def universe(self, res: int) -> np.ndarray:
        """Cells the map draws at ``res``: the boundary's cover plus every cell with
        an incident (so nothing is hidden), sorted int64."""
        return self.geometry(res)["cells"]

    def geometry(self, res: int) -> dict:
        """``{"cells", "ids", "tiles", "etag"}`` for ``res``, built once per process.

        ``tiles`` (:class:`app.tiles.HexTiles`) serves the hexagons as vector
        tiles at ``/geo/tiles/<res>/<z>/<x>/<y>.pbf?v=<etag>``; ``etag`` names
        this cell set, so the browser may cache tiles as long as it holds."""
        with self._lock:
            g = self._geom.get(res)
        if g is not None:
            return g
        with self._build_lock:  # one build per resolution, even with the warm-up thread racing a request
            with self._lock:
                g = self._geom.get(res)
            if g is None:
                g = self._build_geometry(res)
                with self._lock:
                    self._geom[res] = g
        return g

    def _build_geometry(self, res: int) -> dict:
        import hashlib

        from .tiles import HexTiles

        cells = self.store.counts(res, ("cell",), Query(source=self.source))["cell"].to_numpy(np.int64)
        if self.boundary is not None:
            cells = np.union1d(cells, grid.cover(self.boundary, res))
        cells = np.unique(cells)
        return {
            "cells": cells,
            "ids": cell_hex(cells),
            "tiles": HexTiles(cells),
            "etag": hashlib.sha1(cells.tobytes() + bytes([res])).hexdigest()[:16],
        }

    def geometry_body(self, res: int) -> bytes:
        """The hexagons of ``res`` as one GeoJSON (feature id = H3 hex string),
        served at ``/geo/cells/<res>.geojson`` for GIS tools; built on first use."""
        g = self.geometry(res)
        with self._build_lock:
            if "body" not in g:
                rings = grid.cell_boundaries(g["cells"])
                feats = [
                    {
                        "type": "Feature",
                        "id": i,
                        "geometry": {
                            "type": "Polygon",
                            "coordinates": [[[round(x, _DECIMALS), round(y, _DECIMALS)] for x, y in r]],
                        },
                    }
                    for i, r in zip(g["ids"], rings)
                ]
                g["body"] = json.dumps({"type": "FeatureCollection", "features": feats}, separators=(",", ":")).encode()
        return g["body"]

    def warm_tiles(self, res: int) -> int:
        """Cut the tiles the opening view asks for (the cells' extent at the view's zoom)."""
        t = self.geometry(res)["tiles"]
        z = max(0, int(math.floor(self.view["zoom"])))
        xs, ys = t.tile_range(z)
        for x in xs:
            for y in ys:
                t.tile(z, x, y)
        st = self.street_tiles
        if st is not None and z >= 10:
            for x in xs:
                for y in ys:
                    st.tile(z, x, y)
        try:
            self.places.search("warm up")  # names and the address index, before the first hover or search
        except Exception:  # noqa: BLE001 - a store without block addresses: names stay empty
            pass
        return len(xs) * len(ys)

    def tiles_info(self, res: int) -> dict:
        """Where the browser finds the hexagon tiles of ``res`` (MapLibre source options)."""
        g = self.geometry(res)
        b = g["tiles"].bounds
        bounds = (
            [round(b[0] - 1e-3, 4), round(b[1] - 1e-3, 4), round(b[2] + 1e-3, 4), round(b[3] + 1e-3, 4)]
            if b is not None
            else [-180, -85, 180, 85]
        )
        return {
            "tiles": f"/geo/tiles/{int(res)}/{{z}}/{{x}}/{{y}}.pbf?v={g['etag']}",
            "version": g["etag"],
            "minzoom": 4,
            "maxzoom": 14,
            "bounds": bounds,
        }

    @cached_property
    def places(self):
        """Cell names and address search from the store's block addresses (:mod:`app.places`)."""
        from .places import Places

        return Places.for_context(self)

    def place_names(self, cells, role: str | None) -> list[str]:
        """Readable names of ``cells`` for ``role``: most frequent block address and
        district for roles that may see incident rows, the district alone for others
        (a block address is an incident field: viewers never receive one)."""
        from .auth import may_see_incidents

        cells = np.asarray(cells, dtype=np.int64)
        if may_see_incidents(role):
            return self.places.names(cells)
        return self.places.cell_districts(cells)

    @cached_property
    def street_tiles(self):
        """The street centre lines as vector tiles (:class:`app.tiles.LineTiles`), or None."""
        if self.streets is None:
            return None
        from .tiles import LineTiles

        t = LineTiles(self.streets, name="streets")
        return t if len(t) else None

    @cached_property
    def district_labels(self) -> list[dict]:
        """Where the district labels go: each district's representative point (always
        shown), and from zoom 13 a grid of points ~1.2 km apart inside it, so a label
        is in view at street zoom too (the browser drops labels that would overlap)."""
        if self.districts is None or not len(self.districts):
            return []
        import shapely

        from .places import district_label

        out = []
        for name, g in zip(self.districts["district"].astype(str), self.districts.geometry):
            if g is None or g.is_empty:
                continue
            label = district_label(name).capitalize()
            p = g.representative_point()
            out.append({"t": label, "lon": round(p.x, 5), "lat": round(p.y, 5), "z": 0})
            w, so, e, n = g.bounds
            step_lat = 1.2 / 111.0
            step_lon = step_lat / max(math.cos(math.radians((so + n) / 2)), 0.1)
            xs = np.arange(w + step_lon / 2, e, step_lon)
            ys = np.arange(so + step_lat / 2, n, step_lat)
            if len(xs) and len(ys):
                gx, gy = np.meshgrid(xs, ys)
                pts = shapely.points(gx.ravel(), gy.ravel())
                inside = shapely.contains(g, pts)
                out += [
                    {"t": label, "lon": round(float(x), 5), "lat": round(float(y), 5), "z": 13}
                    for x, y in zip(gx.ravel()[inside], gy.ravel()[inside])
                ]
        return out

    def base_info(self) -> dict:
        """What the browser needs for the base layers: the streets' tile source (when the
        agency provides streets) and the district labels."""
        st = self.street_tiles
        streets = None
        if st is not None:
            b = st.bounds
            streets = {
                "tiles": f"/geo/base/streets/{{z}}/{{x}}/{{y}}.pbf?v={st.version}",
                "minzoom": 9,
                "maxzoom": 14,
                "bounds": [round(b[0] - 1e-3, 4), round(b[1] - 1e-3, 4), round(b[2] + 1e-3, 4), round(b[3] + 1e-3, 4)],
            }
        return {"streets": streets, "labels": self.district_labels, "tz": self.timezone}

    @cached_property
    def outline_layers(self) -> list[dict]:
        """Map layers (plain maplibre line layers: no tiles, no glyphs) for the
        district and city outlines."""
        layers = []
        if self.districts is not None and len(self.districts):
            gj = _simplified_geojson(self.districts.geometry, 0.0002)
            layers.append(
                {
                    "sourcetype": "geojson",
                    "source": gj,
                    "type": "line",
                    "color": "#5b6770",
                    "line": {"width": 1},
                    "opacity": 0.8,
                }
            )
        if self.boundary is not None:
            import geopandas as gpd

            gj = _simplified_geojson(gpd.GeoSeries([self.boundary], crs="EPSG:4326"), 0.0002)
            layers.append(
                {"sourcetype": "geojson", "source": gj, "type": "line", "color": "#1d2731", "line": {"width": 2.5}}
            )
        return layers

    @cached_property
    def view(self) -> dict:
        """Initial centre and zoom fitting the boundary (or the incident cells)."""
        if self.boundary is not None:
            minx, miny, maxx, maxy = self.boundary.bounds
        else:
            cells = self.universe(7)
            if not len(cells):
                return {"center": {"lat": 0.0, "lon": 0.0}, "zoom": 1}
            lat, lon = grid.cell_centres(cells)
            minx, maxx, miny, maxy = lon.min(), lon.max(), lat.min(), lat.max()
        span = max(maxx - minx, (maxy - miny) * 1.3, 1e-3)
        zoom = math.log2(560 * 360 / (512 * span))  # fit ~560 px of map width
        return {"center": {"lat": (miny + maxy) / 2, "lon": (minx + maxx) / 2}, "zoom": round(zoom, 2)}


def _simplified_geojson(geoms, tol: float) -> dict:
    import shapely

    feats = []
    for g in geoms:
        if g is None or g.is_empty:
            continue
        s = shapely.set_precision(shapely.simplify(g, tol, preserve_topology=True), 10**-_DECIMALS)
        feats.append({"type": "Feature", "properties": {}, "geometry": json.loads(shapely.to_geojson(s))})
    return {"type": "FeatureCollection", "features": feats}


def context_for(
    store: Store,
    source: str | None = None,
    agency=None,
    boundary=None,
    districts=None,
    title: str | None = None,
    default_res: int = 9,
    streets=None,
) -> AppContext:
    """Build the context: pick the source (the only one, or the first), find its
    agency config and outlines where one exists."""
    import geopandas as gpd

    sources = store.sources()
    if source is None and sources:
        source = sorted(sources)[0]
    if source is not None and sources and source not in sources:
        raise ValueError(f"the store has no source {source!r}; it has {sorted(sources)}")
    tz = sources.get(source, "UTC") if source else "UTC"
    if agency is None and source:
        # The agency stored with the incidents (else its preset): the same one the CLI's Scope reads.
        from rtcc_geo.scope import agency_of

        agency = agency_of(store, source)
    if agency is not None:
        if boundary is None:
            boundary = agency.boundary()
        if districts is None:
            d = agency.districts()
            if d is not None:
                districts = gpd.GeoDataFrame({"district": d["district"].astype(str)}, geometry=d.geometry, crs=d.crs)
        layers = getattr(agency, "layers", None) or {}
        street_layer = next((k for k in sorted(layers) if "street" in k.lower()), None)
        if streets is None and street_layer is not None:  # a base layer stored with the agency (--basemap)
            streets = layers[street_layer].to_crs("EPSG:4326").geometry.values
        if streets is None:
            # Optional key ``streets_file`` in the agency TOML (kept in ``extra`` by older configs).
            name = getattr(agency, "streets_file", None) or (getattr(agency, "extra", None) or {}).get("streets_file")
            p = agency.find_file(name)
            if p is not None:
                streets = gpd.read_file(p).to_crs("EPSG:4326").geometry.values
    if boundary is not None and hasattr(boundary, "union_all"):
        boundary = boundary.to_crs("EPSG:4326").union_all()
    if default_res not in MAP_RESOLUTIONS:
        raise ValueError(f"default_res must be one of {MAP_RESOLUTIONS}")
    return AppContext(
        store=store,
        source=source,
        timezone=tz,
        boundary=boundary,
        districts=districts,
        agency=agency,
        streets=streets,
        title=title or f"rtcc-geo · {source or 'no data'}",
        default_res=default_res,
    )
