"""Helpers for the browser tests and the bench: an in-process server and headless Chromium.

The server is a werkzeug server in a daemon thread on 127.0.0.1 with a free
port (nothing to leak if a test dies) that records the paths it served;
Chromium runs headless with every background service off, its DevTools
network log on (the page's own requests), and a *trap proxy* for everything
else: every request that would leave the machine, from the page, a web
worker (MapLibre fetches tiles from one) or the browser itself, goes to a
local proxy that records it and refuses it (loopback stays direct).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,900",
    # Browser services that call Google on their own when a log-in form shows up;
    # off, so whatever the trap proxy catches is the page's doing.
    "--disable-features=AutofillServerCommunication,PasswordLeakDetection,OptimizationHints,Translate,"
    "MediaRouter,SigninInterceptBubble,NetworkTimeServiceQuerying",
    "--disable-client-side-phishing-detection",
    "--disable-default-apps",
    "--no-pings",
    # Google account endpoints (the password manager asks after a log-in form) to a dead local port.
    "--gaia-url=http://127.0.0.1:9",
    "--google-apis-url=http://127.0.0.1:9",
    "--lso-url=http://127.0.0.1:9",
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class LiveServer:
    """``with LiveServer(app.server) as url:`` serves a WSGI app on a free local port;
    ``.paths`` lists the paths it was asked for."""

    def __init__(self, wsgi_app, host: str = "127.0.0.1"):
        from werkzeug.serving import make_server

        self.paths: list[str] = []

        def recording(environ, start_response):
            self.paths.append(environ.get("PATH_INFO", ""))
            return wsgi_app(environ, start_response)

        self.srv = make_server(host, 0, recording, threaded=True)
        self.url = f"http://{host}:{self.srv.server_port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, name="rtcc-test-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(timeout=5)


class OffsiteTrap:
    """A local HTTP proxy that records and refuses every request sent to it.

    Chromium is started with ``--proxy-server`` pointing here; loopback
    addresses bypass a proxy, so only requests that would leave the machine
    arrive (``GET http://host/...`` or ``CONNECT host:443``), from any page,
    worker or browser service alike.
    """

    def __init__(self):
        import socketserver

        trap = self
        self.requests: list[str] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                try:
                    line = self.rfile.readline(65536).decode("latin-1").strip()
                    if line:
                        parts = line.split()
                        trap.requests.append(parts[1] if len(parts) > 1 else line)
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.srv = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        self.thread = threading.Thread(target=self.srv.serve_forever, name="rtcc-offsite-trap", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def find_browser() -> tuple[str | None, str | None]:
    """(chromium binary, chromedriver) or Nones."""
    chrome = (
        os.environ.get("RTCC_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    driver = os.environ.get("RTCC_CHROMEDRIVER") or shutil.which("chromedriver")
    return chrome, driver


@contextmanager
def chromium(chrome: str, driver: str):
    """A headless Chromium WebDriver with performance (network) logging and the
    :class:`OffsiteTrap` as its proxy (``driver.offsite``: what it caught)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rtcc-chromium-")
    trap = OffsiteTrap()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for f in CHROMIUM_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--proxy-server={trap.url}")
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    opts.add_experimental_option(
        "prefs",
        {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            "profile.password_manager_leak_detection": False,
            "autofill.profile_enabled": False,
            "autofill.credit_card_enabled": False,
            "signin.allowed": False,
            "safebrowsing.enabled": False,
        },
    )
    d = webdriver.Chrome(service=Service(driver), options=opts)
    # Chromium itself phones home once as it starts (Debian's build: extension update
    # check, default search engine preconnect), before any page exists. Let that pass
    # and keep it apart, so ``offsite`` holds only what came after: the pages' doing.
    _settle(trap.requests)
    d.startup_offsite = list(trap.requests)
    trap.requests.clear()
    d.offsite = trap.requests
    try:
        d.set_page_load_timeout(60)
        yield d
    finally:
        try:
            d.quit()
        finally:
            trap.close()
            shutil.rmtree(profile, ignore_errors=True)


#: Where the browser tests keep their screenshots (a CI job's artifacts).
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@contextmanager
def served_browser(wsgi_app):
    """``with served_browser(app.server) as (d, url):`` the app on a :class:`LiveServer`
    and a headless :func:`chromium` (``d.served``: the paths the server was asked for).
    Without Chromium the test fails under ``CI=true`` and is skipped elsewhere
    (``conftest.missing``); the screenshot folder :data:`ARTIFACTS` exists."""
    from tests.conftest import missing

    chrome, driver = find_browser()
    if not chrome or not driver:
        missing("headless Chromium", "install Debian 'chromium' and 'chromium-driver' (the README's test command does)")
    ARTIFACTS.mkdir(exist_ok=True)
    server = LiveServer(wsgi_app)
    with server as url, chromium(chrome, driver) as d:
        d.served = server.paths
        yield d, url


def _settle(requests: list, quiet: float = 2.0, limit: float = 20.0) -> None:
    """Wait until no new entry has arrived for ``quiet`` seconds (at most ``limit``)."""
    t0 = last = time.monotonic()
    n = len(requests)
    while time.monotonic() - last < quiet and time.monotonic() - t0 < limit:
        time.sleep(0.1)
        if len(requests) != n:
            n, last = len(requests), time.monotonic()


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (DevTools ``Network.requestWillBeSent``:
    the page's fetches, XHR, scripts, images, fonts, web sockets; *not* requests made
    inside web workers, which only the trap proxy sees: ``driver.offsite``)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
        elif msg.get("method") == "Network.webSocketCreated":
            urls.append(msg["params"]["url"])
    return urls


def non_local(urls: list[str]) -> list[str]:
    """URLs that would leave the machine (``data:``/``blob:`` stay local)."""
    bad = []
    for u in urls:
        p = urlparse(u)
        if p.scheme in ("data", "blob", "about", "chrome", "chrome-extension", "devtools"):
            continue
        if (p.hostname or "") not in LOCAL_HOSTS:
            bad.append(u)
    return bad


def login(driver, base: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    # The form's POST must finish (the session cookie set) before the caller navigates:
    # a driver.get() right after the click can abort it, and the next page then lands on
    # /login again (bench/app.py's CompStat warm-up waited 300 s for a page it never got).
    wait_for(lambda: urlparse(driver.current_url).path.rstrip("/") != "/login", timeout=60, what=f"log-in of {user!r}")


def wait_for(cond, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    t0 = time.perf_counter()
    last = None
    while time.perf_counter() - t0 < timeout:
        try:
            last = cond()
        except Exception as e:  # noqa: BLE001 - element not there yet
            last = e
            last = None
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# JS: the commander map's hexagon state (null until the map and its colours are there).
# ``drawn`` counts rendered hexagon features (0 until MapLibre has painted some);
# ``ids``/``v`` are what is coloured (positions in the app's universe, values).
#: ``coloured(map, feature)`` (tests/coloured.js): the colour MapLibre evaluates for a rendered
#: hexagon, from the layer's baked colours or a recolour's feature state, is not transparent.
JS_COLOURED = (Path(__file__).resolve().parent / "coloured.js").read_text()
JS_MAP_STATE = (
    JS_COLOURED
    + """
const gd = document.querySelector('#map .js-plotly-plot');
const H = window.rtccHex;
if (!gd || !gd._fullLayout || !gd._fullLayout.map || !H || !H.data) return null;
const m = gd._fullLayout.map._subplot && gd._fullLayout.map._subplot.map;
if (!m || !m.loaded() || !m.isStyleLoaded() || H.shown !== H.data || !m.getLayer('rtcc-hex-fill')) return null;
return {res: H.data.res, ids: H.data.ids, v: H.data.v, k: H.data.k, palette: H.data.palette, tiles: H.data.tiles,
        painted: H.painted,
        zoom: m.getZoom(), center: m.getCenter(), layoutZoom: gd.layout.map.zoom,
        drawn: m.queryRenderedFeatures({layers: ['rtcc-hex-fill']}).filter(f => coloured(m, f)).length};
"""
)
