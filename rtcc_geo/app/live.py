"""Live incidents and alerts in the app: feed, engine, listener, and the map's live layer.

The app mounts :func:`rtcc_geo.live.feed.feed_blueprint` (``POST
/api/feed/<source>/incidents`` with a bearer token, ``GET /api/live/stream``
for signed-in users). With PostGIS the engine is fed by LISTEN/NOTIFY (so a
CAD bridge writing straight to the database shows up too); with the
embedded store the feed hands rows to it. In the browser, ``assets/live.js``
holds the event stream open and handles what arrives:
a new incident is appended to the map's live trace with Plotly directly (no
redraw, no geometry, no server round trip) and an alert makes the server
re-render the alert panel.
"""

from __future__ import annotations

import logging

import pandas as pd
from dash import ALL, Input, Output, dcc, html
from dash import ctx as cbctx

from rtcc_geo.live.engine import Broker, LiveEngine
from rtcc_geo.live.feed import FeedService, feed_blueprint
from rtcc_geo.store.base import Query

from . import auth

log = logging.getLogger(__name__)


class LiveRuntime:
    """What the app runs for real time: engine, feed service, listener."""

    def __init__(self, store, source: str, token: str | None):
        self.store, self.source = store, source
        self.broker = Broker()
        self.engine = LiveEngine(store, source, broker=self.broker)
        self.engine.recompute(latest_time(store, source))
        self.service = FeedService(store, {source: self.engine})
        self.token = token
        self.listener = None
        if getattr(store, "kind", "") == "postgis":
            from rtcc_geo.live.listen import Listener

            self.listener = Listener(store.url, {source: self.engine})
            self.listener.start()
            self.listener.ready.wait(10)


def latest_time(store, source: str) -> pd.Timestamp:
    """End of the last local day with incidents (the live window starts from the data,
    so a replayed history lines up with what is stored)."""
    days = store.counts(7, ("day",), Query(source=source, include_unknown_time=True))
    if not len(days):
        return pd.Timestamp.now(tz="UTC")
    tz = store.sources()[source]
    return (pd.Timestamp(days["day"].max()) + pd.Timedelta(days=1)).tz_localize(tz).tz_convert("UTC")


def attach(app, ctx, token: str | None = None) -> LiveRuntime | None:
    """Mount the live routes on ``app`` and register the live callbacks
    (feed tokens per source: :class:`rtcc_geo.feed_tokens.FeedTokens`)."""
    from rtcc_geo.feed_tokens import FeedTokens

    if not ctx.source:
        return None
    tokens = FeedTokens.load(ctx.source, token)  # a bad token setting stops the server, loudly
    try:
        rt = LiveRuntime(ctx.store, ctx.source, tokens)
    except Exception as e:  # noqa: BLE001 - the map works without the live layer
        log.warning("live layer off: %s", e)
        return None
    app.server.register_blueprint(
        feed_blueprint(
            rt.service,
            token=rt.token,
            authorize=auth.current_role,
            broker=rt.broker,
            redact=redact,
            on_batch=auth.feed_audit(ctx.store),
            alive=auth.session_alive,
        )
    )
    app.rtcc_live = rt
    _register_callbacks(app, rt)
    return rt


def components() -> list:
    """The hidden store live.js signals alerts through, and the alert panel (live.js
    draws incidents on the map's trace itself)."""
    return [
        dcc.Store(id="live-alerts"),
        dcc.Store(id="alerts-page", data=0),
        dcc.Store(id="alert-hits"),
        dcc.Store(id="live-shown"),
        html.Div(id="alerts-panel", children=alerts_list(None, "viewer")),
    ]


def live_trace() -> dict:
    """An empty marker trace on the map for incidents as they arrive (no text: no glyphs
    needed); live.js fills it, fading each dot with its age."""
    return {
        "type": "scattermap",
        "name": "live",
        "mode": "markers",
        "lon": [],
        "lat": [],
        "customdata": [],
        "marker": {"size": 12, "color": "#0050ff", "opacity": 0.9},
        "hovertemplate": "live incident: %{customdata}<extra></extra>",
        "showlegend": False,
    }


