"""CompStat page: week / 28 days / year to date per category, what changed, exports, the briefing.

All numbers come from :mod:`rtcc_geo.compstat` (the same table as ``rtcc-geo
compstat``) and :func:`rtcc_geo.briefing.briefing`; this page collects the end
date and district and lays the result out in plain words.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path

import pandas as pd
from dash import Input, Output, State, dcc, html, no_update

from rtcc_geo.compstat import compstat
from rtcc_geo.compstat.api import PERIOD_LABELS, count_text
from rtcc_geo.compstat.stats import TEST_NAME
from rtcc_geo.store.base import Query

from .. import auth
from ..context import AppContext

PATH = "/compstat"
_BOX = {"display": "inline-block", "marginRight": "22px", "verticalAlign": "top", "fontSize": "13px"}
_BTN = {"marginRight": "8px", "padding": "4px 10px", "fontSize": "13px"}
_TH = {"padding": "3px 8px", "borderBottom": "1px solid #9aa3ab", "textAlign": "right", "fontWeight": 600}
_TD = {"padding": "3px 8px", "borderBottom": "1px solid #e1e5e9", "textAlign": "right", "whiteSpace": "nowrap"}


def last_day(ctx: AppContext) -> dt.date:
    """Yesterday in the agency's time zone, or the last day with data when that is earlier."""
    yesterday = (pd.Timestamp.now(tz=ctx.timezone) - pd.Timedelta(days=1)).date()
    hi = ctx.date_range[1]
    if hi is None:
        return yesterday
    days = ctx.cache.get(
        ("compstat-last-day", hi),
        lambda: ctx.store.counts(7, ("day",), Query(source=ctx.source, start=pd.Timestamp(hi) - pd.Timedelta(days=40))),
    )
    last = pd.Timestamp(days["day"].max()).date() if len(days) else yesterday
    return min(yesterday, last)


def layout(ctx: AppContext, role: str) -> html.Div:
    end = last_day(ctx)
    opts = [{"label": "All districts", "value": "all"}] + [
        {"label": f"District {d}", "value": d} for d in ctx.district_names
    ]
    bar = html.Div(
        style={"padding": "10px 14px", "background": "#fff", "borderBottom": "1px solid #d8dde2"},
        children=[
            html.Div(
                [
                    html.Div("Through (last day included)"),
                    dcc.DatePickerSingle(
                        id="cs-end",
                        date=end.isoformat(),
                        display_format="YYYY-MM-DD",
                        min_date_allowed=ctx.date_range[0],
                        first_day_of_week=1,
                    ),
                ],
                style=_BOX,
            ),
            html.Div(
                [
                    html.Div("District"),
                    dcc.Dropdown(
                        id="cs-district", options=opts, value="all", clearable=False, style={"width": "190px"}
                    ),
                ],
                style=_BOX,
            ),
            html.Div(
                [
                    html.Div("Export"),
                    html.Button("CSV", id="cs-csv", style=_BTN),
                    html.Button("JSON", id="cs-json", style=_BTN),
                    html.Button("HTML", id="cs-html", style=_BTN),
                    html.Button("Printable briefing (PDF)", id="cs-pdf", style={**_BTN, "fontWeight": 600}),
                ],
                style=_BOX,
            ),
            dcc.Download(id="cs-download"),
        ],
    )
    help_ = html.Details(
        [
            html.Summary("How to read this", style={"cursor": "pointer"}),
            html.P(
                "Week = the 7 days ending on the chosen day; 28 days = the 4 weeks ending on it; year to date = "
                "1 January through it. Each is compared with the same dates a year earlier. Days are local days "
                f"({ctx.timezone}); a week across a clock change is 167 or 169 hours."
            ),
            html.P(
                f"'Beyond chance' means the change against the year before passes an {TEST_NAME} at the 5 % "
                "level: a rise from 1 to 2 is not flagged, a rise from 100 to 150 is. Incidents without a map "
                "location are counted here too."
            ),
        ],
        style={"padding": "6px 14px", "fontSize": "12px", "background": "#f7f8f9"},
    )
    return html.Div(
        style={"height": "calc(100vh - 40px)", "overflowY": "auto"},
        children=[
            bar,
            help_,
            html.Div(
                id="cs-periods",
                style={
                    "padding": "6px 14px",
                    "background": "#1d2731",
                    "color": "#fff",
                    "fontSize": "13px",
                    "minHeight": "18px",
                },
            ),
            dcc.Loading(html.Div(id="cs-table", style={"padding": "8px 14px", "overflowX": "auto"}), type="circle"),
            html.H3("What changed", style={"padding": "0 14px", "margin": "10px 0 0 0", "fontSize": "16px"}),
            dcc.Loading(
                html.Div(id="cs-changes", style={"padding": "6px 14px 20px 14px", "fontSize": "13px"}), type="circle"
            ),
            dcc.Loading(html.Div(id="cs-pdf-status", style={"padding": "0 14px 20px", "fontSize": "12px"}), type="dot"),
        ],
    )


