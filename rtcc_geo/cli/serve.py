"""``rtcc-geo serve``: the commander map, drill-down and planner in a browser."""

from __future__ import annotations

import argparse
import secrets
import sys

from .common import UserError, add_store_args, store_from_args
from .users import add_security_args, apply_security_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the commander map and planner (log-in required)",
        description=(
            "Serve the commander app: H3 map with filters and layers, cell drill-down, staffing "
            "planner. Everyone logs in; add users with 'rtcc-geo users add NAME --role ROLE'. "
            "With no users yet, a one-off 'admin' commander is created and its password printed "
            "here. The map needs no internet (no tiles, no web fonts). Listens on 127.0.0.1 by "
            "default; set $RTCC_SECRET_KEY to keep sessions across restarts, and put a TLS proxy "
            "in front before opening it to a network."
        ),
    )
    add_store_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--source", default=None, help="which source to show (default: the store's first)")
    p.add_argument("--feed-token", default=None, metavar="TOKEN",
                   help="bearer token of the live feed POST /api/feed/SOURCE/incidents (default $RTCC_FEED_TOKEN; "
                        "without one the feed refuses every request; see 'rtcc-geo replay'). Visible to "
                        "anyone in 'ps': prefer $RTCC_FEED_TOKEN(S) or --feed-token-file")
    p.add_argument("--no-live", action="store_true", help="do not run the live feed, stream and alerts")
    add_security_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    apply_security_args(args)
    store = store_from_args(args)
    return serve_store(store, host=args.host, port=args.port, source=args.source,
                       feed_token=args.feed_token, live=not args.no_live)


def ensure_admin(store) -> str | None:
    """With no users at all, create ``admin`` (commander) with a random password and
    return the password (printed once by ``serve``); else ``None``."""
    from ..auth import Users

    users = Users(store)
    if len(users.list()):
        return None
    pw = secrets.token_urlsafe(18)
    users.add("admin", pw, "commander")
    return pw


def serve_store(store, host: str = "127.0.0.1", port: int = 8050, source: str | None = None,
                feed_token: str | None = None, live: bool = True) -> int:
    """Serve the app over ``store`` until interrupted (blocking)."""
    from werkzeug.serving import make_server

    try:
        from rtcc_geo.app import create_app
    except ImportError as e:  # pragma: no cover - rtcc_geo.app ships with the package
        raise UserError(f"the web app is not installed: {e}") from None
    if not store.sources():
        raise UserError("the store is empty: load data first ('rtcc-geo ingest ...' or 'rtcc-geo demo')")
    try:
        app = create_app(store, source=source, live=live, feed_token=feed_token)
    except ValueError as e:
        raise UserError(str(e)) from None
    pw = ensure_admin(store)
    if pw:
        print(f"no users yet: created user 'admin' (commander) with password {pw}\n"
              f"  change it: rtcc-geo users add admin --role commander --replace", file=sys.stderr)
    try:
        srv = make_server(host, port, app.server, threaded=True)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e}); pick another --port") from None
    print(f"rtcc-geo app on http://{host}:{srv.server_port}/  (Ctrl-C stops it)", file=sys.stderr)
    rt = getattr(app, "rtcc_live", None)
    if rt is not None:
        print(f"live feed: POST http://{host}:{srv.server_port}/api/feed/{rt.source}/incidents "
              + ("(bearer token set)" if rt.token else "(disabled: give --feed-token or set RTCC_FEED_TOKEN)"),
              file=sys.stderr)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0
