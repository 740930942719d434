"""Commander map: hexagons coloured by a layer over the agency's streets and labelled
districts, filters (quick ranges, a week slider), search, drill-down, export.

The view is a URL: ``assets/view.js`` writes the filters, layer, resolution and
camera into the address (``?layer=counts&start=...&cam=zoom,lat,lon``) and
applies an address (opened, pasted, back/forward) through the ``view-in`` store.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from dash import (
    ALL,
    ClientsideFunction,
    Input,
    Output,
    Patch,
    State,
    dcc,
    html,
    no_update,
)

from ...export import to_text  # the CLI's writer: textual H3 ids, centre lat/lon
from ...scope import ScopeError
from .. import auth, drill, suppress
from ..context import DOW_LABELS, MAP_RESOLUTIONS, AppContext, Filters, parse_cell
from ..figures import GRAPH_CONFIG, hex_data, legend, map_figure
from ..layers import available_layers, get_layer
from ..suppress import compute  # counts below k never reach viewers and planners

PATH = "/"
#: The filter widgets (id, property), in the order :func:`_filters` takes them.
FILTERS = (
    ("f-start", "value"),
    ("f-end", "value"),
    ("f-cats", "value"),
    ("f-hours", "value"),
    ("f-dows", "value"),
    ("f-districts", "value"),
    ("f-res", "value"),
    ("f-empty", "value"),
    ("f-week", "value"),
    ("f-weekmode", "value"),
)
FILTER_IDS = tuple(i for i, _ in FILTERS)
#: Quick ranges relative to the data's last day: (value, label, days or None).
RANGES = (
    ("24h", "24 h", 1),
    ("7d", "7 days", 7),
    ("28d", "28 days", 28),
    ("ytd", "year to date", None),
    ("12m", "12 months", None),
    ("custom", "custom", None),
)

WEEK_HINT = "Tick to step through the weeks; the map shows one week at a time."
_H = {"fontSize": "12px", "fontWeight": 600, "textTransform": "uppercase", "color": "#4a5560", "margin": "12px 0 4px"}
_BTN = {"marginRight": "6px", "padding": "4px 10px", "fontSize": "12px", "cursor": "pointer"}


def quick_range(ctx: AppContext, which: str) -> tuple[str, str] | None:
    """``(start, end)`` local days of a quick range ending on the data's last day."""
    last = ctx.last_day
    if last is None or which == "custom":
        return None
    end = pd.Timestamp(last)
    days = {v: d for v, _, d in RANGES}.get(which)
    if days:
        start = end - pd.Timedelta(days=days - 1)
    elif which == "ytd":
        start = pd.Timestamp(year=end.year, month=1, day=1)
    elif which == "12m":
        start = end - pd.DateOffset(years=1) + pd.Timedelta(days=1)
    else:
        return None
    lo = ctx.date_range[0]
    if lo is not None:
        start = max(start, pd.Timestamp(lo))
    return start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")


def range_of(ctx: AppContext, start, end) -> str:
    """Which quick range the dates are ("custom" when none)."""
    for v, _, _ in RANGES:
        if quick_range(ctx, v) == (start, end):
            return v
    return "custom"


#: The address's filter keys (``assets/view.js``); ``cam`` is the camera.
VIEW_KEYS = ("layer", "start", "end", "cats", "hours", "dows", "d", "res", "empty", "wm", "week")


