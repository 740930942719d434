"""Choosing patrol areas: max forecast coverage with a minimum spacing, exactly.

Each patrol area is a centre cell ``c`` plus its k-ring of radius ``r``
(``r = 0``: the cell alone), minus excluded cells. Its value is the forecast
it covers, ``v_c = sum_{j in ring_r(c), j not excluded} f_j``. We choose
``m`` centres that maximise total value, subject to a minimum spacing between
any two chosen centres:

.. math::

    \\max \\sum_c v_c x_c \\quad\\text{s.t.}\\quad \\sum_c x_c = m,\\;
    x_a + x_b \\le 1 \\;\\; \\forall (a, b): \\operatorname{close}(a, b),\\;
    x \\in \\{0, 1\\}

where ``close`` is "H3 grid distance < ``spacing_cells``" or "centre distance
< ``spacing_m`` metres". The spacing must keep areas disjoint
(``spacing_cells >= 2r + 1``) so the values add up exactly. Solved as a MILP
by HiGHS (:func:`scipy.optimize.milp`); the solver's status is checked, so
the answer is optimal, not heuristic.

Exact candidate pruning: rank eligible centres by value (ties: cell id).
Any chosen centre blocks at most ``B`` others (the cells within the spacing
disc). If a solution uses a centre outside the top ``M = (m - 1) B + 1``,
then among the top ``M`` at least one is not blocked by the other ``m - 1``
chosen centres and is worth at least as much, so swapping it in never
lowers the value: an optimum exists within the top ``M`` candidates. So the
MILP only sees ``M`` candidates, which keeps it small on a whole city.
"""

from __future__ import annotations

from dataclasses import dataclass

import h3
import numpy as np
import pandas as pd
from scipy import sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from ..forecast.spatial import centre_spacing_m

_disk = h3.api.basic_int.grid_disk
_dist = h3.api.basic_int.grid_distance
_latlng = h3.api.basic_int.cell_to_latlng


@dataclass
class Selection:
    centres: np.ndarray  # chosen centre cells (int64), by value, highest first
    areas: dict[int, np.ndarray]  # centre -> cells of its patrol area
    values: np.ndarray  # forecast covered by each area
    objective: float
    candidates: int
    status: str


def _haversine_m(lat1, lon1, lat2, lon2):
    r = 6_371_008.8
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * r * np.arcsin(np.sqrt(np.minimum(a, 1.0)))


def area_cells(centre: int, radius: int, excluded: set[int], allowed: set[int] | None) -> np.ndarray:
    cells = [c for c in _disk(int(centre), radius) if c not in excluded and (allowed is None or c in allowed)]
    return np.array(sorted(cells), dtype=np.int64)


