"""Forecast metrics on hand-made forecasts and outcomes (issue 5, acceptance 1)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.forecast import metrics as M


def test_hit_rate_pai_pei_by_hand():
    f = np.array([5, 4, 3, 2, 1, 0, 0, 0, 0, 0], float)
    o = np.array([1, 0, 2, 0, 0, 3, 0, 0, 0, 0], float)
    k = M.k_for_fraction(10, 0.2)
    assert k == 2
    assert M.captured(f, o, k) == 1.0  # cells 0 and 1
    assert M.hit_rate(f, o, k) == pytest.approx(1 / 6)
    assert M.pai(f, o, k) == pytest.approx((1 / 6) / 0.2)
    assert M.best_possible(o, k) == 5.0  # cells 5 and 2
    assert M.pei_star(f, o, k) == pytest.approx(1 / 5)
    ev = M.evaluate(f, o, fractions=(0.2, 0.5))
    assert ev["n"] == 6
    assert ev["hit@20%"] == pytest.approx(1 / 6)
    assert ev["pai@20%"] == pytest.approx(5 / 6)
    assert ev["pei@20%"] == pytest.approx(0.2)
    # top 5: cells 0..4 hold 3 of 6; best 5 cells hold all 6
    assert ev["hit@50%"] == pytest.approx(0.5)
    assert ev["pai@50%"] == pytest.approx(1.0)
    assert ev["pei@50%"] == pytest.approx(0.5)


def test_perfect_and_empty_outcomes():
    o = np.array([0, 7, 0, 2, 1], float)
    ev = M.evaluate(o, o, fractions=(0.4,))
    assert ev["pei@40%"] == 1.0 and ev["hit@40%"] == pytest.approx(9 / 10)
    empty = M.evaluate(np.arange(5.0), np.zeros(5), fractions=(0.4,))
    assert empty["hit@40%"] == 0.0 and np.isnan(empty["pei@40%"])


def _brute_force_expected_capture(f, o, k):
    """Average capture over every ordering of tied cells (the definition the tie rule follows)."""
    vals = []
    n = len(f)
    for perm in itertools.permutations(range(n)):
        # a ranking consistent with the forecast: sort by (-f, position in perm)
        rank = sorted(range(n), key=lambda i: (-f[i], perm.index(i)))
        vals.append(o[rank[:k]].sum())
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", range(6))
def test_fractional_tie_rule_equals_average_over_tie_orders(seed):
    rng = np.random.default_rng(seed)
    f = rng.integers(0, 3, 7).astype(float)  # many ties
    o = rng.integers(0, 4, 7).astype(float)
    for k in range(1, 7):
        assert M.captured(f, o, k) == pytest.approx(_brute_force_expected_capture(f, o, k))


def test_tie_rule_by_hand_and_cell_id_rule():
    f = np.array([3, 2, 2, 2, 0], float)
    o = np.array([1, 3, 0, 0, 5], float)
    # one slot left for three tied cells holding 3 incidents -> 1 + 3/3
    assert M.captured(f, o, 2) == pytest.approx(2.0)
    s = pd.Series(f, index=pd.Index([50, 40, 30, 20, 10]))
    obs = pd.Series(o, index=s.index)
    # cell-id rule: the lowest tied id (20, observed 0) gets the slot
    assert M.captured(s, obs, 2, ties="cell_id") == 1.0
    assert list(M.ranked_cells(s)) == [50, 20, 30, 40, 10]
    with pytest.raises(ValueError, match="ties"):
        M.captured(f, o, 2, ties="random")


def test_k_for_fraction_and_area():
    assert M.k_for_fraction(24775, 0.01) == 248
    assert M.k_for_fraction(10, 0.001) == 1
    assert M.k_for_area(0.5, 0.01504750190766435) == 33
    with pytest.raises(ValueError):
        M.k_for_fraction(10, 0)
    with pytest.raises(ValueError, match="cell_km2"):
        M.evaluate(np.ones(3), np.ones(3), area_km2=1.0)


def test_series_alignment_and_nan():
    f = pd.Series([1.0, 2.0, 3.0], index=[7, 8, 9])
    o = pd.Series([4.0], index=[9])  # missing cells = no incident
    assert M.captured(f, o, 1) == 4.0
    with pytest.raises(ValueError, match="NaN"):
        M.captured(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), 1)


def test_curve_and_calibration():
    f = np.array([4, 3, 2, 1], float)
    o = np.array([2, 2, 0, 4], float)
    cv = M.hit_rate_curve(f, o, [0.25, 0.5, 1.0])
    assert cv["hit_rate"].tolist() == pytest.approx([0.25, 0.5, 1.0])
    assert cv["pai"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    cal = M.calibration(f, o, bins=2)
    assert cal["predicted"].tolist() == [7.0, 3.0, 10.0]
    assert cal["observed"].tolist() == [4.0, 4.0, 8.0]
    assert cal.iloc[-1]["ratio"] == pytest.approx(0.8)


def test_pooled_calibration_by_hand():
    """Low deciles are pooled from the bottom up until a bin expects >= 100; no cell dropped."""
    from rtcc_geo.forecast.metrics import pooled_calibration

    pred = [500, 300, 200, 150, 120, 90, 60, 30, 10, 5]
    obs = [510, 290, 210, 150, 120, 95, 70, 30, 15, 9]
    cal = pd.DataFrame(
        {
            "bin": [str(i) for i in range(1, 11)] + ["all"],
            "cells": [10] * 10 + [100],
            "predicted": pred + [sum(pred)],
            "observed": obs + [sum(obs)],
        }
    )
    p = pooled_calibration(cal)
    assert list(p["bin"]) == ["1", "2", "3", "4", "5-6", "7-10"]
    assert p["cells"].sum() == 100 and p["predicted"].sum() == sum(pred) and p["observed"].sum() == sum(obs)
    assert p.set_index("bin").loc["7-10", "ratio"] == pytest.approx(124 / 105)
    assert p.set_index("bin").loc["5-6", "ratio"] == pytest.approx(215 / 210)
    # a top remainder below the floor joins the pool under it: here everything is one bin
    cal2 = cal.assign(predicted=[50, 40, 30, 20, 10, 5, 5, 5, 5, 5, 175])
    assert list(pooled_calibration(cal2)["bin"]) == ["1-10"]
