"""Per-hot-spot temporal profile: in which hours of the week is each hot spot hot?

A hot spot (a significant cell, or a connected group of them) is a *place*;
deployment also needs the *time*. For hot spot ``h`` with ``N_h`` incidents
(hour-level, aoristic) and hour-of-week bin ``b``:

.. math::

    E_{hb} = N_h \\, \\pi_b, \\qquad \\pi_b = \\frac{\\text{city count in } b}{\\text{city total}}

is what the hot spot would see if its incidents followed the city-wide
weekly rhythm. The bin is **hot** when the observed count ``O_hb`` is
significantly above ``E_hb``: one-sided Poisson test
``p = P(X >= O_hb | X ~ Poisson(E_hb))`` (aoristic counts are rounded to the
nearest integer for the test), Benjamini–Hochberg FDR over the hot spot's
168 bins at ``alpha``. So the profile says "this corner is hot Friday
20:00–02:00 *beyond* the city's Friday-night peak", which is where a unit
adds most.

Hot spots are either the cells themselves (``group="cell"``) or the
connected components of the given cells under H3 k-ring adjacency
(``group="cluster"``, default), so a hot spot of five touching cells gets
one profile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import poisson

from .aoristic import aoristic_counts
from .signatures import DOW_NAMES


@dataclass
class HotSpotProfiles:
    """``table``: one row per (hotspot, hour_of_week) with ``n``, ``expected``,
    ``ratio``, ``p``, ``hot``; ``hot_hours``: one row per hot spot with its
    cells, incident count and the hot hours as readable ranges."""

    table: pd.DataFrame
    hot_hours: pd.DataFrame
    members: pd.DataFrame  # cell -> hotspot


def cluster_cells(cells: np.ndarray, k: int = 1) -> np.ndarray:
    """Connected-component label of each cell under k-ring adjacency."""
    from scipy.sparse.csgraph import connected_components

    from ..hotspots.weights import kring_weights

    cells = np.asarray(cells, dtype=np.int64)
    hw = kring_weights(cells, k)
    order = hw.index_of(cells)
    _, lab = connected_components(sp.csr_matrix(hw.sparse), directed=False)
    return lab[order].astype(np.int64)


def hour_ranges(hours: np.ndarray) -> str:
    """Readable ranges of hour-of-week bins, e.g. ``"Fri 20-24, Sat 00-03"``."""
    hours = np.sort(np.asarray(hours, dtype=np.int64))
    if hours.size == 0:
        return ""
    runs, start, prev = [], hours[0], hours[0]
    for h in hours[1:]:
        if h == prev + 1 and h % 24 != 0:
            prev = h
            continue
        runs.append((start, prev))
        start = prev = h
    runs.append((start, prev))
    return ", ".join(f"{DOW_NAMES[a // 24]} {a % 24:02d}-{b % 24 + 1:02d}" for a, b in runs)


def hotspot_profiles(
    incidents: pd.DataFrame | Iterable[pd.DataFrame],
    tz: str,
    hot_cells: np.ndarray,
    res: int,
    group: str = "cluster",
    alpha: float = 0.05,
    baseline: np.ndarray | None = None,
    k: int = 1,
) -> HotSpotProfiles:
    """Hour-of-week profile of each hot spot.

    ``incidents``: canonical rows (all of the area and period, used for the
    city baseline unless ``baseline`` — a 168-vector — is given), as one frame
    or as consecutive batches (e.g. :func:`~rtcc_geo.temporal.stream.iter_incidents`:
    rows are needed because from/to windows are spread over hours, and only
    168-bin sums per hot spot are kept between batches);
    ``hot_cells``: the significant hot cells at ``res`` (e.g. the ``cell``
    of a hot-spot table where the bin is positive).
    """
    from .. import grid

    hot_cells = np.unique(np.asarray(hot_cells, dtype=np.int64))
    if hot_cells.size == 0:
        raise ValueError("no hot cells given: run the hot-spot analysis first and pass its significant cells")
    if group not in ("cluster", "cell"):
        raise ValueError("group must be 'cluster' (connected hot cells) or 'cell'")
    lab = cluster_cells(hot_cells, k) if group == "cluster" else np.arange(len(hot_cells))
    ng = int(lab.max()) + 1
    size = np.zeros(ng, dtype=np.int64)
    obs_raw = np.zeros((ng, 168))
    city = np.zeros(168)
    for df in [incidents] if isinstance(incidents, pd.DataFrame) else incidents:
        if not len(df):
            continue
        groups = _hot_spot_of(df, hot_cells, lab, res)  # ng = "not in a hot spot"
        size += np.bincount(groups, minlength=ng + 1)[:ng]
        o = aoristic_counts(df, tz, "hour_of_week", groups=groups)
        obs_raw[: min(ng, len(o))] += o[:ng]
        if baseline is None:
            city += aoristic_counts(df, tz, "hour_of_week")
    if baseline is None:
        baseline = city
    baseline = np.asarray(baseline, dtype=np.float64)
    if baseline.shape != (168,) or baseline.sum() <= 0:
        raise ValueError("baseline must be a 168-vector of hour-of-week counts with a positive total")
    share = baseline / baseline.sum()
    # Number hot spots by size (incidents), largest first, so hot spot 0 is the biggest.
    rank = np.empty(ng, dtype=np.int64)
    rank[np.argsort(-size, kind="stable")] = np.arange(ng)
    lab = rank[lab]
    obs = np.empty_like(obs_raw)
    obs[rank] = obs_raw
    tot = obs.sum(axis=1, keepdims=True)
    exp = tot * share[None, :]
    p = poisson.sf(np.rint(obs) - 1, exp)  # P(X >= O)
    from ..hotspots.fdr import bh_reject

    hot = np.vstack([bh_reject(row, alpha) for row in p]) & (obs > exp)
    g, b = np.indices(obs.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(exp > 0, obs / exp, np.nan)
    table = pd.DataFrame(
        {
            "hotspot": g.ravel(),
            "hour_of_week": b.ravel(),
            "dow": b.ravel() // 24,
            "hour": b.ravel() % 24,
            "n": obs.ravel(),
            "expected": exp.ravel(),
            "ratio": ratio.ravel(),
            "p": p.ravel(),
            "hot": hot.ravel(),
        }
    )
    members = pd.DataFrame({"cell": hot_cells, "hotspot": lab})
    clat, clon = grid.cell_centres(hot_cells)
    summary = pd.DataFrame(
        {
            "hotspot": np.arange(ng),
            "lat": np.bincount(lab, weights=clat, minlength=ng) / np.bincount(lab, minlength=ng),
            "lon": np.bincount(lab, weights=clon, minlength=ng) / np.bincount(lab, minlength=ng),
            "cells": members.groupby("hotspot")["cell"].size().reindex(range(ng)).to_numpy(),
            "incidents": tot.ravel(),
            "hot_bins": hot.sum(axis=1),
            "hot_hours": [hour_ranges(np.flatnonzero(hot[h])) for h in range(ng)],
            "peak_hour_of_week": obs.argmax(axis=1),
        }
    )
    return HotSpotProfiles(table=table, hot_hours=summary, members=members)


def _hot_spot_of(df: pd.DataFrame, hot_cells: np.ndarray, lab: np.ndarray, res: int) -> np.ndarray:
    """Each row's hot-spot label ``lab`` (of its cell at ``res`` among the sorted
    ``hot_cells``), or ``lab.max() + 1`` when it lies in none."""
    from ..grid import parent
    from .cube import _finest_cell_column

    raw = df[_finest_cell_column(df, res)].to_numpy(np.int64)
    located = raw != 0  # not geolocated (schema.NO_CELL): in the city's rhythm, in no hot spot
    cell = np.full(len(raw), -1, dtype=np.int64)
    cell[located] = parent(raw[located], res)
    pos = np.minimum(np.searchsorted(hot_cells, cell), len(hot_cells) - 1)
    inside = hot_cells[pos] == cell
    return np.where(inside, lab[pos], int(lab.max()) + 1).astype(np.int64)
