"""Cell drill-down: hour-of-week profile, trend, hot-spot status, recent incidents.

Incident rows (times, offense text, blocks) are only ever built for roles in
:data:`rtcc_geo.auth.INCIDENT_ROLES`; other roles get the aggregates alone,
and of those never a count between 1 and k - 1 (an hour of the week, a week,
the cell's total: "fewer than k" instead, :mod:`rtcc_geo.app.suppress`).
The check is here, on the server, not in what the browser shows or hides.
Each drill-down that returns incident rows is one entry in the audit log
(user, cell, filters, row count).
"""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd
from dash import dcc, html

from . import auth, suppress
from .context import AppContext, Filters, cell_hex
from .figures import SMALL_CONFIG, empty_figure, profile_figure, trend_figure
from .layers import Layer, hotspot_layer
from .suppress import compute

N_RECENT = 15
_TD = {"padding": "2px 6px", "borderBottom": "1px solid #eee", "verticalAlign": "top"}


def placeholder(msg: str = "Click a hexagon for its profile, trend and status.") -> list:
    return [html.Div(msg, id="drill-empty", style={"color": "#667", "padding": "20px 6px"})]


def filters_dict(f: Filters) -> dict:
    """The view's filters as plain JSON (audit log)."""
    return {
        "start": f.start,
        "end": f.end,
        "categories": list(f.categories) if f.categories is not None else None,
        "hours": list(f.hours),
        "dows": list(f.dows) if f.dows is not None else None,
        "districts": list(f.districts) if f.districts is not None else None,
        "res": f.res,
    }


def _cell_query(ctx: AppContext, cell: int, f: Filters):
    """The view's dates and categories, restricted to the cell; every hour and day
    (the profile is what the hour/day filters would cut)."""
    q = f.query(ctx.source, ctx.categories)
    return q.with_(cells=(int(cell),), cells_res=int(h3.api.basic_int.get_resolution(int(cell))), hours=None, dows=None)


def hour_of_week(ctx: AppContext, cell: int, f: Filters) -> np.ndarray:
    """7 x 24 matrix of incident counts by local day of week and hour (Store.counts)."""
    q = _cell_query(ctx, cell, f)
    c = ctx.store.counts(int(h3.api.basic_int.get_resolution(int(cell))), ("hour_of_week",), q)
    m = np.zeros(168)
    m[c["hour_of_week"].to_numpy(np.int64)] = c["n"].to_numpy("float64")
    return m.reshape(7, 24)


def weekly(ctx: AppContext, cell: int, f: Filters) -> pd.Series:
    """Weekly counts (local Monday), zero-filled over the view's full weeks."""
    q = _cell_query(ctx, cell, f)
    c = ctx.store.counts(int(h3.api.basic_int.get_resolution(int(cell))), ("week",), q)
    s = pd.Series(c["n"].to_numpy("float64"), index=pd.DatetimeIndex(c["week"]))
    lo = pd.Timestamp(f.start) if f.start else (s.index.min() if len(s) else None)
    hi = pd.Timestamp(f.end) if f.end else (s.index.max() if len(s) else None)
    if lo is None:
        return s
    lo = lo - pd.Timedelta(days=lo.day_of_week)
    weeks = pd.date_range(lo, hi, freq="7D")
    return s.reindex(weeks, fill_value=0.0)


def trend_words(y: np.ndarray) -> tuple[str, str]:
    """(plain words, technical statement) for the weekly counts ``y``: the direction
    (Mann-Kendall at 5 %) and the typical change per week (Sen's slope)."""
    n = len(y)
    if n < 8:
        return f"only {n} full week{'s' if n != 1 else ''}: too few to tell a trend", ""
    try:
        from rtcc_geo.temporal.mannkendall import mann_kendall, sen_slope
    except Exception:  # noqa: BLE001
        return "trend test not installed", ""
    r = mann_kendall(y)
    slope = float(sen_slope(y)[0])
    t = int(r.trend(0.05)[0])
    tech = f"Mann-Kendall τ = {float(r.tau[0]):+.2f}, p = {float(r.p[0]):.3f}; Sen slope {slope:+.2f}/week"
    if t == 0:
        return f"no steady rise or fall over {n} weeks (ups and downs look like chance)", tech
    word = "rising" if t > 0 else "falling"
    per = f"about {abs(slope):.2g} incidents a week {'more' if t > 0 else 'fewer'} each week" if slope else "slowly"
    return f"{word} over {n} weeks: {per}, unlikely to be chance", tech