#: Alert groups shown per page of the panel (the panel never grows beyond a screen).
GROUPS_PER_PAGE = 6
#: Alerts listed inside one opened group.
ROWS_PER_GROUP = 5
#: How long "snooze" hides a group (kept in the store, so every serve worker hides it).
SNOOZE = pd.Timedelta(hours=1)
_KIND = {"hotspot": "hot-spot", "near_repeat": "near-repeat", "stp_cluster": "space-time cluster"}


def group_alerts(df: pd.DataFrame, res: int = 9) -> pd.DataFrame:
    """Open alerts grouped by place (their cell at ``res``) and kind: one row per group
    with ``key``, ``kind``, ``cell``, ``n``, ``latest`` and the member ``alert_ids``
    (newest first), the busiest and newest groups first."""
    import numpy as np

    from rtcc_geo import grid

    if df is None or not len(df):
        return pd.DataFrame(columns=["key", "kind", "cell", "n", "latest", "alert_ids"])
    df = df.sort_values("created_at", ascending=False, kind="mergesort")
    cells = df["cell"].astype("Int64")
    known = cells.notna().to_numpy()
    c = np.zeros(len(df), dtype=np.int64)
    if known.any():
        raw = np.array(cells[known].astype("int64"), dtype=np.int64)
        fine = grid.resolution(raw) >= res
        raw[fine] = grid.parent(raw[fine], res)
        c[known] = raw
    g = pd.DataFrame(
        {
            "kind": df["kind"].astype(str).to_numpy(),
            "cell": c,
            "created_at": df["created_at"].to_numpy(),
            "alert_id": df["alert_id"].astype(str).to_numpy(),
        }
    )
    out = (
        g.groupby(["kind", "cell"], sort=False)
        .agg(n=("alert_id", "size"), latest=("created_at", "max"), alert_ids=("alert_id", list))
        .reset_index()
    )
    out["key"] = out["kind"] + "|" + out["cell"].map(lambda x: format(int(x), "x") if x else "none")
    return out.sort_values(["n", "latest"], ascending=[False, False], kind="mergesort").reset_index(drop=True)


