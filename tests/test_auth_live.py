"""Sessions, log-in hardening, audit log and small-count suppression against the
REAL ``rtcc-geo serve`` process (started with the CLI, spoken to over HTTP).

One embedded store (Philadelphia, November 2024) is served twice at once:
server A with the defaults (12 h sessions), server B with a tiny absolute
lifetime and idle timeout. Both are separate processes on one store, so a
session made on A must work on B (sessions live in the store, not in a
process), and a revocation by a third process (the ``rtcc-geo users`` CLI)
must reach both.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.auth import Users
from rtcc_geo.store.base import Query
from rtcc_geo.store.embedded import EmbeddedStore

PW = "amber-kettle-orbit"
USERS = {
    "chief": "commander",
    "vic": "viewer",
    "plan": "planner",
    "gone": "analyst",
    "pwd": "analyst",
    "roled": "analyst",
    "locky": "viewer",
    "audi": "commander",
}
PHL_TOKEN = "phl-feed-token-0123456789"
VAN_TOKEN = "van-feed-token-0123456789"
FILE_TOKEN = "file-token-abcdefgh"
K = 5
#: Every kind of route: pages, Dash's routes (GET and the POST callback), geometry, tiles, bundles, assets, stream.
ROUTES = [
    ("GET", "/"),
    ("GET", "/planner"),
    ("GET", "/audit"),
    ("GET", "/_dash-layout"),
    ("GET", "/_dash-dependencies"),
    ("POST", "/_dash-update-component"),
    ("GET", "/_reload-hash"),
    ("GET", "/_favicon.ico"),
    ("GET", "/geo/cells/9.geojson"),
    ("GET", "/geo/tiles/9/10/298/387.pbf"),
    ("GET", "/_dash-component-suites/dash/dcc/dash_core_components.js"),
    ("GET", "/assets/live.js"),
    ("GET", "/api/live/stream"),
]

#: The page-routing callback as dash-renderer posts it.
ROUTE_CALL = {
    "output": "..page.children...nav.children..",
    "outputs": [{"id": "page", "property": "children"}, {"id": "nav", "property": "children"}],
    "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
    "state": [{"id": "url", "property": "search", "value": ""}],
    "changedPropIds": ["url.pathname"],
}


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")] if p
    )
    env.pop("RTCC_FEED_TOKEN", None)
    return env


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rtcc_geo.cli.main", *args],
        input=stdin,
        text=True,
        check=False,
        capture_output=True,
        env=_env(),
        timeout=120,
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(store: str, *flags: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = _port()
    # The server's log goes to a file (a pipe nobody reads would fill and stall it).
    log = open(Path(store) / f"serve-{port}.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcc_geo.cli.main", "serve", "--store", store, "--port", str(port), *flags],
        env={**_env(), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log_path = log.name
    return proc, f"http://127.0.0.1:{port}"


def _wait(proc: subprocess.Popen, base: str, timeout: float = 90.0) -> None:
    import requests

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {Path(proc.log_path).read_text()[-2000:]}")
        try:
            if requests.get(base + "/login", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"serve did not answer at {base} within {timeout:g} s")


@pytest.fixture(scope="module")
def served(shared_data, tmp_path_factory):
    pytest.importorskip("requests")
    from rtcc_geo.config import load_agency
    from rtcc_geo.ingest.pipeline import ingest_files

    root = tmp_path_factory.mktemp("auth_live")
    store = EmbeddedStore(root)
    ingest_files(
        "philadelphia",
        [shared_data / "philadelphia" / "incidents_2024_11.csv"],
        store,
        agency=load_agency("philadelphia"),
    )
    users = Users(store)
    for name, role in USERS.items():
        users.add(name, PW, role)
    a, url_a = _start(
        str(root),
        "--source",
        "philadelphia",
        env={"RTCC_FEED_TOKENS": f"philadelphia={PHL_TOKEN},vancouver={VAN_TOKEN}"},
    )
    # B: 5.4 s absolute lifetime, 1.8 s idle timeout.
    b, url_b = _start(
        str(root), "--source", "philadelphia", "--no-live", "--session-hours", "0.0015", "--idle-minutes", "0.03"
    )
    # C: behind a (pretend) TLS proxy, feed token from a file.
    tokens = root / "feed-tokens"
    tokens.write_text(f"# feed tokens\nphiladelphia={FILE_TOKEN}\n")
    c, url_c = _start(str(root), "--source", "philadelphia", "--trust-proxy", "--feed-token-file", str(tokens))
    try:
        _wait(a, url_a)
        _wait(b, url_b)
        _wait(c, url_c)
        yield {"root": str(root), "store": store, "a": url_a, "b": url_b, "c": url_c, "c_pid": c.pid}
        for p in (a, b, c):  # every server is still up after all the tests
            assert p.poll() is None, f"serve died ({p.returncode}): {Path(p.log_path).read_text()[-3000:]}"
    finally:
        for p in (a, b, c):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def login(base: str, user: str, password: str = PW):
    """A browser's log-in: GET the form (CSRF cookie + field), POST it back."""
    import requests

    s = requests.Session()
    r = s.get(base + "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = s.post(
        base + "/login",
        data={"username": user, "password": password, "csrf_token": token, "next": "/"},
        allow_redirects=False,
    )
    return s, r


