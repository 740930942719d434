"""Deployment plans: exact area choice on constructed cases, Koper dosage, a real 8-unit shift."""

from __future__ import annotations

import itertools

import h3
import numpy as np
import pandas as pd
import pytest

from rtcc_geo.deploy.plan import capped_cells, plan_shift
from rtcc_geo.deploy.schedule import dosage_schedule, validate_schedule
from rtcc_geo.deploy.select import _haversine_m, select_areas

H = h3.api.basic_int
C0 = H.latlng_to_cell(39.95, -75.16, 10)


def disk(r: int) -> np.ndarray:
    return np.array(sorted(H.grid_disk(C0, r)), dtype=np.int64)


def test_greedy_trap_is_solved_exactly():
    """A=10 with two non-adjacent neighbours B=C=9: greedy takes A (10 + tiny), the optimum is B + C = 18."""
    ring = H.grid_ring(C0, 1)
    b = ring[0]
    c = next(x for x in ring if H.grid_distance(b, x) == 2)
    cells = disk(3)
    f = pd.Series(0.01, index=cells)
    f[C0], f[b], f[c] = 10.0, 9.0, 9.0
    sel = select_areas(f, 2, radius=0, spacing_cells=2)
    assert set(sel.centres.tolist()) == {b, c}
    assert sel.objective == pytest.approx(18.0)
    assert sel.status == "optimal"


def _brute(f: pd.Series, n: int, radius: int, spacing: int, cells) -> float:
    vals = {c: sum(f.get(x, 0.0) for x in H.grid_disk(int(c), radius) if x in f.index) for c in cells}
    best = -1.0
    for combo in itertools.combinations(cells, n):
        if all(H.grid_distance(int(a), int(b)) >= spacing for a, b in itertools.combinations(combo, 2)):
            best = max(best, sum(vals[c] for c in combo))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_single_cells_match_brute_force(seed):
    cells = disk(3)
    rng = np.random.default_rng(seed)
    f = pd.Series(rng.gamma(0.7, 1.0, len(cells)), index=cells)
    sel = select_areas(f, 3, radius=0, spacing_cells=2)
    assert sel.objective == pytest.approx(_brute(f, 3, 0, 2, cells))
    for a, b in itertools.combinations(sel.centres.tolist(), 2):
        assert H.grid_distance(a, b) >= 2


@pytest.mark.parametrize("seed", range(3))
def test_areas_with_rings_match_brute_force(seed):
    cells = disk(5)
    rng = np.random.default_rng(10 + seed)
    f = pd.Series(rng.gamma(0.5, 1.0, len(cells)), index=cells)
    sel = select_areas(f, 2, radius=1, spacing_cells=3)
    assert sel.objective == pytest.approx(_brute(f, 2, 1, 3, cells))
    # areas are disjoint and hold exactly their rings
    a, b = sel.centres.tolist()
    assert not set(sel.areas[a].tolist()) & set(sel.areas[b].tolist())
    assert sel.values.sum() == pytest.approx(sum(f[list(sel.areas[x])].sum() for x in (a, b)))


def test_spacing_in_metres_and_exclusions():
    cells = disk(8)
    rng = np.random.default_rng(3)
    f = pd.Series(rng.gamma(0.5, 1.0, len(cells)), index=cells)
    top = int(f.idxmax())
    sel = select_areas(f, 4, radius=0, spacing_m=400.0, excluded=[top])
    assert top not in sel.centres
    ll = np.array([H.cell_to_latlng(int(c)) for c in sel.centres])
    for i, j in itertools.combinations(range(len(ll)), 2):
        assert _haversine_m(ll[i, 0], ll[i, 1], ll[j, 0], ll[j, 1]) >= 400.0
    with pytest.raises(ValueError, match="overlap"):
        select_areas(f, 2, radius=1, spacing_cells=2)
    with pytest.raises(ValueError, match="cannot be spaced|only"):
        select_areas(f.iloc[:3], 3, radius=0, spacing_cells=30)


def test_consecutive_day_cap():
    hist = pd.DataFrame(
        {
            "date": ["2024-07-17", "2024-07-18", "2024-07-19", "2024-07-18", "2024-07-19", "2024-07-15"],
            "cell": [1, 1, 1, 2, 2, 3],
        }
    )
    assert capped_cells(hist, "2024-07-20 16:00", 3) == {1}
    assert capped_cells(hist, "2024-07-20", 2) == {1, 2}
    assert capped_cells(hist, "2024-07-20", None) == set()
    # a capped cell is not planned even if it is the hottest
    cells = disk(4)
    f = pd.Series(0.1, index=cells)
    f[C0] = 50.0
    hist = pd.DataFrame({"date": ["2024-07-17", "2024-07-18", "2024-07-19"], "cell": [C0] * 3})
    p = plan_shift(f, 2, "2024-07-20 16:00", "2024-07-21 00:00", radius=0, history=hist)
    assert C0 not in p.cells["cell"].tolist()
    p2 = plan_shift(f, 2, "2024-07-20 16:00", "2024-07-21 00:00", radius=0, history=hist, max_consecutive_days=None)
    assert C0 in p2.cells["cell"].tolist()


