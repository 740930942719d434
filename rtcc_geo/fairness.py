"""Fairness audit of patrol plans: where the dosage goes against who lives there.

For a set of plans (one or more shifts) the audit reports

* **dosage by district and by census tract** — patrol minutes, residents,
  minutes per 1,000 residents. A patrol area's minutes are split evenly over
  its cells; a cell's minutes go to tracts by the share of the cell's area in
  each tract (areal weighting, :func:`tract_join`);
* **over-dosed tracts** — tracts whose minutes per resident exceed
  ``multiple`` x the median over dosed tracts (residents floored at
  ``min_residents``, so a tract of offices with 12 residents does not read
  as infinitely over-policed);
* **what drives the plan** — incidents in the patrolled cells reported by
  victims vs enforcement-driven ones (:func:`rtcc_geo.forecast.data.enforcement_mask`:
  drugs, disorder, warrants), against the city's share;
* **concentration over time** — Jaccard similarity of the patrolled cells of
  consecutive plans, ``|A n B| / |A u B|`` (1 = the same cells every day), and
  the share of all minutes in the 10 most-dosed tracts.

Tract population is areal-interpolated to cells the same way (uniform density
within a tract): ``pop_c = sum_t pop_t * area(c n t) / area(t)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: The census tract file (GeoJSON with ``GEOID`` and ``total_pop``) looked up beside the agency's data.
TRACTS_FILE = "census_tracts_pop.geojson"


def load_tracts(agency="philadelphia", path: str | Path | None = None):
    """Census tracts (EPSG:4326) with ``tract`` (GEOID) and ``population`` columns."""
    import geopandas as gpd

    from .config import load_agency

    if path is None:
        a = load_agency(agency) if isinstance(agency, str) else agency
        path = a.find_file(TRACTS_FILE)
        if path is None:
            raise FileNotFoundError(f"no {TRACTS_FILE} for agency {a.name} (put it beside its extracts)")
    g = gpd.read_file(path).to_crs(4326)
    if "GEOID" not in g.columns or "total_pop" not in g.columns:
        raise ValueError(f"{path}: tracts need GEOID and total_pop columns")
    out = gpd.GeoDataFrame(
        {"tract": g["GEOID"].astype(str), "population": pd.to_numeric(g["total_pop"]).fillna(0.0)},
        geometry=g.geometry,
        crs=g.crs,
    )
    return out[~out.geometry.is_empty & out.geometry.notna()].reset_index(drop=True)


_JOIN_CACHE: dict = {}


def tract_join(cells: np.ndarray, tracts) -> pd.DataFrame:
    """Areal join of H3 cells to tracts: one row per (cell, tract) that overlap.

    Columns ``cell``, ``tract``, ``area_m2`` (of the intersection, in the local
    UTM zone), ``cell_share`` (of the cell's area) and ``tract_share`` (of the
    tract's area). Candidate pairs come from an STR-tree; intersections are
    computed vectorised with shapely. Cached per (cells, tracts).
    """
    import shapely

    from .grid import cells_to_geodataframe

    cells = np.unique(np.asarray(cells, dtype=np.int64))
    key = (len(cells), int(cells.sum() % (1 << 61)), len(tracts), float(tracts["population"].sum()))
    if key in _JOIN_CACHE:
        return _JOIN_CACHE[key]
    hexes = cells_to_geodataframe(cells)
    crs = tracts.estimate_utm_crs()
    hg = hexes.to_crs(crs).geometry.to_numpy()
    tg = tracts.to_crs(crs).geometry.to_numpy()
    tree = shapely.STRtree(tg)
    i, j = tree.query(hg, predicate="intersects")
    area = shapely.area(shapely.intersection(hg[i], tg[j]))
    keep = area > 0
    i, j, area = i[keep], j[keep], area[keep]
    out = pd.DataFrame(
        {
            "cell": cells[i],
            "tract": tracts["tract"].to_numpy()[j],
            "area_m2": area,
            "cell_share": area / shapely.area(hg[i]),
            "tract_share": area / shapely.area(tg[j]),
        }
    )
    _JOIN_CACHE[key] = out
    return out


def cell_population(cells: np.ndarray, tracts) -> pd.Series:
    """Residents per cell by areal weighting (see module doc); cells outside every tract get 0."""
    cells = np.asarray(cells, dtype=np.int64)
    j = tract_join(cells, tracts)
    pop = tracts.set_index("tract")["population"]
    per = (j["tract_share"] * j["tract"].map(pop).to_numpy()).groupby(j["cell"]).sum()
    return per.reindex(cells, fill_value=0.0).rename("population")


def plan_minutes(cells: pd.DataFrame, schedule: pd.DataFrame) -> pd.DataFrame:
    """Patrol minutes per cell of one plan: each area's visit minutes split evenly over its cells.

    ``cells`` is a plan's cell table (``centre``, ``cell``), ``schedule`` its visits
    (``area`` = centre cell, ``minutes``).
    """
    per_area = schedule.groupby("area")["minutes"].sum()
    n = cells.groupby("centre")["cell"].transform("size")
    m = cells["centre"].map(per_area).fillna(0.0) / n
    return pd.DataFrame({"cell": cells["cell"].astype(np.int64).to_numpy(), "minutes": m.to_numpy(float)})


@dataclass
class Audit:
    """The audit's tables (see module doc) and its plain-language warnings."""

    by_tract: pd.DataFrame
    by_district: pd.DataFrame
    reporting: pd.DataFrame
    concentration: pd.DataFrame
    warnings: list[str]
    summary: dict = field(default_factory=dict)

    def text(self) -> str:
        s = self.summary
        lines = [
            (
                f"Fairness audit: {s['plans']} plan(s), {s['minutes']:,.0f} patrol minutes in {s['tracts_dosed']} of "
                f"{s['tracts']} census tracts."
            ),
            (
                f"{s['districts_dosed']} police districts dosed; {s['minutes_outside_tracts']:,.0f} minutes fall "
                "outside every tract (water, the city edge)."
            ),
            (
                f"Median dosage over dosed tracts: {s['median_per_1000']:.1f} min per 1,000 residents; "
                f"warning above {s['multiple']:g}x that."
            ),
            (
                f"Share of all minutes in the 10 most-dosed tracts: {s['top10_share']:.0%}; residents there: "
                f"{s['top10_residents_share']:.1%} of the city."
            ),
        ]
        if "mean_jaccard" in s:
            lines.append(
                f"Day-to-day overlap of patrolled cells (Jaccard): mean {s['mean_jaccard']:.2f} "
                "(1 = the same cells every day)."
            )
        r = self.reporting.set_index("where")
        if len(r):
            lines.append(
                "Incidents in the period: enforcement-driven (drugs, disorder, warrants) share "
                + ", ".join(f"{w} {v:.1%}" for w, v in r["enforcement_share"].items())
                + "."
            )
        lines.append(
            "Dosage by district (min per 1,000 residents): "
            + ", ".join(
                f"{d} {v:.0f}" for d, v in self.by_district.set_index("district")["per_1000"].items() if np.isfinite(v)
            )
        )
        lines += [f"WARNING: {w}" for w in self.warnings] or ["No tract above the dosage limit."]
        return "\n".join(lines)


def audit(
    minutes: pd.DataFrame,
    tracts,
    *,
    districts=None,
    incidents: pd.DataFrame | None = None,
    res: int = 10,
    multiple: float = 3.0,
    min_residents: float = 500.0,
) -> Audit:
    """Audit the dosage in ``minutes`` (columns ``plan``, ``cell``, ``minutes``; ``plan`` = the
    plan's label, e.g. its date) against ``tracts`` (:func:`load_tracts`).

    ``districts``: GeoDataFrame of district polygons with a ``district`` column (optional);
    ``incidents``: canonical incidents of the period (``category``, ``offense_raw``,
    ``h3_r<res>``) for the victim-vs-enforcement table (optional).
    """
    from .forecast.data import enforcement_mask
    from .schema import h3_column

    if multiple <= 0 or min_residents < 0:
        raise ValueError("multiple must be > 0 and min_residents >= 0")
    if minutes.empty or minutes["minutes"].sum() <= 0:
        raise ValueError("no patrol minutes to audit: the plans are empty")
    per_cell = minutes.groupby("cell")["minutes"].sum()
    j = tract_join(per_cell.index.to_numpy(np.int64), tracts)
    j = j.assign(minutes=j["cell"].map(per_cell).to_numpy() * j["cell_share"].to_numpy())
    bt = tracts[["tract", "population"]].copy()
    bt["minutes"] = bt["tract"].map(j.groupby("tract")["minutes"].sum()).fillna(0.0)
    bt["per_1000"] = bt["minutes"] / np.maximum(bt["population"], min_residents) * 1000.0
    dosed = bt[bt["minutes"] > 0]
    med = float(dosed["per_1000"].median())
    bt["ratio_to_median"] = bt["per_1000"] / med
    bt["over_limit"] = bt["ratio_to_median"] > multiple
    bt = bt.sort_values("minutes", ascending=False).reset_index(drop=True)
    warnings = [
        f"tract {r.tract} ({r.population:,.0f} residents) gets {r.per_1000:.0f} min per 1,000 residents, "
        f"{r.ratio_to_median:.1f}x the median of dosed tracts (limit {multiple:g}x)"
        for r in bt[bt["over_limit"]].itertuples()
    ]
    # Districts: tract population and minutes assigned to the district holding the tract's centre.
    if districts is not None:
        pts = tracts.copy()
        pts["geometry"] = tracts.geometry.representative_point()
        import geopandas as gpd

        jd = gpd.sjoin(pts, districts[["district", "geometry"]], how="left", predicate="within")
        jd = jd.drop_duplicates("tract").set_index("tract")["district"]
        bt["district"] = bt["tract"].map(jd).astype("string").fillna("outside")
        bd = bt.groupby("district", as_index=False)[["minutes", "population"]].sum()
        bd["per_1000"] = bd["minutes"] / np.maximum(bd["population"], min_residents) * 1000.0
        bd = bd.sort_values("per_1000", ascending=False).reset_index(drop=True)
    else:
        bd = pd.DataFrame(columns=["district", "minutes", "population", "per_1000"])
    # Victim-reported vs enforcement-driven incidents: city-wide and in the patrolled cells.
    rep = []
    if incidents is not None and len(incidents):
        enf = enforcement_mask(incidents)
        col = h3_column(res)
        inside = (
            incidents[col].isin(per_cell.index).to_numpy() if col in incidents.columns else np.zeros(len(enf), bool)
        )
        for where, m in (("city", np.ones(len(enf), bool)), ("patrolled cells", inside)):
            n = int(m.sum())
            rep.append(
                {
                    "where": where,
                    "incidents": n,
                    "victim_reported": int((~enf & m).sum()),
                    "enforcement_driven": int((enf & m).sum()),
                    "enforcement_share": float((enf & m).sum() / n) if n else float("nan"),
                }
            )
    # Concentration over time: Jaccard of consecutive plans' cells.
    plans = list(dict.fromkeys(minutes["plan"].tolist()))
    sets = [set(minutes.loc[(minutes["plan"] == p) & (minutes["minutes"] > 0), "cell"].tolist()) for p in plans]
    conc = pd.DataFrame(
        [
            {
                "plan": plans[i],
                "previous": plans[i - 1],
                "cells": len(sets[i]),
                "jaccard": jaccard(sets[i - 1], sets[i]),
            }
            for i in range(1, len(plans))
        ],
        columns=["plan", "previous", "cells", "jaccard"],
    )
    top = bt.head(10)
    total = float(per_cell.sum())
    summary = {
        "plans": len(plans),
        "minutes": total,
        "minutes_outside_tracts": max(total - float(bt["minutes"].sum()), 0.0),
        "tracts": len(bt),
        "tracts_dosed": int((bt["minutes"] > 0).sum()),
        "districts_dosed": int((bd["minutes"] > 0).sum()) if len(bd) else 0,
        "median_per_1000": med,
        "multiple": multiple,
        "min_residents": min_residents,
        "top10_share": float(top["minutes"].sum() / bt["minutes"].sum()),
        "top10_residents_share": float(top["population"].sum() / max(bt["population"].sum(), 1.0)),
        "over_limit": int(bt["over_limit"].sum()),
    }
    if len(conc):
        summary["mean_jaccard"] = float(conc["jaccard"].mean())
    return Audit(bt, bd, pd.DataFrame(rep), conc, warnings, summary)


def jaccard(a: set, b: set) -> float:
    """``|a n b| / |a u b|`` (1.0 for two empty sets)."""
    u = len(a | b)
    return len(a & b) / u if u else 1.0


def over_limit_cells(minutes: pd.DataFrame, tracts, multiple: float = 3.0, min_residents: float = 500.0) -> set[int]:
    """Cells that lie (any part) in a tract over the dosage limit of :func:`audit`; a plan
    that excludes them stays under the cap (used by ``rtcc-geo deploy --max-dose-multiple``)."""
    a = audit(minutes, tracts, multiple=multiple, min_residents=min_residents)
    bad = set(a.by_tract.loc[a.by_tract["over_limit"], "tract"])
    if not bad:
        return set()
    j = tract_join(minutes["cell"].unique(), tracts)
    return set(j.loc[j["tract"].isin(bad), "cell"].astype(np.int64).tolist())


def districts_of(agency):
    """The agency's district polygons (``district`` column, EPSG:4326), or None when it has none."""
    from .config import load_agency

    a = load_agency(agency) if isinstance(agency, str) else agency
    path = a.find_file(a.districts_file) if a.districts_file else None
    if path is None or not a.districts_field:
        return None
    import geopandas as gpd

    g = gpd.read_file(path).to_crs(4326)
    return gpd.GeoDataFrame({"district": g[a.districts_field].astype(str)}, geometry=g.geometry, crs=g.crs)


def audit_minutes(
    store,
    source: str,
    minutes: pd.DataFrame,
    t0,
    t1,
    tracts,
    *,
    districts=None,
    res: int = 10,
    multiple: float = 3.0,
    min_residents: float = 500.0,
) -> Audit:
    """:func:`audit` of ``minutes`` with the period's incidents (local ``[t0, t1]``, whole days) read from ``store``."""
    from .schema import h3_column
    from .store.base import Query

    inc = store.incidents(
        Query(
            source=source,
            start=pd.Timestamp(t0).strftime("%Y-%m-%d"),
            end=(pd.Timestamp(t1).normalize() + pd.Timedelta(days=1)).strftime("%Y-%m-%d"),
        ),
        columns=["id", "category", "offense_raw", h3_column(res)],
    )
    return audit(
        minutes, tracts, districts=districts, incidents=inc, res=res, multiple=multiple, min_residents=min_residents
    )


@dataclass
class WeekAudit:
    """The audit of a week of default plans (:func:`audit_week`), and optionally what changes when
    enforcement-driven incidents are included in the target (``with_enforcement``)."""

    week_start: pd.Timestamp
    audit: Audit
    minutes: pd.DataFrame
    with_enforcement: dict | None = None


def week_minutes(plans) -> pd.DataFrame:
    """Patrol minutes per (plan, cell) of :func:`rtcc_geo.deploy.api.plan_week`'s plans; ``plan`` = the shift's date."""
    return pd.concat(
        [plan_minutes(p.cells, p.schedule).assign(plan=f"{p.shift_start:%Y-%m-%d}") for p in plans], ignore_index=True
    )


def audit_week(
    store,
    source: str,
    week_start,
    *,
    tracts=None,
    districts=None,
    units: int = 8,
    shift_start_hour: float = 16.0,
    shift_hours: float = 8.0,
    category: str | None = None,
    model: str | None = None,
    res: int = 10,
    spacing_m: float = 500.0,
    max_dose_multiple: float | None = None,
    compare_enforcement: bool = False,
    multiple: float = 3.0,
    min_residents: float = 500.0,
) -> WeekAudit:
    """Make the default plan for each of the 7 days from ``week_start`` (local date; the deployment
    defaults of :mod:`rtcc_geo.defaults`) and audit them; with ``compare_enforcement`` also make
    the plans with enforcement-driven incidents in the target (``"all"``) and report the effect.

    The one implementation behind ``rtcc-geo audit-bias --week`` and the app's fairness page.
    """
    from . import defaults as D
    from .deploy.api import plan_week

    category = D.DEPLOY_TARGET if category is None else category
    model = D.DEPLOY_MODEL if model is None else model
    if tracts is None:
        tracts = load_tracts(source)
    if districts is None:
        districts = districts_of(source)
    d0 = pd.Timestamp(week_start).normalize()
    kw = {
        "units": units,
        "shift_start_hour": shift_start_hour,
        "shift_hours": shift_hours,
        "model": model,
        "res": res,
        "spacing_m": spacing_m,
        "max_dose_multiple": max_dose_multiple,
        "tracts": tracts,
    }
    t1 = d0 + pd.Timedelta(days=7)

    def planned(target: str) -> tuple[pd.DataFrame, Audit]:
        m = week_minutes(plan_week(store, source, d0, category=target, **kw))
        return m, audit_minutes(
            store,
            source,
            m,
            d0,
            t1,
            tracts,
            districts=districts,
            res=res,
            multiple=multiple,
            min_residents=min_residents,
        )

    minutes, res_a = planned(category)
    cmp = None
    if compare_enforcement:
        om, ores = planned("all")
        rep = ores.reporting.set_index("where") if len(ores.reporting) else None
        cmp = {
            "target": "all (enforcement-driven included)",
            "cell_overlap_jaccard": jaccard(set(minutes["cell"]), set(om["cell"])),
            "over_limit_tracts": ores.summary["over_limit"],
            "top10_share": ores.summary["top10_share"],
            "enforcement_share_in_patrolled_cells": float(rep.at["patrolled cells", "enforcement_share"])
            if rep is not None
            else float("nan"),
            "by_district_per_1000": ores.by_district.set_index("district")["per_1000"].round(1).to_dict(),
        }
    return WeekAudit(d0, res_a, minutes, cmp)
