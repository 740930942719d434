"""Fairness page: where a week of default patrol plans sends units, against who lives there.

Everything comes from :func:`rtcc_geo.fairness.audit_week` (the same audit as
``rtcc-geo audit-bias --week``); this page collects the week and the plan's
settings, and lays the answer out in plain words: the summary and warnings
first, then dosage by district, the most-dosed tracts, victim-reported vs
enforcement-driven incidents, how much the plans repeat day to day, and, on
request, what changes when enforcement-driven incidents drive the plan.
Open to the roles that see plans (commander, analyst, planner).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from rtcc_geo import defaults as D
from rtcc_geo.auth import PLANNER_ROLES
from rtcc_geo.store.base import Query

from .. import auth
from ..context import AppContext
from ..figures import NO_CLOUD_CONFIG

PATH = "/fairness"
_BOX = {"display": "inline-block", "marginRight": "22px", "verticalAlign": "top", "fontSize": "13px"}
_TH = {"padding": "3px 8px", "borderBottom": "1px solid #9aa3ab", "textAlign": "right", "fontWeight": 600}
_TD = {"padding": "3px 8px", "borderBottom": "1px solid #e1e5e9", "textAlign": "right", "whiteSpace": "nowrap"}
_SECTION = {
    "background": "#fff",
    "border": "1px solid #d8dde2",
    "borderRadius": "4px",
    "padding": "8px 12px",
    "margin": "10px 14px",
}


def default_week(ctx: AppContext) -> dt.date:
    """The Monday of the last full week of data (local), so the audit opens on real plans."""
    hi = ctx.last_day
    last = pd.Timestamp(hi).normalize() if hi is not None else pd.Timestamp.now(tz=ctx.timezone).tz_localize(None)
    monday = last - pd.Timedelta(days=int(last.day_of_week))
    return (monday - pd.Timedelta(days=7)).date()


def layout(ctx: AppContext, role: str) -> html.Div:
    if role not in PLANNER_ROLES:
        return html.Div(
            f"The fairness audit is not open to the {role} role.", id="forbidden", style={"padding": "30px"}
        )
    bar = html.Div(
        style={"padding": "10px 14px", "background": "#fff", "borderBottom": "1px solid #d8dde2"},
        children=[
            html.Div(
                [
                    html.Div("Week starting (local)"),
                    dcc.DatePickerSingle(
                        id="fa-week",
                        date=default_week(ctx).isoformat(),
                        display_format="YYYY-MM-DD",
                        min_date_allowed=ctx.date_range[0],
                        first_day_of_week=1,
                    ),
                ],
                style=_BOX,
            ),
            html.Div(
                [
                    html.Div("Units per shift"),
                    dcc.Input(
                        id="fa-units",
                        type="number",
                        min=1,
                        max=60,
                        step=1,
                        value=D.DEPLOY_UNITS,
                        style={"width": "70px"},
                    ),
                ],
                style=_BOX,
            ),
            html.Div(
                [
                    html.Div("Warn above (x the median)"),
                    dcc.Input(
                        id="fa-multiple", type="number", min=1, max=20, step=0.5, value=3.0, style={"width": "70px"}
                    ),
                ],
                style=_BOX,
            ),
            html.Div(
                [
                    html.Div("Plan options"),
                    dcc.Checklist(
                        id="fa-options",
                        value=[],
                        inputStyle={"marginRight": "4px"},
                        options=[
                            {"label": " cap dosage per resident at the warning level", "value": "cap"},
                            {"label": " also show plans driven by enforcement-driven incidents", "value": "compare"},
                        ],
                    ),
                ],
                style=_BOX,
            ),
            html.Div(
                [
                    html.Div("\u00a0"),
                    html.Button(
                        "Run the audit", id="fa-run", n_clicks=0, style={"padding": "4px 12px", "fontWeight": 600}
                    ),
                ],
                style=_BOX,
            ),
        ],
    )
    help_ = html.Details(
        [
            html.Summary("How to read this", style={"cursor": "pointer"}),
            html.P(
                f"The audit makes the default patrol plan ({D.DEPLOY_UNITS} units, one "
                f"{D.DEPLOY_SHIFT_HOURS:g}-hour evening shift a day) for each of the 7 days, from incidents before "
                "the week, and asks where the patrol minutes go against who lives there (census tracts, "
                "areal-weighted from the map cells; tracts under 500 residents count as 500)."
            ),
            html.P(
                "A tract is flagged when its minutes per resident exceed the chosen multiple of the median "
                "over tracts that got any patrol. Enforcement-driven incidents (drugs, disorder, warrants) "
                "reflect where police already were; they are left out of the plan's target by default."
            ),
            html.P(
                "Day-to-day overlap is the Jaccard index of the patrolled cells of consecutive days "
                "(shared cells / all cells of the two days): 1 means the same cells every day."
            ),
        ],
        style={"padding": "6px 14px", "fontSize": "12px", "background": "#f7f8f9"},
    )
    return html.Div(
        style={"height": "calc(100vh - 40px)", "overflowY": "auto"},
        children=[
            bar,
            help_,
            dcc.Loading(html.Div(id="fa-result"), type="circle"),
        ],
    )


def result_for(ctx: AppContext, week: str, units: int, multiple: float, cap: bool, compare: bool):
    """The week audit for the page's inputs (cached per input set: plans take seconds)."""
    from rtcc_geo.fairness import audit_week, districts_of, load_tracts

    agency = ctx.agency if ctx.agency is not None else ctx.source
    tracts = ctx.cache.get(("fairness-tracts", ctx.source), lambda: load_tracts(agency))
    districts = ctx.cache.get(("fairness-districts", ctx.source), lambda: districts_of(agency))
    key = ("fairness", ctx.source, week, units, multiple, cap, compare)
    return ctx.cache.get(
        key,
        lambda: audit_week(
            ctx.store,
            ctx.source,
            week,
            tracts=tracts,
            districts=districts,
            units=units,
            max_dose_multiple=multiple if cap else None,
            compare_enforcement=compare,
            multiple=multiple,
        ),
    )


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output("fa-result", "children"),
        Input("fa-run", "n_clicks"),
        State("fa-week", "date"),
        State("fa-units", "value"),
        State("fa-multiple", "value"),
        State("fa-options", "value"),
    )
    def run(_n, week, units, multiple, options):
        role = auth.require()
        if role not in PLANNER_ROLES:
            return html.Div("Not open to your role.")
        options = options or []
        try:
            units = int(units)
            multiple = float(multiple)
            if not 1 <= units <= 60 or not 1 <= multiple <= 20:
                raise ValueError
        except (TypeError, ValueError):
            return html.Div("Give 1 to 60 units and a multiple from 1 to 20.", id="fa-error", style=_SECTION)
        if not week:
            return html.Div("Choose the week to audit.", id="fa-error", style=_SECTION)
        monday = pd.Timestamp(week)
        if ctx.store.count(Query(source=ctx.source, end=monday.strftime("%Y-%m-%d"))) == 0:
            return html.Div(
                "There are no incidents before that week to plan from: choose a later week.",
                id="fa-error",
                style=_SECTION,
            )
        try:
            wa = result_for(ctx, monday.strftime("%Y-%m-%d"), units, multiple, "cap" in options, "compare" in options)
        except (ValueError, FileNotFoundError) as e:
            return html.Div(str(e), id="fa-error", style=_SECTION)
        return view(wa)


