"""Getting a forecast's inputs: incidents of a target from a store, the study cells.

The study area is every H3 cell whose centre lies inside the agency boundary
(:func:`rtcc_geo.grid.cover`), plus any cell that has an incident (block
geocodes on the city line), so a map's "1 % of the area" is 1 % of the city,
not 1 % of the cells that happen to have crime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Agency, load_agency
from ..grid import cover
from ..schema import h3_column
from ..store.base import Query, Store
from .data import Counts, select_target

FORECAST_COLUMNS = ("id", "occurred_from", "time_known", "offense_raw", "offense_code", "category", "district")


def boundary_cells(agency: Agency | str, res: int) -> np.ndarray | None:
    """Cells covering the agency boundary, or None when no boundary file is found."""
    import geopandas as gpd

    a = load_agency(agency) if isinstance(agency, str) else agency
    path = a.find_file(a.boundary_file)
    if path is None:
        return None
    g = gpd.read_file(path).to_crs(4326)
    return cover(g, res)


def load_target(store: Store, source: str, target: str, start=None, end=None, res: int = 10) -> pd.DataFrame:
    """Incidents of ``source`` in ``[start, end)`` that belong to forecast ``target``."""
    cols = list(FORECAST_COLUMNS) + [h3_column(res), "lon", "lat"]
    # Forecasts are per cell: incidents that are not geolocated cannot take part.
    df = store.incidents(Query(source=source, start=start, end=end, geolocated=True), columns=cols)
    return select_target(df, target)


def counts_from_store(store: Store, source: str, target: str, start=None, end=None, res: int = 10,
                      agency: Agency | str | None = None) -> Counts:
    """A :class:`Counts` for ``target`` on the agency's study cells, local days in its time zone."""
    tz = store.sources().get(source)
    if tz is None:
        raise ValueError(f"source {source!r} is not in the store; known: {sorted(store.sources())}. Ingest it first.")
    df = load_target(store, source, target, start, end, res)
    cells = None
    try:
        cells = boundary_cells(agency or source, res)
    except FileNotFoundError:
        cells = None
    if cells is not None and len(df):
        cells = np.union1d(cells, df[h3_column(res)].to_numpy(np.int64))
    return Counts.from_incidents(df, cells=cells, res=res, tz=tz, origin=start, end=end)
