"""Spatial weights on the H3 grid, as ``scipy.sparse`` matrices.

Hot-spot statistics compare each cell with its neighbourhood, so they need a
weights matrix :math:`W = (w_{ij})` over the cells of the *study area*. On
H3 the neighbourhood comes from the grid itself, with no polygon overlay:

* **k-ring contiguity** — :math:`w_{ij} = 1` when cell *j* is within *k*
  grid steps of *i* (``h3.grid_disk(i, k)``), else 0. ``k = 1`` is the
  six touching hexagons (queen = rook on a hex grid).
* **distance band** — :math:`w_{ij} = 1` when the centres of *i* and *j* are
  at most ``band_m`` metres apart (great-circle distances via a local
  azimuthal-equidistant projection, exact to centimetres at city scale).

The diagonal is always zero here; the Gi* *star* self-weight
(:math:`w_{ii} = 1`) is added by :mod:`~rtcc_geo.hotspots.gistar`.

Why the study area includes **zero cells**: Gi* and Local Moran compare a
neighbourhood sum with what the whole study area would give by chance
(mean and variance over *all n cells*). Leaving out the cells where nothing
happened drops most of the low values, inflates the mean, shrinks the
variance and the neighbour counts, and so hides hot spots and invents cold
ones. :func:`study_area` therefore takes every cell whose centre lies inside
the boundary (``grid.cover``) plus any cell that holds an incident (block
geocodes on the city line can fall just outside).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import h3
import numpy as np
import scipy.sparse as sp

from .. import grid


@dataclass
class HexWeights:
    """A weights matrix over H3 cells.

    Attributes
    ----------
    cells : ndarray of int64
        Sorted cell ids; row/column *i* of ``sparse`` is ``cells[i]``.
    sparse : scipy.sparse.csr_matrix
        :math:`n \\times n` weights with a zero diagonal.
    kind : str
        ``"kring"`` or ``"distance"``.
    k : int | None
        Ring size of k-ring weights.
    band_m : float | None
        Distance band of distance-band weights, metres.
    """

    cells: np.ndarray
    sparse: sp.csr_matrix
    kind: str
    k: int | None = None
    band_m: float | None = None

    @property
    def n(self) -> int:
        return len(self.cells)

    @property
    def cardinalities(self) -> np.ndarray:
        """Number of neighbours of each cell (self excluded)."""
        return np.diff(self.sparse.indptr)

    @property
    def islands(self) -> np.ndarray:
        """Positions of cells with no neighbour in the study area."""
        return np.flatnonzero(self.cardinalities == 0)

    @property
    def is_binary(self) -> bool:
        return bool(np.all(self.sparse.data == 1.0))

    def index_of(self, cells) -> np.ndarray:
        """Positions of ``cells`` in :attr:`cells` (``ValueError`` if absent)."""
        cells = np.asarray(cells, dtype=np.int64)
        pos = np.searchsorted(self.cells, cells)
        pos = np.minimum(pos, len(self.cells) - 1)
        if len(cells) and not np.all(self.cells[pos] == cells):
            raise ValueError("some cells are not in the study area of these weights")
        return pos

    def neighbours(self) -> dict[int, list[int]]:
        """``{position: [neighbour positions]}`` — feeds ``libpysal.weights.W``."""
        m = self.sparse
        return {i: m.indices[m.indptr[i] : m.indptr[i + 1]].tolist() for i in range(self.n)}

    def to_libpysal(self):
        """The same weights as a ``libpysal.weights.W`` (ids = positions), for
        checking against PySAL. Needs libpysal (a test dependency)."""
        from libpysal.weights import W

        m = self.sparse
        neigh = self.neighbours()
        wts = {i: m.data[m.indptr[i] : m.indptr[i + 1]].tolist() for i in range(self.n)}
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # islands warning
            return W(neigh, wts, id_order=list(range(self.n)), silence_warnings=True)


def _as_cells(cells) -> np.ndarray:
    c = np.unique(np.asarray(cells, dtype=np.int64))
    if c.size == 0:
        raise ValueError("no cells: the study area is empty (check the boundary, resolution and filters)")
    res = np.unique(grid.resolution(c))
    if res.size != 1:
        raise ValueError(f"cells mix H3 resolutions {res.tolist()}; use one resolution")
    return c


def kring_weights(cells, k: int = 1) -> HexWeights:
    """Binary k-ring contiguity: :math:`w_{ij} = 1` iff ``0 < grid_distance(i, j) <= k``.

    Neighbours outside ``cells`` are dropped (the study area is the world).
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer (got {k!r})")
    c = _as_cells(cells)
    n = len(c)
    disk = h3.api.basic_int.grid_disk
    disks = [disk(cell, int(k)) for cell in c.tolist()]  # the only per-cell Python step
    lens = np.fromiter(map(len, disks), dtype=np.int64, count=n)
    nb = np.fromiter(chain.from_iterable(disks), dtype=np.uint64, count=int(lens.sum())).astype(np.int64)
    rows = np.repeat(np.arange(n, dtype=np.int64), lens)
    pos = np.minimum(np.searchsorted(c, nb), n - 1)
    keep = (c[pos] == nb) & (pos != rows)
    r, q = rows[keep], pos[keep]
    m = sp.csr_matrix((np.ones(len(r)), (r, q)), shape=(n, n))
    m.sort_indices()
    return HexWeights(cells=c, sparse=m, kind="kring", k=int(k))


