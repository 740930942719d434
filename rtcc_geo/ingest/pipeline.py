"""Ingest pipeline: files -> readers -> validation -> store, one file at a time.

Counting rules (what :class:`IngestSummary` reports, per file and in total)
---------------------------------------------------------------------------
``read``         data rows in the file (header excluded).
``quarantined``  rows that failed validation, each with one reason
                 (``by_reason``); written to the store's quarantine table,
                 which is idempotent on ``(source, file, row_number)``.
``loaded``       rows that passed validation — whether this run inserted them
                 or they were already in the store. So ``read == loaded +
                 quarantined`` holds on every run, first or repeated.
``duplicates``   of the ``loaded`` rows, how many were already in the store
                 (same ``(source, id)``): 0 on a first ingest, ``loaded`` on a
                 re-run of the same files. ``inserted = loaded - duplicates``
                 is also reported.

Running the same ingest twice therefore leaves the store's row count
unchanged and reports the same ``read/loaded/quarantined`` with
``duplicates == loaded`` the second time.

Work is per file (one partition at a time), so memory stays bounded by the
largest file, not the data set; the loop is what a Dask bag would map over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..config import Agency, load_agency
from ..schema import QUARANTINE_REASONS
from ..store.base import Store
from . import read_batch
from .generic import Mapping, load_mapping
from .validate import Area, agency_area, validate

FORMATS = ("philadelphia", "vancouver", "chicago", "generic")


@dataclass
class FileSummary:
    file: str
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    unmapped_offenses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Loaded incidents dated far from the bulk of the file (see :func:`rtcc_geo.scope.far_dates`).
    far_dated: dict = field(default_factory=dict)

    @property
    def inserted(self) -> int:
        return self.loaded - self.duplicates

    def as_dict(self) -> dict:
        return {"file": self.file, "read": self.read, "loaded": self.loaded, "quarantined": self.quarantined,
                "duplicates": self.duplicates, "inserted": self.inserted, "by_reason": dict(self.by_reason),
                "unmapped_offenses": dict(self.unmapped_offenses), "seconds": round(self.seconds, 3),
                "far_dated": dict(self.far_dated)}


@dataclass
class IngestSummary:
    source: str
    store: str
    files: list[FileSummary] = field(default_factory=list)
    #: Boundary file the outside_boundary rule used (None: the agency has none,
    #: so only the WGS84 range and bbox checks ran).
    boundary: str | None = None

    def _sum(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    read = property(lambda self: self._sum("read"))
    loaded = property(lambda self: self._sum("loaded"))
    quarantined = property(lambda self: self._sum("quarantined"))
    duplicates = property(lambda self: self._sum("duplicates"))
    inserted = property(lambda self: self._sum("inserted"))
    seconds = property(lambda self: sum(f.seconds for f in self.files))

    @property
    def by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for k, v in f.by_reason.items():
                out[k] = out.get(k, 0) + v
        return {r: out[r] for r in QUARANTINE_REASONS if r in out}

    @property
    def unmapped_offenses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for k, v in f.unmapped_offenses.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def far_dated_count(self) -> int:
        return sum(f.far_dated.get("before", 0) + f.far_dated.get("after", 0) for f in self.files)

    @property
    def warnings(self) -> list[str]:
        """Incidents dated far from the bulk of their file (a few 1966 dates made a backtest use 13 GB)."""
        return [f"{f.file}: {f.far_dated['before']:,} incident(s) dated before {f.far_dated['bulk_from']} and "
                f"{f.far_dated['after']:,} after {f.far_dated['bulk_to']} by more than 5 years (earliest "
                f"{f.far_dated['earliest']}, latest {f.far_dated['latest']}); forecasts need --train-from"
                for f in self.files if f.far_dated.get("before", 0) + f.far_dated.get("after", 0)]

    def as_dict(self) -> dict:
        return {"read": self.read, "loaded": self.loaded, "quarantined": self.quarantined,
                "duplicates": self.duplicates, "by_reason": self.by_reason,
                "inserted": self.inserted, "source": self.source, "store": self.store,
                "boundary": self.boundary, "far_dated": self.far_dated_count, "warnings": self.warnings,
                "unmapped_offenses": self.unmapped_offenses, "seconds": round(self.seconds, 3),
                "files": [f.as_dict() for f in self.files]}


def resolve_agency(fmt: str, agency: Agency | str | Path | None, mapping: Mapping | None,
                   store: Store | None = None, near: list[Path] | None = None) -> Agency:
    """The agency an ingest validates against: the one stored for the source
    (a known format's preset is copied in on first ingest), else a TOML given."""
    if isinstance(agency, Agency):
        return agency
    if store is not None and not (agency is not None and Path(str(agency)).suffix):
        from ..agencies import agency_for_ingest

        return agency_for_ingest(store, str(agency) if agency else (mapping.source if fmt == "generic" and mapping else fmt),
                                 fmt, mapping, near or [])
    if agency is not None:
        return load_agency(agency)
    if fmt == "generic":
        if mapping is None:
            raise ValueError("--format generic needs --mapping FILE (see data/mappings/)")
        return mapping.load_agency()
    return load_agency(fmt)


def prepare_ingest(fmt: str, files: Iterable[str | Path], store: Store, agency: Agency | str | Path | None = None,
                   mapping: Mapping | str | Path | None = None) -> tuple[list[Path], Mapping | None, Agency, Area,
                                                                          IngestSummary]:
    """What an ingest settles before the first file (here and on a Dask cluster,
    :func:`rtcc_geo.cluster.ingest_files`): the arguments checked, the agency and
    its area resolved, the source registered. Returns ``(paths, mapping, agency,
    area, empty summary)``; the source is ``summary.source``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("no input files given")
    missing = [str(f) for f in paths if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"input file(s) not found: {missing}")
    if mapping is not None and not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    if fmt == "generic" and mapping is None:
        raise ValueError("--format generic needs --mapping FILE (see data/mappings/ for examples)")
    ag = resolve_agency(fmt, agency, mapping, store, paths)
    source = mapping.source if fmt == "generic" and mapping is not None else fmt  # generic has one (checked)
    area = agency_area(ag, near=paths)
    store.register_source(source, ag.timezone)
    return paths, mapping, ag, area, IngestSummary(source=source, store=repr(store), boundary=area.boundary_file)


def ingest_files(fmt: str, files: Iterable[str | Path], store: Store, agency: Agency | str | Path | None = None,
                 mapping: Mapping | str | Path | None = None, progress: bool = False,
                 time_floor: str | None = None) -> IngestSummary:
    """Read, validate and store ``files`` of format ``fmt``; see the module doc
    for what the summary counts. ``time_floor``: earliest plausible incident
    time (default ``$RTCC_TIME_FLOOR`` or 1990-01-01; see
    :func:`~rtcc_geo.ingest.validate.plausible_window`). ``progress``: bars
    on stderr, per file and per row."""
    paths, mapping, ag, area, summary = prepare_ingest(fmt, files, store, agency, mapping)
    source = summary.source

    bar = rows = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="file", desc=f"ingest {source}", leave=True, position=0)
        rows = tqdm(unit="row", unit_scale=True, desc="rows", leave=True, position=1)
    try:
        for path in paths:
            if bar is not None:
                bar.set_postfix_str(path.name)
            summary.files.append(ingest_one(fmt, path, store, ag, area, source, mapping, time_floor))
            if bar is not None:
                fs = summary.files[-1]
                bar.set_postfix_str(f"{path.name}: {fs.loaded:,} loaded, {fs.quarantined:,} quarantined")
                bar.update(1)
            if rows is not None:
                rows.update(fs.read)
    finally:
        for b in (bar, rows):
            if b is not None:
                b.close()
    return summary


def ingest_one(fmt, path: Path, store: Store, ag: Agency, area, source: str, mapping,
               time_floor: str | None = None) -> FileSummary:
    """One file = one partition: read, validate, write; returns its counts."""
    t0 = time.perf_counter()
    batch = read_batch(fmt, path, timezone=ag.timezone, mapping=mapping, source=source)
    malformed = batch.raw.attrs.get("malformed_rows") or {}
    if malformed:  # one bad CSV row is quarantined, not the whole file
        mask = np.zeros(len(batch), dtype=bool)
        mask[list(malformed)] = True
        detail = pd.Series(malformed, dtype="object").reindex(range(len(batch))).set_axis(batch.raw.index)
        batch.flag("invalid_field", mask, detail.fillna(""))
    incidents, quarantine = validate(batch, area, tuple(ag.resolutions), time_floor=time_floor)
    if len(incidents) + len(quarantine) != len(batch):  # a bug, never bad input
        raise RuntimeError(f"{path.name}: validation lost rows ({len(batch)} read, "
                           f"{len(incidents)} + {len(quarantine)} out)")
    w = store.write_incidents(incidents)
    store.write_quarantine(quarantine)
    fs = FileSummary(
        file=path.name, read=len(batch), loaded=len(incidents), quarantined=len(quarantine),
        duplicates=int(w.received - w.inserted),
        by_reason={r: int(n) for r, n in quarantine["reason"].value_counts().items()},
        unmapped_offenses=dict(batch.unmapped),
    )
    fs.by_reason = {r: fs.by_reason[r] for r in QUARANTINE_REASONS if r in fs.by_reason}
    from ..scope import far_dates

    fs.far_dated = far_dates(incidents["occurred_from"])
    fs.seconds = time.perf_counter() - t0
    return fs
