"""Agency configuration: time zone, boundary, districts, grid resolutions.

The agency lives in the store (``rtcc-geo agency add``; see
:mod:`rtcc_geo.agencies`); ``data/agencies/*.toml`` are presets that
``agency add --preset NAME`` (and the first ingest of a known format) copy
into it. :func:`load_agency` reads the store first and the presets only for a
store that has no agency of that name yet. Times are always stored in UTC;
the IANA ``timezone`` here is what local-time figures (hour of week, shifts) use.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .schema import DEFAULT_RESOLUTIONS

#: Package data shipped with rtcc-geo (presets, taxonomies, mappings, staffing files).
#: In a checkout ``rtcc_geo/data`` links to the top-level ``data/``; a wheel holds a copy.
DATA_DIR = Path(str(resources.files("rtcc_geo") / "data"))

#: The repository root when running from a checkout (``None`` in an installed wheel).
_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT: Path | None = _ROOT if (_ROOT / "pyproject.toml").exists() else None


def presets_dir() -> Path:
    """Where agency presets live: ``$RTCC_AGENCY_PRESETS`` or the package's ``data/agencies``."""
    env = os.environ.get("RTCC_AGENCY_PRESETS")
    return Path(env) if env else DATA_DIR / "agencies"


def norm_district(v) -> str:
    """The one district-name normalisation: surrounding space, case, runs of
    spaces/hyphens/underscores and leading zeros of numbers do not matter
    (``"Arbutus Ridge"`` = ``"arbutus-ridge"``, ``"07"`` = ``"7"``)."""
    s = re.sub(r"[\s_\-]+", " ", str(v).strip()).casefold()
    return (s.lstrip("0") or "0") if s.isdigit() else s


def shared_data_dir() -> Path:
    """Where the real public extracts live: ``$RTCC_SHARED_DATA`` or ``../shared/data``
    beside the repository root (beside the working directory for an installed package)."""
    env = os.environ.get("RTCC_SHARED_DATA")
    if env:
        return Path(env)
    return (REPO_ROOT or Path.cwd()).parent / "shared" / "data"


@dataclass(frozen=True)
class Agency:
    name: str
    timezone: str
    #: Boundary file name; looked up beside the input files first, then in
    #: ``data/boundaries/``. EPSG:4326 GeoJSON (any polygons; they are unioned).
    boundary_file: str | None = None
    #: Points this far outside the boundary are still accepted (block-level
    #: geocodes on the city line); beyond it they are quarantined.
    boundary_buffer_m: float = 250.0
    #: District polygons (optional), same lookup rule as ``boundary_file``.
    districts_file: str | None = None
    districts_field: str | None = None
    resolutions: tuple[int, ...] = DEFAULT_RESOLUTIONS
    #: Rough lon/lat box; points outside are ``invalid_coordinates`` rather
    #: than ``outside_boundary`` (junk geocodes like (0, 0)).
    bbox: tuple[float, float, float, float] | None = None  # (minlon, minlat, maxlon, maxlat)
    extra: dict = field(default_factory=dict)
    #: Field of the districts file with a display label (default: the key field).
    district_label_field: str | None = None
    #: District names as the data publishes them -> the district polygon's name
    #: (Vancouver's "Central Business District" is its boundary's "Downtown").
    district_aliases: dict = field(default_factory=dict)
    #: Offence taxonomy CSV (same lookup rule as ``boundary_file``).
    taxonomy_file: str | None = None
    #: Base-layer files (GeoJSON etc.) drawn under the map.
    basemaps: tuple[str, ...] = ()
    #: Where this definition came from: ``"store"``, ``"preset"`` or ``"file"``.
    origin: str = "file"
    #: Geometry read from the store (EPSG:4326): the boundary (one geometry) and
    #: the districts (GeoDataFrame ``district, label, geometry``); ``None`` = read the files.
    boundary_geom: Any = field(default=None, compare=False, repr=False)  # a shapely geometry
    districts_gdf: Any = field(default=None, compare=False, repr=False)  # a GeoDataFrame (geopandas is untyped)
    layers: dict = field(default_factory=dict, compare=False, repr=False)
    taxonomy_csv: str | None = field(default=None, compare=False, repr=False)

    def boundary(self):
        """The study-area polygon (union of the boundary file's polygons, EPSG:4326), or ``None``."""
        if self.boundary_geom is not None:
            return self.boundary_geom
        p = self.find_file(self.boundary_file)
        if p is None:
            return None
        return _read_geo(p).geometry.union_all()

    def districts(self):
        """District polygons as a GeoDataFrame ``district, label, geometry`` (EPSG:4326), or ``None``."""
        if self.districts_gdf is not None:
            return self.districts_gdf
        p = self.find_file(self.districts_file)
        if p is None:
            return None
        d = _read_geo(p)
        key = self.districts_field or next(c for c in d.columns if c != "geometry")
        if key not in d.columns:
            raise ValueError(
                f"{self.name}: districts file {p.name} has no field {key!r}; fields: "
                f"{[c for c in d.columns if c != 'geometry']}"
            )
        lab = self.district_label_field or key
        if lab not in d.columns:
            raise ValueError(f"{self.name}: districts file {p.name} has no label field {lab!r}")
        import geopandas as gpd

        return gpd.GeoDataFrame(
            {"district": d[key].astype(str).str.strip(), "label": d[lab].astype(str).str.strip()},
            geometry=d.geometry.to_numpy(),
            crs="EPSG:4326",
        )

    def find_file(self, name: str | None, near: list[Path] | None = None) -> Path | None:
        if not name:
            return None
        cands = [Path(p).parent / name for p in (near or [])]
        # The shared extracts sit in a folder named like the agency
        # (``chicago_sample/`` for ``chicago``).
        cands += [
            shared_data_dir() / self.name / name,
            *sorted(shared_data_dir().glob(f"{self.name}*/{name}")),
            DATA_DIR / "boundaries" / name,
        ]
        for c in cands:
            if c.exists():
                return c
        return None


