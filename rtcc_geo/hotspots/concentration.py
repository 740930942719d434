"""Crime concentration: Lorenz curve, Gini, top-share and the "power few".

A few places carry most crime (Weisburd's law of crime concentration). For
counts :math:`x_1..x_n` over *all* units of the study area (cells with no
incident included — leaving them out understates concentration):

* **Lorenz curve**: units sorted from most to least crime; the curve runs
  through :math:`(k/n, \\sum_{i \\le k} x_{(i)} / \\sum x)` from (0, 0) to
  (1, 1). (Crime analysts draw it "top first"; the usual economist's curve
  is its reflection.)
* **Gini** with the counts sorted ascending, :math:`x_{[1]} \\le \\dots \\le x_{[n]}`:

  .. math:: G = \\frac{2\\sum_{i=1}^{n} i\\,x_{[i]}}{n \\sum_i x_i} - \\frac{n+1}{n},

  0 when every unit has the same count, :math:`(n-1)/n` when one unit has all.
* **Top-p share**: the share of incidents in the :math:`k = \\lceil p\\,n \\rceil`
  units with most incidents (ties at the cut broken by unit id, so the result
  is deterministic).
* **Power few**: the smallest set of units that carries a given share of
  incidents (25 %, 50 %), and a ranked table of the top units.

Block addresses have no "zero" population (only addresses with an incident
are published), so their shares are over addresses with at least one
incident — say so when comparing with cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def _sorted_desc(counts: pd.Series) -> pd.Series:
    s = pd.Series(counts, dtype="float64")
    if (s < 0).any():
        raise ValueError("counts must be non-negative")
    if len(s) == 0 or s.sum() <= 0:
        raise ValueError("no incidents: concentration is undefined")
    # most first; ties broken by unit id for a deterministic order
    df = pd.DataFrame({"unit": s.index, "n": s.to_numpy()})
    df = df.sort_values(["n", "unit"], ascending=[False, True], kind="mergesort")
    return pd.Series(df["n"].to_numpy(), index=df["unit"].to_numpy())


def lorenz(counts: pd.Series) -> pd.DataFrame:
    """Lorenz curve (top first): columns ``share_units``, ``share_incidents``, starting at (0, 0)."""
    s = _sorted_desc(counts)
    n = len(s)
    cum = np.concatenate([[0.0], np.cumsum(s.to_numpy())]) / s.sum()
    return pd.DataFrame({"share_units": np.arange(n + 1) / n, "share_incidents": cum})


def gini(counts) -> float:
    """Gini coefficient of the counts (see module doc)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() <= 0:
        raise ValueError("no incidents: Gini is undefined")
    i = np.arange(1, n + 1)
    return float(2.0 * (i * x).sum() / (n * x.sum()) - (n + 1.0) / n)


def top_share(counts: pd.Series, p: float) -> float:
    """Share of incidents in the top ``ceil(p * n)`` units."""
    if not 0 < p <= 1:
        raise ValueError("p is a fraction of units in (0, 1]")
    s = _sorted_desc(counts)
    k = int(np.ceil(p * len(s) - 1e-9))
    return float(s.iloc[:k].sum() / s.sum())


def power_few(counts: pd.Series, top: float = 0.05) -> pd.DataFrame:
    """Ranked table of the top ``ceil(top * n)`` units: rank, unit, count,
    share, cum_share (of incidents), cum_units_share (of units)."""
    s = _sorted_desc(counts)
    n = len(s)
    k = int(np.ceil(top * n - 1e-9))
    head = s.iloc[:k]
    tot = s.sum()
    return pd.DataFrame(
        {
            "rank": np.arange(1, k + 1),
            "unit": head.index,
            "count": head.to_numpy().astype(np.int64),
            "share": head.to_numpy() / tot,
            "cum_share": np.cumsum(head.to_numpy()) / tot,
            "cum_units_share": np.arange(1, k + 1) / n,
        }
    )


def units_for_share(counts: pd.Series, share: float) -> int:
    """Fewest units that together carry at least ``share`` of incidents."""
    s = _sorted_desc(counts)
    cum = np.cumsum(s.to_numpy()) / s.sum()
    return int(np.searchsorted(cum, share - 1e-12) + 1)


@dataclass
class Concentration:
    """Summary of concentration over one kind of unit (cells or blocks)."""

    unit: str
    n_units: int
    n_incidents: int
    gini: float
    top1_share: float
    top5_share: float
    units_for_25: int
    units_for_50: int
    lorenz: pd.DataFrame
    power_few: pd.DataFrame

    def summary(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "unit",
                "n_units",
                "n_incidents",
                "gini",
                "top1_share",
                "top5_share",
                "units_for_25",
                "units_for_50",
            )
        }


def concentration(counts: pd.Series, unit: str = "cell", top: float = 0.05) -> Concentration:
    """All concentration figures for ``counts`` (index = unit id, zeros included)."""
    s = pd.Series(counts, dtype="float64")
    return Concentration(
        unit=unit,
        n_units=len(s),
        n_incidents=int(s.sum()),
        gini=gini(s.to_numpy()),
        top1_share=top_share(s, 0.01),
        top5_share=top_share(s, 0.05),
        units_for_25=units_for_share(s, 0.25),
        units_for_50=units_for_share(s, 0.50),
        lorenz=lorenz(s),
        power_few=power_few(s, top),
    )