def _district_query(ctx: AppContext, district: str | None) -> Query:
    return Query(source=ctx.source, districts=None if district in (None, "", "all") else (str(district),))


def table_for(ctx: AppContext, end: str | None, district: str | None):
    """The CompStat result for the page's inputs (cached per end date and district)."""
    from rtcc_geo.compstat.api import daily_counts

    # One read of the store per server: every day's counts by category x district;
    # any end date / district is then a slice of it.
    daily = ctx.cache.get(("compstat-daily", ctx.source), lambda: daily_counts(ctx.store, ctx.source))
    key = ("compstat", ctx.source, end, district)
    return ctx.cache.get(key, lambda: compstat(ctx.store, _district_query(ctx, district), end=end, daily=daily))


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output("cs-table", "children"),
        Output("cs-periods", "children"),
        Input("cs-end", "date"),
        Input("cs-district", "value"),
    )
    def render(end, district):
        auth.require()
        try:
            cs = table_for(ctx, end, district)
        except ValueError as e:
            return html.Div(str(e), id="cs-error"), ""
        return table(cs, "all" if district in (None, "all") else str(district)), periods_line(cs)

    @app.callback(Output("cs-changes", "children"), Input("cs-end", "date"), Input("cs-district", "value"))
    def changes(end, district):
        auth.require()
        from rtcc_geo.compstat.changes import what_changed

        try:
            ch = ctx.cache.get(
                ("changes", ctx.source, end, district),
                lambda: what_changed(
                    ctx.store, _district_query(ctx, district), end=end, res=9 if district not in (None, "all") else 8
                ),
            )
        except ValueError as e:
            return html.Div(str(e))
        return changes_table(ch)

    @app.callback(
        Output("cs-download", "data"),
        Output("cs-pdf-status", "children"),
        Input("cs-csv", "n_clicks"),
        Input("cs-json", "n_clicks"),
        Input("cs-html", "n_clicks"),
        Input("cs-pdf", "n_clicks"),
        State("cs-end", "date"),
        State("cs-district", "value"),
        prevent_initial_call=True,
    )
    def download(_c, _j, _h, _p, end, district):
        auth.require()
        from dash import ctx as dctx

        which = dctx.triggered_id
        try:
            cs = table_for(ctx, end, district)
        except ValueError as e:
            return no_update, str(e)
        stem = f"compstat_{cs.source}_{cs.end}" + ("" if district in (None, "all") else f"_d{district}")
        if which == "cs-csv":
            return dcc.send_data_frame(cs.rows.to_csv, stem + ".csv", index=False), ""
        if which == "cs-json":
            return {"content": json.dumps(cs.to_json(), indent=1, default=str), "filename": stem + ".json"}, ""
        if which == "cs-html":
            return {
                "content": cs.to_html("all" if district in (None, "all") else str(district)),
                "filename": stem + ".html",
            }, ""
        from rtcc_geo.briefing import briefing

        with tempfile.TemporaryDirectory() as d:
            out = Path(d) / f"briefing_{cs.source}_{cs.end}.pdf"
            # STKDE: the model of the map's forecast layer, and quick enough for a button
            b = briefing(
                ctx.store,
                cs.source,
                end=cs.end,
                district=None if district in (None, "all") else district,
                out=out,
                model="stkde",
            )
            return dcc.send_bytes(out.read_bytes(), out.name), html.Span(
                f"Briefing ready: {b.pages} pages, made in {b.seconds:.0f} s.", id="cs-pdf-done"
            )


def periods_line(cs) -> html.Span:
    sp = cs.spans()
    parts = []
    for p in ("week", "28d", "ytd"):
        c = sp[p]["current"]
        clocks = (
            f"clocks UTC{c['from_local'][-6:]}"
            if c["from_local"][-6:] == c["until_local"][-6:]
            else f"clocks change: UTC{c['from_local'][-6:]} to UTC{c['until_local'][-6:]}"
        )
        parts.append(f"{PERIOD_LABELS[p]}: {_d(c['start'])} to {_d(c['end'])} ({c['hours']:g} h, {clocks})")
    return html.Span(" | ".join(parts), id="cs-periods-text")


def _d(iso: str) -> str:
    return pd.Timestamp(iso).strftime("%a %d %b %Y")


