"""Forecast accuracy at small areas: hit rate, PAI, PEI*, calibration.

A forecast ranks the ``N`` study cells; the analyst "flags" the top ``k`` and
we count how many of the ``n`` incidents that then happened fall in them.

* ``k`` for an area fraction ``f``: ``k = max(1, round_half_up(f N))``; for a
  fixed area ``A`` km²: ``k = max(1, floor(A / a))`` with ``a`` the cell area.
* **hit rate** ``H = captured / n`` (0 when ``n = 0``).
* **PAI** (Chainey et al. 2008) ``= H / (k / N)`` — hit rate per share of area.
* **PEI*** (Hunt 2016, used by the NIJ Real-Time Crime Forecasting Challenge)
  ``= captured / max captured by any k cells`` (the ``k`` largest observed
  counts); 1 means no ``k``-cell map could have done better. Undefined (NaN)
  when ``n = 0``.

Tie rule (deterministic, documented)
------------------------------------
Cells are ranked by forecast, highest first. Where cells tied at the cut-off
value straddle rank ``k``, the default ``ties="fractional"`` credits each tied
cell with the share ``s / t`` of a slot (``s`` slots left, ``t`` tied cells):
``captured = sum(obs above cut) + s / t * sum(obs tied)`` — the *expected*
capture under a random tie-break, so a model is never rewarded for a lucky
order of equal values (a naive model with many tied 1-counts would be).
``ties="cell_id"`` instead breaks ties by ascending cell id (a concrete set of
``k`` cells, as a map must show).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _arrays(forecast, observed, cells=None):
    if isinstance(forecast, pd.Series):
        f = forecast.to_numpy(np.float64)
        idx = forecast.index.to_numpy()
        if isinstance(observed, pd.Series):
            o = observed.reindex(forecast.index, fill_value=0).to_numpy(np.float64)
        else:
            o = np.asarray(observed, dtype=np.float64)
        ids = np.asarray(idx) if cells is None else np.asarray(cells)
    else:
        f = np.asarray(forecast, dtype=np.float64)
        o = np.asarray(observed, dtype=np.float64)
        ids = np.arange(len(f)) if cells is None else np.asarray(cells)
    if f.shape != o.shape:
        raise ValueError(f"forecast and observed differ in length ({len(f)} vs {len(o)})")
    if np.isnan(f).any():
        raise ValueError("forecast has NaN values; fill or drop them before scoring")
    return f, o, ids


def k_for_fraction(n_cells: int, fraction: float) -> int:
    """Number of flagged cells for an area fraction (at least 1)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"area fraction must be in (0, 1], got {fraction}")
    return max(1, int(np.floor(fraction * n_cells + 0.5)))


def k_for_area(area_km2: float, cell_km2: float) -> int:
    """Number of whole cells in a fixed area (at least 1)."""
    return max(1, int(np.floor(area_km2 / cell_km2 + 1e-9)))


def ranked_cells(forecast, cells=None) -> np.ndarray:
    """Cell ids ordered by forecast, highest first, ties by ascending cell id."""
    f, _, ids = _arrays(forecast, np.zeros(len(forecast)), cells)
    return ids[np.lexsort((ids, -f))]


def captured(forecast, observed, k: int, ties: str = "fractional", cells=None) -> float:
    """Incidents falling in the top ``k`` cells of ``forecast`` (see the tie rule)."""
    f, o, ids = _arrays(forecast, observed, cells)
    n = len(f)
    k = int(min(max(k, 0), n))
    if k == 0:
        return 0.0
    if ties == "cell_id":
        order = np.lexsort((ids, -f))
        return float(o[order[:k]].sum())
    if ties != "fractional":
        raise ValueError("ties must be 'fractional' or 'cell_id'")
    cut = np.partition(f, n - k)[n - k]  # k-th largest value
    above = f > cut
    tied = f == cut
    slots = k - int(above.sum())
    return float(o[above].sum() + slots / tied.sum() * o[tied].sum())


def best_possible(observed, k: int) -> float:
    """Most incidents any ``k`` cells could have captured."""
    o = np.asarray(observed, dtype=np.float64)
    k = int(min(max(k, 0), len(o)))
    return float(np.sort(o)[::-1][:k].sum()) if k else 0.0


def hit_rate(forecast, observed, k: int, ties: str = "fractional") -> float:
    n = (
        float(np.asarray(observed, dtype=np.float64).sum())
        if not isinstance(observed, pd.Series)
        else float(observed.sum())
    )
    return captured(forecast, observed, k, ties) / n if n > 0 else 0.0


def pai(forecast, observed, k: int, ties: str = "fractional") -> float:
    n_cells = len(forecast)
    return hit_rate(forecast, observed, k, ties) / (k / n_cells)


def pei_star(forecast, observed, k: int, ties: str = "fractional") -> float:
    _, o, _ = _arrays(forecast, observed)
    best = best_possible(o, k)
    return captured(forecast, observed, k, ties) / best if best > 0 else float("nan")


