"""Analysis defaults: the choices an analyst would otherwise make, in one place.

The CLI's option defaults, the API's keyword defaults, the app's layers and the
notebooks all read these, so the map and the command line cannot disagree
(they did: burglary 2024 at res 9, the CLI's permutation bins gave 0/0/161 hot
cells at 99/95/90 % where the map's analytic bins gave 257/87/30).

Gi* inference is **analytic** by default (``"norm"``, as ArcGIS Hot Spot
Analysis): its p-values have no floor, so a 99 % bin is reachable on any data.
Permutation p-values (``inference="sim"``) cannot go below ``2/(P+1)``
(two-sided), and after Benjamini-Hochberg over *m* cells a 99 % bin needs
about ``p_min * m / 0.01`` cells at that floor; :func:`bin_reach` says when a
run cannot reach it, and the hot-spot functions warn.
"""

from __future__ import annotations

import math

# --- hot spots (Gi*, Local Moran, KDE) --------------------------------------
RES = 9  #: H3 resolution of hot-spot maps (cells ~0.1 km2)
K_RING = 1  #: neighbourhood: the 6 touching cells
INFERENCE = "norm"  #: p-values feeding FDR and bins: "norm" (analytic) or "sim" (permutations)
PERMUTATIONS = 999  #: permutations for the pseudo p-value column (p_sim)
ALTERNATIVE = "two-sided"  #: permutation rule (see rtcc_geo.hotspots.permutation)
FDR = True  #: Benjamini-Hochberg before binning (ArcGIS's FDR option)
ALPHA = 0.05  #: FDR level of LISA cluster labels
SEED = 0

# --- emerging hot spots ---------------------------------------------------------
EMERGING_STEP = "week"

# --- forecasts and deployment -------------------------------------------------------
FORECAST_RES = 10
FORECAST_HORIZON = "7d"
DEPLOY_MODEL = "additive"  #: explainable: each reason quotes its terms (docs/forecast.md)
DEPLOY_TARGET = "all_but_enforcement"  #: everything but enforcement-driven categories
DEPLOY_RES = 10
DEPLOY_UNITS = 8
DEPLOY_SHIFT_HOURS = 8.0


def gistar_kwargs(interactive: bool = False) -> dict:
    """The Gi* keywords of :func:`rtcc_geo.hotspots.hotspots`. ``interactive`` (the
    map) skips the permutations when the bins do not use them (analytic
    inference): same bins, no simulation cost."""
    perms = 0 if interactive and INFERENCE == "norm" else PERMUTATIONS
    return {
        "k": K_RING,
        "permutations": perms,
        "inference": INFERENCE,
        "alternative": ALTERNATIVE,
        "fdr": FDR,
        "seed": SEED,
    }


def min_pseudo_p(permutations: int, alternative: str = ALTERNATIVE) -> float:
    """The smallest pseudo p-value ``permutations`` can give under ``alternative``."""
    if permutations <= 0:
        return 0.0
    return min(1.0, (2.0 if alternative in ("two-sided", "esda-two-sided") else 1.0) / (permutations + 1))


def bin_reach(
    permutations: int,
    n_cells: int,
    inference: str = INFERENCE,
    alternative: str = ALTERNATIVE,
    fdr: bool = FDR,
    level: float = 0.01,
) -> dict:
    """Can a run reach the ``1 - level`` confidence bin at all?

    With analytic inference always. With permutations the smallest p is
    :func:`min_pseudo_p`; without FDR it must be <= ``level``; with BH over
    ``n_cells`` the *k*-th smallest p passes when ``p <= level * k / m``, so at
    least ``ceil(p_min * m / level)`` cells must sit at the floor.
    """
    if inference != "sim":
        return {"reachable": True, "smallest_p": 0.0, "cells_needed": 1, "message": None}
    pm = min_pseudo_p(permutations, alternative)
    need = math.ceil(pm * n_cells / level) if fdr else (1 if pm <= level else math.inf)
    ok = pm <= level
    more = max(9999, 10 * (permutations + 1) - 1)
    pm2 = min_pseudo_p(more, alternative)
    need2 = math.ceil(pm2 * n_cells / level) if fdr else 1
    msg = None
    if not ok or need > 1:
        msg = (
            f"with {permutations:,} permutations the smallest {alternative} pseudo p is {pm:.4g}; "
            + (
                f"a {100 * (1 - level):.0f} % bin is impossible"
                if not ok
                else f"after FDR over {n_cells:,} cells a {100 * (1 - level):.0f} % bin needs at least {need:,} cells "
                f"at that floor"
            )
            + f" — use --inference norm (no floor), or more permutations (with {more:,} the floor is "
            f"{pm2:.2g} and {need2:,} cells at it are needed)"
        )
    return {"reachable": ok, "smallest_p": pm, "cells_needed": need, "message": msg}