def view_from_search(ctx: AppContext, search: str | None) -> dict:
    """The view an address names (``?layer=...&res=10&cam=zoom,lat,lon``, written by
    ``assets/view.js``): ``{"layer", <filter widget id>: value, ..., "cam"}``, with None
    for what the address leaves to the page's defaults.

    The page is built with it, so an address opens on its own view in one round trip
    (no default view drawn first, no camera move once the map has loaded). It reads the
    address exactly as view.js's ``urlToView`` does (filters only when a filter key is
    present); values are then checked like the widgets' (:meth:`Filters.from_widgets`).
    """
    from urllib.parse import parse_qsl

    q = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=True))
    v: dict = {"layer": None, **dict.fromkeys(FILTER_IDS), "cam": None}

    def items(k):
        return [x for x in q.get(k, "").split(",") if x != ""]

    def num(x, cast=int):
        try:
            return cast(x)
        except (TypeError, ValueError):
            return None

    if any(k in q for k in VIEW_KEYS):
        hours = [num(x) for x in q["hours"].split("-")] if q.get("hours") else [0, 24]
        v.update(
            {
                "layer": get_layer(q.get("layer") or "counts").id,
                "f-start": q.get("start") or None,
                "f-end": q.get("end") or None,
                "f-cats": items("cats") if "cats" in q else list(ctx.categories),
                "f-hours": hours if len(hours) == 2 and None not in hours else [0, 24],
                "f-dows": [d for d in map(num, items("dows")) if d is not None] if "dows" in q else list(range(7)),
                "f-districts": items("d"),
                "f-res": num(q.get("res")) if num(q.get("res")) in MAP_RESOLUTIONS else None,
                "f-empty": ["empty"] if q.get("empty") else [],
                "f-weekmode": ["week"] if q.get("wm") else [],
                "f-week": num(q.get("week")),
            }
        )
    cam = [num(x, float) for x in q.get("cam", "").split(",")]
    if len(cam) == 3 and None not in cam and 0 <= cam[0] <= 22 and -85 <= cam[1] <= 85 and -180 <= cam[2] <= 180:
        v["cam"] = {"zoom": cam[0], "center": {"lat": cam[1], "lon": cam[2]}}
    return v


