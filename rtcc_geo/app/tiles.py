"""The map's hexagons as Mapbox Vector Tiles (MVT 2.1), encoded with numpy.

Why tiles: from a GeoJSON source MapLibre cuts every hexagon into tiles in
the browser (geojson-vt) on each page load, about 0.7 s of a 2-core laptop's
time for 25k cells before anything is drawn (``bench/app.py``). From vector
tiles the browser only decodes the few tiles in view, and the server cuts
each tile once per process (then the browser caches it: the URL carries the
geometry's version).

A tile holds one layer, ``hex``, with one polygon per cell whose bounding box
meets the tile (plus a small buffer). Feature ``id`` is the cell's position
in the map's sorted cell list (``AppContext.universe(res)``): the colour data
the app sends refers to cells by that position, so a recolour carries no
geometry and no 15-character ids. Property ``h`` is the H3 id in hex (what
hover and click report). Rings are wound as the spec wants (positive
surveyor's area in tile coordinates, y down), consecutive points that round
to the same tile coordinate are dropped, and rings left with fewer than three
points are left out. ``tests/test_app_tiles.py`` decodes our tiles with the
mapbox-vector-tile package and compares them with the cells' true outlines.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np

from rtcc_geo import grid

EXTENT = 4096
BUFFER = 64  # tile units drawn beyond the edge, so no seam shows between tiles
LAYER = "hex"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varints(v: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Protobuf varints of non-negative ints, concatenated; plus each one's byte offset."""
    v = np.asarray(v, dtype=np.uint64)
    nb = np.ones(len(v), dtype=np.int64)
    for j in range(1, 5):
        nb += v >= np.uint64(1 << (7 * j))
    start = np.zeros(len(v) + 1, dtype=np.int64)
    np.cumsum(nb, out=start[1:])
    out = np.empty(int(start[-1]), dtype=np.uint8)
    for j in range(5):
        has = nb > j
        byte = (v[has] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (nb[has] > j + 1).astype(np.uint64) << np.uint64(7)
        out[start[:-1][has] + j] = (byte | more).astype(np.uint8)
    return out.tobytes(), start


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def unit_to_lonlat(mx: float, my: float) -> tuple[float, float]:
    """Web Mercator unit-square coordinates (x right, y down) to (lon, lat) degrees."""
    return mx * 360.0 - 180.0, math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * my))))


class _TileCache:
    """``tile(z, x, y)``: the encoded tile from a small LRU cache (bounded in bytes),
    ``encode`` on a miss (subclasses)."""

    def _init_cache(self, cache_bytes: int) -> None:
        self._cache: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._cache_bytes, self._max_bytes = 0, cache_bytes
        self._lock = threading.Lock()

    def encode(self, z: int, x: int, y: int) -> bytes:
        raise NotImplementedError

    def tile(self, z: int, x: int, y: int) -> bytes:
        key = (int(z), int(x), int(y))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        body = self.encode(*key)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = body
                self._cache_bytes += len(body)
                while self._cache_bytes > self._max_bytes and self._cache:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= len(old)
        return body


