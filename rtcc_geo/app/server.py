"""The app factory: ``create_app(store)`` -> a Dash app behind a login.

Pages (one Dash app, routed on the URL path):

``/``         commander map (every role; incident rows for commander/analyst only)
``/planner``  staffing planner (commander, analyst, planner)
``/compstat`` CompStat tables, what changed, exports and the printable briefing (every role)
``/fairness`` fairness audit of a week of default patrol plans (commander, analyst, planner)
``/audit``     audit log (commander)
``/login``    plain HTML, the only route open without a session; ``POST /logout`` ends it

Callbacks are registered on the app instance (``app.callback``), never on
Dash's global registry, so several apps (tests, benchmarks) can live in one
process.
"""

from __future__ import annotations

import os
import secrets
import threading

import dash
import flask
from dash import Input, Output, State, dcc, html

from rtcc_geo.auth import PLANNER_ROLES, Users
from rtcc_geo.store.base import Store

from . import auth
from .context import MAP_RESOLUTIONS, AppContext, context_for
from .pages import audit as audit_page
from .pages import commander, compstat, planner
from .pages import fairness as fairness_page

_NAV = {
    "display": "flex",
    "alignItems": "center",
    "height": "40px",
    "padding": "0 14px",
    "background": "#0f1820",
    "color": "#e8ecef",
    "fontSize": "14px",
    "gap": "18px",
}
_LINK = {"color": "#e8ecef", "textDecoration": "none"}


def create_app(
    store: Store,
    *,
    source: str | None = None,
    agency=None,
    boundary=None,
    districts=None,
    secret_key: str | bytes | None = None,
    title: str | None = None,
    default_res: int = 9,
    warm: bool = True,
    show_empty: bool = False,
    live: bool = True,
    feed_token: str | None = None,
    auth_options: auth.Options | None = None,
) -> dash.Dash:
    """Build the commander app over ``store``.

    Parameters
    ----------
    store
        Any :class:`~rtcc_geo.store.base.Store` (embedded or PostGIS). Users are
        read from its ``users`` table (see ``rtcc-geo users``).
    source
        Which source to show (default: the store's only/first source).
    agency, boundary, districts
        Outlines; by default from the source's agency config (``data/agencies``).
    default_res
        H3 resolution the map opens at (7..10).
    show_empty
        Whether the map opens drawing cells with no incidents too (a tick box).
    live
        Run the live engine: the feed (``POST /api/feed/<source>/incidents``,
        bearer ``feed_token`` or ``$RTCC_FEED_TOKEN``), the event stream, live
        incidents on the map and the alert panel (see :mod:`app.live`).
    warm
        Build the hexagon geometry of every resolution in a background thread at
        start-up, so no user waits for it.
    secret_key
        Signs the session cookie. Default ``$RTCC_SECRET_KEY``, else a random
        key per process (sessions then end when the server restarts).
    auth_options
        Session lifetime, idle timeout, secure cookies, proxy trust, lock-out
        (:class:`rtcc_geo.app.auth.Options`; default from the environment).
    """
    ctx = context_for(
        store,
        source=source,
        agency=agency,
        boundary=boundary,
        districts=districts,
        title=title,
        default_res=default_res,
    )
    ctx.default_show_empty = bool(show_empty)
    if warm:

        def _warm():
            for r in (default_res, *[r for r in MAP_RESOLUTIONS if r != default_res]):
                try:
                    ctx.geometry(r)
                    if r == default_res:  # the tiles of the opening view, cut before anyone asks
                        ctx.warm_tiles(r)
                except Exception:  # noqa: BLE001 - a request will raise it properly later
                    return

        threading.Thread(target=_warm, name="rtcc-warm-geometry", daemon=True).start()
    server = flask.Flask("rtcc_geo_app")
    server.secret_key = secret_key or os.environ.get("RTCC_SECRET_KEY") or secrets.token_hex(32)
    auth.Guard(server, Users(store), title=ctx.title, options=auth_options)

    app = dash.Dash(
        "rtcc_geo_app",
        server=server,
        title=ctx.title,
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
        assets_folder=os.path.join(os.path.dirname(__file__), "assets"),
        external_stylesheets=[],
        external_scripts=[],
    )
    app.rtcc = ctx  # type: ignore[attr-defined]  # for tests and benches
    app.layout = html.Div(
        style={
            "fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
            "margin": 0,
            "background": "#eef0f2",
        },
        children=[
            dcc.Location(id="url"),
            html.Div(id="nav", style=_NAV),
            html.Div(id="page"),
        ],
    )

    @app.callback(
        Output("page", "children"), Output("nav", "children"), Input("url", "pathname"), State("url", "search")
    )
    def route(path, search=None):
        role = auth.require()
        user = auth.current_user()
        links = [html.B(ctx.title), dcc.Link("Commander map", href="/", style=_LINK, id="nav-map")]
        links.append(dcc.Link("CompStat", href="/compstat", style=_LINK, id="nav-compstat"))
        if role in PLANNER_ROLES:
            links.append(dcc.Link("Planner", href="/planner", style=_LINK, id="nav-planner"))
            links.append(dcc.Link("Fairness", href=fairness_page.PATH, style=_LINK, id="nav-fairness"))
        links += audit_page.nav_tail(user, role)
        if path in ("/planner", "/planner/"):
            if role not in PLANNER_ROLES:
                return html.Div(
                    f"The planner page is not open to the {role} role.", id="forbidden", style={"padding": "30px"}
                ), links
            return planner.layout(ctx, role), links
        if path in (audit_page.PATH, audit_page.PATH + "/"):
            return audit_page.layout(ctx, role), links
        if path in (fairness_page.PATH, fairness_page.PATH + "/"):
            return fairness_page.layout(ctx, role), links
        if path in ("/compstat", "/compstat/"):
            return compstat.layout(ctx, role), links
        if path in ("/", "", None):
            return commander.layout(ctx, role, search), links
        return html.Div(["No page here. ", dcc.Link("Back to the map", href="/")], style={"padding": "30px"}), links

    def _cached(body: bytes, etag: str, mimetype: str) -> flask.Response:
        # Login is checked by the guard before this runs. The URLs carry the
        # geometry's version, so the browser may keep the body for a day.
        if flask.request.if_none_match.contains(etag):
            return flask.Response(status=304)
        r = flask.Response(body, mimetype=mimetype)
        r.set_etag(etag)
        r.headers["Cache-Control"] = "private, max-age=86400"
        return r

    @server.route("/geo/cells/<int:res>.geojson")
    def cells_geojson(res: int):
        if res not in MAP_RESOLUTIONS:
            flask.abort(404)
        return _cached(ctx.geometry_body(res), ctx.geometry(res)["etag"], "application/geo+json")

    @server.route("/geo/tiles/<int:res>/<int:z>/<int:x>/<int:y>.pbf")
    def cells_tile(res: int, z: int, x: int, y: int):
        if res not in MAP_RESOLUTIONS or not 0 <= z <= 22 or not (0 <= x < 2**z and 0 <= y < 2**z):
            flask.abort(404)
        g = ctx.geometry(res)
        return _cached(g["tiles"].tile(z, x, y), f"{g['etag']}-{z}-{x}-{y}", "application/vnd.mapbox-vector-tile")

    server.after_request(_security_headers(app))
    _preload_map_scripts(app)
    ctx.live = bool(live)
    commander.register(app, ctx)
    planner.register(app, ctx)
    audit_page.register(app, ctx)
    compstat.register(app, ctx)
    fairness_page.register(app, ctx)
    if live:
        from . import live as live_mod

        ctx.live = live_mod.attach(app, ctx, token=feed_token) is not None
    return app


