"""``rtcc-geo serve``: the commander map, drill-down and planner in a browser.

Served by gunicorn with threaded workers (``gthread``), not Werkzeug's
development server: a production HTTP/1.1 server that parses requests
strictly, parks idle keep-alive connections in a poller instead of a
thread, defers slow clients, and shrugs off clients that hang up (a write to
a closed socket is an ``EPIPE`` error for that one request; ``SIGPIPE`` is
ignored, so it never kills the process). Why gunicorn over waitress: the
app holds one live event stream per open map and runs CPU-heavy callbacks;
gunicorn's threaded worker gives each a thread, its arbiter restarts a
worker that dies, and ``--workers N`` scales over processes with PostGIS.

The embedded store is state of one process (its caches, the live engine
and the event broker live in memory), so it is served by **one** worker
process with many threads; ``--workers`` above 1 needs PostGIS, where
every worker sees every incident through LISTEN/NOTIFY.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import sys

from .common import UserError, add_store_args, store_from_args
from .users import add_security_args, apply_security_args

#: Threads per worker. Every open map holds one for its live event stream, so
#: this bounds concurrent users (plus headroom for callbacks).
DEFAULT_THREADS = 128
DEFAULT_TIMEOUT = 60


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
            "in front before opening it to a network. Runs gunicorn (threaded workers)."
        ),
    )
    add_store_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0 picks a free one)")
    p.add_argument("--source", default=None, help="which source (agency) to show; needed when the store holds several")
    p.add_argument(
        "--feed-token",
        default=None,
        metavar="TOKEN",
        help="bearer token of the live feed POST /api/feed/SOURCE/incidents (default $RTCC_FEED_TOKEN; "
        "without one the feed refuses every request; see 'rtcc-geo replay'). Visible to "
        "anyone in 'ps': prefer $RTCC_FEED_TOKEN(S) or --feed-token-file",
    )
    p.add_argument("--no-live", action="store_true", help="do not run the live feed, stream and alerts")
    add_server_args(p)
    add_security_args(p)
    p.set_defaults(func=run)


def add_server_args(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--threads``, ``--timeout`` (shared with ``demo``)."""
    g = p.add_argument_group("server (gunicorn)")
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1; more than 1 needs PostGIS: the embedded store lives in one process)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"threads per worker (default {DEFAULT_THREADS}); each open map holds one for its live stream",
    )
    g.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        help=f"seconds a silent worker is given before it is restarted (default {DEFAULT_TIMEOUT})",
    )


def run(args: argparse.Namespace) -> int:
    apply_security_args(args)
    store = store_from_args(args)
    return serve_store(
        store,
        host=args.host,
        port=args.port,
        source=args.source,
        feed_token=args.feed_token,
        live=not args.no_live,
        workers=args.workers,
        threads=args.threads,
        timeout=args.timeout,
    )


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