class HexTiles(_TileCache):
    """Vector tiles of a fixed, sorted set of H3 cells (one resolution).

    ``tile(z, x, y)`` returns the encoded tile (``b""`` when no cell meets it);
    results are kept in a small LRU cache (bounded in bytes).
    """

    def __init__(self, cells: np.ndarray, cache_bytes: int = 96 << 20):
        self.cells = np.asarray(cells, dtype=np.int64)
        rings = grid.cell_boundaries(self.cells)
        lens = np.fromiter((len(r) - 1 for r in rings), dtype=np.int64, count=len(rings))  # open rings
        self.lens = lens
        self.offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=self.offsets[1:])
        flat = np.array([p for r in rings for p in r[:-1]], dtype=np.float64).reshape(-1, 2)
        lon, lat = flat[:, 0], flat[:, 1]
        # Web Mercator on the unit square (x right, y down), as XYZ tiles are cut.
        self.mx = (lon + 180.0) / 360.0
        self.my = (1.0 - np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) / np.pi) / 2.0
        starts = self.offsets[:-1]
        if len(lens):
            self.x0, self.x1 = np.minimum.reduceat(self.mx, starts), np.maximum.reduceat(self.mx, starts)
            self.y0, self.y1 = np.minimum.reduceat(self.my, starts), np.maximum.reduceat(self.my, starts)
        else:
            self.x0 = self.x1 = self.y0 = self.y1 = np.zeros(0)
        # (west, south, east, north) of all cells in degrees, None when there are none.
        self.bounds: tuple[float, float, float, float] | None = None
        if len(lens):
            w, n = unit_to_lonlat(float(self.x0.min()), float(self.y0.min()))
            e, so = unit_to_lonlat(float(self.x1.max()), float(self.y1.max()))
            self.bounds = (w, so, e, n)
        self._values = [
            b"\x22" + _varint(len(m)) + m
            for m in (
                b"\x0a" + _varint(len(h)) + h for h in (format(int(c) & (2**64 - 1), "x").encode() for c in self.cells)
            )
        ]
        self._init_cache(cache_bytes)

    def tile_range(self, z: int) -> tuple[range, range]:
        """The x and y ranges of the zoom-``z`` tiles that hold any cell."""
        if self.bounds is None:
            return range(0), range(0)
        n = 2**z
        return (
            range(int(self.x0.min() * n), int(self.x1.max() * n) + 1),
            range(int(self.y0.min() * n), int(self.y1.max() * n) + 1),
        )

    def encode(self, z: int, x: int, y: int) -> bytes:
        """Encode tile ``z/x/y`` (no cache)."""
        n = float(2**z)
        b = BUFFER / EXTENT
        sel = np.flatnonzero(
            (self.x1 * n - x >= -b) & (self.x0 * n - x <= 1 + b) & (self.y1 * n - y >= -b) & (self.y0 * n - y <= 1 + b)
        )
        if not len(sel):
            return b""
        # Gather the selected rings' vertices (ragged) and round to tile units.
        lens = self.lens[sel]
        first = np.zeros(len(sel) + 1, dtype=np.int64)
        np.cumsum(lens, out=first[1:])
        ring_of = np.repeat(np.arange(len(sel)), lens)
        vidx = self.offsets[sel][ring_of] + (np.arange(first[-1]) - first[:-1][ring_of])
        X = np.rint((self.mx[vidx] * n - x) * EXTENT).astype(np.int64)
        Y = np.rint((self.my[vidx] * n - y) * EXTENT).astype(np.int64)
        # Drop points equal to their predecessor in the ring (and a last point equal to the first).
        is_first = np.zeros(len(X), dtype=bool)
        is_first[first[:-1]] = True
        same_prev = np.r_[False, (X[1:] == X[:-1]) & (Y[1:] == Y[:-1])] & ~is_first
        last = first[1:] - 1
        same_first = np.zeros(len(X), dtype=bool)
        same_first[last] = (X[last] == X[first[:-1]]) & (Y[last] == Y[first[:-1]]) & (lens > 1)
        keep = ~(same_prev | same_first)
        X, Y, ring_of = X[keep], Y[keep], ring_of[keep]
        m = np.bincount(ring_of, minlength=len(sel))
        # Surveyor's area per ring (twice it), with the ring closed.
        start = np.zeros(len(sel) + 1, dtype=np.int64)
        np.cumsum(m, out=start[1:])
        nxt = np.arange(len(X)) + 1
        ends = start[1:] - 1
        nxt[ends[m > 0]] = start[:-1][m > 0]
        cross = X * Y[nxt] - X[nxt] * Y
        area2 = np.bincount(ring_of, weights=cross, minlength=len(sel))
        ok = (m >= 3) & (area2 != 0)
        # Reverse rings wound the wrong way (exterior rings need a positive area).
        pos = np.arange(len(X)) - start[:-1][ring_of]
        flip = (area2 < 0)[ring_of]
        src = np.where(flip, start[:-1][ring_of] + (m[ring_of] - 1 - pos), np.arange(len(X)))
        X, Y = X[src], Y[src]
        vmask = ok[ring_of]
        X, Y, ring_of, pos = X[vmask], Y[vmask], ring_of[vmask], pos[vmask]
        feats = np.flatnonzero(ok)
        if not len(feats):
            return b""
        m = m[feats]
        # Command integers per feature: MoveTo(1) dx dy, LineTo(m-1) (dx dy)*, ClosePath.
        fo = np.zeros(len(feats) + 1, dtype=np.int64)
        np.cumsum(2 * m + 3, out=fo[1:])
        fidx = np.repeat(np.arange(len(feats)), m)
        dx = np.diff(X, prepend=0)
        dy = np.diff(Y, prepend=0)
        f0 = np.zeros(len(feats), dtype=np.int64)
        np.cumsum(m[:-1], out=f0[1:])
        dx[f0], dy[f0] = X[f0], Y[f0]  # the cursor starts at (0, 0) in every feature
        ints = np.empty(int(fo[-1]), dtype=np.uint64)
        ints[fo[:-1]] = 9  # MoveTo, count 1
        ints[fo[:-1] + 3] = (2 | ((m - 1) << 3)).astype(np.uint64)  # LineTo, count m - 1
        ints[fo[1:] - 1] = 15  # ClosePath, count 1
        px = fo[:-1][fidx] + np.where(pos == 0, 1, 2 * pos + 2)
        ints[px], ints[px + 1] = _zigzag(dx), _zigzag(dy)
        geom, boff = _varints(ints)
        gstart, gend = boff[fo[:-1]], boff[fo[1:]]
        ids = sel[feats]
        parts = []
        for j, (cid, a, e) in enumerate(zip(ids.tolist(), gstart.tolist(), gend.tolist())):
            tags = b"\x00" + _varint(j)
            msg = (
                b"\x08"
                + _varint(cid)
                + b"\x12"
                + _varint(len(tags))
                + tags
                + b"\x18\x03"
                + b"\x22"
                + _varint(e - a)
                + geom[a:e]
            )
            parts.append(b"\x12" + _varint(len(msg)) + msg)
        name = LAYER.encode()
        layer = b"".join(
            [
                b"\x78\x02",
                b"\x0a" + _varint(len(name)) + name,
                *parts,
                b"\x1a\x01h",
                *(self._values[i] for i in ids.tolist()),
                b"\x28" + _varint(EXTENT),
            ]
        )
        return b"\x1a" + _varint(len(layer)) + layer


