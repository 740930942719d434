"""Benjamini–Hochberg false discovery rate, and ArcGIS-style confidence bins.

With thousands of cells tested at once, about ``alpha`` of the null cells
would look "significant" by chance. Benjamini & Hochberg (1995) control the
expected share of false discoveries instead: sort the *m* p-values
:math:`p_{(1)} \\le \\dots \\le p_{(m)}`, find the largest *k* with
:math:`p_{(k)} \\le k\\,\\alpha/m` and reject :math:`H_{(1)} .. H_{(k)}`.

The **adjusted p-value** (q-value) folds all levels into one number,

.. math:: \\tilde p_{(i)} = \\min\\Big(1, \\min_{k \\ge i} \\frac{m}{k} p_{(k)}\\Big),

so "significant at FDR level alpha" is simply ``p_fdr <= alpha`` for any
alpha — equal to statsmodels ``multipletests(method='fdr_bh')``. esda's
:func:`esda.fdr` returns the cut-off :math:`k\\alpha/m` instead and uses a
strict ``<`` (the two agree unless a p-value equals its cut-off exactly).

**Bins** as ArcGIS Pro's Hot Spot Analysis ``Gi_Bin`` with FDR correction:
``+3``/``-3`` hot/cold at 99 % confidence (``p_fdr <= 0.01``), ``±2`` at
95 %, ``±1`` at 90 %, ``0`` not significant; the sign is the sign of z.
"""

from __future__ import annotations

import numpy as np

#: (bin magnitude, FDR level) from the strictest down.
CONFIDENCE_LEVELS: tuple[tuple[int, float], ...] = ((3, 0.01), (2, 0.05), (1, 0.10))


def bh_adjust(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (NaNs stay NaN and are not counted)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return out
    if np.any((pv < 0) | (pv > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]  # min over k >= i
    adj = np.empty(m)
    adj[order] = np.minimum(q, 1.0)
    out[ok] = adj
    return out


def bh_reject(p, alpha: float = 0.05) -> np.ndarray:
    """Boolean mask of the hypotheses BH rejects at FDR level ``alpha``."""
    return bh_adjust(p) <= alpha


def bh_cutoff(p, alpha: float = 0.05) -> float:
    """Largest p-value rejected by BH at ``alpha`` (0.0 when none is)."""
    p = np.asarray(p, dtype=np.float64)
    r = bh_reject(p, alpha)
    return float(p[r].max()) if r.any() else 0.0


def confidence_bins(z, p, fdr: bool = True, levels=CONFIDENCE_LEVELS) -> np.ndarray:
    """ArcGIS-style bins: ``sign(z) * 3/2/1`` for 99/95/90 % confidence, else 0.

    ``p`` are raw two-sided p-values; with ``fdr=True`` (default) they are
    BH-adjusted first, as ArcGIS does with "Apply False Discovery Rate".
    """
    z = np.asarray(z, dtype=np.float64)
    q = bh_adjust(p) if fdr else np.asarray(p, dtype=np.float64)
    mag = np.zeros(z.shape, dtype=np.int64)
    for level, a in sorted(levels, key=lambda t: t[0]):
        mag = np.where(q <= a, level, mag)
    return (np.sign(np.nan_to_num(z)).astype(np.int64) * mag).astype(np.int64)
