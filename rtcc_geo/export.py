"""One writer for every per-cell table the CLI and the app export.

CSV, GeoJSON, GeoParquet, GeoPackage and Shapefile, chosen by file suffix. Cell
ids are always written in H3's textual form (``"8828308281fffff"``): a bare
64-bit integer is silently rounded by spreadsheets and by JSON readers that
parse numbers as doubles. Every row also carries the cell centre's ``lat`` and
``lon`` (WGS84), so a CSV can be mapped without an H3 library.

>>> from rtcc_geo.export import write_cells                    # doctest: +SKIP
>>> write_cells(hotspot_table, "hot.gpkg")                     # hexagons + cell, lat, lon, bin ...
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

#: Suffix -> format name.
FORMATS = {
    ".csv": "csv",
    ".geojson": "geojson",
    ".json": "geojson",
    ".parquet": "geoparquet",
    ".geoparquet": "geoparquet",
    ".gpkg": "gpkg",
    ".shp": "shapefile",
}
#: Columns that hold H3 cells (as int64 in memory) and are written as text.
CELL_COLUMNS = ("cell", "centre", "area", "parent")


def cell_text(cells) -> list[str | None]:
    """int64 H3 ids (or already textual ids) -> H3's textual form (None where missing)."""
    out: list[str | None] = []
    for c in cells:
        if isinstance(c, str):
            out.append(c.lower())
        elif c is None or (isinstance(c, float) and np.isnan(c)):
            out.append(None)
        else:
            out.append(format(int(c), "x"))
    return out


def cell_int(cells) -> np.ndarray:
    """Textual (or int) H3 ids -> int64."""
    return np.array([int(c, 16) if isinstance(c, str) else int(c) for c in cells], dtype=np.int64)


def cells_frame(df: pd.DataFrame, cell: str = "cell") -> pd.DataFrame:
    """``df`` without geometry, cell columns as text, ``lat``/``lon`` of ``cell``'s centre
    right after it (replacing any stale ones)."""
    from . import grid

    if cell not in df.columns:
        raise ValueError(f"no {cell!r} column to export; columns: {list(df.columns)}")
    out = pd.DataFrame(df.drop(columns=[c for c in ("geometry", "lat", "lon") if c in df.columns])).copy()
    ints = cell_int(out[cell])
    lat, lon = grid.cell_centres(ints) if len(ints) else (np.array([]), np.array([]))
    for c in CELL_COLUMNS:
        if c in out.columns and (pd.api.types.is_integer_dtype(out[c]) or out[c].dtype == object):
            out[c] = pd.Series(cell_text(out[c]), index=out.index, dtype="string")
    pos = list(out.columns).index(cell) + 1
    out.insert(pos, "lat", np.round(lat, 7))
    out.insert(pos + 1, "lon", np.round(lon, 7))
    return out


def _geo(df: pd.DataFrame, cell: str):
    from . import grid

    flat = cells_frame(df, cell)
    g = grid.cells_to_geodataframe(cell_int(flat[cell]), flat.drop(columns=[cell]).reset_index(drop=True))
    g[cell] = flat[cell].to_numpy()
    for c in g.columns:  # nullable/extension dtypes the OGR drivers do not take
        if c != "geometry" and str(g[c].dtype) in ("string", "category", "boolean", "Int64", "Float64"):
            g[c] = g[c].astype(object).where(g[c].notna(), None)
    return g


def write_cells(df: pd.DataFrame, path: str | Path, cell: str = "cell") -> Path:
    """Write a per-cell table to ``path`` (format by suffix, see :data:`FORMATS`)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unknown output type {path.suffix!r}: use one of {', '.join(sorted(FORMATS))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        cells_frame(df, cell).to_csv(path, index=False)
        return path
    g = _geo(df, cell)
    if fmt == "geoparquet":
        g.to_parquet(path, index=False)
    elif fmt == "geojson":
        g.to_file(path, driver="GeoJSON")
    elif fmt == "gpkg":
        g.to_file(path, driver="GPKG", layer=path.stem)
    else:
        g.to_file(path, driver="ESRI Shapefile")
    return path


def to_text(df: pd.DataFrame, fmt: str, cell: str = "cell") -> str:
    """CSV or GeoJSON text of a per-cell table (for downloads from the app)."""
    if fmt == "csv":
        buf = io.StringIO()
        cells_frame(df, cell).to_csv(buf, index=False)
        return buf.getvalue()
    if fmt == "geojson":
        return _geo(df, cell).to_json(drop_id=True)
    raise ValueError(f"to_text: fmt is 'csv' or 'geojson', not {fmt!r}")