def table(cs, district: str) -> html.Table:
    rows = cs.rows[cs.rows["district"] == district]
    cols = ("count", "prior_year", "change_pct", "previous_period", "avg_3y")
    labels = ("Count", "Year before", "Change", "Period before", "3-yr avg")
    head1 = [html.Th("", style=_TH)] + [
        html.Th(PERIOD_LABELS[p], colSpan=len(cols), style={**_TH, "textAlign": "center"})
        for p in ("week", "28d", "ytd")
    ]
    head2 = [html.Th("Category", style={**_TH, "textAlign": "left"})] + [
        html.Th(lab, style=_TH, title=_HELP[c]) for _ in range(3) for c, lab in zip(cols, labels)
    ]
    body = []
    # Rows as plain dicts, looked up by (category, period): one pass, not a pandas filter per cell.
    recs = {(r["category"], r["period"]): r for r in rows.to_dict("records")}
    for cat in dict.fromkeys(rows["category"].tolist()):
        tds = [
            html.Td(
                cat if cat != "all" else "All categories",
                style={**_TD, "textAlign": "left", "fontWeight": 600 if cat == "all" else 400},
            )
        ]
        for p in ("week", "28d", "ytd"):
            r = recs[(cat, p)]
            tds += [
                html.Td(f"{r['count']:,}", style=_TD),
                html.Td(count_text(r["prior_year"]), style=_TD),
                _change_cell(r),
                html.Td(count_text(r["previous_period"]), style=_TD),
                html.Td(
                    "n/a" if pd.isna(r["avg_3y"]) else f"{r['avg_3y']:,.0f}",
                    style=_TD,
                    title=f"over {r['avg_3y_years']} year(s) of data",
                ),
            ]
        body.append(html.Tr(tds, className="cs-row", **{"data-category": cat}))
    return html.Table(
        [html.Thead([html.Tr(head1), html.Tr(head2)]), html.Tbody(body)],
        id="cs-compstat-table",
        style={"borderCollapse": "collapse", "fontSize": "13px", "background": "#fff"},
    )


_HELP = {
    "count": "incidents in the period",
    "prior_year": "incidents on the same dates a year earlier",
    "change_pct": "change against the year before; bold with an arrow when beyond chance",
    "previous_period": "incidents in the equally long period just before",
    "avg_3y": "average of the same dates over the previous (up to) 3 years with data",
}


def _change_cell(r) -> html.Td:
    if pd.isna(r["prior_year"]):
        return html.Td("n/a", style=_TD, title="the data does not reach back to the year before")
    if pd.isna(r["change_pct"]):
        return html.Td("new" if r["count"] else "-", style=_TD, title="nothing the year before")
    txt = f"{r['change_pct']:+.0f} %"
    if r["significant"]:
        arrow = "\u25b2" if r["change"] > 0 else "\u25bc"
        return html.Td(
            f"{arrow} {txt}",
            style={**_TD, "fontWeight": 700},
            className="cs-significant",
            title=f"beyond chance (p = {r['p_value']:.2g})",
        )
    return html.Td(txt, style=_TD, title=f"within chance (p = {r['p_value']:.2g})")


def changes_table(ch) -> html.Div:
    t = ch.table
    intro = (
        f"{ch.current.start:%d %b} to {ch.current.end:%d %b %Y} against the {ch.baseline.days} days before: "
        f"{len(t)} place(s) rose beyond chance ({ch.tested.get('cell', 0)} cells and "
        f"{ch.tested.get('district', 0)} districts tested)."
    )
    if not len(t):
        return html.Div([html.P(intro), html.P("Nothing rose beyond chance.")], id="cs-changes-list")
    head = html.Tr(
        [
            html.Th(x, style={**_TH, "textAlign": "left"})
            for x in ("#", "Where", "District", "Now", "Expected", "Rise", "Also")
        ]
    )
    rows, n = [], 0
    for r in t.itertuples(index=False):
        n += r.unit == "cell"
        rows.append(
            html.Tr(
                [
                    html.Td(str(n) if r.unit == "cell" else "district", style=_TD),
                    html.Td(r.place or str(r.key), style={**_TD, "textAlign": "left"}),
                    html.Td(r.district, style=_TD),
                    html.Td(f"{r.current:,}", style=_TD),
                    html.Td(f"{r.expected:.1f}", style=_TD),
                    html.Td(f"x{r.ratio:.1f}", style=_TD),
                    html.Td(r.ehsa, style={**_TD, "textAlign": "left"}),
                ]
            )
        )
    return html.Div(
        [
            html.P(intro),
            html.Table(
                [html.Thead(head), html.Tbody(rows)], style={"borderCollapse": "collapse", "background": "#fff"}
            ),
        ],
        id="cs-changes-list",
    )
