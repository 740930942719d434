"""Benchmark: the commander app as a user meets it, on the real ``rtcc-geo serve`` process.

    .venv/bin/python bench/app.py [--repeat 5] [--store DIR] [--cs-store DIR] [--no-browser]

Data: Philadelphia 2024 for the map (24,749 H3 res-10 cells: the city's cover plus
every cell with an incident) and Philadelphia 2023-2024 for CompStat, both the cached
example stores (:func:`rtcc_geo.datasets.example_store`, built from ../shared/data once)
unless ``--store`` / ``--cs-store`` name embedded stores. Each is served by its own
``rtcc-geo serve --port 0`` subprocess (gunicorn, live feed on), exactly as deployed.

Targets (issue 15), each printed PASS or MISS:

1. **map drawn < 1.5 s** at 24,749 cells with the base layers on, in headless Chromium
   (behind the trap proxy: nothing may leave the machine). *Map drawn* = the time from
   navigation start (``performance.now()`` of the page, so log-in and the previous page
   are not counted) to the first MapLibre ``idle`` event (no tile, source or transition
   work pending: the frame is painted) at which the hexagons carry the current colours
   (``rtccHex.shown`` is the data last received, all 24,749 cells), a coloured hexagon is
   rendered at the map's centre (coloured: the fill colour MapLibre evaluates for the
   rendered feature, feature state included, is not transparent: ``tests/coloured.js``), the district outlines are in the style and their labels
   placed, and, at street zoom (>= 10.5), street lines are rendered at the centre.
   Measured for two addresses, both must pass: the city view ``/?res=10&empty=1`` (zoom
   10.1, where streets are not drawn) and the street-zoom view
   ``/?res=10&empty=1&cam=11.00,<centre>`` (streets drawn). Median of ``--repeat`` loads
   after one warm-up load (browser cache warm, as for a user's second visit).
2. **filter change < 300 ms server side**: the map's filter callback (a category
   unticked; res 10 with empty cells, a Patch of colours) posted to the server as the
   browser posts it, round trip on 127.0.0.1; a different category set each time, so
   no cache hit. Median.
3. **CompStat page < 1 s** (two years of Philadelphia): navigation start to the CompStat
   table and the "what changed" list shown in the browser (no Dash callback pending;
   the page opens on its default end date, whose table the server has cached after the
   first load), and the table callback's server round trip with a different end date
   each time (no cache hit). Both medians must pass.

References measured in the same run, so a loaded machine can be judged (2 shared
cores): for 1, an **empty map** (Plotly + MapLibre with the same offline style and
district outlines, no hexagons, no Dash, no log-in) served as static files, time to its
first ``idle``; for 2 and 3, a trivial callback of the same server (the week label: no
store access), i.e. the server's own round-trip cost. Each printed as a ratio.
Screenshots: ``test-artifacts/bench_map_z10.png``, ``_z11.png``, ``_z15.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtcc_geo.auth import Users  # noqa: E402

PASSWORD = "quartz-meadow-lantern-42"
USER = "benchcmd"
ARTIFACTS = ROOT / "test-artifacts"
GOALS = {"map": 1.5, "filter": 0.3, "compstat": 1.0}

#: ``coloured(map, feature)``: the feature's fill colour, as MapLibre evaluates the hexagon
#: layer's paint for it (feature state included), is not transparent. Whether the colour
#: comes from feature state (before) or from the layer's expression (the colours baked in
#: as the worker decodes the tiles), this is the colour the hexagon is drawn with.
JS_COLOURED = (Path(__file__).resolve().parent.parent / "tests" / "coloured.js").read_text()
#: Injected into every page before its scripts: sets ``window.__rtcc.drawn`` (ms since
#: navigation start) at the first MapLibre 'idle' at which the map is complete (see above).
POLL = """
window.__rtcc = {};
%(coloured)s
const iv = setInterval(() => {
  const T = window.__rtcc, H = window.rtccHex;
  const gd = document.querySelector('#map .js-plotly-plot');
  const m = gd && gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot && gd._fullLayout.map._subplot.map;
  if (!m) return;
  clearInterval(iv);
  const box = (r) => { const c = m.getCanvas(), w = c.clientWidth / 2, h = c.clientHeight / 2;
                       return [[w - r, h - r], [w + r, h + r]]; };
  const check = () => {
    if (T.drawn || !H || !H.data || H.shown !== H.data || H.data.ids.length < %(n)d || !m.loaded()) return;
    const t = performance.now();
    const ids = m.getLayersOrder();
    if (!ids.some(id => id.indexOf('plotly-layout-layer-') === 0) || !(H.labels && H.labels.length)) return;
    if (m.getZoom() >= 10.5 && !(m.getLayer('rtcc-streets') &&
        m.queryRenderedFeatures(box(60), {layers: ['rtcc-streets']}).length)) return;
    // A small box at the centre (a whole-viewport query would add its own time).
    if (m.queryRenderedFeatures(box(60), {layers: ['rtcc-hex-fill']}).some(f => coloured(m, f))) {
      T.drawn = t; T.zoom = m.getZoom(); T.n = H.data.ids.length;
    }
  };
  m.on('idle', check);
  check();
}, 4);
"""
#: The reference: an empty map, the same Plotly bundle, style and outlines, no Dash.
REF_HTML = """<!doctype html><html><head><script src="plotly.min.js"></script></head>
<body style="margin:0"><div id="gd" style="width:100vw;height:100vh"></div><script src="ref.js"></script></body></html>"""
REF_JS = """
window.__rtcc = {};
(async () => {
  const spec = await (await fetch('spec.json')).json();
  const gd = document.getElementById('gd');
  await Plotly.newPlot(gd, [{type: 'scattermap', lon: [], lat: []}],
                       {map: spec.map, margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: false});
  const m = gd._fullLayout.map._subplot.map;
  const check = () => { if (!window.__rtcc.drawn && m.loaded()) window.__rtcc.drawn = performance.now(); };
  m.on('idle', check); check();
})();
"""
JS_DRAWN = "return window.__rtcc && window.__rtcc.drawn ? window.__rtcc : null"
JS_COMPSTAT = """
const t = document.getElementById('cs-compstat-table'), c = document.getElementById('cs-changes');
if (!t || !c || !c.children.length || document.querySelector('[data-dash-is-loading="true"]')) return null;
return performance.now();
"""


def _stats(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def _verdict(value: float, goal: float) -> str:
    return f"[goal < {goal:g} s: {'PASS' if value < goal else 'MISS'}]"


class StaticServer:
    """A plain HTTP server of a temporary folder on 127.0.0.1 (the reference page)."""

    def __init__(self, files: dict[str, bytes]):
        self.dir = tempfile.mkdtemp(prefix="rtcc-bench-ref-")
        for name, body in files.items():
            Path(self.dir, name).write_bytes(body)

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=self.dir))
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _stores(args):
    from rtcc_geo.datasets import example_store
    from rtcc_geo.store import open_store

    def get(path, years):
        s = open_store(store_dir=path) if path else example_store("philadelphia", years)
        Users(s).add(USER, PASSWORD, "commander", replace=True)
        return s

    return get(args.store, (2024,)), get(args.cs_store, (2023, 2024))


def _dep(deps: list, output_part: str) -> dict:
    return next(d for d in deps if output_part in d["output"])


def _body(dep: dict, values: dict, changed: str) -> dict:
    from tests.serve_support import _outputs

    def fill(specs):
        return [{**s, "value": values.get(f"{s['id']}.{s['property']}")} for s in specs]

    outs = _outputs(dep["output"])
    return {
        "output": dep["output"],
        "outputs": outs if dep["output"].startswith("..") else outs[0],
        "inputs": fill(dep["inputs"]),
        "state": fill(dep.get("state", [])),
        "changedPropIds": [changed],
    }


def _timed_posts(session, base: str, bodies: list[dict]) -> list[float]:
    out = []
    for b in bodies:
        t0 = time.perf_counter()
        r = session.post(base + "/_dash-update-component", json=b, timeout=120)
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200, (r.status_code, r.text[:300])
    return out


def filter_change(base: str, repeat: int) -> dict:
    """Server round trip of the map's filter callback (res 10, empty cells drawn) vs a trivial callback."""
    from tests.serve_support import Commander, login

    s = login(base, USER, PASSWORD)
    cmd = Commander(s, base)
    deps = s.get(base + "/_dash-dependencies", timeout=30).json()
    vals = {
        f"{i}.{p}": cmd.value(i, p)
        for i, p in (
            ("f-layer", "value"),
            ("f-start", "value"),
            ("f-end", "value"),
            ("f-cats", "value"),
            ("f-hours", "value"),
            ("f-dows", "value"),
            ("f-districts", "value"),
            ("f-week", "value"),
            ("f-weekmode", "value"),
        )
    }
    cats = cmd.options("f-cats")
    vals.update({"f-res.value": 10, "f-empty.value": ["empty"], "map-hex-key.data": None})
    first = s.post(base + "/_dash-update-component", json=_body(cmd.dep, vals, "f-res.value"), timeout=120).json()
    vals["map-hex-key.data"] = first["response"]["map-hex-key"]["data"]  # the browser holds res 10: Patches
    # A different category set each time (the layer cache never answers).
    sets = [[c for c in cats if c != a] for a in cats] + [
        [c for c in cats if c not in (a, b)] for i, a in enumerate(cats) for b in cats[i + 1 :]
    ]
    bodies = [_body(cmd.dep, {**vals, "f-cats.value": sets[i % len(sets)]}, "f-cats.value") for i in range(repeat)]
    sizes = []
    times = []
    for b in bodies:
        t0 = time.perf_counter()
        r = s.post(base + "/_dash-update-component", json=b, timeout=120)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200 and b"__dash_patch_update" in r.content and b"coordinates" not in r.content
        sizes.append(len(r.content))
    week = _dep(deps, "week-label.children")
    ref = _timed_posts(
        s, base, [_body(week, {"f-week.value": i, "f-weekmode.value": ["week"]}, "f-week.value") for i in range(repeat)]
    )
    return {"times": times, "bytes": statistics.median(sizes), "ref": ref}


