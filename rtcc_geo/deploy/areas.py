"""Places for a plan: cells of chosen districts, cells of excluded places, hot-spot bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Agency, load_agency
from ..grid import cover


def district_cells(agency: Agency | str, districts, res: int) -> np.ndarray:
    """Cells whose centre lies in any of ``districts`` (values of the agency's districts field)."""
    import geopandas as gpd

    a = load_agency(agency) if isinstance(agency, str) else agency
    path = a.find_file(a.districts_file)
    if path is None or not a.districts_field:
        raise FileNotFoundError(
            f"agency {a.name} has no district polygons (districts_file/districts_field in its TOML)"
        )
    g = gpd.read_file(path).to_crs(4326)
    want = {str(d).strip().lstrip("0") or "0" for d in districts}
    have = g[a.districts_field].astype(str).str.strip().str.lstrip("0").replace("", "0")
    sel = g[have.isin(want)]
    if sel.empty:
        raise ValueError(f"no district {sorted(want)} in {path.name}; known: {sorted(set(have))}")
    return cover(sel, res)


def place_cells(path: str | Path, res: int) -> np.ndarray:
    """Cells of excluded places from a GeoJSON/any vector file: polygons by cover,
    points (and polygons too small to hold a cell centre) by the cell containing them."""
    import geopandas as gpd
    import h3

    g = gpd.read_file(path).to_crs(4326)
    out: set[int] = set()
    for geom in g.geometry:
        if geom is None or geom.is_empty:
            continue
        if geom.geom_type in ("Polygon", "MultiPolygon"):
            cs = cover(geom, res)
            out.update(cs.tolist())
            pt = geom.representative_point()
            out.add(h3.api.basic_int.latlng_to_cell(pt.y, pt.x, res))
        else:
            for p in getattr(geom, "geoms", [geom]):
                out.add(h3.api.basic_int.latlng_to_cell(p.y, p.x, res))
    return np.array(sorted(out), dtype=np.int64)


def hotspot_bins(cells: np.ndarray, counts: np.ndarray, k: int = 1) -> pd.Series | None:
    """Gi* confidence bins (ArcGIS style, FDR) of ``counts`` on ``cells`` with k-ring weights,
    from :mod:`rtcc_geo.hotspots`; ``None`` if that module is unavailable or there are no counts."""
    try:
        from ..hotspots.fdr import confidence_bins
        from ..hotspots.gistar import GiStar
        from ..hotspots.weights import kring_weights
    except ImportError:  # pragma: no cover - hot spots not installed
        return None
    counts = np.asarray(counts, dtype=float)
    if counts.sum() <= 0:
        return None
    w = kring_weights(cells, k)
    g = GiStar(counts, w, permutations=0)
    return pd.Series(confidence_bins(g.Zs, g.p_norm), index=pd.Index(np.asarray(cells, np.int64), name="cell"))
