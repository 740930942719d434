"""Plotly figures as plain dicts (no validation pass over 20k features; dcc.Graph takes dicts).

The map uses ``choroplethmap`` (MapLibre) over a *style object* with one
background layer: no tile source, no sprite, no glyphs, so the browser never
asks anyone for anything. Outlines are MapLibre line layers; labels and the
legend are plotly's own SVG (hover, colour bar), which need no remote fonts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from dash import Patch

from .context import DOW_LABELS, AppContext, Filters
from .layers import SEQ_SCALE, Layer

#: A MapLibre style with nothing remote in it (compare plotly's 'white-bg',
#: which still names a remote glyphs URL).
OFFLINE_STYLE = {
    "version": 8,
    "name": "rtcc-offline",
    # Not an empty {}: plotly prunes empty objects from the layout on relayout (user
    # zoom), and MapLibre then rejects the style for a missing "sources".
    "sources": {"rtcc-none": {"type": "geojson", "data": {"type": "FeatureCollection", "features": []}}},
    "layers": [{"id": "background", "type": "background", "paint": {"background-color": "#eef0f2"}}],
}

GRAPH_CONFIG = {
    "displaylogo": False,
    "scrollZoom": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
    "toImageButtonOptions": {"format": "png", "filename": "rtcc-map", "scale": 2},
}
SMALL_CONFIG = {"displaylogo": False, "displayModeBar": False}


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


def colour_props(layer: Layer, values: pd.DataFrame, ids: list[str], show_empty: bool = False) -> dict:
    """The trace properties a recolour changes: which cells are drawn (``locations``:
    the cells with a value; the GeoJSON itself stays in the browser), their
    values, colour range, scale, colour bar and hover text.

    Cells without a value (zero count, NaN) are not drawn unless ``show_empty``:
    at res 10 that is two thirds of the city, and drawing them costs as much as
    drawing the rest.
    """
    v_all = values["value"].to_numpy("float64")
    keep = np.isfinite(v_all)
    if not show_empty and layer.empty_value is not None:
        keep &= v_all != layer.empty_value
    idx = np.flatnonzero(keep)
    v = v_all[idx]
    locations = [ids[i] for i in idx.tolist()]
    if layer.kind == "categorical":
        n = len(layer.classes)
        scale = []
        for i, (_, _, colour) in enumerate(layer.classes):
            scale += [[i / n, colour], [(i + 1) / n, colour]]
        code = np.full(len(v), np.nan)
        for i, (val, _, _) in enumerate(layer.classes):
            code[v == val] = i
        return {
            "locations": locations, "z": _values(code), "zmin": -0.5, "zmax": n - 0.5, "colorscale": scale,
            "colorbar": {"title": {"text": layer.label}, "tickvals": list(range(n)),
                         "ticktext": [c[1] for c in layer.classes], "len": 0.6, "thickness": 14},
            "hovertemplate": f"%{{location}}<br>{layer.label}: %{{customdata}}<extra></extra>",
            "customdata": [layer.classes[int(c)][1] if np.isfinite(c) else "no value" for c in code],
        }
    fin = v[np.isfinite(v) & (v > 0)]
    # Cap the scale at the 99th percentile so one extreme cell does not wash out the rest.
    zmax = float(np.percentile(fin, 99)) if len(fin) else 1.0
    zmax = max(zmax, 1e-9 if layer.unit != "incidents" else 1.0)
    unit = f" {layer.unit}" if layer.unit else ""
    return {
        "locations": locations, "z": _values(v), "zmin": 0, "zmax": float(f"{zmax:.4g}"), "colorscale": SEQ_SCALE,
        "colorbar": {"title": {"text": layer.label}, "len": 0.6, "thickness": 14},
        "hovertemplate": f"%{{location}}<br>%{{z}}{unit}<extra></extra>",
    }


def map_figure(ctx: AppContext, layer: Layer, f: Filters, values: pd.DataFrame) -> dict:
    g = ctx.geometry(f.res)
    trace = {
        "type": "choroplethmap",
        "name": "cells",
        "geojson": ctx.geometry_url(f.res),  # fetched (and cached) by the browser once per res
        "featureidkey": "id",
        "marker": {"opacity": 0.78, "line": {"width": 0.3 if f.res < 10 else 0, "color": "rgba(60,60,60,0.35)"}},
        **colour_props(layer, values, g["ids"], f.show_empty),
    }
    layout = {
        "map": {"style": OFFLINE_STYLE, "layers": ctx.outline_layers, **ctx.view},
        # One constant uirevision: zoom and pan are kept across every redraw.
        "uirevision": "rtcc-map",
        "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
        "paper_bgcolor": "#eef0f2",
        "clickmode": "event",
        "hoverlabel": {"bgcolor": "white"},
    }
    from .live import live_trace

    # Trace 1 receives live incidents (extendData), so it exists from the first draw.
    return {"data": [trace, live_trace()], "layout": layout}


def map_patch(ctx: AppContext, layer: Layer, f: Filters, values: pd.DataFrame) -> Patch:
    """Recolour the drawn hexagons: only ids and values travel, never the geometry."""
    p = Patch()
    props = colour_props(layer, values, ctx.geometry(f.res)["ids"], f.show_empty)
    for k, v in props.items():
        p["data"][0][k] = v
    if "customdata" not in props:
        # A null customdata breaks dcc.Graph's click handler: remove the key instead.
        del p["data"][0]["customdata"]
    return p


def empty_figure(message: str, height: int = 220) -> dict:
    return {
        "data": [],
        "layout": {"height": height, "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
                   "xaxis": {"visible": False}, "yaxis": {"visible": False},
                   "annotations": [{"text": message, "showarrow": False, "x": 0.5, "y": 0.5,
                                    "xref": "paper", "yref": "paper", "font": {"size": 13, "color": "#666"}}]},
    }


def profile_figure(mat: np.ndarray, title: str) -> dict:
    """Hour-of-week heat map: 7 rows (Mon..Sun) x 24 local hours."""
    return {
        "data": [{"type": "heatmap", "z": np.asarray(mat).round(3).tolist(), "x": list(range(24)),
                  "y": list(DOW_LABELS), "colorscale": "YlOrRd", "showscale": False,
                  "hovertemplate": "%{y} %{x}:00<br>%{z}<extra></extra>"}],
        "layout": {"height": 210, "margin": {"l": 40, "r": 10, "t": 28, "b": 30},
                   "title": {"text": title, "font": {"size": 13}, "x": 0.02},
                   "yaxis": {"autorange": "reversed"}, "xaxis": {"dtick": 3, "title": {"text": "local hour"}}},
    }


def trend_figure(x, y, title: str, extra: list | None = None) -> dict:
    data = [{"type": "scatter", "mode": "lines", "x": list(x), "y": list(y), "name": "incidents",
             "line": {"color": "#cc4c02", "width": 1.5}}]
    data += extra or []
    return {
        "data": data,
        "layout": {"height": 190, "margin": {"l": 40, "r": 10, "t": 28, "b": 30}, "showlegend": False,
                   "title": {"text": title, "font": {"size": 13}, "x": 0.02}},
    }
