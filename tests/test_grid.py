"""H3 helpers against the h3 library itself."""

import h3
import numpy as np
import pytest

from rtcc_geo import grid


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(7)
    return rng.uniform(39.87, 40.13, 5000), rng.uniform(-75.28, -74.96, 5000)


def test_index_points_is_the_cell_containing_the_point_at_each_resolution(points):
    """Each resolution's cell is ``latlng_to_cell`` at that resolution, not the
    parent of the finest cell: H3 children do not tile their parent exactly,
    so a roll-up would put points near cell edges in the neighbouring cell."""
    lat, lon = points
    cells = grid.index_points(lat, lon, (7, 8, 9, 10))
    fine = [h3.latlng_to_cell(a, b, 10) for a, b in zip(lat[:500], lon[:500])]
    for r in (7, 8, 9, 10):
        direct = np.array([h3.str_to_int(h3.latlng_to_cell(a, b, r)) for a, b in zip(lat[:500], lon[:500])])
        assert np.array_equal(cells[r][:500], direct), r
    # The difference is real: some points' coarse cell is not the parent of their fine cell.
    rolled = np.array([h3.str_to_int(h3.cell_to_parent(c, 7)) for c in fine])
    assert 0 < (cells[7][:500] != rolled).sum() < 100


@pytest.mark.parametrize("res", [0, 5, 7, 8, 9])
def test_parent_equals_h3_cell_to_parent(points, res):
    lat, lon = points
    fine = grid.latlng_to_cells(lat, lon, 10)
    ref = np.array([h3.str_to_int(h3.cell_to_parent(h3.int_to_str(int(c)), res)) for c in fine])
    assert np.array_equal(grid.parent(fine, res), ref)
    assert set(grid.resolution(grid.parent(fine, res))) == {res}


def test_parent_refuses_coarser_cells(points):
    lat, lon = points
    with pytest.raises(ValueError):
        grid.parent(grid.latlng_to_cells(lat[:3], lon[:3], 7), 9)


def test_cover_holds_cells_whose_centres_are_inside():
    from shapely.geometry import Polygon

    poly = Polygon([(-75.2, 39.95), (-75.1, 39.95), (-75.1, 40.0), (-75.2, 40.0)])
    cells = grid.cover(poly, 9)
    lat, lon = grid.cell_centres(cells)
    assert len(cells) > 100
    assert ((lon > -75.2) & (lon < -75.1) & (lat > 39.95) & (lat < 40.0)).all()
    # Area check: cell count times average area is close to the box's area.
    import geopandas as gpd

    area = gpd.GeoSeries([poly], crs=4326).to_crs(32618).area.iloc[0] / 1e6
    assert abs(len(cells) * grid.cell_area_km2(9) - area) / area < 0.05


def test_cells_to_geodataframe_rings_match_h3():
    c = h3.str_to_int(h3.latlng_to_cell(40.0, -75.1, 9))
    gdf = grid.cells_to_geodataframe(np.array([c]))
    ring = list(gdf.geometry.iloc[0].exterior.coords)[:-1]
    ref = [(lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(c))]
    assert np.allclose(ring, ref)
