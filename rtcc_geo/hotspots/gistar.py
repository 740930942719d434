"""Getis–Ord :math:`G_i^*` (the *star* form) on H3 cells.

For counts :math:`y_1..y_n` over the study area and binary weights with the
self-weight set to one (:math:`w^*_{ij} = w_{ij}` off the diagonal,
:math:`w^*_{ii} = 1`):

.. math::

    G^*_i = \\frac{\\sum_j w^*_{ij} y_j}{\\sum_j y_j}, \\qquad
    W^*_i = \\sum_j w^*_{ij}, \\qquad
    E[G^*_i] = \\frac{W^*_i}{n},

    \\operatorname{Var}[G^*_i] = \\frac{W^*_i (n - W^*_i)}{(n-1)\\,n^2}
        \\cdot \\frac{s^2}{\\bar y^2},
    \\quad \\bar y = \\frac{1}{n}\\sum y_j, \\; s^2 = \\frac{1}{n}\\sum y_j^2 - \\bar y^2,

    z_i = \\frac{G^*_i - E[G^*_i]}{\\sqrt{\\operatorname{Var}[G^*_i]}}

(Getis & Ord 1992; Ord & Getis 1995). This is algebraically the ArcGIS Pro
Hot Spot Analysis z-score and numerically the same computation as
``esda.G_Local(y, w, transform='B', star=True).Zs`` (tested to 1e-9).
Large positive z: a cell *and its neighbours* carry more than their share
(hot spot); large negative: less (cold spot).

Inference: ``p_norm`` is the two-sided normal p-value of z (esda's
``p_norm`` is one-sided); ``p_sim`` is the conditional-permutation pseudo
p-value (:mod:`~rtcc_geo.hotspots.permutation`, rule ``alternative``);
``z_sim`` the z of the observed value within its simulations.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats

from .permutation import check_alternative, crand
from .weights import HexWeights


def _as_binary_csr(w) -> sp.csr_matrix:
    W = w.sparse if isinstance(w, HexWeights) else w
    W = sp.csr_matrix(W, dtype=np.float64)
    if W.diagonal().any():  # setdiag is slow on CSR; most inputs have a zero diagonal already
        W = W.tolil()
        W.setdiag(0)
        W = W.tocsr()
    W.eliminate_zeros()
    W.sort_indices()
    return W


def binary_inputs(y, w, what: str) -> tuple[np.ndarray, sp.csr_matrix]:
    """Counts as a float vector and the weights as a binary CSR matrix aligned with
    them (what Gi* and Local Moran both take); clear errors otherwise."""
    y = np.asarray(y, dtype=np.float64).ravel()
    W = _as_binary_csr(w)
    n = len(y)
    if W.shape != (n, n):
        raise ValueError(f"y has {n} values but the weights are {W.shape}: align counts with the weights' cells")
    if W.nnz and not np.all(W.data == 1.0):
        raise ValueError(f"{what} here takes binary weights (k-ring or distance band)")
    return y, W


class GiStar:
    """Getis–Ord Gi* with analytic and conditional-permutation inference.

    Parameters
    ----------
    y : (n,) counts per cell, aligned with the weights' cells (zeros included).
    w : :class:`~rtcc_geo.hotspots.weights.HexWeights` or an (n, n) sparse
        binary matrix (any diagonal is replaced by the star self-weight 1).
    permutations : number of conditional permutations (0 = analytic only).
    seed : seed of the permutation draws (int; same seed, same p-values).
    alternative : permutation rule, see :mod:`~rtcc_geo.hotspots.permutation`.
    draws : optional explicit draw block (reproduces esda from its own draws).
    keep_simulations : keep ``sim`` (n, P) simulated :math:`G^*_i`.

    Attributes
    ----------
    Gs, EGs, VGs, Zs : statistic, expectation, variance, z-score (arrays).
    p_norm : two-sided normal p-values of ``Zs``.
    p_sim : pseudo p-values (``NaN``-free; 1 for islands), or None.
    EG_sim, seG_sim, z_sim : mean, sd and z of the simulations (if permuted).
    n, permutations, alternative, seed.
    """

    def __init__(
        self,
        y,
        w,
        permutations: int = 999,
        seed: int | None = None,
        alternative: str = "two-sided",
        draws: np.ndarray | None = None,
        keep_simulations: bool = False,
    ):
        y, W = binary_inputs(y, w, "Gi*")
        n = len(y)
        if np.any(y < 0) or not np.all(np.isfinite(y)):
            raise ValueError("counts must be finite and non-negative")
        total = y.sum()
        if total <= 0:
            raise ValueError("no incidents in the study area: widen the time window or the filters")
        alternative = check_alternative(alternative)
        self.y, self.n, self.w = y, n, W
        self.permutations, self.seed, self.alternative = int(permutations), seed, alternative

        lag = W @ y  # off-diagonal neighbour sums (exact for counts)
        card = np.diff(W.indptr) + 1.0  # W*_i, self included
        self.Gs = (lag + y) / total
        ybar = total / n
        s2 = (y**2).sum() / n - ybar**2
        self.EGs = card / n
        self.VGs = card * (n - card) / (n - 1) / n**2 * (s2 / ybar**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.Zs = (self.Gs - self.EGs) / np.sqrt(self.VGs)
        self.p_norm = 2.0 * stats.norm.sf(np.abs(self.Zs))

        self.p_sim = self.EG_sim = self.seG_sim = self.z_sim = self.sim = None
        if self.permutations > 0:
            r = crand(y, W, None, self.permutations, seed, alternative, draws=draws, keep=keep_simulations)
            self.p_sim = r.p_sim
            # G*_i = (R_i + y_i) / sum(y): map the moments of R back.
            self.EG_sim = (r.mean + y) / total
            self.seG_sim = r.std / total
            with np.errstate(divide="ignore", invalid="ignore"):
                self.z_sim = (self.Gs - self.EG_sim) / self.seG_sim
            if keep_simulations:
                self.sim = (r.sims + y[:, None]) / total
