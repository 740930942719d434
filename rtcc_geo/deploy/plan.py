"""A deployment plan for one shift: where each unit patrols, when, and why.

Inputs: a forecast (expected incidents per cell for the shift), the number
of units, the shift window, the districts (eligible cells), a minimum
spacing between patrol areas, excluded places and the dosing history.
Steps:

1. **Eligible cells**: the district cells, minus excluded places, minus cells
   dosed on each of the last ``max_consecutive_days`` days (the cap on
   consecutive dosing — hot-spot patrol that never moves displaces
   attention and wears out the effect; default 3 days, ``None`` = no cap).
2. **Patrol areas**: ``units x areas_per_unit`` areas chosen *exactly* by the
   MILP of :mod:`rtcc_geo.deploy.select` (max covered forecast, spacing).
3. **Units**: with one area per unit, areas go to units by value; with
   several, areas are grouped into compact, equal-size sets (seeded k-means
   of the centres, then an exact balanced assignment by
   :func:`scipy.optimize.linear_sum_assignment`).
4. **Dosage**: a Koper-curve schedule (:mod:`rtcc_geo.deploy.schedule`).
5. **Reasons** for every chosen cell: its forecast and rank, its recent
   incidents (7 and 28 days) and its Gi* hot-spot bin when given.

The default forecast target excludes enforcement-driven categories (drugs,
disorder, warrants: :data:`rtcc_geo.forecast.data.ENFORCEMENT_CATEGORIES`),
chosen by the caller via target ``all_but_enforcement``; override with any
other target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..forecast.spatial import centre_spacing_m
from .schedule import dosage_schedule, validate_schedule
from .select import Selection, select_areas

_BIN_TEXT = {
    3: "hot spot (Gi*, 99 % confidence)",
    2: "hot spot (Gi*, 95 %)",
    1: "hot spot (Gi*, 90 %)",
    0: "not a significant hot spot (Gi*)",
    -1: "cold spot (Gi*, 90 %)",
    -2: "cold spot (Gi*, 95 %)",
    -3: "cold spot (Gi*, 99 %)",
}


@dataclass
class Plan:
    cells: pd.DataFrame  # one row per patrolled cell: unit, area, centre, cell, reasons ...
    schedule: pd.DataFrame  # one row per visit
    units: dict[int, list[int]]  # unit -> area centres
    covered_share: float  # share of the eligible forecast inside the patrol areas
    covered: float  # expected incidents inside the patrol areas
    total: float  # expected incidents in the eligible area
    status: str  # MILP status ("optimal" ...)
    shift_start: pd.Timestamp
    shift_end: pd.Timestamp
    seed: int
    params: dict = field(default_factory=dict)
    forecast: pd.Series | None = None  # the shift forecast the plan was made from, when known

    def summary(self) -> str:
        """A plain-text briefing for the shift."""
        lines = [
            f"Patrol plan {self.shift_start:%Y-%m-%d %H:%M} - {self.shift_end:%H:%M}: "
            f"{len(self.units)} unit(s), {sum(len(v) for v in self.units.values())} patrol area(s), "
            f"{len(self.cells)} cell(s).",
            f"Expected incidents covered: {self.covered:.2f} of {self.total:.2f} forecast in the eligible area "
            f"({self.covered_share:.1%}); selection {self.status}.",
        ]
        for u, areas in sorted(self.units.items()):
            visits = self.schedule[self.schedule["unit"] == u]
            lines.append(
                f"Unit {u}: {len(areas)} area(s), {len(visits)} visit(s) of "
                f"{visits['minutes'].min() if len(visits) else 0}-{visits['minutes'].max() if len(visits) else 0} min"
            )
            for a in areas:
                row = self.cells[(self.cells["centre"] == a) & (self.cells["cell"] == a)].iloc[0]
                lines.append(f"  area {row['area']} ({row['centre_hex']}): {row['reason']}")
        return "\n".join(lines)


def capped_cells(history: pd.DataFrame | None, day, max_consecutive_days: int | None) -> set[int]:
    """Cells dosed on each of the ``max_consecutive_days`` days before ``day``.

    ``history`` has columns ``date`` (local date of a past shift) and ``cell``.
    """
    if history is None or max_consecutive_days is None or len(history) == 0:
        return set()
    if max_consecutive_days < 1:
        raise ValueError("max_consecutive_days must be >= 1 (or None for no cap)")
    d0 = pd.Timestamp(day).normalize()
    h = history.assign(date=pd.to_datetime(history["date"]).dt.normalize())
    need = {d0 - pd.Timedelta(days=i) for i in range(1, max_consecutive_days + 1)}
    per_cell = h[h["date"].isin(need)].groupby("cell")["date"].nunique()
    return set(per_cell[per_cell >= max_consecutive_days].index.astype(np.int64).tolist())


def plan_shift(
    forecast: pd.Series,
    n_units: int,
    shift_start,
    shift_end,
    *,
    areas_per_unit: int = 1,
    radius: int = 1,
    spacing_cells: int | None = None,
    spacing_m: float | None = None,
    eligible=None,
    excluded=(),
    history: pd.DataFrame | None = None,
    max_consecutive_days: int | None = 3,
    recent_7d: pd.Series | None = None,
    recent_28d: pd.Series | None = None,
    hotspot_bins: pd.Series | None = None,
    seed: int = 0,
) -> Plan:
    """Plan one shift (see module doc). ``forecast`` is indexed by cell."""
    if n_units < 1:
        raise ValueError("need at least one unit (--units)")
    if areas_per_unit < 1:
        raise ValueError("areas per unit must be >= 1")
    t0, t1 = pd.Timestamp(shift_start), pd.Timestamp(shift_end)
    capped = capped_cells(history, t0, max_consecutive_days)
    excl = set(int(x) for x in excluded) | capped
    elig = set(forecast.index.astype(np.int64).tolist()) if eligible is None else set(int(x) for x in eligible)
    elig -= excl
    sel: Selection = select_areas(
        forecast,
        n_units * areas_per_unit,
        radius=radius,
        spacing_cells=spacing_cells,
        spacing_m=spacing_m,
        excluded=excl,
        eligible=elig,
    )
    units = _assign(sel, n_units, areas_per_unit, seed)
    sched = dosage_schedule(units, t0, t1, seed=seed)
    errs = validate_schedule(sched, units, t0, t1)
    if errs:  # pragma: no cover - a generator bug, never a user error
        raise RuntimeError(f"generated an invalid schedule: {errs}")
    f = forecast.astype(float)
    fe = f[f.index.isin(list(elig))]
    total = float(fe.sum())
    ranks = pd.Series(np.arange(1, len(fe) + 1), index=_rank_order(fe))
    rows = []
    unit_of = {a: u for u, aa in units.items() for a in aa}
    area_no = {a: i + 1 for i, a in enumerate(sel.centres.tolist())}
    for a in sel.centres.tolist():
        for cell in sel.areas[a].tolist():
            v = float(f.get(cell, 0.0))
            r7 = float(recent_7d.get(cell, 0)) if recent_7d is not None else np.nan
            r28 = float(recent_28d.get(cell, 0)) if recent_28d is not None else np.nan
            hb = int(hotspot_bins.get(cell, 0)) if hotspot_bins is not None else None
            rk = int(ranks.get(cell, len(fe)))
            parts = [
                f"forecast {v:.2f} expected incidents this shift (rank {rk} of {len(fe)}, top {rk / max(len(fe), 1):.1%})"
            ]
            if recent_7d is not None:
                parts.append(f"{r7:.0f} incident(s) in the last 7 days, {r28:.0f} in 28")
            parts.append(_BIN_TEXT.get(hb, f"Gi* bin {hb}") if hb is not None else "hot-spot status not computed")
            if cell != a:
                parts.append(f"in the patrol area around {a:x}")
            rows.append(
                {
                    "unit": unit_of[a],
                    "area": area_no[a],
                    "centre": a,
                    "centre_hex": f"{a:x}",
                    "cell": cell,
                    "cell_hex": f"{cell:x}",
                    "forecast": v,
                    "rank": rk,
                    "recent_7d": r7,
                    "recent_28d": r28,
                    "hotspot_bin": hb if hb is not None else pd.NA,
                    "reason": "; ".join(parts),
                }
            )
    cells = pd.DataFrame(rows).sort_values(["unit", "area", "cell"], kind="mergesort").reset_index(drop=True)
    cells["hotspot_bin"] = cells["hotspot_bin"].astype("Int64")
    covered = float(cells["forecast"].sum())
    # The area's own reason is its centre's, with the area total prepended.
    area_val = cells.groupby("centre")["forecast"].sum()
    cells.loc[cells["cell"] == cells["centre"], "reason"] = [
        f"area total {area_val[c]:.2f}; " + r
        for c, r in cells.loc[cells["cell"] == cells["centre"], ["centre", "reason"]].itertuples(index=False)
    ]
    return Plan(
        cells=cells,
        schedule=sched,
        units=units,
        covered_share=covered / total if total > 0 else 0.0,
        covered=covered,
        total=total,
        status=sel.status,
        shift_start=t0,
        shift_end=t1,
        seed=seed,
        params={
            "n_units": n_units,
            "areas_per_unit": areas_per_unit,
            "radius": radius,
            "spacing_cells": spacing_cells,
            "spacing_m": spacing_m,
            "max_consecutive_days": max_consecutive_days,
            "capped_cells": len(capped),
            "excluded_cells": len(set(int(x) for x in excluded)),
        },
    )


def _rank_order(f: pd.Series) -> np.ndarray:
    idx = f.index.to_numpy(np.int64)
    return idx[np.lexsort((idx, -f.to_numpy(float)))]


def _assign(sel: Selection, n_units: int, per_unit: int, seed: int) -> dict[int, list[int]]:
    centres = sel.centres.tolist()
    if per_unit == 1:
        return {i + 1: [c] for i, c in enumerate(centres)}
    import h3
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    ll = np.array([h3.api.basic_int.cell_to_latlng(c) for c in centres])
    xy = np.column_stack([ll[:, 1] * np.cos(np.radians(ll[:, 0].mean())), ll[:, 0]]) * 111_320.0
    km = KMeans(n_clusters=n_units, n_init=10, random_state=seed).fit(xy)
    anchors = km.cluster_centers_[np.lexsort((km.cluster_centers_[:, 1], km.cluster_centers_[:, 0]))]
    slots = np.repeat(anchors, per_unit, axis=0)
    cost = np.linalg.norm(xy[:, None, :] - slots[None, :, :], axis=2)
    r, cidx = linear_sum_assignment(cost)
    units: dict[int, list[int]] = {u + 1: [] for u in range(n_units)}
    for i, s in zip(r, cidx):
        units[int(s // per_unit) + 1].append(centres[i])
    return {u: sorted(v, key=centres.index) for u, v in units.items()}


def spacing_cells_for_metres(metres: float, res: int) -> int:
    """Smallest grid distance whose centre spacing is at least ``metres`` (for display)."""
    return int(np.ceil(metres / centre_spacing_m(res)))
