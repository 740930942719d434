"""The agency lives in the store, one Scope answers every entry point.

Acceptance (issue 14): (2) with no presets at all (``$RTCC_AGENCY_PRESETS`` an empty
folder) every command on a store whose agency was added gives the answers it gives
with the repository's preset; (3) CLI = API = app for the same Scope on hot spots,
emerging hot spots, forecast, deployment and staffing. Real Philadelphia data, real
PostGIS for the stored agency's geometry.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from rtcc_geo import agencies as A
from rtcc_geo import defaults as D
from rtcc_geo.cli.main import main
from rtcc_geo.export import cell_int
from rtcc_geo.scope import ScopeError, resolve_scope
from rtcc_geo.store import open_store
from rtcc_geo.store.base import Query

FROM, TO = "2024-05-01", "2024-07-01"  # two months of the shared April-July store
END = "2024-07-20"  # the app's view ends the day before
VOLATILE = {"seconds", "ehsa_seconds", "store", "out", "geojson", "out_csv", "out_geojson"}


def _strip(x):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def cli(capsys, *argv) -> dict:
    capsys.readouterr()
    rc = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def cli_error(capsys, *argv) -> str:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    return err


@pytest.fixture()
def stores(phl_apr_jul_store, tmp_path, monkeypatch):
    """(with the preset, stored agency + no presets): copies of the shared store."""
    src = phl_apr_jul_store.root
    a, b = tmp_path / "preset", tmp_path / "stored"
    shutil.copytree(src, a)
    shutil.copytree(src, b)
    sa, sb = open_store(store_dir=a), open_store(store_dir=b)
    # The first ingest of a known format copied its preset in:
    assert A.list_agencies(sb) == ["philadelphia"] and A.get_agency(sb, "philadelphia").origin == "store"
    assert A.remove_agency(sa, "philadelphia")  # store a reads the repository's preset, as before
    empty = tmp_path / "no-presets"
    empty.mkdir()
    return sa, sb, empty


COMMANDS = [
    ("hotspots", "--res", "8", "--from", FROM, "--to", TO),
    ("hotspots", "--res", "8", "--from", FROM, "--to", TO, "--district", "24", "--category", "theft"),
    ("emerging", "--res", "8", "--from", FROM, "--to", TO),
    (
        "forecast",
        "backtest",
        "--model",
        "naive,stkde",
        "--res",
        "8",
        "--from",
        "2024-06-03",
        "--to",
        "2024-06-17",
        "--horizon",
        "7d",
        "--train-from",
        FROM,
    ),
    (
        "deploy",
        "--model",
        "stkde",
        "--units",
        "3",
        "--res",
        "8",
        "--shift-start",
        "2024-06-20 16:00",
        "--train-from",
        FROM,
    ),
    ("staff", "--from", FROM, "--to", TO, "--operators", "12"),
]


def test_acceptance2_every_command_runs_from_the_stored_agency_alone(stores, capsys, monkeypatch):
    sa, sb, empty = stores
    with_preset = [cli(capsys, *c, "--store", str(sa.root)) for c in COMMANDS]
    monkeypatch.setenv("RTCC_AGENCY_PRESETS", str(empty))  # data/agencies/ gone
    stored = [cli(capsys, *c, "--store", str(sb.root)) for c in COMMANDS]
    for c, x, y in zip(COMMANDS, with_preset, stored):
        for d in (x, y):  # the study area is named; only where it came from differs
            if isinstance(d.get("scope"), dict):
                d["scope"].pop("agency"), d["scope"].pop("study_area")
            d.pop("study_area", None)
        if c[0] == "staff":
            # The optimum is the same; among equally good shift sets the solver (warm-started by a
            # time-limited search) may return another one, so compare what is optimised.
            assert x["required"] == y["required"], c
            for k in x["options"]:
                ox, oy = x["options"][k], y["options"][k]
                assert ox["optimal"] and oy["optimal"], (c, k)
                assert ox["coverage"] == pytest.approx(oy["coverage"], abs=1e-6), (c, k)
            continue
        assert _strip(x) == _strip(y), c
    hs = stored[0]
    assert hs["n_cells"] > 300 and hs["hot"] > 0 and hs["inference"] == D.INFERENCE
    assert stored[1]["scope"]["districts"] == ["24"] and stored[1]["n_cells"] < hs["n_cells"] / 10
    # the store without its agency and without presets: a clear error naming the command
    err = cli_error(capsys, "hotspots", "--res", "8", "--store", str(sa.root))
    assert "rtcc-geo agency add philadelphia --boundary FILE --timezone TZ" in err
    assert "--study-area incidents" in err
    # ... unless asked for explicitly, and then it says so
    out = cli(
        capsys,
        "hotspots",
        "--res",
        "8",
        "--from",
        FROM,
        "--to",
        TO,
        "--study-area",
        "incidents",
        "--store",
        str(sa.root),
    )
    assert out["study_area"].startswith("incidents only") and out["n_cells"] < hs["n_cells"]
    # a district filter that cannot be honoured is an error, never the whole city
    err = cli_error(capsys, "hotspots", "--res", "8", "--district", "99", "--store", str(sb.root))
    assert "no incidents match district 99" in err and "the data's districts are 01, 02" in err
    # forecast and deploy default to the store's only source (they defaulted to philadelphia)
    assert stored[4]["units"] == 3


def test_ingest_of_an_unknown_source_says_what_to_run(tmp_path, shared_data, capsys, monkeypatch):
    raw = shared_data / "vancouver" / "crimedata_csv_AllNeighbourhoods_2024.csv"
    f = tmp_path / "van.csv"
    f.write_text("".join(raw.open().readlines()[:50]))
    monkeypatch.setenv("RTCC_AGENCY_PRESETS", str(tmp_path / "none"))
    err = cli_error(capsys, "ingest", "--format", "vancouver", str(f), "--store", str(tmp_path / "s"))
    assert "rtcc-geo agency add vancouver --boundary FILE --timezone TZ" in err
    # agency add, then the same ingest loads, validated against the stored boundary
    bnd = shared_data / "vancouver" / "local-area-boundary.geojson"
    out = cli(
        capsys,
        "agency",
        "add",
        "vancouver",
        "--boundary",
        str(bnd),
        "--timezone",
        "America/Vancouver",
        "--districts",
        str(bnd),
        "--district-field",
        "name",
        "--alias",
        "Central Business District=Downtown",
        "--store",
        str(tmp_path / "s"),
    )
    assert out["origin"] == "store" and len(out["districts"]) == 22
    s = cli(capsys, "ingest", "--format", "vancouver", str(f), "--store", str(tmp_path / "s"))
    assert s["read"] == 49 and s["loaded"] + s["quarantined"] == 49 and s["boundary"] == "boundary.geojson"


@pytest.mark.postgis
def test_agency_in_postgis_equals_embedded(pg_url, tmp_path, monkeypatch):
    """The PostGIS tables (migration 050) give back the agency the embedded store gives."""
    pg, emb = open_store(db=pg_url), open_store(store_dir=tmp_path)
    for s in (pg, emb):
        A.add_preset(s, "vancouver")
    a, b = A.get_agency(pg, "vancouver"), A.get_agency(emb, "vancouver")
    assert a.boundary().equals(b.boundary()) and a.boundary().area > 0.01
    assert a.districts()["district"].tolist() == b.districts()["district"].tolist()
    assert a.district_aliases == b.district_aliases == {"Central Business District": "Downtown"}
    assert a.taxonomy_csv == b.taxonomy_csv and a.timezone == "America/Vancouver"
    n = pg.conn.execute(
        "SELECT count(*), min(ST_SRID(geom)) FROM rtcc_agency_areas WHERE agency = 'vancouver'"
    ).fetchone()
    assert n == (23, 4326)  # one boundary + 22 districts, real geometry
    assert A.list_agencies(pg) == ["vancouver"] and A.remove_agency(pg, "vancouver") and A.list_agencies(pg) == []


def test_district_aliases_and_one_normalisation(tmp_path):
    """Vancouver's data says "Central Business District", its polygons "Downtown"."""
    store = open_store(store_dir=tmp_path)
    store.register_source("vancouver", "America/Vancouver")
    A.add_preset(store, "vancouver")
    rows = pd.DataFrame(
        {
            "source": "vancouver",
            "id": ["a", "b", "c"],
            "occurred_from": pd.to_datetime(["2024-05-01 10:00"] * 3, utc=True),
            "lon": [-123.118, -123.118, -123.16],
            "lat": [49.282, 49.283, 49.25],
            "district": ["Central Business District", "Central Business District", "Arbutus Ridge"],
            "category": "theft",
        }
    )
    from rtcc_geo import grid
    from rtcc_geo.schema import DEFAULT_RESOLUTIONS, h3_column

    for r, c in grid.index_points(rows["lat"].to_numpy(), rows["lon"].to_numpy(), DEFAULT_RESOLUTIONS).items():
        rows[h3_column(r)] = c
    store.write_incidents(rows)
    sc = resolve_scope(store, Query(districts=("downtown",)))
    assert sc.districts == ("Downtown",) and sc.query.districts[0] == "Central Business District"
    sc2 = resolve_scope(store, Query(districts=("Central Business District",)))
    assert sc2.boundary().equals(sc.boundary())
    assert resolve_scope(store, Query(districts=("arbutus-ridge",))).query.districts == ("Arbutus Ridge",)
    with pytest.raises(ScopeError, match="no district"):
        resolve_scope(store, Query(districts=("Stanley Park",)))


