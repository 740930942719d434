"""The synthetic city is seeded and has the structure the demo promises."""

import numpy as np
import pandas as pd
import pytest

from rtcc_geo import synth
from rtcc_geo.schema import CATEGORIES, INCIDENT_COLUMNS


@pytest.fixture(scope="module")
def city():
    return synth.generate(synth.SyntheticCity(seed=11, start="2024-01-01", end="2024-07-01", daily_rate=150))


def test_seeded_and_canonical(city):
    again = synth.generate(synth.SyntheticCity(seed=11, start="2024-01-01", end="2024-07-01", daily_rate=150))
    pd.testing.assert_frame_equal(city, again)
    assert tuple(city.columns) == INCIDENT_COLUMNS
    assert set(city.category) <= set(CATEGORIES)
    assert city.id.is_unique and city.district.notna().all()
    other = synth.generate(synth.SyntheticCity(seed=12, start="2024-01-01", end="2024-07-01", daily_rate=150))
    assert not np.array_equal(city.lon.to_numpy()[:100], other.lon.to_numpy()[:100])


def test_concentration_rhythm_and_time_quality(city):
    counts = city.h3_r9.value_counts().to_numpy()
    top = np.sort(counts)[::-1][: max(1, len(counts) // 20)].sum() / counts.sum()
    assert top > 0.25  # the top 5 % of cells hold well over 5 % of incidents: real hot spots
    local = city[city.time_known].occurred_from.dt.tz_convert(synth.TIMEZONE)
    by_hour = local.dt.hour.value_counts()
    assert by_hour.loc[17] > 2.5 * by_hour.loc[5]  # afternoon peak, early-morning trough
    assert 0.01 < 1 - city.time_known.mean() < 0.06
    win = city.occurred_to.notna()
    assert win.any() and (city.category[win] == "burglary").all()
    assert (city.occurred_to[win] > city.occurred_from[win]).all()


def test_near_repeat_contagion_present(city):
    """Burglaries have more pairs within 100 m and 3 days than a time-shuffled copy (Knox ratio > 1.15)."""
    from scipy.spatial import cKDTree

    b = city[city.category == "burglary"]
    xy = np.column_stack([b.lon * 85000, b.lat * 111000])
    t = (b.occurred_from - b.occurred_from.min()).dt.total_seconds().to_numpy() / 86400
    pairs = cKDTree(xy).query_pairs(100, output_type="ndarray")

    def close(tt):
        return int((np.abs(tt[pairs[:, 0]] - tt[pairs[:, 1]]) < 3).sum())

    rng = np.random.default_rng(0)
    shuffled = np.mean([close(rng.permutation(t)) for _ in range(20)])
    assert close(t) > 1.15 * shuffled