def status(ctx: AppContext, cell: int, f: Filters, layer: Layer, role: str | None = None) -> list:
    """Hot-spot status from the hot-spot layer where the library has one; the
    cell's rank in the current layer otherwise."""
    out = []
    hs = hotspot_layer()
    if hs is not None:
        vals = compute(ctx, hs, f.__class__(**{**f.__dict__, "res": int(h3.api.basic_int.get_resolution(int(cell)))}))
        row = vals.loc[vals["cell"] == cell]
        if len(row):
            v = float(row["value"].iloc[0])
            label = next((c[1] for c in hs.classes if c[0] == v), "not significant")
            out.append(html.Div([html.B("Hot-spot status: "), html.Span(label, id="drill-hotspot")]))
    vals = compute(ctx, layer, f, role=role)
    v = vals["value"].to_numpy("float64")
    hit = np.flatnonzero(vals["cell"].to_numpy(np.int64) == cell)
    if len(hit):
        x = v[hit[0]]
        fin = v[np.isfinite(v)]
        pct = 100.0 * float(np.mean(fin <= x)) if len(fin) and np.isfinite(x) else float("nan")
        xs = "no value" if not np.isfinite(x) else (f"{x:,.0f}" if x == round(x) else f"{x:.3g}")
        if not np.isfinite(x) and layer.unit in suppress.COUNT_UNITS and suppress.active(role):
            xs = f"fewer than {suppress.k_for(ctx.source)}"
        out.append(
            html.Div(
                [
                    html.B(f"{layer.label}: "),
                    xs,
                    f" (higher than or equal to {pct:.0f}% of cells)" if np.isfinite(pct) else "",
                ]
            )
        )
    return out


def top_blocks_line(ctx: AppContext, cell: int, f: Filters, n: int = 3) -> str:
    """The cell's most frequent block addresses for the view's filters, with counts
    (aggregates: shown to every role)."""
    from rtcc_geo.places import top_places

    top = top_places(ctx.store, _cell_query(ctx, cell, f), n=n)  # addresses as normalised at ingest
    if top.empty:
        return "no block address in these filters"
    return "Busiest blocks here: " + "; ".join(f"{b} ({k:,})" for b, k in zip(top["block"], top["n"]))


def incident_table(ctx: AppContext, cell: int, f: Filters, role: str) -> html.Div:
    if not auth.may_see_incidents(role):
        return html.Div(
            f"Incident rows are not shown to the {role} role.", id="drill-incidents", style={"color": "#667"}
        )
    q = f.query(ctx.source, ctx.categories).with_(
        cells=(int(cell),), cells_res=int(h3.api.basic_int.get_resolution(int(cell)))
    )
    df = ctx.store.incidents(q, columns=["occurred_from", "time_known", "category", "offense_raw", "block"])
    df = df.tail(N_RECENT).iloc[::-1]
    if df.empty:
        return html.Div("No incidents for these filters.", id="drill-incidents")
    auth.audit("drill", {"cell": cell_hex([cell])[0], "filters": filters_dict(f), "rows": len(df)})
    when = df["occurred_from"].dt.tz_convert(ctx.timezone)
    rows = [
        html.Tr(
            [
                html.Td(t.strftime("%Y-%m-%d %H:%M") if k else t.strftime("%Y-%m-%d"), style=_TD),
                html.Td(str(c), style=_TD),
                html.Td(str(o), style=_TD),
                html.Td(str(b) if pd.notna(b) else "", style=_TD),
            ]
        )
        for t, k, c, o, b in zip(when, df["time_known"], df["category"], df["offense_raw"], df["block"])
    ]
    head = html.Tr([html.Th(h, style=_TD) for h in ("local time", "category", "offense", "block")])
    return html.Div(
        id="drill-incidents",
        children=[
            html.Div(f"Most recent {len(df)} incidents", style={"fontWeight": 600, "margin": "8px 0 4px"}),
            html.Table([html.Thead(head), html.Tbody(rows)], style={"borderCollapse": "collapse", "fontSize": "12px"}),
        ],
    )