def test_acceptance3_cli_equals_api_equals_app(stores, capsys, monkeypatch, tmp_path):
    from rtcc_geo.app import layers, staffing_view
    from rtcc_geo.app.context import Filters, context_for
    from rtcc_geo.deploy.api import plan_from_store
    from rtcc_geo.forecast.io import counts_from_store
    from rtcc_geo.forecast.kde import STKDE
    from rtcc_geo.hotspots import hotspots
    from rtcc_geo.staffing.api import plan
    from rtcc_geo.temporal import build_cube, emerging_hotspots

    _, store, empty = stores
    monkeypatch.setenv("RTCC_AGENCY_PRESETS", str(empty))
    st = ["--store", str(store.root)]
    ctx = context_for(store)
    f = Filters(start=FROM, end="2024-06-30", res=8)  # the map's inclusive last day
    scope = resolve_scope(store, Query(start=FROM, end=TO))
    assert ctx.scope(f).query == scope.query and ctx.agency.origin == "store"

    # 1. hot spots: bins per cell
    cli_hs = cli(capsys, "hotspots", "--res", "8", "--from", FROM, "--to", TO, "--out", str(tmp_path / "h.csv"), *st)
    api = hotspots(scope, "gistar", 8, **D.gistar_kwargs())
    app = layers.gistar(ctx, f).set_index("cell")["value"]
    csv = pd.read_csv(tmp_path / "h.csv", dtype={"cell": str})
    by_cell = dict(zip(csv["cell"], csv["bin"]))
    api_bins = dict(zip(api["cell"].map(lambda c: format(int(c), "x")), api["bin"]))
    assert by_cell == api_bins and cli_hs["hot"] == int((api["bin"] > 0).sum()) > 0
    np.testing.assert_array_equal(app.reindex(api["cell"].to_numpy()).to_numpy(), api["bin"].to_numpy())

    # 2. emerging hot spots (whole weeks): category per cell
    cli_em = cli(capsys, "emerging", "--res", "8", "--from", FROM, "--to", TO, *st)
    t = emerging_hotspots(build_cube(scope, 8, D.EMERGING_STEP)).table
    assert cli_em["window"]["snapped"] and cli_em["window"]["from"].startswith("2024-05-06")
    assert cli_em["categories"] == {k: int(v) for k, v in t["category"].value_counts().items()} | {
        k: 0 for k in cli_em["categories"] if k not in set(t["category"])
    }
    from rtcc_geo.temporal import EHSA_CATEGORIES

    code = layers.emerging(ctx, f).set_index("cell")["value"].reindex(t["cell"].to_numpy())
    assert [EHSA_CATEGORIES[int(c)] for c in code] == t["category"].tolist()

    # 3. forecast (the map's STKDE week after the view): expected per cell
    at = pd.Timestamp("2024-07-01")
    cli(
        capsys,
        "forecast",
        "predict",
        "--model",
        "stkde",
        "--res",
        "8",
        "--at",
        str(at.date()),
        "--horizon",
        "7d",
        "--category",
        "all",
        "--train-from",
        "2023-07-02",
        "--out",
        str(tmp_path / "f.csv"),
        *st,
    )
    fc_cli = pd.read_csv(tmp_path / "f.csv", dtype={"cell": str})
    assert fc_cli["cell"].str.fullmatch("[0-9a-f]{15}").all() and {"lat", "lon"} <= set(fc_cli.columns)
    fc_cli = fc_cli.set_index(cell_int(fc_cli["cell"]))["expected"]
    c = counts_from_store(scope, None, "all", start="2023-07-02", end=str(at.date()), res=8)
    fc_api = STKDE().fit(c, until=at).predict()
    fc_app = layers.forecast(ctx, f).set_index("cell")["value"]
    np.testing.assert_allclose(fc_cli.reindex(fc_api.index).to_numpy(), fc_api.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(fc_app.reindex(fc_api.index).fillna(0).to_numpy(), fc_api.to_numpy(), rtol=1e-9)

    # 4. deployment (the map's evening shift after the view): cells and units
    start, train_from = layers.deploy_shift(ctx, f)
    dep = cli(
        capsys,
        "deploy",
        "--model",
        layers.DEPLOY_MODEL,
        "--units",
        str(layers.DEPLOY_UNITS),
        "--areas-per-unit",
        "2",
        "--radius",
        "1",
        "--res",
        "8",
        "--shift-start",
        str(start),
        "--train-from",
        train_from,
        "--out-csv",
        str(tmp_path / "d.csv"),
        *st,
    )
    p = plan_from_store(
        scope,
        None,
        start,
        8.0,
        layers.DEPLOY_UNITS,
        model=layers.DEPLOY_MODEL,
        res=8,
        train_from=train_from,
        areas_per_unit=2,
        radius=1,
    )
    d = pd.read_csv(tmp_path / "d.csv", dtype={"cell": str, "centre": str})
    assert sorted(zip(cell_int(d["cell"]), d["unit"])) == sorted(zip(p.cells["cell"], p.cells["unit"]))
    app_dep = layers.deployment(ctx, f).dropna(subset=["value"])
    assert sorted(zip(app_dep["cell"], app_dep["value"].astype(int))) == sorted(zip(p.cells["cell"], p.cells["unit"]))
    assert dep["covered"] == pytest.approx(p.covered)

    # 5. staffing (the planner page's defaults): required operators per hour, shifts
    d = staffing_view.defaults(ctx)
    prm = staffing_view.Params.from_widgets(
        d["operators"],
        (8, 10, 12),
        d["service_level"],
        d["target_seconds"],
        d["handle_minutes"],
        part_time=d["part_time"],
        daily=d["daily"],
        start=d["start"],
        end=d["end"],
        data_range=ctx.date_range,
    )
    q = staffing_view._query(ctx, prm)
    sp_cli = cli(
        capsys,
        "staff",
        "--from",
        str(q.start),
        "--to",
        str(q.end),
        "--operators",
        str(prm.operators),
        "--time-limit",
        "20",
        *st,
    )
    sp_api = plan(resolve_scope(store, q, need_area=False), None, operators=prm.operators, time_limit=20.0)
    view = staffing_view.run(ctx, prm)
    assert (
        np.asarray(sp_cli["required"]).tolist() == np.asarray(sp_api.required).tolist() == view.plan.required.tolist()
    )
    assert sp_cli["coverage"] == pytest.approx(sp_api.coverage)


def test_far_dated_incidents_are_counted_and_forecasts_need_train_from(tmp_path, shared_data, capsys):
    """A few 2005 dates in a 2024 export (1966 would be implausible_time: before the 1990 floor):
    ingest warns and counts them; a backtest refuses to
    span the empty decades unless --train-from says where to start."""
    import csv

    src = shared_data / "philadelphia" / "incidents_2024_06.csv"
    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:3000]
    rows = [r for r in rows if r["point_x"]][:2000]
    for r in rows[:3]:  # three typos in the year
        r["dispatch_date_time"] = r["dispatch_date_time"].replace("2024-", "2005-")
        r["dispatch_date"] = r["dispatch_date"].replace("2024-", "2005-")
    f = tmp_path / "incidents_2024_06.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    st = ["--store", str(tmp_path / "s")]
    s = cli(capsys, "ingest", "--format", "philadelphia", str(f), *st)
    assert s["far_dated"] == 3 and s["files"][0]["far_dated"]["before"] == 3
    assert s["files"][0]["far_dated"]["earliest"].startswith("2005") and "2005" in s["warnings"][0]
    bt = (
        "forecast",
        "backtest",
        "--model",
        "naive",
        "--res",
        "8",
        "--from",
        "2024-06-10",
        "--to",
        "2024-06-17",
        "--horizon",
        "7d",
        *st,
    )
    err = cli_error(capsys, *bt)
    assert "--train-from" in err and "3 incidents" in err
    out = cli(capsys, *bt, "--train-from", "2024-05-01")
    assert out


