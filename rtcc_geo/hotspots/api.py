"""The analyst API: hot spots, KDE, concentration and scale from a store.

>>> from rtcc_geo.store import open_store, Query
>>> from rtcc_geo.hotspots import hotspots
>>> store = open_store()
>>> gdf = hotspots(store, method="gistar", res=9,
...                q=Query(source="philadelphia", start="2024-01-01", end="2025-01-01"),
...                permutations=999, seed=42)
>>> gdf[gdf.bin == 3]          # hot spots at 99 % confidence after FDR

Everything reads the store through :meth:`Store.counts` (cell counts: memory
bounded by the grid, whatever the number of incidents) or, where a statistic
needs rows, :meth:`Store.incidents` with only the columns it needs (points for
KDE; addresses for concentration, summed batch by batch), so the
embedded and PostGIS stores give the same tables. The statistics themselves
run on plain arrays (:func:`hotspots_from_counts`), one core for both stores.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import defaults as D
from .. import grid
from ..store.base import Query, Store
from .concentration import Concentration, concentration
from .fdr import bh_adjust, confidence_bins
from .gistar import GiStar
from .kde import kde_cells
from .lisa import LocalMoran
from .permutation import check_alternative
from .scale import ScaleChoice, choose_scale, global_moran, knn_fallback_k
from .weights import build_weights, study_area

METHODS = ("gistar", "lisa", "kde")
#: ``boundary=None`` / ``"auto"``: the agency's boundary (or its selected districts).
AUTO = "auto"
#: ``boundary="incidents"``: only the cells holding incidents (biased for Gi*; warns).
INCIDENTS_ONLY = "incidents"


# --------------------------------------------------------------------------
# study area
# --------------------------------------------------------------------------
def _source_of(store: Store, q: Query) -> str | None:
    if q.source:
        return q.source
    srcs = store.sources()
    return next(iter(srcs)) if len(srcs) == 1 else None


def agency_boundary(source: str | None, districts=None, store: Store | None = None):
    """The study-area polygon(s) of ``source``: its stored agency (``store``)
    or preset, the selected ``districts`` when given. ``None`` if no agency;
    a district filter that cannot be honoured raises."""
    if not source:
        return None
    from ..scope import ScopeError, agency_of, district_lookup

    agency = agency_of(store, source)
    if agency is None:
        return None
    if districts:
        d = agency.districts()
        if d is None:
            raise ScopeError(f"{source}: no district polygons, so a district filter cannot be honoured")
        from ..config import norm_district

        look = district_lookup(agency)
        keys = {look.get(norm_district(x)) for x in districts}
        if None in keys:
            raise ScopeError(f"no district {sorted(districts)} among {source}'s districts {sorted(d['label'])}")
        return d[d["district"].isin(keys)].geometry.union_all()
    return agency.boundary()


def _scoped(store, q: Query, boundary):
    """(store, query, study-area polygon, label) of an entry point's arguments:
    a :class:`~rtcc_geo.scope.Scope` as ``store``, or ``boundary`` None/"auto"
    (the stored agency; an error when there is none), "incidents" (explicit),
    a path or a geometry."""
    from ..scope import Scope, resolve_scope

    if isinstance(store, Scope):
        sc = store
    elif boundary is None or (isinstance(boundary, str) and boundary in (AUTO, INCIDENTS_ONLY)):
        sc = resolve_scope(store, q, study_area="incidents" if boundary == INCIDENTS_ONLY else "agency")
    else:
        if q.source is None and len(store.sources()) > 1:
            raise ValueError(
                f"the store holds several sources {sorted(store.sources())}: hot spots are per city, "
                "choose one with Query(source=...) / --source"
            )
        if isinstance(boundary, (str, Path)):
            import geopandas as gpd

            return store, q, gpd.read_file(boundary).to_crs("EPSG:4326").geometry.union_all(), f"file {boundary}"
        return store, q, boundary, "given geometry"
    return sc.store, sc.query, sc.boundary(), sc.study_area_label()


def _resolve_boundary(store: Store, q: Query, boundary):
    """The study-area polygon of :func:`_scoped` (None = incident cells only)."""
    return _scoped(store, q, boundary)[2]


def cell_counts(store: Store, res: int, q: Query = Query()) -> pd.Series:
    """Incident counts per cell (index ``cell``, int64), cells with none absent."""
    c = store.counts(res, ("cell",), q)
    return pd.Series(c["n"].to_numpy(dtype=np.int64), index=pd.Index(c["cell"].to_numpy(dtype=np.int64), name="cell"))


def study_counts(counts: pd.Series, res: int, boundary=None) -> tuple[np.ndarray, np.ndarray]:
    """(cells, y): every cell of the study area (boundary cover ∪ incident
    cells) with its count, zeros included."""
    if boundary is None:
        warnings.warn(
            "no boundary: the study area is only the cells with incidents, which biases Gi* "
            "(zero cells matter); pass a boundary polygon or use an agency with a boundary file",
            stacklevel=2,
        )
    cells = study_area(boundary, res, counts.index.to_numpy())
    y = counts.reindex(cells, fill_value=0).to_numpy(dtype=np.float64)
    return cells, y


def study_cells(store: Store, res: int, q: Query = Query(), boundary: Any = None) -> np.ndarray:
    """The study area of ``q`` at ``res``: every cell of the agency boundary (or of
    the selected districts, or of ``boundary``) plus every cell with an incident.
    ``store`` may be a :class:`~rtcc_geo.scope.Scope` (then ``q`` is its query)."""
    store, q, bnd, _ = _scoped(store, q, boundary)
    cells, _ = study_counts(cell_counts(store, res, q), res, bnd)
    return cells


def cells_gdf(cells: np.ndarray, df: pd.DataFrame):
    """GeoDataFrame of hexagons with ``df``'s columns (``cell`` first); see
    :func:`rtcc_geo.grid.cells_to_geodataframe`."""
    return grid.cells_to_geodataframe(cells, df)


# --------------------------------------------------------------------------
# core on arrays
# --------------------------------------------------------------------------
def hotspots_from_counts(
    counts: pd.Series,
    res: int,
    method: str = "gistar",
    boundary=None,
    k: int = D.K_RING,
    band_m: float | None = None,
    permutations: int = D.PERMUTATIONS,
    seed: int | None = D.SEED,
    alternative: str = D.ALTERNATIVE,
    alpha: float = D.ALPHA,
    inference: str = D.INFERENCE,
    fdr: bool = D.FDR,
):
    """Gi* or Local Moran on a cell→count series over the study area.

    See :func:`hotspots` for the parameters and the columns.
    """
    if method not in ("gistar", "lisa"):
        raise ValueError(f"method {method!r}: use one of {METHODS}")
    alternative = check_alternative(alternative)
    if inference not in ("auto", "sim", "norm"):
        raise ValueError("inference must be 'auto', 'sim' (permutations) or 'norm' (analytic)")
    if inference == "auto":
        inference = "sim" if permutations > 0 else "norm"
    if inference == "sim" and permutations <= 0:
        raise ValueError("inference='sim' needs permutations > 0")
    cells, y = study_counts(counts, res, boundary)
    if len(cells) < 3:
        raise ValueError(f"the study area has {len(cells)} cells at res {res}: use a finer resolution or a wider area")
    w = build_weights(cells, "distance" if band_m else "kring", k=k, band_m=band_m)
    st: GiStar | LocalMoran
    if method == "gistar":
        st = GiStar(y, w, permutations=permutations, seed=seed, alternative=alternative)
        z, p_norm, stat = st.Zs, st.p_norm, st.Gs
    else:
        st = LocalMoran(y, w, permutations=permutations, seed=seed, alternative=alternative)
        z, p_norm, stat = st.z_norm, st.p_norm, st.Is
    p_sim = st.p_sim if st.p_sim is not None else np.full(len(cells), np.nan)
    p_used = p_sim if inference == "sim" else p_norm
    p_fdr = bh_adjust(p_used) if fdr else p_used.copy()
    df = pd.DataFrame(
        {
            "cell": cells,
            "count": y.astype(np.int64),
            ("g" if method == "gistar" else "i"): stat,
            "z": z,
            "p": p_norm,
            "p_sim": p_sim,
            "p_fdr": p_fdr,
        }
    )
    reach = D.bin_reach(permutations, len(cells), inference, alternative, fdr)
    if method == "gistar":
        df["bin"] = confidence_bins(z, p_used, fdr=fdr)
        if reach["message"] and not (np.abs(df["bin"].to_numpy()) == 3).any():
            warnings.warn(f"no cell can reach the 99 % bin: {reach['message']}", UserWarning, stacklevel=3)
    else:
        assert isinstance(st, LocalMoran)
        df["q"] = st.q
        df["cluster"] = np.where(p_fdr <= alpha, st.labels, "ns")
    df["n_neighbours"] = w.cardinalities.astype(np.int64)
    gdf = cells_gdf(cells, df.drop(columns="cell"))
    gdf.attrs["hotspots"] = {
        "method": method,
        "res": int(res),
        "k": None if band_m else int(k),
        "band_m": band_m,
        "n_cells": int(len(cells)),
        "n_incidents": int(y.sum()),
        "permutations": int(permutations),
        "seed": seed,
        "alternative": alternative,
        "inference": inference,
        "fdr": fdr,
        "alpha": alpha,
        "islands": int(len(w.islands)),
        "reach_99": reach,
    }
    return gdf


# --------------------------------------------------------------------------
# store-level API
# --------------------------------------------------------------------------
def hotspots(
    store: Store,
    method: str = "gistar",
    res: int = D.RES,
    q: Query = Query(),
    boundary: Any = None,
    k: int = D.K_RING,
    band_m: float | None = None,
    permutations: int = D.PERMUTATIONS,
    seed: int | None = D.SEED,
    alternative: str = D.ALTERNATIVE,
    alpha: float = D.ALPHA,
    inference: str = D.INFERENCE,
    fdr: bool = D.FDR,
    kernel: str = "quartic",
    bandwidth_m: float | None = None,
):
    """Hot spots of the incidents matching ``q`` on H3 at ``res``, as a GeoDataFrame.

    Parameters
    ----------
    store : any :class:`~rtcc_geo.store.base.Store`, or a :class:`~rtcc_geo.scope.Scope`
        (then ``q`` and ``boundary`` are the scope's).
    method : ``"gistar"`` (Getis–Ord Gi*), ``"lisa"`` (Local Moran's I) or ``"kde"``.
    res : H3 resolution (9 ≈ 0.1 km² cells, 10 ≈ 0.015 km²).
    q : filter (time window, categories, districts, hours …).
    boundary : study area: ``None`` / ``"auto"`` (default: the agency's
        boundary, or its selected ``q.districts``), a shapely geometry /
        GeoSeries / file path, or ``"incidents"`` (only cells with
        incidents — biased for Gi*, warns).
    k : k-ring neighbourhood (ignored when ``band_m`` is given).
    band_m : distance-band neighbourhood in metres instead of k-rings.
    permutations : conditional permutations (0 = analytic inference only).
    seed : seed of the permutations (same seed → same table).
    alternative : permutation rule: ``two-sided`` (default), ``folded``
        (esda's classic p_sim; alias ``directed``), ``greater``, ``lesser``,
        ``esda-two-sided``, ``esda-folded`` (see :mod:`~rtcc_geo.hotspots.permutation`).
    alpha : FDR level for LISA ``cluster`` labels.
    inference : ``"norm"`` (analytic p, the default: see :mod:`rtcc_geo.defaults`),
        ``"sim"`` (permutation p) or ``"auto"`` (sim when permutations > 0) —
        which p feeds FDR / bins. A permutation run that cannot reach the 99 %
        bin warns (:func:`rtcc_geo.defaults.bin_reach`).
    fdr : apply Benjamini–Hochberg (default, as ArcGIS's FDR option).
    kernel, bandwidth_m : KDE kernel (``quartic``/``gaussian``) and bandwidth (m; default rule).

    Returns
    -------
    GeoDataFrame (EPSG:4326), one row per cell of the study area, with

    * gistar: ``cell, count, g, z, p, p_sim, p_fdr, bin, n_neighbours``;
      ``bin`` in -3..3 (±3/±2/±1 = 99/95/90 % confidence after FDR);
    * lisa: ``cell, count, i, z, p, p_sim, p_fdr, q, cluster, n_neighbours``;
      ``cluster`` HH/LH/LL/HL where ``p_fdr <= alpha``, else ``ns``;
    * kde: ``cell, count, density`` (incidents/km²) ``, expected`` (per cell).

    ``p`` is the analytic two-sided normal p-value, ``p_sim`` the pseudo
    p-value, ``p_fdr`` the BH-adjusted p of the one ``inference`` selects.
    Parameters and sizes are in ``gdf.attrs["hotspots"]``.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: use one of {METHODS}")
    if not 0 <= int(res) <= 15:
        raise ValueError(f"res {res}: H3 resolutions are 0..15 (stores index 7..10)")
    store, q, bnd, area_label = _scoped(store, q, boundary)
    counts = cell_counts(store, res, q)
    if counts.sum() == 0:
        raise ValueError("no incidents match the filters (time window, categories, districts): nothing to analyse")
    if method in ("gistar", "lisa"):
        gdf = hotspots_from_counts(
            counts,
            res,
            method,
            bnd,
            k=k,
            band_m=band_m,
            permutations=permutations,
            seed=seed,
            alternative=alternative,
            alpha=alpha,
            inference=inference,
            fdr=fdr,
        )
        gdf.attrs["hotspots"].update(source=q.source, study_area=area_label)
        return gdf
    cells, y = study_counts(counts, res, bnd)
    # KDE needs the points themselves (its default bandwidth is the median distance of
    # every point to their centre), so it reads rows: only lon/lat, 16 bytes an incident.
    pts = store.incidents(q.with_(geolocated=True), columns=["lon", "lat"])
    r = kde_cells(cells, pts["lon"].to_numpy(), pts["lat"].to_numpy(), kernel, bandwidth_m)
    df = pd.DataFrame({"count": y.astype(np.int64), "density": r.density, "expected": r.expected})
    gdf = cells_gdf(cells, df)
    gdf.attrs["hotspots"] = {
        "method": "kde",
        "res": int(res),
        "n_cells": int(len(cells)),
        "source": q.source,
        "study_area": area_label,
        "n_incidents": int(len(pts)),
        "kernel": kernel,
        "bandwidth_m": r.bandwidth_m,
        "bandwidth_rule": r.bandwidth_rule,
    }
    return gdf


def concentration_report(
    store: Store, res: int = 9, q: Query = Query(), boundary: Any = None, top: float = 0.05
) -> dict[str, Concentration]:
    """Concentration over cells (study area, zeros included) and over block addresses.

    Returns ``{"cell": Concentration, "block": Concentration}`` (``"block"``
    absent when the source publishes no addresses).
    """
    store, q, bnd, _ = _scoped(store, q, boundary)
    counts = cell_counts(store, res, q)
    cells, y = study_counts(counts, res, bnd)
    out = {"cell": concentration(pd.Series(y, index=cells), "cell", top)}
    per_block = block_counts(store, q)
    if len(per_block):
        out["block"] = concentration(per_block, "block", top)
    return out


def block_counts(store: Store, q: Query = Query()) -> pd.Series:
    """Incidents per published block address (blank addresses left out).

    ``block`` is no count key of :meth:`Store.counts`, so the rows' ``block``
    column is read in time batches (:func:`~rtcc_geo.temporal.stream.iter_incidents`)
    and summed: memory is one batch plus one count per distinct address.
    """
    from ..temporal.stream import iter_incidents

    total = pd.Series(dtype=np.int64)
    for df in iter_incidents(store, q, ["block"]):
        b = df["block"].dropna().astype(str)
        vc = b[b.str.strip() != ""].value_counts()
        total = vc if not len(total) else total.add(vc, fill_value=0).astype(np.int64)
    return total


def optimize_scale(
    store: Store,
    q: Query = Query(),
    res: int | None = 9,
    ks=(1, 2, 3, 4, 5, 6),
    resolutions=(7, 8, 9, 10),
    boundary: Any = None,
) -> ScaleChoice:
    """Pick the neighbourhood (``res`` given: ring size among ``ks``) or the
    resolution (``res=None``: among ``resolutions`` at k=1) by incremental
    spatial autocorrelation (see :mod:`~rtcc_geo.hotspots.scale`)."""
    store, q, bnd, _ = _scoped(store, q, boundary)
    rows = []
    if res is not None:
        counts = cell_counts(store, res, q)
        cells, y = study_counts(counts, res, bnd)
        for k in ks:
            m = global_moran(y, build_weights(cells, "kring", k=k))
            rows.append({"res": res, "k": k, "n_cells": len(cells), "I": m.I, "z": m.z_rand})
        return choose_scale(pd.DataFrame(rows), fallback_k=knn_fallback_k(len(cells), max(ks)))
    else:
        for r in sorted(resolutions):
            counts = cell_counts(store, r, q)
            cells, y = study_counts(counts, r, bnd)
            m = global_moran(y, build_weights(cells, "kring", k=1))
            rows.append({"res": r, "k": 1, "n_cells": len(cells), "I": m.I, "z": m.z_rand})
        rows = rows[::-1]  # finest scale first, as ring sizes grow
    return choose_scale(pd.DataFrame(rows))


def export(gdf, path: str | Path) -> Path:
    """Write a hot-spot table by file suffix with :func:`rtcc_geo.export.write_cells`
    (CSV, GeoJSON, GeoParquet, GeoPackage, Shapefile; textual H3 ids, centre lat/lon)."""
    from ..export import write_cells

    return write_cells(gdf, path)


def summary(gdf) -> dict:
    """A JSON-able summary of a hot-spot table (what ``--json`` prints)."""
    meta = dict(gdf.attrs.get("hotspots", {}))
    m = meta.get("method")
    if m == "gistar":
        b = gdf["bin"].value_counts()
        meta["bins"] = {str(int(k)): int(b.get(k, 0)) for k in (3, 2, 1, 0, -1, -2, -3)}
        meta["hot"] = int((gdf["bin"] > 0).sum())
        meta["cold"] = int((gdf["bin"] < 0).sum())
    elif m == "lisa":
        c = gdf["cluster"].value_counts()
        meta["clusters"] = {k: int(c.get(k, 0)) for k in ("HH", "LL", "HL", "LH", "ns")}
    elif m == "kde":
        meta["max_density"] = float(gdf["density"].max())
    return meta