def select_areas(
    forecast: pd.Series,
    n_areas: int,
    radius: int = 0,
    spacing_cells: int | None = None,
    spacing_m: float | None = None,
    excluded=(),
    eligible=None,
    time_limit: float = 60.0,
) -> Selection:
    """Choose ``n_areas`` patrol areas maximising covered forecast (see module doc).

    ``forecast``: expected count per cell (index = cell). ``eligible``: cells
    allowed as area members and centres (e.g. the chosen districts); default
    all forecast cells. ``excluded``: cells never patrolled (schools, the
    station, places dosed too many days in a row).
    """
    if n_areas < 1:
        raise ValueError("need at least one patrol area (units x areas per unit >= 1)")
    if spacing_cells is None and spacing_m is None:
        spacing_cells = 2 * radius + 1
    if spacing_cells is not None and spacing_cells < 2 * radius + 1:
        raise ValueError(
            f"spacing of {spacing_cells} cells would let areas of radius {radius} overlap; "
            f"use a spacing of at least {2 * radius + 1} cells"
        )
    f = forecast.astype(float)
    f = f[f.index.notna()]
    f.index = f.index.astype(np.int64)
    excluded = set(int(x) for x in excluded)
    allowed = set(f.index.tolist()) if eligible is None else set(int(x) for x in eligible) & set(f.index.tolist())
    allowed -= excluded
    if not allowed:
        raise ValueError("no eligible cell left to patrol (check --district and the exclusions)")
    fv = f.to_dict()
    # Area value of every eligible centre (only centres with positive forecast nearby matter).
    if radius == 0:
        cand = np.array(sorted(allowed), dtype=np.int64)
        vals = np.array([fv[c] for c in cand.tolist()])
    else:
        hot = [c for c in allowed if fv[c] > 0]
        cset: set[int] = set()
        for c in hot:
            cset.update(x for x in _disk(c, radius) if x in allowed)
        cand = np.array(sorted(cset), dtype=np.int64)
        vals = np.array(
            [sum(fv.get(x, 0.0) for x in area_cells(c, radius, excluded, allowed).tolist()) for c in cand.tolist()]
        )
    if len(cand) < n_areas:
        raise ValueError(
            f"only {len(cand)} eligible cells for {n_areas} patrol areas: lower --units/areas or widen the districts"
        )
    order = np.lexsort((cand, -vals))
    cand, vals = cand[order], vals[order]
    # Spacing disc bound B and the exact pruning size M.
    if spacing_m is not None:
        k_ring = int(np.ceil(spacing_m / (centre_spacing_m(h3.api.basic_int.get_resolution(int(cand[0]))) * 0.8))) + 1
    else:
        assert spacing_cells is not None  # defaulted above when neither spacing is given
        k_ring = spacing_cells - 1
    B = 3 * k_ring * (k_ring + 1) + 1
    M = min(len(cand), (n_areas - 1) * B + 1)
    cand, vals = cand[:M], vals[:M]
    # Conflict pairs among candidates.
    pos = {c: i for i, c in enumerate(cand.tolist())}
    ia: list[int] = []
    ib: list[int] = []
    if spacing_m is not None:
        ll = np.array([_latlng(int(c)) for c in cand])
        d = _haversine_m(ll[:, None, 0], ll[:, None, 1], ll[None, :, 0], ll[None, :, 1])
        a, b = np.nonzero(np.triu(d < spacing_m, 1))
        ia, ib = a.tolist(), b.tolist()
        if spacing_cells is not None:
            extra = _pairs_within(cand, pos, spacing_cells - 1)
            ia += extra[0]
            ib += extra[1]
    else:
        assert spacing_cells is not None
        ia, ib = _pairs_within(cand, pos, spacing_cells - 1)
    n = len(cand)
    rows = [np.ones((1, n))]
    lo, hi = [n_areas], [n_areas]
    cons = [LinearConstraint(sp.csr_matrix(rows[0]), lo, hi)]
    if ia:
        k = len(ia)
        A = sp.csr_matrix(
            (np.ones(2 * k), (np.repeat(np.arange(k), 2), np.ravel(np.column_stack([ia, ib])))), shape=(k, n)
        )
        cons.append(LinearConstraint(A, -np.inf, 1))
    # Tiny tie-break so equal-value optima resolve deterministically to the higher-ranked cells.
    eps = 1e-9 * (np.abs(vals).max() + 1) / (n + 1)
    cost = -(vals + eps * (n - np.arange(n)))
    res = milp(
        cost,
        constraints=cons,
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        options={"time_limit": time_limit, "mip_rel_gap": 0.0},
    )
    if res.x is None:
        raise ValueError(
            f"no feasible plan: {n_areas} areas cannot be spaced as asked within the eligible cells "
            "(lower --units or --spacing)"
        )
    status = "optimal" if res.status == 0 else f"time limit (best found; HiGHS status {res.status})"
    chosen = np.flatnonzero(res.x > 0.5)
    chosen = chosen[np.lexsort((cand[chosen], -vals[chosen]))]
    centres = cand[chosen]
    areas = {int(c): area_cells(int(c), radius, excluded, allowed) for c in centres}
    return Selection(centres, areas, vals[chosen], float(vals[chosen].sum()), n, status)


def _pairs_within(cand: np.ndarray, pos: dict, k: int) -> tuple[list[int], list[int]]:
    ia: list[int] = []
    ib: list[int] = []
    if k < 1:
        return ia, ib
    for i, c in enumerate(cand.tolist()):
        for x in _disk(c, k):
            j = pos.get(x)
            if j is not None and j > i:
                ia.append(i)
                ib.append(j)
    return ia, ib
