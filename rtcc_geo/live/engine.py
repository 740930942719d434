"""The live engine: keeps the rolling state, raises and stores alerts, fans events out.

One :class:`LiveEngine` per source. The feed (or the PostgreSQL listener)
hands it each batch of newly stored incidents with :meth:`LiveEngine.ingest`;
it updates :class:`~rtcc_geo.live.state.RollingState` incrementally, applies
the hot-spot and near-repeat rules, stores the alerts and publishes both the
incidents and the alerts on a :class:`Broker` that the app's event stream
subscribes to.

**The clock** (the engine's "now", from incident times, as a replay needs)
never follows a single record: it advances to the *second-latest* distinct
incident seen (or the caller's ``now``), and only to times before the wall
clock + 1 day. One record with a typo'd year therefore cannot expire the
window; the latest incident waits "ahead" of the clock and enters the state
when a second one confirms time has moved on.

:meth:`LiveEngine.recompute` is the periodic full recompute
(from the store) that fixes drift; :meth:`LiveEngine.scan` runs the
prospective space-time scan on a schedule.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import grid
from ..store.base import Query
from .alerts import Alert, AlertLog, NearRepeatRule, hotspot_alerts, near_repeat_alerts, scan_alerts
from .scan import space_time_scan
from .state import RollingState


class Broker:
    """In-process publish/subscribe of live events (thread-safe, bounded queues).

    A slow subscriber never blocks the feed: when its queue is full the oldest
    event is dropped for *that* subscriber only (the store keeps everything,
    and a client that reconnects reloads from it).
    """

    def __init__(self, maxsize: int = 10_000):
        self._subs: set[queue.Queue] = set()
        self._lock = threading.Lock()
        self.maxsize = maxsize

    def subscribe(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(self.maxsize)
        with self._lock:
            self._subs.add(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self._lock:
            self._subs.discard(q)

    def publish(self, event: dict) -> None:
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(event)
            except queue.Full:
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass
                q.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._subs)


@dataclass
class LiveConfig:
    res: int = 9
    window: str = "28D"
    hotspot_min_bin: int = 2  # 95 % confidence after FDR
    near_repeat: NearRepeatRule = NearRepeatRule()
    scan_period_days: int = 56
    scan_max_days: int = 7
    scan_max_k: int = 1
    scan_replicates: int = 999
    scan_every_days: float = 1.0
    scan_min_recurrence_days: float = 100.0


class LiveEngine:
    """Incremental state + alerts for one source."""

    def __init__(
        self,
        store,
        source: str,
        boundary=None,
        config: LiveConfig = LiveConfig(),
        broker: Broker | None = None,
        study_cells: np.ndarray | None = None,
        background_alerts: bool = True,
    ):
        from ..hotspots.weights import kring_weights

        self.store, self.source, self.cfg = store, source, config
        self.tz = store.sources()[source]
        self.broker = broker or Broker()
        self.alerts = AlertLog(store, background=background_alerts)
        if study_cells is None:
            # The study area: the agency's boundary cells plus any cell with history.
            have = store.counts(config.res, ("cell",), Query(source=source))["cell"].to_numpy()
            boundary = boundary if boundary is not None else _agency_boundary(source, store)
            study_cells = np.union1d(grid.cover(boundary, config.res), have) if boundary is not None else have
            if not len(study_cells):
                raise ValueError(f"no study area for {source!r}: give a boundary or ingest its history first")
        self.cells = np.unique(np.asarray(study_cells, dtype=np.int64))
        self.state = RollingState(self.cells, kring_weights(self.cells, 1).sparse, config.window)
        self._recent = pd.DataFrame(
            {
                "id": pd.Series(dtype=str),
                "source": pd.Series(dtype=str),
                "category": pd.Series(dtype=str),
                "t": pd.Series(dtype="datetime64[ns, UTC]"),
                "x": pd.Series(dtype=float),
                "y": pd.Series(dtype=float),
                "cell": pd.Series(dtype="int64"),
            }
        )
        self._ahead = pd.DataFrame(
            {"id": pd.Series(dtype=str), "t": pd.Series(dtype="datetime64[ns, UTC]"), "cell": pd.Series(dtype="int64")}
        )
        self._top: list[tuple[pd.Timestamp, str]] = []  # the two latest distinct incidents seen
        lat0, lon0 = grid.cell_centres(self.cells[:1]) if len(self.cells) else (np.array([0.0]), np.array([0.0]))
        self._proj = grid.local_transformer(float(lon0[0]), float(lat0[0]))
        self._lock = threading.Lock()

    # --- the incremental path ------------------------------------------------
    def ingest(self, df: pd.DataFrame, now=None) -> list[Alert]:
        """Take newly stored canonical incidents of this source; returns new alerts."""
        # Not-geolocated incidents (no point, see rtcc_geo.schema) have no cell or dot.
        df = df[(df["source"] == self.source) & df["lon"].notna()]
        if not len(df):
            return []
        with self._lock:
            ids = df["id"].astype(str)
            seen = self.state._ids | set(self._ahead["id"])
            fresh = (~ids.isin(seen) & ~ids.duplicated()).to_numpy()
            new = df[fresh]
            if not len(new):
                return []
            ncells = _cells(new, self.cfg.res)
            t_new = pd.to_datetime(new["occurred_from"], utc=True)
            self._ahead = pd.concat(
                [self._ahead, pd.DataFrame({"id": ids[fresh].to_numpy(), "t": t_new.to_numpy(), "cell": ncells})],
                ignore_index=True,
            )
            clock = self._clock(t_new, ids[fresh], now)
            if clock is not None:
                self.state.advance(clock)
                due = (self._ahead["t"] <= clock).to_numpy()
            else:
                due = np.ones(len(self._ahead), dtype=bool)  # no clock yet: the state takes everything
            take = self._ahead[due]
            self.state.add(take["id"], take["t"], take["cell"].to_numpy())
            self._ahead = self._ahead[~due].reset_index(drop=True)
            st = self.state.status()
            pos = np.minimum(np.searchsorted(self.cells, ncells), len(self.cells) - 1)
            inside = self.cells[pos] == ncells
            bins = np.where(inside, st.bin[pos], 0)
            z = np.where(inside, st.z[pos], 0.0)
            x, y = self._proj.transform(new["lon"].to_numpy(float), new["lat"].to_numpy(float))
            frame = pd.DataFrame(
                {
                    "id": new["id"].astype(str).to_numpy(),
                    "source": self.source,
                    "category": new["category"].astype(str).to_numpy(),
                    "t": pd.to_datetime(new["occurred_from"], utc=True).to_numpy(),
                    "x": x,
                    "y": y,
                    "cell": ncells,
                }
            )
            frame["t"] = pd.to_datetime(frame["t"], utc=True)
            alerts = hotspot_alerts(frame, bins, z, self.cfg.hotspot_min_bin, self.cfg.window)
            alerts += near_repeat_alerts(frame, self._recent, self.cfg.near_repeat)
            recent = self._recent
            if self.state.now is not None:
                recent = recent[recent["t"] >= self.state.now - pd.Timedelta(days=self.cfg.near_repeat.days)]
            self._recent = pd.concat([recent, frame], ignore_index=True)
        # Announce first: storing alerts must not delay the map.
        self.broker.publish({"type": "incidents", "source": self.source, "rows": _public_rows(new, ncells, bins)})
        self.alerts.add(alerts)
        if alerts:
            self.broker.publish({"type": "alerts", "source": self.source, "rows": [a.as_dict() for a in alerts]})
        return alerts

    def _clock(self, t: pd.Series, ids: pd.Series, now) -> pd.Timestamp | None:
        """Where the clock may go: the second-latest distinct incident seen (within
        wall clock + 1 day), or ``now`` if later; ``None`` before two are seen."""
        cap = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
        ok = (t <= cap).to_numpy()
        cand = sorted(zip(t[ok].tolist(), ids[ok].tolist()))[-2:]
        top = {i: ts for ts, i in self._top}
        for ts, i in cand:
            top[i] = max(ts, top.get(i, ts))
        self._top = sorted((ts, i) for i, ts in top.items())[-2:]
        support = self._top[0][0] if len(self._top) == 2 else None
        parts = [x for x in (_utc(now) if now is not None else None, support) if x is not None]
        return max(parts) if parts else None

    # --- full recompute / schedule -------------------------------------------
    def recompute(self, now) -> dict:
        """Rebuild the rolling state from the store; returns the drift it fixed."""
        now = _utc(now)
        q = Query(
            source=self.source,
            start=now - pd.Timedelta(self.cfg.window),
            end=now + pd.Timedelta(microseconds=1),
            geolocated=True,
        )  # cells and points only
        df = self.store.incidents(
            q, columns=["id", "occurred_from", "lat", "lon", "category", "source", "h3_r7", "h3_r8", "h3_r9", "h3_r10"]
        )
        with self._lock:
            before = self.state.y.copy()
            self.state.recompute(df["id"].astype(str), df["occurred_from"], _cells(df, self.cfg.res), now)
            drift = int(np.abs(self.state.y - before).sum())
            self._ahead = self._ahead[self._ahead["t"] > now].reset_index(drop=True)
        return {"incidents": int(self.state.total), "drift": drift}

    def scan(self, now, seed: int | None = 0) -> list[Alert]:
        """Run the prospective space-time scan over the last ``scan_period_days``."""
        now = _utc(now)
        local_end = now.tz_convert(self.tz).tz_localize(None).normalize()
        start = local_end - pd.Timedelta(days=self.cfg.scan_period_days - 1)
        df = self.store.incidents(
            Query(source=self.source, start=start, end=local_end + pd.Timedelta(days=1), geolocated=True),
            columns=["occurred_from", "h3_r7", "h3_r8", "h3_r9", "h3_r10"],
        )
        if not len(df):
            return []
        days = df["occurred_from"].dt.tz_convert(self.tz).dt.tz_localize(None).dt.normalize()
        res = space_time_scan(
            _cells(df, self.cfg.res),
            days,
            study_cells=self.cells,
            end_day=local_end,
            period_days=self.cfg.scan_period_days,
            max_days=self.cfg.scan_max_days,
            max_k=self.cfg.scan_max_k,
            replicates=self.cfg.scan_replicates,
            run_every_days=self.cfg.scan_every_days,
            seed=seed,
        )
        alerts = scan_alerts(res, self.source, self.cfg.scan_min_recurrence_days)
        self.alerts.add(alerts)
        if alerts:
            self.broker.publish({"type": "alerts", "source": self.source, "rows": [a.as_dict() for a in alerts]})
        return alerts


def _agency_boundary(source: str, store=None):
    """The boundary of the agency stored with the incidents (else its preset), or None."""
    from ..scope import agency_of

    ag = agency_of(store, source)
    return None if ag is None else ag.boundary()


def _cells(df: pd.DataFrame, res: int) -> np.ndarray:
    from ..store.embedded import cell_column

    return cell_column(df, res)


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _public_rows(df: pd.DataFrame, cells: np.ndarray, bins: np.ndarray) -> list[dict]:
    """What the map needs of an incident; no address (viewers see this stream too)."""
    return [
        {
            "id": str(i),
            "lon": float(lo),
            "lat": float(la),
            "category": str(c),
            "occurred_from": pd.Timestamp(t).isoformat(),
            "cell": int(cell),
            "bin": int(b),
        }
        for i, lo, la, c, t, cell, b in zip(
            df["id"], df["lon"], df["lat"], df["category"], df["occurred_from"], cells, bins
        )
    ]
