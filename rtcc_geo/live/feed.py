"""The live feed: accept incidents over HTTP, validate, store, announce.

``POST /api/feed/<source>/incidents`` takes one incident, a list, or
``{"incidents": [...]}`` as JSON, either in the canonical schema
(:mod:`rtcc_geo.schema`; ``category`` may be left out and is then derived
from ``offense_raw`` with the source's taxonomy) or, with
``?mapping=NAME``, as CAD records described by a generic-CSV mapping file
(``data/mappings/NAME.toml``). Every record goes through the same
validation as a file ingest (:func:`rtcc_geo.ingest.validate.validate`):
each ends stored or quarantined with a reason, and the response counts add
up (``received == loaded + quarantined``).

Delivery is **at-least-once and idempotent**: the reply (HTTP 200) is sent
only after the rows are committed, a sender retries anything else, and a
re-sent incident (same ``source`` + ``id``) is never stored or announced
twice (quarantined rows are keyed by the batch's content hash). When the
store is unreachable (database restart) the feed answers **503** with
``Retry-After``; nothing is buffered in memory that a crash could lose.

Authentication: a bearer token (``Authorization: Bearer <token>``) set with
``RTCC_FEED_TOKEN`` or the ``token`` argument; without one configured the
feed refuses every request and says how to set it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Agency, DATA_DIR, load_agency
from ..ingest.base import Batch, extras_json, json_records
from ..ingest.taxonomy import load_taxonomy
from ..ingest.validate import agency_area, validate
from ..schema import CATEGORIES

log = logging.getLogger(__name__)

_CANON_FIELDS = ("id", "occurred_from", "occurred_to", "reported_at", "time_known", "offense_raw",
                 "offense_code", "category", "lon", "lat", "block", "district", "extras")


class FeedError(ValueError):
    """A request the sender must fix (HTTP 400); the message says what."""


@dataclass
class FeedResult:
    source: str
    received: int
    loaded: int
    quarantined: int
    duplicates: int
    by_reason: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"source": self.source, "received": self.received, "loaded": self.loaded,
                "quarantined": self.quarantined, "duplicates": self.duplicates,
                "by_reason": self.by_reason, "ids": self.ids}


def records_to_batch(records: list[dict], source: str, tz: str, batch_name: str) -> Batch:
    """Canonical JSON records -> a :class:`~rtcc_geo.ingest.base.Batch` for validation."""
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    raw = raw.reset_index(drop=True)
    n = len(raw)
    col = lambda k: raw[k] if k in raw.columns else pd.Series([None] * n, dtype="object")  # noqa: E731
    unknown = sorted(set(raw.columns) - set(_CANON_FIELDS) - {"source"})
    occurred = _parse_times(col("occurred_from"), tz)
    tk = col("time_known")
    time_known = tk.map(lambda v: True if v is None or (isinstance(v, float) and np.isnan(v)) else bool(v))
    offense = col("offense_raw").astype("string").str.strip()
    category = col("category").astype("string").str.strip().str.lower()
    need_cat = category.isna() | (category == "")
    unmapped: dict[str, int] = {}
    if need_cat.any():
        derived, unmapped = load_taxonomy(source).categorise(offense[need_cat]) if (DATA_DIR / "taxonomy" / f"{source}.csv").exists() \
            else (pd.Series("other", index=offense[need_cat].index, dtype="string"), {})
        category = category.where(~need_cat, derived)
    bad_cat = ~category.isin(list(CATEGORIES))
    extras = {k: raw[k].astype("object").map(lambda v: None if v is None else (v if isinstance(v, (str, int, float, bool)) else json.dumps(v)))
              for k in unknown}
    if "extras" in raw.columns:
        extras["feed_extras"] = raw["extras"].map(lambda v: None if v is None else json.dumps(v))
    frame = pd.DataFrame({
        "id": col("id").map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype("string"),
        "source": source,
        "occurred_from": occurred,
        "occurred_to": _parse_times(col("occurred_to"), tz),
        "reported_at": _parse_times(col("reported_at"), tz),
        "time_known": time_known.astype(bool),
        "offense_raw": offense,
        "offense_code": col("offense_code").map(lambda v: None if v is None else str(v)).astype("string"),
        "category": category.where(~bad_cat, "other").astype("string"),
        "lon": pd.to_numeric(col("lon"), errors="coerce").astype("float64"),
        "lat": pd.to_numeric(col("lat"), errors="coerce").astype("float64"),
        "block": col("block").astype("string"),
        "district": col("district").map(lambda v: None if v is None else str(v)).astype("string"),
    })
    frame["extras"] = extras_json({k: pd.Series(v, dtype="object") for k, v in extras.items()}, frame.index)
    raw_text = raw.astype("object").where(raw.notna(), None) if n else raw
    b = Batch(source, batch_name, raw_text, frame, unmapped=unmapped)
    given = col("occurred_from").notna().to_numpy()
    bad_t = given & frame["occurred_from"].isna().to_numpy()
    if bad_t.any():
        b.flag("unparseable_time", bad_t, "occurred_from is not an ISO 8601 date-time")
    return b


def _parse_times(s: pd.Series, tz: str) -> pd.Series:
    """ISO 8601 strings -> UTC; a time without an offset is local to the source."""
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    ok = s.notna() & (s.astype("string").str.strip() != "")
    if not ok.any():
        return out
    for i, v in s[ok].items():
        try:
            t = pd.Timestamp(str(v))
        except (ValueError, TypeError):
            continue
        if t is pd.NaT:
            continue
        t = t.tz_localize(tz, ambiguous=True, nonexistent="shift_forward") if t.tzinfo is None else t
        out[i] = t.tz_convert("UTC")
    return out


class FeedService:
    """Validate + store + announce; the HTTP layer is :func:`feed_blueprint`.

    ``engines`` maps a source to its :class:`~rtcc_geo.live.engine.LiveEngine`;
    with an embedded store the service hands stored rows to it directly, with
    PostGIS the rows are announced by the database (LISTEN/NOTIFY) and the
    :class:`~rtcc_geo.live.listen.Listener` does it, so writers in other
    processes are seen too.
    """

    def __init__(self, store, engines: dict | None = None, agencies: dict[str, Agency] | None = None):
        self.store = store
        self.engines = engines or {}
        self._agencies = dict(agencies or {})
        self._lock = threading.Lock()

    def agency(self, source: str) -> Agency:
        if source not in self._agencies:
            tz = self.store.sources().get(source)
            try:
                a = load_agency(source)
            except FileNotFoundError:
                if tz is None:
                    raise FeedError(f"unknown source {source!r}: ingest its history first or add "
                                    f"data/agencies/{source}.toml") from None
                a = Agency(name=source, timezone=tz)
            self._agencies[source] = a
        return self._agencies[source]

    def accept(self, source: str, payload) -> FeedResult:
        records = _records(payload)
        ag = self.agency(source)
        name = "feed:" + hashlib.sha1(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()[:16]
        batch = records_to_batch(records, source, ag.timezone, name)
        incidents, quarantine = validate(batch, agency_area(ag), tuple(ag.resolutions))
        with self._lock:  # one writer at a time keeps the store's upserts simple
            self.store.register_source(source, ag.timezone)
            w = self.store.write_incidents(incidents)
            self.store.write_quarantine(quarantine)
        result = FeedResult(
            source=source, received=len(batch), loaded=len(incidents), quarantined=len(quarantine),
            duplicates=w.duplicates, by_reason={str(k): int(v) for k, v in quarantine["reason"].value_counts().items()},
            ids=incidents["id"].astype(str).tolist(),
        )
        engine = self.engines.get(source)
        if engine is not None and getattr(self.store, "kind", "") != "postgis" and w.inserted:
            # Embedded store: no database to announce rows, so hand them over here.
            engine.ingest(incidents)
        return result


def _records(payload) -> list[dict]:
    if isinstance(payload, dict) and "incidents" in payload:
        payload = payload["incidents"]
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise FeedError("send a JSON object, a list of objects, or {\"incidents\": [...]}")
    if len(payload) > 10_000:
        raise FeedError(f"{len(payload)} incidents in one request: send at most 10,000 per request")
    return payload


def feed_blueprint(service: FeedService, token: str | None = None, authorize=None, broker=None):
    """Flask blueprint with the feed, the live event stream and the alert routes.

    ``authorize()`` returns the signed-in user's role (or ``None``) for the
    stream and alert routes; ``broker`` is the :class:`~rtcc_geo.live.engine.Broker`
    the stream subscribes to.
    """
    import os
    import queue

    from flask import Blueprint, Response, jsonify, request, stream_with_context

    token = token or os.environ.get("RTCC_FEED_TOKEN")
    bp = Blueprint("rtcc_live", __name__)

    @bp.post("/api/feed/<source>/incidents")
    def post_incidents(source: str):
        if not token:
            return jsonify(error="the feed is disabled: start the server with RTCC_FEED_TOKEN set "
                                 "(or --feed-token) and send it as 'Authorization: Bearer <token>'"), 403
        got = request.headers.get("Authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
            return jsonify(error="missing or wrong bearer token"), 401
        payload = request.get_json(silent=True)
        if payload is None:
            return jsonify(error="the body must be JSON (Content-Type: application/json)"), 400
        try:
            result = service.accept(source, payload)
        except FeedError as e:
            return jsonify(error=str(e)), 400
        except Exception as e:  # noqa: BLE001 - the store is down: the sender must retry
            log.warning("feed write failed, asking the sender to retry: %s", e)
            _reconnect(service.store)
            r = jsonify(error=f"store unavailable, retry: {type(e).__name__}")
            r.status_code = 503
            r.headers["Retry-After"] = "1"
            return r
        return jsonify(result.as_dict())

    @bp.get("/api/live/stream")
    def stream():
        if authorize is None or authorize() is None:
            return jsonify(error="sign in first"), 401
        if broker is None:
            return jsonify(error="no live engine running"), 404
        q = broker.subscribe()

        def events():
            try:
                yield "retry: 1000\n\n"
                while True:
                    try:
                        ev = q.get(timeout=15)
                    except queue.Empty:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"event: {ev['type']}\ndata: {json.dumps(ev, default=str)}\n\n"
            finally:
                broker.unsubscribe(q)

        return Response(stream_with_context(events()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return bp


def _reconnect(store) -> None:
    fn = getattr(store, "reconnect", None)
    if fn is not None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - still down; the next request tries again
            pass
