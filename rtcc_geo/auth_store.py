"""Security records kept in the store: sessions, failed log-ins, the audit log.

Every worker process of ``rtcc-geo serve`` and every CLI command opens the
same store, so these records live there too and all of them see one truth:

=================  ==============================================  ==========================
record             embedded store (directory ``auth/`` of the      PostGIS (``sql/030_auth.sql``)
                   store)
=================  ==============================================  ==========================
sessions           one JSON file per session, written atomically  table ``auth_sessions``
failed log-ins     one JSON file per key (user or address)        table ``auth_failures``
audit log          ``audit.jsonl``, appended under a file lock    table ``audit_log`` (a trigger
                                                                  refuses UPDATE, DELETE, TRUNCATE)
=================  ==============================================  ==========================

A session is found by the SHA-256 of its cookie token, never the token
itself, so a copy of the store gives nobody a live session.

>>> rec = records_for(store)                                  # doctest: +SKIP
>>> token = rec.create_session("chief", lifetime_s=12 * 3600)  # doctest: +SKIP
>>> rec.session(token).user                                   # doctest: +SKIP
'chief'
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import psycopg

#: Audit actions, the only values ``action`` takes.
ACTIONS: tuple[str, ...] = (
    "login",
    "login_failed",
    "login_locked",
    "account_locked",
    "logout",
    "drill",
    "export",
    "alert_ack",
    "user_add",
    "user_password",
    "user_role",
    "user_remove",
    "user_unlock",
    "feed_batch",
)
AUDIT_COLUMNS = ("at", "user", "action", "address", "detail")


@dataclass(frozen=True)
class Session:
    user: str
    created: float  # epoch seconds
    last_seen: float
    expires: float  # absolute end (created + lifetime)


@dataclass(frozen=True)
class Failures:
    count: int  # consecutive failures since the last success or lock
    locks: int  # locks so far (the next lock lasts twice as long)
    locked_until: float  # epoch seconds; 0 when not locked


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class AuthRecords(abc.ABC):
    """Sessions, failed log-ins and the audit log of one store."""

    _store: object = None  # the store a cached instance serves (set by the cache below)

    # --- sessions --------------------------------------------------------
    def create_session(self, user: str, lifetime_s: float) -> str:
        """A new session for ``user``; returns the token for the cookie."""
        if lifetime_s <= 0:
            raise ValueError("session lifetime must be positive")
        token = secrets.token_urlsafe(32)
        now = time.time()
        self._put_session(_digest(token), Session(user, now, now, now + float(lifetime_s)))
        return token

    def session(self, token: str) -> Session | None:
        """The live session of ``token`` (``None`` when unknown, revoked or past its end)."""
        if not token:
            return None
        s = self._get_session(_digest(token))
        if s is not None and s.expires <= time.time():
            self._delete_session(_digest(token))
            return None
        return s

    def touch(self, token: str, s: Session) -> None:
        """Record activity on a session (for the idle timeout)."""
        self._put_session(_digest(token), Session(s.user, s.created, time.time(), s.expires))

    def revoke(self, token: str) -> None:
        self._delete_session(_digest(token))

    @abc.abstractmethod
    def revoke_user(self, user: str) -> int:
        """End every session of ``user``; returns how many."""

    @abc.abstractmethod
    def _put_session(self, key: str, s: Session) -> None: ...

    @abc.abstractmethod
    def _get_session(self, key: str) -> Session | None: ...

    @abc.abstractmethod
    def _delete_session(self, key: str) -> None: ...

    # --- failed log-ins ----------------------------------------------------
    @abc.abstractmethod
    def failures(self, key: str) -> Failures:
        """Failure state of ``key`` (``user:NAME`` or ``addr:IP``)."""

    @abc.abstractmethod
    def record_failure(self, key: str, limit: int, lock_s: float, max_lock_s: float) -> Failures:
        """Count one failure; at ``limit`` consecutive failures lock the key for
        ``lock_s * 2**locks`` seconds (at most ``max_lock_s``) and restart the count."""

    @abc.abstractmethod
    def clear_failures(self, key: str) -> None: ...

    # --- audit log ---------------------------------------------------------
    @abc.abstractmethod
    def audit(self, action: str, user: str | None, detail: dict | None = None, address: str | None = None) -> None:
        """Append one entry (never edits or removes one)."""

    @abc.abstractmethod
    def read_audit(self, start=None, end=None, user: str | None = None) -> pd.DataFrame:
        """Entries with ``start <= at < end`` (UTC; ``None``: open), oldest first:
        columns :data:`AUDIT_COLUMNS` (``detail`` a dict)."""


def _check_action(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    return action


def _next_failures(f: Failures, now: float, limit: int, lock_s: float, max_lock_s: float) -> Failures:
    """Pure transition of the failure counter (shared by both engines)."""
    if f.locked_until and f.locked_until <= now:
        f = Failures(0, f.locks, 0.0)
    count = f.count + 1
    if count >= limit:
        return Failures(0, f.locks + 1, now + min(max_lock_s, lock_s * 2**f.locks))
    return Failures(count, f.locks, f.locked_until)


def _bound(ts) -> pd.Timestamp | None:
    if ts is None:
        return None
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))
    df["at"] = pd.to_datetime(df["at"], utc=True)
    for c in ("user", "address"):  # None, never NaN (JSON output)
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


# --- embedded: files under <store>/auth --------------------------------------


class FileRecords(AuthRecords):
    """The records of an embedded store: files under ``<root>/auth``."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / "auth"
        (self.dir / "sessions").mkdir(parents=True, exist_ok=True)
        (self.dir / "failures").mkdir(parents=True, exist_ok=True)
        self._audit = self.dir / "audit.jsonl"

    @contextlib.contextmanager
    def _locked(self):
        # One lock file for every read-modify-write: across threads and processes.
        with open(self.dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write(self, path: Path, obj: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(obj, fh)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    # sessions
    def _put_session(self, key: str, s: Session) -> None:
        self._write(self.dir / "sessions" / f"{key}.json", s.__dict__)

    def _get_session(self, key: str) -> Session | None:
        d = self._read(self.dir / "sessions" / f"{key}.json")
        return None if d is None else Session(**d)

    def _delete_session(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "sessions" / f"{key}.json").unlink()

    def revoke_user(self, user: str) -> int:
        n, now = 0, time.time()
        for p in (self.dir / "sessions").glob("*.json"):
            d = self._read(p)
            if d is not None and (d.get("user") == user or d.get("expires", 0) <= now):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += d.get("user") == user
        return n

    # failures
    def _fpath(self, key: str) -> Path:
        return self.dir / "failures" / f"{_digest(key)}.json"

    def failures(self, key: str) -> Failures:
        d = self._read(self._fpath(key))
        return Failures(0, 0, 0.0) if d is None else Failures(**d)

    def record_failure(self, key, limit, lock_s, max_lock_s) -> Failures:
        with self._locked():
            f = _next_failures(self.failures(key), time.time(), limit, lock_s, max_lock_s)
            self._write(self._fpath(key), f.__dict__)
        return f

    def clear_failures(self, key: str) -> None:
        with self._locked():
            f = self.failures(key)
            if f.count or f.locked_until:
                # Keep the lock count: the next lock-out still lasts longer.
                self._write(self._fpath(key), Failures(0, f.locks, 0.0).__dict__)

    # audit
    def audit(self, action, user, detail=None, address=None) -> None:
        line = json.dumps(
            {
                "at": pd.Timestamp.now(tz="UTC").isoformat(),
                "user": user,
                "action": _check_action(action),
                "address": address,
                "detail": detail or {},
            },
            default=str,
            sort_keys=True,
        )
        with self._locked():
            # O_APPEND: the file is only ever appended to, never rewritten.
            fd = os.open(self._audit, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def read_audit(self, start=None, end=None, user=None) -> pd.DataFrame:
        lo, hi = _bound(start), _bound(end)
        rows = []
        try:
            with open(self._audit, encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    d = json.loads(line)
                    t = pd.Timestamp(d["at"])
                    if (lo is not None and t < lo) or (hi is not None and t >= hi):
                        continue
                    if user is not None and d.get("user") != user:
                        continue
                    rows.append({k: d.get(k) for k in AUDIT_COLUMNS})
        except FileNotFoundError:
            pass
        return _frame(rows)


# --- PostGIS: tables of sql/030_auth.sql ---------------------------------------


class PostGISRecords(AuthRecords):
    """The records of a PostGIS store, on a connection of their own (the
    store's is serialised for long queries; a session check must not wait)."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def _x(self, sql: str, params=(), fetch: bool = False):
        import psycopg

        with self._lock:
            for attempt in (0, 1):
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                try:
                    cur = self._conn.execute(sql, params)
                    return cur.fetchall() if fetch else None
                except psycopg.OperationalError:
                    if attempt:
                        raise
                    self._conn = None

    def _put_session(self, key, s) -> None:
        self._x(
            "INSERT INTO auth_sessions (sid_hash, username, created, last_seen, expires) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (sid_hash) DO UPDATE SET last_seen = EXCLUDED.last_seen",
            (key, s.user, s.created, s.last_seen, s.expires),
        )

    def _get_session(self, key):
        rows = self._x(
            "SELECT username, created, last_seen, expires FROM auth_sessions WHERE sid_hash = %s", (key,), fetch=True
        )
        return Session(*rows[0]) if rows else None

    def _delete_session(self, key) -> None:
        self._x("DELETE FROM auth_sessions WHERE sid_hash = %s", (key,))

    def revoke_user(self, user: str) -> int:
        rows = self._x(
            "DELETE FROM auth_sessions WHERE username = %s OR expires <= %s RETURNING username",
            (user, time.time()),
            fetch=True,
        )
        return sum(r[0] == user for r in rows)

    def failures(self, key: str) -> Failures:
        rows = self._x("SELECT count, locks, locked_until FROM auth_failures WHERE key = %s", (key,), fetch=True)
        return Failures(*rows[0]) if rows else Failures(0, 0, 0.0)

    def record_failure(self, key, limit, lock_s, max_lock_s) -> Failures:
        import psycopg

        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            with self._conn.transaction():
                self._conn.execute("INSERT INTO auth_failures (key) VALUES (%s) ON CONFLICT DO NOTHING", (key,))
                row = self._conn.execute(
                    "SELECT count, locks, locked_until FROM auth_failures WHERE key = %s FOR UPDATE", (key,)
                ).fetchone()
                assert row is not None  # inserted just above
                f = _next_failures(Failures(*row), time.time(), limit, lock_s, max_lock_s)
                self._conn.execute(
                    "UPDATE auth_failures SET count = %s, locks = %s, locked_until = %s WHERE key = %s",
                    (f.count, f.locks, f.locked_until, key),
                )
        return f

    def clear_failures(self, key: str) -> None:
        self._x("UPDATE auth_failures SET count = 0, locked_until = 0 WHERE key = %s", (key,))

    def audit(self, action, user, detail=None, address=None) -> None:
        self._x(
            "INSERT INTO audit_log (username, action, address, detail) VALUES (%s, %s, %s, %s)",
            (user, _check_action(action), address, json.dumps(detail or {}, default=str, sort_keys=True)),
        )

    def read_audit(self, start=None, end=None, user=None) -> pd.DataFrame:
        where, params = [], []
        for cond, v in (("at >= %s", _bound(start)), ("at < %s", _bound(end)), ("username = %s", user)):
            if v is not None:
                where.append(cond)
                params.append(v.to_pydatetime() if isinstance(v, pd.Timestamp) else v)
        rows = self._x(
            "SELECT at, username, action, address, detail FROM audit_log"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id",
            params,
            fetch=True,
        )
        return _frame([dict(zip(AUDIT_COLUMNS, r)) for r in rows])


_CACHE: dict[int, AuthRecords] = {}
_CACHE_LOCK = threading.Lock()


def records_for(store) -> AuthRecords:
    """The security records of ``store`` (one object per store object)."""
    with _CACHE_LOCK:
        rec = _CACHE.get(id(store))
        if rec is None or getattr(rec, "_store", None) is not store:
            if getattr(store, "kind", "") == "postgis":
                rec = PostGISRecords(store.url)
            elif hasattr(store, "root"):
                rec = FileRecords(store.root)
            else:
                raise TypeError(f"no security records for {type(store).__name__}")
            rec._store = store
            _CACHE[id(store)] = rec
        return rec
