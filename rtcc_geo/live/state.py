"""Incremental live state: rolling-window counts per cell and current hot-spot status.

A real-time centre cannot recompute a year of history for every incident
that arrives. :class:`RollingState` keeps, for the cells of the study area,

* ``y``: the number of incidents in the rolling window ``(now - window, now]``,
* ``lag``: the Gi* star neighbourhood sums :math:`\\sum_j w^*_{ij} y_j`,
* the global sums :math:`\\sum y` and :math:`\\sum y^2`,

and updates them in O(neighbours) per arriving or expiring incident: an
incident in cell *c* adds one to ``y[c]`` and to ``lag[j]`` for every *j*
whose star neighbourhood holds *c* (column *c* of :math:`W^*`). The Gi*
z-scores then follow in one vectorised O(n) pass from those sums, with the
same formula as :class:`rtcc_geo.hotspots.gistar.GiStar` (Getis & Ord 1992);
no incident history is touched. :meth:`RollingState.recompute` rebuilds
everything from a list of incidents (the periodic full recompute that fixes
drift, e.g. after late or corrected records), and the two agree exactly
(integer counts, tested).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from ..hotspots.fdr import confidence_bins


@dataclass
class HotspotStatus:
    """Current Gi* status of every cell of the study area (plain arrays)."""

    cells: np.ndarray
    y: np.ndarray
    z: np.ndarray
    p: np.ndarray
    bin: np.ndarray  # ArcGIS-style -3..3 after FDR

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"cell": self.cells, "count": self.y, "z": self.z, "p": self.p, "bin": self.bin})


class RollingState:
    """Rolling-window counts and Gi* status over a fixed set of cells.

    Parameters
    ----------
    cells : sorted int64 H3 ids of the study area (one resolution).
    weights : (n, n) binary sparse matrix over ``cells`` with a zero diagonal
        (e.g. ``rtcc_geo.hotspots.weights.kring_weights(cells, 1).sparse``);
        the star self-weight is added here.
    window : rolling window length (e.g. ``"28D"``).
    """

    def __init__(self, cells: np.ndarray, weights, window: str | pd.Timedelta = "28D"):
        self.cells = np.asarray(cells, dtype=np.int64)
        if np.any(np.diff(self.cells) <= 0):
            raise ValueError("cells must be sorted and unique")
        n = len(self.cells)
        W = sp.csr_matrix(weights, dtype=np.float64)
        if W.shape != (n, n):
            raise ValueError(f"weights are {W.shape} for {n} cells")
        W.setdiag(0)
        W.eliminate_zeros()
        self._wstar = (W + sp.identity(n, format="csr")).tocsc()  # column c: cells whose lag holds c
        self.card = np.asarray(self._wstar.sum(axis=0)).ravel()  # W*_i (symmetric weights)
        self.window = pd.Timedelta(window)
        self.now: pd.Timestamp | None = None
        self._reset()

    def _reset(self) -> None:
        n = len(self.cells)
        self.y = np.zeros(n, dtype=np.int64)
        self.lag = np.zeros(n, dtype=np.int64)
        self._heap: list[tuple[int, str, int]] = []  # (time ns, id, cell position)
        self._ids: set[str] = set()
        self.outside = 0  # incidents whose cell is not in the study area

    # --- updates -----------------------------------------------------------
    def add(self, ids, times, cells) -> int:
        """Add incidents (ids, UTC times, H3 cells); returns how many were new.

        An id seen before is ignored (the feed is at-least-once). Incidents
        already older than the window are ignored too.
        """
        times = pd.to_datetime(pd.Series(times), utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
        cells = np.asarray(cells, dtype=np.int64)
        pos = np.searchsorted(self.cells, cells)
        pos = np.minimum(pos, len(self.cells) - 1)
        inside = self.cells[pos] == cells
        added = 0
        for i, t, p, ok in zip(list(ids), times.tolist(), pos.tolist(), inside.tolist()):
            i = str(i)
            if i in self._ids:
                continue
            if not ok:
                self.outside += 1
                self._ids.add(i)
                continue
            if self.now is not None and t <= self._cutoff_ns():
                continue
            self._ids.add(i)
            heapq.heappush(self._heap, (t, i, p))
            self._bump(p, +1)
            added += 1
        return added

    def advance(self, now) -> int:
        """Move the clock to ``now`` and expire incidents older than the window."""
        now = pd.Timestamp(now)
        now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        if self.now is not None and now < self.now:
            return 0
        self.now = now
        cut = self._cutoff_ns()
        expired = 0
        while self._heap and self._heap[0][0] <= cut:
            _, i, p = heapq.heappop(self._heap)
            self._ids.discard(i)
            self._bump(p, -1)
            expired += 1
        return expired

    def recompute(self, ids, times, cells, now) -> None:
        """Full rebuild from the incidents given (the periodic drift fix)."""
        self._reset()
        self.now = None
        self.add(ids, times, cells)
        self.advance(now)

    def _cutoff_ns(self) -> int:
        return int((self.now - self.window).value)

    def _bump(self, p: int, d: int) -> None:
        self.y[p] += d
        col = slice(self._wstar.indptr[p], self._wstar.indptr[p + 1])
        self.lag[self._wstar.indices[col]] += d

    # --- reads -------------------------------------------------------------
    @property
    def total(self) -> int:
        return int(self.y.sum())

    def status(self, fdr: bool = True) -> HotspotStatus:
        """Gi* z, two-sided p and FDR bins from the maintained sums (O(n))."""
        n = len(self.cells)
        y = self.y.astype(np.float64)
        total = y.sum()
        if total <= 0:
            zeros = np.zeros(n)
            return HotspotStatus(self.cells, self.y.copy(), zeros, np.ones(n), np.zeros(n, dtype=np.int64))
        ybar = total / n
        s2 = (y**2).sum() / n - ybar**2
        G = self.lag / total
        EG = self.card / n
        VG = self.card * (n - self.card) / (n - 1) / n**2 * (s2 / ybar**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(VG > 0, (G - EG) / np.sqrt(VG), 0.0)
        p = 2.0 * stats.norm.sf(np.abs(z))
        return HotspotStatus(self.cells, self.y.copy(), z, p, confidence_bins(z, p, fdr=fdr))

    def bin_of(self, cell: int, status: HotspotStatus | None = None) -> int:
        st = status or self.status()
        pos = int(np.searchsorted(self.cells, cell))
        if pos >= len(self.cells) or self.cells[pos] != cell:
            return 0
        return int(st.bin[pos])
