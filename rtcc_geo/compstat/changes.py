"""What changed: the cells and districts whose counts rose beyond what chance allows.

For each unit (H3 cell or district), ``a`` incidents in the current period of
``days`` local days and ``b`` in the baseline of ``baseline_days`` days just
before it. Under H0 (the baseline rate goes on), conditional on ``n = a + b``,
``a ~ Binomial(n, p0)`` with ``p0 = days / (days + baseline_days)``; the
one-sided p-value of a rise is ``P(X >= a) = binom.sf(a - 1, n, p0)`` (the
exact conditional test of :mod:`.stats`, upper tail). With hundreds of cells,
the p-values are adjusted with Benjamini-Hochberg (false-discovery rate
``alpha``) before a unit is called a rise. Rises are ranked by their excess
``a - expected`` (``expected = b * days / baseline_days``).

Where the existing analyses agree, a cell is also labelled with its Emerging
Hot Spot class (:func:`rtcc_geo.temporal.emerging.emerging_hotspots` on
weekly counts of the last ``ehsa_weeks`` weeks): "new", "intensifying",
"consecutive" hot spots and the like.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
from scipy.stats import binom

from ..store.base import Query, Store
from .periods import Span

DEFAULT_DAYS = 28
#: Baseline = the 12 weeks before the current 28 days (3 x the period): long
#: enough that one odd week does not make the baseline.
DEFAULT_BASELINE_DAYS = 84
TEST_NAME = "one-sided exact conditional binomial test (this period vs baseline), Benjamini-Hochberg FDR"


@dataclasses.dataclass
class Changes:
    """``table``: one row per unit that rose beyond chance, largest excess first."""

    end: dt.date
    current: Span
    baseline: Span
    res: int
    alpha: float
    table: (
        pd.DataFrame
    )  # unit, key, district, place, current, baseline, expected, excess, ratio, p_value, q_value, ehsa
    tested: dict[str, int]  # units tested, per kind

    def summary(self) -> dict:
        return {
            "end": self.end.isoformat(),
            "current": [self.current.start.isoformat(), self.current.end.isoformat()],
            "baseline": [self.baseline.start.isoformat(), self.baseline.end.isoformat()],
            "res": self.res,
            "alpha": self.alpha,
            "test": TEST_NAME,
            "tested": self.tested,
            "rises": self.table.astype(object).where(self.table.notna(), None).to_dict(orient="records"),
        }


def rise_p(a, b, days: float, baseline_days: float) -> np.ndarray:
    """One-sided p-values ``P(X >= a)``, ``X ~ Binomial(a + b, days / (days + baseline_days))``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    p0 = days / (days + baseline_days)
    return np.where(a > 0, binom.sf(a - 1, a + b, p0), 1.0)


