"""Log-in, log-out and the session guard in front of every route.

Users and their salted scrypt hashes live in the store (:mod:`rtcc_geo.auth`).
A signed Flask session cookie carries the user name; every request except
``/login`` needs one, including Dash's own routes (``/_dash-layout``,
``/_dash-dependencies``, ``/_dash-update-component``, component bundles).
The role is re-read from the store (cached a few seconds), so removing a
user or changing a role takes effect on the next request after that.
Callbacks ask :func:`current_role` and decide what they may return: roles
without incident access never get incident rows, whatever the browser sends.
"""

from __future__ import annotations

import datetime
import html
import secrets
import threading
import time
from urllib.parse import quote, urlparse

import flask

from rtcc_geo.auth import INCIDENT_ROLES, PLANNER_ROLES, Users

PUBLIC_PATHS = frozenset({"/login", "/logout"})
#: Routes that authenticate machines by bearer token instead of a session (the live feed).
TOKEN_PATHS = ("/api/feed/",)
_ROLE_TTL_S = 5.0
SESSION_HOURS = 12


class Guard:
    """Installs the login routes and the ``before_request`` check on a Flask server."""

    def __init__(self, server: flask.Flask, users: Users, title: str = "rtcc-geo", prefix: str = "/"):
        self.users = users
        self.title = title
        self.prefix = prefix.rstrip("/")
        self._roles: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()
        # A session lasts one long shift at most (12 h), then the user logs in again.
        server.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                             SESSION_COOKIE_NAME="rtcc_session",
                             PERMANENT_SESSION_LIFETIME=datetime.timedelta(hours=SESSION_HOURS))
        server.before_request(self.check)
        server.add_url_rule("/login", "rtcc_login", self.login, methods=["GET", "POST"])
        server.add_url_rule("/logout", "rtcc_logout", self.logout, methods=["GET", "POST"])

    # --- per-request check -------------------------------------------------
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

    def check(self):
        path = flask.request.path
        if path in PUBLIC_PATHS or path.startswith(TOKEN_PATHS):
            return None
        user = flask.session.get("user")
        role = self.role_of(user) if user else None
        if role is None:
            flask.session.clear()
            if path.startswith(("/_", "/geo/", "/api/")) or flask.request.method != "GET":
                return flask.Response('{"error": "log in first (POST /login)"}', status=401,
                                      mimetype="application/json")
            # Quoted: a shared map view's own query (?layer=...&start=...) survives the log-in.
            return flask.redirect(f"/login?next={quote(_safe_next(flask.request.full_path), safe='/')}")
        flask.g.rtcc_user, flask.g.rtcc_role = user, role
        return None

    # --- routes ------------------------------------------------------------
    def login(self):
        err = ""
        nxt = _safe_next(flask.request.values.get("next", "/"))
        if flask.request.method == "POST":
            user = (flask.request.form.get("username") or "").strip()
            pw = flask.request.form.get("password") or ""
            role = self.users.authenticate(user, pw) if user else None
            if role is not None:
                flask.session.clear()
                flask.session.permanent = True
                flask.session["user"] = user
                flask.session["sid"] = secrets.token_hex(8)
                with self._lock:
                    self._roles[user] = (time.monotonic(), role)
                return flask.redirect(nxt)
            err = "Wrong user name or password."
        return flask.Response(_LOGIN_HTML.format(title=html.escape(self.title), err=html.escape(err),
                                                 next=html.escape(nxt)),
                              status=401 if err else 200, mimetype="text/html")

    def logout(self):
        flask.session.clear()
        return flask.redirect("/login")


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
    if u.scheme or u.netloc or not nxt.startswith("/") or nxt.startswith("//") or nxt.startswith("/login"):
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
