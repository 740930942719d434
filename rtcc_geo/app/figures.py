"""Figures as plain dicts (no validation pass over 20k features; dcc.Graph takes dicts).

The commander map is a Plotly ``map`` (MapLibre) over a *style object* with
one background layer: no tile source, no sprite, no glyphs, so the browser
never asks anyone for anything. Plotly draws the outlines (line layers) and
the live trace; the hexagons are a vector-tile layer on the same MapLibre
map (``assets/hexmap.js``, tiles from :mod:`app.tiles`), coloured from
:func:`hex_data`: cell positions, palette indices and values, never
geometry. The legend is HTML over the map (:func:`legend`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from dash import html

from .context import DOW_LABELS, AppContext, Filters
from .layers import MAP_BACKGROUND, SEQ_SCALE, TERMS, Layer

#: A MapLibre style with nothing remote in it (compare plotly's 'white-bg',
#: which still names a remote glyphs URL).
OFFLINE_STYLE = {
    "version": 8,
    "name": "rtcc-offline",
    # Not an empty {}: plotly prunes empty objects from the layout on relayout (user
    # zoom), and MapLibre then rejects the style for a missing "sources".
    "sources": {"rtcc-none": {"type": "geojson", "data": {"type": "FeatureCollection", "features": []}}},
    "layers": [{"id": "background", "type": "background", "paint": {"background-color": MAP_BACKGROUND}}],
}

#: Every dcc.Graph's config starts from this: no button or link that could send a
#: figure's data off the machine (Chart Studio, "send to cloud"), no Plotly logo.
#: tests/test_security_headers.py checks every graph in the app.
NO_CLOUD_CONFIG = {
    "displaylogo": False,
    "showSendToCloud": False,
    "showEditInChartStudio": False,
    "showLink": False,
    "sendData": False,
}
GRAPH_CONFIG = {
    **NO_CLOUD_CONFIG,
    "scrollZoom": True,
    # Plotly's image export re-draws the figure without the hexagon layer: the
    # page's PNG button (assets/hexmap.js) exports the map as shown instead.
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "toImage"],
}
SMALL_CONFIG = {**NO_CLOUD_CONFIG, "displayModeBar": False}

#: Steps of the sequential palette (a value is drawn with the nearest step).
N_STEPS = 64
HEX_OPACITY = 0.78


def _values(v: np.ndarray) -> list:
    """Compact JSON numbers: ints as ints, NaN as null, floats to 4 significant digits."""
    v = np.asarray(v, dtype="float64")
    fin = np.isfinite(v)
    if fin.all() and np.all(v == np.round(v)):
        return v.astype(np.int64).tolist()
    out = [None] * len(v)
    for i in np.flatnonzero(fin):
        x = float(v[i])
        out[i] = int(x) if x == round(x) else float(f"{x:.4g}")
    return out


def _rgba(c: str) -> np.ndarray:
    c = c.strip()
    if c.startswith("#"):
        return np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)] + [1.0], dtype=float)
    parts = [float(x) for x in c[c.index("(") + 1 : c.index(")")].split(",")]
    return np.array(parts + [1.0] * (4 - len(parts)), dtype=float)


def scale_palette(scale: list, n: int = N_STEPS) -> list[str]:
    """``n`` colours evenly spaced along a Plotly-style colour scale."""
    stops = np.array([s for s, _ in scale], dtype=float)
    cols = np.array([_rgba(c) for _, c in scale])
    t = np.linspace(0.0, 1.0, n)
    rgba = np.column_stack([np.interp(t, stops, cols[:, j]) for j in range(4)])
    return [f"rgba({r:.0f},{g:.0f},{b:.0f},{a:.3g})" for r, g, b, a in rgba]


SEQ_PALETTE = scale_palette(SEQ_SCALE)
#: The colour of a cell whose value is its layer's empty value (0 incidents), drawn only
#: with "draw empty cells": a neutral grey, so 0 is told apart from 1 (the ramp's yellow
#: end) and from the background (CIELAB distance 23 to it, for normal and red/green-blind
#: vision alike; ``tests/test_app_map.py``).
EMPTY_COLOUR = "#a9b1bb"
#: The continuous layers' palette: index 0 is the empty class, 1.. the ramp.
HEX_PALETTE = [EMPTY_COLOUR, *SEQ_PALETTE]


def hex_data(ctx: AppContext, layer: Layer, f: Filters, values: pd.DataFrame) -> dict:
    """What the browser needs to colour the hexagons for ``values`` (aligned with
    ``ctx.universe(f.res)``): which cells are drawn (``ids``: positions in the
    universe, the tiles' feature ids), their palette index ``k`` and value ``v``,
    the palette, and where the tiles are.

    Cells without a value (zero count, NaN) are not drawn unless ``show_empty``:
    at res 10 that is two thirds of the city, and drawing them costs as much as
    drawing the rest.
    """
    v_all = values["value"].to_numpy("float64")
    keep = np.isfinite(v_all)
    if not f.show_empty and layer.empty_value is not None:
        keep &= v_all != layer.empty_value
    out = {
        "res": int(f.res),
        **ctx.tiles_info(f.res),
        "label": layer.label,
        "unit": layer.unit,
        "opacity": HEX_OPACITY,
        "line": 0.3 if f.res < 10 else 0,
        "layer": layer.id,
    }
    if layer.kind == "categorical":
        code = np.full(len(v_all), -1, dtype=np.int64)
        for i, (val, _, _) in enumerate(layer.classes):
            code[v_all == val] = i
        idx = np.flatnonzero(keep & (code >= 0))
        return {
            **out,
            "kind": "categorical",
            "ids": idx.tolist(),
            "k": code[idx].tolist(),
            "v": _values(v_all[idx]),
            "palette": [c[2] for c in layer.classes],
            "labels": [c[1] for c in layer.classes],
            "counts": np.bincount(code[idx], minlength=len(layer.classes)).tolist(),
        }
    idx = np.flatnonzero(keep)
    v = v_all[idx]
    fin = v[np.isfinite(v) & (v > 0)]
    # Cap the scale at the 99th percentile so one extreme cell does not wash out the rest.
    zmax = float(np.percentile(fin, 99)) if len(fin) else 1.0
    if layer.unit == "incidents":
        zmax = float(max(np.ceil(zmax), 1.0))  # a count: the legend reads "≥ 34", not "≥ 33.5"
    else:
        zmax = float(f"{max(zmax, 1e-9):.4g}")
    k = 1 + np.clip(np.rint(np.clip(v, 0, None) / zmax * (N_STEPS - 1)), 0, N_STEPS - 1).astype(np.int64)
    # Empty cells (drawn with "draw empty cells" only) get their own class, not the ramp's
    # lightest colour, which is also that of a count of 1.
    empty = np.zeros(len(v), dtype=bool) if layer.empty_value is None else v == layer.empty_value
    k[empty] = 0
    return {
        **out,
        "kind": "continuous",
        "ids": idx.tolist(),
        "k": k.tolist(),
        "v": _values(v),
        "empty": int(np.count_nonzero(empty)),
        "empty_label": "0 (no incidents)" if layer.unit == "incidents" else f"{layer.empty_value:g} (none)",
        "palette": HEX_PALETTE,
        "labels": None,
        "zmin": 0,
        "zmax": zmax,
    }


def _swatch(colour: str):
    """A legend class's square, drawn like a hexagon (same colour and opacity)."""
    return html.Span(
        style={
            "display": "inline-block",
            "width": "12px",
            "height": "12px",
            "background": colour,
            "marginRight": "6px",
            "verticalAlign": "middle",
            "opacity": HEX_OPACITY,
            "border": "1px solid rgba(0,0,0,0.25)",
        }
    )


def legend(data: dict) -> list:
    """The map legend (HTML over the map): a colour ramp with its range, or the classes
    drawn in this view with their cell counts; the technical term one click away."""
    title = html.Div(
        data["label"] + (f" ({data['unit']})" if data.get("unit") else ""),
        style={"fontWeight": 600, "marginBottom": "4px"},
    )
    term = TERMS.get(data.get("layer", ""))
    more = (
        [
            html.Details(
                [html.Summary("what is this?"), html.Div(term, style={"maxWidth": "220px"})], className="legend-term"
            )
        ]
        if term
        else []
    )
    if data["kind"] == "categorical":
        counts = data.get("counts") or [1] * len(data["palette"])
        rows = [
            html.Div(
                [
                    _swatch(c),
                    lab,
                    html.Span(f" · {n:,} cells", style={"color": "#5a6570"}),
                ],
                className="legend-class",
            )
            for c, lab, n in zip(data["palette"], data["labels"], counts)
            if n
        ]
        absent = sum(1 for n in counts if not n)
        if not rows:
            rows = [html.Div("no cell in any class for these filters", style={"color": "#5a6570"})]
        if absent and data.get("counts"):
            rows.append(
                html.Div(
                    f"{absent} other class{'es' if absent != 1 else ''} not present",
                    style={"color": "#5a6570", "fontSize": "11px"},
                )
            )
        return [title, *rows, *more]
    stops = ", ".join(f"{c} {100 * s:.0f}%" for s, c in SEQ_SCALE)
    zmax = data["zmax"]
    ramp = html.Div(
        style={
            "height": "12px",
            "width": "180px",
            "background": f"linear-gradient(to right, {stops})",
            "opacity": HEX_OPACITY,
            "border": "1px solid #ccd",
        }
    )
    low = "1" if data.get("unit") == "incidents" else "> 0"
    ticks = html.Div(
        style={"display": "flex", "justifyContent": "space-between", "width": "182px"},
        children=[
            html.Span(low),
            html.Span(f"{zmax / 2:,.0f}" if low == "1" else f"{zmax / 2:.3g}"),
            html.Span(f"≥ {zmax:,.0f}" if low == "1" else f"≥ {zmax:.3g}"),  # 1,234, not 1.23e+03
        ],
    )
    rows = [title, ramp, ticks]
    if data.get("empty"):
        rows.append(
            html.Div(
                [
                    _swatch(EMPTY_COLOUR),
                    data.get("empty_label", "0"),
                    html.Span(f" · {data['empty']:,} cells", style={"color": "#5a6570"}),
                ],
                className="legend-class legend-empty",
                style={"marginTop": "4px"},
            )
        )
    return [*rows, *more]


def map_figure(ctx: AppContext, camera: dict | None = None) -> dict:
    """The Plotly map the hexagons are drawn into: offline style, outlines, live trace.

    It does not change with the filters (only :func:`hex_data` does), so zoom
    and pan always survive; ``uirevision`` keeps them across any redraw too.
    ``camera`` (``{"center": {"lat", "lon"}, "zoom"}``, from the page's address)
    opens the map there instead of on the whole agency: the map then loads the
    tiles of that view only.
    """
    layout = {
        "map": {"style": OFFLINE_STYLE, "layers": ctx.outline_layers, **ctx.view, **(camera or {})},
        "uirevision": "rtcc-map",
        "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
        "paper_bgcolor": "#eef0f2",
        "clickmode": "event",
        "hoverlabel": {"bgcolor": "white"},
        "showlegend": False,
    }
    from .live import live_trace

    # Trace 0 receives live incidents (extendTraces from assets/live.js).
    return {"data": [live_trace()], "layout": layout}


def empty_figure(message: str, height: int = 220) -> dict:
    return {
        "data": [],
        "layout": {
            "height": height,
            "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "annotations": [
                {
                    "text": message,
                    "showarrow": False,
                    "x": 0.5,
                    "y": 0.5,
                    "xref": "paper",
                    "yref": "paper",
                    "font": {"size": 13, "color": "#666"},
                }
            ],
        },
    }


