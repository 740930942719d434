"""Planner page: 24/7 or part-time, how many operators on which hours, and the downtime plan.

Inputs on the left (validated, plain messages); on the right the answer in
plain words: the two options side by side, the roster people can work
(CSV and print), the downtime plan, a large event's extra load, and the
solver's internals in a closed details panel. All numbers come from
:mod:`rtcc_geo.staffing` through :mod:`rtcc_geo.app.staffing_view`.
"""

from __future__ import annotations

import re
import urllib.parse
from html import escape

import numpy as np
from dash import Input, Output, dcc, html

from rtcc_geo.auth import PLANNER_ROLES
from rtcc_geo.schema import CATEGORIES

from .. import auth, staffing_view
from ..context import DOW_LABELS, AppContext
from ..figures import NO_CLOUD_CONFIG, empty_figure

PATH = "/planner"
_LBL = {"fontSize": "12px", "color": "#334", "marginTop": "8px"}
_IN = {"width": "80px", "padding": "3px"}
_MEAN = {"color": "#556", "fontSize": "12px"}
_TD = {"padding": "4px 8px", "borderBottom": "1px solid #e3e6ea", "verticalAlign": "top", "fontSize": "13px"}
_TH = {**_TD, "textAlign": "left", "background": "#f3f5f7"}
_CARD = {
    "display": "inline-block",
    "width": "31%",
    "marginRight": "1.5%",
    "verticalAlign": "top",
    "background": "#fff",
    "border": "1px solid #d8dde2",
    "borderRadius": "4px",
    "padding": "8px 10px",
    "boxSizing": "border-box",
    "minHeight": "92px",
}
_SECTION = {
    "background": "#fff",
    "border": "1px solid #d8dde2",
    "borderRadius": "4px",
    "padding": "8px 12px",
    "margin": "10px 0",
}


def _css(st: dict) -> str:
    return ";".join(f"{re.sub('([A-Z])', lambda m: '-' + m.group(1).lower(), k)}:{v}" for k, v in st.items())


def _table(
    head: list, rows: list[list], id_: str | None = None, cell_style: dict | None = None, last_muted: bool = False
) -> str:
    """An HTML table (cells are escaped text, or ``Markup`` kept as is)."""
    td, th = _css({**_TD, **(cell_style or {})}), _css({**_TH, **(cell_style or {})})
    muted = _css({**_TD, **(cell_style or {}), **_MEAN})

    def cell(v, tag, style):
        return f"<{tag} style='{style}'>{v if isinstance(v, Markup) else escape(str(v))}</{tag}>"

    out = [
        f"<table{f' id={chr(39)}{id_}{chr(39)}' if id_ else ''} style='border-collapse:collapse;background:#fff'>",
        "<thead><tr>" + "".join(cell(h, "th", th) for h in head) + "</tr></thead><tbody>",
    ]
    for r in rows:
        out.append(
            "<tr>"
            + "".join(
                cell(
                    v,
                    "th" if i == 0 and isinstance(v, Markup) and v.startswith("<b>") else "td",
                    muted if last_muted and i == len(r) - 1 else td,
                )
                for i, v in enumerate(r)
            )
            + "</tr>"
        )
    return "".join(out) + "</tbody></table>"


class Markup(str):
    """Trusted HTML for :func:`_table` (built here from escaped parts)."""


def _html(text: str, **kw) -> dcc.Markdown:
    return dcc.Markdown(text, dangerously_allow_html=True, **kw)


def _field(label, child, hint=None):
    return html.Div([html.Div(label, style=_LBL), child] + ([html.Div(hint, style=_MEAN)] if hint else []))


