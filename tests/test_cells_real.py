"""Every stored cell is the cell that contains the incident's point, on ALL the real data.

Philadelphia (24 monthly files), Vancouver (6 yearly files, UTM points) and the
Chicago sample go through the real pipeline (``ingest_files`` into an embedded
store); every stored row's ``h3_r7 .. h3_r10`` is then checked against h3-py's
own ``latlng_to_cell`` of the stored point, one point at a time (the reference
is h3-py, not our vectorised path). Not-geolocated rows carry NO_CELL at every
resolution and no point. The vectorised backend (h3ronpy) is also checked
against h3-py directly on every real point, outside the pipeline.
"""

from __future__ import annotations

import h3
import numpy as np
import pytest

from rtcc_geo import grid
from rtcc_geo.ingest import ingest_files
from rtcc_geo.schema import DEFAULT_RESOLUTIONS, NO_CELL, h3_column
from rtcc_geo.store.embedded import EmbeddedStore

SETS = {
    "philadelphia": ("philadelphia", "incidents_20*.csv", 329_405),
    "vancouver": ("vancouver", "crimedata_csv_*.csv", 206_933),
    "chicago": ("chicago_sample", "chicago_crimes_sample_*.csv", 25_000),
}


@pytest.fixture(scope="module")
def stored(shared_data, tmp_path_factory):
    """All real files ingested through the pipeline into one embedded store."""
    store = EmbeddedStore(tmp_path_factory.mktemp("cells_real"))
    summaries = {}
    for fmt, (folder, pattern, _) in SETS.items():
        files = sorted((shared_data / folder).glob(pattern))
        assert files, f"no {fmt} files under {shared_data / folder}"
        summaries[fmt] = ingest_files(fmt, files, store)
    return store, summaries


def _h3py(lat: np.ndarray, lon: np.ndarray, res: int) -> np.ndarray:
    f = h3.latlng_to_cell  # the string API: independent of our int handling too
    return np.array([h3.str_to_int(f(a, b, res)) for a, b in zip(lat.tolist(), lon.tolist())], dtype=np.int64)


@pytest.mark.parametrize("fmt", list(SETS))
def test_every_stored_cell_is_h3_latlng_to_cell_of_its_point(stored, fmt):
    store, summaries = stored
    s = summaries[fmt]
    assert s.read == SETS[fmt][2] and s.read == s.loaded + s.quarantined
    df = store.incidents(store_query(fmt))
    assert len(df) == s.loaded > 0
    located = df["lon"].notna().to_numpy()
    assert located.sum() > 0.8 * len(df)
    lat, lon = df["lat"].to_numpy()[located], df["lon"].to_numpy()[located]
    for res in DEFAULT_RESOLUTIONS:
        cells = df[h3_column(res)].to_numpy(dtype=np.int64)
        ref = _h3py(lat, lon, res)
        bad = np.flatnonzero(cells[located] != ref)
        assert len(bad) == 0, (
            f"{fmt} res {res}: {len(bad)} of {len(ref)} cells differ from h3.latlng_to_cell, "
            f"e.g. ({lat[bad[0]]}, {lon[bad[0]]}): stored {cells[located][bad[0]]}, h3 {ref[bad[0]]}"
        )
        # Not geolocated: no point and NO_CELL at every resolution.
        assert (cells[~located] == NO_CELL).all()
    assert df.loc[~located, "lat"].isna().all()


def store_query(fmt):
    from rtcc_geo.store.base import Query

    return Query(source=fmt)


def test_vectorised_backend_equals_h3py_on_every_real_point(stored):
    """h3ronpy (h3o) against h3-py on every distinct real point, all four
    resolutions, called directly (not through the pipeline's factorisation)."""
    store, _ = stored
    if grid.backend() != "h3ronpy":
        pytest.fail("h3ronpy is a dependency: the vectorised backend must be in use")
    df = store.incidents(store_query(None).with_(geolocated=True), columns=["lat", "lon"])
    pts = df.drop_duplicates()
    lat, lon = pts["lat"].to_numpy(), pts["lon"].to_numpy()
    assert len(pts) > 100_000
    for res in DEFAULT_RESOLUTIONS:
        assert np.array_equal(grid.latlng_to_cells(lat, lon, res), grid.latlng_to_cells_h3(lat, lon, res)), res