def compstat_server(base: str, ends: list[str]) -> dict:
    from tests.serve_support import login

    s = login(base, USER, PASSWORD)
    deps = s.get(base + "/_dash-dependencies", timeout=30).json()
    table = _dep(deps, "cs-table.children")
    bodies = [_body(table, {"cs-end.date": e, "cs-district.value": "all"}, "cs-end.date") for e in ends]
    times = _timed_posts(s, base, bodies)
    week = _dep(deps, "week-label.children")  # the map's trivial callback, on this server too
    ref = _timed_posts(
        s,
        base,
        [_body(week, {"f-week.value": i, "f-weekmode.value": ["week"]}, "f-week.value") for i in range(len(ends))],
    )
    return {"times": times, "ref": ref}


def _draw(d, url: str, what: str) -> dict:
    from tests.browser import wait_for

    d.get(url)
    return wait_for(lambda: d.execute_script(JS_DRAWN), 300, what=what)


def browser_map(
    base: str, ctx_view: dict, n_cells: int, outlines: list, repeat: int, d, baseline: str | None = None
) -> dict:
    """Map drawn (city view and street zoom), the empty-map reference, screenshots, a filter
    click; with ``baseline`` (another server's URL: the same store served by another
    checkout) the same addresses there too, loads interleaved with ours."""
    from selenium.webdriver.common.by import By

    from rtcc_geo.app.figures import OFFLINE_STYLE
    from tests.browser import login, wait_for

    poll = POLL % {"n": n_cells, "coloured": JS_COLOURED}
    d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": poll})
    servers = {"": base, **({"base_": baseline} if baseline else {})}
    for b in servers.values():
        login(d, b, USER, PASSWORD)
        # Log-in lands on the default view (res 9, cells with incidents): wait for its colours.
        wait_for(lambda: d.execute_script("return !!(window.rtccHex && window.rtccHex.shown)"), 300, what="first map")
    c = ctx_view["center"]
    views = {"city": "/?res=10&empty=1", "z11": f"/?res=10&empty=1&cam=11.00,{c['lat']:.5f},{c['lon']:.5f}"}
    out: dict = {}
    for name, path in views.items():
        for b in servers.values():
            _draw(d, b + path, name)  # warm-up: tiles cut and cached, browser cache filled
        for _ in range(repeat):
            for prefix, b in servers.items():
                r = _draw(d, b + path, name)
                assert r["n"] == n_cells, r
                out.setdefault(prefix + name, []).append(r["drawn"] / 1000)
                out[prefix + name + "_zoom"] = r["zoom"]
    views = {k: base + v for k, v in views.items()}
    # Screenshots: city, street zoom, block zoom (looked at by a person; kept as artifacts).
    ARTIFACTS.mkdir(exist_ok=True)
    for z, url in (
        ("z10", views["city"]),
        ("z11", views["z11"]),
        ("z15", f"{base}/?res=10&empty=1&cam=15.00,39.95240,-75.16360"),
    ):
        _draw(d, url, f"screenshot {z}")
        time.sleep(0.3)
        d.save_screenshot(str(ARTIFACTS / f"bench_map_{z}.png"))
    # A filter click in the browser: untick a category -> hexagons recoloured and painted.
    _draw(d, views["city"], "city")
    js = (
        "const H = window.rtccHex, m = H && H.map; return H && H.shown === H.data && m && m.loaded() "
        "&& !m.isMoving() ? H.painted : -1"
    )
    clicks = []
    for cb in d.find_elements(By.CSS_SELECTOR, "#f-cats input")[:repeat]:
        before = d.execute_script(js)
        t0 = time.perf_counter()
        cb.click()
        wait_for(lambda before=before: d.execute_script(js) > before, 120, interval=0.01, what="recolour")
        clicks.append(time.perf_counter() - t0)
    out["click"] = clicks
    # Reference: the empty map, same browser, same style and outlines.
    import plotly

    spec = {"map": {"style": OFFLINE_STYLE, "layers": outlines, **ctx_view}}
    ref = StaticServer(
        {
            "ref.html": REF_HTML.encode(),
            "ref.js": REF_JS.encode(),
            "spec.json": json.dumps(spec).encode(),
            "plotly.min.js": (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes(),
        }
    )
    try:
        _draw(d, ref.url + "/ref.html", "reference")
        out["ref"] = [_draw(d, ref.url + "/ref.html", "reference")["drawn"] / 1000 for _ in range(repeat)]
    finally:
        ref.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", default=None, help="embedded store with Philadelphia 2024 (default: the example store)")
    ap.add_argument("--cs-store", default=None, help="embedded store with Philadelphia 2023-2024 (CompStat)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-browser", action="store_true", help="server timings only")
    ap.add_argument(
        "--baseline",
        default=None,
        metavar="CHECKOUT",
        help="also serve the map store with the code of another checkout (e.g. /work/main) and "
        "draw the same addresses there, interleaved: the ratio ours/baseline in one run",
    )
    args = ap.parse_args()
    from rtcc_geo.app.context import context_for
    from tests.browser import chromium, find_browser
    from tests.serve_support import ServeProcess

    map_store, cs_store = _stores(args)
    ctx = context_for(map_store, source="philadelphia", default_res=10)
    n_cells = len(ctx.universe(10))
    print(f"map store: {map_store!r}: {n_cells:,} hexagons at res 10")
    print(f"CompStat store: {cs_store!r}")
    results: dict = {}
    chrome, driver = find_browser()
    if not args.no_browser and not (chrome and driver):
        print("no chromium/chromedriver: install Debian 'chromium' and 'chromium-driver'", file=sys.stderr)
        return 1

    with ServeProcess(Path(map_store.root)) as srv:
        print(f"rtcc-geo serve (map): {srv.url}")
        fc = filter_change(srv.url, max(args.repeat, 5))
        results["filter"] = statistics.median(fc["times"])
        rf = statistics.median(fc["ref"])
        print(
            f"2. filter change, server round trip (res 10, 24,749 cells, Patch of colours, "
            f"{fc['bytes'] / 1e3:.0f} kB): {_stats(fc['times'])} {_verdict(results['filter'], GOALS['filter'])}"
        )
        print(
            f"   reference, trivial callback of the same server: median {rf * 1000:.0f} ms -> "
            f"ratio {results['filter'] / rf:.1f}x"
        )
        if not args.no_browser:
            with chromium(chrome, driver) as d:
                if args.baseline:
                    with ServeProcess(Path(map_store.root), env={"PYTHONPATH": args.baseline}) as old:
                        bm = browser_map(srv.url, ctx.view, n_cells, ctx.outline_layers, args.repeat, d, old.url)
                else:
                    bm = browser_map(srv.url, ctx.view, n_cells, ctx.outline_layers, args.repeat, d)
                offsite = [
                    u
                    for u in d.offsite
                    if not u.startswith(
                        ("update.googleapis.com:443", "http://update.googleapis.com/", "redirector.gvt1.com:443")
                    )
                ]
            rmed = statistics.median(bm["ref"])
            results["map"] = max(statistics.median(bm["city"]), statistics.median(bm["z11"]))
            for name, label in (("city", "city view"), ("z11", "street zoom, streets drawn")):
                med = statistics.median(bm[name])
                print(
                    f"1. map drawn, {n_cells:,} hexagons, {label} (zoom {bm[name + '_zoom']:.2f}): "
                    f"{_stats(bm[name])} {_verdict(med, GOALS['map'])}; ratio to the empty map {med / rmed:.1f}x"
                )
                if args.baseline:
                    old = statistics.median(bm["base_" + name])
                    print(
                        f"   baseline {args.baseline} (same store and addresses, loads interleaved): "
                        f"{_stats(bm['base_' + name])}; ratio to the empty map {old / rmed:.1f}x; "
                        f"ours / baseline {med / old:.2f}"
                    )
            print(
                f"   reference, empty map (Plotly + MapLibre, style and outlines, no hexagons, no Dash): "
                f"{_stats(bm['ref'])}"
            )
            print(
                f"   filter click -> recoloured and painted in the browser: median "
                f"{statistics.median(bm['click']) * 1000:.0f} ms"
            )
            print(f"   requests that would have left the machine (trap proxy): {len(offsite)} {offsite[:3]}")
            print(f"   screenshots: {ARTIFACTS}/bench_map_z10.png, _z11.png, _z15.png")
            assert not offsite, offsite

    last = dt.date(2024, 12, 31)
    ends = [(last - dt.timedelta(days=7 * i)).isoformat() for i in range(args.repeat + 1)]
    with ServeProcess(Path(cs_store.root)) as srv:
        print(f"rtcc-geo serve (CompStat): {srv.url}")
        cs = compstat_server(srv.url, ends)
        if not args.no_browser:
            with chromium(chrome, driver) as d:
                page = browser_compstat_pages(srv.url, args.repeat, d)
        ref = statistics.median(cs["ref"])
        med = statistics.median(cs["times"])
        results["compstat"] = max(med, statistics.median(page)) if not args.no_browser else med
        if not args.no_browser:
            print(
                f"3. CompStat page (2023-2024), navigation -> table and what-changed shown: {_stats(page)} "
                f"{_verdict(statistics.median(page), GOALS['compstat'])}"
            )
        print(
            f"   table callback, server round trip, a new end date each time (no cache hit): "
            f"{_stats(cs['times'])} {_verdict(med, GOALS['compstat'])}; trivial callback "
            f"{ref * 1000:.0f} ms -> ratio {med / ref:.1f}x"
        )

    print(f"(machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})")
    print("summary: " + ", ".join(f"{k} {v:.2f} s {'PASS' if v < GOALS[k] else 'MISS'}" for k, v in results.items()))
    return 0 if all(v < GOALS[k] for k, v in results.items()) else 2


def browser_compstat_pages(base: str, repeat: int, d) -> list[float]:
    """Navigation -> CompStat table and what-changed list shown (the page opens on its
    default end date; the server's table cache is warm after the first load)."""
    from tests.browser import login, wait_for

    login(d, base, USER, PASSWORD)
    d.get(base + "/compstat")
    wait_for(lambda: d.execute_script(JS_COMPSTAT), 300, what="compstat page (warm-up)")
    times = []
    for _ in range(repeat):
        d.get(base + "/compstat")
        times.append(wait_for(lambda: d.execute_script(JS_COMPSTAT), 300, what="compstat page") / 1000)
    return times


if __name__ == "__main__":
    sys.exit(main())
