"""The map's vector tiles (rtcc_geo/app/tiles.py) against an independent decoder and projection.

Decoded with the mapbox-vector-tile package; expected coordinates from pyproj's
Web Mercator (EPSG:3857) and shapely, not from our own projection code.
"""

from __future__ import annotations

import math

import h3
import mapbox_vector_tile as mvt
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from rtcc_geo.app.tiles import BUFFER, EXTENT, HexTiles

HALF = 20037508.342789244  # half the Web Mercator world width, metres


@pytest.fixture(scope="module")
def cells():
    # Every res-9 cell within ~6 km of Philadelphia City Hall (a few thousand).
    c = h3.api.basic_int.latlng_to_cell(39.9526, -75.1652, 9)
    return np.array(sorted(h3.api.basic_int.grid_disk(c, 30)), dtype=np.int64)


def tile_xy(lon, lat, z):
    n = 2**z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def expected_ring(cell: int, z: int, x: int, y: int) -> np.ndarray:
    """The cell's outline in tile units (x right, y down), from pyproj, unrounded."""
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    lat, lon = np.array(h3.api.basic_int.cell_to_boundary(cell)).T
    mx, my = to_merc.transform(lon, lat)
    size = 2 * HALF / 2**z
    return np.column_stack([((mx + HALF) - x * size) / size * EXTENT, ((HALF - my) - y * size) / size * EXTENT])