def alerts_list(
    store,
    role: str,
    limit: int | None = None,
    tz: str = "UTC",
    ctx=None,
    page: int = 0,
    snoozed: dict | None = None,
    log=None,
) -> html.Div:
    """The open alerts grouped by place and kind, with counts, a page of
    :data:`GROUPS_PER_PAGE` groups at a time: where (the place's name), how many, when the
    latest was raised (agency local time), "zoom to", acknowledge-all and snooze. Opened,
    a group lists its newest alerts: why, for roles that may see incidents also the
    incident's own local time and a per-alert acknowledge button."""
    title = html.Div(
        "Live alerts",
        style={
            "fontSize": "12px",
            "fontWeight": 600,
            "textTransform": "uppercase",
            "color": "#4a5560",
            "margin": "10px 0 4px",
        },
    )
    if store is None:
        return html.Div([title, html.Div("none yet", id="alerts-empty", style={"color": "#5a6570"}), _pager(0, 1)])
    from rtcc_geo.live.alerts import AlertLog

    # ``log``: the engine's AlertLog, which also holds the alerts just raised and not yet
    # written (the panel redraws on the event announcing them, before the background write).
    # With several PostGIS workers each engine stores the alert it raised (same id).
    df = (log or AlertLog(store)).list(open_only=True, limit=limit).drop_duplicates("alert_id")
    if not len(df):
        return html.Div([title, html.Div("none open", id="alerts-empty", style={"color": "#5a6570"}), _pager(0, 1)])
    detail = auth.may_see_incidents(role)
    groups = group_alerts(df)
    now = pd.Timestamp.now(tz="UTC")
    snoozed = {k: t for k, t in (snoozed or {}).items() if pd.Timestamp(t) > now}
    hidden = groups["key"].isin(list(snoozed))
    shown = groups[~hidden].reset_index(drop=True)
    pages = max(1, -(-len(shown) // GROUPS_PER_PAGE))
    page = min(max(int(page or 0), 0), pages - 1)
    part = shown.iloc[page * GROUPS_PER_PAGE : (page + 1) * GROUPS_PER_PAGE]
    names = {}
    if ctx is not None and len(part):
        cells = part["cell"].to_numpy()
        ok = cells != 0
        if ok.any():
            names = dict(zip(cells[ok].tolist(), ctx.place_names(cells[ok], role)))
    by_id = df.set_index("alert_id")
    rows: list = []
    for a in part.itertuples(index=False):
        where = names.get(a.cell) or ("unknown place" if not a.cell else f"cell {int(a.cell):x}")
        kind = _KIND.get(a.kind, a.kind.replace("_", " "))
        latest = _local(a.latest, tz)
        head = [
            html.B(f"{a.n} {kind} alert{'s' if a.n != 1 else ''}"),
            " at ",
            html.Span(where, className="alert-place"),
            html.Span(f" · latest raised {latest:%H:%M}", style={"color": "#4a5560"}),
        ]
        btns = [html.Button("zoom to", id={"type": "alert-zoom", "i": len(rows)}, n_clicks=0)]
        if detail:
            btns.append(
                html.Button(f"ack all {a.n}" if a.n > 1 else "ack", id={"type": "ack-group", "g": a.key}, n_clicks=0)
            )
        btns.append(html.Button("snooze 1 h", id={"type": "snooze", "g": a.key}, n_clicks=0))
        items = []
        for aid in a.alert_ids[:ROWS_PER_GROUP]:
            r = by_id.loc[aid]
            if isinstance(r, pd.DataFrame):
                r = r.iloc[0]
            when = _local(r["created_at"], tz).strftime("%H:%M:%S")
            text = r["reason"] if detail else f"{a.kind.replace('_', ' ')} alert"
            kids = [f"raised {when} · ", html.Span(str(text))]
            occurred = _alert_data(r["data"]).get("occurred_from") if detail else None
            if occurred:
                kids.append(html.Span(f" (incident {_local(occurred, tz):%Y-%m-%d %H:%M})", className="alert-when"))
            if detail:
                kids.append(
                    html.Button(
                        "ack",
                        id={"type": "ack", "id": aid},
                        n_clicks=0,
                        style={"marginLeft": "6px", "fontSize": "11px"},
                    )
                )
            items.append(html.Div(kids, className="alert-row", style={"padding": "2px 0 2px 8px", "fontSize": "12px"}))
        if a.n > ROWS_PER_GROUP:
            items.append(
                html.Div(f"… and {a.n - ROWS_PER_GROUP} older", style={"color": "#5a6570", "fontSize": "12px"})
            )
        rows.append(
            html.Div(
                [html.Div(head), html.Div(btns), html.Details([html.Summary("details"), *items], open=len(rows) == 0)],
                className="alert-group",
            )
        )
    n_alerts = int(groups["n"].sum())
    summary = html.Div(
        f"{n_alerts:,} open in {len(groups):,} place/kind group{'s' if len(groups) != 1 else ''}"
        + (f" · {int(hidden.sum())} snoozed" if hidden.any() else ""),
        id="alerts-summary",
        style={"color": "#4a5560"},
    )
    return html.Div([title, summary, *rows, _pager(page, pages)])


def _pager(page: int, pages: int) -> html.Div:
    """Previous/next page of alert groups (always in the panel, hidden when one page holds all)."""
    return html.Div(
        className="alert-pager",
        style={} if pages > 1 else {"display": "none"},
        children=[
            html.Button("◀ previous", id="alerts-prev", disabled=page == 0),
            html.Span(f" page {page + 1} of {pages} ", id="alerts-pageinfo"),
            html.Button("next ▶", id="alerts-next", disabled=page >= pages - 1),
        ],
    )


def alert_places(store, role: str, ctx, page: int = 0, snoozed: dict | None = None, log=None) -> list[dict]:
    """Where each shown group is (for "zoom to"), in the order :func:`alerts_list` shows them."""
    import numpy as np

    from rtcc_geo import grid
    from rtcc_geo.live.alerts import AlertLog

    df = (log or AlertLog(store)).list(open_only=True).drop_duplicates("alert_id")
    groups = group_alerts(df)
    now = pd.Timestamp.now(tz="UTC")
    hidden = {k for k, t in (snoozed or {}).items() if pd.Timestamp(t) > now}
    shown = groups[~groups["key"].isin(list(hidden))].reset_index(drop=True)
    pages = max(1, -(-len(shown) // GROUPS_PER_PAGE))
    page = min(max(int(page or 0), 0), pages - 1)
    part = shown.iloc[page * GROUPS_PER_PAGE : (page + 1) * GROUPS_PER_PAGE]
    out: list[dict] = []
    exact = auth.may_see_incidents(role)  # aggregate-only roles are never zoomed to an alert's cell
    for a in part.itertuples(index=False):
        if not a.cell or not exact:
            out.append({"label": "unknown place" if not a.cell else a.key, "bbox": None})
            continue
        lat, lon = grid.cell_centres(np.array([a.cell], dtype=np.int64))
        out.append({"label": a.key, "bbox": [float(lon[0]), float(lat[0]), float(lon[0]), float(lat[0])]})
    return out


def _local(t, tz: str) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return (t.tz_localize("UTC") if t.tzinfo is None else t).tz_convert(tz)


def _alert_data(raw) -> dict:
    import json

    try:
        d = json.loads(raw) if isinstance(raw, str) else (raw or {})
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def redact(event: dict, role: str | None) -> dict:
    """What a role may receive of a live event. Roles without incident access (viewers,
    planners) are aggregate-only (small-count suppression, :mod:`rtcc_geo.app.suppress`):
    one new incident in a cell is a cell/time aggregate of 1, so they get how many
    incidents and alerts arrived and the alerts' kinds, never where or when."""
    if auth.may_see_incidents(role) or event.get("type") not in ("incidents", "alerts"):
        return event
    rows = event.get("rows") or []
    kept = [{"kind": r["kind"]} for r in rows] if event["type"] == "alerts" else []
    return {**event, "rows": kept, "count": len(rows)}


def _register_callbacks(app, rt: LiveRuntime) -> None:
    from dash import ClientsideFunction, State

    tz = rt.store.sources().get(rt.source, "UTC")

    @app.callback(
        Output("alerts-panel", "children"),
        Output("alert-hits", "data"),
        Output("alerts-page", "data"),
        Input("live-alerts", "data"),
        Input({"type": "ack", "id": ALL}, "n_clicks"),
        Input({"type": "ack-group", "g": ALL}, "n_clicks"),
        Input({"type": "snooze", "g": ALL}, "n_clicks"),
        Input("alerts-prev", "n_clicks"),
        Input("alerts-next", "n_clicks"),
        State("alerts-page", "data"),
        prevent_initial_call=True,
    )
    def refresh_alerts(_, acks, group_acks, snoozes, prev, nxt, page):
        role = auth.require()
        user = auth.current_user() or "?"
        trig = cbctx.triggered_id
        page = int(page or 0)
        fired = any(t.get("value") for t in (cbctx.triggered or []))
        if isinstance(trig, dict) and fired:
            if trig.get("type") == "ack" and auth.may_see_incidents(role):
                if rt.engine.alerts.acknowledge(trig["id"], user):
                    auth.audit("alert_ack", {"alert": trig["id"]})
            elif trig.get("type") == "ack-group" and auth.may_see_incidents(role):
                g = group_alerts(rt.engine.alerts.list(open_only=True).drop_duplicates("alert_id"))
                ids = [aid for grp in g.loc[g["key"] == trig["g"], "alert_ids"] for aid in grp]
                for aid in rt.engine.alerts.acknowledge_many(ids, user):
                    auth.audit("alert_ack", {"alert": aid, "group": trig["g"]})
            elif trig.get("type") == "snooze":
                rt.engine.alerts.snooze(str(trig["g"]), pd.Timestamp.now(tz="UTC") + SNOOZE, user)
        elif trig == "alerts-prev" and fired:
            page = max(page - 1, 0)
        elif trig == "alerts-next" and fired:
            page += 1
        ctx = getattr(app, "rtcc", None)
        log = rt.engine.alerts
        snoozed = log.snoozed()  # kept in the store: every worker hides the same groups
        panel = alerts_list(rt.store, role, tz=tz, ctx=ctx, page=page, snoozed=snoozed, log=log)
        return panel, alert_places(rt.store, role, ctx, page=page, snoozed=snoozed, log=log), page

    app.clientside_callback(
        ClientsideFunction("rtcc", "pickHit"),
        Output("search-goto", "data", allow_duplicate=True),
        Input({"type": "alert-zoom", "i": ALL}, "n_clicks"),
        State("alert-hits", "data"),
        prevent_initial_call=True,
    )
    app.clientside_callback(
        ClientsideFunction("rtcc", "liveShow"), Output("live-shown", "data"), Input("live-show", "value")
    )