def serve_store(
    store,
    host: str = "127.0.0.1",
    port: int = 8050,
    source: str | None = None,
    feed_token: str | None = None,
    live: bool = True,
    *,
    workers: int = 1,
    threads: int = DEFAULT_THREADS,
    timeout: int = DEFAULT_TIMEOUT,
) -> int:
    """Serve the app over ``store`` with gunicorn until interrupted (blocking).

    Everything a user can get wrong is checked here, in the master process,
    and raised as :class:`UserError`; the app itself is built in each worker
    after the fork (threads, database connections and the live engine do not
    survive a fork), over a freshly opened store.
    """
    # A client that hangs up must cost one request, never the server.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        import rtcc_geo.app  # noqa: F401
    except ImportError as e:  # pragma: no cover - rtcc_geo.app ships with the package
        raise UserError(f"the web app is not installed: {e}") from None
    sources = store.sources()
    if not sources:
        raise UserError("the store is empty: load data first ('rtcc-geo ingest ...' or 'rtcc-geo demo')")
    if source is not None and source not in sources:
        raise UserError(f"the store has no source {source!r}; it has {sorted(sources)}")
    if source is None and len(sources) > 1:
        # Showing one agency silently (the first by name) would hide the others' incidents and alerts.
        raise UserError(
            f"the store holds several sources {sorted(sources)}: choose the one to show with --source "
            "(one server per agency; each can run on its own --port)"
        )
    if workers < 1 or threads < 1 or timeout < 1:
        raise UserError("--workers, --threads and --timeout must be at least 1")
    postgis = getattr(store, "kind", "") == "postgis"
    if workers > 1 and not postgis:
        raise UserError(
            "--workers above 1 needs PostGIS (--db): the embedded store, its live engine and "
            "event stream live in one process; raise --threads instead"
        )
    _check_bind(host, port)
    pw = ensure_admin(store)
    if pw:
        print(
            f"no users yet: created user 'admin' (commander) with password {pw}\n"
            f"  change it: rtcc-geo users add admin --role commander --replace",
            file=sys.stderr,
        )
    # One key for every worker (a per-worker random key would log users out
    # whenever a request lands on another worker).
    secret = os.environ.get("RTCC_SECRET_KEY") or secrets.token_hex(32)
    token = feed_token or os.environ.get("RTCC_FEED_TOKEN")
    shown_source = source or min(sources)
    reopen = _reopener(store)
    if postgis and hasattr(store, "close"):
        store.close()  # workers open their own connections; none is shared across a fork

    built = []

    def build():
        from rtcc_geo.app import create_app

        built.append(create_app(reopen(), source=source, live=live, feed_token=feed_token, secret_key=secret))
        return built[-1].server

    def post_worker_init(worker) -> None:
        # On a stop the open live streams end at once (else the worker waits
        # for clients that never leave, and is killed with alerts unstored).
        from rtcc_geo.live.server import STOPPING

        def wrap(prev):
            def on_stop(signum, frame):
                STOPPING.set()
                if callable(prev):
                    prev(signum, frame)

            return on_stop

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, wrap(signal.getsignal(sig)))

    def worker_exit(server, worker) -> None:
        from rtcc_geo.live.server import STOPPING

        STOPPING.set()
        for app in built:  # store the alerts still queued
            rt = getattr(app, "rtcc_live", None)
            if rt is not None:
                rt.engine.alerts.close()

    def when_ready(server) -> None:
        port_ = server.LISTENERS[0].sock.getsockname()[1]
        print(f"rtcc-geo app on http://{_url_host(host)}:{port_}/  (Ctrl-C stops it)", file=sys.stderr)
        if live:
            print(
                f"live feed: POST http://{_url_host(host)}:{port_}/api/feed/{shown_source}/incidents "
                + ("(bearer token set)" if token else "(disabled: give --feed-token or set RTCC_FEED_TOKEN)"),
                file=sys.stderr,
                flush=True,
            )

    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "worker_class": "gthread",
        "workers": workers,
        "threads": threads,
        "timeout": timeout,
        # A stop ends the live streams at once (STOPPING); other requests get 5 s to finish.
        "graceful_timeout": 5,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "rtcc-geo",
        "preload_app": False,
        "when_ready": when_ready,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        "control_socket_disable": True,  # no admin socket in $HOME (gunicorn >= 25)
        # gunicorn believes X-Forwarded-Proto from 127.0.0.1 by default, so any local process
        # could mark a request https; only the app's --trust-proxy (one proxy, ProxyFix) decides.
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
    }
    try:
        _GunicornApp(build, options).run()
    except SystemExit as e:  # the arbiter ends with sys.exit: 0 on a clean stop
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _reopener(store):
    """A function opening a new handle on the same store (for a worker after the fork)."""
    if getattr(store, "kind", "") == "postgis":
        url = store.url
        cls = type(store)
        return lambda: cls(url)
    root = store.root
    cls = type(store)
    return lambda: cls(root)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_bind(host: str, port: int) -> None:
    """Fail with one clear line when the address cannot be listened on (gunicorn
    would retry for seconds and then log a traceback)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from None


def _no_server_banner() -> None:
    """gunicorn writes ``Server: gunicorn`` on every response and has no setting
    for it; drop the line (nothing tells a scanner which server runs here)."""
    from gunicorn.http import wsgi

    if getattr(wsgi.Response.default_headers, "_rtcc", False):
        return
    orig = wsgi.Response.default_headers

    def default_headers(self):
        return [h for h in orig(self) if not h.lower().startswith("server:")]

    default_headers._rtcc = True  # type: ignore[attr-defined]  # marks the patch as applied
    wsgi.Response.default_headers = default_headers


#: Headers of the answers gunicorn writes itself (a request it cannot parse): plain
#: text that may load nothing and be framed by no one.
ERROR_PAGE_HEADERS = (
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
    "X-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: same-origin\r\n"
)


def _plain_error_pages() -> None:
    """gunicorn answers a malformed request with its own HTML page, without the
    app's security headers; answer in plain text with them instead."""
    from gunicorn import util

    if getattr(util.write_error, "_rtcc", False):
        return

    def write_error(sock, status_int, reason, mesg):
        body = f"{status_int} {reason}\n".encode("latin-1", "replace")
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n" + ERROR_PAGE_HEADERS + "\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1", "replace") + body)

    write_error._rtcc = True  # type: ignore[attr-defined]  # marks the patch as applied
    util.write_error = write_error


def _gunicorn_app_class():
    from gunicorn.app.base import BaseApplication

    class App(BaseApplication):
        def __init__(self, build, options: dict):
            self._build, self._options = build, options
            super().__init__()

        def load_config(self):
            for k, v in self._options.items():
                if k in self.cfg.settings:
                    self.cfg.set(k, v)

        def load(self):
            return self._build()

    return App


def _GunicornApp(build, options: dict):  # a class factory: gunicorn is imported only to serve
    _no_server_banner()
    _plain_error_pages()
    return _gunicorn_app_class()(build, options)