def _session_cookie(s) -> str:
    return s.cookies.get("rtcc_session")


def statuses(base: str, cookie: str, stream: bool = False) -> dict[tuple[str, str], int]:
    """Status of every route for a bare client that only sends ``cookie`` (``stream=False``:
    not the event stream, which a live session would hold open)."""
    import requests

    out = {}
    for method, path in ROUTES:
        if path == "/api/live/stream" and not stream:
            continue
        kw = {"json": ROUTE_CALL} if method == "POST" else {}
        # (bodies read in full: a client hanging up mid-body is another test's subject)
        r = requests.request(
            method, base + path, cookies={"rtcc_session": cookie}, timeout=10, stream=path == "/api/live/stream", **kw
        )
        out[(method, path)] = r.status_code
        r.close()
    return out


def layout_status(base: str, cookie: str) -> int:
    """One request on one route. Server B ends sessions idle for 1.8 s, and they live in the
    shared store: a sweep of every route on B can, on a loaded machine, leave a gap over
    1.8 s between two requests, and B then (rightly) ends the session for every server."""
    import requests

    return requests.get(base + "/_dash-layout", cookies={"rtcc_session": cookie}, timeout=10).status_code


def assert_revoked_within(base: str, cookie: str, seconds: float = 1.0) -> float:
    t0 = time.monotonic()
    while True:
        st = statuses(base, cookie, stream=True)
        if all(v == 401 for v in st.values()):
            return time.monotonic() - t0
        assert time.monotonic() - t0 < seconds, f"still open after {seconds} s: {st}"
        time.sleep(0.05)


def audit(root: str, *extra: str) -> list[dict]:
    """``rtcc-geo audit --json`` (in this process: the CLI code, without the start-up cost)."""
    import contextlib
    import io

    from rtcc_geo.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["audit", "--store", root, "--json", *extra])
    if rc == 2 and "no audit entries" in err.getvalue():
        return []
    assert rc == 0, err.getvalue()
    return json.loads(out.getvalue())


# --- sessions ---------------------------------------------------------------------


