"""The readable commander map, server side (Philadelphia 2024): place names, search,
quick ranges, legend colours, the hour-of-week heat map's scale, alert groups.
Expected values from pandas on the store's rows and from hand-written colour maths."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.store.base import Query

from .test_app_common import philly_app, philly_store  # noqa: F401  (fixtures)

# --- colour maths (sRGB -> CIELAB, D65; Machado et al. 2009 colour-blindness, severity 1) ---
_M = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
DEUTAN = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]])
PROTAN = np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]])


def _linear(c: str) -> np.ndarray:
    c = c.strip()
    if c.startswith("#"):
        rgb = np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    else:
        rgb = np.array([float(x) for x in c[c.index("(") + 1 : c.index(")")].split(",")[:3]]) / 255
    return np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def lab(c: str, sim: np.ndarray | None = None) -> np.ndarray:
    lin = _linear(c)
    if sim is not None:
        lin = np.clip(sim @ lin, 0, 1)
    xyz = _M @ lin / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a: str, b: str, sim=None) -> float:
    return float(np.linalg.norm(lab(a, sim) - lab(b, sim)))


def test_every_legend_class_stands_out_from_the_background_and_its_neighbours():
    from rtcc_geo.app.figures import EMPTY_COLOUR, SEQ_PALETTE
    from rtcc_geo.app.layers import DEPLOY, EMERGING, GISTAR, MAP_BACKGROUND

    legends = {
        # Classes drawn by default (the empty value, "no clear pattern", is not drawn).
        "gistar": [c for v, _, c in GISTAR.classes if v != GISTAR.empty_value],
        "emerging": [c for v, _, c in EMERGING.classes if v != EMERGING.empty_value],
        "deploy": [c for _, _, c in DEPLOY.classes],
        # With "draw empty cells": 0 incidents (its own grey), then the ramp from 1.
        "counts": [EMPTY_COLOUR, SEQ_PALETTE[0], SEQ_PALETTE[len(SEQ_PALETTE) // 2], SEQ_PALETTE[-1]],
    }
    assert len(legends["emerging"]) == 16 and len(legends["gistar"]) == 6
    for name, cols in legends.items():
        for sim, min_bg, min_nb in ((None, 20, 10), (DEUTAN, 15, 5), (PROTAN, 15, 5)):
            bg = [delta_e(c, MAP_BACKGROUND, sim) for c in cols]
            assert min(bg) >= min_bg, (name, sim is not None, cols[int(np.argmin(bg))], min(bg))
            nb = [delta_e(a, b, sim) for a, b in pairwise(cols)]
            assert min(nb) >= min_nb, (name, sim is not None, min(nb))
    # Within a legend no two classes are the same colour for normal vision.
    for name, cols in legends.items():
        pairs = [delta_e(a, b) for i, a in enumerate(cols) for b in cols[i + 1 :]]
        assert min(pairs) >= 10, (name, min(pairs))


def _scale_colour(scale, t: float) -> np.ndarray:
    """Linear interpolation of a Plotly colour scale at ``t`` (in linear RGB)."""
    stops = np.array([s for s, _ in scale])
    cols = np.array([_linear(c) for _, c in scale])
    return np.array([np.interp(t, stops, cols[:, j]) for j in range(3)])


def test_hour_of_week_heat_map_is_darker_where_there_are_more_incidents(philly_app):
    """The drill-down's heat map: 0 incidents palest, the busiest hour darkest, a scale bar."""
    from rtcc_geo.app import drill

    ctx = philly_app.rtcc
    df = ctx.store.incidents(Query(source="philadelphia", geolocated=True), columns=["h3_r9"])
    cell = int(df.groupby("h3_r9").size().idxmax())
    f = ctx.default_filters()
    from rtcc_geo.app.layers import COUNTS

    import flask

    # The commander's panel, as inside a request (its incident rows are audited).
    with philly_app.server.test_request_context("/"):
        flask.g.rtcc_user, flask.g.rtcc_role = "chief", "commander"
        fig = drill.panel(ctx, cell, f, COUNTS, "commander")
    graph = next(c for c in fig if getattr(c, "id", None) == "drill-profile")
    tr = graph.figure["data"][0]
    assert tr["showscale"] is True and tr["zmin"] == 0
    z = np.array(tr["z"], dtype=float)
    assert tr["zmax"] == z.max() > 0 and (z == 0).any()
    # The colour each hour gets (Plotly: linear in (z - zmin) / (zmax - zmin)), its luminance.
    lum = np.array([(_M @ _scale_colour(tr["colorscale"], v / tr["zmax"]))[1] for v in z.ravel()])
    vals = z.ravel()
    order = np.argsort(vals)
    # More incidents -> darker, strictly between different counts.
    for a, b in pairwise(order):
        if vals[b] > vals[a]:
            assert lum[b] < lum[a]
    assert lum[vals == 0].min() > 0.85 and lum[vals == vals.max()].max() < 0.1


