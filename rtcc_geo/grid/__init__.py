"""H3 grid: index points, roll cells up, cover a boundary, draw cells.

Cell ids are handled as ``int64`` numpy arrays (every valid H3 index has its
top bit clear, so it fits a signed BIGINT in PostGIS unchanged).

Parent roll-up is pure bit arithmetic on the 64-bit index (set the resolution
field, fill the finer digits with 7); :func:`parent` does it vectorised in
numpy and ``sql/`` has the same function in SQL (``rtcc_h3_parent``), both
checked against :func:`h3.cell_to_parent`.
"""

from __future__ import annotations

from collections.abc import Iterable

import h3
import numpy as np
import pandas as pd

_RES_SHIFT = 52
_RES_MASK = np.int64(0xF) << np.int64(_RES_SHIFT)
_MAX_RES = 15


def latlng_to_cells(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    """H3 cells of points at one resolution, as int64 (``h3.latlng_to_cell``).

    Vectorised through h3ronpy (Rust, h3o) when it is installed, else a loop
    over h3-py's C calls (about 1 µs a point). The two agree exactly on every
    real point we ingest (``tests/test_cells_real.py`` checks them against
    each other); ``RTCC_H3_BACKEND=h3`` forces h3-py, the reference.
    """
    lat = np.ascontiguousarray(lat, dtype="float64")
    lon = np.ascontiguousarray(lon, dtype="float64")
    if not len(lat):
        return np.empty(0, dtype=np.int64)
    fast = _h3o()
    if fast is not None:
        return np.asarray(fast(lat, lon, int(res)), dtype=np.uint64).astype(np.int64)
    return latlng_to_cells_h3(lat, lon, res)


def latlng_to_cells_h3(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    """:func:`latlng_to_cells` through h3-py itself, point by point (the reference)."""
    f = h3.api.basic_int.latlng_to_cell
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    out = np.fromiter((f(a, b, res) for a, b in zip(lat.tolist(), lon.tolist())), dtype=np.uint64, count=len(lat))
    return out.astype(np.int64)


def backend() -> str:
    """``"h3ronpy"`` or ``"h3"``: what :func:`latlng_to_cells` uses."""
    return "h3ronpy" if _h3o() is not None else "h3"


def _h3o():
    """h3ronpy's vectorised ``latlng -> cells`` as a numpy-returning callable, or
    None (not installed, or ``RTCC_H3_BACKEND=h3``)."""
    import os

    if os.environ.get("RTCC_H3_BACKEND", "").lower() in ("h3", "h3-py", "h3py"):
        return None
    global _H3O
    if _H3O is None:
        try:
            import pyarrow as pa
            from h3ronpy.vector import coordinates_to_cells

            def f(lat, lon, res):
                return pa.array(coordinates_to_cells(lat, lon, res)).to_numpy(zero_copy_only=False)

            _H3O = f
        except ImportError:  # optional accelerator: h3-py stays the reference
            _H3O = False
    return _H3O or None


_H3O = None


def resolution(cells: np.ndarray) -> np.ndarray:
    """Resolution field of each cell (vectorised)."""
    c = np.asarray(cells, dtype=np.int64)
    return ((c >> np.int64(_RES_SHIFT)) & np.int64(0xF)).astype(np.int64)


def parent(cells: np.ndarray | Iterable[int], res: int) -> np.ndarray:
    """Parent of each cell at resolution ``res`` (vectorised bit arithmetic).

    Equals ``h3.cell_to_parent`` for every valid cell at a finer or equal
    resolution; cells coarser than ``res`` raise ``ValueError``.
    """
    c = np.asarray(cells, dtype=np.int64)
    if c.size and int(resolution(c).min()) < res:
        raise ValueError(f"cannot roll up to res {res}: some cells are coarser")
    unused = np.int64((1 << (3 * (_MAX_RES - res))) - 1)  # digits finer than res set to 7
    return (c & ~_RES_MASK) | (np.int64(res) << np.int64(_RES_SHIFT)) | unused


def index_points(lat: np.ndarray, lon: np.ndarray, resolutions: Iterable[int]) -> dict[int, np.ndarray]:
    """H3 cells of points at every resolution asked: the cell that *contains*
    the point at each resolution.

    Not the parent of the finest cell: H3 children do not nest exactly in
    their parent's hexagon, so rolling up puts ~7 % of points in a
    neighbouring cell (up to 200 m away at res 7).

    Block-level geocoding puts many incidents on one point (about half of
    Philadelphia's rows repeat a point), so each distinct point is indexed
    once and the cells spread back to the rows (a hash factorisation, O(n)).
    """
    lat = np.asarray(lat, dtype="float64")
    lon = np.asarray(lon, dtype="float64")
    levels = sorted(set(int(r) for r in resolutions))
    if len(lat) > 1024 and np.isfinite(lat).all() and np.isfinite(lon).all():
        # lat + i*lon as one complex key: pandas hashes it exactly (no rounding).
        codes, uniq = pd.factorize(lat + 1j * lon, sort=False)
        cells = _cached_cells(np.asarray(uniq), tuple(levels))
        return {r: cells[r][codes] for r in levels}
    return {r: latlng_to_cells(lat, lon, r) for r in levels}


#: Distinct points indexed by this process: ``[(backend, levels), points (complex
#: lat + i*lon, a pandas Index), {res: cells}]``. The same block geocodes recur
#: from file to file (a third of a Philadelphia month's points were in earlier
#: months), so an ingest indexes each point once. Bounded: restarted past
#: :data:`_POINTS_MAX` points.
_POINTS: list = []
_POINTS_MAX = 1 << 21


def _cached_cells(points: np.ndarray, levels: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Cells of distinct ``points`` (complex ``lat + i*lon``) at ``levels``: cached ones
    looked up, the rest computed and cached."""
    tag = (backend(), levels)
    snap = list(_POINTS)  # one consistent snapshot (threads, e.g. a Dask worker's, replace it whole)
    if not snap or snap[0] != tag or len(snap[1]) + len(points) > _POINTS_MAX:
        snap = [tag, pd.Index(np.empty(0, dtype=np.complex128)), {r: np.empty(0, dtype=np.int64) for r in levels}]
    _, known, cached = snap
    at = known.get_indexer(points)
    new = at < 0
    if new.any():
        fresh = points[new]
        at[new] = len(known) + np.arange(len(fresh))
        cached = {r: np.concatenate([cached[r], latlng_to_cells(fresh.real, fresh.imag, r)]) for r in levels}
        _POINTS[:] = [tag, known.append(pd.Index(fresh)), cached]
    return {r: cached[r][at] for r in levels}


def cell_centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of cell centres."""
    f = h3.api.basic_int.cell_to_latlng
    ll = np.array([f(int(c)) for c in np.asarray(cells, dtype=np.int64)], dtype="float64").reshape(-1, 2)
    return ll[:, 0], ll[:, 1]


def cell_boundaries(cells: np.ndarray) -> list[list[tuple[float, float]]]:
    """Each cell's ring as ``[(lon, lat), ...]`` (GeoJSON order, closed)."""
    f = h3.api.basic_int.cell_to_boundary
    out = []
    for c in np.asarray(cells, dtype=np.int64):
        ring = [(lng, lat) for lat, lng in f(int(c))]
        ring.append(ring[0])
        out.append(ring)
    return out


def cells_to_geodataframe(cells: np.ndarray, data: pd.DataFrame | None = None):
    """A GeoDataFrame (EPSG:4326) with one hexagon per cell, ``cell`` first, then ``data``'s columns.

    Built vectorised with ``shapely.polygons`` per ring length (hexagons have
    7 closed points; pentagons and cells cut by the antimeridian differ).
    """
    import geopandas as gpd
    import shapely

    cells = np.asarray(cells, dtype=np.int64)
    rings = cell_boundaries(cells)
    lens = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
    geoms = np.empty(len(cells), dtype=object)
    for m in np.unique(lens):
        idx = np.flatnonzero(lens == m)
        geoms[idx] = shapely.polygons(np.array([rings[i] for i in idx], dtype=np.float64))
    out = pd.DataFrame(index=range(len(cells))) if data is None else data.reset_index(drop=True).copy()
    if "cell" in out.columns:
        out = out.drop(columns="cell")
    out.insert(0, "cell", cells)
    return gpd.GeoDataFrame(out, geometry=geoms, crs="EPSG:4326")


def cover(boundary, res: int) -> np.ndarray:
    """Sorted int64 ids of the cells whose centres fall inside ``boundary``.

    ``boundary`` is any shapely (multi)polygon in EPSG:4326, or a GeoSeries /
    GeoDataFrame (unioned). This is the study area a hot-spot statistic runs
    over: every cell, including those with no incident (see
    :mod:`rtcc_geo.hotspots`, zero cells matter to Gi*).
    """
    geom = _as_geometry(boundary)
    polys = list(geom.geoms) if geom.geom_type == "MultiPolygon" else [geom]
    out: set[int] = set()
    for p in polys:
        out.update(h3.api.basic_int.geo_to_cells(p.__geo_interface__, res))
    return np.array(sorted(out), dtype=np.int64)


def local_transformer(lon0: float, lat0: float):
    """Lon/lat -> metres in an azimuthal-equidistant projection centred on
    (``lon0``, ``lat0``): distances within 0.1 % across a city."""
    from pyproj import Transformer

    return Transformer.from_crs(
        "EPSG:4326", f"+proj=aeqd +lat_0={lat0:.8f} +lon_0={lon0:.8f} +datum=WGS84 +units=m", always_xy=True
    )


def local_metres(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(n, 2) metres of lon/lat points in the local projection centred on them."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    x, y = local_transformer(float(np.nanmean(lon)), float(np.nanmean(lat))).transform(lon, lat)
    return np.column_stack([x, y])


def cell_area_km2(res: int) -> float:
    """Average cell area at ``res`` in km²."""
    return float(h3.average_hexagon_area(res, unit="km^2"))


def _as_geometry(boundary):
    if hasattr(boundary, "union_all"):
        return boundary.union_all()
    return boundary