#: What the map page loads only once its layout has arrived (Dash's lazy chunks and
#: plotly.js): asked for with the page itself, so they are at hand when the map is built
#: instead of being fetched one after another then.
MAP_PRELOADS = (
    "/_dash-component-suites/dash/dcc/async-graph.js",
    "/_dash-component-suites/dash/dcc/async-slider.js",
    "/_dash-component-suites/dash/dcc/async-dropdown.js",
    "/_dash-component-suites/plotly/package_data/plotly.min.js",
)


def _preload_map_scripts(app: dash.Dash) -> None:
    """``<link rel="preload">`` of :data:`MAP_PRELOADS` in the map page's head (``/`` only:
    other pages would fetch what they never use)."""
    base = app.interpolate_index

    def interpolate_index(**kw):
        if flask.has_request_context() and flask.request.path == "/":
            links = "".join(f'<link rel="preload" href="{u}" as="script">' for u in MAP_PRELOADS)
            kw["metas"] = kw.get("metas", "") + links
        return base(**kw)

    app.interpolate_index = interpolate_index  # type: ignore[method-assign,assignment]


def _security_headers(app: dash.Dash):
    """An ``after_request`` hook: the same security headers on every response.

    The CSP allows only this origin: no ``eval``, no inline script but
    Dash's renderer start (allowed by its hash); MapLibre runs its tile
    worker from a ``blob:`` URL and Plotly/Dash set inline styles.
    ``frame-ancestors 'none'`` and ``X-Frame-Options`` forbid framing
    (click-jacking). Under ``/api/feed/`` (machines only) an HTML error page
    becomes JSON.
    """
    csp: list[str] = []

    def hook(resp: flask.Response) -> flask.Response:
        if not csp:  # the hashes are final once every callback is registered: the first request
            csp.append(
                "; ".join(
                    (
                        "default-src 'self'",
                        "script-src 'self' " + " ".join(app.csp_hashes()),
                        "style-src 'self' 'unsafe-inline'",
                        "img-src 'self' data: blob:",
                        "font-src 'self' data:",
                        "connect-src 'self'",
                        "worker-src 'self' blob:",
                        "child-src 'self' blob:",
                        "object-src 'none'",
                        "base-uri 'self'",
                        "form-action 'self'",
                        "frame-ancestors 'none'",
                    )
                )
            )
        h = resp.headers
        h["Content-Security-Policy"] = csp[0]
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "same-origin"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        if flask.request.path.startswith("/api/feed/") and resp.mimetype == "text/html":
            if resp.status_code < 400:  # Dash's catch-all page route
                resp.status_code = 404
            resp.set_data(
                flask.json.dumps({"error": f"{resp.status}: the feed takes POST /api/feed/SOURCE/incidents with JSON"})
            )
            resp.mimetype = "application/json"
            resp.headers.pop("Location", None)
        return resp

    return hook


def wsgi(store_dir: str | None = None, db: str | None = None):
    """WSGI entry for a production server, e.g. ``gunicorn 'rtcc_geo.app.server:wsgi()'``
    (store from ``$RTCC_DATABASE_URL`` / ``$RTCC_STORE_DIR``)."""
    from rtcc_geo.store import open_store

    return create_app(open_store(db=db, store_dir=store_dir)).server


__all__ = ["create_app", "wsgi", "AppContext"]
