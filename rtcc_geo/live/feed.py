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

Poison records never make the sender retry. Limits (HTTP 413 / 400 for the
whole request): a body over :data:`MAX_BODY_BYTES`, JSON nested deeper than
:data:`MAX_JSON_DEPTH`, more than 10,000 incidents, a body that is not a
JSON object or list of objects. Per record (quarantined ``invalid_field``,
the rest of the request is stored): a value of the wrong JSON type (types
are strict: ``"false"`` is not a boolean, ``"-75.1"`` is not a number), a
record over :data:`MAX_RECORD_BYTES`, broken Unicode, and every check of
:func:`~rtcc_geo.ingest.validate.validate` (over-long fields, implausible
times, ...). Should the store still refuse a group-commit batch while it is
reachable, the batch is retried request by request and then record by
record, and a record the store refuses on its own is quarantined with the
store's message: 503 is only for a store that cannot be reached.

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

import numpy as np
import pandas as pd

from ..config import Agency, DATA_DIR, load_agency
from ..ingest.base import Batch, extras_json
from ..ingest.taxonomy import load_taxonomy
from ..ingest.validate import agency_area, validate
from ..schema import CATEGORIES

log = logging.getLogger(__name__)

#: Largest request body accepted (HTTP 413 beyond).
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Deepest JSON nesting accepted (a canonical record with ``extras`` needs 4).
MAX_JSON_DEPTH = 16
#: Largest single record (its compact JSON); bigger ones are quarantined.
MAX_RECORD_BYTES = 32 * 1024

_NUMBER = (int, float)
#: The JSON types each canonical field may have (``None`` = null is always allowed).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, int),
    "occurred_from": (str,),
    "occurred_to": (str,),
    "reported_at": (str,),
    "time_known": (bool,),
    "offense_raw": (str,),
    "offense_code": (str, int),
    "category": (str,),
    "lon": _NUMBER,
    "lat": _NUMBER,
    "block": (str,),
    "district": (str, int),
    "extras": (dict,),
}

_CANON_FIELDS = (
    "id",
    "occurred_from",
    "occurred_to",
    "reported_at",
    "time_known",
    "offense_raw",
    "offense_code",
    "category",
    "lon",
    "lat",
    "block",
    "district",
    "extras",
)


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
        return {
            "source": self.source,
            "received": self.received,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "by_reason": self.by_reason,
            "ids": self.ids,
        }


def records_to_batch(records: list[dict], source: str, tz: str, batch_name: str) -> Batch:
    """Canonical JSON records -> a :class:`~rtcc_geo.ingest.base.Batch` for validation.

    Each record is screened first (:func:`screen_record`): a field of the wrong
    type is blanked and the row flagged ``invalid_field``, so the rest of the
    batch goes on."""
    screened = [screen_record(r) for r in records]
    records = [r for r, _ in screened]
    problems = [p for _, p in screened]
    raw = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    raw = raw.reset_index(drop=True)
    n = len(raw)
    col = lambda k: raw[k] if k in raw.columns else pd.Series([None] * n, dtype="object")  # noqa: E731
    unknown = sorted(set(raw.columns) - set(_CANON_FIELDS) - {"source"})
    occurred = _parse_times(col("occurred_from"), tz)
    tk = col("time_known")
    time_known = tk.map(lambda v: v if isinstance(v, bool) else True)  # screened: a bool or null
    offense = col("offense_raw").astype("string").str.strip()
    category = col("category").astype("string").str.strip().str.lower()
    need_cat = category.isna() | (category == "")
    unmapped: dict[str, int] = {}
    if need_cat.any():
        derived, unmapped = (
            load_taxonomy(source).categorise(offense[need_cat])
            if (DATA_DIR / "taxonomy" / f"{source}.csv").exists()
            else (pd.Series("other", index=offense[need_cat].index, dtype="string"), {})
        )
        category = category.where(~need_cat, derived)
    bad_cat = ~category.isin(list(CATEGORIES))
    extras = {
        k: raw[k]
        .astype("object")
        .map(lambda v: None if v is None else (v if isinstance(v, (str, int, float, bool)) else json.dumps(v)))
        for k in unknown
    }
    if "extras" in raw.columns:
        extras["feed_extras"] = raw["extras"].map(lambda v: None if v is None else json.dumps(v))
    frame = pd.DataFrame(
        {
            "id": col("id")
            .map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
            .astype("string"),
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
        }
    )
    frame["extras"] = extras_json({k: pd.Series(v, dtype="object") for k, v in extras.items()}, frame.index)
    raw_text = raw.astype("object").where(raw.notna(), None) if n else raw
    b = Batch(source, batch_name, raw_text, frame, unmapped=unmapped)
    bad_rec = np.array([p is not None for p in problems], dtype=bool)
    if bad_rec.any():
        b.flag("invalid_field", bad_rec, pd.Series([p or "" for p in problems], index=raw.index, dtype="object"))
    given = col("occurred_from").notna().to_numpy()
    bad_t = given & frame["occurred_from"].isna().to_numpy()
    if bad_t.any():
        b.flag("unparseable_time", bad_t, "occurred_from is not an ISO 8601 date-time")
    return b


