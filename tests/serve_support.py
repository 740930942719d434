"""The real ``rtcc-geo serve`` process for tests and ``bench/serve.py``.

A small synthetic store is built with the CLI (``rtcc-geo demo --no-serve``:
one month, ~8k incidents, a few seconds), users are added with
``rtcc-geo users add --password-stdin``, and ``rtcc-geo serve --port 0`` runs
as a subprocess; its URL is read from its first line on stderr. Dash
callbacks are driven with the requests a browser sends: the callback
definitions come from ``/_dash-dependencies`` and the widget values from the
rendered commander page, so a changed page is exercised as it is.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rtcc_geo.cli.main"]
PASSWORD = "plinth-orbit-cascade-71"
FEED_TOKEN = "serve-test-feed-token"
USERS = {"chief": "commander"}


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("RTCC_NO_PROGRESS", "1")
    env.update(extra)
    return env


def build_store(root: Path, start: str = "2024-01-01", end: str = "2024-02-01") -> Path:
    """A synthetic month in an embedded store at ``root``, with the users of :data:`USERS`."""

    def run(*a, **kw):
        return subprocess.run([*CLI, *a], env=cli_env(), check=True, capture_output=True, text=True, timeout=300, **kw)

    run("demo", "--no-serve", "--start", start, "--end", end, "--store", str(root))
    for user, role in USERS.items():
        run("users", "add", user, "--role", role, "--password-stdin", "--store", str(root), input=PASSWORD + "\n")
    return root


class ServeProcess:
    """``with ServeProcess(store_dir) as srv:`` runs ``rtcc-geo serve`` (``srv.url``,
    ``srv.proc``, ``srv.log``: its stderr lines)."""

    def __init__(self, store: Path, *args: str, env: dict | None = None):
        self.cmd = [*CLI, "serve", "--store", str(store), "--port", "0", *args]
        self.env = cli_env(RTCC_FEED_TOKEN=FEED_TOKEN, RTCC_SECRET_KEY="serve-test-secret", **(env or {}))
        self.log: list[str] = []
        self.url = ""

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        ready = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"app on (http://\S+?)/", line)
                if m and not self.url:
                    self.url = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=drain, name="serve-stderr", daemon=True).start()
        if not ready.wait(120) or not self.url:
            self.stop()
            raise RuntimeError("rtcc-geo serve did not start:\n" + "\n".join(self.log))
        wait_up(self.url)
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_up(url: str, timeout: float = 60.0) -> None:
    import requests

    end = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "/login", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > end:
            raise TimeoutError(f"{url} does not answer")
        time.sleep(0.2)


class _Hidden(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def login(base: str, user: str, password: str = PASSWORD):
    """A ``requests.Session`` logged in through the form, as a browser does (any
    hidden form fields, e.g. a CSRF token, are sent back; same-origin headers)."""
    import requests

    s = requests.Session()
    s.headers.update({"Origin": base, "Referer": base + "/login"})
    page = s.get(base + "/login", timeout=30)
    form = _Hidden()
    form.feed(page.text)
    r = s.post(
        base + "/login",
        data={**form.fields, "username": user, "password": password, "next": "/"},
        timeout=30,
        allow_redirects=False,
    )
    if r.status_code not in (302, 303):
        raise AssertionError(f"log-in of {user} failed: {r.status_code} {r.text[:200]}")
    s.headers["Referer"] = base + "/"
    return s


# --- Dash callbacks as the browser sends them ---------------------------------
def _outputs(spec: str) -> list[dict]:
    parts = spec[2:-2].split("...") if spec.startswith("..") else [spec]
    out = []
    for p in parts:
        cid, prop = p.rsplit(".", 1)
        out.append({"id": cid, "property": prop})
    return out


def _walk(node, found: dict) -> None:
    if isinstance(node, list):
        for n in node:
            _walk(n, found)
    elif isinstance(node, dict):
        props = node.get("props")
        if isinstance(props, dict):
            if isinstance(props.get("id"), str):
                found[props["id"]] = node
            for v in props.values():
                _walk(v, found)
        else:
            for v in node.values():
                _walk(v, found)


class Commander:
    """The commander page's filter callback, built from the running app."""

    def __init__(self, session, base: str):
        self.s, self.base = session, base
        deps = session.get(base + "/_dash-dependencies", timeout=30).json()
        route = next(d for d in deps if "page.children" in d["output"])
        body = route_body = {
            "output": route["output"],
            "outputs": _outputs(route["output"]),
            "inputs": [{"id": "url", "property": "pathname", "value": "/"}],
            "changedPropIds": ["url.pathname"],
            "state": [{**st, "value": ""} for st in route.get("state", [])],
        }  # url.search
        r = session.post(base + "/_dash-update-component", json=route_body, timeout=60)
        r.raise_for_status()
        self.components: dict = {}
        _walk(r.json(), self.components)
        self.dep = next(d for d in deps if "map-hex.data" in d["output"])
        self.route_body = body

    def value(self, cid: str, prop: str):
        return self.components[cid]["props"].get(prop)

    def options(self, cid: str) -> list:
        return [o["value"] for o in self.components[cid]["props"].get("options", [])]

    def filter_click(self, rng: random.Random) -> dict:
        """A request body for one filter change (a random category set, hours, days, resolution)."""
        cats = self.options("f-cats")
        vals = {
            "f-cats.value": rng.sample(cats, rng.randint(1, len(cats))),
            "f-hours.value": sorted(rng.sample(range(25), 2)),
            "f-dows.value": sorted(rng.sample(range(7), rng.randint(1, 7))),
            "f-res.value": rng.choice([r for r in self.options("f-res") if r <= 9]),
        }
        changed = rng.choice(list(vals))

        def item(spec):
            key = f"{spec['id']}.{spec['property']}"
            v = vals[key] if key in vals else self.value(spec["id"], spec["property"])
            return {**spec, "value": v}

        return {
            "output": self.dep["output"],
            "outputs": _outputs(self.dep["output"]),
            "inputs": [item(i) for i in self.dep["inputs"]],
            "changedPropIds": [changed],
            "state": [item(i) for i in self.dep["state"]],
        }

    def post(self, body: dict, timeout: float = 60.0):
        return self.s.post(self.base + "/_dash-update-component", json=body, timeout=timeout)