#: Line tiles' level of detail: (up to zoom, tile extent, simplification tolerance in degrees).
#: A coarser grid and tolerance at city zoom keep a tile of the whole street network small.
LINE_BANDS = ((11, 1024, 1e-4), (13, 2048, 3e-5), (22, 4096, 0.0))
#: Bands up to this zoom draw the lines chained into strokes (:func:`_strokes`).
STROKE_MAX_Z = 11
#: A stroke's longest side in degrees (~2.5 km): tiles carry the lines that meet them
#: unclipped, so a longer stroke would be repeated in every tile it crosses.
STROKE_SPAN = 0.03


def _strokes(geoms: list, max_turn_deg: float = 45.0, max_span: float = STROKE_SPAN) -> list[np.ndarray]:
    """Chain lines that share an end point into longer lines (strokes): from each line
    not yet used, walk on at both ends to the unused line that continues straightest
    (turning less than ``max_turn_deg``) while the stroke fits ``max_span`` degrees.

    Why: street centrelines are cut at every intersection (Philadelphia: 40,856 segments,
    most of them two points once simplified). MapLibre builds a line's geometry per
    vertex and per line, in its single worker, and simplification cannot drop a segment's
    end points; chained, a straight street through ten blocks simplifies to its two ends.
    Same streets, same length (every segment is in exactly one stroke, in order), 3.3x
    fewer vertices at city zoom. (``shapely.line_merge`` merges only where exactly two
    lines meet, i.e. almost nowhere in a street grid.) Returns (m, 2) coordinate arrays.
    """
    n = len(geoms)
    if not n:
        return []
    import shapely

    xy, idx = shapely.get_coordinates(np.asarray(geoms, dtype=object), return_index=True)
    starts = np.r_[0, np.flatnonzero(np.diff(idx)) + 1]  # every line has >= 2 points
    stops = np.r_[starts[1:], len(xy)]
    coords = np.split(xy, starts[1:])
    ends = np.stack([xy[starts], xy[stops - 1]], axis=1).reshape(-1, 2)
    _, inv = np.unique(ends, axis=0, return_inverse=True)
    node: list[list[int]] = inv.reshape(n, 2).tolist()
    # Unit directions of each line's first and last step, and its bounding box (plain
    # floats: the walk below is a Python loop over ~40k lines).
    first = xy[starts + 1] - xy[starts]
    last = xy[stops - 1] - xy[stops - 2]
    for a in (first, last):
        norm = np.hypot(a[:, 0], a[:, 1])
        a /= np.where(norm > 0, norm, 1.0)[:, None]
    fx, fy, lx, ly = first[:, 0].tolist(), first[:, 1].tolist(), last[:, 0].tolist(), last[:, 1].tolist()
    bx0, by0 = np.minimum.reduceat(xy[:, 0], starts).tolist(), np.minimum.reduceat(xy[:, 1], starts).tolist()
    bx1, by1 = np.maximum.reduceat(xy[:, 0], starts).tolist(), np.maximum.reduceat(xy[:, 1], starts).tolist()
    at: dict[int, list[tuple[int, int]]] = {}
    for i in range(n):
        at.setdefault(node[i][0], []).append((i, 0))
        at.setdefault(node[i][1], []).append((i, 1))
    used = [False] * n
    cos_min = math.cos(math.radians(max_turn_deg))
    out = []
    for i in range(n):
        if used[i]:
            continue
        used[i] = True
        x0, y0, x1, y1 = bx0[i], by0[i], bx1[i], by1[i]
        walks = []
        for side in (1, 0):  # on from the line's end, then back from its start
            nd = node[i][side]
            dx, dy = (lx[i], ly[i]) if side == 1 else (-fx[i], -fy[i])
            walk: list[np.ndarray] = []
            while True:
                best, best_dot = -1, cos_min
                for j, e in at[nd]:
                    if not used[j]:
                        # The step leaving this node: the line's first (e = 0) or its last reversed.
                        dot = dx * fx[j] + dy * fy[j] if e == 0 else -(dx * lx[j] + dy * ly[j])
                        if dot >= best_dot:
                            best, best_e, best_dot = j, e, dot
                if best < 0:
                    break
                j, e = best, best_e
                nx0, ny0, nx1, ny1 = min(x0, bx0[j]), min(y0, by0[j]), max(x1, bx1[j]), max(y1, by1[j])
                if max(nx1 - nx0, ny1 - ny0) > max_span:
                    break
                used[j] = True
                x0, y0, x1, y1 = nx0, ny0, nx1, ny1
                walk.append(coords[j][1:] if e == 0 else coords[j][-2::-1])
                nd = node[j][1 - e]
                dx, dy = (lx[j], ly[j]) if e == 0 else (-fx[j], -fy[j])
            walks.append(walk)
        on, back = walks
        before = np.concatenate(back, axis=0)[::-1] if back else np.zeros((0, 2))
        out.append(np.concatenate([before, coords[i], *on], axis=0))
    return out