def layout(ctx: AppContext, role: str) -> html.Div:
    from rtcc_geo.staffing.events import crowd_settings
    from rtcc_geo.staffing.roster import load_rules

    d = staffing_view.defaults(ctx)
    w = staffing_view.default_weights()
    rules = load_rules()
    venues = crowd_settings(ctx.source)["venues"]
    lo, hi = ctx.date_range
    weight_rows = [
        html.Tr(
            [
                html.Td(c, style={**_TD, "padding": "1px 6px"}),
                html.Td(
                    dcc.Input(
                        id=f"p-w-{c}",
                        type="number",
                        min=0,
                        max=5,
                        step=0.05,
                        value=w["weights"][c],
                        debounce=True,
                        style={"width": "60px"},
                    ),
                    style={**_TD, "padding": "1px 6px"},
                ),
            ]
        )
        for c in CATEGORIES
    ]
    off = ", ".join(f"{k} = {v:g}" for k, v in w["offense"].items())
    inputs = html.Div(
        id="p-inputs",
        className="no-print",
        style={
            "width": "300px",
            "flex": "0 0 300px",
            "padding": "6px 14px 20px",
            "background": "#fafbfc",
            "borderRight": "1px solid #d8dde2",
            "overflowY": "auto",
            "height": "calc(100vh - 40px)",
            "boxSizing": "border-box",
        },
        children=[
            html.H3("Inputs", style={"margin": "6px 0"}),
            _field(
                "Base period (local dates, from – to)",
                html.Div(
                    [
                        dcc.Input(
                            id="p-from",
                            type="date",
                            value=d["start"],
                            min=lo,
                            max=hi,
                            debounce=True,
                            style={"width": "150px"},
                        ),
                        html.Span(" to ", style={"fontSize": "12px"}),
                        dcc.Input(
                            id="p-to", type="date", value=d["end"], min=lo, debounce=True, style={"width": "150px"}
                        ),
                    ]
                ),
                f"Data: {lo} to {hi}. Whole weeks inside the period make the average week.",
            ),
            _field(
                "Operators (people, full-time equivalents)",
                dcc.Input(
                    id="p-operators",
                    type="number",
                    min=1,
                    max=500,
                    step=1,
                    value=d["operators"],
                    debounce=True,
                    style=_IN,
                ),
                "Each works 42 h a week.",
            ),
            _field(
                "Service level",
                html.Div(
                    [
                        dcc.Input(
                            id="p-sl",
                            type="number",
                            min=50,
                            max=99,
                            step=1,
                            value=d["service_level"],
                            debounce=True,
                            style={"width": "55px"},
                        ),
                        " % of events picked up within ",
                        dcc.Input(
                            id="p-target",
                            type="number",
                            min=5,
                            max=3600,
                            step=5,
                            value=d["target_seconds"],
                            debounce=True,
                            style={"width": "60px"},
                        ),
                        " s",
                    ]
                ),
            ),
            _field(
                "Handle time (minutes of operator work per event)",
                dcc.Input(
                    id="p-handle",
                    type="number",
                    min=0.5,
                    max=240,
                    step=0.5,
                    value=d["handle_minutes"],
                    debounce=True,
                    style=_IN,
                ),
            ),
            _field(
                "Shift lengths (hours)",
                dcc.Checklist(
                    id="p-shifts",
                    options=[
                        {"label": f" {h}", "value": h}
                        for h in staffing_view.SHIFT_CHOICES
                        if h <= rules.max_shift_hours
                    ],
                    value=d["shift_lengths"],
                    inline=True,
                    labelStyle={"marginRight": "8px"},
                ),
                f"Agency rules: at most {rules.max_shift_hours} h a shift, {rules.min_rest_hours:g} h rest between "
                f"shifts, {rules.max_consecutive_days} days in a row.",
            ),
            dcc.Checklist(
                id="p-parttime",
                options=[
                    {
                        "label": f" Part-time staff (4-hour shifts, up to {rules.part_time_max_hours:g} h a week each)",
                        "value": "on",
                    }
                ],
                value=["on"] if d["part_time"] else [],
                style={**_LBL, "marginTop": "10px"},
            ),
            dcc.Checklist(
                id="p-daily",
                options=[{"label": " Same shifts every day (simpler roster)", "value": "on"}],
                value=["on"] if d["daily"] else [],
                style=_LBL,
            ),
            html.H4("What counts as an RTCC event", style={"margin": "14px 0 2px"}),
            html.Div(
                "Each incident counts as this many RTCC events (1 = the centre works it live; 0 = a cold "
                "report it never touches).",
                style=_MEAN,
            ),
            html.Table(
                html.Tbody(weight_rows), id="p-weights", style={"borderCollapse": "collapse", "marginTop": "4px"}
            ),
            html.Div(f"Offense refinements from the agency's file: {off}." if off else "", style=_MEAN),
            html.H4("Large public event (optional)", style={"margin": "14px 0 2px"}),
            _field(
                "Place",
                dcc.RadioItems(
                    id="p-ev-venue",
                    options=[{"label": " none", "value": ""}]
                    + [{"label": " " + v["name"], "value": v["name"]} for v in venues],
                    value="",
                    labelStyle={"display": "block", "fontSize": "12px"},
                ),
            ),
            _field(
                "Start (local)",
                dcc.Input(
                    id="p-ev-start",
                    type="text",
                    placeholder="2025-09-14 13:00",
                    debounce=True,
                    style={"width": "170px"},
                ),
            ),
            _field(
                "Hours",
                dcc.Input(
                    id="p-ev-hours", type="number", min=1, max=72, value=d["event_hours"], debounce=True, style=_IN
                ),
            ),
            _field(
                "Expected crowd (people)",
                dcc.Input(id="p-ev-crowd", type="number", min=0, step=1000, debounce=True, style={"width": "100px"}),
            ),
        ],
    )
    results = html.Div(
        style={
            "flex": "1 1 auto",
            "padding": "6px 16px 30px",
            "overflowY": "auto",
            "height": "calc(100vh - 40px)",
            "boxSizing": "border-box",
            "background": "#eef0f2",
        },
        children=[
            html.Div(id="p-errors", style={"color": "#a40000", "whiteSpace": "pre-line", "fontSize": "13px"}),
            html.Div(
                id="p-summary",
                style={
                    "padding": "6px 10px",
                    "background": "#1d2731",
                    "color": "#fff",
                    "fontSize": "13px",
                    "minHeight": "18px",
                    "borderRadius": "4px",
                },
            ),
            dcc.Loading(html.Div(id="p-result"), type="circle"),
            dcc.Graph(
                id="p-curve", config=NO_CLOUD_CONFIG, figure=empty_figure("planning...", 360), style={"height": "380px"}
            ),
            html.Div(id="p-result-2"),
        ],
    )
    return html.Div(
        [
            html.Div([inputs, results], style={"display": "flex"}),
            html.Div(id="p-print-dummy", style={"display": "none"}),
        ]
    )


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output("p-curve", "figure"),
        Output("p-summary", "children"),
        Output("p-result", "children"),
        Output("p-result-2", "children"),
        Output("p-errors", "children"),
        Input("p-operators", "value"),
        Input("p-shifts", "value"),
        Input("p-sl", "value"),
        Input("p-target", "value"),
        Input("p-handle", "value"),
        Input("p-parttime", "value"),
        Input("p-daily", "value"),
        Input("p-from", "value"),
        Input("p-to", "value"),
        Input("p-ev-venue", "value"),
        Input("p-ev-start", "value"),
        Input("p-ev-hours", "value"),
        Input("p-ev-crowd", "value"),
        *[Input(f"p-w-{c}", "value") for c in CATEGORIES],
    )
    def replan(
        operators,
        shifts,
        sl,
        target,
        handle,
        part_time,
        daily,
        start,
        end,
        venue,
        ev_start,
        ev_hours,
        ev_crowd,
        *weights,
    ):
        auth.require(PLANNER_ROLES)
        from rtcc_geo.staffing.events import crowd_settings
        from rtcc_geo.staffing.roster import load_rules

        rules = load_rules()
        wmap = dict(zip(CATEGORIES, weights))
        ev = None
        if venue or ev_crowd:
            v = next((x for x in crowd_settings(ctx.source)["venues"] if x["name"] == venue), None)
            ev = (venue, v and v["lon"], v and v["lat"], ev_start, ev_hours, ev_crowd)
        try:
            p = staffing_view.Params.from_widgets(
                operators,
                shifts,
                sl,
                target,
                handle,
                bool(part_time),
                bool(daily),
                start,
                end,
                wmap,
                ev,
                ctx.date_range,
                rules.max_shift_hours,
            )
            r = staffing_view.run(ctx, p)
        except ValueError as e:
            msg = str(e)
            return (
                empty_figure("fix the inputs on the left", 360),
                html.Span("No plan: " + msg.splitlines()[0], id="p-summary-text"),
                [],
                [],
                html.Div(["Please check: ", html.Br(), msg], id="p-error-text"),
            )
        return figure(r), summary(r), main_view(r, rules), second_view(r, rules), ""

    app.clientside_callback(
        """function(n) {
            if (!n) { return ''; }
            const area = document.getElementById('p-print-area');
            if (!area) { return ''; }
            const w = window.open('', '_blank');
            w.document.write('<html><head><title>RTCC roster</title><style>body{font:12px sans-serif}'
                + 'table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 6px}</style></head><body>'
                + area.innerHTML + '</body></html>');
            w.document.close(); w.focus(); w.print();
            return '';
        }""",
        Output("p-print-dummy", "children"),
        Input("p-print", "n_clicks"),
        prevent_initial_call=True,
    )