def layout(ctx: AppContext, role: str, search: str | None = None) -> html.Div:
    f = ctx.default_filters()
    lo, hi = ctx.date_range
    layers = available_layers()
    weeks = ctx.weeks
    # An address with a view (filters, camera) opens on that view: its colours and camera
    # come with the page, so nothing is drawn twice (view.js skips what the page applied).
    wv = {
        "f-start": f.start,
        "f-end": f.end,
        "f-cats": list(ctx.categories),
        "f-hours": [0, 24],
        "f-dows": list(range(7)),
        "f-districts": [],
        "f-res": f.res,
        "f-empty": ["empty"] if f.show_empty else [],
        "f-week": max(len(weeks) - 1, 0),
        "f-weekmode": [],
    }
    view = view_from_search(ctx, search)
    layer, values = layers[0], None
    if view["layer"] is not None:
        fv = _filters(*[wv[i] if view[i] is None else view[i] for i in FILTER_IDS], ctx=ctx)
        try:
            values = compute(ctx, get_layer(view["layer"]), fv)
        except (
            ScopeError,
            ValueError,
        ):  # e.g. a district without an outline: view.js applies it, the callback says why
            view = {**view, "layer": None}
        else:
            layer, f = get_layer(view["layer"]), fv
            wv.update({i: view[i] for i in FILTER_IDS if view[i] is not None})
    if values is None:
        # The first colours come with the page (one round trip less than a callback after it).
        values = compute(ctx, layer, f)
    first = hex_data(ctx, layer, f, values)
    marks = {
        i: pd.Timestamp(w).strftime("%b %y")
        for i, w in enumerate(weeks)
        if pd.Timestamp(w).day <= 7 and pd.Timestamp(w).month in (1, 7)
    }
    sidebar = html.Div(
        className="cmd-side",
        children=[
            html.Div("Find a place", style=_H),
            dcc.Input(
                id="search",
                type="search",
                debounce=True,
                placeholder="block, street or district (Enter)",
                style={"width": "100%", "boxSizing": "border-box", "padding": "4px 6px"},
            ),
            html.Div(id="search-results", className="search-results"),
            dcc.Store(id="search-hits"),
            dcc.Store(id="search-goto"),
            html.Div("Layer", style=_H),
            dcc.RadioItems(
                id="f-layer",
                options=[{"label": " " + x.label, "value": x.id} for x in layers],
                value=layer.id,
                labelStyle={"display": "block"},
            ),
            html.Div("When (local dates)", style=_H),
            dcc.RadioItems(
                id="f-range",
                options=[{"label": " " + lab, "value": v} for v, lab, _ in RANGES],
                value=range_of(ctx, wv["f-start"], wv["f-end"]),
                inline=True,
                className="quick-ranges",
                labelStyle={"marginRight": "8px", "whiteSpace": "nowrap"},
            ),
            html.Div(
                className="date-row",
                children=[
                    # debounce: applied on Enter *and* when the box loses focus.
                    dcc.Input(id="f-start", type="date", value=wv["f-start"], min=lo, max=hi, debounce=True),
                    html.Span("–"),
                    dcc.Input(id="f-end", type="date", value=wv["f-end"], min=lo, max=hi, debounce=True),
                ],
            ),
            dcc.Checklist(
                id="f-weekmode",
                options=[{"label": " one week at a time (slider)", "value": "week"}],
                value=wv["f-weekmode"],
                style={"marginTop": "6px"},
            ),
            html.Div(
                className="week-row",
                children=[
                    html.Button("▶", id="week-play", title="play the weeks one after another", style=_BTN),
                    html.Div(
                        dcc.Slider(
                            id="f-week",
                            min=0,
                            max=max(len(weeks) - 1, 0),
                            step=1,
                            value=wv["f-week"],
                            marks=marks,
                            included=False,
                            updatemode="mouseup",
                        ),
                        style={"flex": "1 1 auto"},
                    ),
                ],
            ),
            html.Div(WEEK_HINT, id="week-label", style={"color": "#4a5560", "fontSize": "12px"}),
            dcc.Interval(id="week-timer", interval=1500, disabled=True),
            html.Div("Categories", style=_H),
            dcc.Checklist(
                id="f-cats",
                options=[{"label": " " + c, "value": c} for c in ctx.categories],
                value=wv["f-cats"],
                labelStyle={"display": "inline-block", "width": "50%"},
            ),
            html.Div("Time of day (local hours)", style=_H),
            dcc.RangeSlider(
                id="f-hours",
                min=0,
                max=24,
                step=1,
                value=wv["f-hours"],
                marks={h: str(h) for h in range(0, 25, 6)},
                allowCross=False,
            ),
            html.Div("Days of week", style=_H),
            dcc.Checklist(
                id="f-dows",
                options=[{"label": " " + d, "value": i} for i, d in enumerate(DOW_LABELS)],
                value=wv["f-dows"],
                labelStyle={"display": "inline-block", "width": "25%"},
            ),
            html.Div("Districts", style=_H),
            dcc.Dropdown(
                id="f-districts",
                options=[{"label": d, "value": d} for d in ctx.district_names],
                value=wv["f-districts"],
                multi=True,
                placeholder="all districts",
            ),
            html.Div("Hexagon size", style=_H),
            dcc.RadioItems(
                id="f-res",
                options=[
                    {"label": f" {lab}", "value": r}
                    for r, lab in zip(MAP_RESOLUTIONS, ("large", "medium", "small", "block"))
                ],
                value=wv["f-res"],
                inline=True,
                labelStyle={"marginRight": "10px"},
            ),
            dcc.Checklist(
                id="f-empty",
                options=[{"label": " draw cells with no incidents", "value": "empty"}],
                value=wv["f-empty"],
                style={"marginTop": "4px"},
            ),
            html.Div("Export this view", style=_H),
            html.Button("GeoJSON", id="btn-geojson", style=_BTN),
            html.Button("CSV", id="btn-csv", style=_BTN),
            html.Button("PNG", id="btn-png", style=_BTN, title="the map as shown, with its legend"),
            dcc.Store(id="png-saved"),
            dcc.Download(id="download"),
        ],
    )
    live_ctl = []
    if ctx.live:
        live_ctl = [
            html.Div(
                id="live-legend",
                className="live-legend",
                children=[
                    dcc.Checklist(
                        id="live-show", options=[{"label": " live incidents", "value": "on"}], value=["on"], inline=True
                    ),
                    html.Span(className="live-dot", style={"opacity": 1.0}),
                    " last 15 min ",
                    html.Span(className="live-dot", style={"opacity": 0.55}),
                    " 1 h ",
                    html.Span(className="live-dot", style={"opacity": 0.2}),
                    " 6 h+",
                ],
            )
        ]
    main = html.Div(
        className="cmd-main",
        children=[
            html.Div(id="summary", className="cmd-summary", children=summary(ctx, layer, f, values)),
            html.Div(
                className="cmd-mapbox",
                children=[
                    dcc.Graph(id="map", config=GRAPH_CONFIG, className="cmd-map", figure=map_figure(ctx, view["cam"])),
                    html.Div(id="legend", className="cmd-legend", children=legend(first)),
                    *live_ctl,
                ],
            ),
            # The hexagons' colours (assets/hexmap.js paints them); clicks on a hexagon.
            dcc.Store(id="map-hex", data=first),
            dcc.Store(id="map-hex-key", data=hex_key(first)),
            dcc.Store(id="map-hex-shown"),
            dcc.Store(id="map-base", data=ctx.base_info()),
            dcc.Store(id="map-base-shown"),
            dcc.Store(id="map-click"),
            dcc.Store(id="view-in"),
            dcc.Store(id="view-out"),
            dcc.Store(id="goto-done"),
            # What of the address the page was built with (view.js does not apply it again).
            html.Div(
                id="view-applied",
                hidden=True,
                **{
                    "data-search": search or "",
                    "data-filters": "1" if view["layer"] is not None else "",
                    "data-cam": "1" if view["cam"] is not None else "",
                },
            ),
        ],
    )
    from .. import live

    live_parts = live.components() if ctx.live else []
    panel = html.Div(
        id="drill",
        className="cmd-panel",
        children=[html.Div(id="drill-body", children=drill.placeholder()), *live_parts],
    )
    return html.Div(className="cmd-root", children=[sidebar, main, panel])


