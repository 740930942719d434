"""Hot spots on real Philadelphia 2024 data through the store API
(acceptance 1, 3, 4 of the hot-spot issue, and the CLI).

One embedded store with the twelve 2024 files is built per session (~30 s).
"""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from rtcc_geo import grid
from rtcc_geo.hotspots import (
    GiStar,
    LocalMoran,
    concentration_report,
    export,
    hotspots,
    kde_cells,
    kring_weights,
)
from rtcc_geo.hotspots.concentration import top_share
from rtcc_geo.hotspots.permutation import mc_se
from rtcc_geo.store.base import Query

import esda  # noqa: E402  (a test extra: missing it must fail, not skip)

warnings.filterwarnings("ignore", category=DeprecationWarning)

Y2024 = Query(source="philadelphia", start="2024-01-01", end="2025-01-01")


@pytest.fixture(scope="module")
def phl_store(shared_data, tmp_path_factory):
    from rtcc_geo.ingest.pipeline import ingest_files
    from rtcc_geo.store import open_store

    store = open_store(store_dir=tmp_path_factory.mktemp("phl2024"))
    files = sorted((shared_data / "philadelphia").glob("incidents_2024_*.csv"))
    assert len(files) == 12
    ingest_files("philadelphia", files, store)
    return store


@pytest.fixture(scope="module")
def districts(shared_data):
    return gpd.read_file(shared_data / "philadelphia" / "police_districts.geojson").to_crs("EPSG:4326")


@pytest.fixture(scope="module")
def res9(phl_store, districts):
    """All cells in the district boundary at res 9, with their 2024 counts."""
    cells = grid.cover(districts, 9)
    c = phl_store.counts(9, ("cell",), Y2024)
    y = pd.Series(c["n"].to_numpy(), index=c["cell"].to_numpy()).reindex(cells, fill_value=0).to_numpy(float)
    w = kring_weights(cells, 1)
    return cells, y, w


def _mc_tol(p_a, p_b, P, sd=5.0):
    """Allowed |p_a - p_b| between two independent P-permutation estimates:
    ``sd`` binomial standard errors of a difference, plus two counts of slack."""
    p = np.clip((p_a + p_b) / 2, 1 / (P + 1), 1)
    return sd * np.sqrt(2) * mc_se(p, P, "folded") + 2 / (P + 1)  # folded is one-tailed: p(1-p)/P


def test_acceptance1_gistar_equals_esda(res9):
    cells, y, w = res9
    assert len(cells) > 3000 and y.sum() > 140_000 and len(w.islands) == 0
    lw = w.to_libpysal()
    P = 999
    ref = esda.G_Local(y, lw, transform="B", star=True, permutations=P, seed=12345, n_jobs=1, keep_simulations=False)
    ours = GiStar(y, w, permutations=P, seed=12345, alternative="folded")
    assert np.max(np.abs(ours.Zs - ref.Zs)) < 1e-9
    # same seed and rule (esda's classic 'directed' p_sim), different random
    # streams: agreement within Monte-Carlo error, 5 binomial s.e. per cell
    d = np.abs(ours.p_sim - ref.p_sim)
    assert np.all(d <= _mc_tol(ours.p_sim, ref.p_sim, P))
    assert abs(np.mean(ours.p_sim <= 0.05) - np.mean(ref.p_sim <= 0.05)) < 0.02
    # and from esda's own draw block the p-values are identical
    from esda.crand import vec_permutations

    exact = GiStar(y, w, permutations=P, draws=vec_permutations(6, w.n, P, 12345), alternative="folded")
    np.testing.assert_allclose(exact.p_sim, ref.p_sim, atol=1e-6)  # esda stores float32