# ---------------------------------------------------------------------- text
def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def summary(r) -> html.Span:
    p, sp = r.params, r.plan
    w = ", ".join(f"{k} {v:g}" for k, v in sp.curve.weights.items() if v > 0)
    ev = f"; event: {p.event[0]} {p.event[3]}, {p.event[4]} h, {p.event[5]:,.0f} people" if p.event else ""
    text = (
        f"Result for: base period {p.start} to {p.end} ({sp.curve.n_weeks} whole weeks) · events = {w} · "
        f"{p.operators} operators × 42 h · {_pct(p.service_level)} within {p.target_seconds:g} s · "
        f"{p.handle_minutes:g} min per event · shifts {', '.join(str(x) for x in p.shift_lengths)} h · "
        f"part-time staff {'on' if p.part_time else 'off'} · "
        f"{'same shifts every day' if p.daily else 'shifts free by day'}{ev}."
    )
    return html.Span(text, id="p-summary-text")


def _card(title, value, meaning, id_=None):
    return html.Div(
        [
            html.Div(title, style={"fontSize": "12px", "color": "#556"}),
            html.Div(value, style={"fontSize": "20px", "fontWeight": "600", "margin": "2px 0"}),
            html.Div(meaning, style=_MEAN),
        ],
        style=_CARD,
        id=id_ or "",
    )