def view(wa) -> html.Div:
    a = wa.audit
    s = a.summary
    end = wa.week_start + pd.Timedelta(days=6)
    head = html.Div(
        id="fa-summary",
        style=_SECTION,
        children=[
            html.H3(
                f"Week of {wa.week_start:%a %d %b} to {end:%a %d %b %Y}: {s['plans']} daily plans, "
                f"{s['minutes']:,.0f} patrol minutes",
                style={"margin": "2px 0 6px", "fontSize": "16px"},
            ),
            # The audit's own sentences, less the title line and the district list (charted below).
            html.Ul(
                [
                    html.Li(line)
                    for line in a.text().splitlines()
                    if not line.startswith(("WARNING", "No tract", "Fairness audit:", "Dosage by district"))
                ],
                style={"margin": "0", "paddingLeft": "18px", "fontSize": "13px"},
            ),
        ],
    )
    if a.warnings:
        warn = html.Div(
            id="fa-warnings",
            style={**_SECTION, "borderLeft": "5px solid #a50026"},
            children=[
                html.B(f"{len(a.warnings)} tract(s) above the limit of {s['multiple']:g}x the median"),
                html.Ul([html.Li(w) for w in a.warnings[:12]], style={"fontSize": "13px", "margin": "4px 0"}),
                html.Div(f"... and {len(a.warnings) - 12} more (see the table below)")
                if len(a.warnings) > 12
                else None,
            ],
        )
    else:
        warn = html.Div(
            id="fa-warnings",
            style={**_SECTION, "borderLeft": "5px solid #1a9850"},
            children=html.B(f"No tract above the limit of {s['multiple']:g}x the median."),
        )
    parts = [head, warn, _districts(a), _tracts(a), _reporting(a), _concentration(a)]
    if wa.with_enforcement is not None:
        parts.append(_comparison(a, wa.with_enforcement))
    return html.Div(parts, id="fa-report")