def _read_geo(path):
    import geopandas as gpd

    g = gpd.read_file(path)
    return (g.set_crs("EPSG:4326") if g.crs is None else g).to_crs("EPSG:4326")


def read_toml(path: str | Path, what: str, template: Path | None = None) -> dict:
    """A TOML settings file as a dict; a missing file says what it is and where a
    template to copy lives."""
    p = Path(path)
    if not p.exists():
        hint = f"; copy {template} and edit it" if template is not None else ""
        raise FileNotFoundError(f"{what} file {p} not found{hint}")
    return tomllib.loads(p.read_text())


def load_agency(name_or_path: str | Path, store=None) -> Agency:
    """The agency ``name`` from ``store`` when it holds one, else the preset
    ``<presets_dir()>/<name>.toml``; or the TOML file at a path. File names in a
    TOML resolve relative to that TOML first."""
    if store is not None and not Path(str(name_or_path)).suffix:
        from .agencies import get_agency

        a = get_agency(store, str(name_or_path))
        if a is not None:
            return a
    p = Path(name_or_path)
    origin = "file"
    if not p.suffix:
        p, origin = presets_dir() / f"{name_or_path}.toml", "preset"
    if not p.exists():
        presets = sorted(x.stem for x in presets_dir().glob("*.toml"))
        raise FileNotFoundError(
            f"no agency {str(name_or_path)!r} (no stored agency, no preset {p}); "
            f"known presets: {presets}. Add it with: rtcc-geo agency add {Path(str(name_or_path)).stem} "
            "--boundary FILE --timezone TZ"
        )
    raw = tomllib.loads(p.read_text())
    a = raw.pop("agency", raw)
    aliases = dict(raw.pop("district_aliases", {}) or {}) | dict(a.pop("district_aliases", {}) or {})
    res = tuple(a.pop("resolutions", DEFAULT_RESOLUTIONS))
    bbox = a.pop("bbox", None)
    for k in ("boundary_file", "districts_file", "taxonomy_file"):
        if a.get(k) and (p.parent / a[k]).exists():  # relative to the TOML first
            a[k] = str((p.parent / a[k]).resolve())
    if "basemaps" in a:
        a["basemaps"] = tuple(str((p.parent / b).resolve()) if (p.parent / b).exists() else b for b in a["basemaps"])
    known = {f for f in Agency.__dataclass_fields__}
    extra = {k: v for k, v in a.items() if k not in known}
    kw = {k: v for k, v in a.items() if k in known and k not in ("extra", "origin")}
    return Agency(
        resolutions=res, bbox=tuple(bbox) if bbox else None, extra=extra, district_aliases=aliases, origin=origin, **kw
    )