def test_map_district_filter_uses_the_alias_or_fails(tmp_path, shared_data):
    """Vancouver: the data's "Central Business District" is the polygon "Downtown". The map
    analyses Downtown's cells only (it used to analyse the whole city); a district with no
    polygon (Stanley Park) is an error, not the whole city."""
    from rtcc_geo.app import layers
    from rtcc_geo.app.context import Filters, context_for
    from rtcc_geo.hotspots import hotspots
    from rtcc_geo.ingest import ingest_files

    store = open_store(store_dir=tmp_path)
    ingest_files("vancouver", [shared_data / "vancouver" / "crimedata_csv_AllNeighbourhoods_2024.csv"], store)
    ctx = context_for(store)
    f = Filters(start="2024-01-01", end="2024-12-31", res=9, districts=("Central Business District",))
    got = layers.gistar(ctx, f).dropna(subset=["value"])
    sc = ctx.scope(f)
    downtown = sc.boundary()
    assert sc.districts == ("Downtown",) and downtown.equals(
        A.get_agency(store, "vancouver").districts().set_index("district").loc["Downtown", "geometry"]
    )
    ref = hotspots(sc, "gistar", 9, **D.gistar_kwargs())
    assert len(ref) < 150 and set(got["cell"]) == set(ref["cell"])  # Downtown's cells, not the city's thousands
    np.testing.assert_array_equal(got.set_index("cell")["value"].reindex(ref["cell"]).to_numpy(), ref["bin"].to_numpy())
    with pytest.raises(ScopeError, match="Stanley Park"):
        layers.gistar(ctx, Filters(start="2024-01-01", end="2024-12-31", res=9, districts=("Stanley Park",)))


