"""Conditional permutation inference shared by Gi* and Local Moran's I.

Conditional randomisation (Anselin 1995) holds the value :math:`y_i` of cell
*i* fixed and fills its :math:`c_i` neighbour slots with values drawn
*without replacement* from the other :math:`n - 1` cells, ``permutations``
times. Both statistics are, for fixed *i*, an increasing or decreasing
affine function of the randomised neighbour sum

.. math:: R_i = \\sum_{m=1}^{c_i} w_{im} \\, y_{\\pi(m)},

(Gi*: :math:`G^*_i = (R_i + w_{ii} y_i)/\\sum y`, slope :math:`> 0`;
Local Moran: :math:`I_i = (n-1) z_i (R_i/s - \\bar y\\, w_{i\\cdot}/s)/\\sum z^2`,
slope of the sign of :math:`z_i`), so every rule below is evaluated on
:math:`R_i` (times that sign) — with integer counts and binary weights these
sums are exact, so ties between the observed and simulated values are
counted exactly (esda compares floating-point statistics).

**Draws.** Like esda's ``crand`` one block of random index rows
(``permutations`` × max cardinality, each row without replacement from
``0 .. n-2``) is drawn once from the seed; cell *i* uses the first
:math:`c_i` columns. **Speed.** The null distribution of :math:`R_i` depends
only on :math:`y_i` (the one value removed from the pool) and on the
multiset of row weights. We therefore simulate once per distinct
(weights-row, :math:`y_i`) pair — a few hundred groups for a city of counts
instead of tens of thousands of cells — against the pool sorted once,
and read every member's p-value off its group's sorted draws. This is the
same procedure as esda's (a shared draw block, conditional on :math:`y_i`),
not an approximation; with ``draws=`` given, the per-cell esda mapping
(index ``j`` → ``j + (j >= i)`` into the cells in their own order) is used
instead, which reproduces esda's p-values exactly from esda's own draw block.

**Rules** (``alternative``; :math:`P` permutations, :math:`\\#` counts over
the simulated values, ties counted as "at least as extreme"):

``"two-sided"`` (default)
    twice the smaller tail, :math:`p = \\min\\big(1,\\ 2\\,(\\min(\\#\\{sim \\ge obs\\},
    \\#\\{sim \\le obs\\}) + 1)/(P + 1)\\big)` — i.e. ``min(1, 2 min(p_greater,
    p_lesser))``. Valid for both hot and cold spots, smallest value
    :math:`2/(P+1)`, and well behaved on discrete counts.
``"folded"`` (alias ``"directed"``, esda's name in ``esda.significance``)
    esda's classic rule, what ``G_Local.p_sim`` and ``Moran_Local.p_sim``
    report: :math:`L = \\#\\{sim \\ge obs\\}` folded to the nearer tail,
    :math:`p = (\\min(L, P - L) + 1)/(P + 1)`. A one-tailed p-value in the
    data-chosen direction, about half the two-sided one — read it against
    ``alpha/2`` (or use ``two-sided``).
``"greater"`` / ``"lesser"``
    one-tailed: :math:`(\\#\\{sim \\ge obs\\} + 1)/(P + 1)`, resp. :math:`\\le`.
``"esda-two-sided"``, ``"esda-folded"``
    esda's ``calculate_significance(alternative='two-sided' / 'folded')``,
    reproduced for comparison: the percentile rule (count the simulations
    beyond the :math:`\\min(q, 100-q)` percentiles on *both* sides) and the
    fold about the simulations' mean. On counts the percentile rule has a
    floor: for a hot cell it still counts every simulation tied at the
    minimum (often a neighbourhood of zeros), so at H3 res 10 no cell gets
    below about 0.007 whatever ``P`` — hence not our default.

Islands (cells without neighbours) have nothing to permute: their p-value is
1 (esda reports :math:`1/(P+1)`, an artefact of its tie rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

ALTERNATIVES: tuple[str, ...] = ("two-sided", "folded", "greater", "lesser", "esda-two-sided", "esda-folded")
#: accepted aliases (esda.significance names)
ALIASES: dict[str, str] = {"directed": "folded"}


def mc_se(p, permutations: int, alternative: str = "two-sided"):
    """Monte-Carlo standard error of a pseudo p-value estimated from ``permutations`` draws.

    A one-tailed rule estimates a binomial proportion: :math:`\\sqrt{p(1-p)/P}`.
    The two-sided rule doubles the smaller tail, :math:`p = 2q` with
    :math:`\\operatorname{Var}\\hat q = q(1-q)/P`, so
    :math:`\\operatorname{Var}\\hat p = 4 q (1-q)/P = p(2-p)/P` — about twice the
    one-tailed variance for small p. Two independent estimates differ by
    :math:`\\sqrt{2}` times this.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    two = check_alternative(alternative) in ("two-sided", "esda-two-sided")
    return np.sqrt((p * (2 - p) if two else p * (1 - p)) / permutations)