class LineTiles(_TileCache):
    """Vector tiles of a fixed set of lines (a base layer: street centrelines).

    A tile holds one layer ``name`` with a single MultiLineString feature (the
    lines meeting the tile plus a buffer, unclipped): one feature instead of
    tens of thousands keeps a city-zoom tile of every street small (Philadelphia's
    40,856 segments: ~75 kB gzip'd at zoom 11). Up to :data:`STROKE_MAX_Z` the lines
    are chained into strokes first (:func:`_strokes`). Lines are simplified per
    :data:`LINE_BANDS` (Douglas-Peucker, shapely) and sorted along a Z-order
    curve so the cursor moves (delta-encoded) stay short. Bodies are gzip'd
    (served with ``Content-Encoding: gzip``) unless ``gzip=False``.
    """

    def __init__(self, lines, name: str = "streets", cache_bytes: int = 48 << 20, gzip: bool = True):
        import shapely

        self.name, self.gzip = name, gzip
        geoms = [
            g for g in shapely.get_parts(np.asarray(list(lines), dtype=object)) if g is not None and not g.is_empty
        ]
        geoms = [g for g in geoms if g.geom_type == "LineString"]
        strokes = None
        self.bands = []
        for max_z, extent, tol in LINE_BANDS:
            src = geoms
            if max_z <= STROKE_MAX_Z:
                if strokes is None:
                    strokes = [shapely.LineString(c) for c in _strokes(geoms)]
                src = strokes
            gs = shapely.simplify(np.asarray(src, dtype=object), tol) if tol else np.asarray(src, dtype=object)
            coords, idx = shapely.get_coordinates(gs, return_index=True)
            lens = np.bincount(idx, minlength=len(gs)).astype(np.int64)
            mx = (coords[:, 0] + 180.0) / 360.0
            my = (1.0 - np.log(np.tan(np.pi / 4 + np.radians(coords[:, 1]) / 2)) / np.pi) / 2.0
            off = np.zeros(len(lens) + 1, dtype=np.int64)
            np.cumsum(lens, out=off[1:])
            ok = lens >= 2
            st = off[:-1][ok]
            if len(st):
                x0, x1 = np.minimum.reduceat(mx, st), np.maximum.reduceat(mx, st)
                y0, y1 = np.minimum.reduceat(my, st), np.maximum.reduceat(my, st)
                # reduceat runs to the next start: the next line's points are excluded only
                # when lines are contiguous, which they are (every line kept has >= 2 points
                # and dropped ones have < 2, so fix up the ends explicitly).
                ends = off[1:][ok]
                x0 = np.array([mx[a:e].min() for a, e in zip(st, ends)]) if not ok.all() else x0
                x1 = np.array([mx[a:e].max() for a, e in zip(st, ends)]) if not ok.all() else x1
                y0 = np.array([my[a:e].min() for a, e in zip(st, ends)]) if not ok.all() else y0
                y1 = np.array([my[a:e].max() for a, e in zip(st, ends)]) if not ok.all() else y1
            else:
                x0 = x1 = y0 = y1 = np.zeros(0)
            # Z-order of the lines' centres (16 bits a side), so neighbours are encoded together.
            order = np.argsort(_morton(_q16((x0 + x1) / 2), _q16((y0 + y1) / 2)), kind="stable")
            lens_ok = lens[ok][order]
            starts = st[order]
            vidx = (
                np.concatenate([np.arange(a, a + m) for a, m in zip(starts.tolist(), lens_ok.tolist())])
                if len(starts)
                else np.zeros(0, np.int64)
            )
            o2 = np.zeros(len(lens_ok) + 1, dtype=np.int64)
            np.cumsum(lens_ok, out=o2[1:])
            self.bands.append(
                {
                    "max_z": max_z,
                    "extent": extent,
                    "mx": mx[vidx],
                    "my": my[vidx],
                    "lens": lens_ok,
                    "offsets": o2,
                    "x0": x0[order],
                    "x1": x1[order],
                    "y0": y0[order],
                    "y1": y1[order],
                }
            )
        b = self.bands[-1]
        self.bounds: tuple[float, float, float, float] | None = None
        if len(b["lens"]):
            w, n = unit_to_lonlat(float(b["x0"].min()), float(b["y0"].min()))
            e, s = unit_to_lonlat(float(b["x1"].max()), float(b["y1"].max()))
            self.bounds = (w, s, e, n)
        # The tiles' content version (for the URL and ETag: a browser's cached tile of
        # other lines, or of an earlier encoding, is never reused).
        import hashlib

        h = hashlib.blake2b(digest_size=8)
        for band in self.bands:
            h.update(band["mx"].tobytes())
            h.update(band["my"].tobytes())
            h.update(band["lens"].tobytes())
        self.version = h.hexdigest()
        self._init_cache(cache_bytes)

    def __len__(self) -> int:
        return len(self.bands[-1]["lens"])

    def _finish(self, body: bytes) -> bytes:
        if self.gzip:
            import gzip

            return gzip.compress(body, 6)
        return body

    def encode(self, z: int, x: int, y: int) -> bytes:
        band = next(b for b in self.bands if z <= b["max_z"])
        extent = band["extent"]
        n = float(2**z)
        bb = BUFFER / EXTENT
        sel = np.flatnonzero(
            (band["x1"] * n - x >= -bb)
            & (band["x0"] * n - x <= 1 + bb)
            & (band["y1"] * n - y >= -bb)
            & (band["y0"] * n - y <= 1 + bb)
        )
        if not len(sel):
            return self._finish(b"")
        lens = band["lens"][sel]
        first = np.zeros(len(sel) + 1, dtype=np.int64)
        np.cumsum(lens, out=first[1:])
        line_of = np.repeat(np.arange(len(sel)), lens)
        vidx = band["offsets"][sel][line_of] + (np.arange(first[-1]) - first[:-1][line_of])
        X = np.rint((band["mx"][vidx] * n - x) * extent).astype(np.int64)
        Y = np.rint((band["my"][vidx] * n - y) * extent).astype(np.int64)
        is_first = np.zeros(len(X), dtype=bool)
        is_first[first[:-1]] = True
        # Drop points that round onto their predecessor; a line left with one point is not drawn.
        keep = ~(np.r_[False, (X[1:] == X[:-1]) & (Y[1:] == Y[:-1])] & ~is_first)
        X, Y, line_of = X[keep], Y[keep], line_of[keep]
        m = np.bincount(line_of, minlength=len(sel))
        vm = (m >= 2)[line_of]
        X, Y = X[vm], Y[vm]
        m = m[m >= 2]
        if not len(m):
            return self._finish(b"")
        # Commands: per line MoveTo(1) dx dy, LineTo(m-1) (dx dy)*; the cursor runs on across lines.
        dx, dy = np.diff(X, prepend=0), np.diff(Y, prepend=0)
        nl = len(m)
        lo = np.zeros(nl + 1, dtype=np.int64)
        np.cumsum(2 * m + 2, out=lo[1:])
        ints = np.empty(int(lo[-1]), dtype=np.uint64)
        ints[lo[:-1]] = 9
        ints[lo[:-1] + 3] = (2 | ((m - 1) << 3)).astype(np.uint64)
        line_idx = np.repeat(np.arange(nl), m)
        v0 = np.zeros(nl, dtype=np.int64)
        np.cumsum(m[:-1], out=v0[1:])
        pos = np.arange(len(X)) - v0[line_idx]
        px = lo[:-1][line_idx] + np.where(pos == 0, 1, 2 * pos + 2)
        ints[px], ints[px + 1] = _zigzag(dx), _zigzag(dy)
        geom, _ = _varints(ints)
        feat = b"\x18\x02" + b"\x22" + _varint(len(geom)) + geom
        name = self.name.encode()
        layer = b"".join(
            [
                b"\x78\x02",
                b"\x0a" + _varint(len(name)) + name,
                b"\x12" + _varint(len(feat)) + feat,
                b"\x28" + _varint(extent),
            ]
        )
        return self._finish(b"\x1a" + _varint(len(layer)) + layer)


def _q16(v: np.ndarray) -> np.ndarray:
    if not len(v):
        return v.astype(np.uint64)
    return np.clip((v - v.min()) / max(float(np.ptp(v)), 1e-12) * 65535, 0, 65535).astype(np.uint64)


def _morton(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Interleave the bits of two 16-bit integer arrays (Z-order curve)."""

    def spread(v):
        v = v.astype(np.uint64) & np.uint64(0xFFFF)
        for s, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
            v = (v | (v << np.uint64(s))) & np.uint64(mask)
        return v

    return spread(x) | (spread(y) << np.uint64(1))
