"""Fairness audit: the tract join against a direct geopandas overlay, the audit's arithmetic,
the dosage cap of a plan, and ``rtcc-geo audit-bias`` on real plans."""

from __future__ import annotations

import json

import h3
import numpy as np
import pandas as pd
import pytest

from rtcc_geo.fairness import (
    audit,
    cell_population,
    jaccard,
    load_tracts,
    plan_minutes,
    tract_join,
)

H = h3.api.basic_int


@pytest.fixture(scope="module")
def tracts(shared_data):
    return load_tracts("philadelphia", shared_data / "philadelphia" / "census_tracts_pop.geojson")


def test_tract_join_matches_a_geopandas_overlay(tracts):
    import geopandas as gpd

    from rtcc_geo.grid import cells_to_geodataframe

    # every res-10 cell within ~2 km of City Hall (tract edges cut many of them)
    cells = np.array(sorted(H.grid_disk(H.latlng_to_cell(39.9526, -75.1652, 10), 12)), dtype=np.int64)
    j = tract_join(cells, tracts)
    crs = tracts.estimate_utm_crs()
    hexes = cells_to_geodataframe(cells).to_crs(crs)
    hexes["hex_area"] = hexes.area
    t = tracts.to_crs(crs)
    t["tract_area"] = t.area
    ov = gpd.overlay(hexes, t, how="intersection")
    ov["area_m2"] = ov.area
    ov = ov[ov["area_m2"] > 0]
    ref = ov.set_index(["cell", "tract"])
    got = j.set_index(["cell", "tract"])
    assert set(got.index) == set(ref.index)
    ref = ref.reindex(got.index)
    assert np.allclose(got["area_m2"], ref["area_m2"], rtol=1e-6)
    assert np.allclose(got["cell_share"], ref["area_m2"] / ref["hex_area"], rtol=1e-6)
    assert np.allclose(got["tract_share"], ref["area_m2"] / ref["tract_area"], rtol=1e-6)
    # a cell wholly inside the city is fully shared out over tracts
    assert got.groupby("cell")["cell_share"].sum().between(0.999, 1.001).mean() > 0.95
    # areal-weighted population: by hand from the overlay
    pop = cell_population(cells, tracts)
    ref_pop = (ov["population"] * ov["area_m2"] / ov["tract_area"]).groupby(ov["cell"]).sum()
    assert np.allclose(pop.reindex(ref_pop.index), ref_pop, rtol=1e-6)


def test_whole_city_population_adds_up(tracts):
    from rtcc_geo.forecast.io import boundary_cells

    cells = boundary_cells("philadelphia", 9)
    pop = cell_population(cells, tracts)
    # res-9 cells by centre in the boundary cover the city up to its ragged edge
    assert pop.sum() == pytest.approx(tracts["population"].sum(), rel=0.03)


def test_audit_arithmetic_by_hand(tracts):
    # two tracts' worth of cells: a busy one and a quiet one
    t = tracts[tracts["population"] > 2000].iloc[:3]
    cells = []
    for geom in t.geometry:
        p = geom.representative_point()
        cells.append(H.latlng_to_cell(p.y, p.x, 10))
    minutes = pd.DataFrame(
        {
            "plan": ["d1", "d1", "d1", "d2"],
            "cell": [cells[0], cells[1], cells[2], cells[0]],
            "minutes": [600.0, 60.0, 60.0, 600.0],
        }
    )
    a = audit(minutes, tracts, multiple=3.0, min_residents=1.0)
    bt = a.by_tract.set_index("tract")
    j = tract_join(np.array(cells), tracts)
    want0 = j[j["cell"] == cells[0]].set_index("tract")["cell_share"] * 1200.0
    for tr, m in want0.items():
        assert bt.at[tr, "minutes"] == pytest.approx(
            m + (j[(j["cell"] != cells[0]) & (j["tract"] == tr)]["cell_share"] * 60).sum()
        )
    assert bt["minutes"].sum() == pytest.approx(1320.0)
    per = bt["minutes"] / np.maximum(bt["population"], 1.0) * 1000
    assert np.allclose(bt["per_1000"], per)
    med = float(per[bt["minutes"] > 0].median())
    assert a.summary["median_per_1000"] == pytest.approx(med)
    assert set(bt.index[bt["over_limit"]]) == set(bt.index[per > 3 * med])
    assert len(a.warnings) == int((per > 3 * med).sum())
    assert a.concentration["jaccard"].tolist() == [pytest.approx(1 / 3)]
    assert jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3) and jaccard(set(), set()) == 1.0
    with pytest.raises(ValueError, match="empty"):
        audit(minutes.assign(minutes=0.0), tracts)


