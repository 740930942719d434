"""Audit page (commanders only): who logged in, looked at incidents, exported, changed users.

Read-only: the page lists entries of the store's audit log
(:mod:`rtcc_geo.auth_store`); nothing in the app writes to the log except the
actions it records, and nothing edits or removes an entry. Times are local to
the source. Also here: the header's right-hand side (user, audit link for
commanders, the log-out button, a POST form).
"""

from __future__ import annotations

import json

import pandas as pd
from dash import Input, Output, dcc, html

from rtcc_geo.auth_store import ACTIONS, records_for

from .. import auth
from ..context import AppContext

PATH = "/audit"
ROLES = frozenset({"commander"})
MAX_ROWS = 500
_LINK = {"color": "#e8ecef", "textDecoration": "none"}
_TD = {"padding": "3px 8px", "borderBottom": "1px solid #e3e6e9", "verticalAlign": "top", "fontSize": "12px"}

#: Plain words for the actions (the raw name is in the tooltip).
LABELS = {
    "login": "logged in",
    "login_failed": "failed log-in",
    "login_locked": "log-in refused (locked)",
    "account_locked": "account locked",
    "logout": "logged out",
    "drill": "looked at incident rows",
    "export": "exported",
    "alert_ack": "acknowledged an alert",
    "user_add": "added a user",
    "user_password": "changed a password",
    "user_role": "changed a role",
    "user_remove": "removed a user",
    "user_unlock": "unlocked a user",
    "feed_batch": "feed batch",
}


def nav_tail(user: str | None, role: str) -> list:
    """The header's right-hand side: user, audit link (commanders), log-out (a POST form)."""
    out = [html.Span(style={"flex": 1}), html.Span(f"{user} ({role})", id="nav-user", style={"opacity": 0.8})]
    if role in ROLES:
        out.append(dcc.Link("Audit log", href=PATH, style=_LINK, id="nav-audit"))
    out.append(
        html.Form(
            action="/logout",
            method="POST",
            style={"margin": 0},
            children=[
                html.Button(
                    "Log out",
                    type="submit",
                    id="nav-logout",
                    style={
                        "background": "none",
                        "border": 0,
                        "color": "#e8ecef",
                        "cursor": "pointer",
                        "fontSize": "14px",
                        "padding": 0,
                    },
                )
            ],
        )
    )
    return out


def layout(ctx: AppContext, role: str) -> html.Div:
    if role not in ROLES:
        return html.Div(f"The audit log is not open to the {role} role.", id="forbidden", style={"padding": "30px"})
    today = pd.Timestamp.now(tz=ctx.timezone).normalize()
    return html.Div(
        style={"padding": "10px 14px", "height": "calc(100vh - 60px)", "overflowY": "auto"},
        children=[
            html.H3("Audit log", style={"margin": "4px 0 8px"}),
            html.Div(
                "Every log-in, failed log-in, log-out, look at incident rows, export, alert acknowledgement, "
                "user change and feed batch, newest first. Nobody can change or delete an entry.",
                style={"fontSize": "13px", "color": "#445", "marginBottom": "8px"},
            ),
            html.Div(
                style={"display": "flex", "gap": "14px", "alignItems": "center", "fontSize": "13px"},
                children=[
                    html.Span("From"),
                    dcc.DatePickerRange(
                        id="a-dates",
                        start_date=(today - pd.Timedelta(days=7)).date().isoformat(),
                        end_date=today.date().isoformat(),
                        display_format="YYYY-MM-DD",
                    ),
                    html.Span("User"),
                    dcc.Input(
                        id="a-user", type="text", placeholder="everyone", debounce=True, style={"width": "140px"}
                    ),
                    html.Span("Action"),
                    dcc.Dropdown(
                        id="a-action",
                        options=[{"label": LABELS[a], "value": a} for a in ACTIONS],
                        placeholder="every action",
                        style={"width": "230px"},
                    ),
                ],
            ),
            html.Div(id="a-table", style={"marginTop": "10px"}),
        ],
    )


def register(app, ctx: AppContext) -> None:
    @app.callback(
        Output("a-table", "children"),
        Input("a-dates", "start_date"),
        Input("a-dates", "end_date"),
        Input("a-user", "value"),
        Input("a-action", "value"),
    )
    def show(d0, d1, user, action):
        auth.require(ROLES)
        tz = ctx.timezone
        start = pd.Timestamp(d0).tz_localize(tz) if d0 else None
        end = pd.Timestamp(d1).tz_localize(tz) + pd.Timedelta(days=1) if d1 else None
        df = records_for(ctx.store).read_audit(start, end, (user or "").strip() or None)
        if action:
            df = df[df["action"] == action]
        if df.empty:
            return html.Div("No entries for these filters.", id="a-empty", style={"color": "#667"})
        df = df.iloc[::-1].head(MAX_ROWS)
        head = html.Tr([html.Th(h, style=_TD) for h in ("local time", "user", "what", "details", "address")])
        rows = [
            html.Tr(
                [
                    html.Td(t.tz_convert(tz).strftime("%Y-%m-%d %H:%M:%S"), style=_TD),
                    html.Td(str(u or ""), style=_TD),
                    html.Td(LABELS.get(a, a), title=a, style=_TD),
                    html.Td(_detail(d), style={**_TD, "fontFamily": "monospace"}),
                    html.Td(str(ad or ""), style=_TD),
                ]
            )
            for t, u, a, d, ad in zip(df["at"], df["user"], df["action"], df["detail"], df["address"])
        ]
        return html.Div(
            id="a-rows",
            children=[
                html.Div(
                    f"{len(df):,} entries" + (f" (newest {MAX_ROWS})" if len(df) == MAX_ROWS else ""),
                    style={"fontSize": "13px", "marginBottom": "4px"},
                ),
                html.Table(
                    [html.Thead(head), html.Tbody(rows)],
                    style={"borderCollapse": "collapse", "background": "#fff", "width": "100%"},
                ),
            ],
        )


def _detail(d) -> str:
    if not d:
        return ""
    if isinstance(d, str):
        d = json.loads(d)
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in sorted(d.items()))
