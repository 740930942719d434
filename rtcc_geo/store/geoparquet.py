"""Incident rows as GeoParquet, written and read with pyarrow alone (no shapely, no pandas round trip).

The embedded store's part files are plain GeoParquet 1.1 (``geo`` metadata,
WKB point geometry, CRS EPSG:4326) any GIS reads. Building point WKB is pure
byte layout (1 byte order, 4 bytes type, two little-endian doubles: 21
bytes a point), so :func:`point_wkb` packs it in numpy; going through shapely
and geopandas cost more than everything else in a write.

Rows are sorted by cell (res 7 first, then the finer ones, then time) and cut
into row groups of :data:`ROW_GROUP_SIZE`, so each row group's min/max
statistics on the cell and category columns let a reader skip it
(:func:`pyarrow.dataset` filters use them).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import CORE_DTYPES, DEFAULT_RESOLUTIONS, h3_column

#: Rows per row group: small enough that a cell or category filter skips most
#: of a large partition, large enough that per-group overhead stays negligible.
ROW_GROUP_SIZE = 64 * 1024

_ARROW_TYPES = {
    "string": pa.string(),
    "datetime64[ns, UTC]": pa.timestamp("ns", tz="UTC"),
    "bool": pa.bool_(),
    "float64": pa.float64(),
    "int64": pa.int64(),
}
CELL_COLUMNS: tuple[str, ...] = tuple(h3_column(r) for r in DEFAULT_RESOLUTIONS)
#: The canonical incident columns as stored (geometry excluded: derivable from lon/lat).
SCHEMA = pa.schema(
    [pa.field(c, _ARROW_TYPES[t], nullable=(t != "bool")) for c, t in CORE_DTYPES.items()]
    + [pa.field(c, pa.int64(), nullable=False) for c in CELL_COLUMNS]
)
#: Sort order of the rows in a part file (what makes the cell statistics prune).
SORT_KEYS: tuple[str, ...] = (*CELL_COLUMNS, "occurred_from", "id")
_DICTIONARY = ("source", "time_known", "offense_raw", "offense_code", "category", "district")
_STATISTICS = ("occurred_from", "time_known", "category", "district", *CELL_COLUMNS)


def point_wkb(lon: np.ndarray, lat: np.ndarray) -> pa.Array:
    """ISO WKB points (little endian) for finite ``lon``/``lat``; null where not geolocated."""
    lon = np.asarray(lon, dtype="float64")
    lat = np.asarray(lat, dtype="float64")
    ok = np.isfinite(lon) & np.isfinite(lat)
    rec = np.empty(int(ok.sum()), dtype=np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"), ("y", "<f8")]))
    rec["order"], rec["type"], rec["x"], rec["y"] = 1, 1, lon[ok], lat[ok]
    offsets = np.zeros(len(lon) + 1, dtype=np.int32)
    np.cumsum(ok * rec.dtype.itemsize, out=offsets[1:])
    validity = None if ok.all() else pa.array(ok).buffers()[1]
    return pa.BinaryArray.from_buffers(
        pa.binary(),
        len(lon),
        [validity, pa.py_buffer(offsets), pa.py_buffer(rec.tobytes())],
        null_count=int(len(lon) - len(rec)),
    )


@lru_cache(maxsize=1)
def _crs_json() -> dict:
    from pyproj import CRS

    return CRS.from_epsg(4326).to_json_dict()


def geo_metadata(lon: np.ndarray, lat: np.ndarray) -> bytes:
    ok = np.isfinite(lon) & np.isfinite(lat)
    bbox = [float(lon[ok].min()), float(lat[ok].min()), float(lon[ok].max()), float(lat[ok].max())] if ok.any() else []
    col = {"encoding": "WKB", "geometry_types": ["Point"], "crs": _crs_json()}
    if bbox:
        col["bbox"] = bbox
    return json.dumps({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}}).encode()


def to_table(df: pd.DataFrame) -> pa.Table:
    """Canonical (conformed) incident rows as an Arrow table of :data:`SCHEMA`, sorted by :data:`SORT_KEYS`."""
    return sort_rows(arrow_rows(df))


def arrow_rows(df: pd.DataFrame) -> pa.Table:
    """Canonical (conformed) incident rows as an Arrow table of :data:`SCHEMA`, in their order
    (converted once per write; each part then takes its rows)."""
    return pa.Table.from_pandas(df.loc[:, SCHEMA.names], preserve_index=False).cast(SCHEMA)


def sort_rows(t: pa.Table) -> pa.Table:
    """``t`` sorted by :data:`SORT_KEYS` (what makes the cell statistics prune)."""
    return t.sort_by([(k, "ascending") for k in SORT_KEYS])


def write_table(t: pa.Table, path: str | Path) -> None:
    """Write sorted incident rows (:data:`SCHEMA` columns) as GeoParquet at ``path``."""
    t = t.select(SCHEMA.names)
    lon = t.column("lon").to_numpy(zero_copy_only=False)
    lat = t.column("lat").to_numpy(zero_copy_only=False)
    t = t.append_column("geometry", point_wkb(lon, lat)).replace_schema_metadata({b"geo": geo_metadata(lon, lat)})
    # Dictionaries only where values repeat, statistics only where a filter uses them:
    # both cost more than the compression on ids, blocks and extras (measured: ~2x the write time).
    pq.write_table(
        t,
        path,
        row_group_size=ROW_GROUP_SIZE,
        compression="zstd",
        use_dictionary=list(_DICTIONARY),
        write_statistics=list(_STATISTICS),
        sorting_columns=[pq.SortingColumn(t.schema.get_field_index(k)) for k in SORT_KEYS],
    )


def to_pandas(t: pa.Table) -> pd.DataFrame:
    """An Arrow table read from a part as pandas with the canonical dtypes (``string``, UTC ``datetime64[ns]``)."""
    df = t.to_pandas(types_mapper={pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}.get)
    for c in df.columns:
        want = CORE_DTYPES.get(c)
        if want is not None and str(df[c].dtype) != want:
            df[c] = df[c].astype(want)
    return df
