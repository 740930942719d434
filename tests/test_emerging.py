"""Space-time cube, Mann–Kendall, space-time Gi* and the 17 EHSA categories.

References: pymannkendall.original_test (MK), esda.G_Local (Gi*, on an
explicit space-time libpysal W), hand-constructed cubes (categories), and the
two store engines (cube persistence).
"""

from __future__ import annotations

import warnings

import h3
import numpy as np
import pandas as pd
import pymannkendall as pmk
import pytest
import scipy.sparse as sp

from rtcc_geo import synth
from rtcc_geo.store import Query
from rtcc_geo.store.embedded import EmbeddedStore
from rtcc_geo.temporal.cube import SpaceTimeCube, build_cube, from_incidents, load_cube, save_cube, step_index
from rtcc_geo.temporal.emerging import CATEGORIES, classify, emerging_hotspots, kring_matrix, space_time_gistar
from rtcc_geo.temporal.mannkendall import mann_kendall, sen_slope

# --- Mann–Kendall -----------------------------------------------------------------


@pytest.mark.parametrize("n,levels", [(10, 3), (25, 5), (60, 8), (104, 20)])
def test_mann_kendall_equals_pymannkendall_with_ties(n, levels):
    rng = np.random.default_rng(n)
    x = rng.integers(0, levels, (40, n)).astype(float)  # heavy ties
    x[:10] += np.arange(n) * 0.05 * levels  # some real trends
    x[10:15] = np.round(rng.normal(size=(5, n)), 1)  # float ties
    r = mann_kendall(x)
    for i in range(len(x)):
        ref = pmk.original_test(x[i])
        assert r.s[i] == ref.s
        assert r.var_s[i] == pytest.approx(ref.var_s, rel=1e-12)
        assert r.z[i] == pytest.approx(ref.z, rel=1e-12, abs=1e-12)
        assert r.p[i] == pytest.approx(ref.p, rel=1e-9, abs=1e-12)
        assert r.tau[i] == pytest.approx(ref.Tau)
    np.testing.assert_allclose(sen_slope(x[:5]), [pmk.original_test(v).slope for v in x[:5]])


