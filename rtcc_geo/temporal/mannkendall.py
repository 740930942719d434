"""Mann–Kendall trend test, vectorised over many series (one row per cell).

For a series :math:`x_1 .. x_n`

.. math::

    S = \\sum_{i<j} \\operatorname{sgn}(x_j - x_i), \\qquad
    \\operatorname{Var}(S) = \\frac{n(n-1)(2n+5) - \\sum_g t_g (t_g-1)(2t_g+5)}{18}

where :math:`t_g` is the size of the g-th group of tied values (the tie
correction), and

.. math::

    Z = \\begin{cases} (S-1)/\\sqrt{\\operatorname{Var}(S)} & S>0 \\\\
                         0 & S=0 \\\\
                         (S+1)/\\sqrt{\\operatorname{Var}(S)} & S<0 \\end{cases}
    \\qquad p = 2\\,(1-\\Phi(|Z|)), \\qquad \\tau = S / (n(n-1)/2).

This is exactly ``pymannkendall.original_test`` (checked in the tests), but for
an ``(m, n)`` array at once: the pair sum runs as ``n-1`` shifted-array
comparisons, each over all rows, and the tie groups come from one sort of the
whole array. A series with no variation (all values tied) has
``Var(S) = 0``; it gets ``z = 0``, ``p = 1`` rather than a division by zero.

Sen's slope (median of pairwise slopes) is provided as :func:`sen_slope`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr


@dataclass
class MannKendallResult:
    """Per-series Mann–Kendall statistics (arrays of length ``m``)."""

    s: np.ndarray
    var_s: np.ndarray
    z: np.ndarray
    p: np.ndarray
    tau: np.ndarray
    n: int

    def trend(self, alpha: float = 0.05) -> np.ndarray:
        """``+1`` significant increase, ``-1`` significant decrease, ``0`` none."""
        sig = self.p < alpha
        return np.where(sig & (self.z > 0), 1, np.where(sig & (self.z < 0), -1, 0)).astype(np.int8)


def _as_2d(x) -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a[None, :], True
    if a.ndim != 2:
        raise ValueError(f"expected a series or an (m, n) array of series, got shape {a.shape}")
    return a, False


def mk_s(x: np.ndarray) -> np.ndarray:
    """The S statistic of each row of an ``(m, n)`` array."""
    a, _ = _as_2d(x)
    n = a.shape[1]
    s = np.zeros(a.shape[0], dtype=np.int64)
    # Sum over lags k: sgn(x[t+k] - x[t]) for all t. n-1 vectorised steps.
    for k in range(1, n):
        s += np.sign(a[:, k:] - a[:, :-k]).astype(np.int64).sum(axis=1)
    return s


def tie_term(x: np.ndarray) -> np.ndarray:
    """``sum_g t_g (t_g - 1) (2 t_g + 5)`` over the tie groups of each row."""
    a, _ = _as_2d(x)
    m, n = a.shape
    if n == 0:
        return np.zeros(m)
    srt = np.sort(a, axis=1)
    # A new run starts at column 0 and wherever the sorted value changes.
    starts = np.ones((m, n), dtype=bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
    flat_starts = np.flatnonzero(starts.ravel())
    lengths = np.diff(np.append(flat_starts, m * n)).astype(np.float64)
    rows = flat_starts // n
    term = lengths * (lengths - 1) * (2 * lengths + 5)
    return np.bincount(rows, weights=term, minlength=m)


def mann_kendall(x) -> MannKendallResult:
    """Mann–Kendall test of each row of ``x`` (a 1-D series or ``(m, n)`` array).

    Rows must be complete (no NaN): a space-time cube is zero-filled, so a
    missing value is a bug upstream, not something to skip silently.
    """
    a, _ = _as_2d(x)
    if np.isnan(a).any():
        raise ValueError("Mann–Kendall input has NaN values; fill or drop them first (a cube is zero-filled)")
    m, n = a.shape
    if n < 3:
        raise ValueError(f"Mann–Kendall needs at least 3 time steps, got {n}")
    s = mk_s(a).astype(np.float64)
    var_s = (n * (n - 1) * (2 * n + 5) - tie_term(a)) / 18.0
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(var_s)
        z = np.where(s > 0, (s - 1) / sd, np.where(s < 0, (s + 1) / sd, 0.0))
    z = np.where(var_s > 0, z, 0.0)
    p = 2.0 * (1.0 - ndtr(np.abs(z)))
    tau = s / (0.5 * n * (n - 1))
    return MannKendallResult(s=s, var_s=var_s, z=z, p=p, tau=tau, n=n)


def sen_slope(x) -> np.ndarray:
    """Sen's slope (median of ``(x_j - x_i) / (j - i)``, ``i < j``) of each row."""
    a, _ = _as_2d(x)
    n = a.shape[1]
    i, j = np.triu_indices(n, k=1)
    # The pairwise slopes are rows x n(n-1)/2: a few thousand cells over ten years of
    # months would be gigabytes at once, so rows go in chunks of ~_SEN_CHUNK slopes.
    step = max(1, _SEN_CHUNK // max(len(i), 1))
    out = np.empty(a.shape[0])
    for r0 in range(0, a.shape[0], step):
        blk = a[r0 : r0 + step]
        out[r0 : r0 + step] = np.median((blk[:, j] - blk[:, i]) / (j - i), axis=1)
    return out


_SEN_CHUNK = 1_000_000  # slopes per chunk: 8 MB of float64 (a few such temporaries)
