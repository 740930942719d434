"""Workload curve: weights, complete weeks, seasonal adjustment, band, downtime - hand-worked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from rtcc_geo.staffing.downtime import downtime, load_tasks
from rtcc_geo.staffing.workload import complete_weeks, load_weights, workload_from_counts


def _counts(rows):
    return pd.DataFrame(rows, columns=["hour_of_week", "week", "category", "n"]).assign(
        week=lambda d: pd.to_datetime(d["week"])
    )


def test_complete_weeks():
    w = complete_weeks("2024-01-01", "2025-01-01")
    assert len(w) == 52 and w[0] == pd.Timestamp("2024-01-01") and w[-1] == pd.Timestamp("2024-12-23")
    assert list(complete_weeks("2024-01-02", "2024-01-22")) == [pd.Timestamp("2024-01-08"), pd.Timestamp("2024-01-15")]
    assert list(complete_weeks("2024-01-01 05:00", "2024-01-22 00:00")) == [
        pd.Timestamp("2024-01-08"),
        pd.Timestamp("2024-01-15"),
    ]
    with pytest.raises(ValueError, match="complete week"):
        complete_weeks("2024-01-02", "2024-01-08")


def test_hand_worked_curve():
    # three complete weeks in one month (no seasonal effect), two categories
    rows = [
        (0, "2024-01-01", "violent", 2),
        (0, "2024-01-08", "violent", 4),
        (0, "2024-01-15", "violent", 0),
        (0, "2024-01-01", "theft", 10),  # weight 0.5 below
        (5, "2024-01-08", "robbery", 3),
        (7, "2024-01-22", "violent", 99),  # outside the window: ignored
        (9, "2024-01-15", "drugs", 50),  # weight 0: ignored
    ]
    wts = {"violent": 1, "robbery": 1, "theft": 0.5, "drugs": 0}
    c = workload_from_counts(_counts(rows), wts, start="2024-01-01", end="2024-01-22", band=0.8, seasonal=False)
    x0 = np.array([2 + 5, 4, 0])
    x5 = np.array([0, 3, 0])
    assert c.n_weeks == 3
    assert c.expected[0] == pytest.approx(x0.mean()) and c.expected[5] == pytest.approx(1.0)
    assert c.sd[0] == pytest.approx(x0.std(ddof=1)) and c.sd[5] == pytest.approx(x5.std(ddof=1))
    z = norm.ppf(0.9)
    assert c.upper[0] == pytest.approx(x0.mean() + z * x0.std(ddof=1))
    assert c.lower[0] == pytest.approx(max(0, x0.mean() - z * x0.std(ddof=1)))
    assert c.expected[7] == 0 and c.expected[9] == 0
    assert c.weekly_total == pytest.approx((7 + 4 + 0 + 3) / 3)


def test_seasonal_adjustment_removes_a_known_season():
    # 52 weeks of 2024; the base profile is scaled by a known factor per month
    rng = np.random.default_rng(3)
    base = rng.uniform(0, 4, 168)
    month_factor = {m: 0.7 + 0.05 * m for m in range(1, 13)}
    weeks = complete_weeks("2024-01-01", "2025-01-01")
    rows = []
    for wk in weeks:
        f = month_factor[(wk + pd.Timedelta(days=3)).month]
        for h in range(168):
            rows.append((h, wk, "violent", base[h] * f))
    c = workload_from_counts(_counts(rows), {"violent": 1}, start="2024-01-01", end="2025-01-01")
    fw = np.array([month_factor[(w + pd.Timedelta(days=3)).month] for w in weeks])
    # index = month mean over overall mean of weekly totals
    for m in (1, 7, 12):
        assert c.monthly_index[m] == pytest.approx(month_factor[m] / fw.mean(), rel=1e-12)
    assert np.allclose(c.sd, 0, atol=1e-9)  # the season is all the variation there is
    assert np.allclose(c.expected, base * fw.mean())  # annual average level
    c7 = workload_from_counts(_counts(rows), {"violent": 1}, start="2024-01-01", end="2025-01-01", month=7)
    assert np.allclose(c7.expected, base * month_factor[7])
    raw = workload_from_counts(_counts(rows), {"violent": 1}, start="2024-01-01", end="2025-01-01", seasonal=False)
    assert raw.sd.max() > 0.1  # unadjusted, the season shows up as noise


def test_weights_file_and_errors(tmp_path):
    w = load_weights()
    assert w["violent"] == 1 and w["robbery"] == 1 and w["burglary"] == 1 and w["theft"] == 0
    with pytest.raises(ValueError, match="unknown category"):
        load_weights({"violnet": 1})
    with pytest.raises(ValueError, match="every category weighs 0"):
        load_weights({"violent": 0})
    p = tmp_path / "w.toml"
    p.write_text("[weights]\nviolent = 1\ntheft = 0.2\n")
    assert load_weights(p) == {"violent": 1.0, "theft": 0.2}


def test_downtime_hand_worked():
    # 4 hours: load 0.5 erlang/h (1.5 events x 20 min); staffing 2, 1, 0, 3
    on = np.array([2, 1, 0, 3])
    lam = np.array([1.5, 1.5, 1.5, 0.0])
    req = np.array([2, 2, 2, 0])
    shifts = pd.DataFrame({"start": [0, 3], "length": [2, 1], "count": [1, 3]})
    d = downtime(
        on,
        lam,
        req,
        20.0,
        shifts,
        tasks=[
            {"name": "a", "value": 5, "weekly_hours": 1.0},
            {"name": "b", "value": 9, "weekly_hours": 0.5, "hours": [[3, 4]]},
            {"name": "c", "value": 1, "interruptible": False, "min_block_hours": 2},
        ],
    )
    busy = np.array([0.5, 0.5, 0.0, 0.0])  # min(A, n): a closed hour carries nothing
    assert np.allclose(d.busy, busy) and np.allclose(d.idle, on - busy)
    assert d.idle_share == pytest.approx((on - busy).sum() / on.sum())
    # per shift, per operator: hours 0-1 idle shares 0.75 and 0.5; hour 3 fully idle
    assert d.by_shift["idle_hours"].tolist() == pytest.approx([1.25, 1.0])
    # ranking by value: b takes 0.5 h of hour 3 (its only allowed hour); a takes 1 h from the idlest
    # hour (3); c (uninterruptible, 2-hour blocks) takes what is left in the quiet run 3-0-1 (which
    # wraps around the cyclic period): 1.5 + 1.5 + 0.5
    assert d.tasks["task"].tolist() == ["b", "a", "c"]
    assert d.tasks["hours_per_week"].tolist() == pytest.approx([0.5, 1.0, 3.5])
    assert d.unassigned_hours == pytest.approx(0.0)


def test_uninterruptible_task_needs_a_long_enough_quiet_run():
    from rtcc_geo.staffing.downtime import _runs_at_least

    m = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
    assert _runs_at_least(m, 3).tolist() == [1, 1, 0, 1, 1, 1, 0, 1]  # 7-0-1 wraps: 3 long
    assert _runs_at_least(m, 4).tolist() == [0] * 8
    on = np.array([1, 1, 1, 0])  # a 3-hour quiet stretch, then closed
    d = downtime(
        on, np.zeros(4), None, 20.0, tasks=[{"name": "long", "value": 1, "interruptible": False, "min_block_hours": 4}]
    )
    assert d.tasks["hours_per_week"].tolist() == [0.0] and d.unassigned_hours == 3.0
    d = downtime(
        on, np.zeros(4), None, 20.0, tasks=[{"name": "long", "value": 1, "interruptible": False, "min_block_hours": 3}]
    )
    assert d.tasks["hours_per_week"].tolist() == [3.0] and d.unassigned_hours == 0.0


def test_calls_for_service_add_with_their_own_weights():
    inc = [(3, "2024-01-01", "violent", 2), (3, "2024-01-08", "violent", 4)]
    calls = [(3, "2024-01-01", "disorder", 10), (4, "2024-01-08", "violent", 1)]
    c = workload_from_counts(
        _counts(inc),
        {"violent": 1},
        start="2024-01-01",
        end="2024-01-15",
        seasonal=False,
        extra_counts=_counts(calls),
        extra_weights={"disorder": 0.5, "violent": 1},
    )
    assert c.expected[3] == pytest.approx((2 + 5 + 4) / 2) and c.expected[4] == pytest.approx(0.5)


def test_default_tasks_file():
    t = load_tasks()
    assert [x["name"] for x in t][:2] == ["case support", "video canvass"]
    assert all(x["allowed"].any() for x in t)