@pytest.mark.parametrize("suffix", [".csv", ".geojson", ".parquet", ".gpkg", ".shp"])
def test_one_writer_textual_h3_ids_and_centres(tmp_path, suffix):
    import geopandas as gpd
    import h3

    from rtcc_geo.export import write_cells

    cells = np.array([h3.api.basic_int.latlng_to_cell(39.95 + i / 100, -75.16, 9) for i in range(4)], dtype=np.int64)
    df = pd.DataFrame({"cell": cells, "centre": cells[::-1], "bin": [3, 0, -1, 2], "z": [3.1, 0.2, -1.7, 2.2]})
    p = write_cells(df, tmp_path / f"t{suffix}")
    back = (
        pd.read_csv(p, dtype={"cell": str, "centre": str})
        if suffix == ".csv"
        else gpd.read_parquet(p)
        if suffix == ".parquet"
        else gpd.read_file(p)
    )
    want = [format(int(c), "x") for c in cells]
    assert back["cell"].tolist() == want and back["centre"].tolist() == want[::-1]  # text, never int64
    lat, lon = zip(*(h3.api.basic_int.cell_to_latlng(int(c)) for c in cells))
    np.testing.assert_allclose(back["lat"], lat, atol=1e-6)
    np.testing.assert_allclose(back["lon"], lon, atol=1e-6)
    assert back["bin"].tolist() == [3, 0, -1, 2]
    if suffix != ".csv":
        assert back.crs.to_epsg() == 4326 and (back.geometry.geom_type == "Polygon").all()
        centres = gpd.GeoSeries(gpd.points_from_xy(back["lon"], back["lat"]), index=back.index, crs=4326)
        assert back.geometry.contains(centres).all()