#: What a recolour changes in the map-hex data; the rest (tiles, palette, classes)
#: depends only on the resolution and the layer, named by :func:`hex_key`.
_RECOLOUR_FIELDS = ("ids", "k", "v", "zmin", "zmax", "counts", "empty")


def hex_key(data: dict) -> str:
    """Which tiles and palette the browser holds: a recolour under the same key is a Patch."""
    return f"{data['res']}:{data['version']}:{data['layer']}"


def week_bounds(ctx: AppContext, week) -> tuple[str, str] | None:
    """(Monday, Sunday) of slider position ``week``, or None when out of range."""
    try:
        w = pd.Timestamp(ctx.weeks[int(week)])
    except (TypeError, ValueError, IndexError):
        return None
    return w.strftime("%Y-%m-%d"), (w + pd.Timedelta(days=6)).strftime("%Y-%m-%d")


def _filters(
    start, end, cats, hours, dows, districts, res, empty=None, week=None, weekmode=None, ctx: AppContext | None = None
) -> Filters:
    if ctx is not None and weekmode and "week" in weekmode:
        wb = week_bounds(ctx, week)
        if wb is not None:
            start, end = wb
    return Filters.from_widgets(start, end, cats, hours, dows, districts, res, bool(empty))


def register(app, ctx: AppContext) -> None:
    filter_inputs = [Input(i, p) for i, p in FILTERS]
    filter_states = [State(i, p) for i, p in FILTERS]

    def filters(*vals) -> Filters:
        return _filters(*vals, ctx=ctx)

    @app.callback(
        Output("map-hex", "data"),
        Output("map-hex-key", "data"),
        Output("legend", "children"),
        Output("summary", "children"),
        Input("f-layer", "value"),
        *filter_inputs,
        State("map-hex-key", "data"),
        prevent_initial_call=True,
    )
    def update_map(layer_id, *args):
        """Recolour: a Patch of cell positions, palette indices and values only (the
        geometry is in the browser as cached vector tiles). A new resolution or layer
        sends the whole (small) colour spec: other tiles, another palette."""
        auth.require()
        *vals, shown_key = args
        f = filters(*vals)
        layer = get_layer(layer_id)
        error = None
        try:
            values = compute(ctx, layer, f)
        except ScopeError as e:  # e.g. a district with no outline: say so and draw nothing, never the whole city
            error = [html.Span(f"Cannot show this view: {e}", id="summary-text")]
            uni = ctx.universe(f.res)
            values = pd.DataFrame({"cell": uni, "value": np.full(len(uni), np.nan)})
        data = hex_data(ctx, layer, f, values)
        key = hex_key(data)
        out = data
        if key == shown_key:
            out = Patch()
            for k in _RECOLOUR_FIELDS:
                if k in data:
                    out[k] = data[k]
        return out, key, legend(data), error or summary(ctx, layer, f, values)

    @app.callback(
        Output("f-range", "value"),
        Output("f-start", "value"),
        Output("f-end", "value"),
        Input("f-range", "value"),
        Input("f-start", "value"),
        Input("f-end", "value"),
        prevent_initial_call=True,
    )
    def sync_range(which, start, end):
        """A quick range sets the dates; typed dates select the matching range (or custom)."""
        auth.require()
        from dash import ctx as cbctx

        if cbctx.triggered_id == "f-range":
            r = quick_range(ctx, which)
            return no_update, *(r if r else (no_update, no_update))
        return range_of(ctx, start, end), no_update, no_update

    @app.callback(
        Output("week-label", "children"),
        Input("f-week", "value"),
        Input("f-weekmode", "value"),
        prevent_initial_call=True,
    )
    def week_label(week, mode):
        wb = week_bounds(ctx, week)
        if not mode or wb is None:
            return WEEK_HINT
        return f"Week {wb[0]} to {wb[1]} (Mon–Sun)"

    @app.callback(
        Output("week-timer", "disabled"),
        Output("week-play", "children"),
        Output("f-weekmode", "value", allow_duplicate=True),
        Output("f-week", "value", allow_duplicate=True),
        Input("week-play", "n_clicks"),
        State("week-timer", "disabled"),
        State("f-week", "value"),
        prevent_initial_call=True,
    )
    def play(n, disabled, week):
        """Play/pause: the timer steps the slider a week at a time (from the start when at the end)."""
        if not n:
            return no_update, no_update, no_update, no_update
        if disabled:
            start = 0 if week is None or int(week) >= len(ctx.weeks) - 1 else no_update
            return False, "❚❚", ["week"], start
        return True, "▶", no_update, no_update

    @app.callback(
        Output("f-week", "value", allow_duplicate=True),
        Output("week-timer", "disabled", allow_duplicate=True),
        Output("week-play", "children", allow_duplicate=True),
        Input("week-timer", "n_intervals"),
        State("f-week", "value"),
        prevent_initial_call=True,
    )
    def step(_, week):
        nxt = (int(week) if week is not None else -1) + 1
        if nxt >= len(ctx.weeks):
            return no_update, True, "▶"
        return nxt, no_update, no_update

    @app.callback(
        Output("search-results", "children"),
        Output("search-hits", "data"),
        Output("search-goto", "data"),
        Input("search", "value"),
        prevent_initial_call=True,
    )
    def search(text):
        """Places matching the typed text (the store's own addresses and the district
        polygons); the map goes to the best one, the others are a click away. Single
        block addresses only for roles that may see incident rows."""
        role = auth.require()
        if not text or not str(text).strip():
            return [], [], None  # cleared: the found-place mark goes too
        hits = ctx.places.search(str(text)[:80], blocks=auth.may_see_incidents(role))
        if not hits:
            return (
                [
                    html.Div(
                        f"No block, street or district matches “{text}”.", id="search-none", style={"color": "#8a1c1c"}
                    )
                ],
                [],
                no_update,
            )
        rows = [
            html.Button(
                h["label"] + (f" · {h['n']:,} incidents" if h["n"] else ""),
                id={"type": "goto", "i": i},
                n_clicks=0,
                className="search-hit",
            )
            for i, h in enumerate(hits)
        ]
        return rows, hits, {**hits[0], "t": 0}

    app.clientside_callback(
        ClientsideFunction("rtcc", "pickHit"),
        Output("search-goto", "data", allow_duplicate=True),
        Input({"type": "goto", "i": ALL}, "n_clicks"),
        State("search-hits", "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("rtcc", "gotoPlace"),
        Output("goto-done", "data"),
        Input("search-goto", "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("rtcc", "paintHex"), Output("map-hex-shown", "data"), Input("map-hex", "data")
    )
    app.clientside_callback(
        ClientsideFunction("rtcc", "paintBase"), Output("map-base-shown", "data"), Input("map-base", "data")
    )
    app.clientside_callback(
        ClientsideFunction("rtcc", "savePng"),
        Output("png-saved", "data"),
        Input("btn-png", "n_clicks"),
        prevent_initial_call=True,
    )
    # The view in the address bar: widgets -> URL (view.js pushes history), URL -> widgets.
    app.clientside_callback(
        ClientsideFunction("rtcc", "viewToUrl"),
        Output("view-out", "data"),
        Input("f-layer", "value"),
        *filter_inputs,
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("rtcc", "urlToView"),
        Output("f-layer", "value", allow_duplicate=True),
        *[Output(i, p, allow_duplicate=True) for i, p in FILTERS],
        Input("view-in", "data"),
        prevent_initial_call=True,
    )

    @app.callback(
        Output("drill-body", "children"),
        Input("map-click", "data"),
        State("f-layer", "value"),
        *filter_states,
        prevent_initial_call=True,
    )
    def on_click(click, layer_id, *vals):
        role = auth.require()
        try:
            loc = click["cell"]
        except (TypeError, KeyError):
            return no_update
        cell = parse_cell(loc)
        if cell is None:
            return drill.placeholder("That is not a map cell.")
        return drill.panel(ctx, cell, filters(*vals), get_layer(layer_id), role)

    @app.callback(
        Output("download", "data"),
        Input("btn-geojson", "n_clicks"),
        Input("btn-csv", "n_clicks"),
        State("f-layer", "value"),
        *filter_states,
        prevent_initial_call=True,
    )
    def export(n_geo, n_csv, layer_id, *vals):
        auth.require()
        from dash import ctx as cbctx

        f = filters(*vals)
        layer = get_layer(layer_id)
        fmt = "geojson" if cbctx.triggered_id == "btn-geojson" else "csv"
        body, name = export_view(ctx, layer, f, fmt, role=auth.current_role())
        rows = len(json.loads(body)["features"]) if fmt == "geojson" else max(0, body.count("\n") - 1)
        auth.audit(
            "export", {"format": fmt, "file": name, "layer": layer.id, "rows": rows, "filters": drill.filters_dict(f)}
        )
        return {"content": body, "filename": name, "type": "application/geo+json" if fmt == "geojson" else "text/csv"}

    _base_routes(app, ctx)


def _base_routes(app, ctx: AppContext) -> None:
    """``/geo/base/streets/<z>/<x>/<y>.pbf``: the street centre lines as gzip'd vector
    tiles (behind the same log-in guard as every route)."""
    import flask

    def streets_tile(z: int, x: int, y: int):
        st = ctx.street_tiles
        if st is None or not 0 <= z <= 22 or not (0 <= x < 2**z and 0 <= y < 2**z):
            flask.abort(404)
        etag = f"streets-{st.version}-{z}-{x}-{y}"
        if flask.request.if_none_match.contains(etag):
            return flask.Response(status=304)
        r = flask.Response(st.tile(z, x, y), mimetype="application/vnd.mapbox-vector-tile")
        r.headers["Content-Encoding"] = "gzip"
        r.set_etag(etag)
        r.headers["Cache-Control"] = "private, max-age=86400"
        return r

    app.server.add_url_rule("/geo/base/streets/<int:z>/<int:x>/<int:y>.pbf", "rtcc_streets_tile", streets_tile)

    def place(cell: str):
        """The hover name of one cell for the signed-in role (``{"cell", "name"}``)."""
        c = parse_cell(cell)
        if c is None:
            flask.abort(404)
        name = ctx.place_names([c], auth.current_role())[0]
        r = flask.jsonify({"cell": cell, "name": name})
        r.headers["Cache-Control"] = "private, max-age=3600"
        return r

    app.server.add_url_rule("/geo/place/<cell>", "rtcc_place", place)


def _what_is_coloured(layer, f: Filters, n_drawn: int, n_all: int, n_valued: int | None = None) -> str:
    if n_valued is not None and f.show_empty:
        # "Draw empty cells" colours every cell: say how many have a value, not "all of them have one".
        what = (
            "with at least one incident"
            if layer.id == "counts"
            else "in a class of the legend"
            if layer.kind == "categorical"
            else "with a value above zero"
        )
        return f"{n_drawn:,} of {n_all:,} cells coloured (empty cells drawn too; {n_valued:,} {what})"
    if layer.id == "counts":
        return f"{n_drawn:,} of {n_all:,} cells coloured (cells with at least one incident)"
    if layer.kind == "categorical":
        return f"{n_drawn:,} of {n_all:,} cells coloured (cells in a class of the legend)"
    return f"{n_drawn:,} of {n_all:,} cells coloured (cells with a value above zero)"


def summary(ctx: AppContext, layer, f: Filters, values: pd.DataFrame) -> list:
    """Header line: how many incidents the view covers, what the colours show, dates."""
    q = f.query(ctx.source, ctx.categories)
    v = values["value"].to_numpy("float64")
    if layer.id == "counts" and not suppress.active():
        n = int(np.nansum(v))  # the counts layer already tallied every incident of the view
    else:
        # the map's incidents: those with a location (see rtcc_geo.schema, not geolocated)
        n = ctx.cache.get(("total", q), lambda: int(ctx.store.count(q.with_(geolocated=True))))
    keep = np.isfinite(v)
    if layer.empty_value is not None and not f.show_empty:
        keep &= v != layer.empty_value
    nz = int(np.count_nonzero(keep))
    valued = int(np.count_nonzero(np.isfinite(v) & (v != layer.empty_value))) if layer.empty_value is not None else None
    days = ""
    if f.start and f.end:
        nd = (pd.Timestamp(f.end) - pd.Timestamp(f.start)).days + 1
        days = f" ({nd} day{'s' if nd != 1 else ''})"
    parts = [
        html.B(suppress.count_text(n, source=ctx.source)),
        " · ",
        html.Span(f"{f.start or '…'} to {f.end or '…'}{days}", id="summary-dates"),
        f" · {layer.label} · {_what_is_coloured(layer, f, nz, len(v), valued)}",
    ]
    if f.categories is not None and set(f.categories) != set(ctx.categories):
        parts.append(f" · {', '.join(f.categories) or 'no categories'}")
    if f.hours != (0, 24):
        parts.append(f" · {f.hours[0]:02d}:00–{f.hours[1]:02d}:00")
    if f.dows and len(f.dows) < 7:
        parts.append(" · " + ",".join(DOW_LABELS[d] for d in f.dows))
    if f.districts:
        parts.append(f" · district {', '.join(f.districts)}")
    if layer.unit in suppress.COUNT_UNITS and suppress.active():
        parts.append(f" · cells with fewer than {suppress.k_for(ctx.source)} incidents are not coloured")
    return [html.Span(parts, id="summary-text")]


def export_view(ctx: AppContext, layer, f: Filters, fmt: str, role: str | None = None) -> tuple[str, str]:
    """The current view as GeoJSON or CSV: one row per cell with a value (aggregated
    cells only, whatever the role: exports never carry incident rows), each named by
    its place (:meth:`AppContext.place_names`: block and district, or the district
    alone for roles without incident access). For viewers and planners cells with
    fewer than k incidents are left out (:mod:`rtcc_geo.app.suppress`)."""
    values = compute(ctx, layer, f, role=role)
    v = values["value"].to_numpy("float64")
    keep = np.isfinite(v) & (v != 0)
    cells = values["cell"].to_numpy(np.int64)[keep]
    vals = v[keep]
    places = ctx.place_names(cells, role) if len(cells) else []
    name = f"rtcc-{ctx.source or 'view'}-{layer.id}-r{f.res}-{f.start}_{f.end}"
    if fmt == "geojson":
        doc = json.loads(to_text(pd.DataFrame({"cell": cells, "place": places, "value": vals}), "geojson"))
        meta = {
            "layer": layer.id,
            "res": f.res,
            "start": f.start,
            "end": f.end,
            "categories": list(f.categories or []),
            "hours": list(f.hours),
            "dows": list(f.dows or []),
            "districts": list(f.districts or []),
        }
        if layer.unit in suppress.COUNT_UNITS and suppress.active(role):
            meta["left_out"] = f"cells with fewer than {suppress.k_for(ctx.source)} incidents"
        return json.dumps(
            {"type": "FeatureCollection", "rtcc_view": meta, "features": doc["features"]}
        ), name + ".geojson"
    return to_text(pd.DataFrame({"cell": cells, "place": places, layer.id: vals}), "csv"), name + ".csv"
