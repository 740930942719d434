"""Security headers on every route of the running ``rtcc-geo serve``, and no Plotly
figure anywhere that offers to send data off the machine.

Routes: every rule of the Flask url_map (the app's own, Dash's, the feed's),
each with every method it takes, plus the scripts and styles the pages load,
asked anonymously and logged in. Figure configs: every ``dcc.Graph(...)`` in
the app's source has a ``config=``, evaluated where it is written; and every
graph on the rendered pages.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
import requests

from .serve_support import Commander, login, shared_server

APP_DIR = Path(__file__).resolve().parents[1] / "rtcc_geo" / "app"
CLOUD_BUTTONS = {"sendDataToCloud", "editInChartStudio", "editinchartstudio", "senddatatocloud"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    return shared_server(tmp_path_factory)


def check_headers(r: requests.Response, what: str) -> None:
    h = r.headers
    csp = h.get("Content-Security-Policy", "")
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives.get("default-src") == ["'self'"], (what, csp)
    assert directives.get("frame-ancestors") == ["'none'"], (what, csp)
    assert directives.get("object-src") == ["'none'"], (what, csp)
    for name, sources in directives.items():
        for src in sources:  # only this origin (plus local blob:/data: where named): no host, no wildcard
            assert src in ("'self'", "'none'", "'unsafe-inline'", "blob:", "data:") or src.startswith("'sha256-"), (
                what,
                name,
                src,
            )
    assert "'unsafe-inline'" not in directives.get("script-src", []) and "'unsafe-eval'" not in directives.get(
        "script-src", []
    )
    assert h.get("X-Frame-Options") == "DENY", what
    assert h.get("X-Content-Type-Options") == "nosniff", what
    assert h.get("Referrer-Policy") in ("same-origin", "no-referrer", "strict-origin-when-cross-origin"), what
    assert "Server" not in h, (what, h.get("Server"))


def _route_urls(srv, chief) -> list[tuple[str, str]]:
    """(method, path) for every url_map rule of the app as ``serve`` builds it."""
    from rtcc_geo.app import create_app
    from rtcc_geo.store import open_store

    app = create_app(open_store(store_dir=srv.store_dir), warm=False, live=True, feed_token="x" * 16)
    try:
        rules = list(app.server.url_map.iter_rules())
    finally:
        rt = getattr(app, "rtcc_live", None)
        if rt is not None:
            rt.engine.alerts.close()
    index = chief.get(srv.url + "/", timeout=30).text
    suites = re.findall(r'src="(/_dash-component-suites/[^"]+)"', index)
    assert suites, index[:500]
    sample = {
        "res": "9",
        "z": "0",
        "x": "0",
        "y": "0",
        "source": "synthetic",
        "filename": "live.js",
        "cell": "8928308280fffff",
        "path": "planner",
    }
    out = []
    for rule in rules:
        if rule.rule.startswith("/_dash-component-suites/"):
            paths = suites
        else:
            paths = [re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: sample[m.group(1)], rule.rule)]
        for m in sorted(rule.methods):
            out += [(m, p) for p in paths]
    # Pages no rule names on purpose: unknown paths, under the feed too.
    out += [
        ("GET", "/no/such/page"),
        ("GET", "/api/feed/synthetic/incidents"),
        ("GET", "/api/feed/nope"),
        ("POST", "/api/feed/nope/incidents"),
        ("GET", "/geo/cells/99.geojson"),
    ]
    return out


def test_every_route_sends_the_security_headers(srv):
    chief = login(srv.url, "chief")
    urls = _route_urls(srv, chief)
    assert len(urls) > 30
    seen = set()
    for who, s in (("anonymous", requests.Session()), ("chief", chief)):
        for method, path in urls:
            kw = {"json": {}} if method == "POST" else {}
            with s.request(method, srv.url + path, timeout=60, stream=True, allow_redirects=False, **kw) as r:
                what = f"{who} {method} {path} -> {r.status_code}"
                assert r.status_code < 500, what
                check_headers(r, what)
                if path.startswith("/api/feed/"):
                    assert "html" not in r.headers.get("Content-Type", ""), what  # machines only: never a page
                    if method == "GET":
                        assert r.status_code >= 400, what
                seen.add((r.status_code // 100, who))
    # Anonymous gets 401 (the log-in form for pages) everywhere: never a redirect to follow.
    assert {(2, "chief"), (4, "anonymous")} <= seen and (3, "anonymous") not in seen, seen
    assert srv.alive()


def _graph_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name == "Graph":
                yield node


def bad_config(cfg) -> list[str]:
    """What in a Plotly config could send a figure off the machine."""
    if not isinstance(cfg, dict):
        return [f"config is not a dict: {cfg!r}"]
    bad = [k for k in ("showSendToCloud", "showEditInChartStudio", "showLink") if cfg.get(k) is not False]
    bad += [k for k in ("plotlyServerURL", "linkText") if cfg.get(k)]
    if cfg.get("sendData"):
        bad.append("sendData")
    for k in ("modeBarButtonsToAdd", "modeBarButtons"):
        if CLOUD_BUTTONS & set(re.findall(r"[A-Za-z]+", repr(cfg.get(k, "")))):
            bad.append(k)
    return bad


def test_no_plotly_figure_config_offers_cloud_sharing():
    """Static: every dcc.Graph in the app's source names a config, and that config,
    evaluated in its module, switches every cloud button and link off."""
    graphs = 0
    for path in sorted(APP_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        calls = list(_graph_calls(tree))
        if not calls:
            continue
        mod = importlib.import_module("rtcc_geo." + ".".join(path.relative_to(APP_DIR.parent).with_suffix("").parts))
        for call in calls:
            graphs += 1
            where = f"{path.name}:{call.lineno}"
            kw = {k.arg: k.value for k in call.keywords}
            assert "config" in kw, f"{where}: dcc.Graph without config= (use figures.NO_CLOUD_CONFIG)"
            cfg = eval(compile(ast.Expression(kw["config"]), where, "eval"), vars(mod))
            assert not bad_config(cfg), (where, bad_config(cfg))
    assert graphs >= 4
    # Figures drawn by our own JavaScript take no config that could either.
    for js in APP_DIR.joinpath("assets").glob("*.js"):
        text = js.read_text()
        assert not re.search(
            r"(showSendToCloud|showEditInChartStudio|showLink)\s*:\s*true|plotlyServerURL|"
            r"sendDataToCloud|editInChartStudio",
            text,
        ), js.name


def test_rendered_pages_carry_only_safe_graph_configs(srv):
    chief = login(srv.url, "chief")
    c = Commander(chief, srv.url)
    graphs = [n for n in c.components.values() if n.get("type") == "Graph"]
    body = {**c.route_body, "inputs": [{"id": "url", "property": "pathname", "value": "/planner"}]}
    planner = chief.post(srv.url + "/_dash-update-component", json=body, timeout=120).json()
    from .serve_support import _walk

    found: dict = {}
    _walk(planner, found)
    graphs += [n for n in found.values() if n.get("type") == "Graph"]
    assert {g["props"]["id"] for g in graphs} >= {"map", "p-curve"}
    for g in graphs:
        assert not bad_config(g["props"].get("config")), (g["props"]["id"], g["props"].get("config"))


def test_requests_the_server_cannot_parse_get_the_headers_too(srv):
    """gunicorn answers these itself (the app never sees them): still no banner,
    no page that could load or frame anything."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(srv.url)
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with socket.create_connection((u.hostname, u.port), timeout=30) as s:
            s.sendall(raw)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        head = got.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert head.startswith("HTTP/1.1 4"), head
        lines = {ln.split(":", 1)[0].lower(): ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]}
        assert lines["x-content-type-options"] == "nosniff" and lines["x-frame-options"] == "DENY", head
        assert "frame-ancestors 'none'" in lines["content-security-policy"], head
        assert "server" not in lines and "html" not in lines["content-type"], head
    assert srv.alive()
