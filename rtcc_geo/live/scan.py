"""Prospective space-time permutation scan (Kulldorff et al. 2005) on H3 cells.

Finds *emerging* clusters: a group of neighbouring cells where, in the most
recent days, there are more incidents than the cells' own history and the
city-wide daily totals would predict, with no population at risk needed
(only case counts, as SaTScan's space-time permutation model).

Cylinders
    Base = a centre cell and its k-ring (k = 0 .. ``max_k``, cells of the
    study area only); height = the last *t* days (t = 1 .. ``max_days``).
    Prospective: every cylinder ends on the last day of the study period.

Expected count
    With :math:`c_{zd}` incidents in cell *z* on day *d* and *C* in all,
    :math:`\\mu_{zd} = (\\sum_d c_{zd})(\\sum_z c_{zd}) / C`, and a cylinder's
    :math:`\\mu_A = \\sum_{(z,d) \\in A} \\mu_{zd}`.

Statistic
    Poisson generalised likelihood ratio, for :math:`c_A > \\mu_A`:
    :math:`\\log\\mathrm{GLR} = c_A \\log\\frac{c_A}{\\mu_A} + (C - c_A)\\log\\frac{C - c_A}{C - \\mu_A}`.
    The most likely cluster maximises it over all cylinders.

Inference
    Monte-Carlo: the incidents' days are permuted among them (keeping both
    the spatial and the temporal marginals), the maximum log GLR recomputed
    for each replicate, and :math:`p = (R + 1) / (N + 1)` with *R* replicates
    at least as large. The **recurrence interval** is the expected time
    between false alarms this strong when the scan runs every
    ``run_every_days``: :math:`RI = \\text{run\\_every\\_days} / p`
    (Kulldorff 2001; SaTScan's prospective surveillance). Alert only when
    RI is above a stated threshold (e.g. 100 days for daily runs): a
    threshold of 100 days means one false alarm every ~100 days at most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h3
import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class ScanCluster:
    centre: int  # H3 cell at the centre of the base
    k: int  # ring size of the base
    cells: np.ndarray  # the base's cells (study-area cells only)
    days: int  # height: the last `days` days
    start: pd.Timestamp  # first local day of the cluster window
    end: pd.Timestamp  # last local day (the study period's end)
    observed: int
    expected: float
    llr: float
    p: float
    recurrence_days: float

    def as_dict(self) -> dict:
        return {
            "centre": int(self.centre),
            "k": self.k,
            "cells": [int(c) for c in self.cells],
            "days": self.days,
            "start": str(self.start.date()),
            "end": str(self.end.date()),
            "observed": self.observed,
            "expected": round(self.expected, 3),
            "llr": round(self.llr, 4),
            "p": self.p,
            "recurrence_days": self.recurrence_days,
        }


@dataclass
class ScanResult:
    clusters: list[ScanCluster]  # the most likely cluster first, then secondary non-overlapping ones
    replicates: int
    run_every_days: float
    max_llr_null: np.ndarray = field(repr=False)

    def alerts(self, min_recurrence_days: float) -> list[ScanCluster]:
        return [c for c in self.clusters if c.recurrence_days >= min_recurrence_days]


def _bases(cells: np.ndarray, max_k: int) -> list[sp.csr_matrix]:
    """For k = 0..max_k, a (n centres x n cells) 0/1 matrix of each centre's k-ring."""
    n = len(cells)
    out = []
    disk = h3.api.basic_int.grid_disk
    for k in range(max_k + 1):
        rows, cols = [], []
        for i, c in enumerate(cells.tolist()):
            nb = np.fromiter(disk(c, k), dtype=np.uint64).astype(np.int64)
            pos = np.minimum(np.searchsorted(cells, nb), n - 1)
            keep = cells[pos] == nb
            cols.append(pos[keep])
            rows.append(np.full(int(keep.sum()), i))
        r, q = np.concatenate(rows), np.concatenate(cols)
        out.append(sp.csr_matrix((np.ones(len(r)), (r, q)), shape=(n, n)))
    return out


