r"""Optimized scale: incremental spatial autocorrelation, as Esri's Optimized
Hot Spot Analysis chooses its distance band.

For each candidate scale — ring size ``k = 1, 2, …`` at one resolution, or
one resolution after another at ``k = 1`` — compute the global Moran's I of
the cell counts over the study area and its z-score under the randomisation
null. Clustering is most pronounced where z *peaks*: the chosen scale is the
**first peak** (a z larger than both its neighbours in the sequence, and
significant, z ≥ 1.96), because later peaks mix several processes.

Fallback (documented, and reported in ``reason``) when z never peaks but
some scale is significant:

* choosing the ring size ``k``: Esri's rule — the neighbourhood that holds,
  on average, :math:`K = \min(30, \max(3, 0.05\,n))` neighbours. A k-ring
  holds :math:`3k(k+1)` cells, so this is the smallest k with
  :math:`3k(k+1) \ge K` (k = 3 for any city-sized grid). On crime counts
  Moran's z usually keeps rising with k (a broad, smooth surface plus the
  growing neighbour count), so this fallback is the common case; it keeps
  the hot spots local rather than taking the largest ring tried;
* choosing the resolution: the largest z.

If no scale is significant (z < 1.96 everywhere) the finest scale tried is
kept and the reason says there is no evidence of clustering to tune to.

Global Moran's I, with row-standardised weights (``transformation='r'``, as
esda and ArcGIS by default):

.. math::

    I = \\frac{n}{S_0} \\frac{\\sum_{ij} w_{ij} z_i z_j}{\\sum_i z_i^2},\\quad
    E[I] = -\\frac{1}{n-1},

    \\operatorname{Var}_R[I] = \\frac{n[(n^2-3n+3)S_1 - nS_2 + 3S_0^2]
        - b_2[(n^2-n)S_1 - 2nS_2 + 6S_0^2]}{(n-1)(n-2)(n-3)S_0^2} - E[I]^2,

:math:`S_0 = \\sum w_{ij}`, :math:`S_1 = \\tfrac12\\sum(w_{ij}+w_{ji})^2`,
:math:`S_2 = \\sum_i (w_{i\\cdot} + w_{\\cdot i})^2`, :math:`b_2 = m_4/m_2^2`
(Cliff & Ord 1981) — equal to ``esda.Moran(y, w).z_rand`` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .gistar import _as_binary_csr

Z_CRIT = 1.96


@dataclass
class GlobalMoran:
    I: float  # noqa: E741 - Moran's I: the statistic's own name (public field)
    EI: float
    VI_norm: float
    VI_rand: float
    z_norm: float
    z_rand: float


def global_moran(y, w, transformation: str = "r") -> GlobalMoran:
    """Global Moran's I with normal and randomisation moments (see module doc)."""
    y = np.asarray(y, dtype=np.float64).ravel()
    B = _as_binary_csr(w)
    n = len(y)
    if transformation == "r":
        card = np.diff(B.indptr)
        W = sp.diags(np.where(card > 0, 1.0 / np.maximum(card, 1), 0.0)) @ B
    elif transformation == "b":
        W = B
    else:
        raise ValueError("transformation must be 'r' or 'b'")
    W = sp.csr_matrix(W)
    z = y - y.mean()
    z2ss = (z * z).sum()
    if z2ss == 0:
        raise ValueError("all cells have the same count: Moran's I is undefined")
    s0 = W.sum()
    WT = W.T.tocsr()
    s1 = 0.5 * ((W + WT).multiply(W + WT)).sum()
    s2 = ((np.asarray(W.sum(axis=1)).ravel() + np.asarray(W.sum(axis=0)).ravel()) ** 2).sum()
    I = n / s0 * (z * (W @ z)).sum() / z2ss  # noqa: E741 - Moran's I
    EI = -1.0 / (n - 1)
    n2 = n * n
    s02 = s0 * s0
    VI_norm = (n2 * s1 - n * s2 + 3 * s02) / ((n - 1) * (n + 1) * s02) - EI**2
    k = ((z**4).sum() / n) / ((z**2).sum() / n) ** 2
    A = n * ((n2 - 3 * n + 3) * s1 - n * s2 + 3 * s02)
    B2 = k * ((n2 - n) * s1 - 2 * n * s2 + 6 * s02)
    VI_rand = (A - B2) / ((n - 1) * (n - 2) * (n - 3) * s02) - EI**2
    return GlobalMoran(I, EI, VI_norm, VI_rand, (I - EI) / np.sqrt(VI_norm), (I - EI) / np.sqrt(VI_rand))


@dataclass
class ScaleChoice:
    """The chosen scale and why.

    Attributes
    ----------
    res, k : the chosen H3 resolution and ring size.
    table : one row per scale tried: res, k, n_cells, I, z.
    rule : ``"first_peak"``, ``"max_z"`` or ``"no_clustering"``.
    reason : one sentence for the analyst.
    """

    res: int
    k: int
    table: pd.DataFrame
    rule: str
    reason: str = field(default="")


def knn_fallback_k(n_cells: int, max_k: int | None = None) -> int:
    """Smallest k whose ring holds Esri's K = min(30, max(3, 0.05 n)) neighbours."""
    K = min(30.0, max(3.0, 0.05 * n_cells))
    k = 1
    while 3 * k * (k + 1) < K:
        k += 1
    return k if max_k is None else min(k, max_k)


def choose_scale(table: pd.DataFrame, z_crit: float = Z_CRIT, fallback_k: int | None = None) -> ScaleChoice:
    """Apply the first-peak rule (with fallbacks) to a table of ``res, k, z``
    ordered from the finest / smallest scale to the broadest. ``fallback_k``
    (ring-size mode): the k to take when z has no peak (see module doc)."""
    t = table.reset_index(drop=True)
    z = t["z"].to_numpy()
    for i in range(1, len(z) - 1):
        if z[i] > z[i - 1] and z[i] > z[i + 1] and z[i] >= z_crit:
            r = t.iloc[i]
            return ScaleChoice(
                int(r.res),
                int(r.k),
                t,
                "first_peak",
                f"global Moran's z first peaks at res {int(r.res)}, k={int(r.k)} (z={z[i]:.2f}): "
                "clustering is most pronounced at this scale",
            )
    if np.nanmax(z) >= z_crit:
        i = int(np.nanargmax(z))
        trend = "rises" if i == len(z) - 1 else ("falls" if i == 0 else "has no clear peak")
        if fallback_k is not None and (t["k"] == fallback_k).any():
            j = int(np.flatnonzero(t["k"].to_numpy() == fallback_k)[0])
            r = t.iloc[j]
            return ScaleChoice(
                int(r.res),
                int(r.k),
                t,
                "knn_fallback",
                f"global Moran's z {trend} across k={int(t.k.min())}..{int(t.k.max())} (no first peak); "
                f"fallback (Esri's rule): the ring holding about min(30, max(3, 5 % of cells)) "
                f"neighbours, k={int(r.k)} (z={z[j]:.2f})",
            )
        r = t.iloc[i]
        return ScaleChoice(
            int(r.res),
            int(r.k),
            t,
            "max_z",
            f"global Moran's z {trend} across the scales tried (no first peak); "
            f"fallback: the largest z, at res {int(r.res)}, k={int(r.k)} (z={z[i]:.2f})",
        )
    r = t.iloc[0]
    return ScaleChoice(
        int(r.res),
        int(r.k),
        t,
        "no_clustering",
        f"no scale shows significant clustering (max z={np.nanmax(z):.2f} < {z_crit}); "
        f"fallback: the finest scale tried, res {int(r.res)}, k={int(r.k)}",
    )