def check_alternative(alternative: str) -> str:
    """The canonical rule name (``"directed"`` → ``"folded"``); ValueError if unknown."""
    alternative = ALIASES.get(alternative, alternative)
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative={alternative!r}: use one of {ALTERNATIVES} (or 'directed' = 'folded')")
    return alternative


def draw_block(pool_size: int, width: int, permutations: int, seed=None) -> np.ndarray:
    """``permutations`` rows of ``width`` distinct indices in ``[0, pool_size)``.

    Rows are drawn with replacement and the (rare, for a few neighbours in
    thousands of cells) rows with a repeat are redrawn without replacement,
    so the block is exactly uniform over ordered samples without replacement.
    """
    if width > pool_size:
        raise ValueError(f"cannot draw {width} distinct neighbours from {pool_size} cells")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, pool_size, size=(permutations, width), dtype=np.int64)
    if width > 1:
        s = np.sort(ids, axis=1)
        bad = np.flatnonzero((s[:, 1:] == s[:, :-1]).any(axis=1))
        for r in bad:
            ids[r] = rng.choice(pool_size, size=width, replace=False)
    return ids


@dataclass
class CrandResult:
    """Per-cell results of a conditional randomisation, on the scale of R.

    p_sim : pseudo p-values (rule ``alternative``)
    mean, std : mean and (population) standard deviation of the simulated R
    sims : (n, P) simulated R, only when ``keep=True``
    """

    p_sim: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    sims: np.ndarray | None = None