def test_acceptance1_local_moran_equals_esda(res9):
    cells, y, w = res9
    P = 999
    ref = esda.Moran_Local(y, w.to_libpysal(), transformation="r", permutations=P, seed=777, n_jobs=1)
    ours = LocalMoran(y, w, permutations=P, seed=777, alternative="folded")
    np.testing.assert_allclose(ours.Is, ref.Is, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(ours.q, ref.q)
    # Counts tie a lot (a simulated neighbourhood often sums to the observed
    # one). esda compares floating-point I values, computed in a different
    # order for the observed and the simulated I, so its ties fall on either
    # side by rounding; we compare exact integer sums. Counting esda's own
    # near-equal simulations as ties (the rule as written) removes that noise:
    sim = ref.sim.T
    tie = 1e-9 * np.abs(ref.Is)[:, None] + 1e-12
    larger = (sim >= ref.Is[:, None] - tie).sum(axis=1)
    ref_p = (np.minimum(larger, P - larger) + 1) / (P + 1)
    # same seed and rule, different random streams: within Monte-Carlo error
    assert np.all(np.abs(ours.p_sim - ref_p) <= _mc_tol(ours.p_sim, ref_p, P))
    assert abs(np.mean(ours.p_sim <= 0.05) - np.mean(ref_p <= 0.05)) < 0.02
    # from esda's own draws, exactly esda's tie-aware p-values
    from esda.crand import vec_permutations

    exact = LocalMoran(y, w, permutations=P, draws=vec_permutations(6, w.n, P, 777), alternative="folded")
    np.testing.assert_allclose(exact.p_sim, ref_p, atol=1e-12)


def test_hotspots_api_table(phl_store, res9):
    cells, y, _ = res9
    gdf = hotspots(phl_store, "gistar", 9, Y2024, permutations=199, seed=1, inference="sim")
    assert list(gdf.columns) == ["cell", "count", "g", "z", "p", "p_sim", "p_fdr", "bin", "n_neighbours", "geometry"]
    assert gdf.crs.to_epsg() == 4326
    # study area = every boundary cell (zeros included) + the few incident cells just outside
    assert set(cells) <= set(gdf["cell"]) and len(gdf) - len(cells) < 100
    assert int(gdf["count"].sum()) == phl_store.count(Y2024.with_(geolocated=True))  # cells: located incidents
    assert (gdf["count"] == 0).sum() > 300
    # bins follow the FDR-adjusted permutation p-values and the sign of z
    b = gdf["bin"].to_numpy()
    assert np.all((np.abs(b) >= 2) == (gdf.p_fdr.to_numpy() <= 0.05))
    assert np.all(np.sign(b[b != 0]) == np.sign(gdf.z.to_numpy()[b != 0]))
    assert (b > 0).sum() > 20 and (b < 0).sum() > 20
    # seeded: the same call gives the same table
    again = hotspots(phl_store, "gistar", 9, Y2024, permutations=199, seed=1, inference="sim")
    pd.testing.assert_frame_equal(
        pd.DataFrame(gdf.drop(columns="geometry")), pd.DataFrame(again.drop(columns="geometry"))
    )
    # analytic inference (ArcGIS): bins from p; hot cells centre on the busiest cells
    norm = hotspots(phl_store, "gistar", 9, Y2024, permutations=0)
    assert norm["p_sim"].isna().all() and (norm["bin"] == 3).sum() > 0
    assert norm.loc[norm["bin"] == 3, "count"].mean() > 3 * norm["count"].mean()

    lisa = hotspots(phl_store, "lisa", 9, Y2024, permutations=999, seed=1)
    assert set(lisa["cluster"]) <= {"HH", "LL", "HL", "LH", "ns"}
    assert (lisa["cluster"] == "HH").sum() > 10


def test_filters_district_category_window(phl_store, districts):
    q = Y2024.with_(districts=("24",), categories=("burglary", "theft"), start="2024-03-01", end="2024-09-01")
    gdf = hotspots(phl_store, "gistar", 9, q, permutations=99, seed=0)
    d24 = districts[districts["dist_numc"] == "24"]
    cover = grid.cover(d24, 9)
    assert set(cover) <= set(gdf["cell"]) and len(gdf) < len(cover) + 30
    assert int(gdf["count"].sum()) == phl_store.count(q.with_(geolocated=True)) > 100
    with pytest.raises(ValueError, match="no district"):
        hotspots(phl_store, "gistar", 9, Y2024.with_(districts=("99",)))
    with pytest.raises(ValueError, match="no incidents"):
        hotspots(phl_store, "gistar", 9, Y2024.with_(start="2030-01-01", end="2030-02-01"))


def test_boundary_options(phl_store, districts, tmp_path):
    auto = hotspots(phl_store, "gistar", 8, Y2024, permutations=0)
    assert len(auto) == len(hotspots(phl_store, "gistar", 8, Y2024, boundary="auto", permutations=0))
    path = tmp_path / "d.geojson"
    districts.to_file(path, driver="GeoJSON")
    from_file = hotspots(phl_store, "gistar", 8, Y2024, boundary=str(path), permutations=0)
    pd.testing.assert_frame_equal(
        pd.DataFrame(auto.drop(columns="geometry")), pd.DataFrame(from_file.drop(columns="geometry"))
    )
    with pytest.warns(UserWarning, match="zero cells matter"):
        only = hotspots(phl_store, "gistar", 8, Y2024, boundary="incidents", permutations=0)
    assert len(only) < len(auto) and (only["count"] > 0).all()


def test_acceptance3_kde_through_store(phl_store):
    q = Y2024.with_(categories=("burglary",))
    gdf = hotspots(phl_store, "kde", 10, q, bandwidth_m=300)
    pts = phl_store.incidents(q, columns=["lon", "lat"])
    direct = kde_cells(gdf["cell"].to_numpy(), pts.lon.to_numpy(), pts.lat.to_numpy(), "quartic", 300)
    np.testing.assert_allclose(gdf["density"], direct.density, rtol=1e-12)
    # the density integrates (cell area x density) to about the incident count
    total = (gdf["density"] * grid.cell_area_km2(10)).sum()
    assert total == pytest.approx(len(pts), rel=0.05)
    assert gdf.attrs["hotspots"]["bandwidth_rule"] == "user"


def test_acceptance4_concentration_phl(phl_store, res9, capsys):
    rep = concentration_report(phl_store, 9, Y2024)
    cell = rep["cell"]
    gdf_counts = hotspots(phl_store, "gistar", 9, Y2024, permutations=0)["count"].to_numpy()
    # direct numpy: sort descending, take ceil(5 % of cells)
    s = np.sort(gdf_counts)[::-1]
    k = int(np.ceil(0.05 * len(s)))
    assert cell.top5_share == pytest.approx(s[:k].sum() / s.sum(), rel=1e-12)
    assert cell.n_units == len(s)
    blocks = phl_store.incidents(Y2024, columns=["block"])["block"].dropna().value_counts()
    assert rep["block"].top5_share == pytest.approx(top_share(blocks, 0.05), rel=1e-12)
    assert 0.2 < cell.top5_share < 0.5 and 0.5 < cell.gini < 0.9
    with capsys.disabled():
        print(
            f"\nPhiladelphia 2024, res 9: top 5 % of {cell.n_units} cells carry {100 * cell.top5_share:.1f} % "
            f"of {cell.n_incidents} incidents; top 5 % of {rep['block'].n_units} blocks "
            f"carry {100 * rep['block'].top5_share:.1f} %"
        )


def test_export_round_trip(phl_store, tmp_path):
    gdf = hotspots(phl_store, "gistar", 8, Y2024, permutations=99, seed=2)
    g = gpd.read_file(export(gdf, tmp_path / "h.geojson"))
    assert [int(c, 16) for c in g["cell"]] == gdf["cell"].tolist()
    np.testing.assert_allclose(g["z"], gdf["z"])
    # textual H3 ids everywhere (a spreadsheet rounds a 64-bit number), with the centre's lat/lon
    c = pd.read_csv(export(gdf, tmp_path / "h.csv"), dtype={"cell": str})
    assert [int(x, 16) for x in c["cell"]] == gdf["cell"].tolist() and {"lat", "lon", "bin"} <= set(c.columns)
    p = gpd.read_parquet(export(gdf, tmp_path / "h.parquet"))
    assert [int(x, 16) for x in p["cell"]] == gdf["cell"].tolist() and {"lat", "lon"} <= set(p.columns)
    pd.testing.assert_frame_equal(
        pd.DataFrame(p.drop(columns=["geometry", "cell", "lat", "lon"])),
        pd.DataFrame(gdf.drop(columns=["geometry", "cell"])),
    )
    assert p.geometry.equals(gdf.geometry)
    with pytest.raises(ValueError, match="unknown output"):
        export(gdf, tmp_path / "h.xlsx")


def test_cli_hotspots(phl_store, tmp_path, capsys):
    from rtcc_geo.cli.main import main

    out = tmp_path / "hot.geojson"
    rc = main(
        [
            "hotspots",
            "--store",
            str(phl_store.root),
            "--method",
            "gistar",
            "--res",
            "9",
            "--from",
            "2024-01-01",
            "--to",
            "2025-01-01",
            "--category",
            "theft,vehicle",
            "--permutations",
            "199",
            "--seed",
            "3",
            "--optimize",
            "--concentration",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    assert js["method"] == "gistar" and js["permutations"] == 199 and js["out"] == str(out)
    assert sum(js["bins"].values()) == js["n_cells"] and js["hot"] > 0
    assert js["scale"]["rule"] in ("first_peak", "knn_fallback", "max_z", "no_clustering") and js["scale"]["reason"]
    assert js["k"] == js["scale"]["k"]
    assert 0 < js["concentration"]["cell"]["top5_share"] < 1
    assert len(gpd.read_file(out)) == js["n_cells"]
    rc = main(["hotspots", "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "x.txt")])
    assert rc == 2 and "--out" in capsys.readouterr().err
    rc = main(["hotspots", "--store", str(phl_store.root), "--category", "burglry"])
    assert rc == 2 and "burglary" in capsys.readouterr().err  # the error lists the valid categories
    rc = main(["hotspots", "--store", str(tmp_path / "empty")])
    assert rc == 2 and "rtcc-geo ingest" in capsys.readouterr().err