def main_view(r, rules) -> list:
    p, sp = r.params, r.plan
    c = sp.curve
    req = np.asarray(sp.required)
    pk = int(np.argmax(req))
    budget = p.operators * 42
    seats = budget / 168
    cards = html.Div(
        [
            _card(
                "RTCC events a week",
                f"{c.weekly_total:,.0f}",
                f"Incidents of an average week weighted by 'what counts as an RTCC event' (about "
                f"{c.weekly_total / 168:.1f} an hour; busiest hour {c.expected.max():.1f}).",
                "p-card-events",
            ),
            _card(
                "Needed at the busiest hour",
                f"{int(req.max())} at once",
                f"{DOW_LABELS[pk // 24]} {pk % 24:02d}:00 needs {int(req.max())} operators on duty at the same time to pick up "
                f"{_pct(p.service_level)} of its events within {p.target_seconds:g} s; the quietest hour needs {int(req.min())}.",
                "p-card-peak",
            ),
            _card(
                "Your staffing budget",
                f"{p.operators} full-time",
                f"{p.operators} × 42 h = {budget:,} staff-hours a week, enough to keep {seats:.1f} seats open on average "
                f"(one seat around the clock takes 4 people). So {p.operators} operators and {int(req.max())} at once at "
                f"the peak do not contradict each other.",
                "p-card-heads",
            ),
        ]
    )
    return [html.H3("24/7 or part-time?", style={"margin": "12px 0 6px"}), cards, compare_table(r, rules)]


def _option_facts(r, k, rules) -> dict:
    sp = r.plan
    o = sp.options[k]
    ro = sp.rosters.get(k)
    dt = sp.downtime[k]
    share = float(o.extra.get("answered_in_target", o.coverage))
    closed = sp.events_closed(k)
    people = ro.operators if ro is not None else 0
    return {
        "o": o,
        "roster": ro,
        "dt": dt,
        "share": share,
        "closed": closed,
        "people": people,
        "idle_per_person": dt.idle_hours / people if people else 0.0,
    }


