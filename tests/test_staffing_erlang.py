"""Erlang B/C against published figures and an exact, independent formula.

References
----------
* Erlang-B table value: 5 erlangs offered to 10 trunks block 1.84 % of calls
  (every Erlang-B table, e.g. the ITU-T/Bell "Erlang B" tables).
* The classic Erlang-C worked example (Mitan Ltd, "The Erlang-C formula",
  reproduced in many call-centre texts): 360 calls per half hour, 240 s mean
  duration (A = 48 erlangs), 55 agents, target 15 s -> P(wait) = 23.87 %,
  ASA = 8.2 s.
* The Erlang-C calculator example of V. Rodrigo (personal.telefonica.terra.es
  /web/vr/erlang/eng/mcerlc.htm): 600 calls/h of 120 s = 20 erlangs; a target
  delay probability of 15 % needs 26 circuits with an average delay of about
  3 s per call; 30 circuits cut the delay probability to 2.5 %, and 30 circuits
  at 15 % carry 23.6 erlangs.
* Independent formula: the direct factorial definition evaluated exactly in
  rational arithmetic (``fractions.Fraction``), no recursion shared with the
  code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.optimize import brentq

from rtcc_geo.staffing import erlang


def erlang_c_exact(n: int, a: Fraction) -> Fraction:
    """C(N, A) = (A^N/N! * N/(N-A)) / (sum_{k<N} A^k/k! + A^N/N! * N/(N-A))."""
    top = a**n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a**k / math.factorial(k) for k in range(n)) + top)


def erlang_b_exact(n: int, a: Fraction) -> Fraction:
    return (a**n / math.factorial(n)) / sum(a**k / math.factorial(k) for k in range(n + 1))


def test_erlang_b_published_table_value():
    assert erlang.erlang_b(10, 5.0) == pytest.approx(0.0184, abs=5e-5)
    assert float(erlang_b_exact(10, Fraction(5))) == pytest.approx(float(erlang.erlang_b(10, 5.0)), rel=1e-12)


def test_classic_360_calls_example():
    a = 360 * 240 / 1800
    assert a == 48
    c = float(erlang.erlang_c(55, a))
    assert c == pytest.approx(0.2387, abs=5e-5)  # published 23.87 %
    assert c == pytest.approx(float(erlang_c_exact(55, Fraction(48))), rel=1e-12)
    assert float(erlang.asa(55, a, 240)) == pytest.approx(8.2, abs=0.05)  # published 8.2 s
    sl = float(erlang.service_level(55, a, 15, 240))
    assert sl == pytest.approx(1 - float(erlang_c_exact(55, Fraction(48))) * math.exp(-7 * 15 / 240), rel=1e-12)


def test_rodrigo_calculator_example():
    a = 600 * 120 / 3600
    assert a == 20
    # fewest circuits with P(wait) <= 15 %: 26
    n = next(n for n in range(21, 60) if erlang.erlang_c(n, a) <= 0.15)
    assert n == 26
    assert float(erlang.asa(26, a, 120)) == pytest.approx(3.0, abs=0.15)  # "3 seconds per call"
    assert float(erlang.erlang_c(30, a)) == pytest.approx(0.025, abs=5e-4)  # "2.5 %"
    carried = brentq(lambda x: float(erlang.erlang_c(30, x)) - 0.15, 1, 29.9)
    assert carried == pytest.approx(23.6, abs=0.05)  # "23.6 erlangs"
    # the same through required_agents with an occupancy-free SL target of 85 % at t = 0
    assert int(erlang.required_agents(a, 0.85, 0.0, 120.0)) == 26


@pytest.mark.parametrize(
    "n,a",
    [
        (1, Fraction(1, 2)),
        (2, Fraction(3, 2)),
        (5, Fraction(37, 10)),
        (12, Fraction(91, 10)),
        (40, Fraction(351, 10)),
        (120, Fraction(1101, 10)),
    ],
)
def test_erlang_c_equals_exact_rational_formula(n, a):
    assert float(erlang.erlang_c(n, float(a))) == pytest.approx(float(erlang_c_exact(n, a)), rel=1e-11)
    assert float(erlang.erlang_b(n, float(a))) == pytest.approx(float(erlang_b_exact(n, a)), rel=1e-11)


def test_large_systems_stay_finite():
    # the direct formula overflows doubles here (1000! and 950^1000); the recursion does not
    c = float(erlang.erlang_c(1000, 950.0))
    assert 0.0 < c < 1.0
    assert float(erlang_c_exact(300, Fraction(280))) == pytest.approx(float(erlang.erlang_c(300, 280.0)), rel=1e-10)


def test_required_agents_equals_direct_search():
    rng = np.random.default_rng(7)
    loads = np.concatenate([[0.0, 0.05, 1.0, 2.0], rng.uniform(0.01, 30, 60)])
    for target, t, h in [(0.9, 60.0, 1200.0), (0.8, 20.0, 240.0), (0.95, 120.0, 900.0)]:
        got = erlang.required_agents(loads, target, t, h)
        for a, g in zip(loads, got):
            if a == 0:
                assert g == 0
                continue
            fa = Fraction(a)
            n = math.floor(a) + 1
            while 1 - float(erlang_c_exact(n, fa)) * math.exp(-(n - a) * t / h) < target:
                n += 1
            assert g == n, (a, target)


def test_required_agents_occupancy_cap_and_utilisation_rule():
    a = np.array([0.0, 0.4, 1.6, 4.0])
    assert erlang.utilisation_agents(a, 0.8).tolist() == [0, 1, 2, 5]
    capped = erlang.required_agents(a, 0.5, 600.0, 60.0, max_occupancy=0.5)
    assert (capped >= np.ceil(a / 0.5)).all()


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="service level"):
        erlang.required_agents([1.0], 90, 60, 600)
    with pytest.raises(ValueError, match="handle_minutes"):
        erlang.offered_load([1.0], 0)
    with pytest.raises(ValueError, match=">= 0"):
        erlang.erlang_c(3, -1.0)
