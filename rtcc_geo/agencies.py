"""The agency, stored: time zone, boundary and district polygons, taxonomy,
district aliases and base layers live in the store, not in the repository.

Two layouts, one API (:func:`put_agency`, :func:`get_agency`,
:func:`list_agencies`, :func:`remove_agency`):

* PostGIS: ``rtcc_agencies`` (settings) and ``rtcc_agency_areas`` (geometry,
  EPSG:4326) from migration ``sql/050_agencies.sql``;
* embedded store: ``<store>/agencies/<name>/`` holding ``agency.json``,
  ``boundary.geojson``, ``districts.geojson``, ``taxonomy.csv`` and
  ``layers/<layer>.geojson``, built in a temporary folder and swapped in with
  one rename, so a reader never sees half an agency.

The presets in ``data/agencies/*.toml`` are only copied in
(:func:`add_preset`); once stored, nothing reads them for that agency.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import zoneinfo
from collections.abc import Sequence
from pathlib import Path

from .config import Agency, load_agency, norm_district, presets_dir
from .schema import DEFAULT_RESOLUTIONS

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
#: Settings copied to/from the store (everything else is geometry or text).
_SETTINGS = ("boundary_buffer_m", "bbox", "resolutions", "district_aliases", "extra")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise ValueError(f"agency name {name!r}: use lower-case letters, digits, '_' or '-', starting with a letter")
    return name


def _check_tz(tz: str) -> str:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {tz!r} (e.g. 'America/New_York')") from None
    return tz


def _read(path: str | Path, what: str):
    from .config import _read_geo

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file {p} not found")
    g = _read_geo(p)
    if not len(g):
        raise ValueError(f"{what} file {p} has no features")
    return g


def build_agency(
    name: str,
    timezone: str,
    boundary: str | Path | None = None,
    districts: str | Path | None = None,
    district_field: str | None = None,
    district_label_field: str | None = None,
    taxonomy: str | Path | None = None,
    basemaps: Sequence[str | Path] = (),
    aliases: dict | None = None,
    boundary_buffer_m: float = 250.0,
    resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
    bbox=None,
    extra: dict | None = None,
) -> Agency:
    """An :class:`Agency` with its geometry read from files, ready for :func:`put_agency`.

    Without ``boundary`` the union of the districts is the boundary; with
    neither, it is an error (every analysis needs a study area).
    """
    import geopandas as gpd

    check_name(name)
    _check_tz(timezone)
    if boundary is None and districts is None:
        raise ValueError("an agency needs --boundary FILE (or --districts FILE, whose union is the boundary)")
    dist = None
    if districts is not None:
        d = _read(districts, "districts")
        fields = [c for c in d.columns if c != "geometry"]
        key = district_field or (fields[0] if len(fields) == 1 else None)
        if key is None or key not in d.columns:
            raise ValueError(f"districts file {districts}: choose --district-field among {fields}")
        lab = district_label_field or key
        if lab not in d.columns:
            raise ValueError(
                f"districts file {districts}: no field {lab!r} for --district-label-field; fields: {fields}"
            )
        keys = d[key].astype(str).str.strip()
        dup = keys[keys.map(norm_district).duplicated()]
        if len(dup):
            raise ValueError(
                f"districts file {districts}: field {key!r} repeats {sorted(set(dup))} "
                "after name normalisation; choose a unique --district-field"
            )
        dist = gpd.GeoDataFrame(
            {"district": keys, "label": d[lab].astype(str).str.strip()}, geometry=d.geometry.to_numpy(), crs="EPSG:4326"
        )
    if boundary is not None:
        bnd = _read(boundary, "boundary").geometry.union_all()
    else:
        assert dist is not None  # boundary or districts, checked above
        bnd = dist.geometry.union_all()
    tax = None
    if taxonomy is not None:
        tp = Path(taxonomy)
        if not tp.is_file():
            raise FileNotFoundError(f"taxonomy file {tp} not found")
        tax = tp.read_text(encoding="utf-8")
        head = tax.splitlines()[0].lower().replace(" ", "") if tax.strip() else ""
        if not head.startswith("offense") or "category" not in head:
            raise ValueError(f"taxonomy file {tp}: expected a CSV with columns offense,detail,category,note")
    layers = {}
    for b in basemaps:
        g = _read(b, "base layer")
        layers[Path(b).stem] = g
    if dist is not None and aliases:
        known = {norm_district(k) for k in dist["district"]} | {norm_district(v) for v in dist["label"]}
        bad = sorted(v for v in aliases.values() if norm_district(v) not in known)
        if bad:
            raise ValueError(f"district aliases point at {bad}, which are not districts of {districts}")
    return Agency(
        name=name,
        timezone=timezone,
        boundary_buffer_m=float(boundary_buffer_m),
        resolutions=tuple(int(r) for r in resolutions),
        bbox=tuple(bbox) if bbox else None,
        extra=dict(extra or {}),
        district_aliases=dict(aliases or {}),
        origin="store",
        boundary_geom=bnd,
        districts_gdf=dist,
        layers=layers,
        taxonomy_csv=tax,
        boundary_file=str(boundary) if boundary else None,
        districts_file=str(districts) if districts else None,
        districts_field="district",
        district_label_field="label",
        taxonomy_file=str(taxonomy) if taxonomy else None,
        basemaps=tuple(Path(b).stem for b in basemaps),
    )


def agency_from_preset(name: str, near: Sequence[Path] = ()) -> Agency:
    """The preset ``name`` with its files read (boundary, districts, taxonomy)."""
    from .ingest.taxonomy import taxonomy_path

    a = load_agency(presets_dir() / f"{name}.toml" if not Path(name).suffix else name)
    bpath = a.find_file(a.boundary_file, list(near))
    dpath = a.find_file(a.districts_file, list(near)) if a.districts_file else None
    if a.boundary_file and bpath is None:
        raise FileNotFoundError(
            f"preset {a.name}: boundary file {a.boundary_file} not found (looked beside the "
            f"input files, in {a.name}/ under the shared data, and in data/boundaries/)"
        )
    tax: str | Path | None = a.taxonomy_file
    if tax is None:
        try:
            tax = taxonomy_path(a.name)
        except (FileNotFoundError, ValueError):
            tax = None
    tax = tax if tax is not None and Path(tax).is_file() else None
    return build_agency(
        a.name,
        a.timezone,
        bpath,
        dpath,
        a.districts_field,
        a.district_label_field,
        tax,
        [p for p in (a.find_file(b) for b in a.basemaps) if p is not None],
        a.district_aliases,
        a.boundary_buffer_m,
        a.resolutions,
        a.bbox,
        a.extra,
    )


# --------------------------------------------------------------------------
# the store API
# --------------------------------------------------------------------------
def _settings(a: Agency) -> dict:
    return {
        "boundary_buffer_m": a.boundary_buffer_m,
        "bbox": list(a.bbox) if a.bbox else None,
        "resolutions": list(a.resolutions),
        "district_aliases": dict(a.district_aliases),
        "extra": dict(a.extra),
        "origin": {
            "boundary_file": a.boundary_file,
            "districts_file": a.districts_file,
            "taxonomy_file": a.taxonomy_file,
        },
    }


def _from_parts(
    name: str, tz: str, settings: dict, boundary, districts, layers: dict, taxonomy: str | None, files: dict
) -> Agency:
    """The stored agency; ``files`` = the stored geometry as files (``boundary_file``,
    ``districts_file``) for readers that take a path (ingest validation)."""
    return Agency(
        name=name,
        timezone=tz,
        boundary_buffer_m=float(settings.get("boundary_buffer_m", 250.0)),
        resolutions=tuple(settings.get("resolutions") or DEFAULT_RESOLUTIONS),
        bbox=tuple(settings["bbox"]) if settings.get("bbox") else None,
        extra=dict(settings.get("extra") or {}),
        district_aliases=dict(settings.get("district_aliases") or {}),
        origin="store",
        boundary_geom=boundary,
        districts_gdf=districts,
        layers=layers,
        taxonomy_csv=taxonomy,
        districts_field="district" if districts is not None else None,
        district_label_field="label" if districts is not None else None,
        basemaps=tuple(sorted(layers)),
        taxonomy_file=(settings.get("origin") or {}).get("taxonomy_file"),
        **files,
    )


def put_agency(store, a: Agency) -> None:
    """Store (or replace) agency ``a`` (its source is registered by the first ingest)."""
    check_name(a.name)
    _check_tz(a.timezone)
    if a.boundary_geom is None:
        raise ValueError(f"agency {a.name}: no boundary geometry to store (build it with build_agency)")
    if getattr(store, "kind", "") == "postgis":
        _pg_put(store, a)
    else:
        _emb_put(store, a)


def get_agency(store, name: str) -> Agency | None:
    """The stored agency ``name``, or ``None``."""
    if getattr(store, "kind", "") == "postgis":
        return _pg_get(store, name)
    return _emb_get(store, name)


def list_agencies(store) -> list[str]:
    if getattr(store, "kind", "") == "postgis":
        with store._lock:
            return [r[0] for r in store.conn.execute("SELECT name FROM rtcc_agencies ORDER BY name").fetchall()]
    d = _emb_dir(store)
    return sorted(p.name for p in d.iterdir() if p.is_dir() and (p / "agency.json").exists()) if d.is_dir() else []


def remove_agency(store, name: str) -> bool:
    """Remove the stored agency (its incidents stay). True if there was one."""
    if getattr(store, "kind", "") == "postgis":
        with store._lock:
            return store.conn.execute("DELETE FROM rtcc_agencies WHERE name = %s", (name,)).rowcount > 0
    p = _emb_dir(store) / check_name(name)
    if not p.exists():
        return False
    tmp = p.with_name(f".removed-{name}-{os.getpid()}")
    os.replace(p, tmp)  # one rename: readers see the agency or nothing
    shutil.rmtree(tmp, ignore_errors=True)
    return True


def add_preset(store, name: str, near: Sequence[Path] = (), replace_existing: bool = False) -> Agency:
    """Copy preset ``name`` into ``store`` (no-op when stored and not ``replace_existing``)."""
    if not replace_existing:
        have = get_agency(store, name)
        if have is not None:
            return have
    a = agency_from_preset(name, near)
    put_agency(store, a)
    stored = get_agency(store, a.name)
    assert stored is not None  # just put
    return stored


def describe(a: Agency) -> dict:
    """JSON-able summary (what ``agency show --json`` prints)."""
    d = a.districts()
    b = a.boundary()
    return {
        "name": a.name,
        "timezone": a.timezone,
        "origin": a.origin,
        "boundary": {
            "area_km2": _area_km2(b) if b is not None else None,
            "bounds": [round(x, 6) for x in b.bounds] if b is not None else None,
        },
        "districts": [] if d is None else [{"district": k, "label": lab} for k, lab in zip(d["district"], d["label"])],
        "district_aliases": dict(a.district_aliases),
        "boundary_buffer_m": a.boundary_buffer_m,
        "resolutions": list(a.resolutions),
        "bbox": list(a.bbox) if a.bbox else None,
        "taxonomy_rows": (len(a.taxonomy_csv.strip().splitlines()) - 1) if a.taxonomy_csv else 0,
        "base_layers": {k: len(v) for k, v in (a.layers or {}).items()},
        "taxonomy_file": a.taxonomy_file,
    }


def _area_km2(geom) -> float:
    import geopandas as gpd

    g = gpd.GeoSeries([geom], crs="EPSG:4326")
    return round(float(g.to_crs(g.estimate_utm_crs()).area.iloc[0]) / 1e6, 3)


# --------------------------------------------------------------------------
# embedded: <store>/agencies/<name>/
# --------------------------------------------------------------------------
def _emb_dir(store) -> Path:
    return Path(store.root) / "agencies"


def _emb_put(store, a: Agency) -> None:
    import geopandas as gpd

    root = _emb_dir(store)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".new-{a.name}-"))
    try:
        gpd.GeoDataFrame(geometry=[a.boundary_geom], crs="EPSG:4326").to_file(
            tmp / "boundary.geojson", driver="GeoJSON"
        )
        if a.districts_gdf is not None:
            a.districts_gdf.to_file(tmp / "districts.geojson", driver="GeoJSON")
        if a.taxonomy_csv:
            (tmp / "taxonomy.csv").write_text(a.taxonomy_csv, encoding="utf-8")
        for layer, g in (a.layers or {}).items():
            (tmp / "layers").mkdir(exist_ok=True)
            g.to_file(tmp / "layers" / f"{layer}.geojson", driver="GeoJSON")
        (tmp / "agency.json").write_text(
            json.dumps({"name": a.name, "timezone": a.timezone, "settings": _settings(a)}, indent=2, default=str)
        )
        dest = root / a.name
        old = None
        # The swap holds the store's writer lock: two first ingests of a known format copy the
        # same preset at once, and both renames must not meet in the middle.
        writing = getattr(store, "_writing", None)
        with writing() if writing is not None else contextlib.nullcontext():
            if dest.exists():
                old = root / f".old-{a.name}-{os.getpid()}-{threading.get_ident()}"
                os.replace(dest, old)
            os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _emb_get(store, name: str) -> Agency | None:
    import geopandas as gpd

    p = _emb_dir(store) / name
    meta = p / "agency.json"
    if not _NAME.match(name or "") or not meta.exists():
        return None
    m = json.loads(meta.read_text())
    bnd = gpd.read_file(p / "boundary.geojson").geometry.union_all()
    dist = gpd.read_file(p / "districts.geojson") if (p / "districts.geojson").exists() else None
    if dist is not None:
        dist["district"] = dist["district"].astype(str)
        dist["label"] = dist["label"].astype(str)
    layers = (
        {f.stem: gpd.read_file(f) for f in sorted((p / "layers").glob("*.geojson"))} if (p / "layers").is_dir() else {}
    )
    tax = (p / "taxonomy.csv").read_text(encoding="utf-8") if (p / "taxonomy.csv").exists() else None
    files = {
        "boundary_file": str(p / "boundary.geojson"),
        "districts_file": str(p / "districts.geojson") if dist is not None else None,
    }
    return _from_parts(m["name"], m["timezone"], m.get("settings", {}), bnd, dist, layers, tax, files)


# --------------------------------------------------------------------------
# PostGIS: rtcc_agencies + rtcc_agency_areas
# --------------------------------------------------------------------------
def _pg_put(store, a: Agency) -> None:
    import shapely

    rows: list[tuple] = [("boundary", "", 0, None, None, None, shapely.to_wkb(a.boundary_geom, hex=True))]
    if a.districts_gdf is not None:
        rows += [
            ("district", "", i, k, lab, None, shapely.to_wkb(g, hex=True))
            for i, (k, lab, g) in enumerate(
                zip(a.districts_gdf["district"], a.districts_gdf["label"], a.districts_gdf.geometry)
            )
        ]
    for layer, g in (a.layers or {}).items():
        props = g.drop(columns="geometry")
        for i, (geom, rec) in enumerate(zip(g.geometry, props.to_dict("records"))):
            rows.append(("layer", layer, i, None, None, json.dumps(rec, default=str), shapely.to_wkb(geom, hex=True)))
    with store._lock, store.conn.transaction():
        c = store.conn
        # Two first ingests (two processes) may copy the same preset at once: one after the other.
        c.execute("SELECT pg_advisory_xact_lock(hashtext('rtcc_agency:' || %s))", (a.name,))
        c.execute("DELETE FROM rtcc_agencies WHERE name = %s", (a.name,))
        c.execute(
            "INSERT INTO rtcc_agencies (name, timezone, settings, taxonomy) VALUES (%s, %s, %s::jsonb, %s)",
            (a.name, a.timezone, json.dumps(_settings(a), default=str), a.taxonomy_csv),
        )
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO rtcc_agency_areas (agency, kind, layer, ord, key, label, props, geom) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, ST_SetSRID(ST_GeomFromWKB(decode(%s, 'hex')), 4326))",
                [(a.name, *r) for r in rows],
            )


def _pg_get(store, name: str) -> Agency | None:
    import geopandas as gpd
    import pandas as pd
    import shapely

    with store._lock:
        r = store.conn.execute(
            "SELECT timezone, settings, taxonomy FROM rtcc_agencies WHERE name = %s", (name,)
        ).fetchone()
        if r is None:
            return None
        areas = store.conn.execute(
            "SELECT kind, layer, key, label, props, ST_AsBinary(geom) FROM rtcc_agency_areas "
            "WHERE agency = %s ORDER BY kind, layer, ord",
            (name,),
        ).fetchall()
    tz, settings, tax = r
    settings = settings if isinstance(settings, dict) else json.loads(settings)
    geoms = [shapely.from_wkb(bytes(x[5])) for x in areas]
    bnd = next((g for x, g in zip(areas, geoms) if x[0] == "boundary"), None)
    dk = [(x[2], x[3], g) for x, g in zip(areas, geoms) if x[0] == "district"]
    dist = (
        gpd.GeoDataFrame(
            {"district": [k for k, _, _ in dk], "label": [lab for _, lab, _ in dk]},
            geometry=[g for _, _, g in dk],
            crs="EPSG:4326",
        )
        if dk
        else None
    )
    layers: dict = {}
    for x, g in zip(areas, geoms):
        if x[0] == "layer":
            layers.setdefault(x[1], []).append((x[4] or {}, g))
    layers = {
        k: gpd.GeoDataFrame(pd.DataFrame([p for p, _ in v]), geometry=[g for _, g in v], crs="EPSG:4326")
        for k, v in layers.items()
    }
    files = {
        "boundary_file": _cached_geojson(gpd.GeoDataFrame(geometry=[bnd], crs="EPSG:4326")),
        "districts_file": _cached_geojson(dist) if dist is not None else None,
    }
    return _from_parts(name, tz, settings, bnd, dist, layers, tax, files)


def _cached_geojson(gdf) -> str:
    """The stored geometry as a GeoJSON file named by its content hash (for readers
    that take a path; PostGIS stays the source of truth)."""
    import hashlib

    text = gdf.to_json()
    d = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "rtcc_geo" / "agency"
    p = d / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.geojson"
    if not p.exists():
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, p)
    return str(p)


def agency_for_ingest(store, name: str, fmt: str, mapping=None, near: Sequence[Path] = ()) -> Agency:
    """The stored agency ``name``; on first ingest of a known format its preset is
    copied into the store. An unknown source with no stored agency is an error
    naming the command to run."""
    a = get_agency(store, name)
    if a is not None:
        if mapping is not None and getattr(mapping, "timezone", None) and mapping.timezone != a.timezone:
            raise ValueError(
                f"the mapping says time zone {mapping.timezone} but the stored agency {name} has "
                f"{a.timezone}; fix one of them"
            )
        return a
    if (presets_dir() / f"{name}.toml").exists():
        return add_preset(store, name, near)
    if mapping is not None and getattr(mapping, "agency", None):
        return mapping.load_agency()  # the mapping names an agency TOML file of its own
    raise ValueError(
        f"no agency {name!r} in the store and no preset of that name: first run "
        f"`rtcc-geo agency add {name} --boundary FILE --timezone TZ` (same --db/--store), "
        f"then ingest again"
    )