def _table(head: list[str], rows: list[list], id_: str, left: int = 1) -> html.Table:
    th = [html.Th(h, style={**_TH, "textAlign": "left" if i < left else "right"}) for i, h in enumerate(head)]
    body = [
        html.Tr([html.Td(v, style={**_TD, "textAlign": "left" if i < left else "right"}) for i, v in enumerate(r)])
        for r in rows
    ]
    return html.Table(
        [html.Thead(html.Tr(th)), html.Tbody(body)],
        id=id_,
        style={"borderCollapse": "collapse", "fontSize": "13px", "background": "#fff"},
    )


def _districts(a) -> html.Div:
    bd = a.by_district
    if not len(bd):
        return html.Div("The agency has no district polygons: dosage by tract only.", style=_SECTION)
    bd = bd.sort_values("per_1000", ascending=True)
    # District rates average over every resident, dosed tract or not: compare them with the
    # city-wide rate, not with the median over dosed tracts.
    city = float(bd["minutes"].sum()) / max(float(bd["population"].sum()), 1.0) * 1000.0
    labels = [f"district {d}" if str(d).isdigit() else str(d) for d in bd["district"]]
    fig = go.Figure(
        go.Bar(
            x=bd["per_1000"],
            y=labels,
            orientation="h",
            marker_color="#4575b4",
            hovertemplate="%{y}: %{x:,.1f} min per 1,000 residents<extra></extra>",
        )
    )
    fig.add_vline(
        x=city,
        line_dash="dash",
        line_color="#333",
        annotation_text=f"city-wide {city:,.1f}",
        annotation_position="top right",
    )
    fig.update_layout(
        height=max(220, 18 * len(bd) + 60),
        margin={"l": 90, "r": 20, "t": 30, "b": 40},
        xaxis_title="patrol minutes per 1,000 residents",
        plot_bgcolor="#fff",
        paper_bgcolor="#fff",
    )
    rows = [
        [lab, f"{r.minutes:,.0f}", f"{r.population:,.0f}", f"{r.per_1000:,.1f}"]
        for lab, r in zip(labels[::-1], bd.iloc[::-1].itertuples())
    ]
    return html.Div(
        style=_SECTION,
        children=[
            html.B("Dosage by district"),
            html.Div(
                style={"display": "flex", "gap": "18px", "flexWrap": "wrap", "alignItems": "flex-start"},
                children=[
                    dcc.Graph(id="fa-district-chart", figure=fig, config=NO_CLOUD_CONFIG, style={"flex": "1 1 420px"}),
                    _table(["District", "Minutes", "Residents", "Min per 1,000"], rows, "fa-district-table"),
                ],
            ),
        ],
    )


