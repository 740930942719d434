"""Acceptance 5 of the hot-spot issue: the PostGIS store and the embedded
store give identical hot-spot tables (real PostGIS, real Philadelphia data).

Two months (June–July 2024, ~28k incidents) keep the PostGIS load short; the
same files go into both stores through the real ingest pipeline, and every
method is compared cell by cell, with filters.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.hotspots import concentration_report, hotspots
from rtcc_geo.store.base import Query

pytestmark = pytest.mark.postgis


def _table(gdf) -> pd.DataFrame:
    return pd.DataFrame(gdf.drop(columns="geometry")).reset_index(drop=True)


def test_postgis_and_embedded_give_identical_hotspot_tables(pg_url, tmp_path, shared_data):
    from rtcc_geo.ingest.pipeline import ingest_files
    from rtcc_geo.store import open_store

    warnings.simplefilter("ignore", DeprecationWarning)
    files = [shared_data / "philadelphia" / f"incidents_2024_{m}.csv" for m in ("06", "07")]
    pg = open_store(db=pg_url)
    em = open_store(store_dir=tmp_path / "store")
    try:
        a = ingest_files("philadelphia", files, pg)
        b = ingest_files("philadelphia", files, em)
        assert a.as_dict()["loaded"] == b.as_dict()["loaded"] > 25_000

        base = Query(source="philadelphia")
        cases = [
            ("gistar", 9, base, {}),
            ("gistar", 9, base.with_(categories=("theft", "vehicle"), districts=("24", "25", "15")), {"k": 2}),
            ("lisa", 9, base.with_(start="2024-06-15", end="2024-07-20"), {}),
            ("gistar", 10, base.with_(categories=("burglary",)), {"alternative": "folded"}),
            ("kde", 10, base.with_(districts=("01",)), {}),
        ]
        for method, res, q, kw in cases:
            kw = {"permutations": 199, "seed": 11, **kw} if method != "kde" else kw
            ta = hotspots(pg, method, res, q, **kw)
            tb = hotspots(em, method, res, q, **kw)
            assert len(ta) > 100, (method, res, q)
            located = q.with_(geolocated=True)  # hot spots count incidents with a location
            assert int(ta["count"].sum()) == pg.count(located) == em.count(located)
            if method == "kde":
                # float sums of kernel values in the stores' row order: equal to 1e-12
                pd.testing.assert_frame_equal(_table(ta), _table(tb), check_exact=False, rtol=1e-12, atol=1e-12)
            else:
                pd.testing.assert_frame_equal(_table(ta), _table(tb), check_exact=True)
            assert ta.geometry.geom_equals_exact(tb.geometry, 0).all()
            if method == "gistar":
                assert (ta["bin"] != 0).any()

        ca = concentration_report(pg, 9, base)
        cb = concentration_report(em, 9, base)
        for unit in ("cell", "block"):
            assert ca[unit].summary() == cb[unit].summary()
            pd.testing.assert_frame_equal(ca[unit].power_few, cb[unit].power_few)
        assert np.isfinite(ca["cell"].gini)
    finally:
        pg.close()