def forecast_why(ctx: AppContext, cell: int, f: Filters, role: str):
    """Why the cell's forecast is what it is (owned by :mod:`rtcc_geo.forecast.explain`);
    block addresses only for roles that may see incident rows, counts below k only as
    "fewer than k" for aggregate-only roles."""
    from rtcc_geo.forecast.explain import drill_section

    k = suppress.k_for(ctx.source) if suppress.active(role) else 0
    return drill_section(ctx, cell, f, places=auth.may_see_incidents(role), min_count=k)


def panel(ctx: AppContext, cell: int, f: Filters, layer: Layer, role: str) -> list:
    res = int(h3.api.basic_int.get_resolution(int(cell)))
    lat, lon = h3.api.basic_int.cell_to_latlng(int(cell))
    how = hour_of_week(ctx, cell, f)
    wk = weekly(ctx, cell, f)
    # Drop a partial last week from the test (it would read as a fall).
    full = wk.iloc[:-1] if len(wk) > 1 else wk
    # Rows known only to the day count in the weekly trend, never in an hour (docs/temporal.md).
    unknown = int(round(wk.sum() - how.sum()))
    hide = suppress.active(role)
    k = suppress.k_for(ctx.source)
    if hide:  # viewers and planners: nothing below k, and 0 looks like 1..k-1 (see suppress)
        note = f" ({unknown:,} with unknown time not shown)" if unknown >= k else ""
        if how.sum() < k:
            prof = empty_figure(f"fewer than {k} incidents with a known time here", 210)
        else:
            shown = suppress.mask(how, k)
            few = f" · blank: fewer than {k}" if np.isnan(shown).any() else ""
            prof = profile_figure(shown, f"Hour-of-week profile · {int(how.sum()):,} incidents{few}")
        if wk.sum() < k:
            trend = empty_figure(f"fewer than {k} incidents here", 190)
        else:
            shown = suppress.mask(wk.to_numpy(), k)
            few = f" · gaps: fewer than {k}" if np.isnan(shown).any() else ""
            trend = trend_figure(wk.index.strftime("%Y-%m-%d"), shown, f"Incidents per week{few}")
    else:
        note = f" ({unknown:,} with unknown time not shown)" if unknown > 0 else ""
        prof = (
            profile_figure(how, f"Hour-of-week profile · {int(how.sum()):,} incidents")
            if how.sum()
            else empty_figure("no incidents with a known time here", 210)
        )
        trend = (
            trend_figure(wk.index.strftime("%Y-%m-%d"), wk.to_numpy(), "Incidents per week")
            if len(wk)
            else empty_figure("no incidents here", 190)
        )
    if hide and wk.sum() < k:
        plain, tech = f"fewer than {k} incidents: no trend test", None
    else:
        plain, tech = trend_words(full.to_numpy())
    name = ctx.place_names(np.array([cell], dtype=np.int64), role)[0] or "this cell"
    blocks = top_blocks_line(ctx, cell, f) if auth.may_see_incidents(role) else ""
    return [
        html.Div(name, id="drill-place", style={"fontWeight": 700, "fontSize": "15px"}),
        html.Div(blocks, id="drill-blocks", style={"color": "#4a5560", "marginBottom": "2px"}),
        html.Div(
            ["cell ", html.Code(cell_hex([cell])[0], id="drill-cell"), f" · H3 res {res} · {lat:.4f}, {lon:.4f}"],
            style={"marginBottom": "4px", "color": "#5a6570", "fontSize": "11px"},
        ),
        html.Div(status(ctx, cell, f, layer, role), id="drill-status"),
        dcc.Graph(id="drill-profile", figure=prof, config=SMALL_CONFIG),
        html.Div(note.strip(" ()"), style={"color": "#5a6570", "fontSize": "11px"}) if note else "",
        dcc.Graph(id="drill-trend", figure=trend, config=SMALL_CONFIG),
        html.Div(
            [
                html.B("Trend: "),
                plain,
                html.Details([html.Summary("statistics"), tech], style={"display": "inline-block", "marginLeft": "6px"})
                if tech
                else "",
            ],
            id="drill-trend-text",
        ),
        forecast_why(ctx, cell, f, role),
        incident_table(ctx, cell, f, role),
    ]