@pytest.mark.parametrize("z", [9, 11, 13, 15])
def test_tiles_decode_to_the_cells_outlines(cells, z):
    tiles = HexTiles(cells)
    x, y = tile_xy(-75.1652, 39.9526, z)
    body = tiles.tile(z, x, y)
    layer = mvt.decode(body, default_options={"y_coord_down": True})["hex"]
    assert layer["extent"] == EXTENT
    feats = layer["features"]
    got = {f["id"]: f for f in feats}
    assert len(got) == len(feats)  # one feature per cell
    # Which cells: every cell whose outline meets the tile is there, and nothing
    # farther than the buffer (shapely on pyproj coordinates).
    tile_box = shapely.box(0, 0, EXTENT, EXTENT)
    buf_box = shapely.box(-BUFFER - 1, -BUFFER - 1, EXTENT + BUFFER + 1, EXTENT + BUFFER + 1)
    rings = {i: expected_ring(int(c), z, x, y) for i, c in enumerate(cells)}
    meets = {i for i, r in rings.items() if shapely.Polygon(r).intersects(tile_box)}
    assert meets and meets <= set(got)
    for i in got:
        assert shapely.box(*shapely.Polygon(rings[i]).bounds).intersects(buf_box)
    for i, f in got.items():
        assert f["properties"] == {"h": format(int(cells[i]), "x")}
        assert f["geometry"]["type"] == "Polygon"
        ring = np.array(f["geometry"]["coordinates"][0], dtype=float)
        assert np.array_equal(ring[0], ring[-1])  # the decoder closes the ring
        ring = ring[:-1]
        want = rings[i]
        # Every decoded vertex is a true vertex rounded to the tile grid (<= 0.5 unit + float slack).
        d = np.sqrt(((ring[:, None, :] - want[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
        assert d.max() <= 0.75, (i, d.max())
        # ... and at high zoom no vertex is lost.
        if z >= 13:
            assert len(ring) == len(want)
        # Exterior ring: positive surveyor's area in tile coordinates (y down), as MVT 2.1 wants.
        xs, ys = ring[:, 0], ring[:, 1]
        area = 0.5 * np.sum(xs * np.roll(ys, -1) - np.roll(xs, -1) * ys)
        assert area > 0
        assert abs(area - shapely.Polygon(want).area) <= 0.02 * shapely.Polygon(want).area + 4 * len(ring)


def test_low_zoom_drops_degenerate_rings_and_empty_tiles(cells):
    tiles = HexTiles(cells)
    # At z 3 a res-9 cell is a fraction of a tile unit: rounding collapses it, so it is left out.
    x, y = tile_xy(-75.1652, 39.9526, 3)
    body = tiles.tile(3, x, y)
    layer = (
        mvt.decode(body, default_options={"y_coord_down": True}).get("hex", {"features": []})
        if body
        else {"features": []}
    )
    for f in layer["features"]:
        ring = np.array(f["geometry"]["coordinates"][0], dtype=float)[:-1]
        assert len(np.unique(ring, axis=0)) >= 3
    # A tile far from every cell is empty (a valid tile with no layer).
    assert tiles.tile(10, 0, 0) == b""
    assert mvt.decode(b"") == {}
    # The cache gives the same bytes back.
    x, y = tile_xy(-75.1652, 39.9526, 12)
    assert tiles.tile(12, x, y) is tiles.tile(12, x, y)


@pytest.fixture(scope="module")
def streets(shared_data):
    """Philadelphia's street centre lines within ~2.5 km of City Hall (shapely, EPSG:4326)."""
    import geopandas as gpd

    g = gpd.read_file(shared_data / "philadelphia" / "street_centerlines.geojson")
    near = g[g.intersects(shapely.box(-75.195, 39.93, -75.135, 39.975))]
    assert len(near) > 1000
    return list(near.geometry)


@pytest.mark.parametrize("z", [11, 15])
def test_street_tiles_decode_to_the_street_lines(streets, z):
    """Street tiles (gzip'd MVT, one MultiLineString) against pyproj: every line meeting
    the tile is drawn (at city zoom chained into fewer, longer strokes, every point of
    every segment on one), each decoded vertex lies on a true line within the level of
    detail's simplification tolerance, and the drawn length matches."""
    import gzip

    from rtcc_geo.app.tiles import LINE_BANDS, STROKE_MAX_Z, LineTiles

    tiles = LineTiles(streets)
    assert len(tiles) == len(streets)
    x, y = tile_xy(-75.1636, 39.9524, z)
    layer = mvt.decode(gzip.decompress(tiles.tile(z, x, y)), default_options={"y_coord_down": True})["streets"]
    max_z, extent, tol_deg = next(b for b in LINE_BANDS if z <= b[0])
    assert layer["extent"] == extent and len(layer["features"]) == 1
    geom = layer["features"][0]["geometry"]
    parts = geom["coordinates"] if geom["type"] == "MultiLineString" else [geom["coordinates"]]
    got = shapely.MultiLineString([np.asarray(p, dtype=float) for p in parts])
    # Expected: the true lines in this tile's units (pyproj Web Mercator), unrounded.
    to_merc = Transformer.from_crs(4326, 3857, always_xy=True)
    size = 2 * HALF / 2**z

    def tile_units(line):
        lon, lat = np.asarray(line.coords).T
        mx, my = to_merc.transform(lon, lat)
        return shapely.LineString(
            np.column_stack([((mx + HALF) - x * size) / size * extent, ((HALF - my) - y * size) / size * extent])
        )

    want = [tile_units(g) for g in streets]
    box = shapely.box(0, 0, extent, extent)
    meets = [w for w in want if w.intersects(box)]
    drawable = [w for w in meets if w.length >= 2]
    assert len(drawable) > 10
    # Tolerance: the band's simplification (degrees -> tile units) plus rounding.
    tol = tol_deg / 360.0 * 2**z * extent * 1.4 + 0.75
    if z <= STROKE_MAX_Z:
        # Chained into strokes: far fewer lines than segments, and every segment drawn:
        # each point of it (every 2 units) lies on a drawn line.
        assert len(parts) * 3 < len(drawable)
        on = shapely.get_coordinates(shapely.segmentize(shapely.intersection(drawable, box), 2.0))
        assert shapely.distance(shapely.points(on), got).max() <= tol
    else:
        # Lines shorter than a tile unit may round to a point and are left out; no other.
        assert len(parts) >= len(drawable)
    truth = shapely.MultiLineString(meets + [w for w in want if w.intersects(box.buffer(BUFFER / EXTENT * extent))])
    pts = shapely.points(shapely.get_coordinates(got))
    inside = shapely.intersects(pts, box)
    assert shapely.distance(pts[inside], truth).max() <= tol
    clip_got = shapely.intersection(got, box).length
    clip_want = shapely.intersection(shapely.MultiLineString(meets), box).length
    assert abs(clip_got - clip_want) <= 0.03 * clip_want
    # Far from every street: an empty (gzip'd) tile; the cache returns the same bytes.
    assert gzip.decompress(tiles.tile(12, 0, 0)) == b""
    assert tiles.tile(z, x, y) is tiles.tile(z, x, y)


def test_strokes_hold_every_segment_once(streets):
    """Chaining street segments into strokes keeps every step of every line exactly once
    (same undirected point pairs, as a multiset), within the span, and makes fewer lines."""
    from collections import Counter

    from rtcc_geo.app.tiles import STROKE_SPAN, _strokes

    def steps(lines):
        out: Counter = Counter()
        for c in lines:
            c = np.asarray(c)[:, :2]
            for a, b in zip(map(tuple, c[:-1]), map(tuple, c[1:])):
                out[(a, b) if a <= b else (b, a)] += 1
        return out

    strokes = _strokes(streets)
    assert steps(strokes) == steps([g.coords for g in streets])
    assert len(strokes) * 3 < len(streets)
    longest_segment = max(float(np.ptp(np.asarray(g.coords), axis=0).max()) for g in streets)
    assert max(float(np.ptp(c, axis=0).max()) for c in strokes) <= max(STROKE_SPAN, longest_segment)
