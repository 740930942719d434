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
from dash import ALL, Input, Output, ctx as cbctx, dcc, html

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
    app.server.register_blueprint(feed_blueprint(rt.service, token=rt.token, authorize=auth.current_role,
                                                 broker=rt.broker, redact=redact, on_batch=auth.feed_audit(ctx.store),
                                                 alive=auth.session_alive))
    app.rtcc_live = rt
    _register_callbacks(app, rt)
    return rt


def components() -> list:
    """The hidden store live.js signals alerts through, and the alert panel (live.js
draws incidents on the map's trace 1 itself)."""
    return [
        dcc.Store(id="live-alerts"),
        html.Div(id="alerts-panel", children=alerts_list(None, "viewer")),
    ]


def live_trace() -> dict:
    """An empty marker trace on the map for incidents as they arrive (no text: no glyphs needed)."""
    return {
        "type": "scattermap", "name": "live", "mode": "markers", "lon": [], "lat": [], "customdata": [],
        "marker": {"size": 9, "color": "#0050ff", "opacity": 0.9},
        "hovertemplate": "live: %{customdata}<extra></extra>", "showlegend": False,
    }


def alerts_list(store, role: str, limit: int = 12, tz: str = "UTC", log=None) -> html.Div:
    """The open alerts, newest first: when each was raised (agency local time) and why;
    for roles that may see incidents also the incident's own local time and the
    acknowledge button. ``log`` is the engine's :class:`AlertLog`: it also holds
    the alerts just raised and not yet written (the panel redraws on the event
    announcing them, before the background write)."""
    title = html.Div("Live alerts", style={"fontSize": "12px", "fontWeight": 600, "textTransform": "uppercase",
                                           "color": "#556", "margin": "10px 0 4px"})
    if store is None:
        return html.Div([title, html.Div("none yet", id="alerts-empty", style={"color": "#889"})])
    from rtcc_geo.live.alerts import AlertLog

    df = (log or AlertLog(store)).list(open_only=True)
    # With several PostGIS workers each engine stores the alert it raised (same id).
    df = df.drop_duplicates("alert_id").head(limit)
    if not len(df):
        return html.Div([title, html.Div("none open", id="alerts-empty", style={"color": "#889"})])
    detail = auth.may_see_incidents(role)
    rows = []
    for a in df.itertuples(index=False):
        when = _local(a.created_at, tz).strftime("%H:%M:%S")
        # Viewers see that an alert of a kind fired in a cell, never the incident behind it.
        text = a.reason if detail else f"{a.kind.replace('_', ' ')} alert"
        kids = [html.B(a.kind.replace("_", " ")), f" raised {when} · ", html.Span(text)]
        occurred = _alert_data(a.data).get("occurred_from") if detail else None
        if occurred:
            kids.append(html.Span(f" (incident {_local(occurred, tz):%Y-%m-%d %H:%M})", className="alert-when"))
        if detail:
            kids.append(html.Button("ack", id={"type": "ack", "id": a.alert_id}, n_clicks=0,
                                    style={"marginLeft": "6px", "fontSize": "11px"}))
        rows.append(html.Div(kids, className="alert-row", style={"borderBottom": "1px solid #eee", "padding": "3px 0"}))
    return html.Div([title, *rows])


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
    """What a role may receive of a live event: viewers get the cell (drawn at its
    centre) and the category, never an incident's id, point or time."""
    if auth.may_see_incidents(role) or event.get("type") != "incidents":
        if event.get("type") == "alerts" and not auth.may_see_incidents(role):
            return {**event, "rows": [{"kind": r["kind"], "cell": r.get("cell")} for r in event["rows"]]}
        return event
    from rtcc_geo import grid
    import numpy as np

    cells = np.array([r["cell"] for r in event["rows"]], dtype=np.int64)
    lat, lon = grid.cell_centres(cells) if len(cells) else ([], [])
    rows = [{"cell": int(c), "category": r["category"], "lon": float(x), "lat": float(y), "occurred_from": ""}
            for c, r, x, y in zip(cells, event["rows"], lon, lat)]
    return {**event, "rows": rows}


def _register_callbacks(app, rt: LiveRuntime) -> None:
    @app.callback(Output("alerts-panel", "children"), Input("live-alerts", "data"),
                  Input({"type": "ack", "id": ALL}, "n_clicks"), prevent_initial_call=True)
    def refresh_alerts(_, acks):
        role = auth.require()
        trig = cbctx.triggered_id
        if isinstance(trig, dict) and trig.get("type") == "ack" and any(acks or []):
            if auth.may_see_incidents(role):
                if rt.engine.alerts.acknowledge(trig["id"], auth.current_user() or "?"):
                    auth.audit("alert_ack", {"alert": trig["id"]})
        return alerts_list(rt.store, role, tz=rt.store.sources().get(rt.source, "UTC"), log=rt.engine.alerts)