def cell_xy(cells) -> np.ndarray:
    """Cell centres in metres, in a local azimuthal-equidistant projection
    centred on the cells' mean centre (distances from it are exact; pairwise
    distances are within 0.1 % over a city)."""
    lat, lon = grid.cell_centres(np.asarray(cells, dtype=np.int64))
    return grid.local_metres(lon, lat)


def distance_band_weights(cells, band_m: float) -> HexWeights:
    """Binary distance band: :math:`w_{ij} = 1` iff ``0 < d(i, j) <= band_m``."""
    from scipy.spatial import cKDTree

    if not band_m or band_m <= 0:
        raise ValueError(f"band_m must be a positive distance in metres (got {band_m!r})")
    c = _as_cells(cells)
    xy = cell_xy(c)
    tree = cKDTree(xy)
    pairs = tree.query_pairs(r=float(band_m), output_type="ndarray")
    n = len(c)
    r = np.concatenate([pairs[:, 0], pairs[:, 1]])
    q = np.concatenate([pairs[:, 1], pairs[:, 0]])
    m = sp.csr_matrix((np.ones(len(r)), (r, q)), shape=(n, n))
    m.sort_indices()
    return HexWeights(cells=c, sparse=m, kind="distance", band_m=float(band_m))


def study_area(boundary, res: int, incident_cells=None) -> np.ndarray:
    """All cells of the study area at ``res``: the cells whose centres lie in
    ``boundary`` plus the cells in ``incident_cells`` (sorted, unique int64).

    ``boundary=None`` means "the cells holding incidents only" — allowed, but
    biased for Gi* (see the module docstring), so :func:`rtcc_geo.hotspots.hotspots`
    warns.
    """
    parts = []
    if boundary is not None:
        parts.append(_cover_cached(boundary, res))
    if incident_cells is not None:
        ic = np.asarray(incident_cells, dtype=np.int64)
        if ic.size:
            parts.append(ic)
    if not parts:
        raise ValueError("a study area needs a boundary or some incident cells")
    return _as_cells(np.concatenate(parts))


_COVER_CACHE: dict[tuple[bytes, int], np.ndarray] = {}


def _cover_cached(boundary, res: int) -> np.ndarray:
    """``grid.cover`` memoised on the boundary's WKB (polyfill of a detailed city
    outline at res 10 takes ~1 s; dashboards and scale searches repeat it)."""
    import hashlib

    geom = boundary.union_all() if hasattr(boundary, "union_all") else boundary
    key = (hashlib.sha1(geom.wkb).digest(), int(res))
    hit = _COVER_CACHE.get(key)
    if hit is None:
        if len(_COVER_CACHE) > 32:
            _COVER_CACHE.clear()
        hit = _COVER_CACHE[key] = grid.cover(geom, res)
    return hit.copy()


def build_weights(cells, kind: str = "kring", k: int = 1, band_m: float | None = None) -> HexWeights:
    """Dispatch on ``kind`` (``"kring"`` or ``"distance"``)."""
    if kind == "kring":
        return kring_weights(cells, k)
    if kind == "distance":
        if band_m is None:
            raise ValueError("distance-band weights need band_m (metres)")
        return distance_band_weights(cells, band_m)
    raise ValueError(f"unknown weights kind {kind!r}; use 'kring' or 'distance'")