def _blocks(store) -> pd.DataFrame:
    df = store.incidents(
        Query(source="philadelphia", geolocated=True), columns=["block", "district", "lon", "lat", "h3_r9", "h3_r8"]
    )
    df["b"] = df["block"].astype("string").str.upper().str.split().str.join(" ")
    return df


def test_cells_are_named_by_their_most_frequent_block_and_district(philly_app):
    ctx = philly_app.rtcc
    df = _blocks(ctx.store)
    busiest = df.groupby("h3_r9").size().sort_values().index[-20:].to_numpy(np.int64)
    names = ctx.place_names(busiest, "commander")
    import shapely

    for cell, name in zip(busiest, names):
        vc = df[df["h3_r9"] == cell]["b"].dropna().value_counts()
        top = min(vc[vc == vc.max()].index)
        import h3

        lat, lon = h3.api.basic_int.cell_to_latlng(int(cell))
        dist = ctx.districts[ctx.districts.contains(shapely.Point(lon, lat))]["district"].astype(str).tolist()
        assert name == f"{top}, district {dist[0]}", (name, top, dist)
    # Case and spacing variants are one place: "5500 BLOCK Tulip St" == "5500 BLOCK TULIP ST".
    from rtcc_geo.app.places import norm_block

    assert norm_block(pd.Series(["5500 BLOCK Tulip St", " 5500  BLOCK TULIP ST "])).nunique() == 1
    # Coarser cells roll the fine rows up.
    c8 = int(df.groupby("h3_r8").size().idxmax())
    vc = df[df["h3_r8"] == c8]["b"].dropna().value_counts()
    assert ctx.place_names(np.array([c8]), "commander")[0].startswith(min(vc[vc == vc.max()].index) + ", ")
    # Roles without incident access get the district alone (a block is an incident field).
    for role in ("viewer", "planner"):
        v = ctx.place_names(busiest, role)
        assert all(x.startswith("district ") and "BLOCK" not in x for x in v)


def test_search_finds_streets_blocks_and_districts(philly_app):
    ctx = philly_app.rtcc
    df = _blocks(ctx.store)
    hits = ctx.places.search("market st")
    assert hits[0]["kind"] == "street" and hits[0]["label"].startswith("MARKET ST (whole street")
    mk = df[df["b"].str.fullmatch(r"\d+ BLOCK MARKET ST", na=False)]
    assert hits[0]["n"] == len(mk.dropna(subset=["lon", "lat"]))
    w, s, e, n = hits[0]["bbox"]
    assert (w, s, e, n) == pytest.approx(
        (
            mk.groupby("b")["lon"].median().min(),
            mk.groupby("b")["lat"].median().min(),
            mk.groupby("b")["lon"].median().max(),
            mk.groupby("b")["lat"].median().max(),
        )
    )
    blocks = [h for h in ctx.places.search("1500 BLOCK MARKET ST") if h["kind"] == "block"]
    assert blocks and blocks[0]["label"].startswith("1500 BLOCK MARKET ST, district ")
    assert blocks[0]["n"] == int((df["b"] == "1500 BLOCK MARKET ST").sum())
    # A district by number, with its polygon's box.
    d9 = ctx.places.search("9")
    poly = ctx.districts[ctx.districts["district"].astype(str) == "09"].geometry.iloc[0]
    assert d9[0]["label"] == "District 09" and d9[0]["bbox"] == pytest.approx(list(poly.bounds), abs=1e-5)
    assert ctx.places.search("district 22")[0]["label"] == "District 22"
    # Roles without incident access: streets and districts, never a single block.
    assert all(h["kind"] != "block" for h in ctx.places.search("1500 BLOCK MARKET ST", blocks=False))
    assert ctx.places.search("zzzz no such street") == []


