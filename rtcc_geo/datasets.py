"""Ready-made example stores: the real public extracts, ingested once and cached.

>>> from rtcc_geo.datasets import example_store
>>> store = example_store("philadelphia", years=(2024,))   # first call ingests (~1 min), later calls are instant

The extracts are read from ``../shared/data`` (or ``$RTCC_SHARED_DATA``) and
ingested with the normal pipeline into an embedded store under
``$RTCC_CACHE_DIR`` (default ``var/cache`` beside the repository). A store is
only used once its ingest finished (a ``.complete`` marker), and a lock file
keeps two processes from building the same one at once.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from collections.abc import Iterable

from .config import REPO_ROOT, shared_data_dir
from .store.embedded import EmbeddedStore

#: Folder of each city's extracts under the shared data directory, and how its
#: files are named by year.
_CITIES = {
    "philadelphia": ("philadelphia", "incidents_{year}_*.csv"),
    "vancouver": ("vancouver", "crimedata_csv_AllNeighbourhoods_{year}.csv"),
    "chicago": ("chicago_sample", "chicago_crimes_sample_{year}.csv"),
}


#: Bumped when ingest changes what a store holds (2: not-geolocated incidents loaded,
#: block addresses normalised; 3: each resolution's own H3 cell), so a store cached by older code is not reused.
CACHE_VERSION = 3


def cache_dir() -> Path:
    default = REPO_ROOT / "var" / "cache" if REPO_ROOT else Path.home() / ".cache" / "rtcc-geo"
    return Path(os.environ.get("RTCC_CACHE_DIR", default))


def example_files(city: str, years: Iterable[int]) -> list[Path]:
    """The shared extract files of ``city`` for ``years``."""
    if city not in _CITIES:
        raise ValueError(f"unknown example city {city!r}; choose one of {sorted(_CITIES)}")
    folder, pattern = _CITIES[city]
    d = shared_data_dir() / folder
    files = sorted(f for y in years for f in d.glob(pattern.format(year=y)))
    if not files:
        raise FileNotFoundError(
            f"no {city} extract for {list(years)} in {d}; set RTCC_SHARED_DATA to the "
            "folder that holds the public extracts (see README)"
        )
    return files


def example_store(city: str = "philadelphia", years: Iterable[int] = (2024,), progress: bool = False) -> EmbeddedStore:
    """An embedded store holding ``city``'s real extract for ``years`` (built once, then cached)."""
    from .ingest.pipeline import ingest_files

    years = tuple(sorted(int(y) for y in years))
    root = cache_dir() / f"{city}_{'-'.join(map(str, years))}_v{CACHE_VERSION}"
    done = root / ".complete"
    if done.exists() and (root / "agencies" / city / "agency.json").exists():
        return EmbeddedStore(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then reuse
        store = EmbeddedStore(root)
        if not done.exists():
            ingest_files(city, example_files(city, years), store, progress=progress)  # copies the preset in
            done.write_text("ok\n")
        from .agencies import add_preset

        add_preset(store, city)  # a cache built before agencies were stored gets its agency now
    return EmbeddedStore(root)
