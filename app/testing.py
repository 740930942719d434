"""Helpers for the browser tests and the bench: an in-process server and headless Chromium.

The server is a werkzeug server in a daemon thread on 127.0.0.1 with a free
port (nothing to leak if a test dies); Chromium runs headless with every
background service off and its DevTools network log on, so a test can list
every URL the page asked for.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlparse

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,900",
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class LiveServer:
    """``with LiveServer(app.server) as url:`` serves a WSGI app on a free local port."""

    def __init__(self, wsgi_app, host: str = "127.0.0.1"):
        from werkzeug.serving import make_server

        self.srv = make_server(host, 0, wsgi_app, threaded=True)
        self.url = f"http://{host}:{self.srv.server_port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, name="rtcc-test-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(timeout=5)


def find_browser() -> tuple[str | None, str | None]:
    """(chromium binary, chromedriver) or Nones."""
    chrome = os.environ.get("RTCC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") \
        or shutil.which("google-chrome")
    driver = os.environ.get("RTCC_CHROMEDRIVER") or shutil.which("chromedriver")
    return chrome, driver


@contextmanager
def chromium(chrome: str, driver: str):
    """A headless Chromium WebDriver with performance (network) logging."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rtcc-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for f in CHROMIUM_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        d.set_page_load_timeout(60)
        yield d
    finally:
        try:
            d.quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (DevTools ``Network.requestWillBeSent``,
    which sees fetches, XHR, workers, images, fonts and style/tile requests alike)."""
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


# JS: number of hexagon features MapLibre has drawn in the map trace (0 until painted).
JS_MAP_STATE = """
const gd = document.querySelector('#map .js-plotly-plot');
if (!gd || !gd._fullLayout || !gd._fullLayout.map) return null;
const m = gd._fullLayout.map._subplot && gd._fullLayout.map._subplot.map;
if (!m || !m.loaded()) return null;
const z = gd.data[0] && gd.data[0].z;
return {loaded: m.loaded(), n: z ? z.length : 0, z0: z ? z.slice(0) : null,
        rendered: m.queryRenderedFeatures().length};
"""
