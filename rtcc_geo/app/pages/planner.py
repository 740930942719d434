"""Planner page: workload curve, operators per hour, the optimiser's shifts over the curve.

All numbers come from :mod:`rtcc_geo.staffing` (``staffing.api.plan`` when it
is installed); this page only collects the inputs and draws the result.
"""

from __future__ import annotations

import numpy as np
from dash import Input, Output, dcc, html

from rtcc_geo.auth import PLANNER_ROLES

from .. import auth, staffing_view
from ..context import DOW_LABELS, AppContext
from ..figures import NO_CLOUD_CONFIG, empty_figure

PATH = "/planner"
_BOX = {"display": "inline-block", "marginRight": "22px", "verticalAlign": "top", "fontSize": "13px"}
_IN = {"width": "90px", "padding": "3px"}


def layout(ctx: AppContext, role: str) -> html.Div:
    d = staffing_view.defaults()
    inputs = html.Div(style={"padding": "10px 14px", "background": "#fff", "borderBottom": "1px solid #d8dde2"}, children=[
        html.Div([html.Div("Operators available (head count)"),
                  dcc.Input(id="p-operators", type="number", min=1, max=500, step=1, value=d["operators"],
                            debounce=True, style=_IN)], style=_BOX),
        html.Div([html.Div("Shift lengths (hours)"),
                  dcc.Checklist(id="p-shifts", options=[{"label": f" {h}", "value": h} for h in (4, 6, 8, 10, 12)],
                                value=d["shift_lengths"], inline=True, labelStyle={"marginRight": "8px"})], style=_BOX),
        html.Div([html.Div("Service level (share answered in time)"),
                  dcc.Input(id="p-sl", type="number", min=0.5, max=0.99, step=0.01, value=d["service_level"],
                            debounce=True, style=_IN)], style=_BOX),
        html.Div([html.Div("… within (seconds)"),
                  dcc.Input(id="p-target", type="number", min=5, max=3600, step=5, value=d["target_seconds"],
                            debounce=True, style=_IN)], style=_BOX),
        html.Div([html.Div("Handle time (minutes per event)"),
                  dcc.Input(id="p-handle", type="number", min=0.5, max=240, step=0.5, value=d["handle_minutes"],
                            debounce=True, style=_IN)], style=_BOX),
    ])
    return html.Div(style={"height": "calc(100vh - 40px)", "overflowY": "auto"}, children=[
        inputs,
        html.Div(id="p-summary", style={"padding": "6px 14px", "background": "#1d2731", "color": "#fff",
                                        "fontSize": "13px", "minHeight": "18px"}),
        dcc.Loading(dcc.Graph(id="p-curve", config=NO_CLOUD_CONFIG, figure=empty_figure("planning...", 500),
                              style={"height": "530px"}), type="circle"),
        html.Div(id="p-shift-table", style={"padding": "8px 14px", "fontSize": "13px"}),
    ])


def register(app, ctx: AppContext) -> None:
    @app.callback(Output("p-curve", "figure"), Output("p-summary", "children"), Output("p-shift-table", "children"),
                  Input("p-operators", "value"), Input("p-shifts", "value"), Input("p-sl", "value"),
                  Input("p-target", "value"), Input("p-handle", "value"))
    def replan(operators, shifts, sl, target, handle):
        auth.require(PLANNER_ROLES)
        try:
            params = staffing_view.Params.from_widgets(operators, shifts, sl, target, handle)
        except ValueError as e:
            return empty_figure(str(e), 420), html.Span(str(e), id="p-summary-text"), []
        plan = staffing_view.run(ctx, params)
        return figure(plan), html.Span(plan.summary, id="p-summary-text"), shift_table(plan)


def _week_labels() -> list[str]:
    return [f"{DOW_LABELS[h // 24]} {h % 24:02d}:00" for h in range(168)]


def figure(plan: "staffing_view.PlanView") -> dict:
    """Top: workload (right axis) with operators required and on duty (left axis).
    Bottom: the optimiser's shifts as bars along the same hour-of-week axis."""
    x = list(range(len(plan.workload)))
    data = [
        {"type": "scatter", "mode": "lines", "x": x, "y": np.round(plan.workload, 3).tolist(),
         "name": plan.workload_label, "line": {"color": "#cc4c02", "width": 1.5}, "yaxis": "y2",
         "fill": "tozeroy", "fillcolor": "rgba(254,153,41,0.18)"},
    ]
    if plan.required is not None:
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": np.asarray(plan.required).tolist(),
                     "name": "operators required", "line": {"color": "#1d2731", "width": 1.5, "shape": "hv"}})
    if plan.on_duty is not None:
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": np.asarray(plan.on_duty).tolist(),
                     "name": f"on duty ({plan.option or 'optimised shifts'})", "line": {"color": "#2b8cbe", "width": 2.5, "shape": "hv"}})
    for label, on in plan.extra.items():
        data.append({"type": "scatter", "mode": "lines", "x": x, "y": np.asarray(on).tolist(),
                     "name": f"on duty ({label})", "line": {"color": "#7a8", "width": 1.5, "dash": "dot", "shape": "hv"}})
    rows = []
    for s in plan.shifts[:400]:
        rows += [s] * min(int(s["count"]), 1)
    for i, s in enumerate(rows):
        data.append({"type": "bar", "base": [s["start"]], "x": [s["length"]], "y": [i], "orientation": "h",
                     "width": 0.7, "marker": {"color": "rgba(43,140,190,0.6)"}, "yaxis": "y3", "showlegend": False,
                     "name": s["label"], "hovertemplate": f"{s['count']} operator(s), {s['label']}<extra></extra>"})
    ticks = list(range(0, 169, 12))
    labels = _week_labels() + ["Mon 00:00"]
    return {
        "data": data,
        "layout": {
            "height": 520, "margin": {"l": 60, "r": 60, "t": 30, "b": 50}, "barmode": "overlay",
            "legend": {"orientation": "h", "y": 1.07},
            "xaxis": {"tickvals": ticks, "ticktext": [labels[t] for t in ticks], "range": [0, 168]},
            "yaxis": {"title": {"text": "operators"}, "rangemode": "tozero", "domain": [0.38, 1.0]},
            "yaxis2": {"title": {"text": plan.workload_label}, "overlaying": "y", "side": "right",
                       "rangemode": "tozero", "showgrid": False},
            "yaxis3": {"domain": [0.0, 0.3], "title": {"text": "shifts (local time)"}, "showticklabels": False,
                       "autorange": "reversed", "zeroline": False},
        },
    }


def shift_table(plan: "staffing_view.PlanView") -> list:
    if not plan.shifts:
        return [html.Div(plan.note or "", id="p-note", style={"color": "#667"})]
    td = {"padding": "2px 8px", "borderBottom": "1px solid #eee"}
    rows = [html.Tr([html.Td(s["label"], style=td), html.Td(str(s["count"]), style=td)]) for s in plan.shifts]
    return [html.Div(plan.note or "", id="p-note", style={"color": "#667"}),
            html.Table([html.Thead(html.Tr([html.Th("shift", style=td), html.Th("operators", style=td)])),
                        html.Tbody(rows)], id="p-shifts-table", style={"borderCollapse": "collapse"})]