#: Hour-of-week colours, explicit (Plotly's named "YlOrRd" runs dark -> light, which
#: drew empty hours as the hottest): 0 incidents = palest, the busiest hour = darkest.
PROFILE_SCALE = [[0.0, "#fff7ec"], [0.25, "#fdd49e"], [0.5, "#fc8d59"], [0.75, "#d7301f"], [1.0, "#7f0000"]]


def profile_figure(mat: np.ndarray, title: str) -> dict:
    """Hour-of-week heat map: 7 rows (Mon..Sun) x 24 local hours, with its scale bar."""
    z = np.asarray(mat, dtype=float)
    return {
        "data": [
            {
                "type": "heatmap",
                "z": z.round(3).tolist(),
                "x": list(range(24)),
                "y": list(DOW_LABELS),
                "colorscale": PROFILE_SCALE,
                "zmin": 0,
                "zmax": max(float(z.max()), 1.0),
                "showscale": True,
                "colorbar": {
                    "title": {"text": "incidents", "side": "right"},
                    "thickness": 10,
                    "len": 0.9,
                    "outlinewidth": 0,
                },
                "hovertemplate": "%{y} %{x}:00–%{x}:59<br>%{z} incidents<extra></extra>",
            }
        ],
        "layout": {
            "height": 210,
            "margin": {"l": 40, "r": 10, "t": 28, "b": 30},
            "title": {"text": title, "font": {"size": 13}, "x": 0.02},
            "yaxis": {"autorange": "reversed"},
            "xaxis": {"dtick": 3, "title": {"text": "local hour"}},
        },
    }


def trend_figure(x, y, title: str, extra: list | None = None) -> dict:
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": list(x),
            "y": list(y),
            "name": "incidents",
            "line": {"color": "#cc4c02", "width": 1.5},
        }
    ]
    data += extra or []
    return {
        "data": data,
        "layout": {
            "height": 190,
            "margin": {"l": 40, "r": 10, "t": 28, "b": 30},
            "showlegend": False,
            "title": {"text": title, "font": {"size": 13}, "x": 0.02},
        },
    }
