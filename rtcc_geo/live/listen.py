"""Receive new incidents from PostGIS by LISTEN/NOTIFY (no polling of the table).

``sql/010_live_notify.sql`` makes every insert into ``incidents`` announce
the new rows on channel ``rtcc_incidents`` (in chunks, or as one ``bulk``
note for big loads). :class:`Listener` keeps a dedicated connection
listening, hands announced rows to the source's
:class:`~rtcc_geo.live.engine.LiveEngine` and, on a ``bulk`` note, asks it
to recompute from the table. If the connection drops (database restart) it
reconnects with back-off and recomputes, so nothing announced while it was
away is missed in the state.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pandas as pd

log = logging.getLogger(__name__)

CHANNEL = "rtcc_incidents"


class Listener(threading.Thread):
    """Background thread: LISTEN on ``url``'s store schema, feed the engines."""

    def __init__(self, url: str, engines: dict, backoff: float = 0.5):
        super().__init__(name="rtcc-listener", daemon=True)
        self.url, self.engines, self.backoff = url, engines, backoff
        self._halt = threading.Event()
        self.ready = threading.Event()
        self.received = 0
        self.reconnects = 0

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        import psycopg

        from ..store.migrate import scalar

        first = True
        while not self._halt.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    schema = scalar(conn.execute("SELECT current_schema()"))
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        self._recompute_all()  # catch up on what was announced while away
                    first = False
                    self.ready.set()
                    while not self._halt.is_set():
                        # Take whatever is pending as one batch: one engine update per
                        # burst, not per notification, keeps up with a busy feed.
                        msgs = [json.loads(n.payload) for n in conn.notifies(timeout=0.5, stop_after=1)]
                        if msgs:
                            msgs += [json.loads(n.payload) for n in conn.notifies(timeout=0.02)]
                            self._handle_all(msgs, schema)
            except Exception as e:  # noqa: BLE001 - reconnect whatever broke
                if self._halt.is_set():
                    break
                self.reconnects += 1
                log.warning("live listener lost its connection (%s); reconnecting", e)
                time.sleep(self.backoff)

    def _handle_all(self, msgs: list[dict], schema: str) -> None:
        msgs = [m for m in msgs if m.get("schema") == schema]
        if any("bulk" in m for m in msgs):
            self._recompute_all()
            return
        rows = pd.DataFrame([r for m in msgs for r in (m.get("rows") or [])])
        if not len(rows):
            return
        rows["occurred_from"] = pd.to_datetime(rows["occurred_from"], utc=True, format="ISO8601")
        for c in ("h3_r7", "h3_r8", "h3_r9", "h3_r10"):
            rows[c] = rows[c].astype("int64")
        for source, part in rows.groupby("source"):
            eng = self.engines.get(source)
            if eng is None:
                continue
            try:
                eng.ingest(part.reset_index(drop=True))
            except Exception as e:  # noqa: BLE001 - one bad batch must not stop the stream
                log.warning("live engine failed on %d %s incidents: %s", len(part), source, e)
        # Counted only once the engines hold them, so a reader that waits on
        # ``received`` never sees a half-applied batch.
        self.received += len(rows)

    def _recompute_all(self) -> None:
        now = pd.Timestamp.now(tz="UTC")
        for eng in self.engines.values():
            try:
                eng.recompute(max(now, eng.state.now) if eng.state.now is not None else now)
            except Exception as e:  # noqa: BLE001
                log.warning("recompute after reconnect failed: %s", e)
