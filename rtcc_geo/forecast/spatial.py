"""Spatial neighbourhoods on the H3 grid as sparse matrices over the study cells.

``ring_pairs(cells, k)`` lists every pair of study cells at grid distance
``0..k``; :func:`ring_kernel` turns it into a sparse ``cells x cells`` matrix
``K`` with ``K[i, j] = w[dist(i, j)]``, so spatial smoothing of a per-cell
vector ``x`` is one sparse product ``K @ x``. Cells outside the study set
are simply absent (smoothing does not leak mass outside the area).
"""

from __future__ import annotations

import h3
import numpy as np
import scipy.sparse as sp

_ring = h3.api.basic_int.grid_ring


#: Average distance between neighbouring H3 cell centres, metres (sqrt(3) x edge).
def centre_spacing_m(res: int) -> float:
    return float(np.sqrt(3.0) * h3.average_hexagon_edge_length(res, unit="m"))


_PAIR_CACHE: dict = {}


def ring_pairs(cells: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, d)``: positions in ``cells`` of every pair at grid distance ``d <= k``.

    Cached per (cells, k) because backtests ask for the same neighbourhood at
    every origin.
    """
    cells = np.asarray(cells, dtype=np.int64)
    key = (cells.size, int(cells[:1].sum()), int(cells[-1:].sum()), int(cells.sum() % (1 << 61)), k)
    hit = _PAIR_CACHE.get(key)
    if hit is not None:
        return hit
    n = len(cells)
    ii, jj, dd = [np.arange(n)], [np.arange(n)], [np.zeros(n, np.int64)]
    for r in range(1, k + 1):
        nb_l: list[int] = []
        src_l: list[int] = []
        for p, c in enumerate(cells.tolist()):
            ring = _ring(c, r)
            nb_l.extend(ring)
            src_l.extend([p] * len(ring))
        nb = np.asarray(nb_l, dtype=np.uint64).astype(np.int64)
        src = np.asarray(src_l, dtype=np.int64)
        pos = np.searchsorted(cells, nb)
        pos_c = np.clip(pos, 0, n - 1)
        ok = cells[pos_c] == nb
        ii.append(src[ok])
        jj.append(pos_c[ok])
        dd.append(np.full(int(ok.sum()), r, np.int64))
    out = (np.concatenate(ii), np.concatenate(jj), np.concatenate(dd))
    _PAIR_CACHE[key] = out
    return out


def ring_kernel(cells: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """Sparse ``K[i, j] = weights[grid_distance(i, j)]`` for distances ``< len(weights)``."""
    weights = np.asarray(weights, dtype=np.float64)
    i, j, d = ring_pairs(cells, len(weights) - 1)
    n = len(cells)
    return sp.csr_matrix((weights[d], (i, j)), shape=(n, n))
