"""Replay a historical extract into the live feed, as if it were happening now.

For demos, training and tests: :func:`replay` reads files with the ingest
readers (any ``--format``), orders the incidents by time and posts them to
the feed (``POST /api/feed/<source>/incidents``) at ``speed`` times real
time ("60x": an hour of history per minute; "max": as fast as the feed
takes them). Rows the readers already know are bad are sent too, so the
feed quarantines them with their reason, exactly as a live CAD would.

Delivery is at-least-once: a batch is re-sent until the feed answers 200
(connection refused, 503 during a database restart, timeouts), and the feed
is idempotent by incident id, so nothing is lost or doubled.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable

import numpy as np
import pandas as pd


def parse_speed(speed: str | float) -> float:
    """``"60x"`` -> 60.0; ``"max"`` -> inf."""
    if isinstance(speed, (int, float)):
        return float(speed)
    s = str(speed).strip().lower()
    if s in ("max", "inf"):
        return float("inf")
    try:
        v = float(s[:-1] if s.endswith("x") else s)
    except ValueError:
        raise ValueError(f"speed {speed!r}: give a factor like 60x (60 times real time) or 'max'") from None
    if v <= 0:
        raise ValueError("speed must be positive")
    return v


def load_records(
    fmt: str, files: Iterable[str | Path], agency=None, mapping=None, start=None, end=None, limit: int | None = None
) -> tuple[str, list[dict]]:
    """Read files into canonical JSON records ordered by time; returns (source, records)."""
    from ..ingest import read_batch
    from ..ingest.pipeline import resolve_agency

    from ..ingest.generic import load_mapping

    mp = load_mapping(mapping) if isinstance(mapping, (str, Path)) else mapping
    ag = resolve_agency(fmt, agency, mp)
    source = mp.source if fmt == "generic" else fmt
    frames = [read_batch(fmt, Path(f), timezone=ag.timezone, mapping=mp, source=source).frame for f in files]
    df = pd.concat(frames, ignore_index=True)
    t = pd.to_datetime(df["occurred_from"], utc=True)
    keep = np.ones(len(df), dtype=bool)
    if start is not None:
        keep &= (t >= _bound(start, ag.timezone)).fillna(False).to_numpy()
    if end is not None:
        keep &= (t < _bound(end, ag.timezone)).fillna(False).to_numpy()
    df = df[keep]
    df = df.iloc[np.argsort(pd.to_datetime(df["occurred_from"], utc=True).to_numpy(), kind="stable")]
    if limit:
        df = df.head(limit)
    return source, _to_records(df)


def _bound(t, tz) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return (t.tz_localize(tz) if t.tzinfo is None else t).tz_convert("UTC")


def _to_records(df: pd.DataFrame) -> list[dict]:
    out = []
    cols = [
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
    ]
    for row in df[cols].itertuples(index=False):
        r = {}
        for k, v in zip(cols, row):
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
                continue
            r[k] = v.isoformat() if isinstance(v, pd.Timestamp) else (bool(v) if k == "time_known" else v)
        out.append(r)
    return out


@dataclass
class ReplayReport:
    source: str
    sent: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    retries: int = 0
    requests: int = 0
    seconds: float = 0.0
    by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def replay(
    records: list[dict],
    source: str,
    url: str,
    token: str,
    speed: str | float = "60x",
    batch_interval: float = 0.1,
    max_batch: int = 500,
    progress: bool = False,
    timeout: float = 10.0,
    give_up_after: float = 300.0,
) -> ReplayReport:
    """Post ``records`` (ordered by time) to ``url`` at ``speed``; returns the counts."""
    factor = parse_speed(speed)
    endpoint = url.rstrip("/") + f"/api/feed/{source}/incidents"
    times = pd.to_datetime(pd.Series([r.get("occurred_from") for r in records]), utc=True, format="ISO8601")
    t0 = times.dropna().min() if times.notna().any() else pd.Timestamp.now(tz="UTC")
    # Seconds after the start at which each record is due (untimed rows go first).
    due = (
        ((times - t0).dt.total_seconds().fillna(0.0) / factor).to_numpy()
        if np.isfinite(factor)
        else np.zeros(len(records))
    )
    rep = ReplayReport(source=source)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), unit="inc", desc=f"replay {source} at {speed}")
    start = time.monotonic()
    i = 0
    try:
        while i < len(records):
            now = time.monotonic() - start
            j = int(np.searchsorted(due, now, side="right"))
            j = min(max(j, i + 1), i + max_batch) if due[i] <= now else i
            if j == i:
                time.sleep(min(batch_interval, max(0.0, due[i] - now)))
                continue
            out = _post(endpoint, token, records[i:j], timeout, give_up_after, rep)
            rep.sent += j - i
            rep.loaded += out["loaded"]
            rep.quarantined += out["quarantined"]
            rep.duplicates += out["duplicates"]
            for k, v in out.get("by_reason", {}).items():
                rep.by_reason[k] = rep.by_reason.get(k, 0) + v
            if bar is not None:
                bar.update(j - i)
            i = j
    finally:
        if bar is not None:
            bar.close()
    rep.seconds = round(time.monotonic() - start, 3)
    return rep


def _post(endpoint: str, token: str, rows: list[dict], timeout: float, give_up_after: float, rep: ReplayReport) -> dict:
    body = json.dumps({"incidents": rows}, default=str).encode()
    deadline = time.monotonic() + give_up_after
    wait = 0.2
    while True:
        rep.requests += 1
        req = urllib.request.Request(
            endpoint,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            if e.code in (400, 401, 403):  # the sender's fault: retrying would not help
                raise RuntimeError(f"feed refused the batch ({e.code}): {e.read().decode(errors='replace')}") from None
            err = f"HTTP {e.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            err = str(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"feed at {endpoint} still failing after {give_up_after:g} s: {err}")
        rep.retries += 1
        time.sleep(wait)
        wait = min(wait * 2, 2.0)