def screen_record(r) -> tuple[dict, str | None]:
    """``(record fit for a DataFrame, problem or None)``.

    Strict JSON types per :data:`_FIELD_TYPES` (``bool`` is not a number, a
    string is not a boolean); a wrongly typed field is set to null so the
    record can still be quarantined with its raw values (kept as JSON text);
    lone surrogates become U+FFFD (no store can encode them); a record over
    :data:`MAX_RECORD_BYTES` keeps only its id.
    """
    if not isinstance(r, dict):
        return {"record": _clean_text(json.dumps(r, default=str)[:1000])}, "not a JSON object"
    problems: list[str] = []
    text = json.dumps(r, default=str, ensure_ascii=False)  # keeps lone surrogates visible as characters
    if _has_surrogate(text):
        text = _clean_text(text)
        r = json.loads(text)
        problems.append("broken Unicode (lone surrogate)")
    if len(text.encode("utf-8")) > MAX_RECORD_BYTES:
        rid = r.get("id")
        return (
            {"id": rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None, "record": text[:1000]},
            f"record larger than {MAX_RECORD_BYTES // 1024} kB",
        )
    out = dict(r)
    for k, types in _FIELD_TYPES.items():
        v = out.get(k)
        if v is None:
            continue
        if (
            isinstance(v, bool)
            and bool not in types
            or not isinstance(v, types)
            or isinstance(v, float)
            and not np.isfinite(v)
        ):
            problems.append(f"{k} must be {' or '.join(_JSON_NAMES[t] for t in types)}, got {json.dumps(v)[:60]}")
            out[k] = None
            out[f"{k}_given"] = json.dumps(v)[:1000]  # kept in the quarantine's raw row
    for k, v in out.items():
        if k not in _FIELD_TYPES and isinstance(v, (dict, list)):
            out[k] = json.dumps(v)  # unknown nested fields are kept as JSON text in extras
    return out, "; ".join(problems) or None


_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "an object"}


def _has_surrogate(text: str) -> bool:
    import re

    return re.search("[\ud800-\udfff]", text) is not None


