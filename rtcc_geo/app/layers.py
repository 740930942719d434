"""Map layers: what colours the hexagons.

Each layer turns the current :class:`~app.context.Filters` into one value per
cell of the map's universe, by calling ``rtcc_geo`` (the store API for counts;
the hot-spot, temporal, forecast and deploy modules for the rest). A layer
whose library module is not installed is simply not offered.

A layer result is a frame aligned with ``ctx.universe(res)``: ``value``
(float, NaN = no value) and, for categorical layers, ``label``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import pandas as pd

from .context import AppContext, Filters

#: Map background (figures.OFFLINE_STYLE); every legend class must stand out from it.
MAP_BACKGROUND = "#eef0f2"
# Sequential scale for intensities (ColorBrewer YlOrBr, colour-blind safe): the lowest
# value drawn is a clear yellow, never the background's grey (zero is not drawn).
SEQ_SCALE: list[tuple[float, str]] = [
    (0.0, "#fed976"),
    (0.2, "#fec44f"),
    (0.4, "#fe9929"),
    (0.6, "#ec7014"),
    (0.8, "#cc4c02"),
    (1.0, "#662506"),
]


@dataclass
class Layer:
    id: str
    label: str
    compute: Callable[[AppContext, Filters], pd.DataFrame]
    kind: str = "continuous"  # or "categorical"
    unit: str = ""
    #: categorical layers: ordered (value, label, colour)
    classes: list[tuple[float, str, str]] = field(default_factory=list)
    needs: tuple[str, ...] = ()  # modules that must import for the layer to exist
    empty_value: float | None = 0.0  # value not drawn unless "draw empty cells" is ticked

    def available(self) -> bool:
        for m in self.needs:
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001 - a half-written module counts as absent
                return False
        return True


def _aligned(ctx: AppContext, f: Filters, cells: np.ndarray, values: np.ndarray, fill=0.0) -> pd.DataFrame:
    uni = ctx.universe(f.res)
    out = np.full(len(uni), fill, dtype="float64")
    pos = np.searchsorted(uni, cells)
    ok = (pos < len(uni)) & (uni[np.minimum(pos, len(uni) - 1)] == cells)
    out[pos[ok]] = values[ok]
    return pd.DataFrame({"cell": uni, "value": out})


def cell_counts(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Incident counts per cell for the filters (``Store.counts``).

    Read as counts per cell *and category* for every other filter, kept in the
    context's cache, and summed over the ticked categories here: ticking or
    unticking a category (the commonest filter change) is then a sum over a frame
    already in memory, not another pass over every partition of the store. The
    sums equal ``Store.counts(res, ("cell",), q)`` with the category filter
    (``tests/test_app.py`` checks it against a pandas tally).
    """
    q = f.query(ctx.source, ctx.categories)
    base = q.with_(categories=None)
    t = ctx.cache.get(("cell-category", f.res, base), lambda: ctx.store.counts(f.res, ("cell", "category"), base))
    if q.categories is not None:
        t = t[t["category"].isin(list(q.categories))]
    cells, inv = np.unique(t["cell"].to_numpy(np.int64), return_inverse=True)
    n = np.bincount(inv.ravel(), weights=t["n"].to_numpy("float64"), minlength=len(cells))
    return _aligned(ctx, f, cells, n)


COUNTS = Layer("counts", "Incident counts", cell_counts, unit="incidents")


def _study_boundary(ctx: AppContext, f: Filters):
    """The study area: the selected districts' polygons (through the stored agency's
    aliases; a district with no polygon is an error, never the whole city), else the boundary."""
    if f.districts and ctx.agency is not None:
        return ctx.scope(f).boundary()
    if f.districts:
        sel = None if ctx.districts is None else ctx.districts[ctx.districts["district"].isin(list(f.districts))]
        if sel is None or len(sel) == 0:
            from rtcc_geo.scope import ScopeError

            raise ScopeError(f"district filter {list(f.districts)} cannot be honoured: no district polygons match")
        return sel.union_all()
    return ctx.boundary


def _from_table(ctx: AppContext, f: Filters, df: pd.DataFrame, col: str, fill=np.nan) -> pd.DataFrame:
    return _aligned(ctx, f, df["cell"].to_numpy(np.int64), df[col].to_numpy("float64"), fill=fill)