def compare_table(r, rules) -> html.Div:
    sp, p = r.plan, r.params
    keys = [k for k in ("24/7", "part-time") if k in sp.options]
    f = {k: _option_facts(r, k, rules) for k in keys}
    tot = sp.curve.weekly_total

    def live(k):
        sh = f[k]["share"]
        return Markup(
            f"<b>cover {_pct(sh)}</b>: {100 * sh:.0f} of 100 RTCC events are picked up within {p.target_seconds:g} s"
        )

    def closed(k):
        n = f[k]["closed"]
        if n < 0.05:
            return "none: the centre is always open" if k == "24/7" else "none"
        return f"{n:,.0f} a week ({_pct(n / tot)}); handled by {rules.after_hours}"

    rows = [
        [
            "Open",
            *[staffing_view.opening_hours(f[k]["o"].on_duty) for k in keys],
            "hours with at least one operator on duty",
        ],
        [
            "Staff-hours a week",
            *[f"{f[k]['o'].staff_hours:,.0f} of {p.operators * 42:,}" for k in keys],
            "operator hours the shifts use, of what the head count allows; the rest is free for other work",
        ],
        [
            "Events handled live",
            *[live(k) for k in keys],
            "the rest wait longer than that, or arrive while the centre is closed",
        ],
        ["Events while closed", *[closed(k) for k in keys], "RTCC events in hours with nobody on duty"],
        [
            "People on the roster",
            *[f"{f[k]['people']} ({_roster_kinds(f[k]['roster'])})" for k in keys],
            "people needed to work these shifts within the agency's rules (rest, days in a row, weekly hours)",
        ],
        [
            "Downtime per person",
            *[f"{f[k]['idle_per_person']:.1f} h a week ({_pct(f[k]['dt'].idle_share)} of shift time)" for k in keys],
            "time on shift with no live event: see the downtime plan below",
        ],
    ]
    rows = [[Markup(f"<b>{escape(r[0])}</b>"), *r[1:]] for r in rows]
    return html.Div(
        [
            _html(_table(["", *keys, "what it means"], rows, "p-compare", last_muted=True)),
            html.Div(_verdict(r, f, keys), id="p-verdict", style={"fontSize": "13px", "margin": "6px 2px"}),
        ]
    )


def _roster_kinds(ro) -> str:
    if ro is None:
        return "no shifts"
    d = ro.to_dict()
    return f"{d['full_time']} full-time, {d['part_time']} part-time"


def _verdict(r, f, keys) -> str:
    if len(keys) < 2:
        return ""
    a, b = f["24/7"], f["part-time"]
    gain = b["share"] - a["share"]
    if b["closed"] < 0.05:
        return "With this head count the best part-time plan is open around the clock too: the 24/7 centre is the plan."
    return (
        f"Closing in the quietest hours moves {b['closed']:,.0f} events a week to patrol without RTCC support and "
        f"uses the freed hours at busy times: {gain * 100:+.1f} points of events handled live "
        f"({_pct(a['share'])} → {_pct(b['share'])})."
    )


def second_view(r, rules) -> list:
    return [html.Div([roster_view(r, rules), downtime_view(r)], id="p-print-area"), event_view(r), details_view(r)]


def _same_plan(sp) -> bool:
    """The part-time option is the 24/7 plan (open around the clock with the same shifts)."""
    o = sp.options
    return "part-time" in o and "24/7" in o and o["part-time"].shifts.equals(o["24/7"].shifts)


def _shown(sp, d: dict) -> list[str]:
    return [k for k in ("24/7", "part-time") if k in d and not (k == "part-time" and _same_plan(sp))]


def _same_note(sp):
    return (
        [
            html.Div(
                "part-time: the same plan as 24/7 (with these inputs the best part-time plan is open "
                "around the clock).",
                style=_MEAN,
            )
        ]
        if _same_plan(sp)
        else []
    )


def roster_view(r, rules) -> html.Div:
    sp = r.plan
    blocks = []
    for k in _shown(sp, sp.rosters):
        ro = sp.rosters[k]
        cols = ["operator", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "hours", "downtime_hours"]
        body = [
            [Markup("<span style='color:#99a'>off</span>") if v == "off" else v for v in x]
            for x in ro.lines[cols].astype(str).itertuples(index=False)
        ]
        csv = "data:text/csv;charset=utf-8," + urllib.parse.quote(ro.to_csv())
        tag = "247" if k == "24/7" else "pt"
        blocks.append(
            html.Div(
                [
                    html.H4(f"{k}: {ro.operators} people ({_roster_kinds(ro)})", style={"margin": "8px 0 2px"}),
                    html.Div(
                        [
                            "Shifts each day: ",
                            html.Span(ro.summary, id=f"p-roster-title-{tag}", style={"fontWeight": "600"}),
                        ],
                        style={"fontSize": "13px"},
                    ),
                    html.Div(
                        "× n = operators starting that shift each day. "
                        f"Every line keeps ≥ {rules.min_rest_hours:g} h rest, ≤ {rules.max_consecutive_days} days in a row, "
                        f"≤ {rules.full_time_hours:g} h a week (part-time ≤ {rules.part_time_max_hours:g} h).",
                        style=_MEAN,
                    ),
                    html.A(
                        f"Download the {k} roster (CSV)",
                        href=csv,
                        download=f"rtcc_roster_{'24-7' if k == '24/7' else 'part-time'}.csv",
                        id=f"p-roster-csv-{tag}",
                        style={"fontSize": "13px", "marginRight": "14px"},
                    ),
                    _html(
                        _table(
                            [*cols[:-1], "downtime h"],
                            body,
                            f"p-roster-table-{tag}",
                            {"padding": "2px 6px", "whiteSpace": "nowrap"},
                        )
                    ),
                ]
                + (
                    [
                        html.Div(
                            f"{len(ro.unassigned)} shift(s) no one may work under the rules: "
                            f"{ro.unassigned['reason'].iloc[0]}",
                            style={"color": "#a40000"},
                        )
                    ]
                    if len(ro.unassigned)
                    else []
                ),
                style={"display": "inline-block", "verticalAlign": "top", "marginRight": "24px", "maxWidth": "760px"},
            )
        )
    return html.Div(
        [
            html.H3("Roster", style={"margin": "4px 0"}),
            html.Button(
                "Print the rosters and the downtime plan",
                id="p-print",
                className="no-print",
                style={"fontSize": "13px"},
            ),
            html.Div(blocks + _same_note(sp)),
        ],
        id="p-roster",
        style=_SECTION,
    )


