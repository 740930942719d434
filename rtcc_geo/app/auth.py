"""Log-in, log-out, sessions and the guard in front of every route.

Sessions are server-side records in the store (:mod:`rtcc_geo.auth_store`),
so every worker process sees the same ones. The cookie ``rtcc_session``
carries a random token only; each request looks its session up, so a
log-out, a password or role change, or the user's removal (``rtcc-geo
users``) ends it at once, in every worker. A session ends after
:attr:`Options.session_hours` (one shift, default 12 h) whatever happens,
and after :attr:`Options.idle_minutes` without a request.

Every request except ``GET/POST /login`` needs a live session, including
Dash's own routes; without one the answer is **401** (a page request gets
the log-in form with that status). State-changing requests (POST and the
like, Dash callbacks included) must come from this site: an ``Origin`` (or,
without one, a ``Referer``) naming another origin is refused with 403. The
log-in form also carries a CSRF token (double submit: a cookie and a form
field, HMAC-signed with the app's secret key). Log-out is POST only.

Failed log-ins are counted per user name and per client address in the
store: :attr:`Options.lock_after` (20) failures in a row lock the account
for :attr:`Options.lock_minutes`, doubling with each further lock-out (at
most a day); ``rtcc-geo users unlock NAME`` lifts it. Each log-in, failure,
lock-out and log-out is one entry in the audit log.

Callbacks ask :func:`current_role` and decide what they may return: roles
without incident access never get incident rows, whatever the browser sends.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, fields
from typing import ClassVar
from urllib.parse import urlparse

import flask

from rtcc_geo.auth import INCIDENT_ROLES, PLANNER_ROLES, Users
from rtcc_geo.auth_store import records_for

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/login"})
#: Routes that authenticate machines by bearer token instead of a session (the live feed).
TOKEN_PATHS = ("/api/feed/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
COOKIE = "rtcc_session"
CSRF_COOKIE = "rtcc_csrf"
_ROLE_TTL_S = 1.0
SESSION_HOURS = 12


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Options:
    """Session and log-in settings; each has an environment variable (the serve
    flags set them, so every worker process of a server gets the same)."""

    session_hours: float = SESSION_HOURS  # RTCC_SESSION_HOURS: absolute lifetime (one shift)
    idle_minutes: float = 60.0  # RTCC_IDLE_MINUTES: ends after this long without a request
    secure_cookies: bool = False  # RTCC_SECURE_COOKIES: cookies only over https
    trust_proxy: bool = False  # RTCC_TRUST_PROXY: believe X-Forwarded-Proto/-For/-Host (one proxy)
    lock_after: int = 20  # failed log-ins in a row that lock a user name
    address_lock_after: int = 100  # ... or a client address
    lock_minutes: float = 15.0  # RTCC_LOCK_MINUTES: first lock-out; doubles each time, at most a day

    _ENV: ClassVar[dict[str, str]] = {
        "session_hours": "RTCC_SESSION_HOURS",
        "idle_minutes": "RTCC_IDLE_MINUTES",
        "secure_cookies": "RTCC_SECURE_COOKIES",
        "trust_proxy": "RTCC_TRUST_PROXY",
        "lock_minutes": "RTCC_LOCK_MINUTES",
    }

    @classmethod
    def from_env(cls) -> Options:
        kw = {}
        for f in fields(cls):
            var = cls._ENV.get(f.name)
            if var is None or os.environ.get(var, "").strip() == "":
                continue
            kw[f.name] = _env_bool(var) if f.type in ("bool", bool) else float(os.environ[var])
        o = cls(**kw)
        if o.session_hours <= 0 or o.idle_minutes <= 0 or o.lock_minutes <= 0:
            raise ValueError("session hours, idle minutes and lock minutes must be positive")
        return o


class Guard:
    """Installs the log-in routes and the ``before_request`` check on a Flask server."""

    def __init__(
        self,
        server: flask.Flask,
        users: Users,
        title: str = "rtcc-geo",
        prefix: str = "/",
        options: Options | None = None,
    ):
        self.users = users
        self.records = records_for(users.store)
        self.options = options or Options.from_env()
        self.title = title
        self.prefix = prefix.rstrip("/")
        self._key = server.secret_key or secrets.token_hex(32)
        self._key = self._key.encode() if isinstance(self._key, str) else self._key
        self._roles: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        if self.options.trust_proxy:
            from werkzeug.middleware.proxy_fix import ProxyFix

            server.wsgi_app = ProxyFix(server.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]  # Flask's documented way
        server.extensions["rtcc_guard"] = self
        server.before_request(self.check)
        server.add_url_rule("/login", "rtcc_login", self.login, methods=["GET", "POST"])
        server.add_url_rule("/logout", "rtcc_logout", self.logout, methods=["POST"])

    # --- helpers -------------------------------------------------------------
    def _secure(self) -> bool:
        return self.options.secure_cookies or flask.request.scheme == "https"

    def _set_cookie(self, resp: flask.Response, name: str, value: str, max_age: int | None) -> None:
        resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Lax", secure=self._secure())

    def _csrf_new(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return nonce + "." + hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def _csrf_ok(self) -> bool:
        got = flask.request.form.get("csrf_token") or ""
        have = flask.request.cookies.get(CSRF_COOKIE) or ""
        nonce, _, mac = have.partition(".")
        want = hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()
        return bool(got) and hmac.compare_digest(got, have) and hmac.compare_digest(mac, want)

    @staticmethod
    def same_origin() -> bool:
        """Whether a state-changing request comes from this site (Origin, else Referer)."""
        req = flask.request
        here = f"{req.scheme}://{req.host}".lower()
        origin = req.headers.get("Origin")
        if origin is not None:
            return origin.lower().rstrip("/") == here
        ref = req.headers.get("Referer")
        if ref:
            u = urlparse(ref)
            return f"{u.scheme}://{u.netloc}".lower() == here
        # Neither header: not a browser's cross-site request (browsers send Origin on
        # cross-origin POSTs, and the Lax cookie is not sent with them anyway).
        return True

    def address(self) -> str:
        return flask.request.remote_addr or "?"

    def audit(self, action: str, user: str | None, detail: dict | None = None) -> None:
        try:
            self.records.audit(action, user, detail, address=self.address() if flask.has_request_context() else None)
        except Exception as e:  # never hidden: logged loudly, then the request fails
            log.error("audit log write failed for %s by %s: %s", action, user, e)
            raise

    def role_of(self, username: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            hit = self._roles.get(username)
        if hit and now - hit[0] < _ROLE_TTL_S:
            return hit[1]
        role = self.users.role(username)
        with self._lock:
            self._roles[username] = (now, role)
        return role

    # --- per-request check -------------------------------------------------
    def check(self):
        req = flask.request
        path = req.path
        if path.startswith(TOKEN_PATHS):
            return None
        if req.method not in SAFE_METHODS and not self.same_origin():
            return _json_error("refused: this request did not come from this site", 403)
        if path in PUBLIC_PATHS:
            return None
        token = req.cookies.get(COOKIE) or ""
        s = self.records.session(token) if token else None
        now = time.time()
        idle_s = self.options.idle_minutes * 60.0
        if s is not None and now - s.last_seen > idle_s:
            self.records.revoke(token)
            s = None
        role = self.role_of(s.user) if s is not None else None
        if role is None:
            if req.method == "GET" and not path.startswith(("/_", "/geo/", "/api/", "/assets/", "/static/")):
                resp = self._login_page(_safe_next(req.full_path), "", 401)
            else:
                resp = _json_error("log in first (POST /login)", 401)
            if token:
                resp.delete_cookie(COOKIE, path="/")
            return resp
        if now - s.last_seen > min(60.0, idle_s / 4):
            self.records.touch(token, s)
        flask.g.rtcc_user, flask.g.rtcc_role = s.user, role
        return None

    # --- routes ------------------------------------------------------------
    def _login_page(self, nxt: str, err: str, status: int) -> flask.Response:
        token = flask.request.cookies.get(CSRF_COOKIE) or ""
        nonce, _, mac = token.partition(".")
        if not (mac and hmac.compare_digest(mac, hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest())):
            token = self._csrf_new()
        resp = flask.Response(
            _LOGIN_HTML.format(
                title=html.escape(self.title), err=html.escape(err), next=html.escape(nxt), csrf=html.escape(token)
            ),
            status=status,
            mimetype="text/html",
        )
        resp.headers["Cache-Control"] = "no-store"
        self._set_cookie(resp, CSRF_COOKIE, token, None)
        return resp

    def login(self):
        req = flask.request
        nxt = _safe_next(req.values.get("next", "/"))
        if req.method != "POST":
            return self._login_page(nxt, "", 200)
        if not self._csrf_ok():
            return self._login_page(
                nxt, "The log-in form had expired or did not come from this site: please try again.", 403
            )
        user = (req.form.get("username") or "").strip()[:128]
        pw = req.form.get("password") or ""
        if not user:
            return self._login_page(nxt, "Wrong user name or password.", 401)
        o = self.options
        keys = (f"user:{user}", f"addr:{self.address()}")
        now = time.time()
        locked = max(self.records.failures(k).locked_until for k in keys)
        if locked > now:
            self.audit("login_locked", user, {"until": _iso(locked)})
            mins = max(1, round((locked - now) / 60))
            return self._login_page(
                nxt,
                f"Too many failed log-ins: try again in {mins} minute{'s' if mins != 1 else ''}, or ask a commander.",
                429,
            )
        role = self.users.authenticate(user, pw)
        if role is None:
            self.audit("login_failed", user)
            for k, limit in zip(keys, (o.lock_after, o.address_lock_after)):
                f = self.records.record_failure(k, limit, o.lock_minutes * 60, 24 * 3600)
                if f.locked_until > now:
                    self.audit(
                        "account_locked", user, {"key": k.split(":")[0], "until": _iso(f.locked_until), "lock": f.locks}
                    )
            return self._login_page(nxt, "Wrong user name or password.", 401)
        for k in keys:
            self.records.clear_failures(k)
        old = req.cookies.get(COOKIE)
        if old:
            self.records.revoke(old)
        token = self.records.create_session(user, o.session_hours * 3600)
        with self._lock:
            self._roles[user] = (time.monotonic(), role)
        self.audit("login", user, {"role": role})
        resp = flask.redirect(nxt)
        self._set_cookie(resp, COOKIE, token, int(o.session_hours * 3600) or 1)
        return resp

    def logout(self):
        token = flask.request.cookies.get(COOKIE) or ""
        s = self.records.session(token) if token else None
        if s is not None:
            self.records.revoke(token)
            self.audit("logout", s.user)
        resp = flask.redirect("/login", code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _json_error(msg: str, status: int) -> flask.Response:
    import json

    return flask.Response(json.dumps({"error": msg}), status=status, mimetype="application/json")


def guard() -> Guard | None:
    try:
        return flask.current_app.extensions.get("rtcc_guard")
    except RuntimeError:
        return None


def audit(action: str, detail: dict | None = None) -> None:
    """Log ``action`` by the signed-in user of this request (see :mod:`rtcc_geo.auth_store`)."""
    g = guard()
    if g is None:
        raise RuntimeError("no guard on this app: cannot write the audit log")
    g.audit(action, current_user(), detail)


def feed_audit(store):
    """``on_batch`` for the feed blueprint: one audit entry per stored batch, naming
    the token (``source#n``, never the token itself)."""
    rec = records_for(store)

    def on_batch(source: str, token: str, result) -> None:
        rec.audit(
            "feed_batch",
            f"feed:{token}",
            {
                "source": source,
                "received": result.received,
                "loaded": result.loaded,
                "quarantined": result.quarantined,
                "duplicates": result.duplicates,
            },
            address=flask.request.remote_addr if flask.has_request_context() else None,
        )

    return on_batch


def session_alive() -> bool:
    """Whether this request's session still lives (asked by long-lived responses: the
    live event stream ends within a second of a log-out or revocation)."""
    g = guard()
    token = flask.request.cookies.get(COOKIE) or ""
    if g is None or not token:
        return False
    s = g.records.session(token)
    return s is not None and time.time() - s.last_seen <= g.options.idle_minutes * 60.0


def current_user() -> str | None:
    return getattr(flask.g, "rtcc_user", None)


def current_role() -> str | None:
    """The logged-in user's role for this request (None outside a request or when anonymous)."""
    try:
        return getattr(flask.g, "rtcc_role", None)
    except RuntimeError:
        return None


def may_see_incidents(role: str | None = None) -> bool:
    return (role if role is not None else current_role()) in INCIDENT_ROLES


def may_plan(role: str | None = None) -> bool:
    return (role if role is not None else current_role()) in PLANNER_ROLES


def _safe_next(nxt: str | None) -> str:
    """Only same-site relative paths (no open redirect)."""
    nxt = (nxt or "/").rstrip("?")
    u = urlparse(nxt)
    if u.scheme or u.netloc or not nxt.startswith("/") or nxt.startswith(("//", "/login")):
        return "/"
    return nxt


# No external fonts, scripts or images: the page works offline.
_LOGIN_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#eef0f2;margin:0}}
form{{max-width:320px;margin:12vh auto;background:#fff;padding:28px 32px;border-radius:8px;
box-shadow:0 2px 10px rgba(0,0,0,.08)}}
h1{{font-size:20px;margin:0 0 18px}} label{{display:block;font-size:13px;margin:12px 0 4px;color:#333}}
input{{width:100%;box-sizing:border-box;padding:8px;font-size:15px;border:1px solid #bbb;border-radius:4px}}
button{{margin-top:18px;width:100%;padding:9px;font-size:15px;background:#1d2731;color:#fff;border:0;border-radius:4px}}
.err{{color:#b00020;font-size:13px;margin-top:10px}}
</style></head><body>
<form method="post" action="/login" id="login-form">
<h1>{title}</h1>
<input type="hidden" name="next" value="{next}">
<input type="hidden" name="csrf_token" value="{csrf}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit" id="login-button">Log in</button>
<div class="err" id="login-error">{err}</div>
</form></body></html>
"""


def require(roles=None) -> str:
    """The caller's role, or abort with 401/403: the second lock on every data callback
    (the first is :meth:`Guard.check`)."""
    role = current_role()
    if role is None:
        flask.abort(401)
    if roles is not None and role not in roles:
        flask.abort(403)
    return role
