"""The Dash app on Philadelphia 2024: access control, what a viewer may receive,
recolour by Patch, export, users — over HTTP against the real Flask server.
(The headless-Chromium flow is in test_app_browser.py.)"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from rtcc_geo.auth import Users, hash_password, verify_password
from rtcc_geo.store.base import Query
from rtcc_geo.store.embedded import EmbeddedStore

from .test_app_common import PASSWORD, USERS, login_post, philly_app, philly_store  # noqa: F401  (fixtures)


# --- helpers -----------------------------------------------------------------


def client_for(app, user: str | None):
    c = app.server.test_client()
    if user is not None:
        r = login_post(c, user, PASSWORD)
        assert r.status_code == 302, r.data[:300]
    return c


def _value(spec, ctx, cell_hex=None):
    """A realistic value for a callback input/state (what the page sends)."""
    lo, hi = ctx.date_range
    f = ctx.default_filters()
    return {
        ("url", "pathname"): "/",
        ("url", "search"): "",
        ("f-layer", "value"): "counts",
        ("f-start", "value"): f.start,
        ("f-end", "value"): f.end,
        ("f-range", "value"): "12m",
        ("f-week", "value"): 10,
        ("f-weekmode", "value"): [],
        ("search", "value"): None,
        ("f-cats", "value"): list(ctx.categories),
        ("f-hours", "value"): [0, 24],
        ("f-dows", "value"): list(range(7)),
        ("f-districts", "value"): [],
        ("f-res", "value"): 9,
        ("f-empty", "value"): [],
        ("map-hex", "data"): None,
        ("map-hex-key", "data"): None,
        ("map-click", "data"): {"cell": cell_hex, "t": 1} if cell_hex else None,
        ("btn-geojson", "n_clicks"): 1,
        ("btn-csv", "n_clicks"): None,
        ("p-operators", "value"): 12,
        ("p-shifts", "value"): [8, 10, 12],
        ("p-sl", "value"): 0.9,
        ("p-target", "value"): 60,
        ("p-handle", "value"): 6.0,
    }.get((spec["id"], spec["property"]))


def payload(dep: dict, ctx, cell_hex=None, overrides: dict | None = None) -> dict:
    """The JSON body dash-renderer posts to /_dash-update-component for ``dep``."""
    overrides = overrides or {}

    def fill(specs):
        out = []
        for s in specs:
            v = overrides.get((s["id"], s["property"]), _value(s, ctx, cell_hex))
            out.append({"id": s["id"], "property": s["property"], "value": v})
        return out

    multi = dep["output"].startswith("..")
    parts = dep["output"][2:-2].split("...") if multi else [dep["output"]]
    outs = [dict(zip(("id", "property"), o.rsplit(".", 1))) for o in parts]
    inputs = fill(dep["inputs"])
    return {
        "output": dep["output"],
        "outputs": outs if multi else outs[0],
        "inputs": inputs,
        "state": fill(dep["state"]),
        "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs],
    }


def deps_of(app) -> list[dict]:
    c = client_for(app, "chief")
    r = c.get("/_dash-dependencies")
    assert r.status_code == 200
    return r.get_json()


def dep_for(deps, output_id: str) -> dict:
    for d in deps:
        if output_id in d["output"]:
            return d
    raise AssertionError(f"no callback with output {output_id}")


def busiest_cell(store, res=9) -> int:
    c = store.counts(res, ("cell",), Query(source="philadelphia"))
    return int(c.sort_values("n").iloc[-1]["cell"])


# --- users and password hashing -----------------------------------------------


def test_password_hash_is_salted_scrypt():
    a, b = hash_password("correct horse"), hash_password("correct horse")
    assert a != b and a.startswith("scrypt$")
    assert verify_password("correct horse", a) and verify_password("correct horse", b)
    assert not verify_password("correct hors", a)
    # Independent check: recompute the stored hash with hashlib directly.
    import hashlib

    _, n, r, p, salt, want = a.split("$")
    got = hashlib.scrypt(
        b"correct horse", salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=2**26, dklen=32
    ).hex()
    assert got == want


def test_users_cli_add_list_remove(tmp_path, monkeypatch, capsys):
    from rtcc_geo.cli.main import main

    store = str(tmp_path / "s")
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-pass-phrase\n"))
    assert main(["users", "add", "lee", "--role", "analyst", "--password-stdin", "--store", store]) == 0
    assert Users(EmbeddedStore(store)).authenticate("lee", "s3cret-pass-phrase") == "analyst"
    assert Users(EmbeddedStore(store)).authenticate("lee", "wrong-pass") is None
    # Stored as a hash, never the password.
    raw = EmbeddedStore(store).get_table("users")
    assert "s3cret-pass" not in raw.to_csv()
    monkeypatch.setattr("sys.stdin", io.StringIO("another-pass-phrase\n"))
    assert main(["users", "add", "lee", "--role", "viewer", "--password-stdin", "--store", store]) == 2
    assert "exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "kim", "--role", "viewer", "--password-stdin", "--store", store]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["users", "list", "--json", "--store", store]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["username"], u["role"]) for u in listed] == [("lee", "analyst")]
    assert "password" not in json.dumps(listed)
    assert main(["users", "remove", "lee", "--store", store]) == 0
    assert main(["users", "remove", "lee", "--store", store]) == 2
    assert Users(EmbeddedStore(store)).list().empty


# --- access ----------------------------------------------------------------------


def test_login_rejects_wrong_password_and_open_redirect(philly_app):
    c = philly_app.server.test_client()
    r = login_post(c, "chief", "nope-nope")
    assert r.status_code == 401 and b"Wrong user name or password" in r.data
    assert c.get("/_dash-layout").status_code == 401
    r = login_post(c, "chief", PASSWORD, "https://evil.example/x")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert c.get("/_dash-layout").status_code == 200


def test_every_page_and_callback_refuses_anonymous(philly_app):
    app = philly_app
    ctx = app.rtcc
    deps = deps_of(app)
    assert len(deps) >= 5
    cell = format(busiest_cell(ctx.store), "x")
    anon = client_for(app, None)
    chief = client_for(app, "chief")

    # Every callback: refused anonymously, answered with a session (so the refusal is the guard's).
    for dep in deps:
        if dep.get("clientside_function"):
            continue  # runs in the browser (live points appended to the map); no server route
        body = payload(dep, ctx, cell)
        r = anon.post("/_dash-update-component", json=body)
        assert r.status_code == 401, (dep["output"], r.status_code)
        assert b"log in" in r.data
        ok = chief.post("/_dash-update-component", json=body)
        assert ok.status_code in (200, 204), (dep["output"], ok.status_code, ok.data[:300])

    # Every route of the server answers 401 (pages with the log-in form).
    rules = [r.rule for r in app.server.url_map.iter_rules()]
    concrete = {
        "/": "/",
        "/<path:path>": "/planner",
        "/_dash-layout": "/_dash-layout",
        "/_dash-dependencies": "/_dash-dependencies",
        "/_reload-hash": "/_reload-hash",
        "/_favicon.ico": "/_favicon.ico",
        "/geo/cells/<int:res>.geojson": "/geo/cells/9.geojson",
        "/geo/tiles/<int:res>/<int:z>/<int:x>/<int:y>.pbf": "/geo/tiles/9/10/298/387.pbf",
        "/_dash-component-suites/<string:package_name>/<path:fingerprinted_path>": "/_dash-component-suites/dash/dcc/dash_core_components.js",
        "/assets/<path:filename>": "/assets/x.css",
        "/static/<path:filename>": "/static/x.js",
        "/geo/base/streets/<int:z>/<int:x>/<int:y>.pbf": "/geo/base/streets/11/596/775.pbf",
        "/geo/place/<cell>": f"/geo/place/{cell}",
    }
    # The live feed authenticates machines by bearer token, the stream needs a session.
    assert anon.post("/api/feed/philadelphia/incidents", json={}).status_code in (401, 403)
    assert anon.post(
        "/api/feed/philadelphia/incidents", json={}, headers={"Authorization": "Bearer wrong"}
    ).status_code in (401, 403)
    assert anon.get("/api/live/stream").status_code == 401
    for rule in rules:
        if rule in ("/login", "/logout", "/api/feed/<source>/incidents", "/api/live/stream"):
            continue
        assert rule in concrete or rule == "/_dash-update-component", f"new route {rule}: add it to this test"
        if rule == "/_dash-update-component":
            continue
        url = concrete[rule]
        r = anon.get(url)
        assert r.status_code == 401, (url, r.status_code)
        if not url.startswith(("/_", "/geo/", "/assets/", "/static/")):
            assert b'id="login-form"' in r.data, url
        else:  # the log-in form shows the app's title (as GET /login does), data routes nothing
            assert b"philadelphia" not in r.data.lower()
    for url in (
        "/",
        "/planner",
        "/_dash-layout",
        "/geo/cells/9.geojson",
        "/geo/tiles/9/10/298/387.pbf",
        "/geo/base/streets/11/596/775.pbf",
        f"/geo/place/{cell}",
    ):
        assert chief.get(url).status_code == 200, url
    # After log-out (POST only) the same client is refused again.
    chief.get("/logout")  # a GET (a link, an <img> on another site) does not log anyone out
    assert chief.get("/_dash-layout").status_code == 200
    chief.post("/logout")
    assert chief.get("/_dash-layout").status_code == 401


def test_drill_down_says_how_many_rows_have_no_time(philly_app):
    """The profile counts incidents with a known time; the rest are named, not lost."""
    app, ctx = philly_app, philly_app.rtcc
    f = ctx.default_filters()
    q = f.query("philadelphia", ctx.categories)
    inc = ctx.store.incidents(q.with_(include_unknown_time=True, geolocated=True), columns=["h3_r9", "time_known"])
    unknown = inc[~inc["time_known"].astype(bool)].groupby("h3_r9").size()
    assert len(unknown), "Philadelphia 2024 has time-unknown rows (UCR 100 with a placeholder time)"
    cell = int(unknown.sort_values().index[-1])
    drill = dep_for(deps_of(app), "drill-body.children")
    body = json.dumps(_post(client_for(app, "chief"), drill, ctx, format(cell, "x")).get_json(), ensure_ascii=False)
    known = int((inc["h3_r9"] == cell).sum() - unknown[cell])
    assert f"Hour-of-week profile · {known:,} incidents" in body
    assert f"{int(unknown[cell]):,} with unknown time not shown" in body
    # The busiest blocks line: the cell's own rows counted with pandas (ties by address).
    blk = ctx.store.incidents(q.with_(include_unknown_time=True, geolocated=True), columns=["h3_r9", "block"])
    vc = blk.loc[blk["h3_r9"] == cell, "block"].dropna().value_counts().reset_index()
    vc.columns = ["block", "n"]
    vc = vc.sort_values(["n", "block"], ascending=[False, True]).head(3)
    assert "Busiest blocks here: " + "; ".join(f"{b} ({k:,})" for b, k in zip(vc["block"], vc["n"])) in body


def test_removed_user_loses_access(philly_app):
    from rtcc_geo.app.auth import _ROLE_TTL_S

    c = client_for(philly_app, "temp")
    assert c.get("/_dash-layout").status_code == 200
    Users(philly_app.rtcc.store).remove("temp")
    import time

    time.sleep(_ROLE_TTL_S + 0.2)
    assert c.get("/_dash-layout").status_code == 401


def _post(client, dep, ctx, cell=None, overrides=None):
    r = client.post("/_dash-update-component", json=payload(dep, ctx, cell, overrides))
    assert r.status_code in (200, 204), r.data[:500]
    return r


def test_viewer_never_receives_incident_fields(philly_app):
    app, ctx = philly_app, philly_app.rtcc
    deps = deps_of(app)
    cell = busiest_cell(ctx.store)
    hexid = format(cell, "x")
    rows = ctx.store.incidents(Query(source="philadelphia", cells=(cell,), cells_res=9))
    assert len(rows) > 50
    secrets = set(rows["block"].dropna().astype(str)) | set(rows["id"].astype(str).tail(200))
    secrets |= set(rows["offense_raw"].dropna().astype(str))

    def leaked(body: str) -> set[str]:
        return {s for s in secrets if s and s in body}

    viewer, chief = client_for(app, "vic"), client_for(app, "chief")
    drill = dep_for(deps, "drill-body.children")
    # The commander gets the incident table: the check can see incident fields when they are there.
    body = _post(chief, drill, ctx, hexid).get_data(as_text=True)
    assert leaked(body), "commander should see recent incidents (blocks, offense text)"
    assert "drill-incidents" in body
    # The viewer gets the profile and trend of the same cell but no incident field at all.
    body = _post(viewer, drill, ctx, hexid).get_data(as_text=True)
    assert "drill-profile" in body and "Hour-of-week profile" in body
    assert not leaked(body), f"viewer received incident fields: {sorted(leaked(body))[:5]}"
    assert "not shown to the viewer role" in body
    # Every other callback answered for a viewer carries no incident field either.
    for dep in deps:
        if dep is drill or dep.get("clientside_function"):
            continue
        r = viewer.post("/_dash-update-component", json=payload(dep, ctx, hexid))
        if r.status_code == 403:  # planner callback: not the viewer's page
            assert "p-curve" in dep["output"] or "a-table" in dep["output"]  # planner page, audit page
            continue
        assert r.status_code in (200, 204), (dep["output"], r.status_code)
        assert not leaked(r.get_data(as_text=True)), dep["output"]
    # Exports are aggregated cells only.
    exp = dep_for(deps, "download.data")
    for btn in ("btn-geojson", "btn-csv"):
        ov = {
            ("btn-geojson", "n_clicks"): 1 if btn == "btn-geojson" else None,
            ("btn-csv", "n_clicks"): 1 if btn == "btn-csv" else None,
        }
        body = viewer.post(
            "/_dash-update-component", json={**payload(exp, ctx, hexid, ov), "changedPropIds": [f"{btn}.n_clicks"]}
        ).get_data(as_text=True)
        assert not leaked(body)
    # The planner page's callback refuses a viewer outright.
    plan = dep_for(deps, "p-curve.figure")
    assert viewer.post("/_dash-update-component", json=payload(plan, ctx)).status_code == 403


def _drawn(ctx, data) -> pd.Series:
    """The values the map colours, by cell (from the map-hex data the browser gets)."""
    cells = ctx.universe(data["res"])[np.asarray(data["ids"], dtype=np.int64)]
    return pd.Series(np.array(data["v"], dtype=float), index=cells)


def test_map_recolours_with_values_only_and_right_counts(philly_app):
    app, ctx = philly_app, philly_app.rtcc
    dep = dep_for(deps_of(app), "map-hex.data")
    c = client_for(app, "chief")
    # The page itself carries the first colours (no callback round trip) and an offline
    # map whose zoom survives redraws; no hexagon geometry travels with it.
    route = dep_for(deps_of(app), "page.children")
    page = json.dumps(_post(c, route, ctx).get_json())
    assert '"map-hex"' in page and "/geo/tiles/9/" in page and '"uirevision": "rtcc-map"' in page
    assert '"glyphs"' not in page and '"sprite"' not in page and "choropleth" not in page
    assert page.count('"coordinates"') <= 30  # the outlines only, not 3,588 hexagons
    first = _post(c, dep, ctx, overrides={("f-cats", "value"): list(ctx.categories)}).get_json()["response"]
    data = first["map-hex"]["data"]
    assert data["res"] == 9 and data["tiles"].startswith("/geo/tiles/9/{z}/{x}/{y}.pbf?v=")
    assert len(data["ids"]) == len(data["k"]) == len(data["v"])
    # Counts equal an independent tally of incident rows (pandas on Store.incidents).
    f = ctx.default_filters()
    inc = ctx.store.incidents(
        Query(
            source="philadelphia",
            start=f.start,
            geolocated=True,  # map: located ones
            end=(pd.Timestamp(f.end) + pd.Timedelta(days=1)).strftime("%Y-%m-%d"),
        )
    )
    want = inc.groupby("h3_r9").size()
    got = _drawn(ctx, data)
    assert got.sum() == len(inc) == want.sum()
    assert len(got) == len(want) and (got.reindex(want.index) == want).all()
    # Colour index: monotone in the value, capped at the top of the scale.
    k = np.array(data["k"])
    order = np.argsort(got.to_numpy(), kind="stable")
    assert np.all(np.diff(k[order]) >= 0) and k.max() == len(data["palette"]) - 1 and k.min() >= 0

    # Category change with the same tiles and layer in the browser: a Patch of positions,
    # palette indices and values only (no geometry, no tiles, no palette), theft counts only.
    key = first["map-hex-key"]["data"]
    r = _post(c, dep, ctx, overrides={("f-cats", "value"): ["theft"], ("map-hex-key", "data"): key})
    raw = r.get_data(as_text=True)
    resp = json.loads(raw)["response"]
    assert "geojson" not in raw and "coordinates" not in raw and "/geo/tiles/" not in raw
    assert len(raw) < 0.2 * len(ctx.geometry_body(9))
    patch = resp["map-hex"]["data"]
    assert patch.get("__dash_patch_update")
    ops = {tuple(o["location"]): o["params"]["value"] for o in patch["operations"]}
    assert {k[0] for k in ops} <= {"ids", "k", "v", "zmin", "zmax", "empty"} and {("ids",), ("k",), ("v",)} <= set(ops)
    theft = inc[inc["category"] == "theft"].groupby("h3_r9").size()
    got = _drawn(ctx, {"res": 9, "ids": ops[("ids",)], "v": ops[("v",)]})
    assert len(got) == len(theft)  # exactly the cells with a theft are drawn
    assert got.sum() == theft.sum() and (got.reindex(theft.index) == theft).all()
    assert "theft" in json.dumps(resp["summary"])
    assert "Incident counts" in json.dumps(resp["legend"])
    # A resolution change sends the whole spec: the other resolution's tiles; positions refer to its cells.
    d8 = _post(c, dep, ctx, overrides={("f-res", "value"): 8, ("map-hex-key", "data"): key}).get_json()["response"][
        "map-hex"
    ]["data"]
    assert d8["res"] == 8 and d8["tiles"].startswith("/geo/tiles/8/")
    assert _drawn(ctx, d8).sum() == len(inc)


def _page_parts(client, route, ctx, search: str) -> dict:
    """The commander page the route callback builds for an address ``search``: components by id."""
    from .serve_support import _walk

    r = _post(client, route, ctx, overrides={("url", "search"): search}).get_json()["response"]
    found: dict = {}
    _walk(r["page"]["children"], found)
    return found


def test_an_address_opens_on_its_own_view_in_one_round_trip(philly_app):
    """``/?res=10&empty=1&cats=theft&...&cam=...`` is built into the page itself (colours,
    widgets, camera): the browser draws that view first, no default view before it."""
    app, ctx = philly_app, philly_app.rtcc
    route = dep_for(deps_of(app), "page.children")
    c = client_for(app, "chief")
    p = _page_parts(
        c,
        route,
        ctx,
        "?layer=counts&start=2024-12-04&end=2024-12-31&cats=theft&res=10&empty=1&cam=12.50,39.95000,-75.16000",
    )
    data = p["map-hex"]["props"]["data"]
    assert data["res"] == 10 and data["tiles"].startswith("/geo/tiles/10/")
    assert len(data["ids"]) == len(ctx.universe(10))  # every cell drawn, empty ones too
    inc = ctx.store.incidents(Query(source="philadelphia", start="2024-12-04", end="2025-01-01", geolocated=True))
    theft = inc[inc["category"] == "theft"].groupby("h3_r10").size()
    got = _drawn(ctx, data)
    got = got[got > 0]
    assert got.sum() == theft.sum() and len(got) == len(theft) and (got.reindex(theft.index) == theft).all()
    props = {k: p[k]["props"]["value"] for k in ("f-cats", "f-start", "f-end", "f-res", "f-empty", "f-layer")}
    assert props == {
        "f-cats": ["theft"],
        "f-start": "2024-12-04",
        "f-end": "2024-12-31",
        "f-res": 10,
        "f-empty": ["empty"],
        "f-layer": "counts",
    }
    assert p["f-range"]["props"]["value"] == "28d"
    cam = p["map"]["props"]["figure"]["layout"]["map"]
    assert cam["zoom"] == 12.5 and cam["center"] == {"lat": 39.95, "lon": -75.16}
    assert "2024-12-04 to 2024-12-31" in json.dumps(p["summary"]["props"]["children"])
    done = p["view-applied"]["props"]
    assert (done["data-search"], done["data-filters"], done["data-cam"]) == (
        "?layer=counts&start=2024-12-04&end=2024-12-31&cats=theft&res=10&empty=1&cam=12.50,39.95000,-75.16000",
        "1",
        "1",
    )

    # A camera alone: the default filters, the camera from the address.
    p = _page_parts(c, route, ctx, "?cam=11.00,40.00000,-75.10000")
    assert p["map-hex"]["props"]["data"]["res"] == ctx.default_res
    assert p["map"]["props"]["figure"]["layout"]["map"]["zoom"] == 11.0
    assert (p["view-applied"]["props"]["data-filters"], p["view-applied"]["props"]["data-cam"]) == ("", "1")
    # Nonsense is not trusted: defaults instead (and view.js applies nothing the page did not take).
    p = _page_parts(c, route, ctx, "?res=99&hours=a-b&dows=x&cam=99,0,0&layer=<script>")
    assert p["f-res"]["props"]["value"] == ctx.default_res and p["f-hours"]["props"]["value"] == [0, 24]
    assert p["f-layer"]["props"]["value"] == "counts" and p["view-applied"]["props"]["data-cam"] == ""
    assert p["map"]["props"]["figure"]["layout"]["map"]["zoom"] == ctx.view["zoom"]
    # A district with no incident: that view (nothing coloured), as the filter callback draws it.
    p = _page_parts(c, route, ctx, "?d=no-such-district&res=8")
    assert p["map-hex"]["props"]["data"]["res"] == 8 and p["map-hex"]["props"]["data"]["ids"] == []
    assert p["f-districts"]["props"]["value"] == ["no-such-district"]
    # No address: the default view, as before.
    p = _page_parts(c, route, ctx, "")
    assert p["map-hex"]["props"]["data"]["res"] == ctx.default_res and p["view-applied"]["props"]["data-search"] == ""


def test_cells_geojson_and_exports(philly_app):
    app, ctx = philly_app, philly_app.rtcc
    c = client_for(app, "vic")
    r = c.get("/geo/cells/9.geojson")
    assert r.status_code == 200 and r.headers["Cache-Control"].startswith("private")
    gj = r.get_json()
    ids = np.array([int(f["id"], 16) for f in gj["features"]], dtype=np.int64)
    import h3

    assert all(h3.api.basic_int.get_resolution(int(i)) == 9 for i in ids[:500])
    # Every cell with an incident is drawn.
    have = ctx.store.counts(9, ("cell",), Query(source="philadelphia"))["cell"].to_numpy(np.int64)
    assert np.isin(have, ids).all()
    assert c.get("/geo/cells/9.geojson", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    # The map's vector tiles: feature ids are positions in the same cell list.
    import mapbox_vector_tile as mvt

    info = ctx.tiles_info(9)
    lon, lat = ctx.view["center"]["lon"], ctx.view["center"]["lat"]
    x = int((lon + 180) / 360 * 2**11)
    y = int((1 - np.arcsinh(np.tan(np.radians(lat))) / np.pi) / 2 * 2**11)
    url = info["tiles"].replace("{z}", "11").replace("{x}", str(x)).replace("{y}", str(y))
    t = c.get(url)
    assert t.status_code == 200 and t.mimetype == "application/vnd.mapbox-vector-tile"
    assert t.headers["Cache-Control"].startswith("private")
    feats = mvt.decode(t.data)["hex"]["features"]
    universe = ctx.universe(9)
    assert len(feats) > 50
    assert all(format(int(universe[f["id"]]), "x") == f["properties"]["h"] for f in feats)
    assert c.get(url, headers={"If-None-Match": t.headers["ETag"]}).status_code == 304
    assert c.get("/geo/tiles/9/11/99999/1.pbf").status_code == 404

    from rtcc_geo.app.layers import COUNTS
    from rtcc_geo.app.pages.commander import export_view

    f = ctx.default_filters()
    f.categories = ("burglary",)
    body, name = export_view(ctx, COUNTS, f, "csv", role="commander")
    df = pd.read_csv(io.StringIO(body))
    assert name.endswith(".csv") and list(df.columns) == [
        "cell",
        "lat",
        "lon",
        "place",
        "counts",
    ]  # one writer: id, centre, then the table
    q = f.query("philadelphia", ctx.categories)
    assert df["counts"].sum() == ctx.store.count(q.with_(geolocated=True))  # the map: incidents with a location
    body, name = export_view(ctx, COUNTS, f, "geojson", role="commander")
    gj = json.loads(body)
    assert len(gj["features"]) == len(df) and gj["rtcc_view"]["categories"] == ["burglary"]
    assert sum(ft["properties"]["value"] for ft in gj["features"]) == ctx.store.count(q.with_(geolocated=True))


def test_every_layer_recolours_with_the_library_values(philly_app):
    """Each offered layer goes through the map callback, and the drawn values are
    exactly what the rtcc_geo function returns for the view."""
    from rtcc_geo.app.layers import available_layers

    app, ctx = philly_app, philly_app.rtcc
    dep = dep_for(deps_of(app), "map-hex.data")
    c = client_for(app, "vic")
    f = ctx.default_filters()
    q = f.query("philadelphia", ctx.categories)
    layers = {lay.id: lay for lay in available_layers()}
    assert "counts" in layers
    # Three live alerts on the res-10 grid: two open in one res-9 cell, one acknowledged.
    from rtcc_geo import grid

    busy = busiest_cell(ctx.store, 10)
    other = int(ctx.store.counts(10, ("cell",), Query(source="philadelphia")).sort_values("n")["cell"].iloc[-50])
    ctx.store.put_table(
        "alerts",
        pd.DataFrame(
            {
                "alert_id": pd.Series(["a1", "a2", "a3"], dtype="string"),
                "kind": pd.Series(["hotspot"] * 3, dtype="string"),
                "created_at": pd.Series(pd.to_datetime(["2024-12-30T10:00Z"] * 3)),
                "source": pd.Series(["philadelphia"] * 3, dtype="string"),
                "incident_id": pd.Series(["x1", "x2", "x3"], dtype="string"),
                "cell": pd.array([busy, busy, other], dtype="Int64"),
                "reason": pd.Series(["r"] * 3, dtype="string"),
                "data": pd.Series(["{}"] * 3, dtype="string"),
                "acknowledged": [False, False, True],
                "ack_by": pd.Series([None, None, "chief"], dtype="string"),
                "ack_at": pd.Series([pd.NaT] * 3, dtype="datetime64[ns, UTC]"),
            }
        ),
    )
    for lid, lay in layers.items():
        ov = {("f-layer", "value"): lid, ("f-empty", "value"): ["empty"]}
        data = _post(c, dep, ctx, overrides=ov).get_json()["response"]["map-hex"]["data"]
        z = _drawn(ctx, data)
        if lay.kind == "categorical":
            z = pd.Series(np.array(data["k"], dtype=float), index=z.index)
        if lid == "gistar":
            from rtcc_geo.hotspots import hotspots

            ref = hotspots(ctx.store, "gistar", 9, q, boundary=ctx.boundary, permutations=0)
            want = pd.Series(ref["bin"].to_numpy(float), index=ref["cell"].to_numpy(np.int64))
            codes = {v: i for i, (v, _, _) in enumerate(lay.classes)}
            want = want.map(codes)
            assert (z.reindex(want.index) == want).all()
        elif lid == "kde":
            from rtcc_geo.hotspots import hotspots

            ref = hotspots(ctx.store, "kde", 9, q, boundary=ctx.boundary)
            want = pd.Series(ref["density"].to_numpy(float), index=ref["cell"].to_numpy(np.int64))
            np.testing.assert_allclose(z.reindex(want.index).to_numpy(), want.to_numpy(), rtol=1e-3, atol=1e-9)
        elif lid == "counts":
            # A viewer: cells of 1-4 incidents are not sent (small-count suppression, k = 5);
            # the map counts incidents with a location only.
            raw = ctx.store.counts(9, ("cell",), q)["n"].to_numpy()
            assert raw.min() < 5 and not ((z > 0) & (z < 5)).any()
            assert z.sum() == ctx.store.count(q.with_(geolocated=True)) - raw[raw < 5].sum()
        elif lid == "alerts":
            p = int(grid.parent(np.array([busy]), 9)[0])
            # The layer counts 2 open alerts there (the acknowledged one is not counted) ...
            from rtcc_geo.app.layers import compute as layer_values

            full = layer_values(ctx, lay, f).set_index("cell")["value"]
            assert full[p] == 2 and full.sum() == 2
            # ... which a viewer never receives: a count below k = 5 (small-count suppression).
            assert p not in z.index or not z[p] > 0
            assert not ((z > 0) & (z < 5)).any()
        elif lid == "changed":
            from rtcc_geo.compstat.changes import what_changed

            t = what_changed(
                ctx.store,
                q.with_(start=None, end=None),
                end=f.end or ctx.date_range[1],
                res=9,
                top=None,
                names=False,
                ehsa_weeks=0,
            ).table
            t = t[t["unit"] == "cell"] if len(t) else pd.DataFrame({"key": [], "excess": []})
            want = pd.Series(t["excess"].to_numpy(float), index=t["key"].astype("int64").to_numpy())
            assert (z.reindex(want.index) == want).all()
            assert (z.drop(want.index, errors="ignore") == 0).all()
        else:
            assert len(z) > 0 and np.isfinite(z.to_numpy()).all(), lid


def test_serve_bootstraps_one_admin_and_has_help(tmp_path, capsys):
    from rtcc_geo.cli.main import main
    from rtcc_geo.cli.serve import ensure_admin

    store = EmbeddedStore(tmp_path / "s")
    pw = ensure_admin(store)
    assert pw and Users(store).authenticate("admin", pw) == "commander"
    assert ensure_admin(store) is None  # only when there are no users at all
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for flag in ("--db", "--store", "--host", "--port"):
        assert flag in out
    assert main(["serve", "--store", str(tmp_path / "empty")]) == 2
    assert "store is empty" in capsys.readouterr().err


def test_serve_asks_which_agency_when_the_store_holds_several(tmp_path, capsys):
    """Not silently the first by name: that would hide the other agencies' incidents and alerts."""
    from rtcc_geo.cli.main import main

    store = EmbeddedStore(tmp_path / "two")
    store.register_source("northtown", "America/New_York")
    store.register_source("southtown", "America/Chicago")
    assert main(["serve", "--store", str(tmp_path / "two"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "several sources" in err and "northtown" in err and "southtown" in err and "--source" in err


def test_filters_never_trust_the_browser():
    from rtcc_geo.app.context import Filters

    f = Filters.from_widgets(
        "not a date", "2024-02-30x", ["theft", "'; DROP TABLE", 3], [30, -5], [0, 9, "x"], [{"a": 1}, "7"], "99"
    )
    assert f.start is None and f.end is None
    assert f.categories == ("theft",) and f.hours == (0, 24) and f.dows == (0,)
    assert f.districts == ("7",) and f.res == 9
    f = Filters.from_widgets("2024-03-01", "2024-03-31", None, [22, 6], list(range(7)), [], 8)
    assert f.hours == (6, 22) and f.res == 8 and f.start == "2024-03-01"
    q = f.query("philadelphia", ("theft",))
    assert q.end == "2024-04-01" and q.hours == tuple(range(6, 22)) and q.dows is None


def test_header_says_what_is_coloured_with_and_without_empty_cells(philly_app):
    """With "draw empty cells" every cell is coloured: the header must not claim they all have incidents."""
    import dataclasses

    from rtcc_geo.app.layers import COUNTS
    from rtcc_geo.app.pages.commander import summary

    ctx = philly_app.rtcc
    f = ctx.default_filters()
    values = pd.DataFrame({"value": [0.0, 0.0, 3.0, 1.0, np.nan]})
    text = json.dumps([str(p) for p in summary(ctx, COUNTS, f, values)])
    assert "2 of 5 cells coloured (cells with at least one incident)" in text
    text = json.dumps([str(p) for p in summary(ctx, COUNTS, dataclasses.replace(f, show_empty=True), values)])
    assert "4 of 5 cells coloured (empty cells drawn too; 2 with at least one incident)" in text


def test_count_legend_tops_out_at_a_whole_count(philly_app):
    """Counts are whole numbers: the ramp's top is the 99th percentile rounded up
    ("≥ 34", not "≥ 33.5", which a commander reads as a bug), and colours follow it."""
    from rtcc_geo.app.figures import N_STEPS, hex_data, legend
    from rtcc_geo.app.layers import COUNTS

    ctx = philly_app.rtcc
    f = ctx.default_filters()
    n = len(ctx.universe(f.res))
    # 200 cells with counts 1..200: numpy's 99th percentile is 198.01.
    v = np.full(n, np.nan)
    v[:200] = np.arange(1, 201)
    assert np.percentile(v[:200], 99) == pytest.approx(198.01)
    d = hex_data(ctx, COUNTS, f, pd.DataFrame({"value": v}))
    assert d["zmax"] == 199.0
    k = np.array(d["k"])
    assert k[np.array(d["v"]) >= 199].min() == N_STEPS  # 199 and above: the top colour
    assert "≥ 199" in json.dumps([str(c) for c in legend(d)], ensure_ascii=False)
    v[:200] = np.arange(1, 201) * 10  # a big city's busiest cells: thousands
    d = hex_data(ctx, COUNTS, f, pd.DataFrame({"value": v}))
    text = json.dumps([str(c) for c in legend(d)], ensure_ascii=False)
    assert d["zmax"] == 1981.0 and "≥ 1,981" in text and "e+" not in text