def _tracts(a) -> html.Div:
    bt = a.by_tract.head(15)
    rows = [
        [
            r.tract,
            f"{r.population:,.0f}",
            f"{r.minutes:,.0f}",
            f"{r.per_1000:,.1f}",
            f"{r.ratio_to_median:,.1f}x" + (" (over)" if r.over_limit else ""),
        ]
        for r in bt.itertuples()
    ]
    return html.Div(
        style=_SECTION,
        children=[
            html.B("Most-dosed census tracts"),
            _table(["Tract", "Residents", "Minutes", "Min per 1,000", "Against the median"], rows, "fa-tract-table"),
        ],
    )


def _reporting(a) -> html.Div:
    r = a.reporting
    if not len(r):
        return html.Div("No incidents in the week to compare.", style=_SECTION)
    rows = [
        [
            x.where,
            f"{x.incidents:,}",
            f"{x.victim_reported:,}",
            f"{x.enforcement_driven:,}",
            "n/a" if not np.isfinite(x.enforcement_share) else f"{x.enforcement_share:.1%}",
        ]
        for x in r.itertuples()
    ]
    return html.Div(
        style=_SECTION,
        children=[
            html.B("Who reported the week's incidents"),
            html.Div(
                "Victim-reported incidents vs enforcement-driven ones (drugs, disorder, warrants: found "
                "where police look), city-wide and in the patrolled cells.",
                style={"fontSize": "12px"},
            ),
            _table(
                ["Where", "Incidents", "Victim-reported", "Enforcement-driven", "Enforcement share"],
                rows,
                "fa-reporting-table",
            ),
        ],
    )


def _concentration(a) -> html.Div:
    c = a.concentration
    if not len(c):
        return html.Div("One plan only: no day-to-day overlap.", style=_SECTION)
    rows = [[f"{pd.Timestamp(x.plan):%a %d %b}", f"{x.cells:,}", f"{x.jaccard:.2f}"] for x in c.itertuples()]
    return html.Div(
        style=_SECTION,
        children=[
            html.B("Does the plan send units to the same places every day?"),
            html.Div(
                f"Mean overlap {a.summary.get('mean_jaccard', float('nan')):.2f} (0 = new cells every day, "
                "1 = the same cells every day); the plan rests a cell after 3 days in a row.",
                style={"fontSize": "12px"},
            ),
            _table(["Day", "Patrolled cells", "Overlap with the day before"], rows, "fa-concentration-table"),
        ],
    )


def _comparison(a, cmp: dict) -> html.Div:
    base = a.reporting.set_index("where") if len(a.reporting) else None
    share = float(base.at["patrolled cells", "enforcement_share"]) if base is not None else float("nan")
    rows = [
        ["Tracts above the limit", f"{a.summary['over_limit']}", f"{cmp['over_limit_tracts']}"],
        ["Minutes in the 10 most-dosed tracts", f"{a.summary['top10_share']:.0%}", f"{cmp['top10_share']:.0%}"],
        [
            "Enforcement-driven share in patrolled cells",
            f"{share:.1%}",
            f"{cmp['enforcement_share_in_patrolled_cells']:.1%}",
        ],
    ]
    return html.Div(
        id="fa-comparison",
        style=_SECTION,
        children=[
            html.B("If enforcement-driven incidents drove the plan"),
            html.Div(
                f"The plans would share {cmp['cell_overlap_jaccard']:.0%} of their cells (Jaccard) with the "
                "default ones.",
                style={"fontSize": "12px"},
            ),
            _table(["", "Default plans", "With enforcement-driven incidents"], rows, "fa-comparison-table"),
        ],
    )
