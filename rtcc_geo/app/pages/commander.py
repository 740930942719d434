"""Commander map: hexagons coloured by a layer, filters, outlines, drill-down, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from dash import ClientsideFunction, Input, Output, Patch, State, dcc, html, no_update

from ...export import to_text  # the CLI's writer: textual H3 ids, centre lat/lon
from ...scope import ScopeError
from .. import auth, drill, suppress
from ..context import DOW_LABELS, MAP_RESOLUTIONS, AppContext, Filters, parse_cell
from ..figures import GRAPH_CONFIG, hex_data, legend, map_figure
from ..layers import available_layers, get_layer
from ..suppress import compute  # counts below k never reach viewers and planners

PATH = "/"
FILTER_IDS = ("f-dates", "f-cats", "f-hours", "f-dows", "f-districts", "f-res")

_SIDEBAR = {"width": "270px", "flex": "0 0 270px", "padding": "10px 14px", "overflowY": "auto",
            "background": "#fff", "borderRight": "1px solid #d8dde2", "fontSize": "13px"}
_H = {"fontSize": "12px", "fontWeight": 600, "textTransform": "uppercase", "color": "#556",
      "margin": "14px 0 4px"}
_LEGEND = {"position": "absolute", "right": "10px", "bottom": "24px", "background": "rgba(255,255,255,0.92)",
           "padding": "6px 8px", "border": "1px solid #ccd", "borderRadius": "3px", "fontSize": "12px",
           "zIndex": 5, "pointerEvents": "none"}
_BTN = {"marginRight": "6px", "padding": "4px 10px", "fontSize": "12px", "cursor": "pointer"}


def layout(ctx: AppContext, role: str) -> html.Div:
    f = ctx.default_filters()
    lo, hi = ctx.date_range
    layers = available_layers()
    # The first colours come with the page (one round trip less than a callback after it).
    values = compute(ctx, layers[0], f)
    first = hex_data(ctx, layers[0], f, values)
    sidebar = html.Div(style=_SIDEBAR, children=[
        html.Div("Layer", style=_H),
        dcc.RadioItems(id="f-layer", options=[{"label": " " + x.label, "value": x.id} for x in layers],
                       value=layers[0].id, labelStyle={"display": "block"}),
        html.Div("Dates (local)", style=_H),
        dcc.DatePickerRange(id="f-dates", start_date=f.start, end_date=f.end, min_date_allowed=lo,
                            max_date_allowed=hi, display_format="YYYY-MM-DD", minimum_nights=0),
        html.Div("Categories", style=_H),
        dcc.Checklist(id="f-cats", options=[{"label": " " + c, "value": c} for c in ctx.categories],
                      value=list(ctx.categories), labelStyle={"display": "inline-block", "width": "50%"}),
        html.Div("Time of day (local hours)", style=_H),
        dcc.RangeSlider(id="f-hours", min=0, max=24, step=1, value=[0, 24],
                        marks={h: str(h) for h in range(0, 25, 6)}, allowCross=False),
        html.Div("Days of week", style=_H),
        dcc.Checklist(id="f-dows", options=[{"label": " " + d, "value": i} for i, d in enumerate(DOW_LABELS)],
                      value=list(range(7)), labelStyle={"display": "inline-block", "width": "25%"}),
        html.Div("Districts", style=_H),
        dcc.Dropdown(id="f-districts", options=[{"label": d, "value": d} for d in ctx.district_names],
                     value=[], multi=True, placeholder="all districts"),
        html.Div("Resolution (H3)", style=_H),
        dcc.RadioItems(id="f-res", options=[{"label": f" {r}", "value": r} for r in MAP_RESOLUTIONS],
                       value=f.res, inline=True, labelStyle={"marginRight": "10px"}),
        dcc.Checklist(id="f-empty", options=[{"label": " draw cells with no incidents", "value": "empty"}],
                      value=["empty"] if f.show_empty else [], style={"marginTop": "4px"}),
        html.Div("Export this view", style=_H),
        html.Button("GeoJSON", id="btn-geojson", style=_BTN),
        html.Button("CSV", id="btn-csv", style=_BTN),
        html.Button("PNG", id="btn-png", style=_BTN, title="the map as shown, with its legend"),
        dcc.Store(id="png-saved"),
        dcc.Download(id="download"),
    ])
    main = html.Div(style={"flex": "1 1 auto", "display": "flex", "flexDirection": "column", "minWidth": 0}, children=[
        html.Div(id="summary", children=summary(ctx, layers[0], f, values), style={"padding": "6px 12px", "background": "#1d2731", "color": "#fff",
                                      "fontSize": "13px", "minHeight": "18px"}),
        html.Div(style={"flex": "1 1 auto", "position": "relative", "minHeight": "420px", "display": "flex"}, children=[
            dcc.Graph(id="map", config=GRAPH_CONFIG, style={"flex": "1 1 auto"}, figure=map_figure(ctx)),
            html.Div(id="legend", children=legend(first), style=_LEGEND),
        ]),
        # The hexagons' colours (assets/hexmap.js paints them); clicks on a hexagon.
        dcc.Store(id="map-hex", data=first),
        dcc.Store(id="map-hex-key", data=hex_key(first)),
        dcc.Store(id="map-hex-shown"),
        dcc.Store(id="map-click"),
    ])
    from .. import live

    live_parts = live.components() if ctx.live else []
    panel = html.Div(id="drill", style={"width": "400px", "flex": "0 0 400px", "overflowY": "auto",
                                        "background": "#fff", "borderLeft": "1px solid #d8dde2",
                                        "padding": "8px 10px", "fontSize": "13px"},
                     children=[html.Div(id="drill-body", children=drill.placeholder()), *live_parts])
    return html.Div(style={"display": "flex", "height": "calc(100vh - 40px)"}, children=[sidebar, main, panel])


#: What a recolour changes in the map-hex data; the rest (tiles, palette, classes)
#: depends only on the resolution and the layer, named by :func:`hex_key`.
_RECOLOUR_FIELDS = ("ids", "k", "v", "zmin", "zmax")


def hex_key(data: dict) -> str:
    """Which tiles and palette the browser holds: a recolour under the same key is a Patch."""
    return f"{data['res']}:{data['version']}:{data['layer']}"


def _filters(dates_start, dates_end, cats, hours, dows, districts, res, empty=None) -> Filters:
    return Filters.from_widgets(dates_start, dates_end, cats, hours, dows, districts, res, bool(empty))


def register(app, ctx: AppContext) -> None:
    filter_inputs = [Input("f-dates", "start_date"), Input("f-dates", "end_date"), Input("f-cats", "value"),
                     Input("f-hours", "value"), Input("f-dows", "value"), Input("f-districts", "value"),
                     Input("f-res", "value"), Input("f-empty", "value")]
    filter_states = [State(i.component_id, i.component_property) for i in filter_inputs]

    @app.callback(
        Output("map-hex", "data"), Output("map-hex-key", "data"), Output("legend", "children"),
        Output("summary", "children"),
        Input("f-layer", "value"), *filter_inputs, State("map-hex-key", "data"), prevent_initial_call=True,
    )
    def update_map(layer_id, d0, d1, cats, hours, dows, districts, res, empty, shown_key):
        """Recolour: a Patch of cell positions, palette indices and values only (the
        geometry is in the browser as cached vector tiles). A new resolution or layer
        sends the whole (small) colour spec: other tiles, another palette."""
        auth.require()
        f = _filters(d0, d1, cats, hours, dows, districts, res, empty)
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

    app.clientside_callback(ClientsideFunction("rtcc", "paintHex"), Output("map-hex-shown", "data"),
                            Input("map-hex", "data"))
    app.clientside_callback(ClientsideFunction("rtcc", "savePng"), Output("png-saved", "data"),
                            Input("btn-png", "n_clicks"), prevent_initial_call=True)

    @app.callback(Output("drill-body", "children"), Input("map-click", "data"),
                  State("f-layer", "value"), *filter_states, prevent_initial_call=True)
    def on_click(click, layer_id, d0, d1, cats, hours, dows, districts, res, empty):
        role = auth.require()
        try:
            loc = click["cell"]
        except (TypeError, KeyError):
            return no_update
        cell = parse_cell(loc)
        if cell is None:
            return drill.placeholder("That is not a map cell.")
        f = _filters(d0, d1, cats, hours, dows, districts, res)
        return drill.panel(ctx, cell, f, get_layer(layer_id), role)

    @app.callback(Output("download", "data"), Input("btn-geojson", "n_clicks"), Input("btn-csv", "n_clicks"),
                  State("f-layer", "value"), *filter_states, prevent_initial_call=True)
    def export(n_geo, n_csv, layer_id, d0, d1, cats, hours, dows, districts, res, empty):
        auth.require()
        from dash import ctx as cbctx

        f = _filters(d0, d1, cats, hours, dows, districts, res)
        layer = get_layer(layer_id)
        fmt = "geojson" if cbctx.triggered_id == "btn-geojson" else "csv"
        body, name = export_view(ctx, layer, f, fmt)
        rows = len(json.loads(body)["features"]) if fmt == "geojson" else max(0, body.count("\n") - 1)
        auth.audit("export", {"format": fmt, "file": name, "layer": layer.id, "rows": rows,
                              "filters": drill.filters_dict(f)})
        return {"content": body, "filename": name, "type": "application/geo+json" if fmt == "geojson" else "text/csv"}


def summary(ctx: AppContext, layer, f: Filters, values: pd.DataFrame) -> list:
    """Header line: what is shown and how many incidents it covers (always visible)."""
    q = f.query(ctx.source, ctx.categories)
    v = values["value"].to_numpy("float64")
    if layer.id == "counts" and not suppress.active():
        n = int(np.nansum(v))  # the counts layer already tallied every incident of the view
    else:
        # the map's incidents: those with a location (see rtcc_geo.schema, not geolocated)
        n = ctx.cache.get(("total", q), lambda: int(ctx.store.count(q.with_(geolocated=True))))
    nz = int(np.count_nonzero(np.isfinite(v) & (v != 0)))
    parts = [
        html.B(suppress.count_text(n, source=ctx.source)),
        f" · {nz:,} of {len(v):,} cells with a value · {layer.label} · H3 res {f.res} · "
        f"{f.start or '…'} to {f.end or '…'}",
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
    cells only, whatever the role: exports never carry incident rows). For viewers
    and planners cells with fewer than k incidents are left out (:mod:`rtcc_geo.app.suppress`)."""
    values = compute(ctx, layer, f, role=role)
    v = values["value"].to_numpy("float64")
    keep = np.isfinite(v) & (v != 0)
    cells = values["cell"].to_numpy(np.int64)[keep]
    vals = v[keep]
    name = f"rtcc-{ctx.source or 'view'}-{layer.id}-r{f.res}-{f.start}_{f.end}"
    if fmt == "geojson":
        doc = json.loads(to_text(pd.DataFrame({"cell": cells, "value": vals}), "geojson"))
        meta = {"layer": layer.id, "res": f.res, "start": f.start, "end": f.end,
                "categories": list(f.categories or []), "hours": list(f.hours), "dows": list(f.dows or []),
                "districts": list(f.districts or [])}
        if layer.unit in suppress.COUNT_UNITS and suppress.active(role):
            meta["left_out"] = f"cells with fewer than {suppress.k_for(ctx.source)} incidents"
        return json.dumps({"type": "FeatureCollection", "rtcc_view": meta, "features": doc["features"]}), name + ".geojson"
    return to_text(pd.DataFrame({"cell": cells, layer.id: vals}), "csv"), name + ".csv"
