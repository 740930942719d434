"""Users of the commander app: roles and salted password hashes, kept in the store.

Users live in the store's derived table ``users`` (``Store.put_table`` /
``get_table``), so they follow the data: an embedded store directory or a
PostGIS database carries its own users, and no separate user database exists.

Roles
-----
commander
    Every map layer, cell drill-down with the recent-incident table, exports.
analyst
    Same data access as a commander (incident rows included).
planner
    The staffing planner page and the aggregated map; no incident rows.
viewer
    The aggregated map only: cell counts and statistics, never incident rows,
    blocks or coordinates of single incidents.

Passwords: at least :data:`MIN_PASSWORD` (12) characters, and not one of the
common passwords shipped in ``data/security/common_passwords.txt`` (30,000
from leaked-password corpora), nor one of them with digits or symbols added
(``password1234!``), nor the user name (:func:`check_password`).

Every change of a user (added, password or role changed, removed) ends that
user's open sessions at once and leaves one entry in the audit log
(:mod:`rtcc_geo.auth_store`).

Passwords are hashed with scrypt (:func:`hashlib.scrypt`, a memory-hard KDF
in the standard library) with a random 16-byte salt per user; the stored
string is ``scrypt$n$r$p$salt_hex$hash_hex`` so the cost can be raised later
without invalidating old hashes.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import hmac
import re
import secrets

import pandas as pd

from .auth_store import records_for
from .config import DATA_DIR
from .store.base import Store

#: Roles, most to least privileged.
ROLES: tuple[str, ...] = ("commander", "analyst", "planner", "viewer")
#: Roles allowed to see incident-level rows (ids, times, offense text, blocks).
INCIDENT_ROLES = frozenset({"commander", "analyst"})
#: Roles allowed on the staffing planner page.
PLANNER_ROLES = frozenset({"commander", "analyst", "planner"})

TABLE = "users"
COLUMNS = ("username", "role", "password_hash", "created_at")

# scrypt cost: n=2**14, r=8, p=1 is the interactive-login setting the scrypt
# paper recommends (about 16 MiB and ~50 ms a check).
_N, _R, _P = 2**14, 8, 1
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 12


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased."""
    text = (DATA_DIR / "security" / "common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(w for w in (line.strip() for line in text.splitlines()) if w and not w.startswith("#"))


def check_password(password: str, username: str | None = None) -> None:
    """Raise :class:`ValueError` (saying why) unless ``password`` may be used.

    Refused: shorter than :data:`MIN_PASSWORD`; a common password, or a common
    one with digits/symbols around it (``Password1234!``); one character or a
    two-character pattern repeated; digits only; the user name in it.
    """
    pw = password or ""
    if len(pw) < MIN_PASSWORD:
        raise ValueError(
            f"password too short: use at least {MIN_PASSWORD} characters (a few unrelated words make a good one)"
        )
    low = pw.lower()
    common = common_passwords()
    core = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", low)
    if low in common or (core and core in common) or low.strip("0123456789") in common:
        raise ValueError("that password is on the list of common passwords: choose another")
    if len(set(low)) <= 2:
        raise ValueError("that password repeats one or two characters: choose another")
    if low.isdigit():
        raise ValueError("that password is only digits: use words")
    if username and len(username) >= 3 and username.lower() in low:
        raise ValueError("the password must not contain the user name")


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """Salted scrypt hash of ``password`` as ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=2**26, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${dk.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` string (constant-time compare)."""
    try:
        algo, n, r, p, salt, want = stored.split("$")
        if algo != "scrypt":
            return False
        dk = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=2**26,
            dklen=len(want) // 2,
        )
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(dk.hex(), want)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "username": pd.Series(dtype="string"),
            "role": pd.Series(dtype="string"),
            "password_hash": pd.Series(dtype="string"),
            "created_at": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )


class Users:
    """The ``users`` table of a store.

    >>> users = Users(store)
    >>> users.add("chief", "a long passphrase", role="commander")
    >>> users.authenticate("chief", "a long passphrase")
    'commander'
    """

    def __init__(self, store: Store, actor: str | None = None):
        self.store = store
        #: Who makes changes (the audit log's user): the app user, else the OS user.
        self.actor = actor or f"cli:{_os_user()}"

    @property
    def records(self):
        return records_for(self.store)

    def _changed(self, action: str, username: str, detail: dict | None = None) -> int:
        """End the user's sessions and log the change; returns the sessions ended."""
        n = self.records.revoke_user(username)
        self.records.audit(action, self.actor, {"username": username, **(detail or {}), "sessions_ended": n})
        return n

    def table(self) -> pd.DataFrame:
        df = self.store.get_table(TABLE)
        return _empty() if df is None else df

    def list(self) -> pd.DataFrame:
        """Users without their hashes: ``username``, ``role``, ``created_at``."""
        return self.table().loc[:, ["username", "role", "created_at"]].sort_values("username").reset_index(drop=True)

    def add(self, username: str, password: str, role: str, *, replace: bool = False) -> None:
        """Add a user (or, with ``replace``, change an existing user's password and role)."""
        if not _USERNAME.fullmatch(username or ""):
            raise ValueError(f"bad user name {username!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        check_password(password, username)
        pw_hash = hash_password(password)  # slow on purpose: outside the table's lock
        # Read and rewrite under the table's lock: two admins adding users at once
        # (CLI, or two serve workers) must not drop each other's user.
        with self.store.table_lock(TABLE):
            df = self.table()
            exists = df["username"].eq(username).fillna(False).to_numpy(dtype=bool)
            if exists.any() and not replace:
                raise ValueError(f"user {username!r} exists; pass replace=True (CLI: --replace) to change it")
            row = pd.DataFrame(
                {
                    "username": pd.Series([username], dtype="string"),
                    "role": pd.Series([role], dtype="string"),
                    "password_hash": pd.Series([pw_hash], dtype="string"),
                    "created_at": pd.Series([pd.Timestamp.now(tz="UTC")], dtype="datetime64[ns, UTC]"),
                }
            )
            keep = df.loc[~exists]
            out = row if not len(keep) else pd.concat([keep, row], ignore_index=True)
            self.store.put_table(TABLE, out.astype({"username": "string", "role": "string", "password_hash": "string"}))
        if exists.any():
            old = str(df.loc[exists, "role"].iloc[0])
            if old != role:  # one change, one entry
                self._changed("user_role", username, {"from": old, "to": role, "password_changed": True})
            else:
                self._changed("user_password", username)
        else:
            self._changed("user_add", username, {"role": role})

    def set_password(self, username: str, password: str) -> None:
        """Change a user's password (their open sessions end)."""
        role = self.role(username)
        if role is None:
            raise ValueError(f"no user {username!r}")
        self.add(username, password, role, replace=True)

    def set_role(self, username: str, role: str) -> None:
        """Change a user's role, keeping the password (their open sessions end)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        with self.store.table_lock(TABLE):
            df = self.table()
            hit = df["username"].eq(username).fillna(False).to_numpy(dtype=bool)
            if not hit.any():
                raise ValueError(f"no user {username!r}")
            old = str(df.loc[hit, "role"].iloc[0])
            df.loc[hit, "role"] = role
            self.store.put_table(TABLE, df.reset_index(drop=True))
        self._changed("user_role", username, {"from": old, "to": role})

    def unlock(self, username: str) -> None:
        """Lift a lock-out after failed log-ins."""
        self.records.clear_failures(f"user:{username}")
        self.records.audit("user_unlock", self.actor, {"username": username})

    def remove(self, username: str) -> bool:
        """Remove a user; ``False`` if there was none of that name."""
        with self.store.table_lock(TABLE):
            df = self.table()
            hit = df["username"].eq(username).fillna(False).to_numpy(dtype=bool)
            if not hit.any():
                return False
            self.store.put_table(TABLE, df.loc[~hit].reset_index(drop=True))
        self._changed("user_remove", username)
        return True

    def role(self, username: str) -> str | None:
        """The user's role, or ``None`` if the user does not exist."""
        df = self.table()
        hit = df.loc[df["username"].eq(username).fillna(False).to_numpy(dtype=bool)]
        return None if hit.empty else str(hit["role"].iloc[0])

    def authenticate(self, username: str, password: str) -> str | None:
        """The user's role if the password is right, else ``None``."""
        df = self.table()
        hit = df.loc[df["username"].eq(username).fillna(False).to_numpy(dtype=bool)]
        if hit.empty:
            # Spend the same time as a real check so timing does not reveal user names.
            verify_password(password, _dummy_hash())
            return None
        if not verify_password(password, str(hit["password_hash"].iloc[0])):
            return None
        return str(hit["role"].iloc[0])


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in a container
        return "unknown"


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password(secrets.token_hex(8)))
    return _DUMMY[0]
