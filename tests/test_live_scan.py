"""Prospective space-time permutation scan: brute-force statistic, injected cluster, null calibration."""

import h3
import numpy as np
import pandas as pd
import pytest

from rtcc_geo.live.scan import space_time_scan

CENTRE = h3.str_to_int(h3.latlng_to_cell(39.95, -75.16, 9))
STUDY = np.array(sorted(h3.api.basic_int.grid_disk(CENTRE, 8)), dtype=np.int64)
END = pd.Timestamp("2024-04-25")


def background(seed, n_days=56, per_day=15):
    rng = np.random.default_rng(seed)
    n = n_days * per_day
    cells = rng.choice(STUDY, n)
    days = END - pd.to_timedelta(rng.integers(0, n_days, n), unit="D")
    return cells, pd.Series(days)


def brute_force_max_llr(cells, days, study, max_k, max_days, period):
    """Every cylinder by explicit loops, straight from Kulldorff et al. (2005)."""
    d = ((END - pd.to_datetime(days)).dt.days).to_numpy()
    keep = d < period
    cells, d = cells[keep], d[keep]
    C = len(cells)
    uc = np.unique(np.concatenate([np.asarray(study, dtype=np.int64), cells]))
    best = 0.0
    for c in uc:
        for k in range(max_k + 1):
            base = set(h3.api.basic_int.grid_disk(int(c), k)) & set(uc.tolist())
            in_base = np.isin(cells, list(base))
            for t in range(1, max_days + 1):
                in_time = d < t
                obs = float((in_base & in_time).sum())
                mu = float(in_base.sum()) * float(in_time.sum()) / C
                if obs > mu > 0:
                    llr = obs * np.log(obs / mu) + ((C - obs) * np.log((C - obs) / (C - mu)) if C > obs else 0.0)
                    best = max(best, llr)
    return best


def test_statistic_equals_brute_force_on_a_small_case():
    cells, days = background(3, n_days=20, per_day=6)
    got = space_time_scan(
        cells, days, study_cells=STUDY[:60], end_day=END, period_days=20, max_days=4, max_k=1, replicates=9, seed=0
    )
    # The scan's study area is STUDY[:60] plus the cells holding incidents; mirror it.
    ref = brute_force_max_llr(cells, days, STUDY[:60], max_k=1, max_days=4, period=20)
    assert got.clusters and got.clusters[0].llr == pytest.approx(ref, rel=1e-10)


def test_injected_cluster_is_found_with_a_long_recurrence_interval():
    cells, days = background(1)
    rng = np.random.default_rng(9)
    target = STUDY[200]
    ring = np.array(list(h3.api.basic_int.grid_disk(int(target), 1)), dtype=np.int64)
    hot_c = rng.choice(ring, 22)
    hot_d = pd.Series(END - pd.to_timedelta(rng.integers(0, 3, 22), unit="D"))
    res = space_time_scan(
        np.concatenate([cells, hot_c]),
        pd.concat([days, hot_d], ignore_index=True),
        study_cells=STUDY,
        end_day=END,
        replicates=999,
        seed=0,
    )
    top = res.clusters[0]
    assert np.isin(top.cells, ring).mean() >= 0.5 and top.days <= 4
    assert top.observed > 3 * top.expected
    assert top.p == pytest.approx(0.001) and top.recurrence_days >= 100
    assert res.alerts(100)


def test_no_alert_without_a_cluster_and_p_values_are_calibrated():
    """Null streams: no run passes a 100-day recurrence threshold, and the
    p-values of the most likely cluster spread over (0, 1] as a null should."""
    ps = []
    for seed in range(12):
        cells, days = background(100 + seed)
        res = space_time_scan(cells, days, study_cells=STUDY, end_day=END, replicates=199, seed=seed)
        assert not res.alerts(100), res.clusters[0]
        ps.append(res.clusters[0].p)
    assert 0.25 < np.mean(ps) < 0.75