@contextmanager
def session_pool(base: str, n: int, user: str = "chief"):
    """``n`` logged-in sessions, each with its :class:`Commander`."""
    cmds = [Commander(login(base, user), base) for _ in range(n)]
    try:
        yield cmds
    finally:
        for c in cmds:
            c.s.close()


def hammer(cmds: list[Commander], seconds: float, seed: int = 0) -> dict:
    """Every session clicks filters back to back for ``seconds`` (one thread each).
    Returns latencies (s) and every non-2xx answer or exception."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    for c in cmds:  # no connection left idle since the log-ins (the server closes those after 5 s)
        c.s.close()
    t_start = time.monotonic()
    stop = t_start + seconds

    def user(k: int, c: Commander):
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < stop:
            body = c.filter_click(rng)
            t0 = time.perf_counter()
            try:
                r = c.post(body)
                dt = time.perf_counter() - t0
                ok = r.status_code in (200, 204)
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(f"at {time.monotonic() - t_start:.1f} s: {r.status_code} {r.text[:200]}")
            except Exception as e:  # noqa: BLE001 - every failure is counted
                with lock:
                    errors.append(f"at {time.monotonic() - t_start:.1f} s: {e!r}")

    ts = [threading.Thread(target=user, args=(k, c)) for k, c in enumerate(cmds)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 120)
    return {"latencies": lat, "errors": errors}


def percentile(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


# --- one shared server for the serving tests ----------------------------------
_SHARED: dict = {}


def shared_server(tmp_path_factory) -> ServeProcess:
    """One ``rtcc-geo serve`` (24 threads: fewer than the attacks' streams, so a
    thread that is never given back would show) for all serving tests of a run."""
    import atexit

    if "srv" not in _SHARED:
        store = build_store(tmp_path_factory.mktemp("serve_store"))
        srv = ServeProcess(store, "--threads", "24").__enter__()
        srv.store_dir = store
        atexit.register(srv.stop)
        _SHARED["srv"] = srv
    return _SHARED["srv"]


def cookie_header(session) -> str:
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def feed_records(store_dir: Path, n: int, prefix: str, category: str = "theft") -> list[dict]:
    """``n`` incidents at the place and near the time of the store's latest ``category``
    incident (inside the live window; near-repeats of it and of each other)."""
    import pandas as pd

    from rtcc_geo.store import open_store

    st = open_store(store_dir=store_dir)
    df = st.incidents(columns=["lon", "lat", "category", "occurred_from"])
    last = df[df["category"] == category].sort_values("occurred_from").iloc[-1]
    return [
        {
            "id": f"{prefix}-{k}",
            "occurred_from": (last["occurred_from"] + pd.Timedelta(minutes=k + 1)).isoformat(),
            "category": category,
            "offense_raw": category,
            "lon": float(last["lon"]),
            "lat": float(last["lat"]),
        }
        for k in range(n)
    ]


def post_feed(base: str, records: list[dict], source: str = "synthetic"):
    import requests

    return requests.post(
        f"{base}/api/feed/{source}/incidents",
        json=records,
        timeout=60,
        headers={"Authorization": f"Bearer {FEED_TOKEN}"},
    )