def what_changed(
    store: Store,
    query: Query | None = None,
    end: str | dt.date | None = None,
    res: int = 8,
    days: int = DEFAULT_DAYS,
    baseline_days: int = DEFAULT_BASELINE_DAYS,
    alpha: float = 0.05,
    ehsa_weeks: int = 12,
    top: int | None = 20,
    names: bool = True,
) -> Changes:
    """Cells (at ``res``) and districts that rose beyond chance in the ``days``
    local days ending on ``end`` against the ``baseline_days`` before (see the
    module doc). At most ``top`` rises per kind are kept (None: all);
    ``names=False`` skips the block-address names, ``ehsa_weeks=0`` the EHSA labels."""
    from ..hotspots.fdr import bh_adjust
    from .api import resolve

    if days < 1 or baseline_days < 1:
        raise ValueError("days and baseline_days must be >= 1")
    query, source, _tz, end_d = resolve(store, query, end, alpha)
    cur = Span(end_d - dt.timedelta(days=days - 1), end_d)
    base = Span(cur.start - dt.timedelta(days=baseline_days), cur.start - dt.timedelta(days=1))
    q = query.with_(source=source)
    qc = q.with_(start=pd.Timestamp(cur.start), end=pd.Timestamp(end_d + dt.timedelta(days=1)))
    qb = q.with_(start=pd.Timestamp(base.start), end=pd.Timestamp(cur.start))
    frames, tested = [], {}
    for kind, by in (("cell", "cell"), ("district", "district")):
        a = store.counts(res, (by,), qc).set_index(by)["n"]
        b = store.counts(res, (by,), qb).set_index(by)["n"]
        keys = a.index.union(b.index)
        a, b = a.reindex(keys, fill_value=0), b.reindex(keys, fill_value=0)
        tested[kind] = len(keys)
        if not len(keys):
            continue
        p = rise_p(a.to_numpy(), b.to_numpy(), days, baseline_days)
        qv = bh_adjust(p)
        expected = b.to_numpy() * days / baseline_days
        f = pd.DataFrame(
            {
                "unit": kind,
                "key": keys.astype(str),
                "current": a.to_numpy(),
                "baseline": b.to_numpy(),
                "expected": np.round(expected, 2),
                "excess": np.round(a.to_numpy() - expected, 2),
                "ratio": np.round(a.to_numpy() / np.maximum(expected, 1e-9), 2),
                "p_value": p,
                "q_value": qv,
            }
        )
        f = f[(f["q_value"] < alpha) & (f["excess"] > 0)]
        f = f.sort_values(["excess", "key"], ascending=[False, True], kind="mergesort")
        frames.append(f if top is None else f.head(top))
    if not sum(tested.values()):
        raise ValueError(f"no {source} incidents between {base.start} and {end_d}: nothing to compare")
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if names:
        table = _describe(store, qc, table, res)
    else:
        table = table.assign(place="", district="")
    table = _ehsa(store, q, table, res, end_d, ehsa_weeks, alpha)
    return Changes(end_d, cur, base, res, alpha, table.reset_index(drop=True), tested)


def _describe(store: Store, qc: Query, table: pd.DataFrame, res: int) -> pd.DataFrame:
    """Name each rise by its most frequent block addresses (and its cells' district)."""
    from ..places import describe, top_places

    table = table.copy()
    table["place"] = ""
    table["district"] = ""
    for i, r in table.iterrows():
        if r["unit"] == "cell":
            tp = top_places(store, qc, cells=[int(r["key"])], res=res, n=2)
            d = store.counts(res, ("district",), qc.with_(cells=(int(r["key"]),), cells_res=res))
            table.at[i, "district"] = str(d.sort_values("n", ascending=False)["district"].iloc[0]) if len(d) else ""
        else:
            tp = top_places(store, qc, district=r["key"], n=2)
            table.at[i, "district"] = r["key"]
        table.at[i, "place"] = describe(tp)
    return table


def _ehsa(
    store: Store, q: Query, table: pd.DataFrame, res: int, end: dt.date, weeks: int, alpha: float
) -> pd.DataFrame:
    """Emerging Hot Spot class of each rising cell (weekly cube of the last ``weeks`` weeks)."""
    table = table.copy()
    table["ehsa"] = ""
    cells = table.loc[table["unit"] == "cell", "key"].astype(np.int64) if len(table) else pd.Series([], dtype=np.int64)
    if weeks < 3 or not len(cells):
        return table
    from ..temporal.cube import build_cube
    from ..temporal.emerging import emerging_hotspots

    # Whole weeks ending on the Sunday on or before ``end`` (ISO weeks start on Monday).
    last_monday = end - dt.timedelta(days=end.weekday())
    stop = last_monday if end.weekday() != 6 else end + dt.timedelta(days=1)
    start = stop - dt.timedelta(weeks=weeks)
    cube = build_cube(store, res, "week", q.with_(start=pd.Timestamp(start), end=pd.Timestamp(stop)))
    ehsa = emerging_hotspots(cube, alpha=alpha).table.set_index("cell")["category"]
    lab = ehsa.reindex(cells.to_numpy()).fillna("").astype(str).to_numpy()
    # Keep only the hot-spot classes: where EHSA agrees that the cell is hot.
    table.loc[table["unit"] == "cell", "ehsa"] = np.where(pd.Series(lab).str.endswith("hot spot"), lab, "")
    return table