def downtime_view(r) -> html.Div:
    sp = r.plan
    blocks = []
    for k in _shown(sp, sp.downtime):
        dt = sp.downtime[k]
        ro = sp.rosters.get(k)
        people = ro.operators if ro is not None else 0
        t = dt.tasks
        rows = [
            [x["task"], f"{x['hours_per_week']:.0f} h", x["best_hours"] or "—", x["description"]]
            for _, x in t.iterrows()
            if x["hours_per_week"] >= 0.5
        ]
        csv = "data:text/csv;charset=utf-8," + urllib.parse.quote(
            t[["rank", "task", "hours_per_week", "best_hours", "description"]].round(2).to_csv(index=False)
        )
        per = dt.idle_hours / people if people else 0.0
        blocks.append(
            html.Div(
                [
                    html.H4(f"{k}: {per:.1f} h of downtime per person a week", style={"margin": "8px 0 2px"}),
                    html.Div(
                        f"{dt.idle_hours:,.0f} operator-hours a week with no live event ({_pct(dt.idle_share)} of shift time), "
                        f"filled from the agency's task list, most valuable first:",
                        style=_MEAN,
                    ),
                    _html(_table(["task", "hours a week (all)", "best time", "what it is"], rows, last_muted=True)),
                    html.A(
                        f"Download the {k} downtime plan (CSV)",
                        href=csv,
                        download=f"rtcc_downtime_{'24-7' if k == '24/7' else 'part-time'}.csv",
                        id=f"p-downtime-csv-{'247' if k == '24/7' else 'pt'}",
                        style={"fontSize": "13px"},
                    ),
                ],
                style={"marginBottom": "8px"},
            )
        )
    return html.Div(
        [html.H3("Downtime plan", style={"margin": "4px 0"})] + blocks + _same_note(sp), id="p-downtime", style=_SECTION
    )


def event_view(r) -> html.Div:
    ev = r.event
    if ev is None:
        return html.Div(
            "Large public event: choose a place, a start and the expected crowd on the left to see the "
            "extra load and the operators to add.",
            id="p-event",
            style={**_SECTION, **_MEAN},
        )
    x = ev.extra
    n = int(np.max(ev.extra_operators, initial=0))
    hrs = [
        [h.strftime("%a %d %b %H:%M"), f"{b:.2f}", f"+{u:.2f}", f"{int(a)} → {int(w)} (+{int(e)})"]
        for h, b, u, a, w, e in zip(
            ev.hours, ev.baseline, ev.uplift, ev.operators_without, ev.operators_with, ev.extra_operators
        )
    ]
    return html.Div(
        [
            html.H3(f"Event: add {n} operator{'s' if n != 1 else ''} for those hours", style={"margin": "4px 0"}),
            html.Div(
                f"{x.get('venue')}, {ev.start:%a %d %b %Y %H:%M} for {len(ev.hours)} h, {x['crowd']:,.0f} people. "
                f"Ordinary load within {x['radius_m']:.0f} m: {ev.baseline.sum():.1f} events over those hours "
                f"(same weekday and hours, {ev.n_weeks} ordinary weeks of data). The crowd adds "
                f"{ev.uplift_total:.1f} (the agency's assumption: {x['rate']:g} events per 10,000 people an hour, "
                f"data/staffing/events.toml).",
                style=_MEAN,
            ),
            _html(_table(["hour", "ordinary events", "extra (crowd)", "operators needed city-wide"], hrs)),
        ],
        id="p-event",
        style=_SECTION,
    )