def test_koper_schedule_rules_and_seed():
    units = {1: [11], 2: [21, 22], 3: [31, 32, 33]}
    t0, t1 = pd.Timestamp("2024-07-20 16:00"), pd.Timestamp("2024-07-21 00:00")
    s = dosage_schedule(units, t0, t1, seed=7)
    assert validate_schedule(s, units, t0, t1) == []
    assert s["minutes"].between(12, 16).all()
    # every area about every 2 h over 8 h: 3-5 visits each
    per_area = s.groupby("area").size()
    assert per_area.between(3, 5).all() and set(per_area.index) == {11, 21, 22, 31, 32, 33}
    # no fixed pattern: gaps and lengths vary; seeded = reproducible, other seed = other plan
    gaps = s[s["area"] == 11]["start"].diff().dropna().unique()
    assert len(gaps) > 1 and s["minutes"].nunique() > 1
    pd.testing.assert_frame_equal(s, dosage_schedule(units, t0, t1, seed=7))
    assert not s["start"].equals(dosage_schedule(units, t0, t1, seed=8)["start"])
    # the validator catches broken schedules
    bad = s.copy()
    bad.loc[0, "minutes"] = 30
    bad.loc[0, "end"] = bad.loc[0, "start"] + pd.Timedelta(minutes=30)
    assert any("length" in e for e in validate_schedule(bad, units, t0, t1))


def test_eight_unit_plan_on_a_philadelphia_shift(phl_apr_jul_store):
    from rtcc_geo.deploy.areas import hotspot_bins
    from rtcc_geo.forecast.io import counts_from_store
    from rtcc_geo.forecast.kde import STKDE

    start, end = pd.Timestamp("2024-07-20 16:00"), pd.Timestamp("2024-07-21 00:00")
    c = counts_from_store(phl_apr_jul_store, "philadelphia", "all_but_enforcement", end="2024-08-01", res=10)
    fc = STKDE().fit(c, until=start).predict(None, start, end)
    r7 = pd.Series(c.window_counts(start - pd.Timedelta(days=7), start), index=c.cells)
    r28 = pd.Series(c.window_counts(start - pd.Timedelta(days=28), start), index=c.cells)
    bins = hotspot_bins(c.cells, r28.to_numpy())
    p = plan_shift(
        fc, 8, start, end, radius=1, spacing_m=500.0, recent_7d=r7, recent_28d=r28, hotspot_bins=bins, seed=3
    )
    assert p.status == "optimal" and len(p.units) == 8
    centres = sorted(p.units[u][0] for u in p.units)
    ll = np.array([H.cell_to_latlng(int(x)) for x in centres])
    for i, j in itertools.combinations(range(8), 2):
        assert _haversine_m(ll[i, 0], ll[i, 1], ll[j, 0], ll[j, 1]) >= 500.0
    assert validate_schedule(p.schedule, p.units, start, end) == []
    assert p.cells["reason"].str.contains("forecast").all()
    assert p.cells["reason"].str.contains("incident").all()
    assert p.cells["reason"].str.contains("Gi\\*").all()
    assert p.cells["hotspot_bin"].notna().all()
    assert p.covered == pytest.approx(fc[p.cells["cell"]].sum())
    assert 0 < p.covered_share < 1 and p.covered_share == pytest.approx(p.covered / fc.sum())
    # exact: no single-centre swap improves coverage (local optimality of the MILP's answer)
    assert "Unit 8" in p.summary()


def test_several_areas_per_unit_and_excluded_places(tmp_path):
    from shapely.geometry import Point, mapping

    from rtcc_geo.deploy.areas import place_cells

    cells = disk(12)
    rng = np.random.default_rng(4)
    f = pd.Series(rng.gamma(0.4, 1.0, len(cells)), index=cells)
    hottest = int(f.idxmax())
    lat, lng = H.cell_to_latlng(hottest)
    gj = tmp_path / "school.geojson"
    import json

    gj.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [{"type": "Feature", "properties": {}, "geometry": mapping(Point(lng, lat))}],
            }
        )
    )
    excl = place_cells(gj, 10)
    assert hottest in excl.tolist()
    t0, t1 = pd.Timestamp("2024-07-20 08:00"), pd.Timestamp("2024-07-20 16:00")
    p = plan_shift(f, 3, t0, t1, areas_per_unit=2, radius=1, excluded=excl, seed=1)
    assert sorted(len(v) for v in p.units.values()) == [2, 2, 2]
    assert hottest not in p.cells["cell"].tolist()
    assert validate_schedule(p.schedule, p.units, t0, t1) == []
    # the MILP's six areas are the exact optimum of the disjoint-area problem
    sel = select_areas(f, 6, radius=1, excluded=excl)
    assert p.covered == pytest.approx(sel.objective)
