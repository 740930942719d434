"""Live alerts: each with its reason and the data behind it.

Three rules, as an RTCC watch floor uses them:

``hotspot``
    The incident lies in a cell that is *currently* a significant Gi* hot
    spot (bin >= ``min_bin`` after FDR) over the rolling window kept by
    :class:`~rtcc_geo.live.state.RollingState`.
``near_repeat``
    The incident falls inside the open near-repeat window of a prior
    incident of the same category: closer than ``distance_m`` metres and
    ``days`` days (half-open, ``[0, d)``). The bands come from the agency's
    own Knox analysis (:meth:`NearRepeatRule.from_knox`), so an alert means
    "this is the kind of follow-on event the data says is likelier here".
``stp_cluster``
    An emerging space-time cluster found by the prospective space-time
    permutation scan (:mod:`~rtcc_geo.live.scan`) whose recurrence interval
    is at least ``min_recurrence_days`` (e.g. 100 days for a daily scan:
    at most one false alarm every ~100 days).

Alert ids are deterministic (rule + incident / cluster), so re-processing the
same incident under at-least-once delivery never duplicates an alert.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

ALERT_COLUMNS = (
    "alert_id",
    "kind",
    "created_at",
    "source",
    "incident_id",
    "cell",
    "reason",
    "data",
    "acknowledged",
    "ack_by",
    "ack_at",
)


@dataclass
class Alert:
    kind: str
    source: str
    reason: str
    data: dict
    incident_id: str | None = None
    cell: int | None = None
    created_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))
    alert_id: str = ""

    def __post_init__(self):
        if not self.alert_id:
            key = f"{self.kind}|{self.source}|{self.incident_id}|{self.data.get('key', '')}"
            self.alert_id = hashlib.sha1(key.encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["created_at"] = self.created_at.isoformat()
        return d


@dataclass(frozen=True)
class NearRepeatRule:
    """An open near-repeat window: same category, closer than ``distance_m`` and ``days``."""

    distance_m: float = 200.0
    days: float = 14.0
    categories: tuple[str, ...] = ("burglary", "vehicle", "robbery", "theft")

    @classmethod
    def from_knox(cls, result, categories: tuple[str, ...], alpha: float = 0.05, min_ratio: float = 1.1):
        """The window spanned by the significant near-repeat bands next to the origin.

        Takes the space bands ``[0, s)`` and time bands ``[0, t)`` whose first
        row/column of Knox cells is significant (p < ``alpha``) with ratio >=
        ``min_ratio``; falls back to the first bands when none is.
        """
        sig = (np.asarray(result.p_value) < alpha) & (np.asarray(result.ratio) >= min_ratio)
        se, te = np.asarray(result.space_edges, float), np.asarray(result.time_edges, float)
        s_i = 0
        while s_i + 1 < len(se) and sig[s_i, 0]:
            s_i += 1
        t_i = 0
        while t_i + 1 < len(te) and sig[0, t_i]:
            t_i += 1
        return cls(distance_m=float(se[max(s_i, 1)]), days=float(te[max(t_i, 1)]), categories=categories)


def hotspot_alerts(incidents: pd.DataFrame, bins: np.ndarray, z: np.ndarray, min_bin: int, window: str) -> list[Alert]:
    """Alerts for incidents whose cell bin is >= ``min_bin`` (arrays aligned with ``incidents``)."""
    conf = {3: "99", 2: "95", 1: "90"}
    out = []
    for row, b, zz in zip(incidents.itertuples(index=False), bins, z):
        if b >= min_bin:
            out.append(
                Alert(
                    kind="hotspot",
                    source=row.source,
                    incident_id=row.id,
                    cell=int(row.cell),
                    reason=f"{row.category} inside a current hot spot ({conf[int(b)]} % confidence after FDR, "
                    f"Gi* z = {zz:.2f} over the last {window})",
                    data={
                        "bin": int(b),
                        "z": round(float(zz), 3),
                        "window": window,
                        "occurred_from": pd.Timestamp(row.t).isoformat(),
                    },
                )
            )
    return out


def near_repeat_alerts(new: pd.DataFrame, recent: pd.DataFrame, rule: NearRepeatRule) -> list[Alert]:
    """Alerts for ``new`` incidents within ``rule`` of an earlier one in ``recent``.

    Both frames carry ``id, source, category, t`` (UTC timestamps) and
    ``x, y`` (metres, one projection). The nearest qualifying prior incident
    is named in the reason.
    """
    out: list[Alert] = []
    if not len(recent):
        return out
    rx, ry = recent["x"].to_numpy(), recent["y"].to_numpy()
    rt = recent["t"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    rcat = recent["category"].to_numpy()
    rid = recent["id"].to_numpy()
    win = int(rule.days * 86_400e9)
    for row in new.itertuples(index=False):
        if row.category not in rule.categories:
            continue
        t = pd.Timestamp(row.t).value
        dt = t - rt
        d = np.hypot(rx - row.x, ry - row.y)
        ok = (rcat == row.category) & (dt >= 0) & (dt < win) & (d < rule.distance_m) & (rid != row.id)
        if not ok.any():
            continue
        j = np.flatnonzero(ok)[np.argmin(d[ok])]
        out.append(
            Alert(
                kind="near_repeat",
                source=row.source,
                incident_id=row.id,
                cell=int(row.cell),
                reason=(
                    f"{row.category} {d[j]:.0f} m and {dt[j] / 86_400e9:.1f} days after incident {rid[j]}: "
                    f"inside the near-repeat window ({rule.distance_m:.0f} m, {rule.days:g} days)"
                ),
                data={
                    "prior_id": str(rid[j]),
                    "distance_m": round(float(d[j]), 1),
                    "days": round(float(dt[j] / 86_400e9), 3),
                    "window_m": rule.distance_m,
                    "window_days": rule.days,
                    "matches": int(ok.sum()),
                    "occurred_from": pd.Timestamp(row.t).isoformat(),
                },
            )
        )
    return out


def scan_alerts(result, source: str, min_recurrence_days: float) -> list[Alert]:
    """Alerts for scan clusters whose recurrence interval passes the threshold."""
    out = []
    for c in result.alerts(min_recurrence_days):
        out.append(
            Alert(
                kind="stp_cluster",
                source=source,
                cell=int(c.centre),
                reason=(
                    f"emerging cluster: {c.observed} incidents in {len(c.cells)} cells over the last {c.days} "
                    f"days ({c.expected:.1f} expected); recurrence interval {c.recurrence_days:.0f} days "
                    f"(threshold {min_recurrence_days:g})"
                ),
                data={**c.as_dict(), "key": f"{c.centre}|{c.k}|{c.start.date()}|{c.end.date()}"},
            )
        )
    return out


class AlertLog:
    """Alerts kept in the store (table ``alerts``), listable and acknowledgeable.

    With ``background=True`` :meth:`add` only queues: a writer thread stores
    the queue every ``flush_every`` seconds in one append, so storing alerts
    never delays the live map (the alerts are published to clients first).
    :meth:`flush` writes what is queued now.
    """

    def __init__(self, store, background: bool = False, flush_every: float = 0.5):
        import threading

        self.store = store
        #: Ids this process has seen stored (ids are never removed, so a hit skips the store).
        self._known: set[str] = set()
        self._queue: list[Alert] = []
        self._qlock = threading.Lock()
        self._wlock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._writer, args=(flush_every,), name="rtcc-alerts", daemon=True)
            self._thread.start()

    def _writer(self, every: float) -> None:
        import logging

        while not self._stop.wait(every):
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - keep the queue; try again next tick
                logging.getLogger(__name__).warning("storing alerts failed, will retry: %s", e)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()

    def add(self, alerts: list[Alert]) -> int:
        """Store (or, in background mode, queue) alerts; returns how many were queued/stored."""
        if not alerts:
            return 0
        if self._thread is None:
            return self._store(alerts)
        with self._qlock:
            self._queue.extend(alerts)
        return len(alerts)

    def flush(self) -> int:
        # Taking the queue and storing it is one step under the write lock, so a
        # reader (frame) never runs between the two and misses alerts in flight.
        with self._wlock:
            with self._qlock:
                todo, self._queue = self._queue, []
            if not todo:
                return 0
            try:
                return self._store(todo)
            except Exception:
                with self._qlock:
                    self._queue[:0] = todo
                raise

    def frame(self) -> pd.DataFrame:
        """Every alert added so far (queued ones are stored first)."""
        with self._wlock:
            if self._thread is not None:
                self.flush()
            df = self.store.get_table("alerts")
        if df is None:
            return pd.DataFrame({c: pd.Series(dtype="string") for c in ALERT_COLUMNS})
        return df

    def _store(self, alerts: list[Alert]) -> int:
        """Store new alerts (ids already stored are skipped); returns how many were new."""
        rows = pd.DataFrame(
            [
                {
                    "alert_id": a.alert_id,
                    "kind": a.kind,
                    "created_at": a.created_at,
                    "source": a.source,
                    "incident_id": a.incident_id,
                    "cell": a.cell,
                    "reason": a.reason,
                    "data": json.dumps(a.data, default=str),
                    "acknowledged": False,
                    "ack_by": None,
                    "ack_at": pd.NaT,
                }
                for a in alerts
            ]
        ).drop_duplicates("alert_id")
        with self._wlock:
            rows = rows[~rows["alert_id"].isin(self._known)]
            if not len(rows):
                return 0
            # Every serve worker runs its own engine on the same feed, so each
            # raises the same (deterministic) alerts: which ids are stored is
            # read again under the table's lock, or two workers both store one.
            with self.store.table_lock("alerts"):
                stored = self._stored_ids()
                rows = rows[~rows["alert_id"].isin(stored)]
                if len(rows):
                    self.store.append_table("alerts", _typed(rows))
            self._known.update(stored)
            self._known.update(rows["alert_id"].tolist())
        return len(rows)

    def _stored_ids(self) -> set[str]:
        df = self.store.get_table("alerts")
        return set() if df is None else set(df["alert_id"].astype(str))

    def list(self, open_only: bool = False, limit: int | None = None) -> pd.DataFrame:
        df = self.frame()
        if open_only:
            df = df[~df["acknowledged"].astype(bool)]
        df = df.sort_values("created_at", ascending=False, kind="mergesort")
        return df.head(limit) if limit else df

    def acknowledge(self, alert_id: str, user: str) -> bool:
        """Mark one open alert acknowledged by ``user``; False if there is no such alert."""
        return bool(self.acknowledge_many([alert_id], user))

    def acknowledge_many(self, alert_ids: Iterable[str], user: str) -> builtins.list[str]:
        """Acknowledge the open alerts among ``alert_ids`` in one write; returns their ids.

        Read and rewritten under the table's lock, so an alert another worker
        stores meanwhile is kept, and an alert acknowledged twice keeps its
        first acknowledgement (who and when).
        """
        with self._wlock:
            if self._thread is not None:
                self.flush()
            with self.store.table_lock("alerts"):
                df = self.store.get_table("alerts")
                if df is None:
                    return []
                hit = df["alert_id"].isin([str(a) for a in alert_ids]) & ~df["acknowledged"].astype(bool)
                if not hit.any():
                    return []
                df = _typed(df)
                df.loc[hit, "acknowledged"] = True
                df.loc[hit, "ack_by"] = user
                df.loc[hit, "ack_at"] = pd.Timestamp.now(tz="UTC").floor("us")
                self.store.put_table("alerts", _typed(df))
        return df.loc[hit, "alert_id"].astype(str).tolist()

    def snooze(self, key: str, until: pd.Timestamp, user: str) -> None:
        """Hide the alert group ``key`` in every worker's panel until ``until`` (UTC).

        Kept in the store (table ``alert_snoozes``) rather than in one server
        process: with ``serve --workers N`` the next refresh may reach another
        worker, which must hide the group too.
        """
        row = pd.DataFrame(
            {
                "key": pd.array([str(key)], dtype="string"),
                "until": pd.to_datetime([until], utc=True).astype("datetime64[us, UTC]"),
                "by": pd.array([user], dtype="string"),
            }
        )
        with self.store.table_lock("alert_snoozes"):
            old = self.store.get_table("alert_snoozes")
            now = pd.Timestamp.now(tz="UTC")
            if old is not None and len(old):
                # Expired snoozes and an earlier snooze of the same group go.
                old = old[(pd.to_datetime(old["until"], utc=True) > now) & (old["key"] != str(key))]
                old = old.astype({"until": "datetime64[us, UTC]"})
                row = pd.concat([old, row], ignore_index=True)
            self.store.put_table("alert_snoozes", row)

    def snoozed(self) -> dict[str, pd.Timestamp]:
        """Group key -> snoozed until (UTC), for the snoozes still running."""
        df = self.store.get_table("alert_snoozes")
        if df is None or not len(df):
            return {}
        until = pd.to_datetime(df["until"], utc=True)
        live = until > pd.Timestamp.now(tz="UTC")
        return dict(zip(df.loc[live, "key"].astype(str), until[live], strict=True))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.loc[:, list(ALERT_COLUMNS)].copy()
    for c in ("alert_id", "kind", "source", "incident_id", "reason", "data", "ack_by"):
        df[c] = df[c].astype("string")
    df["cell"] = pd.array([None if pd.isna(c) else int(c) for c in df["cell"]], dtype="Int64")
    df["acknowledged"] = df["acknowledged"].astype(bool)
    # One unit for both times, so an append matches the stored columns' types.
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True).astype("datetime64[us, UTC]")
    df["ack_at"] = pd.to_datetime(df["ack_at"], utc=True).astype("datetime64[us, UTC]")
    return df.reset_index(drop=True)