def details_view(r) -> html.Details:
    sp = r.plan
    rows = []
    for k, o in sp.options.items():
        gap = "not known yet" if not np.isfinite(o.mip_gap) else f"{100 * o.mip_gap:.2f} %"
        rows.append(
            html.Tr(
                [
                    html.Td(k, style=_TD),
                    html.Td(o.extra.get("mode", ""), style=_TD),
                    html.Td(o.status, style=_TD),
                    html.Td("yes" if o.optimal else "no", style=_TD),
                    html.Td(gap, style=_TD),
                    html.Td(f"{o.extra.get('solver_seconds', 0):.2f} s", style=_TD),
                ]
            )
        )
    return html.Details(
        [
            html.Summary("Solver details (for analysts)"),
            html.Div(
                f"Re-plan took {r.seconds:.2f} s (workload curve {'from cache' if r.curve_cached else 'computed'}). "
                "The page uses the fast mode: a greedy plan improved by local search and a short HiGHS run started "
                "from it. 'gap': at most this much better is possible, proven by a bound (HiGHS's, or one that "
                "ignores shift boundaries; that one is loose when every hour must be staffed, as in 24/7). "
                "`rtcc-geo staff` (without --fast) solves to the optimum.",
                style=_MEAN,
            ),
            html.Table(
                [
                    html.Thead(
                        html.Tr(
                            [
                                html.Th(h, style=_TH)
                                for h in ("option", "mode", "solver status", "proven optimal", "gap", "time")
                            ]
                        )
                    ),
                    html.Tbody(rows),
                ],
                style={"borderCollapse": "collapse", "background": "#fff"},
            ),
        ],
        id="p-details",
        style=_SECTION,
    )


def _week_labels() -> list[str]:
    return [f"{DOW_LABELS[h // 24]} {h % 24:02d}:00" for h in range(168)]


def figure(r) -> dict:
    """Events per hour (right axis, shaded) with operators needed and on duty in each option (left axis)."""
    sp = r.plan
    x = list(range(168))
    lab = _week_labels()
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": np.round(sp.curve.expected, 3).tolist(),
            "text": lab,
            "name": "RTCC events per hour (average week)",
            "line": {"color": "#cc4c02", "width": 1.2},
            "yaxis": "y2",
            "fill": "tozeroy",
            "fillcolor": "rgba(254,153,41,0.18)",
            "hovertemplate": "%{text}: %{y:.1f} events<extra></extra>",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "x": x,
            "y": np.asarray(sp.required).tolist(),
            "text": lab,
            "name": "operators needed at once",
            "line": {"color": "#1d2731", "width": 1.5, "shape": "hv"},
            "hovertemplate": "%{text}: %{y} needed<extra></extra>",
        },
    ]
    style = {"24/7": {"color": "#2b8cbe", "width": 2.5}, "part-time": {"color": "#31a354", "width": 2, "dash": "dot"}}
    for k, o in sp.options.items():
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": x,
                "y": np.asarray(o.on_duty).tolist(),
                "text": lab,
                "name": f"on duty, {k}",
                "line": {**style.get(k, {}), "shape": "hv"},
                "hovertemplate": f"%{{text}}: %{{y}} on duty ({k})<extra></extra>",
            }
        )
    ticks = list(range(0, 169, 12))
    labels = lab + ["Mon 00:00"]
    return {
        "data": data,
        "layout": {
            "height": 360,
            "margin": {"l": 60, "r": 60, "t": 30, "b": 40},
            "title": {"text": "An average week: events and operators per hour (local time)", "font": {"size": 13}},
            "legend": {"orientation": "h", "y": -0.15},
            "xaxis": {"tickvals": ticks, "ticktext": [labels[t] for t in ticks], "range": [0, 168]},
            "yaxis": {"title": {"text": "operators"}, "rangemode": "tozero"},
            "yaxis2": {
                "title": {"text": "events per hour"},
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
                "showgrid": False,
            },
        },
    }