def _lerp_percentile(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.percentile(row, q)`` (method 'linear') for sorted rows ``s`` (m, P)
    and one ``q`` per row, with numpy's own interpolation formula."""
    P = s.shape[1]
    h = (P - 1) * (q / 100.0)
    lo = np.floor(h).astype(np.int64)
    lo = np.clip(lo, 0, P - 1)
    hi = np.minimum(lo + 1, P - 1)
    t = h - lo
    rows = np.arange(s.shape[0]) if s.shape[0] > 1 else np.zeros(len(q), dtype=np.int64)
    a = s[rows, lo]
    b = s[rows, hi]
    d = b - a
    out = a + d * t
    hi_t = t >= 0.5
    out[hi_t] = (b - d * (1 - t))[hi_t]
    return out


_COUNT_RULES = ("two-sided", "folded", "greater", "lesser")


def _count_rule(ge: np.ndarray, le: np.ndarray, P: int, alternative: str) -> np.ndarray:
    """p-values of the rules that need only ``ge = #{sim >= obs}`` and ``le = #{sim <= obs}``."""
    if alternative == "greater":
        return (ge + 1.0) / (P + 1.0)
    if alternative == "lesser":
        return (le + 1.0) / (P + 1.0)
    if alternative == "two-sided":
        return np.minimum(2.0 * (np.minimum(ge, le) + 1.0) / (P + 1.0), 1.0)
    if alternative == "folded":
        larger = np.where((P - ge) < ge, P - ge, ge)
        return (larger + 1.0) / (P + 1.0)
    raise ValueError(alternative)


def _tail_counts(rows: np.ndarray, gid: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``#{rows[gid[i]] >= obs[i]}`` and ``<=`` for every i (rows unsorted).

    Integer-valued sums (counts with binary weights, the usual case) become
    integer keys ``value + group * span`` in one flat array, sorted once (as
    int32 when they fit: the fastest numpy sort) and counted with a single
    ``searchsorted`` — exact. Otherwise rows are sorted and searched one
    group at a time.
    """
    G, P = rows.shape
    ge = np.empty(len(obs), dtype=np.int64)
    le = np.empty(len(obs), dtype=np.int64)
    lo = min(rows.min(), obs.min())
    hi = max(rows.max(), obs.max())
    span = hi - lo + 1.0
    integral = np.all(rows == np.floor(rows)) and np.all(obs == np.floor(obs))
    if integral and span * (G + 1) < 2.0**62:
        dt = np.int32 if span * (G + 1) < 2.0**31 else np.int64
        sp_ = np.int64(span)
        flat = ((rows - lo).astype(dt) + (np.arange(G, dtype=np.int64) * sp_).astype(dt)[:, None]).ravel()
        flat.sort()
        key = ((obs - lo).astype(np.int64) + gid * sp_).astype(dt)
        start = gid * P
        ge[:] = P - (np.searchsorted(flat, key, side="left") - start)
        le[:] = np.searchsorted(flat, key, side="right") - start
        return ge, le
    rows = np.sort(rows, axis=1)
    order = np.argsort(gid, kind="stable")
    for g, members in enumerate(np.split(order, np.cumsum(np.bincount(gid, minlength=G))[:-1])):
        if len(members):
            ge[members] = P - np.searchsorted(rows[g], obs[members], side="left")
            le[members] = np.searchsorted(rows[g], obs[members], side="right")
    return ge, le


def significance(s: np.ndarray, obs: np.ndarray, alternative: str) -> np.ndarray:
    """Pseudo p-values of ``obs`` against simulations.

    ``s`` is (m, P) with each row sorted ascending, or (1, P) shared by all
    ``obs`` (m,). Rules: see the module doc.
    """
    alternative = check_alternative(alternative)
    P = s.shape[1]
    obs = np.asarray(obs, dtype=float)
    if s.shape[0] == 1:
        row = s[0]
        ge = P - np.searchsorted(row, obs, side="left")
        le = np.searchsorted(row, obs, side="right")
    else:
        ge = (s >= obs[:, None]).sum(axis=1)
        le = (s <= obs[:, None]).sum(axis=1)
    if alternative in _COUNT_RULES:
        return _count_rule(ge, le, P, alternative)
    if alternative == "esda-folded":
        m = s.mean(axis=1)
        d = np.abs(s - m[:, None])
        fo = np.abs(obs - (m[0] if s.shape[0] == 1 else m))
        if s.shape[0] == 1:
            ds = np.sort(d[0])
            cnt = P - np.searchsorted(ds, fo, side="left")
        else:
            cnt = (d >= fo[:, None]).sum(axis=1)
        return (cnt + 1.0) / (P + 1.0)
    if alternative == "esda-two-sided":
        pct = le / P * 100.0
        p_low = np.minimum(pct, 100.0 - pct)
        lows = _lerp_percentile(s, p_low)
        highs = _lerp_percentile(s, 100.0 - p_low)
        if s.shape[0] == 1:
            row = s[0]
            n_out = np.searchsorted(row, lows, side="right") + (P - np.searchsorted(row, highs, side="left"))
        else:
            n_out = (s <= lows[:, None]).sum(axis=1) + (s >= highs[:, None]).sum(axis=1)
        return np.minimum((n_out + 1.0) / (P + 1.0), 1.0)
    raise ValueError(f"alternative={alternative!r}: use one of {ALTERNATIVES}")


def _row_signatures(W: sp.csr_matrix) -> np.ndarray:
    """An integer id per row such that rows with the same multiset of weights
    share it (binary weights: the cardinality)."""
    card = np.diff(W.indptr)
    if W.nnz == 0 or np.all(W.data == W.data[0]):
        return card.astype(np.int64)
    keys: dict[bytes, int] = {}
    out = np.empty(W.shape[0], dtype=np.int64)
    for i in range(W.shape[0]):
        k = np.sort(W.data[W.indptr[i] : W.indptr[i + 1]]).tobytes()
        out[i] = keys.setdefault(k, len(keys))
    return out


def _binary_group_sums(ys: np.ndarray, base: np.ndarray, kpos: np.ndarray) -> np.ndarray:
    """Neighbour sums of every group for binary weights, without a gather per group.

    Group g draws from the sorted pool with one copy at position ``kpos[g]``
    removed, i.e. index ``j`` maps to ``ys[j + (j >= k)]``. Writing
    ``ys[j+1] = ys[j] + D[j]`` (``D = diff(ys)``, zero between tied values)

    .. math:: R_g[p] = \\sum_m ys[j_{pm}] + \\sum_{m:\\, j_{pm} \\ge k_g} D[j_{pm}],

    a common term plus the few draws that land on a value step, summed for
    all groups at once with a difference array over groups sorted by k.
    Returns (G, P). Exact for integer counts.
    """
    P, c = base.shape
    G = len(kpos)
    A = ys[base].sum(axis=1)  # (P,)
    Dv = np.diff(ys)[base]  # (P, c)
    pe, me = np.nonzero(Dv)
    je, de = base[pe, me], Dv[pe, me]
    korder = np.argsort(kpos, kind="stable")
    upto = np.searchsorted(kpos[korder], je, side="right")  # draw e adds de to sorted groups [0, upto)
    M = np.zeros(P * (G + 1))
    np.add.at(M, pe * (G + 1), de)
    np.add.at(M, pe * (G + 1) + upto, -de)
    Bs = np.cumsum(M.reshape(P, G + 1), axis=1)[:, :G]
    R = np.empty((G, P))
    R[korder] = (A[:, None] + Bs).T
    return R


def crand(
    y: np.ndarray,
    W: sp.csr_matrix,
    direction: np.ndarray | None = None,
    permutations: int = 999,
    seed=None,
    alternative: str = "two-sided",
    draws: np.ndarray | None = None,
    keep: bool = False,
    chunk: int = 256,
) -> CrandResult:
    """Conditional randomisation of :math:`R_i = \\sum_j w_{ij} y_j` (see the module doc).

    Parameters
    ----------
    y : (n,) values (counts).
    W : (n, n) CSR weights with a zero diagonal.
    direction : (n,) +1 / -1 / 0, the sign of the statistic's slope in
        :math:`R_i` (default all +1).
    permutations, seed, alternative : see the module doc.
    draws : optional (P, max cardinality) index block in ``[0, n-2]`` (e.g.
        esda's ``vec_permutations``); switches to the per-cell esda mapping.
    keep : keep the (n, P) simulated R (memory!).
    """
    alternative = check_alternative(alternative)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    W = sp.csr_matrix(W)
    W.sort_indices()
    if direction is None:
        direction = np.ones(n)
    direction = np.sign(np.asarray(direction, dtype=np.float64))
    card = np.diff(W.indptr)
    max_card = int(card.max()) if n else 0
    r_obs = W @ y
    p = np.ones(n)
    mean = np.full(n, np.nan)
    std = np.full(n, np.nan)
    if permutations <= 0 or max_card == 0:
        return CrandResult(p, mean, std, None)
    if draws is None:
        ids = draw_block(n - 1, max_card, permutations, seed)
    else:
        ids = np.asarray(draws, dtype=np.int64)
        if ids.shape[1] < max_card or ids.max() > n - 2:
            raise ValueError("draws must be (permutations, >= max cardinality) indices in [0, n-2]")
    P = ids.shape[0]
    sims = np.empty((n, P)) if keep else None

    if draws is None:
        # --- grouped path: one simulation per (weights row, y_i, direction) ---
        sig = _row_signatures(W)
        order = np.lexsort((direction, y, sig))
        ks = np.column_stack([sig[order], y[order], direction[order]])
        first = np.r_[True, np.any(ks[1:] != ks[:-1], axis=1)]
        gid = np.empty(n, dtype=np.int64)
        gid[order] = np.cumsum(first) - 1
        reps = order[first]  # one representative cell per group
        G = len(reps)
        gcard = card[reps]
        ys = np.sort(y)
        Rg = np.zeros((G, P))
        binary = W.nnz > 0 and bool(np.all(W.data == 1.0))
        for c in np.unique(gcard):
            if c == 0:
                continue  # islands: p = 1
            sel = np.flatnonzero(gcard == c)
            base = ids[:, :c]
            if binary:
                kpos = np.searchsorted(ys, y[reps[sel]], side="left")
                Rg[sel] = _binary_group_sums(ys, base, kpos)
                continue
            for lo in range(0, len(sel), chunk):
                gs = sel[lo : lo + chunk]
                k = np.searchsorted(ys, y[reps[gs]], side="left")  # drop one copy of y_i from the pool
                idx = base[None, :, :] + (base[None, :, :] >= k[:, None, None])
                wrows = W.data[W.indptr[reps[gs]][:, None] + np.arange(c)[None, :]]
                Rg[gs] = np.einsum("gpc,gc->gp", ys[idx], wrows)
        live = gcard[gid] > 0
        mean = np.where(live, Rg.mean(axis=1)[gid], np.nan)
        std = np.where(live, Rg.std(axis=1)[gid], np.nan)
        dg = direction[reps]
        Rd = Rg * dg[:, None]
        od = r_obs * direction
        if alternative in _COUNT_RULES:
            ge, le = _tail_counts(Rd, gid, od)
            p = np.where(live, _count_rule(ge, le, P, alternative), 1.0)
        else:  # esda's comparison rules need each group's own moments / percentiles
            Rd = np.sort(Rd, axis=1)
            members_of = np.split(np.argsort(gid, kind="stable"), np.cumsum(np.bincount(gid, minlength=G))[:-1])
            for g, members in enumerate(members_of):
                if gcard[g] > 0:
                    p[members] = significance(Rd[g][None, :], od[members], alternative)
        if keep:
            sims = Rg[gid]
        return CrandResult(p, mean, std, sims)

    # --- per-cell path with esda's index mapping (exact reproduction) ---
    for c in np.unique(card):
        if c == 0:
            continue
        cells = np.flatnonzero(card == c)
        base = ids[:, :c]
        for lo in range(0, len(cells), chunk):
            cc = cells[lo : lo + chunk]
            idx = base[None, :, :] + (base[None, :, :] >= cc[:, None, None])
            wrows = np.stack([W.data[W.indptr[i] : W.indptr[i + 1]] for i in cc])  # (m, c)
            R = np.einsum("mpc,mc->mp", y[idx], wrows)
            mean[cc] = R.mean(axis=1)
            std[cc] = R.std(axis=1)
            d = direction[cc]
            Rd = np.sort(R * d[:, None], axis=1)
            p[cc] = significance(Rd, r_obs[cc] * d, alternative)
            if sims is not None:  # keep
                sims[cc] = R
    return CrandResult(p, mean, std, sims)
