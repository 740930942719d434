"""Emerging Hot Spot Analysis (EHSA) on a space-time cube, as Esri defines it.

Step 1 — space-time Getis–Ord Gi* per bin
-----------------------------------------
Every bin ``(i, t)`` of the cube (cell ``i``, step ``t``) is one observation;
the ``n = n_cells · n_steps`` bins are the data set. Bin ``(i, t)``'s
neighbourhood is every bin ``(j, u)`` with ``j`` in the k-ring of ``i``
(itself included: Gi*) and ``t - time_lag <= u <= t`` (the current and the
``time_lag`` *preceding* steps, as ArcGIS's *Neighborhood Time Step* does;
there is no look-ahead). Weights are binary, so with ``W_i`` the number of
neighbour bins and ``x̄``, ``S`` the mean and (population) standard
deviation of all ``n`` bins,

.. math::

    G^*_i = \\frac{\\sum_j w_{ij} x_j - \\bar x W_i}
                 {S \\sqrt{(n W_i - W_i^2)/(n-1)}}

(Ord & Getis 1995; equal to ``esda.G_Local(star=True)`` on the same
space-time weights — tested). ``standardise="step"`` uses each step's own
mean / s.d. and ``n = n_cells`` instead (the per-time-slice Gi* that
``esda.G_Local`` run step by step gives; only valid with ``time_lag=0``).
p-values are two-sided normal; a bin is a significant **hot** (``z > 0``)
or **cold** (``z < 0``) bin when it passes Benjamini–Hochberg FDR at
``alpha`` over all bins of the cube (``fdr=False`` uses raw p < alpha).

Step 2 — Mann–Kendall on each cell's Gi* z-score series
-------------------------------------------------------
(:mod:`rtcc_geo.temporal.mannkendall`, ties corrected.) The trend of a cell
is *up* / *down* when the MK p-value < ``alpha`` and z > 0 / z < 0.

Step 3 — the 17 categories
--------------------------
Let ``N`` be the number of steps, ``H`` the set of significant hot bins of
the cell, ``C`` its cold bins, ``final`` the last step. "At least 90 %" is
``10 |H| >= 9 N`` (exact integer arithmetic) and "less than 90 %" its negation;
with fewer than 10 steps "at least 90 %" therefore means *every* step, so use
10 or more steps.

Final-step rules: the class depends first on the **final step**. If the
final bin is hot, the cell gets a hot pattern; if cold, a cold pattern; if
neither, it can only be *historical* or *no pattern* (so a cell hot for 90 %
of the steps whose final bin is cold is an *oscillating cold spot*). So *persistent*,
*intensifying* and *diminishing* (like *new*, *consecutive*, *sporadic*
and *oscillating*) all require the final step hot; a cell hot for >= 90 %
of the steps but not in the final one is *historical*.

Hot patterns (cold ones mirror them with hot ↔ cold and up ↔ down):

==============  ==============================================================
new             final bin hot; no other bin significant (hot or cold) ever.
consecutive     final bins form a single uninterrupted hot run of >= 2 bins;
                no significant bin (hot or cold) before that run; |H| < 90 %.
intensifying    final bin hot; |H| >= 90 %; MK trend of z significantly up.
persistent      final bin hot; |H| >= 90 %; no significant MK trend.
diminishing     final bin hot; |H| >= 90 %; MK trend of z significantly down.
sporadic        final bin hot; |H| < 90 %; on-and-off history of hot bins
                (not new, not consecutive); never a cold bin.
oscillating     final bin hot; |H| < 90 %; at least one earlier cold bin.
historical      final bin neither hot nor cold; |H| >= 90 %.
no pattern      none of the above (hot or cold).
==============  ==============================================================

Notes on the reading of Esri's text: "never been a statistically significant
hot spot before" (new) and "never been a ... hot spot prior to the final
hot spot run" (consecutive) are taken to exclude earlier *cold* bins as well,
because a hot-now cell with a cold past is exactly Esri's *oscillating* — so
the categories stay mutually exclusive. Esri requires the final step hot for
*sporadic* (ArcGIS Pro text); a cell with scattered hot bins that is not hot
now has *no pattern*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtr

from .cube import SpaceTimeCube
from .mannkendall import MannKendallResult, mann_kendall

#: The 17 categories, in Esri's order (hot, then the cold mirrors, then none).
CATEGORIES: tuple[str, ...] = (
    "new hot spot",
    "consecutive hot spot",
    "intensifying hot spot",
    "persistent hot spot",
    "diminishing hot spot",
    "sporadic hot spot",
    "oscillating hot spot",
    "historical hot spot",
    "new cold spot",
    "consecutive cold spot",
    "intensifying cold spot",
    "persistent cold spot",
    "diminishing cold spot",
    "sporadic cold spot",
    "oscillating cold spot",
    "historical cold spot",
    "no pattern detected",
)
_CODE = {c: i for i, c in enumerate(CATEGORIES)}


# --- spatial weights and FDR: thin interface -----------------------------------


def kring_matrix(cells: np.ndarray, k: int = 1) -> sp.csr_matrix:
    """Binary ``(n, n)`` k-ring adjacency of ``cells`` **with the diagonal set**
    (Gi* counts the cell itself). Reuses :func:`rtcc_geo.hotspots.weights.kring_weights`
    (zero diagonal, neighbours outside ``cells`` dropped) and adds the identity.
    ``cells`` must be sorted and unique (a cube's cells are).
    """
    from ..hotspots.weights import kring_weights

    cells = np.asarray(cells, dtype=np.int64)
    hw = kring_weights(cells, k)
    if len(hw.cells) != len(cells) or not np.array_equal(hw.cells, cells):
        raise ValueError("cells must be sorted and unique (as in a SpaceTimeCube)")
    return (hw.sparse + sp.identity(len(cells), format="csr")).tocsr()


def fdr_reject(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini–Hochberg: boolean mask of p-values rejected at FDR ``alpha``.

    The package's one implementation, :func:`rtcc_geo.hotspots.fdr.bh_reject`
    (checked against statsmodels there), over every bin of the cube at once.
    """
    from ..hotspots.fdr import bh_reject

    p = np.asarray(p, dtype=np.float64)
    return np.asarray(bh_reject(p.ravel(), alpha), dtype=bool).reshape(p.shape)


# --- space-time Gi* -------------------------------------------------------------


@dataclass
class SpaceTimeGi:
    """Gi* per bin: ``z``, ``p`` (two-sided), ``hot``/``cold`` (significant)."""

    z: np.ndarray
    p: np.ndarray
    hot: np.ndarray
    cold: np.ndarray


def space_time_gistar(
    cube: SpaceTimeCube | np.ndarray,
    w: sp.spmatrix | None = None,
    k: int = 1,
    time_lag: int = 1,
    alpha: float = 0.05,
    fdr: bool = True,
    standardise: str = "cube",
    cells: np.ndarray | None = None,
) -> SpaceTimeGi:
    """Space-time Gi* of every bin (see the module docstring for the maths).

    ``cube`` is a :class:`SpaceTimeCube` or a raw ``(n_cells, n_steps)``
    array (then ``w`` — binary, self included — is required). Vectorised:
    one sparse product for the spatial sum, a cumulative sum for the lag.
    """
    x = cube.values if isinstance(cube, SpaceTimeCube) else np.asarray(cube, dtype=np.float64)
    if w is None:
        if not isinstance(cube, SpaceTimeCube):
            raise ValueError("pass w (binary spatial weights, self included) with a raw array")
        w = kring_matrix(cube.cells, k)
    if time_lag < 0:
        raise ValueError("time_lag must be >= 0 (number of preceding steps in the neighbourhood)")
    if standardise not in ("cube", "step"):
        raise ValueError("standardise must be 'cube' (Esri: all bins) or 'step' (per time slice)")
    if standardise == "step" and time_lag:
        raise ValueError("standardise='step' is the per-time-slice Gi*; use it with time_lag=0")
    n_cells, n_steps = x.shape
    w = sp.csr_matrix(w, dtype=np.float64)
    deg = np.asarray(w.sum(axis=1)).ravel()  # spatial neighbours (incl. self)
    # Time window [t - lag, t]: sum via cumulative sums along time.
    cs = np.concatenate([np.zeros((n_cells, 1)), np.cumsum(x, axis=1)], axis=1)
    lo = np.maximum(np.arange(n_steps) - time_lag, 0)
    xt = cs[:, np.arange(n_steps) + 1] - cs[:, lo]  # (n_cells, n_steps)
    nt = (np.arange(n_steps) + 1 - lo).astype(np.float64)  # steps in each window
    lag_sum = w @ xt  # spatial sum of the time sums
    wi = deg[:, None] * nt[None, :]  # binary: sum w = sum w^2
    if standardise == "cube":
        n = x.size
        xbar = x.mean()
        s = np.sqrt((x * x).mean() - xbar * xbar)
    else:
        n = n_cells
        xbar = x.mean(axis=0)[None, :]
        s = np.sqrt((x * x).mean(axis=0) - x.mean(axis=0) ** 2)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (lag_sum - xbar * wi) / (s * np.sqrt((n * wi - wi * wi) / (n - 1)))
    z = np.where(np.isfinite(z), z, 0.0)  # no variation (all-zero step): no evidence either way
    p = 2.0 * (1.0 - ndtr(np.abs(z)))
    sig = fdr_reject(p, alpha) if fdr else (p < alpha)
    return SpaceTimeGi(z=z, p=p, hot=sig & (z > 0), cold=sig & (z < 0))


# --- classification -------------------------------------------------------------


def classify(hot: np.ndarray, cold: np.ndarray, trend: np.ndarray) -> np.ndarray:
    """Category code (index into :data:`CATEGORIES`) per cell.

    ``hot``/``cold``: boolean ``(n_cells, n_steps)`` significant bins;
    ``trend``: ``+1``/``-1``/``0`` significant MK trend of the z series.
    Vectorised; the rules are those of the module docstring.
    """
    hot = np.asarray(hot, bool)
    cold = np.asarray(cold, bool)
    trend = np.asarray(trend)
    n = hot.shape[1]
    out = np.full(hot.shape[0], _CODE["no pattern detected"], dtype=np.int16)
    for side, same, other, up in (("hot", hot, cold, 1), ("cold", cold, hot, -1)):
        final = same[:, -1]
        frac_ge90 = 10 * same.sum(axis=1) >= 9 * n  # ">= 90 %", exact in integer arithmetic
        sig_any = same | other
        # Length of the final run of `same` bins.
        rev = same[:, ::-1]
        run = np.where(rev.all(axis=1), n, np.argmin(rev, axis=1))
        before = np.arange(n)[None, :] < (n - run)[:, None]
        sig_before = (sig_any & before).any(axis=1)
        other_ever = other.any(axis=1)

        def lab(name: str, side: str = side) -> int:
            return _CODE[f"{name} {side} spot"]

        c = np.full(hot.shape[0], -1, dtype=np.int16)
        f90 = final & frac_ge90
        c[f90 & (trend == up)] = lab("intensifying")
        c[f90 & (trend == -up)] = lab("diminishing")
        c[f90 & (trend == 0)] = lab("persistent")
        lt = final & ~frac_ge90
        c[lt & (run == 1) & ~sig_before] = lab("new")
        c[lt & (run >= 2) & ~sig_before] = lab("consecutive")
        rest = lt & sig_before
        c[rest & other_ever] = lab("oscillating")
        c[rest & ~other_ever] = lab("sporadic")
        c[~final & ~other[:, -1] & frac_ge90] = lab("historical")
        out = np.where(c >= 0, c, out)
    return out


@dataclass
class EmergingResult:
    """EHSA result. ``table`` has one row per cell: ``cell``, ``category``,
    ``mk_z``, ``mk_p``, ``mk_tau``, ``n_hot``, ``n_cold``, ``final_z``,
    ``total``; ``gi`` the per-bin Gi*; ``mk`` the Mann–Kendall result."""

    table: pd.DataFrame
    gi: SpaceTimeGi
    mk: MannKendallResult
    cube: SpaceTimeCube | None

    def summary(self) -> pd.DataFrame:
        """Cells per category, in :data:`CATEGORIES` order (all 17 rows)."""
        n = self.table["category"].value_counts().reindex(list(CATEGORIES), fill_value=0)
        return n.rename_axis("category").rename("cells").reset_index()


def emerging_hotspots(
    cube: SpaceTimeCube,
    k: int = 1,
    time_lag: int = 1,
    alpha: float = 0.05,
    fdr: bool = True,
    standardise: str = "cube",
    w: sp.spmatrix | None = None,
) -> EmergingResult:
    """Run EHSA on ``cube``: space-time Gi*, MK of each cell's z series, 17 classes.

    Parameters
    ----------
    k : spatial neighbourhood, H3 k-ring (1 = the cell and its 6 neighbours).
    time_lag : preceding steps in the neighbourhood (0 = same step only).
    alpha : significance for the Gi* bins (after FDR) and for the MK trend.
    """
    if cube.values.shape[1] < 3:
        raise ValueError(f"EHSA needs at least 3 time steps (10+ recommended), the cube has {cube.values.shape[1]}")
    gi = space_time_gistar(cube, w=w, k=k, time_lag=time_lag, alpha=alpha, fdr=fdr, standardise=standardise)
    mk = mann_kendall(gi.z)
    codes = classify(gi.hot, gi.cold, mk.trend(alpha))
    table = pd.DataFrame(
        {
            "cell": cube.cells.astype(np.int64),
            "category": pd.Series(np.asarray(CATEGORIES, dtype=object)[codes], dtype="string"),
            "mk_z": mk.z,
            "mk_p": mk.p,
            "mk_tau": mk.tau,
            "n_hot": gi.hot.sum(axis=1).astype(np.int64),
            "n_cold": gi.cold.sum(axis=1).astype(np.int64),
            "final_z": gi.z[:, -1],
            "total": cube.values.sum(axis=1),
        }
    )
    return EmergingResult(table=table, gi=gi, mk=mk, cube=cube)