def test_logout_ends_the_session_on_every_route_of_every_server(served):
    s, r = login(served["a"], "chief")
    assert r.status_code == 302
    cookie = _session_cookie(s)
    # Sessions live in the store: the other server process accepts the same cookie.
    assert layout_status(served["b"], cookie) == 200
    assert set(statuses(served["a"], cookie).values()) <= {200, 204}
    # A GET of /logout (a link, an image on another site) does not log out; a POST does.
    s.get(served["a"] + "/logout")
    assert statuses(served["a"], cookie)[("GET", "/_dash-layout")] == 200
    # An event stream open at log-out ends too (the server closes it within a second).
    import threading

    import requests

    ended = {}
    stream = requests.get(served["a"] + "/api/live/stream", cookies={"rtcc_session": cookie}, stream=True, timeout=30)
    assert stream.status_code == 200

    def read():
        for _ in stream.iter_lines():
            pass
        ended["at"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    assert "at" not in ended
    t_out = time.monotonic()
    assert s.post(served["a"] + "/logout", allow_redirects=False).status_code == 303
    took = assert_revoked_within(served["a"], cookie)
    reader.join(timeout=5)
    assert "at" in ended and ended["at"] - t_out < 1.5, "the open event stream outlived the log-out"
    assert_revoked_within(served["b"], cookie)
    print(f"logout: every route 401 after {took:.3f} s")


@pytest.mark.parametrize("change", ["passwd", "role", "remove"])
def test_user_changes_by_cli_end_open_sessions_at_once(served, change):
    user = {"passwd": "pwd", "role": "roled", "remove": "gone"}[change]
    s, r = login(served["a"], user)
    assert r.status_code == 302
    cookie = _session_cookie(s)
    assert layout_status(served["b"], cookie) == 200
    if change == "passwd":
        out = cli("users", "passwd", user, "--password-stdin", "--store", served["root"], stdin="new-lilac-harbour\n")
    elif change == "role":
        out = cli("users", "role", user, "--role", "viewer", "--store", served["root"])
    else:
        out = cli("users", "remove", user, "--store", served["root"])
    assert out.returncode == 0, out.stderr
    took = max(assert_revoked_within(served["a"], cookie), assert_revoked_within(served["b"], cookie))
    print(f"{change}: every route 401 after {took:.3f} s")
    if change == "passwd":
        assert login(served["a"], user, PW)[1].status_code == 401
        assert login(served["a"], user, "new-lilac-harbour")[1].status_code == 302
    entries = [
        e
        for e in audit(served["root"])
        if e["detail"].get("username") == user and e["action"] in ("user_password", "user_role", "user_remove")
    ]
    assert len(entries) == 1 and entries[0]["detail"]["sessions_ended"] >= 1, entries


def test_absolute_lifetime_and_idle_timeout(served):
    import requests

    base = served["b"]  # 5.4 s lifetime, 1.8 s idle
    # Idle: no request for 2.5 s ends it.
    s, _ = login(base, "plan")
    cookie = _session_cookie(s)
    assert requests.get(base + "/_dash-layout", cookies={"rtcc_session": cookie}).status_code == 200
    time.sleep(2.5)
    assert set(statuses(base, cookie, stream=True).values()) == {401}
    # Absolute: busy every 0.3 s, still ended at 5.4 s.
    s, _ = login(base, "plan")
    cookie, t0, last_ok = _session_cookie(s), time.monotonic(), 0.0
    while time.monotonic() - t0 < 6.5:
        r = requests.get(base + "/_dash-layout", cookies={"rtcc_session": cookie}, timeout=5)
        if r.status_code == 200:
            last_ok = time.monotonic() - t0
        time.sleep(0.3)
    assert 3.0 < last_ok < 5.6, last_ok  # kept alive past the idle timeout, cut at the lifetime
    assert set(statuses(base, cookie, stream=True).values()) == {401}


def test_cookie_flags_and_secure_behind_trusted_proxy(served):
    import requests

    _, r = login(served["a"], "chief")
    sc = r.headers["Set-Cookie"]
    assert "HttpOnly" in sc and "SameSite=Lax" in sc and "Secure" not in sc  # plain http on 127.0.0.1
    base = served["c"]  # --trust-proxy
    fwd = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": base.split("//")[1]}
    page = requests.get(base + "/login", headers=fwd)
    assert "Secure" in page.headers["Set-Cookie"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    # (requests keeps Secure cookies off plain http, as a browser would: send it by hand)
    r = requests.post(
        base + "/login",
        headers=fwd,
        cookies={"rtcc_csrf": token},
        allow_redirects=False,
        data={"username": "chief", "password": PW, "csrf_token": token},
    )
    assert r.status_code == 302 and "Secure" in r.headers["Set-Cookie"]
    # Without --trust-proxy the header is ignored (anyone could send it).
    assert "Secure" not in requests.get(served["a"] + "/login", headers=fwd).headers["Set-Cookie"]


# --- log-in hardening --------------------------------------------------------------


def test_login_without_csrf_token_or_from_another_origin_is_refused(served):
    import requests

    base = served["a"]
    creds = {"username": "chief", "password": PW}
    r = requests.post(base + "/login", data=creds, allow_redirects=False)
    assert r.status_code == 403 and "rtcc_session" not in r.headers.get("Set-Cookie", "")
    # A token from the attacker's own visit, replayed from another site's page.
    s = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', s.get(base + "/login").text).group(1)
    r = s.post(
        base + "/login",
        data={**creds, "csrf_token": token},
        allow_redirects=False,
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "rtcc_session" not in r.headers.get("Set-Cookie", "")
    r = requests.post(
        base + "/login",
        data={**creds, "csrf_token": token},
        allow_redirects=False,
        cookies={"rtcc_csrf": "forged.0000"},
    )
    assert r.status_code == 403
    # Dash callbacks (state-changing POSTs) from another origin: refused even with a session.
    s2, _ = login(base, "chief")
    body = ROUTE_CALL
    assert (
        s2.post(base + "/_dash-update-component", json=body, headers={"Origin": "http://evil.example"}).status_code
        == 403
    )
    assert s2.post(base + "/_dash-update-component", json=body, headers={"Origin": base}).status_code == 200
    assert s2.post(base + "/logout", headers={"Origin": "http://evil.example"}).status_code == 403
    assert s2.get(base + "/_dash-layout").status_code == 200


def test_twenty_wrong_passwords_lock_the_account_and_are_audited(served):
    base, root = served["a"], served["root"]
    codes = [login(base, "locky", f"wrong-password-{i:02d}")[1].status_code for i in range(20)]
    assert codes == [401] * 20
    # Locked now: the right password is refused too, with a clear message.
    s, r = login(base, "locky", PW)
    assert r.status_code == 429 and "Too many failed log-ins" in r.text and "rtcc_session" not in s.cookies
    log = audit(root, "--user", "locky")
    kinds = [e["action"] for e in log]
    assert kinds.count("login_failed") == 20 and kinds.count("account_locked") == 1
    assert kinds.count("login_locked") == 1 and "login" not in kinds
    assert all(e["address"] == "127.0.0.1" for e in log)
    # Another account from the same address is not locked (20 < the per-address limit).
    assert login(base, "vic")[1].status_code == 302
    # A commander lifts it.
    assert cli("users", "unlock", "locky", "--store", root).returncode == 0
    assert login(base, "locky")[1].status_code == 302


def test_password_rule_in_the_cli(served, monkeypatch, capsys):
    import io

    from rtcc_geo.cli.main import main

    root = served["root"]
    r = cli("users", "add", "newbie", "--role", "viewer", "--password-stdin", "--store", root, stdin="password1234\n")
    assert r.returncode == 2 and "common passwords" in r.stderr, r.stderr
    for bad, why in (
        ("short-pw", "too short"),
        ("Qwertyuiop123!", "common passwords"),
        ("zzzzzzzzzzzzzzzz", "repeats"),
        ("newbie-is-my-name", "user name"),
    ):
        monkeypatch.setattr("sys.stdin", io.StringIO(bad + "\n"))
        assert main(["users", "add", "newbie", "--role", "viewer", "--password-stdin", "--store", root]) == 2
        assert why in capsys.readouterr().err, bad
    assert Users(served["store"]).role("newbie") is None


# --- feed tokens per source ----------------------------------------------------------


def test_feed_token_opens_its_own_source_only_and_each_batch_is_audited(served):
    import requests

    base, root = served["a"], served["root"]
    rec = {
        "id": "auth-test-1",
        "occurred_from": "2024-11-30T12:00:00-05:00",
        "offense_raw": "Thefts",
        "category": "theft",
        "lon": -75.16,
        "lat": 39.95,
    }
    url = base + "/api/feed/philadelphia/incidents"
    r = requests.post(url, json=[rec], headers={"Authorization": f"Bearer {VAN_TOKEN}"})
    assert r.status_code == 401
    assert "auth-test-1" not in set(EmbeddedStore(root).incidents(Query(source="philadelphia"))["id"])
    before = len([e for e in audit(root) if e["action"] == "feed_batch"])
    r = requests.post(url, json=[rec], headers={"Authorization": f"Bearer {PHL_TOKEN}"})
    assert r.status_code == 200 and r.json()["loaded"] == 1
    assert "auth-test-1" in set(EmbeddedStore(root).incidents(Query(source="philadelphia"))["id"])
    batches = [e for e in audit(root) if e["action"] == "feed_batch"]
    assert len(batches) == before + 1
    e = batches[-1]
    assert e["user"] == "feed:philadelphia#1" and e["detail"]["received"] == 1 and PHL_TOKEN not in json.dumps(e)


def test_feed_token_from_file_and_never_in_ps(served):
    import requests

    url = served["c"] + "/api/feed/philadelphia/incidents"
    assert requests.post(url, json=[], headers={"Authorization": f"Bearer {FILE_TOKEN}"}).status_code == 200
    assert requests.post(url, json=[], headers={"Authorization": f"Bearer {PHL_TOKEN}"}).status_code == 401
    cmdline = Path(f"/proc/{served['c_pid']}/cmdline").read_bytes().decode()
    assert FILE_TOKEN not in cmdline and "--feed-token-file" in cmdline


# --- audit log: each action exactly one entry --------------------------------------------


def _deps(s, base):
    r = s.get(base + "/_dash-dependencies")
    assert r.status_code == 200
    return r.json()


def _ctx(store):
    from rtcc_geo.app.context import context_for

    return context_for(store, source="philadelphia")


def _call(s, base, dep, ctx, cell=None, overrides=None):
    from .test_app import payload

    r = s.post(base + "/_dash-update-component", json=payload(dep, ctx, cell, overrides))
    assert r.status_code == 200, (dep["output"], r.status_code, r.text[:300])
    return r.json()["response"]


def test_each_audited_action_leaves_exactly_one_entry(served):
    from .test_app import dep_for

    base, root, store = served["a"], served["root"], served["store"]
    ctx = _ctx(store)
    before = audit(root, "--user", "audi")
    assert [e["action"] for e in before] == []
    assert login(base, "audi", "not-the-password-x")[1].status_code == 401
    s, r = login(base, "audi")
    assert r.status_code == 302
    deps = _deps(s, base)
    busy = store.counts(9, ("cell",), Query(source="philadelphia")).sort_values("n")["cell"].iloc[-1]
    drill = _call(s, base, dep_for(deps, "drill-body.children"), ctx, format(int(busy), "x"))
    assert "drill-incidents" in json.dumps(drill)
    _call(s, base, dep_for(deps, "download.data"), ctx)
    # An open alert to acknowledge (the alert panel's button).
    alerts = pd.DataFrame(
        {
            "alert_id": pd.Series(["auth-a1"], dtype="string"),
            "kind": pd.Series(["hotspot"], dtype="string"),
            "created_at": pd.Series(pd.to_datetime(["2024-11-30T10:00Z"])),
            "source": pd.Series(["philadelphia"], dtype="string"),
            "incident_id": pd.Series(["x1"], dtype="string"),
            "cell": pd.array([int(busy)], dtype="Int64"),
            "reason": pd.Series(["r"], dtype="string"),
            "data": pd.Series(["{}"], dtype="string"),
            "acknowledged": [False],
            "ack_by": pd.Series([None], dtype="string"),
            "ack_at": pd.Series([pd.NaT], dtype="datetime64[ns, UTC]"),
        }
    )
    store.put_table("alerts", alerts)
    ack = dep_for(deps, "alerts-panel.children")
    pid = json.dumps({"id": "auth-a1", "type": "ack"}, separators=(",", ":"))
    body = {
        "output": ack["output"],
        "outputs": [
            {"id": "alerts-panel", "property": "children"},
            {"id": "alert-hits", "property": "data"},
            {"id": "alerts-page", "property": "data"},
        ],
        "inputs": [
            {"id": "live-alerts", "property": "data", "value": None},
            [{"id": {"id": "auth-a1", "type": "ack"}, "property": "n_clicks", "value": 1}],
            [],
            [],
            {"id": "alerts-prev", "property": "n_clicks", "value": None},
            {"id": "alerts-next", "property": "n_clicks", "value": None},
        ],
        "state": [{"id": "alerts-page", "property": "data", "value": 0}],
        "changedPropIds": [pid + ".n_clicks"],
    }
    r = s.post(base + "/_dash-update-component", json=body)
    assert r.status_code == 200, r.text[:300]
    assert bool(store.get_table("alerts")["acknowledged"].iloc[0])
    assert s.post(base + "/logout", allow_redirects=False).status_code == 303
    log = audit(root, "--user", "audi")
    kinds = [e["action"] for e in log]
    assert kinds == ["login_failed", "login", "drill", "export", "alert_ack", "logout"], kinds
    d = log[2]["detail"]
    assert d["cell"] == format(int(busy), "x") and d["rows"] == 15 and d["filters"]["res"] == 9
    x = log[3]["detail"]
    assert x["format"] == "geojson" and x["layer"] == "counts" and x["rows"] > 100 and "filters" in x
    assert log[4]["detail"]["alert"] == "auth-a1"
    # Read-only through the app: there is no route that writes to it but the actions themselves.
    fs = audit(root, "--from", "2000-01-01", "--to", "2000-01-02")
    assert fs == []
    bad = cli("audit", "--store", root, "--json", "--user", "audi", "--from", "2020-01-01")
    assert bad.returncode == 0 and [e["action"] for e in json.loads(bad.stdout)] == kinds  # the real command
    bad = cli("audit", "--store", root, "--from", "2026-02-01", "--to", "2026-01-01")
    assert bad.returncode == 2 and "not before" in bad.stderr


def test_audit_page_for_commanders_only(served):
    from .test_app import dep_for

    base, store = served["a"], served["store"]
    ctx = _ctx(store)
    s, _ = login(base, "chief")
    deps = _deps(s, base)
    dep = dep_for(deps, "a-table.children")
    body = {
        "output": dep["output"],
        "outputs": {"id": "a-table", "property": "children"},
        "inputs": [
            {"id": "a-dates", "property": "start_date", "value": "2020-01-01"},
            {"id": "a-dates", "property": "end_date", "value": "2030-01-01"},
            {"id": "a-user", "property": "value", "value": "chief"},
            {"id": "a-action", "property": "value", "value": "login"},
        ],
        "state": [],
        "changedPropIds": ["a-user.value"],
    }
    r = s.post(base + "/_dash-update-component", json=body)
    assert r.status_code == 200 and "logged in" in r.text
    nav = _call(s, base, dep_for(deps, "nav.children"), ctx)
    assert "nav-audit" in json.dumps(nav)
    v, _ = login(base, "vic")
    assert v.post(base + "/_dash-update-component", json=body).status_code == 403
    nav = _call(v, base, dep_for(deps, "nav.children"), ctx)
    assert "nav-audit" not in json.dumps(nav)
    page = _call(v, base, dep_for(deps, "page.children"), ctx, overrides={("url", "pathname"): "/audit"})
    assert "not open to the viewer role" in json.dumps(page)


# --- small-count suppression ---------------------------------------------------------------

_COUNT_TEXT = re.compile(r"(?<![\d.,])(\d[\d,]*) (?:incidents|with unknown time)")


def small_values(obj, k: int = K) -> list:
    """Every aggregate below k (zero included: see rtcc_geo.app.suppress) in a callback
    response: numbers in the figure/map value arrays ``z``, ``y``, ``v``, ``value``,
    counts in text, export bodies."""
    found = []

    def num_bad(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < k

    def walk(o, key=None):
        if isinstance(o, dict):
            for kk, vv in o.items():
                if kk == "content" and isinstance(vv, str):
                    walk_export(vv)
                else:
                    walk(vv, kk)
        elif isinstance(o, list):
            if key in ("z", "y", "v"):
                flat = np.asarray(o, dtype=object).ravel().tolist() if key == "z" else o
                found.extend(x for x in flat if num_bad(x))
            else:
                for vv in o:
                    walk(vv, key)
        elif isinstance(o, str):
            found.extend(int(m.replace(",", "")) for m in _COUNT_TEXT.findall(o) if int(m.replace(",", "")) < k)
        elif key == "value" and num_bad(o):
            found.append(o)

    def walk_export(text):
        if text.lstrip().startswith("{"):
            for ft in json.loads(text)["features"]:
                if num_bad(ft["properties"]["value"]):
                    found.append(ft["properties"]["value"])
        else:
            df = pd.read_csv(pd.io.common.StringIO(text))
            col = pd.to_numeric(df.iloc[:, -1], errors="coerce")
            found.extend(col[col < k].tolist())

    walk(obj)
    return found


def test_viewer_never_receives_an_aggregate_below_k(served):
    """Acceptance 7: many filter combinations through the running server, map,
    summary, export and drill-down; the same requests as a commander do carry
    small counts (so the check can fail), and combinations that narrow to a
    single incident are among them."""
    from rtcc_geo.app.context import Filters

    from .test_app import dep_for

    base, store = served["a"], served["store"]
    ctx = _ctx(store)
    viewer, _ = login(base, "vic")
    planner, _ = login(base, "plan")
    chief, _ = login(base, "chief")
    deps = _deps(chief, base)
    mdep, xdep, ddep = (
        dep_for(deps, "map-hex.data"),
        dep_for(deps, "download.data"),
        dep_for(deps, "drill-body.children"),
    )
    rng = np.random.default_rng(12)
    cats = list(ctx.categories)
    dists = sorted(store.counts(9, ("district",), Query(source="philadelphia"))["district"].dropna().astype(str))
    combos = []
    for i in range(12):
        h0 = int(rng.integers(0, 24))
        combos.append(
            {
                ("f-cats", "value"): list(rng.choice(cats, size=int(rng.integers(1, 3)), replace=False)),
                ("f-hours", "value"): [h0, min(24, h0 + int(rng.integers(1, 4)))],
                ("f-dows", "value"): sorted(rng.choice(7, size=int(rng.integers(1, 4)), replace=False).tolist()),
                ("f-districts", "value"): [str(rng.choice(dists))] if i % 2 else [],
                ("f-res", "value"): int(rng.choice([8, 9, 10])),
                ("f-dates", "start_date"): "2024-11-01",
                ("f-dates", "end_date"): f"2024-11-{int(rng.integers(2, 31)):02d}",
            }
        )
    singles = 0
    commander_small = 0
    checked = 0
    for ov in combos:
        f = Filters.from_widgets(
            ov[("f-dates", "start_date")],
            ov[("f-dates", "end_date")],
            ov[("f-cats", "value")],
            ov[("f-hours", "value")],
            ov[("f-dows", "value")],
            ov[("f-districts", "value")],
            ov[("f-res", "value")],
        )
        q = f.query("philadelphia", ctx.categories)
        raw = store.counts(f.res, ("cell",), q)
        singles += int((raw["n"] == 1).sum()) + (store.count(q) == 1)
        small_cells = raw.loc[(raw["n"] > 0) & (raw["n"] < K), "cell"].tolist()
        for who in (viewer, planner):
            for dep in (mdep, xdep):
                resp = _call(who, base, dep, ctx, overrides=ov)
                assert small_values(resp) == [], (ov, small_values(resp)[:5])
                checked += 1
            # Drill into a cell that holds fewer than k incidents under these filters.
            if small_cells:
                resp = _call(who, base, ddep, ctx, format(int(small_cells[0]), "x"), overrides=ov)
                assert small_values(resp) == [], (ov, small_values(resp)[:5])
                assert "fewer than 5" in json.dumps(resp)
                checked += 1
        commander_small += len(small_values(_call(chief, base, mdep, ctx, overrides=ov)))
    # A view of one incident: no layer (density, hot spots) draws anything for a viewer.
    one = None
    for c in cats:
        for d in dists:
            q = Query(source="philadelphia", categories=(c,), districts=(d,), hours=(3,), dows=(2,))
            if store.count(q) == 1:
                one = {
                    ("f-cats", "value"): [c],
                    ("f-districts", "value"): [d],
                    ("f-hours", "value"): [3, 4],
                    ("f-dows", "value"): [2],
                    ("f-dates", "start_date"): "2024-11-01",
                    ("f-dates", "end_date"): "2024-11-30",
                }
                break
        if one:
            break
    assert one is not None
    for lid in ("counts", "kde", "gistar"):
        ov = {**one, ("f-layer", "value"): lid}
        data = _call(viewer, base, mdep, ctx, overrides=ov)
        assert data["map-hex"]["data"]["ids"] == [], lid
        assert "fewer than 5 incidents" in json.dumps(data["summary"]), lid
        if lid != "kde":  # (a commander's KDE of one incident fails: needs two for a bandwidth)
            assert len(_call(chief, base, mdep, ctx, overrides=ov)["map-hex"]["data"]["ids"]) >= 1, lid
    assert singles > 50, singles  # the sweep does narrow to single incidents ...
    assert commander_small > 50  # ... which a commander sees, and a viewer never
    print(
        f"suppression: {checked} viewer/planner responses over {len(combos)} filter sets, "
        f"{singles} single-incident cells/views hidden"
    )


# --- what users see (headless Chromium against the running server) ------------------------


@pytest.mark.browser
def test_browser_audit_page_logout_button_and_suppressed_drill(served):
    """A commander opens the audit page from the header and logs out with the
    header's button (a POST); a viewer's drill-down says "fewer than 5"."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, find_browser, wait_for
    from tests.browser import login as browser_login

    from .conftest import missing

    chrome, driver = find_browser()
    if not chrome or not driver:
        missing("headless Chromium", "install Debian 'chromium' and 'chromium-driver'")
    art = Path(__file__).resolve().parents[1] / "test-artifacts"
    art.mkdir(exist_ok=True)
    store = served["store"]
    # A server of its own: a browser hangs up on responses, which (until serve ignores
    # SIGPIPE) may end the process, and the other servers must outlive every test.
    proc, base = _start(served["root"], "--source", "philadelphia", "--no-live")
    try:
        _wait(proc, base)
        with chromium(chrome, driver) as d:
            d.set_window_size(1400, 900)
            browser_login(d, base, "chief", PW)
            link = wait_for(lambda: d.find_elements(By.ID, "nav-audit"), timeout=60, what="audit link")[0]
            link.click()
            wait_for(lambda: d.find_elements(By.ID, "a-rows"), timeout=30, what="audit rows")
            text = d.find_element(By.ID, "a-rows").text
            assert "logged in" in text and "chief" in text
            d.save_screenshot(str(art / "auth_audit_page.png"))
            cookie = d.get_cookie("rtcc_session")["value"]
            d.find_element(By.ID, "nav-logout").click()
            wait_for(lambda: d.find_elements(By.ID, "login-form"), timeout=20, what="log-in form after log-out")
            assert set(statuses(base, cookie).values()) == {401}
            # A viewer clicks into a cell with fewer than 5 incidents.
            browser_login(d, base, "vic", PW)
            wait_for(lambda: d.find_elements(By.ID, "nav-user"), timeout=60, what="map page")
            assert not d.find_elements(By.ID, "nav-audit")
            q = Query(source="philadelphia", start="2024-11-01", end="2024-12-01")
            c = store.counts(9, ("cell",), q)
            small = int(c.loc[(c["n"] > 0) & (c["n"] < K), "cell"].iloc[0])
            d.execute_script(
                "window.dash_clientside.set_props('map-click', {data: {cell: arguments[0], t: 1}});", format(small, "x")
            )
            wait_for(lambda: d.find_elements(By.ID, "drill-status"), timeout=30, what="drill-down")
            status = d.find_element(By.ID, "drill-status").text
            assert "fewer than 5" in status, status
            d.save_screenshot(str(art / "auth_viewer_drill.png"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