def _llr(c: np.ndarray, mu: np.ndarray, C: float) -> np.ndarray:
    """Poisson log GLR of cylinders with ``c`` observed and ``mu`` expected (0 unless c > mu)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = c * np.log(c / mu) + np.where(C - c > 0, (C - c) * np.log((C - c) / (C - mu)), 0.0)
    return np.where((c > mu) & (mu > 0), out, 0.0)


def _max_llr(cz: np.ndarray, tail: np.ndarray, mu_tail: np.ndarray, C: float, bases) -> tuple[float, int, int, int]:
    """Maximum log GLR over all cylinders, and its (k, centre, t-index).

    ``tail[:, t]`` = incidents per cell in the last t+1 days; ``mu_tail`` the
    expectation of the same.
    """
    best, arg = 0.0, (0, 0, 0)
    for k, B in enumerate(bases):
        llr = _llr(B @ tail, B @ mu_tail, C)  # (centres, T)
        j = int(np.argmax(llr))
        if llr.flat[j] > best:
            best = float(llr.flat[j])
            i, t = np.unravel_index(j, llr.shape)
            arg = (k, int(i), int(t))
    return best, *arg


def space_time_scan(
    cells: np.ndarray,
    days: np.ndarray,
    study_cells: np.ndarray | None = None,
    end_day: pd.Timestamp | str | None = None,
    period_days: int = 56,
    max_days: int = 7,
    max_k: int = 1,
    replicates: int = 999,
    run_every_days: float = 1.0,
    seed: int | None = 0,
    secondary: int = 3,
) -> ScanResult:
    """Prospective space-time permutation scan over the last ``period_days``.

    Parameters
    ----------
    cells : H3 cell of each incident (int64, one resolution).
    days : local calendar day of each incident (datetime64 / Timestamps).
    study_cells : cells that may form bases (default: the cells with incidents).
    end_day : last day of the study period (default: the latest day given).
    period_days : length of the baseline + surveillance period.
    max_days : longest cluster duration tested (cylinder height).
    max_k : largest ring size of a base (0 = single cells).
    replicates : Monte-Carlo replicates (999 gives p down to 0.001).
    run_every_days : how often the scan runs, for the recurrence interval.
    secondary : how many further, non-overlapping clusters to report.
    """
    cells = np.asarray(cells, dtype=np.int64)
    day = pd.to_datetime(pd.Series(days)).dt.normalize().to_numpy(dtype="datetime64[D]")
    end = np.datetime64(pd.Timestamp(end_day).date(), "D") if end_day is not None else day.max()
    start = end - np.timedelta64(period_days - 1, "D")
    keep = (day >= start) & (day <= end)
    cells, day = cells[keep], day[keep]
    uc = np.unique(cells if study_cells is None else np.concatenate([np.asarray(study_cells, np.int64), cells]))
    if len(cells) == 0:
        return ScanResult([], replicates, run_every_days, np.zeros(0))
    zi = np.searchsorted(uc, cells)
    di = (day - start).astype(np.int64)
    n, D, C = len(uc), period_days, float(len(cells))
    T = min(max_days, D)
    bases = _bases(uc, max_k)

    def tails(z_idx: np.ndarray, d_idx: np.ndarray):
        mat = np.zeros((n, D))
        np.add.at(mat, (z_idx, d_idx), 1.0)
        cz = mat.sum(axis=1)
        cd = mat.sum(axis=0)
        rev = mat[:, ::-1][:, :T].cumsum(axis=1)  # last 1..T days per cell
        mu = np.outer(cz, cd[::-1][:T].cumsum()) / C
        return cz, rev, mu

    cz, tail, mu = tails(zi, di)
    obs, k, i, t = _max_llr(cz, tail, mu, C, bases)
    rng = np.random.default_rng(seed)
    null = np.empty(replicates)
    for r in range(replicates):
        _, tr, mr = tails(zi, rng.permutation(di))
        null[r] = _max_llr(cz, tr, mr, C, bases)[0]

    def cluster(k: int, i: int, t: int, llr: float) -> ScanCluster:
        members = bases[k][i].indices
        p = (np.sum(null >= llr - 1e-12) + 1) / (replicates + 1)
        endts = pd.Timestamp(end)
        return ScanCluster(
            centre=int(uc[i]),
            k=k,
            cells=uc[members],
            days=t + 1,
            start=endts - pd.Timedelta(days=t),
            end=endts,
            observed=int(round(float((bases[k][i] @ tail[:, t])[0]))),
            expected=float((bases[k][i] @ mu[:, t])[0]),
            llr=llr,
            p=float(p),
            recurrence_days=float(run_every_days / p),
        )

    out = [cluster(k, i, t, obs)] if obs > 0 else []
    # Secondary clusters: best cylinders whose bases do not overlap earlier ones.
    used = np.zeros(n, dtype=bool)
    if out:
        used[np.searchsorted(uc, out[0].cells)] = True
    for _ in range(secondary if out else 0):
        best: tuple[float, tuple[int, int, int] | None] = (0.0, None)  # (LLR, (basis, cell, time))
        for kk, B in enumerate(bases):
            ok_centres = np.asarray((B @ used.astype(float)) == 0).ravel()
            if not ok_centres.any():
                continue
            llr = _llr(B @ tail, B @ mu, C)
            llr[~ok_centres] = 0.0
            j = int(np.argmax(llr))
            if llr.flat[j] > best[0]:
                ii, tt = np.unravel_index(j, llr.shape)
                best = (float(llr.flat[j]), (kk, int(ii), int(tt)))
        if best[1] is None:
            break
        c2 = cluster(*best[1], best[0])
        out.append(c2)
        used[np.searchsorted(uc, c2.cells)] = True
    return ScanResult(out, replicates, run_every_days, null)
