"""Agency configuration: time zone, boundary, grid resolutions.

Each agency has a TOML file in ``data/agencies/`` (shipped) or anywhere the
user points ``--agency-config`` at. Times are always stored in UTC; the IANA
``timezone`` here is what local-time figures (hour of week, shifts) use.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from dataclasses import dataclass, field
from pathlib import Path

from .schema import DEFAULT_RESOLUTIONS

#: Package data shipped with rtcc-geo (presets, taxonomies, mappings, staffing files).
#: In a checkout ``rtcc_geo/data`` links to the top-level ``data/``; a wheel holds a copy.
DATA_DIR = Path(str(resources.files("rtcc_geo") / "data"))

#: The repository root when running from a checkout (``None`` in an installed wheel).
_ROOT = Path(__file__).resolve().parent.parent
REPO_ROOT: Path | None = _ROOT if (_ROOT / "pyproject.toml").exists() else None


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

    def find_file(self, name: str | None, near: list[Path] | None = None) -> Path | None:
        if not name:
            return None
        cands = [Path(p).parent / name for p in (near or [])]
        # The shared extracts sit in a folder named like the agency
        # (``chicago_sample/`` for ``chicago``).
        cands += [shared_data_dir() / self.name / name, *sorted(shared_data_dir().glob(f"{self.name}*/{name}")),
                  DATA_DIR / "boundaries" / name]
        for c in cands:
            if c.exists():
                return c
        return None


def read_toml(path: str | Path, what: str, template: Path | None = None) -> dict:
    """A TOML settings file as a dict; a missing file says what it is and where a
    template to copy lives."""
    p = Path(path)
    if not p.exists():
        hint = f"; copy {template} and edit it" if template is not None else ""
        raise FileNotFoundError(f"{what} file {p} not found{hint}")
    return tomllib.loads(p.read_text())


def load_agency(name_or_path: str | Path) -> Agency:
    """Load ``data/agencies/<name>.toml`` (or a TOML file path)."""
    p = Path(name_or_path)
    if not p.suffix:
        p = DATA_DIR / "agencies" / f"{name_or_path}.toml"
    if not p.exists():
        known = sorted(x.stem for x in (DATA_DIR / "agencies").glob("*.toml"))
        raise FileNotFoundError(f"no agency config {p}; known agencies: {known}")
    raw = tomllib.loads(p.read_text())
    a = raw.pop("agency", raw)
    res = tuple(a.pop("resolutions", DEFAULT_RESOLUTIONS))
    bbox = a.pop("bbox", None)
    known = {f for f in Agency.__dataclass_fields__}
    extra = {k: v for k, v in a.items() if k not in known}
    kw = {k: v for k, v in a.items() if k in known and k != "extra"}
    return Agency(resolutions=res, bbox=tuple(bbox) if bbox else None, extra=extra, **kw)