def gistar(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Getis-Ord Gi* confidence bins (-3..3, FDR) from :func:`rtcc_geo.hotspots.hotspots`
    (analytic inference, k = 1 ring, study area = boundary or selected districts)."""
    from rtcc_geo.hotspots import hotspots

    q = f.query(ctx.source, ctx.categories)
    if ctx.store.count(q) == 0:
        return _aligned(ctx, f, np.array([], np.int64), np.array([]), fill=np.nan)
    from rtcc_geo import defaults

    # The CLI's defaults (rtcc_geo.defaults): same inference, so the same bins.
    gdf = hotspots(
        ctx.store, "gistar", f.res, q, boundary=_study_boundary(ctx, f), **defaults.gistar_kwargs(interactive=True)
    )
    return _from_table(ctx, f, pd.DataFrame(gdf.drop(columns="geometry")), "bin")


def kde(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Kernel density (incidents / km², quartic kernel, default bandwidth rule) from
    :func:`rtcc_geo.hotspots.hotspots` (method ``kde``)."""
    from rtcc_geo.hotspots import hotspots

    q = f.query(ctx.source, ctx.categories)
    if ctx.store.count(q) == 0:
        return _aligned(ctx, f, np.array([], np.int64), np.array([]))
    gdf = hotspots(ctx.store, "kde", f.res, q, boundary=_study_boundary(ctx, f))
    return _from_table(ctx, f, pd.DataFrame(gdf.drop(columns="geometry")), "density", fill=0.0)


def emerging(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Emerging hot-spot category (Esri's 17) from :func:`rtcc_geo.temporal.emerging_hotspots`
    on a weekly cube of the view (cells = the map's universe)."""
    from rtcc_geo.temporal import EHSA_CATEGORIES, build_cube, emerging_hotspots

    q = f.query(ctx.source, ctx.categories)
    if ctx.store.count(q) == 0:
        return _aligned(ctx, f, np.array([], np.int64), np.array([]))
    # The view's Scope: the same study cells and whole-week window as `rtcc-geo emerging`.
    cube = build_cube(ctx.scope(f), f.res, "week")
    t = emerging_hotspots(cube).table
    code = {c: i for i, c in enumerate(EHSA_CATEGORIES)}
    t = t.assign(code=t["category"].map(code).astype("float64"))
    return _from_table(ctx, f, t, "code", fill=float(code["no pattern detected"]))


def _forecast_model(ctx: AppContext, f: Filters):
    """A space-time KDE (:class:`rtcc_geo.forecast.STKDE`) fitted on the year
    before the view's end, shared by the forecast and deployment layers."""

    def make():
        from rtcc_geo.forecast.io import counts_from_store
        from rtcc_geo.forecast.kde import STKDE

        end = _view_end(ctx, f)
        start = end - pd.Timedelta(days=365)
        c = counts_from_store(
            ctx.store, ctx.source, "all", start=start.strftime("%Y-%m-%d"), end=end.strftime("%Y-%m-%d"), res=f.res
        )
        return STKDE().fit(c, until=end.strftime("%Y-%m-%d"))

    return ctx.cache.get(("forecast-model", ctx.source, f.res, f.end), make)


def _view_end(ctx: AppContext, f: Filters) -> pd.Timestamp:
    return pd.Timestamp(f.end or ctx.date_range[1]) + pd.Timedelta(days=1)


def forecast(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Expected incidents per cell in the 7 days after the view's end."""
    s = _forecast_model(ctx, f).predict()
    return _aligned(ctx, f, s.index.to_numpy(np.int64), s.to_numpy("float64"))


#: The shift the deployment layer plans: the evening after the view ends, local time.
DEPLOY_SHIFT = (16, 24)
DEPLOY_UNITS = 5


def deployment(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Patrol areas of :func:`rtcc_geo.deploy.plan_shift` for the evening shift after the
    view ends (5 units x 2 areas, a cell and its ring; exact MILP), value = unit number."""
    from rtcc_geo.deploy.api import plan_from_store

    start, train_from = deploy_shift(ctx, f)
    # The CLI's entry point on the view's Scope: `rtcc-geo deploy --model stkde --units 5
    # --areas-per-unit 2 --radius 1 --train-from <view end - 365 d> --shift-start <view end + 16 h>`.
    plan = ctx.cache.get(
        ("deploy", ctx.source, f.res, f.end),
        lambda: plan_from_store(
            ctx.scope(f),
            None,
            start,
            DEPLOY_SHIFT[1] - DEPLOY_SHIFT[0],
            DEPLOY_UNITS,
            model=DEPLOY_MODEL,
            res=f.res,
            train_from=train_from,
            areas_per_unit=2,
            radius=1,
        ),
    )
    cells = plan.cells["cell"].to_numpy(np.int64)
    return _aligned(ctx, f, cells, plan.cells["unit"].to_numpy("float64"), fill=np.nan)


#: The map's quick forecast model (the forecast and deployment layers).
DEPLOY_MODEL = "stkde"


def deploy_shift(ctx: AppContext, f: Filters) -> tuple[pd.Timestamp, str]:
    """(shift start, first training day) of the deployment layer's shift."""
    day = _view_end(ctx, f)
    return day + pd.Timedelta(hours=DEPLOY_SHIFT[0]), (day - pd.Timedelta(days=365)).strftime("%Y-%m-%d")


def changed(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Incidents above expected in the 28 days ending on the view's last day, for the cells
    that rose beyond chance against the 84 days before (:func:`rtcc_geo.compstat.changes.what_changed`)."""
    from rtcc_geo.compstat.changes import what_changed

    q = f.query(ctx.source, ctx.categories).with_(start=None, end=None)
    end = (_view_end(ctx, f) - pd.Timedelta(days=1)).date()
    t = what_changed(ctx.store, q, end=end, res=f.res, top=None, names=False, ehsa_weeks=0).table
    t = t[t["unit"] == "cell"] if len(t) else t
    if not len(t):
        return _aligned(ctx, f, np.array([], np.int64), np.array([]))
    return _aligned(ctx, f, t["key"].astype("int64").to_numpy(), t["excess"].to_numpy("float64"))


def live_alerts(ctx: AppContext, f: Filters) -> pd.DataFrame:
    """Open (unacknowledged) live alerts per cell, from the store's ``alerts`` table
    that :mod:`rtcc_geo.live` keeps (hot-spot, near-repeat and space-time-scan
    rules). Not cached: alerts change while the app runs."""
    from rtcc_geo import grid

    df = ctx.store.get_table("alerts")
    if df is None or not len(df):
        return _aligned(ctx, f, np.array([], np.int64), np.array([]))
    df = df[~df["acknowledged"].astype(bool) & df["cell"].notna()]
    if ctx.source is not None and "source" in df:
        df = df[df["source"].astype(str) == ctx.source]
    cells = df["cell"].astype("int64").to_numpy()
    if not len(cells):
        return _aligned(ctx, f, np.array([], np.int64), np.array([]))
    # Alerts are raised on the live engine's grid; show them at the map's resolution.
    fine = grid.resolution(cells) >= f.res
    cells = grid.parent(cells[fine], f.res)
    u, n = np.unique(cells, return_counts=True)
    return _aligned(ctx, f, u, n.astype("float64"))


# Gi* bins in plain words (the technical name is in TERMS); RdYlBu ends, no near-white class.
_GI_CLASSES = [
    (-3.0, "cold: very likely (99%)", "#313695"),
    (-2.0, "cold: likely (95%)", "#4575b4"),
    (-1.0, "cold: possibly (90%)", "#74add1"),
    (0.0, "no clear pattern", "rgba(200,200,200,0.35)"),
    (1.0, "hot: possibly (90%)", "#fdae61"),
    (2.0, "hot: likely (95%)", "#f46d43"),
    (3.0, "hot: very likely (99%)", "#a50026"),
]
#: Emerging hot-spot classes: warm hues for hot patterns, green/blue/purple for cold ones;
#: each differs from the background and its neighbours, also for red-green colour
#: blindness (tests/test_app.py checks CIELAB distances, with a deuteranopia simulation).
_EHSA_COLOURS = [
    "#ffd92f",
    "#fdae61",
    "#e6550d",
    "#7f0000",
    "#f768a1",
    "#c51b8a",
    "#8c510a",
    "#dfc27d",
    "#c7e9c0",
    "#41ab5d",
    "#00441b",
    "#08306b",
    "#9ecae1",
    "#2171b5",
    "#6a51a3",
    "#bcbddc",
    "rgba(200,200,200,0.35)",
]
#: Plain words for the emerging hot-spot categories (Esri's definitions, ~90 % = most weeks).
EHSA_PLAIN = {
    "new": "{k} in the last week only, never before",
    "consecutive": "{k} for an unbroken run of the last weeks, not before",
    "intensifying": "{k} in most weeks, getting {more}",
    "persistent": "{k} in most weeks, steady",
    "diminishing": "{k} in most weeks, easing off",
    "sporadic": "{k} on and off",
    "oscillating": "{k} now, the opposite in some earlier weeks",
    "historical": "{k} in most weeks, but not lately",
}


def ehsa_plain(category: str) -> str:
    """ "intensifying hot spot" -> "hot in most weeks, getting hotter"."""
    parts = category.split()
    if len(parts) < 3 or parts[0] not in EHSA_PLAIN:
        return category
    k = parts[1]
    return EHSA_PLAIN[parts[0]].format(k=k, more="hotter" if k == "hot" else "colder")


def _ehsa_classes() -> list[tuple[float, str, str]]:
    try:
        from rtcc_geo.temporal import EHSA_CATEGORIES
    except Exception:  # noqa: BLE001
        return []
    return [(float(i), ehsa_plain(c), _EHSA_COLOURS[i % len(_EHSA_COLOURS)]) for i, c in enumerate(EHSA_CATEGORIES)]


def ehsa_terms() -> list[tuple[str, str]]:
    try:
        from rtcc_geo.temporal import EHSA_CATEGORIES
    except Exception:  # noqa: BLE001
        return []
    return [(ehsa_plain(c), c) for c in EHSA_CATEGORIES]


GISTAR = Layer(
    "gistar",
    "Hot and cold spots",
    gistar,
    kind="categorical",
    classes=_GI_CLASSES,
    needs=("rtcc_geo.hotspots",),
    empty_value=0.0,
)
KDE = Layer("kde", "Kernel density", kde, unit="per km²", needs=("rtcc_geo.hotspots",))
EMERGING = Layer(
    "emerging",
    "Hot spots over time",
    emerging,
    kind="categorical",
    classes=_ehsa_classes(),
    needs=("rtcc_geo.temporal",),
    empty_value=16.0,
)

FORECAST = Layer(
    "forecast",
    "Forecast: next 7 days",
    forecast,
    unit="expected incidents",
    needs=("rtcc_geo.forecast.kde", "rtcc_geo.forecast.io"),
)
# Okabe-Ito (colour-blind safe), without its yellow and black.
_UNIT_COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#7f3c8d", "#8c510a"]
DEPLOY = Layer(
    "deploy",
    "Patrol plan (next evening)",
    deployment,
    kind="categorical",
    classes=[(float(u), f"unit {u}", _UNIT_COLOURS[(u - 1) % len(_UNIT_COLOURS)]) for u in range(1, DEPLOY_UNITS + 1)],
    needs=("rtcc_geo.deploy.select", "rtcc_geo.forecast.kde"),
    empty_value=None,
)

ALERTS = Layer("alerts", "Live alerts (open)", live_alerts, unit="open alerts", needs=("rtcc_geo.live.alerts",))

CHANGED = Layer(
    "changed",
    "What changed (last 28 days)",
    changed,
    unit="incidents above expected",
    needs=("rtcc_geo.compstat.changes",),
)

#: The technical term behind each layer (one click away in the legend).
TERMS = {
    "counts": "Incidents per H3 hexagon for the filters.",
    "gistar": "Getis-Ord Gi* z-scores (k = 1 ring), analytic inference with a false-discovery-rate "
    "correction; 90/95/99 % are the confidence bins.",
    "kde": "Quartic kernel density estimate, incidents per km², default bandwidth rule.",
    "emerging": "Emerging hot-spot analysis (Esri's 17 categories): Gi* per week, Mann-Kendall trend "
    "of the z-scores; 'most weeks' means at least 90 % of them.",
    "forecast": "Space-time kernel density (STKDE) fitted on the year before the view's end.",
    "deploy": "Patrol areas chosen by an exact integer programme on the forecast risk.",
    "alerts": "Open live alerts (hot-spot, near-repeat and space-time-scan rules).",
    "changed": "Last 28 days against the 84 before, per cell: one-sided exact Poisson test with a "
    "false-discovery-rate correction; the value is the excess over the expected count.",
}

#: Every layer the app knows, in menu order; filtered by :meth:`Layer.available`.
LAYERS: list[Layer] = [COUNTS, GISTAR, KDE, EMERGING, FORECAST, DEPLOY, ALERTS, CHANGED]

#: Layers whose values change without the filters changing (never cached).
UNCACHED = frozenset({"alerts"})


def available_layers() -> list[Layer]:
    return [lay for lay in LAYERS if lay.available()]


def get_layer(layer_id: str | None) -> Layer:
    for lay in available_layers():
        if lay.id == layer_id:
            return lay
    return COUNTS


def compute(ctx: AppContext, layer: Layer, f: Filters) -> pd.DataFrame:
    """The layer's values for ``f``, shared by the map, export and drill-down (LRU cached)."""
    if layer.id in UNCACHED:
        return layer.compute(ctx, f)
    key = (layer.id, f.res, f.query(ctx.source, ctx.categories))
    return ctx.cache.get(key, lambda: layer.compute(ctx, f))


def hotspot_layer() -> Layer | None:
    """The Gi* layer when :mod:`rtcc_geo.hotspots` provides it (drill-down status)."""
    for lay in available_layers():
        if lay.id == "gistar":
            return lay
    return None