def evaluate(
    forecast,
    observed,
    fractions: Sequence[float] = (0.01, 0.05),
    area_km2: float | None = None,
    cell_km2: float | None = None,
    ties: str = "fractional",
) -> dict[str, float]:
    """All scores for one forecast/outcome pair, as a flat dict.

    Keys: ``n`` (incidents), ``hit@1%``, ``pai@1%``, ``pei@1%`` for each
    fraction, and ``hit@<A>km2`` etc. when ``area_km2`` is given.
    """
    f, o, ids = _arrays(forecast, observed)
    n = float(o.sum())
    out: dict[str, float] = {"n": n}
    ks: list[tuple[str, int]] = [(f"{fr * 100:g}%", k_for_fraction(len(f), fr)) for fr in fractions]
    if area_km2 is not None:
        if cell_km2 is None:
            raise ValueError("area_km2 needs cell_km2 (the area of one cell)")
        ks.append((f"{area_km2:g}km2", k_for_area(area_km2, cell_km2)))
    for label, k in ks:
        cap = captured(f, o, k, ties, cells=ids)
        best = best_possible(o, k)
        h = cap / n if n > 0 else 0.0
        out[f"hit@{label}"] = h
        out[f"pai@{label}"] = h / (k / len(f))
        out[f"pei@{label}"] = cap / best if best > 0 else float("nan")
    return out


def hit_rate_curve(
    forecast, observed, fractions: Sequence[float] | None = None, ties: str = "fractional"
) -> pd.DataFrame:
    """Hit rate and PAI against the share of area flagged (one row per fraction)."""
    f, o, ids = _arrays(forecast, observed)
    fr = np.asarray(fractions if fractions is not None else [0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    n = o.sum()
    rows = []
    for x in fr:
        k = k_for_fraction(len(f), float(x))
        h = captured(f, o, k, ties, cells=ids) / n if n > 0 else 0.0
        rows.append({"area_fraction": float(x), "k": k, "hit_rate": h, "pai": h / (k / len(f))})
    return pd.DataFrame(rows)


#: Bins expecting fewer incidents than this get no calibration ratio.
MIN_CALIBRATION_PREDICTED = 0.5


def calibration(forecast, observed, bins: int = 10) -> pd.DataFrame:
    """Predicted vs observed totals by forecast quantile bin (cells ranked, equal-count bins).

    A calibrated forecast has ``observed / predicted`` near 1 in every bin.
    The last row (``bin = "all"``) gives the totals. Bins are numbered from the
    highest forecast down (``"1"`` .. ``"10"``, in row order). ``ratio`` is NaN
    where a bin expects less than :data:`MIN_CALIBRATION_PREDICTED` incidents:
    a ratio over next to nothing says nothing.
    """
    f, o, ids = _arrays(forecast, observed)
    order = np.lexsort((ids, -f))
    groups = np.array_split(order, bins)
    rows = []
    for i, g in enumerate(groups):
        p, ob = float(f[g].sum()), float(o[g].sum())
        rows.append(
            {
                "bin": str(i + 1),
                "cells": len(g),
                "predicted": p,
                "observed": ob,
                "ratio": ob / p if p >= MIN_CALIBRATION_PREDICTED else float("nan"),
            }
        )
    p, ob = float(f.sum()), float(o.sum())
    rows.append(
        {"bin": "all", "cells": len(f), "predicted": p, "observed": ob, "ratio": ob / p if p > 0 else float("nan")}
    )
    return pd.DataFrame(rows)


def pooled_calibration(cal: pd.DataFrame, min_predicted: float = 100.0) -> pd.DataFrame:
    """Decile table of :func:`calibration` (bins "1".."10", optionally an "all" row) with the
    lowest-forecast bins pooled, from the bottom up, until each pooled bin expects at least
    ``min_predicted`` incidents; every other bin is kept as it is.

    Why: Poisson noise alone moves ``observed / predicted`` by about ``1 / sqrt(expected)``,
    so a bin expecting 30 incidents has a ratio sd of 18 % and a 0.9-1.1 check on it would
    judge the weather, not the model. Pooling keeps every cell in some judged bin (nothing
    dropped); the bins' labels say what was pooled ("8-10"). A short remainder at the top
    of the pooled range joins the bin above it.
    """
    d = cal[cal["bin"].astype(str) != "all"].copy()
    d["bin"] = d["bin"].astype(str)
    rows: list[dict] = []
    acc: list = []
    for r in d.iloc[::-1].itertuples(index=False):  # lowest forecast first
        acc.append(r)
        if sum(x.predicted for x in acc) >= min_predicted:
            rows.append(_pool(acc))
            acc = []
    if acc:  # what is left (the highest bins, if they expect too little) joins the last pool
        rows[-1:] = [_pool(acc + (list(rows[-1]["members"]) if rows else []))]
    out = pd.DataFrame(rows[::-1]).drop(columns="members")
    out["ratio"] = out["observed"] / out["predicted"].where(out["predicted"] > 0)
    return out.reset_index(drop=True)


def _pool(members: list) -> dict:
    bins = sorted(int(m.bin) for m in members)
    label = str(bins[0]) if len(bins) == 1 else f"{bins[0]}-{bins[-1]}"
    return {
        "bin": label,
        "cells": sum(m.cells for m in members),
        "predicted": sum(m.predicted for m in members),
        "observed": sum(m.observed for m in members),
        "members": members,
    }