def test_mann_kendall_constant_series_and_bad_input():
    r = mann_kendall(np.full((2, 12), 3.0))
    assert (r.z == 0).all() and (r.p == 1).all() and (r.var_s == 0).all()
    with pytest.raises(ValueError, match="NaN"):
        mann_kendall(np.array([1.0, np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError, match="at least 3"):
        mann_kendall(np.array([1.0, 2.0]))


# --- space-time Gi* against esda ---------------------------------------------------


def _disk(k: int, res: int = 9) -> np.ndarray:
    c0 = h3.api.basic_int.latlng_to_cell(39.95, -75.16, res)
    return np.array(sorted(h3.api.basic_int.grid_disk(c0, k)), dtype=np.int64)


def _cube(values: np.ndarray, cells: np.ndarray) -> SpaceTimeCube:
    return SpaceTimeCube(
        cells, pd.date_range("2024-01-01", periods=values.shape[1], freq="7D"), values.astype(float), 9, "week"
    )


@pytest.mark.parametrize("time_lag", [0, 1, 3])
def test_space_time_gistar_equals_esda_on_space_time_weights(time_lag):
    import esda
    import libpysal

    cells = _disk(3)
    n, T = len(cells), 8
    x = np.random.default_rng(time_lag).poisson(3.0, (n, T)).astype(float)
    W = kring_matrix(cells, 1)
    # Independent construction of the space-time weights over bins t*n + i.
    coo = W.tocoo()
    r, c = [], []
    for t in range(T):
        for u in range(max(0, t - time_lag), t + 1):
            r.append(t * n + coo.row)
            c.append(u * n + coo.col)
    Wst = sp.csr_matrix((np.ones(sum(map(len, r))), (np.concatenate(r), np.concatenate(c))), shape=(n * T,) * 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = libpysal.weights.WSP(Wst).to_W(silence_warnings=True)
        ref = esda.G_Local(x.T.ravel(), w, transform="B", star=True, permutations=0)
    ours = space_time_gistar(_cube(x, cells), time_lag=time_lag, fdr=False)
    np.testing.assert_allclose(ours.z, ref.Zs.reshape(T, n).T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.p, 2 * ref.p_norm.reshape(T, n).T, rtol=1e-9, atol=1e-15)


def test_per_step_gistar_equals_esda_per_time_slice():
    import esda

    cells = _disk(3)
    x = np.random.default_rng(5).poisson(2.0, (len(cells), 6)).astype(float)
    ours = space_time_gistar(_cube(x, cells), time_lag=0, standardise="step", fdr=False)
    from rtcc_geo.hotspots.weights import kring_weights

    w = kring_weights(cells, 1).to_libpysal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(x.shape[1]):
            g = esda.G_Local(x[:, t], w, transform="B", star=True, permutations=0)
            np.testing.assert_allclose(ours.z[:, t], g.Zs, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="time_lag=0"):
        space_time_gistar(_cube(x, cells), time_lag=1, standardise="step")


# --- the 17 categories on constructed cubes -------------------------------------------

T = 20  # 90 % of 20 steps = 18 steps


def _pattern(kind: str) -> tuple[str, np.ndarray | None]:
    """Per-step state of the target block ('H' hot, 'C' cold, '.' background)
    and, for trend classes, the block's values per step."""
    up = np.linspace(45, 100, T)
    cold_down = np.linspace(3, 0, T)  # z falling: a cold spot getting colder
    return {
        "new": ("." * 19 + "H", None),
        "consecutive": ("." * 16 + "HHHH", None),
        "intensifying": ("H" * 20, up),
        "persistent": ("H" * 20, None),
        "diminishing": ("H" * 20, up[::-1]),
        "sporadic": ("..H...H....H...H...H", None),
        "oscillating": ("..C...H....C.......H", None),
        "historical": ("H" * 18 + "..", None),
    }[kind], cold_down


def _constructed(category: str, seed: int) -> tuple[SpaceTimeCube, int]:
    """A 61-cell, 20-week cube whose centre cell (with its ring, a 7-cell block)
    follows the pattern of ``category``; background Poisson(10)."""
    cells = _disk(4)
    rng = np.random.default_rng(seed)
    x = rng.poisson(10.0, (len(cells), T)).astype(float)
    centre = h3.api.basic_int.latlng_to_cell(39.95, -75.16, 9)
    block = np.searchsorted(cells, np.array(sorted(h3.api.basic_int.grid_disk(centre, 1)), dtype=np.int64))
    if category == "no pattern detected":
        return _cube(x, cells), int(np.searchsorted(cells, centre))
    word, side = category.split()[0], category.split()[1]
    (states, ramp), cold_down = _pattern(word)
    if side == "cold":
        states = states.translate(str.maketrans("HC", "CH"))
        if ramp is not None:  # mirror: intensifying cold = falling z, diminishing cold = rising z
            ramp = cold_down if word == "intensifying" else cold_down[::-1]
    for t, s in enumerate(states):
        if ramp is not None and s in "HC":
            x[block, t] = ramp[t]
        elif s == "H":
            x[block, t] = 50.0
        elif s == "C":
            x[block, t] = 0.0
    return _cube(x, cells), int(np.searchsorted(cells, centre))


@pytest.mark.parametrize("time_lag", [0, 1])
@pytest.mark.parametrize("category", CATEGORIES)
def test_each_ehsa_category_on_its_constructed_cube(category, time_lag):
    assert len(CATEGORIES) == 17
    cube, centre = _constructed(category, seed=CATEGORIES.index(category))
    res = emerging_hotspots(cube, k=1, time_lag=time_lag, alpha=0.05)
    row = res.table.iloc[centre]
    assert row["category"] == category, (row.to_dict(), res.gi.hot[centre].astype(int), res.gi.cold[centre].astype(int))
    assert res.summary()["cells"].sum() == len(cube.cells)


def test_classify_rules_directly():
    H, C, _ = 1, -1, 0

    def one(states, trend=0):
        s = np.array(states)[None, :]
        return CATEGORIES[classify(s == H, s == C, np.array([trend]))[0]]

    ten = 10
    assert one([_] * 9 + [H]) == "new hot spot"
    assert one([C] + [_] * 8 + [H]) == "oscillating hot spot"  # a cold past is not "new"
    assert one([_] * 8 + [H, H]) == "consecutive hot spot"
    assert one([H] * ten, +1) == "intensifying hot spot"
    assert one([H] * ten, -1) == "diminishing hot spot"
    assert one([H] * ten, 0) == "persistent hot spot"
    assert one([H] * 9 + [_]) == "historical hot spot"  # 90 % exactly, final not hot
    assert one([H] * 9 + [C]) == "oscillating cold spot"  # final step decides
    assert one([H, _, H] + [_] * 6 + [H]) == "sporadic hot spot"
    assert one([H] * 5 + [_] * 5) == "no pattern detected"  # was hot, < 90 %, not now
    assert one([H] * 63 + [_] * 6 + [H]) == "persistent hot spot"  # 63/70 is exactly 90 %
    assert one([H] * 61 + [_] * 8 + [H]) == "sporadic hot spot"  # 62/70 is not
    assert one([C] * ten, -1) == "intensifying cold spot"
    assert one([C] * ten, +1) == "diminishing cold spot"


# --- cubes from the stores ------------------------------------------------------------


@pytest.fixture(scope="module")
def city():
    return synth.generate(synth.SyntheticCity(seed=11, start="2024-01-01", end="2024-07-01", daily_rate=80))


def _fill(store, city):
    store.register_source(synth.SOURCE, synth.TIMEZONE)
    store.write_incidents(city)
    return store


def test_cube_from_store_counts_equals_direct_pandas_and_round_trips(tmp_path, city):
    store = _fill(EmbeddedStore(tmp_path), city)
    q = Query(source=synth.SOURCE, start="2024-01-01", end="2024-07-01")
    cube = build_cube(store, res=9, step="week", q=q, study_area="data")  # cells with incidents, as from_incidents
    assert len(cube.steps) == 26 and cube.steps[0] == pd.Timestamp("2024-01-01")  # a Monday
    direct = from_incidents(city, synth.TIMEZONE, 9, "week", steps=cube.steps)
    np.testing.assert_array_equal(cube.cells, direct.cells)
    np.testing.assert_array_equal(cube.values, direct.values)
    assert cube.values.sum() == len(city)
    save_cube(store, "cube_week_r9", cube)
    back = load_cube(store, "cube_week_r9")
    np.testing.assert_array_equal(back.values, cube.values)
    assert back.steps.equals(cube.steps) and back.step == "week" and back.res == 9
    with pytest.raises(LookupError, match="no space-time cube"):
        load_cube(store, "nope")
    m = build_cube(store, res=8, step="month", q=q)
    assert len(m.steps) == 6 and m.values.sum() == len(city)


@pytest.mark.postgis
def test_cube_in_postgis_equals_embedded(pg_url, tmp_path, city):
    from rtcc_geo.store.postgis import PostGISStore

    pg = _fill(PostGISStore(pg_url), city)
    emb = _fill(EmbeddedStore(tmp_path), city)
    q = Query(source=synth.SOURCE, start="2024-01-01", end="2024-07-01")
    a = build_cube(pg, 9, "week", q)
    b = build_cube(emb, 9, "week", q)
    np.testing.assert_array_equal(a.cells, b.cells)
    np.testing.assert_array_equal(a.values, b.values)
    save_cube(pg, "cube_pg", a)
    back = load_cube(pg, "cube_pg")
    np.testing.assert_array_equal(back.values, a.values)
    assert back.steps.equals(a.steps)
    ra = emerging_hotspots(back)
    rb = emerging_hotspots(b)
    pd.testing.assert_frame_equal(ra.table, rb.table)


def test_step_index_is_half_open_and_floored():
    idx = step_index("2024-01-03", "2024-01-29", "week")
    assert list(idx) == list(pd.date_range("2024-01-01", periods=4, freq="7D"))
    assert len(step_index("2024-01-01", "2024-04-01", "month")) == 3
    with pytest.raises(ValueError, match="unknown step"):
        step_index("2024-01-01", "2024-02-01", "fortnight")
