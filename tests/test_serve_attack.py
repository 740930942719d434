"""Attack the running ``rtcc-geo serve`` (a real subprocess, gunicorn) as careless
clients and an attacker would, then prove it is still up and answering.

Bounded loops on 127.0.0.1: 200 clients that connect and hang up in every way
a socket can (close at once, half a request, half a body, a big response
never read, reset with SO_LINGER 0 mid-response), 50 live event streams
dropped mid-stream while the feed writes into them (the writes that used to
raise SIGPIPE), and logged-in sessions clicking the commander filters with
the callback requests the browser sends. The server runs with 24 threads,
fewer than the 50 streams: a thread a vanished client never gave back would
stall it. The full load (50 sessions x 60 s, p50/p95) is ``bench/serve.py``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from .serve_support import (
    Commander,
    cookie_header,
    feed_records,
    hammer,
    login,
    percentile,
    post_feed,
    session_pool,
    shared_server,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    return shared_server(tmp_path_factory)


@pytest.fixture(scope="module")
def chief(srv):
    return login(srv.url, "chief")


def _addr(url: str) -> tuple[str, int]:
    u = urlparse(url)
    return u.hostname, u.port


def _request(path: str, cookie: str = "", extra: str = "") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n{extra}\r\n").encode()


def _rst_close(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _hangup(addr, kind: int, cookie: str) -> None:
    """One client that hangs up; ``kind`` picks how."""
    s = socket.create_connection(addr, timeout=10)
    try:
        if kind == 0:  # connect, close
            pass
        elif kind == 1:  # half a request line and headers
            s.sendall(b"GET /geo/cells/9.geojson HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + cookie.encode()[:20])
        elif kind == 2:  # a POST whose body never comes
            s.sendall(
                b"POST /_dash-update-component HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: "
                + cookie.encode()
                + b'\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"output":'
            )
        elif kind == 3:  # a big response never read, then FIN
            s.sendall(_request("/geo/cells/9.geojson", cookie))
            time.sleep(0.05)
        elif kind == 4:  # a big response, a few bytes read, then RST
            s.sendall(_request("/geo/cells/9.geojson", cookie))
            s.recv(100)
            _rst_close(s)
            return
        elif kind == 5:  # two pipelined requests, then RST before reading either
            s.sendall(_request("/geo/cells/8.geojson", cookie) + _request("/", cookie))
            _rst_close(s)
            return
        elif kind == 6:  # slow headers, a byte at a time, then gone
            for b in _request("/", cookie)[:15]:
                s.send(bytes([b]))
                time.sleep(0.02)
    finally:
        s.close()


def hangups(url: str, cookie: str, n: int = 200, parallel: int = 25) -> None:
    addr = _addr(url)
    with ThreadPoolExecutor(parallel) as ex:
        for f in [ex.submit(_hangup, addr, k % 7, cookie) for k in range(n)]:
            f.result()


def _open_stream(addr, cookie: str) -> socket.socket:
    """A live event stream, read up to its first bytes (``retry:``)."""
    s = socket.create_connection(addr, timeout=60)
    s.sendall(_request("/api/live/stream", cookie, "Accept: text/event-stream\r\n"))
    got = b""
    while b"retry:" not in got:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError(f"stream closed before its first event: {got[:300]!r}")
        got += chunk
    assert b" 200 " in got.split(b"\r\n", 1)[0], got[:300]
    return s


def _assert_up(srv, session) -> None:
    assert srv.alive(), "\n".join(srv.log)
    r = session.get(srv.url + "/", timeout=30)
    assert r.status_code == 200 and "react-entry-point" in r.text


def _assert_clean_log(srv) -> None:
    bad = [ln for ln in srv.log if "Traceback" in ln or "Error" in ln or "[ERROR]" in ln or "CRITICAL" in ln]
    assert not bad, "\n".join(srv.log)


def test_server_survives_clients_that_hang_up(srv, chief):
    cookie = cookie_header(chief)
    assert len(chief.get(srv.url + "/geo/cells/9.geojson", timeout=60).content) > 200_000  # a big body
    t0 = time.monotonic()
    hangups(srv.url, cookie, n=200)
    _assert_up(srv, chief)
    assert time.monotonic() - t0 < 60
    # A normal user right after: the map page's callbacks answer.
    c = Commander(chief, srv.url)
    import random

    r = c.post(c.filter_click(random.Random(5)))
    assert r.status_code == 200, r.text[:300]
    _assert_clean_log(srv)


def test_dropped_event_streams_cost_nothing_and_live_events_still_flow(srv, chief):
    """50 streams (more than the server's 24 threads) opened, written into by the
    feed, and dropped (half FIN, half RST); then a new stream gets the next
    incident at once (no buffering) and the server is up."""
    addr, cookie = _addr(srv.url), cookie_header(chief)
    stop = threading.Event()
    posted: list[int] = []

    def feed():  # writes into the streams while they are dropped
        k = 0
        while not stop.is_set():
            r = post_feed(srv.url, feed_records(srv.store_dir, 1, f"drop{k}"))
            posted.append(r.status_code)
            k += 1
            time.sleep(0.05)

    ft = threading.Thread(target=feed)
    ft.start()
    try:

        def drop(k: int) -> None:
            s = _open_stream(addr, cookie)
            s.settimeout(3)
            try:
                s.recv(4096)  # an event or keep-alive, if one comes
            except TimeoutError:
                pass
            _rst_close(s) if k % 2 else s.close()

        with ThreadPoolExecutor(25) as ex:
            for f in [ex.submit(drop, k) for k in range(50)]:
                f.result(timeout=120)
    finally:
        stop.set()
        ft.join(60)
    assert posted and set(posted) == {200}, posted
    _assert_up(srv, chief)

    # A fresh stream gets an incident within a fraction of a second of the feed's answer.
    s = _open_stream(addr, cookie)
    try:
        rec = feed_records(srv.store_dir, 1, "fresh")
        assert post_feed(srv.url, rec).status_code == 200
        t0 = time.monotonic()
        got = b""
        s.settimeout(10)
        while rec[0]["id"].encode() not in got:
            got += s.recv(65536)
        delay = time.monotonic() - t0
        assert delay < 1.0, delay
    finally:
        s.close()
    _assert_clean_log(srv)


def test_client_gone_mid_write_never_kills_the_server(srv, chief):
    """The SIGPIPE cases: a client resets while a big body is written, and while
    events are written to its stream (a burst bigger than the socket buffers)."""
    addr, cookie = _addr(srv.url), cookie_header(chief)
    for res in (9, 8, 9, 10):
        s = socket.create_connection(addr, timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(_request(f"/geo/cells/{res}.geojson", cookie))
        s.recv(1024)
        _rst_close(s)
    streams = [_open_stream(addr, cookie) for _ in range(5)]
    for s in streams:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # A burst of incidents while the readers stop reading, then vanish mid-write.
    assert post_feed(srv.url, feed_records(srv.store_dir, 400, "burst")).status_code == 200
    for k, s in enumerate(streams):
        _rst_close(s) if k % 2 else s.close()
    assert post_feed(srv.url, feed_records(srv.store_dir, 400, "burst2")).status_code == 200
    time.sleep(1.5)
    _assert_up(srv, chief)
    _assert_clean_log(srv)


def test_sessions_click_filters_while_clients_hang_up(srv, chief):
    """10 logged-in sessions x 10 s of filter clicks (the bench runs 50 x 60 s)
    while the hang-up attack runs beside them: every answer is 200."""
    stop = threading.Event()
    cookie = cookie_header(chief)

    def attack():
        while not stop.is_set():
            hangups(srv.url, cookie, n=20, parallel=5)

    t = threading.Thread(target=attack)
    with session_pool(srv.url, 10) as cmds:
        t.start()
        try:
            out = hammer(cmds, 10.0, seed=3)
        finally:
            stop.set()
            t.join(60)
    lat = out["latencies"]
    print(
        f"\n{len(lat)} callbacks from 10 sessions in 10 s: p50 {percentile(lat, 50) * 1000:.0f} ms, "
        f"p95 {percentile(lat, 95) * 1000:.0f} ms, errors {len(out['errors'])}"
    )
    assert not out["errors"], out["errors"][:5]
    assert len(lat) >= 20
    _assert_up(srv, chief)
    _assert_clean_log(srv)


def test_no_server_banner_and_no_sigpipe_death_in_main(srv):
    import requests

    r = requests.get(srv.url + "/login", timeout=30)
    assert "Server" not in r.headers, r.headers
    assert "gunicorn" not in json.dumps(dict(r.headers)).lower()
    # The master runs with SIGPIPE ignored (the 'serve' command keeps Python's default).
    with open(f"/proc/{srv.proc.pid}/status") as f:
        ign = int(next(ln for ln in f if ln.startswith("SigIgn:")).split()[1], 16)
    assert ign & (1 << (13 - 1)), "SIGPIPE is not ignored by rtcc-geo serve"


def test_alert_panel_shows_the_alert_as_soon_as_it_is_raised(srv, chief):
    """The panel re-renders on the stream's ``alerts`` event: asked right then,
    it already lists the alert announced (it lagged one alert behind when it
    read only what the background writer had stored)."""
    import requests

    deps = chief.get(srv.url + "/_dash-dependencies", timeout=30).json()
    dep = next(d for d in deps if "alerts-panel.children" in d["output"])
    addr, cookie = _addr(srv.url), cookie_header(chief)
    s = _open_stream(addr, cookie)
    s.settimeout(20)
    buf = b""
    try:
        for round_ in range(3):
            rec = feed_records(srv.store_dir, 2, f"alert{round_}-{time.time_ns()}")
            # One after the other: the second is a near-repeat of the first.
            assert post_feed(srv.url, rec[:1]).status_code == 200
            assert post_feed(srv.url, rec[1:]).status_code == 200
            # Read events until the alert of the second incident arrives.
            alert = None
            end = time.monotonic() + 20
            while alert is None and time.monotonic() < end:
                buf += s.recv(65536)
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    lines = dict(ln.split(": ", 1) for ln in block.decode().split("\n") if ": " in ln)
                    if lines.get("event") == "alerts":
                        for a in json.loads(lines["data"])["rows"]:
                            if a.get("incident_id") == rec[1]["id"]:
                                alert = a
            assert alert is not None, f"no alert for {rec[1]['id']}"
            # What live.js does on that event: ask for the panel.
            body = {
                "output": dep["output"],
                "outputs": [
                    {"id": "alerts-panel", "property": "children"},
                    {"id": "alert-hits", "property": "data"},
                    {"id": "alerts-page", "property": "data"},
                ],
                "inputs": [
                    {"id": "live-alerts", "property": "data", "value": {"n": round_ + 1, "t": 1}},
                    [],
                    [],
                    [],
                    {"id": "alerts-prev", "property": "n_clicks", "value": None},
                    {"id": "alerts-next", "property": "n_clicks", "value": None},
                ],
                "changedPropIds": ["live-alerts.data"],
                "state": [{"id": "alerts-page", "property": "data", "value": 0}],
            }
            r = chief.post(srv.url + "/_dash-update-component", json=body, timeout=30)
            assert r.status_code == 200, r.text[:300]
            assert alert["alert_id"] in r.text, f"panel lags: alert {alert['alert_id']} not shown"
    finally:
        s.close()
    assert requests.get(srv.url + "/login", timeout=30).status_code == 200


@pytest.mark.parametrize("argv, default", [(["users", "--help"], True), (["demo", "--help"], False)])
def test_sigpipe_default_only_for_ordinary_commands(argv, default):
    """'rtcc-geo ... | head' still ends quietly (SIGPIPE default); serve and demo keep it ignored."""
    import subprocess
    import sys

    from .serve_support import cli_env

    code = (
        "import signal, sys; from rtcc_geo.cli.main import main\n"
        f"sys.argv = ['rtcc-geo', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('SIGPIPE', signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL, file=sys.stderr)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert f"SIGPIPE {default}" in r.stderr, r.stderr[-500:]


def test_many_map_tabs_share_one_stream_and_a_ninth_tab_still_loads(srv):
    """A commander with the map open in many tabs (a watch floor's screens): over
    HTTP/1.1 a browser keeps at most six connections to a server, and each tab's
    event stream held one for good, so the seventh tab (and every request of the
    six) hung. One tab now holds the stream and relays it; closing that tab hands
    the stream to another, and every open tab still gets each new incident."""
    from tests.browser import chromium, find_browser, login as browser_login, wait_for
    from tests.conftest import missing

    from .serve_support import PASSWORD

    chrome, driver = find_browser()
    if not chrome or not driver:
        missing("headless Chromium", "install Debian 'chromium' and 'chromium-driver'")
    n_tabs = 9
    with chromium(chrome, driver) as d:
        d.set_page_load_timeout(60)
        browser_login(d, srv.url, "chief", PASSWORD)
        tabs, roles = [], []
        for k in range(n_tabs):
            if k:
                d.switch_to.new_window("tab")
            t0 = time.monotonic()
            d.get(srv.url + "/")
            wait_for(
                lambda: d.execute_script(
                    "return !!(window.rtccLive && window.rtccLive.source && window.rtccLive.source.readyState === 1)"
                ),
                timeout=60,
                what=f"tab {k + 1}'s live stream",
            )
            assert time.monotonic() - t0 < 30, f"tab {k + 1} took {time.monotonic() - t0:.0f} s"
            tabs.append(d.current_window_handle)
            roles.append(d.execute_script("return window.rtccLive.role"))
        assert roles.count("leader") == 1 and roles.count("follower") == n_tabs - 1, roles

        rec = feed_records(srv.store_dir, 1, f"tabs-a-{time.time_ns()}")
        assert post_feed(srv.url, rec).status_code == 200
        base_counts = {}
        for h in tabs:
            d.switch_to.window(h)
            wait_for(
                lambda: d.execute_script("return window.rtccLive.received") >= 1,
                timeout=30,
                what="incident in every tab",
            )
            base_counts[h] = d.execute_script("return window.rtccLive.received")
        # Close the tab holding the stream: another takes it, and every remaining tab gets the next one.
        leader = tabs[roles.index("leader")]
        d.switch_to.window(leader)
        d.close()
        rest = [h for h in tabs if h != leader]
        d.switch_to.window(rest[0])
        wait_for(
            lambda: any(
                (d.switch_to.window(h), d.execute_script("return window.rtccLive.role"))[1] == "leader" for h in rest
            ),
            timeout=30,
            what="a new leader tab",
        )
        time.sleep(1.5)  # its stream opened
        rec = feed_records(srv.store_dir, 1, f"tabs-b-{time.time_ns()}")
        assert post_feed(srv.url, rec).status_code == 200
        for h in rest:
            d.switch_to.window(h)
            wait_for(
                lambda h=h: d.execute_script("return window.rtccLive.received") > base_counts[h],
                timeout=30,
                what="the incident after the hand-over in every tab",
            )
