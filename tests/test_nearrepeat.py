"""Near-repeat Knox test: counts against a brute-force pair loop, half-open
bands at their edges, seeded Monte-Carlo stability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.temporal.nearrepeat import knox, near_repeat, project

SPACE = (0, 100, 200, 400)
TIME = (0, 7, 14, 28)


def _brute(xy, t, se, te):
    """Every pair, one by one, into half-open bands (last band open-ended)."""
    se, te = list(se) + [np.inf], list(te) + [np.inf]
    out = np.zeros((len(se) - 1, len(te) - 1), dtype=np.int64)
    n = len(t)
    for i in range(n):
        for j in range(i + 1, n):
            d = float(np.hypot(*(xy[i] - xy[j])))
            dt = abs(float(t[i] - t[j]))
            s = next(k for k in range(len(se) - 1) if se[k] <= d < se[k + 1])
            u = next(k for k in range(len(te) - 1) if te[k] <= dt < te[k + 1])
            out[s, u] += 1
    return out


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(42)
    n = 200
    # Clustered points on a 10 m lattice (so many distances hit band edges exactly)
    # and integer days (so many time differences hit 7, 14, 28 exactly).
    xy = np.round(rng.normal(0, 250, (n, 2)) / 10) * 10
    xy[:40] = xy[0] + np.array([[0, 0], [100, 0], [0, 200], [0, 400]])[rng.integers(0, 4, 40)]
    t = rng.integers(0, 120, n).astype(float)
    t[:40] = t[0] + rng.choice([0, 7, 14, 28], 40)
    return xy, t


def test_knox_counts_equal_brute_force_including_band_edges(events):
    xy, t = events
    r = knox(xy, t, SPACE, TIME, permutations=19, seed=1)
    np.testing.assert_array_equal(r.observed, _brute(xy, t, SPACE, TIME))
    assert r.observed.sum() == len(t) * (len(t) - 1) // 2
    # Exactly-on-the-edge pairs exist, so half-openness was really exercised.
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert np.isin(d[np.triu_indices(len(t), 1)], [100.0, 200.0, 400.0]).sum() > 10
    # Labels state the intervals.
    assert r.space_labels == ["[0, 100) m", "[100, 200) m", "[200, 400) m", ">= 400 m"]
    assert r.time_labels == ["[0, 7) d", "[7, 14) d", "[14, 28) d", ">= 28 d"]


def test_knox_monte_carlo_expected_equals_brute_force_on_the_same_permutations(events):
    xy, t = events
    r = knox(xy, t, SPACE, TIME, permutations=10, seed=7)
    rng = np.random.default_rng(7)
    sims = np.array([_brute(xy, t[rng.permutation(len(t))], SPACE, TIME) for _ in range(10)])
    np.testing.assert_allclose(r.expected, sims.mean(axis=0))
    np.testing.assert_array_equal(r.p_value, (1 + (sims >= r.observed).sum(axis=0)) / 11)
    np.testing.assert_array_equal(r.p_low, (1 + (sims <= r.observed).sum(axis=0)) / 11)
    np.testing.assert_allclose(r.ratio, r.observed / sims.mean(axis=0))


def test_knox_seeded_p_values_are_stable_and_detect_a_planted_near_repeat():
    rng = np.random.default_rng(0)
    n = 1500
    xy = rng.uniform(0, 5000, (n, 2))
    t = rng.uniform(0, 365, n)
    # Plant repeats: 150 events each followed within 3 days by one within 60 m.
    k = 150
    xy = np.vstack([xy, xy[:k] + rng.normal(0, 30, (k, 2))])
    t = np.concatenate([t, t[:k] + rng.uniform(0, 3, k)])
    a = knox(xy, t, SPACE, TIME, permutations=199, seed=123)
    b = knox(xy, t, SPACE, TIME, permutations=199, seed=123)
    np.testing.assert_array_equal(a.p_value, b.p_value)
    np.testing.assert_array_equal(a.expected, b.expected)
    c = knox(xy, t, SPACE, TIME, permutations=199, seed=999)
    # A different seed moves p-values only by Monte-Carlo error.
    assert np.abs(a.p_value - c.p_value).max() < 0.15
    assert a.p_value[0, 0] == pytest.approx(1 / 200) and a.ratio[0, 0] > 2
    # Far bands show no interaction.
    assert 0.8 < a.ratio[2, 2] < 1.25


def test_near_repeat_from_incidents_date_resolution_and_projection():
    # Two incidents 50 m apart on consecutive local dates but 2 h apart in time.
    lat0, lon0 = 39.95, -75.16
    dlat = 50 / 111_320
    df = pd.DataFrame(
        {
            "lon": [lon0, lon0, lon0 + 0.05],
            "lat": [lat0, lat0 + dlat, lat0],
            "occurred_from": pd.to_datetime(["2024-06-01 03:00", "2024-06-01 05:00", "2024-09-01 12:00"], utc=True),
            "time_known": [True, True, False],
        }
    )
    from pyproj import Geod

    xy = project(df["lon"], df["lat"])
    geodesic = Geod(ellps="WGS84").inv(lon0, lat0, lon0, lat0 + dlat)[2]
    assert np.hypot(*(xy[0] - xy[1])) == pytest.approx(geodesic, abs=0.01)
    assert np.hypot(*(xy[0] - xy[2])) == pytest.approx(
        Geod(ellps="WGS84").inv(lon0, lat0, lon0 + 0.05, lat0)[2], rel=1e-4
    )
    r = near_repeat(df, "America/New_York", permutations=9)
    # 03:00Z and 05:00Z on 1 June are 31 May 23:00 and 1 June 01:00 in New York: 1 calendar day apart.
    assert r.observed[0, 0] == 1 and r.n_events == 3
    with pytest.raises(ValueError, match="at least 3"):
        near_repeat(df, "America/New_York", permutations=9, time_resolution="exact")


def test_knox_rejects_bad_bands_and_inputs():
    xy = np.zeros((5, 2))
    t = np.arange(5.0)
    with pytest.raises(ValueError, match="start at 0 and increase"):
        knox(xy, t, (100, 200), TIME)
    with pytest.raises(ValueError, match="start at 0 and increase"):
        knox(xy, t, SPACE, (0, 14, 7))
    with pytest.raises(ValueError, match="finite"):
        knox(np.array([[0, 0], [np.nan, 1], [2, 2]]), np.arange(3.0))
    with pytest.raises(ValueError, match="permutations"):
        knox(xy, t, permutations=0)