def test_quick_ranges_end_on_the_datas_last_local_day(philly_app):
    from rtcc_geo.app.pages.commander import quick_range, range_of

    ctx = philly_app.rtcc
    inc = ctx.store.incidents(Query(source="philadelphia", include_unknown_time=True), columns=["occurred_from"])
    last = inc["occurred_from"].dt.tz_convert("America/New_York").max().normalize().tz_localize(None)

    def day(t):
        return f"{t:%Y-%m-%d}"

    assert quick_range(ctx, "24h") == (day(last), day(last))
    assert quick_range(ctx, "7d") == (day(last - pd.Timedelta(days=6)), day(last))
    assert quick_range(ctx, "28d") == (day(last - pd.Timedelta(days=27)), day(last))
    assert quick_range(ctx, "ytd") == (f"{last.year}-01-01", day(last))
    assert quick_range(ctx, "custom") is None
    assert range_of(ctx, *quick_range(ctx, "28d")) == "28d"
    assert range_of(ctx, "2024-03-01", "2024-03-09") == "custom"


def test_alerts_are_grouped_by_place_and_kind_and_paged(philly_app):
    from rtcc_geo import grid
    from rtcc_geo.app.live import GROUPS_PER_PAGE, group_alerts

    ctx = philly_app.rtcc
    cells10 = ctx.store.counts(10, ("cell",), Query(source="philadelphia")).sort_values("n")["cell"].to_numpy(np.int64)
    rng = np.random.default_rng(3)
    pick = rng.choice(cells10[-40:], size=60)
    kinds = rng.choice(["hotspot", "near_repeat"], size=60)
    df = pd.DataFrame(
        {
            "alert_id": [f"a{i}" for i in range(60)],
            "kind": kinds,
            "cell": pd.array(pick, dtype="Int64"),
            "created_at": pd.Timestamp("2024-12-31T12:00Z") + pd.to_timedelta(np.arange(60), "min"),
        }
    )
    g = group_alerts(df)
    want = pd.DataFrame({"kind": kinds, "cell": grid.parent(pick, 9)}).groupby(["kind", "cell"]).size()
    got = g.set_index(["kind", "cell"])["n"]
    assert got.sort_index().equals(want.sort_index().rename("n"))
    assert g["n"].is_monotonic_decreasing and g["n"].sum() == 60
    assert len(g) > GROUPS_PER_PAGE  # more groups than one page: the panel pages them


def test_week_slider_filters_one_local_week(philly_app):
    from rtcc_geo.app.pages.commander import _filters, week_bounds

    ctx = philly_app.rtcc
    weeks = ctx.weeks
    w = pd.DatetimeIndex(weeks)
    assert (w.day_of_week == 0).all() and (np.diff(w) == pd.Timedelta(days=7)).all()
    assert weeks[-1] == "2024-12-30"  # the Monday of the data's last local day (Tue 2024-12-31)
    i = 20
    f = _filters(
        "2024-01-01", "2024-12-31", list(ctx.categories), [0, 24], list(range(7)), [], 9, [], i, ["week"], ctx=ctx
    )
    assert (
        (f.start, f.end)
        == week_bounds(ctx, i)
        == (weeks[i], f"{pd.Timestamp(weeks[i]) + pd.Timedelta(days=6):%Y-%m-%d}")
    )
    # Not ticked: the dates as given.
    g = _filters("2024-01-01", "2024-12-31", None, None, None, None, 9, None, i, [], ctx=ctx)
    assert (g.start, g.end) == ("2024-01-01", "2024-12-31")
    # The week's count equals pandas on the local dates.
    inc = ctx.store.incidents(Query(source="philadelphia"), columns=["occurred_from"])
    local = inc["occurred_from"].dt.tz_convert("America/New_York").dt.tz_localize(None)
    want = int(((local >= pd.Timestamp(f.start)) & (local < pd.Timestamp(f.end) + pd.Timedelta(days=1))).sum())
    assert ctx.store.count(f.query("philadelphia", ctx.categories)) == want > 0
