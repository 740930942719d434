"""A feed server without the app: the feed, the live stream and an engine, in a thread.

For tests, benchmarks and a head-less ingest node (the app mounts the same
blueprint with its own session check).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from .engine import Broker, LiveEngine
from .feed import FeedService, feed_blueprint


@contextmanager
def feed_server(store, source: str, token: str, host: str = "127.0.0.1", port: int = 0,
                engine_kwargs: dict | None = None, authorize=lambda: "service"):
    """Serve the feed for ``source`` on ``host:port`` (0 = a free port) in a
    background thread; yields ``(base_url, engine)`` and shuts down on exit."""
    from flask import Flask
    from werkzeug.serving import make_server

    broker = Broker()
    engine = LiveEngine(store, source, broker=broker, **(engine_kwargs or {}))
    app = Flask("rtcc-feed")
    app.register_blueprint(feed_blueprint(FeedService(store, {source: engine}), token=token,
                                          authorize=authorize, broker=broker))
    srv = make_server(host, port, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, name="rtcc-feed-server", daemon=True)
    t.start()
    try:
        yield f"http://{host}:{srv.server_port}", engine
    finally:
        srv.shutdown()
        t.join(5)
