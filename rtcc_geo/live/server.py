"""A feed server without the app: the feed, the live stream and an engine, in a thread.

For tests, benchmarks and a head-less ingest node (the app mounts the same
blueprint with its own session check).
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from contextlib import contextmanager

from .engine import Broker, LiveEngine
from .feed import FeedService, feed_blueprint


@contextmanager
def feed_server(
    store,
    source: str,
    token: str,
    host: str = "127.0.0.1",
    port: int = 0,
    engine_kwargs: dict | None = None,
    authorize=lambda: "service",
):
    """Serve the feed for ``source`` on ``host:port`` (0 = a free port) in a
    background thread; yields ``(base_url, engine)`` and shuts down on exit."""
    from flask import Flask
    from werkzeug.serving import make_server

    broker = Broker()
    engine = LiveEngine(store, source, broker=broker, **(engine_kwargs or {}))
    app = Flask("rtcc-feed")
    app.register_blueprint(
        feed_blueprint(FeedService(store, {source: engine}), token=token, authorize=authorize, broker=broker)
    )
    srv = make_server(host, port, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, name="rtcc-feed-server", daemon=True)
    t.start()
    try:
        yield f"http://{host}:{srv.server_port}", engine
    finally:
        srv.shutdown()
        t.join(5)


#: Set when the server process is stopping: open event streams end (within a
#: second), so the process can exit instead of waiting for its clients.
STOPPING = threading.Event()


def client_gone(environ: dict) -> bool:
    """Whether the client of this request has hung up (its socket reads EOF or
    fails). An event stream's client sends nothing after its request, so a
    readable socket means it closed. Unknown servers: never gone (the next
    write then fails instead)."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return False
    try:
        if not select.select([sock], [], [], 0)[0]:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):
        return True


def wait_event(q: queue.Queue, environ: dict, timeout: float, poll: float = 1.0):
    """``q.get(timeout=timeout)`` that looks every ``poll`` seconds whether the
    client is still there: returns the event, ``None`` once the client hung up
    (the stream ends and frees its thread within ``poll`` s instead of at the
    next failed write), or raises :class:`queue.Empty` on timeout."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise queue.Empty
        try:
            return q.get(timeout=min(poll, left))
        except queue.Empty:
            if STOPPING.is_set() or client_gone(environ):
                return None
