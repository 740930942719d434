"""Local Moran's I (Anselin 1995) with HH / LL / HL / LH clusters.

With :math:`z_i = (y_i - \\bar y)/s` (population sd) and weights
:math:`w_{ij}` (row-standardised by default, ``transformation='r'``):

.. math::

    I_i = (n - 1)\\, \\frac{z_i \\sum_j w_{ij} z_j}{\\sum_j z_j^2}.

:math:`I_i > 0`: cell *i* resembles its neighbours (HH hot cluster or LL
cold cluster); :math:`I_i < 0`: it differs (HL high outlier among low, LH low
outlier among high). The quadrant ``q`` uses esda's coding: 1 HH, 2 LH, 3 LL,
4 HL (from the signs of :math:`z_i` and its lag :math:`\\sum_j w_{ij} z_j`).

Analytic moments under total randomisation (Sokal et al. 1998, A3/A4, as
esda): :math:`E[I_i] = -w_{i\\cdot}/(n-1)` and

.. math::

    \\operatorname{Var}[I_i] = w_{i(2)} \\frac{n - b_2}{n - 1}
      + (w_{i\\cdot}^2 - w_{i(2)}) \\frac{2 b_2 - n}{(n-1)(n-2)}
      - \\Big(\\frac{w_{i\\cdot}}{n-1}\\Big)^2,

with :math:`w_{i\\cdot} = \\sum_j w_{ij}`, :math:`w_{i(2)} = \\sum_j w_{ij}^2`,
:math:`b_2 = m_4/m_2^2`. The normal approximation is poor for skewed counts;
prefer the permutation p-values (``p_sim``), which use the same engine and
rules as Gi* (:mod:`~rtcc_geo.hotspots.permutation`).

Equal to ``esda.Moran_Local(y, w, transformation='r')`` (``Is``, ``q``,
``EI``, ``VI``; tested).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import stats

from .gistar import binary_inputs
from .permutation import check_alternative, crand

#: esda quadrant codes and their labels.
QUADRANTS: dict[int, str] = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}


class LocalMoran:
    """Local Moran's I with analytic and conditional-permutation inference.

    Parameters
    ----------
    y : (n,) values per cell (zeros included).
    w : HexWeights or (n, n) sparse binary weights.
    transformation : ``'r'`` row-standardised (default, as esda) or ``'b'`` binary.
    permutations, seed, alternative, draws, keep_simulations : as :class:`~rtcc_geo.hotspots.gistar.GiStar`.

    Attributes
    ----------
    Is : local statistics; ``q`` quadrant codes (1 HH, 2 LH, 3 LL, 4 HL);
    ``labels`` the quadrant names; ``EI``, ``VI``, ``z_norm``, ``p_norm``
    (two-sided) analytic; ``p_sim``, ``EI_sim``, ``seI_sim``, ``z_sim`` permutation.
    """

    def __init__(
        self,
        y,
        w,
        transformation: str = "r",
        permutations: int = 999,
        seed: int | None = None,
        alternative: str = "two-sided",
        draws: np.ndarray | None = None,
        keep_simulations: bool = False,
    ):
        # Binary weights in: Local Moran row-standardises them itself when asked.
        y, B = binary_inputs(y, w, "LocalMoran")
        n = len(y)
        t = transformation.lower()
        if t not in ("r", "b"):
            raise ValueError("transformation must be 'r' (row-standardised) or 'b' (binary)")
        alternative = check_alternative(alternative)
        sd = y.std()
        if sd == 0:
            raise ValueError("all cells have the same count: Local Moran's I is undefined")
        card = np.diff(B.indptr).astype(np.float64)
        rw = np.where(card > 0, 1.0 / np.maximum(card, 1), 0.0) if t == "r" else np.ones(n)  # row weight
        Wt = sp.diags(rw) @ B
        self.y, self.n, self.w = y, n, Wt
        self.transformation, self.permutations, self.seed, self.alternative = t, int(permutations), seed, alternative

        ybar = y.mean()
        z = (y - ybar) / sd
        self.z = z
        den = (z * z).sum()
        lag = Wt @ z
        self.Is = (n - 1) * z * lag / den
        zp, lp = z > 0, lag > 0
        self.q = np.select([zp & lp, ~zp & lp, ~zp & ~lp, zp & ~lp], [1, 2, 3, 4]).astype(np.int64)
        self.labels = np.array([QUADRANTS[v] for v in self.q], dtype=object)

        # analytic moments, total randomisation (Sokal 1998 A3/A4*)
        wi = np.asarray(Wt.sum(axis=1)).ravel()
        wi2 = np.asarray(Wt.multiply(Wt).sum(axis=1)).ravel()
        m2 = (z * z).sum() / n
        b2 = ((z**4).sum() / n) / m2**2
        n1 = n - 1
        self.EI = -wi / n1
        self.VI = wi2 * (n - b2) / n1 + (wi**2 - wi2) * (2 * b2 - n) / (n1 * (n - 2)) - (-wi / n1) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            self.z_norm = (self.Is - self.EI) / np.sqrt(self.VI)
        self.p_norm = 2.0 * stats.norm.sf(np.abs(self.z_norm))

        self.p_sim = self.EI_sim = self.seI_sim = self.z_sim = self.sim = None
        if self.permutations > 0:
            # I_i = (n-1)/den * z_i * rw_i * (R_i - c_i ybar)/sd, R_i the binary neighbour
            # sum of raw y: monotone in R_i with the sign of z_i (exact integer ties).
            r = crand(y, B, np.sign(z), self.permutations, seed, alternative, draws=draws, keep=keep_simulations)
            self.p_sim = r.p_sim
            a = (n - 1) / den * z * rw / sd
            self.EI_sim = a * (r.mean - card * ybar)
            self.seI_sim = np.abs(a) * r.std
            with np.errstate(divide="ignore", invalid="ignore"):
                self.z_sim = (self.Is - self.EI_sim) / self.seI_sim
            if keep_simulations:
                self.sim = a[:, None] * (r.sims - (card * ybar)[:, None])

    def cluster_labels(self, p, alpha: float = 0.05) -> np.ndarray:
        """``HH``/``LH``/``LL``/``HL`` where ``p <= alpha``, else ``"ns"``."""
        p = np.asarray(p, dtype=np.float64)
        return np.where(p <= alpha, self.labels, "ns").astype(object)
