"""The exact test of a change between two Poisson counts.

Counts ``a`` (this period, ``t_a`` days) and ``b`` (the baseline, ``t_b``
days) are independent Poisson with rates ``λ_a``, ``λ_b``. Conditional on the
total ``n = a + b``, ``a ~ Binomial(n, p)`` with
``p = t_a λ_a / (t_a λ_a + t_b λ_b)``; under H0 (same rate per day)
``p0 = t_a / (t_a + t_b)``. This is the uniformly most powerful unbiased test
of equal rates (Przyborowski & Wilenski 1940; Lehmann, *Testing Statistical
Hypotheses*, §4.5). The two-sided p-value is the probability, under H0, of a
split at most as likely as the one seen::

    p = Σ_{k : P(k) <= P(a) (1 + 1e-7)} P(k),   P(k) = C(n, k) p0^k (1 - p0)^(n - k)

(the "minlike" rule, the same as ``scipy.stats.binomtest``, checked against it
in tests/test_compstat.py). So 1 -> 2 ("+100 %") has p = 1.0, and is not flagged.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

#: Significance level of the CompStat flags (two-sided).
ALPHA: float = 0.05
TEST_NAME = "exact conditional binomial test of two Poisson counts (two-sided, minlike)"


def poisson_change_p(a: int, b: int, t_a: float = 1.0, t_b: float = 1.0) -> float:
    """Two-sided exact p-value that counts ``a`` over ``t_a`` and ``b`` over ``t_b``
    come from one Poisson rate (see the module doc). 1.0 when both are 0."""
    a, b = int(a), int(b)
    if a < 0 or b < 0:
        raise ValueError(f"counts must be >= 0, got {a}, {b}")
    if t_a <= 0 or t_b <= 0:
        raise ValueError(f"exposures must be > 0, got {t_a}, {t_b}")
    n = a + b
    if n == 0:
        return 1.0
    p0 = t_a / (t_a + t_b)
    if a == p0 * n:
        return 1.0
    # Only terms within |a - mean| + 12 sd of the mean can matter: beyond that the
    # pmf is below exp(-72) times P(a) on either side (log-concave, Gaussian-like
    # tails), far under float64's resolution of the sum.
    mean, sd = n * p0, np.sqrt(n * p0 * (1 - p0))
    half = abs(a - mean) + 12 * sd + 10
    lo = int(max(0, np.floor(mean - half)))
    hi = int(min(n, np.ceil(mean + half)))
    k = np.arange(lo, hi + 1, dtype=np.float64)
    logpmf = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * np.log(p0) + (n - k) * np.log1p(-p0)
    keep = logpmf <= logpmf[a - lo] + np.log1p(1e-7)
    # Sum in probability space relative to the largest term kept (no underflow of the total).
    m = logpmf[keep].max()
    return float(min(1.0, np.exp(m) * np.exp(logpmf[keep] - m).sum()))


def poisson_change_p_many(a, b, t_a, t_b) -> np.ndarray:
    """:func:`poisson_change_p` over arrays (one p-value per pair)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ta = np.broadcast_to(np.asarray(t_a, dtype=np.float64), a.shape)
    tb = np.broadcast_to(np.asarray(t_b, dtype=np.float64), a.shape)
    cache: dict[tuple, float] = {}
    out = np.empty(a.shape, dtype=np.float64)
    for i, key in enumerate(zip(a.tolist(), b.tolist(), ta.tolist(), tb.tolist())):
        if key not in cache:
            cache[key] = poisson_change_p(*key)
        out[i] = cache[key]
    return out