def _clean_text(text: str) -> str:
    import re

    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def json_depth(obj, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (iterative; stops counting past ``limit``)."""
    depth, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            depth = max(depth, d)
            if depth > limit:
                return depth
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return depth


def parse_body(body: bytes):
    """Request body -> JSON value, refusing what would hurt the server."""
    if len(body) > MAX_BODY_BYTES:
        raise FeedError(f"body larger than {MAX_BODY_BYTES // (1024 * 1024)} MB: send fewer incidents per request")
    try:
        payload = json.loads(body)
    except RecursionError:
        raise FeedError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise FeedError("the body must be JSON (Content-Type: application/json)") from None
    if json_depth(payload) > MAX_JSON_DEPTH:
        raise FeedError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


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


@dataclass
class _Job:
    source: str
    records: list[dict]
    name: str
    offset: int = 0  # row number of records[0] in its request, minus one
    done: threading.Event = field(default_factory=threading.Event)
    result: FeedResult | None = None
    error: BaseException | None = None


class FeedService:
    """Validate + store + announce; the HTTP layer is :func:`feed_blueprint`.

    **Group commit.** Request threads hand their records to one writer
    thread and wait; the writer takes every request pending within
    ``batch_window`` seconds, validates and stores them as one batch (one
    transaction), then answers each request with its own counts. A busy feed
    (many small POSTs) thus costs one store write per window instead of one
    per incident, and each reply still comes only after the commit.

    ``engines`` maps a source to its :class:`~rtcc_geo.live.engine.LiveEngine`;
    with an embedded store the service hands stored rows to it directly, with
    PostGIS the rows are announced by the database (LISTEN/NOTIFY) and the
    :class:`~rtcc_geo.live.listen.Listener` does it, so writers in other
    processes are seen too.
    """

    def __init__(
        self,
        store,
        engines: dict | None = None,
        agencies: dict[str, Agency] | None = None,
        batch_window: float = 0.02,
        max_batch: int = 20_000,
    ):
        import queue

        self.store = store
        self.engines = engines or {}
        self._agencies = dict(agencies or {})
        self.batch_window, self.max_batch = batch_window, max_batch
        self._pending: queue.Queue[_Job] = queue.Queue()
        self._writer = threading.Thread(target=self._loop, name="rtcc-feed-writer", daemon=True)
        self._writer.start()

    def agency(self, source: str) -> Agency:
        if source not in self._agencies:
            tz = self.store.sources().get(source)
            try:
                a = load_agency(source, store=self.store)  # the stored agency first
            except FileNotFoundError:
                if tz is None:
                    raise FeedError(
                        f"unknown source {source!r}: ingest its history first or add data/agencies/{source}.toml"
                    ) from None
                a = Agency(name=source, timezone=tz)
            self._agencies[source] = a
        return self._agencies[source]

    def accept(self, source: str, payload, timeout: float = 120.0) -> FeedResult:
        """Store one request's incidents; returns after they are committed.

        Raises :class:`FeedError` for a request the sender must fix, and the
        store's exception when the write failed (the sender retries).
        """
        records = _records(payload)
        self.agency(source)  # unknown source: a FeedError now, not in the writer
        name = "feed:" + hashlib.sha1(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()[:16]
        job = _Job(source, records, name)
        self._pending.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError(f"the store did not commit within {timeout:g} s")
        if job.error is not None:
            raise job.error
        assert job.result is not None  # the writer sets a result or an error before done
        return job.result

    # --- the writer thread ----------------------------------------------------
    def _loop(self) -> None:
        import queue
        import time

        while True:
            jobs = [self._pending.get()]
            deadline = time.monotonic() + self.batch_window
            n = len(jobs[0].records)
            while n < self.max_batch:
                try:
                    j = self._pending.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                jobs.append(j)
                n += len(j.records)
            try:
                groups = _groups(jobs)
            except Exception:  # noqa: BLE001 - a bug here must not kill the writer thread
                log.exception("feed writer: cannot group %d request(s)", len(jobs))
                groups = [[j] for j in jobs]
            for group in groups:
                try:
                    self._process_safely(group)
                except BaseException as e:  # noqa: BLE001 - every waiting request learns of it
                    for j in group:
                        j.error = e
                finally:
                    for j in group:
                        j.done.set()

    def _process_safely(self, jobs: list[_Job]) -> None:
        """Store a group; if the store refuses it while it is reachable, no record
        may poison the others: retry request by request, then record by record,
        and quarantine what the store refuses alone."""
        try:
            self._process(jobs)
            return
        except Exception as e:  # noqa: BLE001
            if not _store_alive(self.store):
                raise
            log.warning(
                "the store refused a batch of %d request(s) while reachable (%s): retrying one by one", len(jobs), e
            )
        for j in jobs:
            try:
                self._process([j])
                continue
            except Exception as e:  # noqa: BLE001
                if not _store_alive(self.store):
                    raise
                err = e
            parts: list[FeedResult] = []
            for i, r in enumerate(j.records):
                one = _Job(j.source, [r], j.name, offset=i)  # quarantine keeps the request's row number
                try:
                    self._process([one])
                except Exception as e:  # noqa: BLE001
                    if not _store_alive(self.store):
                        raise
                    one.result = self._quarantine_refused(j, i, r, e)
                assert one.result is not None  # _process or the quarantine set it
                parts.append(one.result)
            log.warning(
                "request %s: %d record(s) refused by the store (%s)", j.name, sum(p.quarantined for p in parts), err
            )
            j.result = _merge_results(j.source, parts)

    def _quarantine_refused(self, job: _Job, i: int, record, err: Exception) -> FeedResult:
        from ..ingest.validate import safe_json_text

        raw = safe_json_text(pd.Series([json.dumps(record, default=str)], dtype="string"))
        q = pd.DataFrame(
            {
                "source": [job.source],
                "file": [job.name],
                "row_number": [i + 1],
                "reason": ["invalid_field"],
                "detail": [f"the store refused this record: {type(err).__name__}: {str(err)[:300]}"],
                "raw": raw,
            }
        )
        for c in ("source", "file", "reason", "detail", "raw"):
            q[c] = q[c].astype("string")
        self.store.write_quarantine(q)
        return FeedResult(job.source, 1, 0, 1, 0, {"invalid_field": 1}, [])

    def _process(self, jobs: list[_Job]) -> None:
        source = jobs[0].source
        ag = self.agency(source)
        records = [r for j in jobs for r in j.records]
        owner = np.repeat(np.arange(len(jobs)), [len(j.records) for j in jobs])
        local = np.concatenate([np.arange(len(j.records)) for j in jobs]) if records else np.zeros(0, int)
        batch = records_to_batch(records, source, ag.timezone, jobs[0].name)
        incidents, quarantine = validate(batch, agency_area(ag), tuple(ag.resolutions))
        # Quarantine keys belong to each request (its content hash + its row), so a
        # re-sent request adds no quarantine row whatever it was batched with.
        qrow = quarantine["row_number"].to_numpy() - 1
        quarantine = quarantine.assign(
            file=[jobs[k].name for k in owner[qrow]],
            row_number=(local[qrow] + 1 + np.array([j.offset for j in jobs])[owner[qrow]]).astype("int64"),
        )
        quarantine["file"] = quarantine["file"].astype("string")
        self.store.register_source(source, ag.timezone)
        w = self.store.write_incidents(incidents)
        self.store.write_quarantine(quarantine)
        inserted = w.inserted_keys if w.inserted_keys is not None else set()
        ids = incidents["id"].astype(str).to_numpy()
        # validate() keeps row order, so each valid row's owner is recoverable from its id.
        id_owner = {rid: owner[i] for i, rid in enumerate(batch.frame["id"].astype(str).tolist())}
        for k, j in enumerate(jobs):
            mine = [i for i in ids if id_owner.get(i) == k]
            q = quarantine[owner[qrow] == k]
            j.result = FeedResult(
                source=source,
                received=len(j.records),
                loaded=len(mine),
                quarantined=len(q),
                duplicates=sum((source, i) not in inserted for i in mine),
                by_reason={str(r): int(c) for r, c in q["reason"].value_counts().items()},
                ids=mine,
            )
        engine = self.engines.get(source)
        if engine is not None and getattr(self.store, "kind", "") != "postgis" and w.inserted:
            # Embedded store: no database to announce rows, so hand them over here.
            new = incidents[[(source, i) in inserted for i in ids]]
            try:
                engine.ingest(new)
            except Exception as e:  # noqa: BLE001 - the rows are stored; the state catches up on recompute
                log.warning("live engine failed on %d incidents: %s", len(new), e)


def _merge_results(source: str, parts: list[FeedResult]) -> FeedResult:
    out = FeedResult(source, 0, 0, 0, 0)
    for p in parts:
        out.received += p.received
        out.loaded += p.loaded
        out.quarantined += p.quarantined
        out.duplicates += p.duplicates
        out.ids += p.ids
        for k, v in p.by_reason.items():
            out.by_reason[k] = out.by_reason.get(k, 0) + v
    return out


def _store_alive(store) -> bool:
    """Whether the store answers at all (a refused write is then the data's fault)."""
    try:
        store.sources()
        return True
    except Exception:  # noqa: BLE001
        _reconnect(store)
        try:
            store.sources()
            return True
        except Exception:  # noqa: BLE001
            return False


def _groups(jobs: list[_Job]) -> list[list[_Job]]:
    """Split jobs into same-source groups in which no incident id repeats across
    jobs (a re-sent incident batched with its first copy must count as a
    duplicate, not be quarantined as a repeated key)."""
    out: list[list[_Job]] = []
    current: dict[str, tuple[list[_Job], set]] = {}
    for j in jobs:
        ids = {str(r.get("id")) for r in j.records if isinstance(r, dict)}
        g = current.get(j.source)
        if g is None or g[1] & ids:
            g = ([], set())
            current[j.source] = g
            out.append(g[0])
        g[0].append(j)
        g[1].update(ids)
    return out


def _records(payload) -> list[dict]:
    if isinstance(payload, dict) and "incidents" in payload:
        payload = payload["incidents"]
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or (payload and not any(isinstance(r, dict) for r in payload)):
        raise FeedError('send a JSON object, a list of objects, or {"incidents": [...]}')
    if len(payload) > 10_000:
        raise FeedError(f"{len(payload)} incidents in one request: send at most 10,000 per request")
    return payload


def feed_blueprint(
    service: FeedService, token=None, authorize=None, broker=None, redact=None, on_batch=None, alive=None
):
    """Flask blueprint with the feed and the live event stream.

    ``authorize()`` returns the signed-in user's role (or ``None``) for the
    stream; ``broker`` is the :class:`~rtcc_geo.live.engine.Broker` the
    stream subscribes to; ``redact(event, role)`` trims each event to what
    that role may see (the app hides incident detail from viewers).
    ``token`` is one token (any source) or a
    :class:`~rtcc_geo.feed_tokens.FeedTokens` (a token per source);
    ``on_batch(source, token_label, result)`` is told of every stored batch (audit log);
    ``alive()`` is asked once a second whether the stream's session still lives (a
    log-out or revocation ends an open stream within a second).
    """
    import os
    import queue

    from flask import Blueprint, Response, jsonify, request, stream_with_context

    token = token or os.environ.get("RTCC_FEED_TOKEN")
    bp = Blueprint("rtcc_live", __name__)

    @bp.post("/api/feed/<source>/incidents")
    def post_incidents(source: str):
        if not token:
            return jsonify(
                error="the feed is disabled: start the server with RTCC_FEED_TOKEN set "
                "(or --feed-token) and send it as 'Authorization: Bearer <token>'"
            ), 403
        got = request.headers.get("Authorization", "")
        per_source = getattr(token, "authorize", None)
        label = (
            per_source(source, got)
            if per_source is not None
            else ("token" if hmac.compare_digest(got.encode(), f"Bearer {token}".encode()) else None)
        )
        if label is None:
            return jsonify(error="missing or wrong bearer token (for this source)"), 401
        if (request.content_length or 0) > MAX_BODY_BYTES:
            # Read (and drop) a moderately oversized body so the sender gets the 413 instead of
            # a broken pipe; a huge one is cut off (the connection closes after the answer).
            if request.content_length is not None and request.content_length <= 4 * MAX_BODY_BYTES:
                while request.stream.read(1 << 20):
                    pass
            return jsonify(
                error=f"body larger than {MAX_BODY_BYTES // (1024 * 1024)} MB: send fewer incidents per request"
            ), 413
        body = request.stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return jsonify(error=f"body larger than {MAX_BODY_BYTES // (1024 * 1024)} MB"), 413
        try:
            payload = parse_body(body)
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
        if on_batch is not None:
            on_batch(source, label, result)
        return jsonify(result.as_dict())

    @bp.get("/api/live/stream")
    def stream():
        from .server import wait_event  # a vanished client frees its thread within a second

        role = authorize() if authorize is not None else None
        if role is None:
            return jsonify(error="sign in first"), 401
        if broker is None:
            return jsonify(error="no live engine running"), 404
        q = broker.subscribe()
        environ = request.environ

        def events():
            try:
                yield "retry: 1000\n\n"
                quiet = 0
                while True:
                    if alive is not None and not alive():
                        return  # session ended: the browser reconnects and gets 401
                    try:
                        ev = wait_event(q, environ, 1 if alive is not None else 15)
                    except queue.Empty:
                        quiet += 1
                        if alive is None or quiet >= 15:
                            quiet = 0
                            yield ": keep-alive\n\n"
                        continue
                    if ev is None:
                        return
                    if redact is not None:
                        ev = redact(ev, role)
                    yield f"event: {ev['type']}\ndata: {json.dumps(ev, default=str)}\n\n"
            finally:
                broker.unsubscribe(q)

        return Response(
            stream_with_context(events()),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return bp


def _reconnect(store) -> None:
    fn = getattr(store, "reconnect", None)
    if fn is not None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - still down; the next request tries again
            pass