def test_plan_minutes_split_areas_evenly():
    cells = pd.DataFrame({"centre": [1, 1, 1, 2], "cell": [1, 5, 6, 2]})
    sched = pd.DataFrame({"area": [1, 1, 2], "minutes": [12, 15, 14]})
    m = plan_minutes(cells, sched).set_index("cell")["minutes"]
    assert m.to_dict() == {1: pytest.approx(9.0), 5: pytest.approx(9.0), 6: pytest.approx(9.0), 2: pytest.approx(14.0)}


def test_week_plans_with_explanations_and_a_dose_cap(phl_apr_jul_store, tracts):
    from rtcc_geo.deploy import plan_week
    from rtcc_geo.deploy.api import _fit, _plan

    plans = plan_week(
        phl_apr_jul_store, "philadelphia", "2024-07-22", units=8, days=2, spacing_m=500.0, max_consecutive_days=1
    )
    assert len(plans) == 2
    for p in plans:
        # reasons quote the additive model's terms, which sum to the cell's forecast
        cols = [k for k in p.cells.columns if k.startswith("contrib_")]
        assert len(cols) == 5 and p.cells["reason"].str.contains("why: ").all()
        assert np.allclose(p.cells[cols].sum(axis=1), p.cells["forecast"], rtol=1e-9)
    # the consecutive-day cap (1 day here): day 2 rests every cell dosed on day 1
    assert not set(plans[0].cells["cell"]) & set(plans[1].cells["cell"])
    # the dosage cap: a tight limit flags tracts in the free plan; the capped plan has none
    t0, t1 = pd.Timestamp("2024-07-22 16:00"), pd.Timestamp("2024-07-23 00:00")
    c, m = _fit(phl_apr_jul_store, "philadelphia", "all_but_enforcement", "additive", 10, t0, t1, 1)
    free = _plan(c, m, t0, t1, 8, spacing_m=500.0)
    capped = _plan(c, m, t0, t1, 8, spacing_m=500.0, tracts=tracts, max_dose_multiple=2.0)
    a0 = audit(plan_minutes(free.cells, free.schedule).assign(plan="a"), tracts, multiple=2.0)
    a1 = audit(plan_minutes(capped.cells, capped.schedule).assign(plan="a"), tracts, multiple=2.0)
    assert a0.summary["over_limit"] > 0 and a1.summary["over_limit"] < a0.summary["over_limit"]
    assert capped.params["dose_capped_cells"] > 0 and capped.status == "optimal"


def test_audit_bias_cli(phl_apr_jul_store, tmp_path, capsys):
    from rtcc_geo.cli.main import main

    store = str(phl_apr_jul_store.root)
    paths = []
    for day in ("2024-07-20", "2024-07-21"):
        out = tmp_path / f"plan_{day}.csv"
        assert (
            main(
                [
                    "deploy",
                    "--store",
                    store,
                    "--shift-start",
                    f"{day} 16:00",
                    "--units",
                    "4",
                    "--spacing-m",
                    "500",
                    "--model",
                    "stkde",
                    "--out-csv",
                    str(out),
                ]
            )
            == 0
        )
        paths.append(str(out))
    capsys.readouterr()
    rc = main(
        [
            "audit-bias",
            "--store",
            store,
            "--plan",
            paths[0],
            "--plan",
            paths[1],
            "--multiple",
            "2",
            "--out-csv",
            str(tmp_path / "tracts.csv"),
            "--json",
        ]
    )
    assert rc == 0
    js = json.loads(capsys.readouterr().out)
    sched = pd.concat([pd.read_csv(p.replace(".csv", "_schedule.csv")) for p in paths])
    assert js["minutes"] == pytest.approx(sched["minutes"].sum(), rel=1e-6)
    assert js["plans"] == 2 and len(js["concentration"]) == 1 and 0 <= js["concentration"][0]["jaccard"] <= 1
    assert {r["where"] for r in js["reporting"]} == {"city", "patrolled cells"}
    bt = pd.read_csv(tmp_path / "tracts.csv")
    # nothing lost: minutes in tracts plus minutes outside every tract = the schedules' minutes
    assert bt["minutes"].sum() + js["minutes_outside_tracts"] == pytest.approx(js["minutes"], rel=1e-9, abs=1e-6)
    assert 0 <= js["minutes_outside_tracts"] < 0.05 * js["minutes"]
    assert sum(d["minutes"] for d in js["by_district"]) == pytest.approx(bt["minutes"].sum(), rel=1e-9)
    assert len(js["warnings"]) == int(bt["over_limit"].sum())
    assert main(["audit-bias", "--store", store]) == 2
    assert "either --plan" in capsys.readouterr().err
