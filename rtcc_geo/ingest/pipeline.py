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

Work is per file (one partition at a time), and within a file per batch of
rows (``RTCC_BATCH_ROWS``, :func:`rtcc_geo.ingest.iter_raw`), so memory stays
bounded by the batch, not the file or the data set; the loop over files is what
a Dask bag would map over. Locally, one batch is written (in a writer thread)
while the next is read and validated: at most two batches in memory, writes one
at a time in file order.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from ..config import Agency, load_agency
from ..schema import QUARANTINE_REASONS
from ..store.base import Store
from . import iter_raw, read_batch
from .base import Batch
from .generic import Mapping, load_mapping
from .validate import Area, SeenIds, agency_area, validate

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
    #: Seconds per step (read, validate, h3, normalise, store, summary); for
    #: ``bench/ingest.py``, not part of :meth:`as_dict`.
    phases: dict[str, float] = field(default_factory=dict)
    #: CPU seconds (all threads) of read, validate (H3 and normalise included), store, summary.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def inserted(self) -> int:
        return self.loaded - self.duplicates

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "read": self.read,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "inserted": self.inserted,
            "by_reason": dict(self.by_reason),
            "unmapped_offenses": dict(self.unmapped_offenses),
            "seconds": round(self.seconds, 3),
            "far_dated": dict(self.far_dated),
        }


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
    #: Wall seconds of the loop over the files (set by :func:`ingest_files`; files
    #: overlap there, one read while the previous one is written, so the per-file
    #: seconds add up to more than the ingest took).
    wall: float | None = None

    @property
    def seconds(self) -> float:
        return self.wall if self.wall is not None else sum(f.seconds for f in self.files)

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
        return [
            f"{f.file}: {f.far_dated['before']:,} incident(s) dated before {f.far_dated['bulk_from']} and "
            f"{f.far_dated['after']:,} after {f.far_dated['bulk_to']} by more than 5 years (earliest "
            f"{f.far_dated['earliest']}, latest {f.far_dated['latest']}); forecasts need --train-from"
            for f in self.files
            if f.far_dated.get("before", 0) + f.far_dated.get("after", 0)
        ]

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "by_reason": self.by_reason,
            "inserted": self.inserted,
            "source": self.source,
            "store": self.store,
            "boundary": self.boundary,
            "far_dated": self.far_dated_count,
            "warnings": self.warnings,
            "unmapped_offenses": self.unmapped_offenses,
            "seconds": round(self.seconds, 3),
            "files": [f.as_dict() for f in self.files],
        }


def resolve_agency(
    fmt: str,
    agency: Agency | str | Path | None,
    mapping: Mapping | None,
    store: Store | None = None,
    near: list[Path] | None = None,
) -> Agency:
    """The agency an ingest validates against: the one stored for the source
    (a known format's preset is copied in on first ingest), else a TOML given."""
    if isinstance(agency, Agency):
        return agency
    if store is not None and not (agency is not None and Path(str(agency)).suffix):
        from ..agencies import agency_for_ingest

        return agency_for_ingest(
            store,
            str(agency) if agency else (mapping.source if fmt == "generic" and mapping else fmt),
            fmt,
            mapping,
            near or [],
        )
    if agency is not None:
        return load_agency(agency)
    if fmt == "generic":
        if mapping is None:
            raise ValueError("--format generic needs --mapping FILE (see data/mappings/)")
        return mapping.load_agency()
    return load_agency(fmt)


def prepare_ingest(
    fmt: str,
    files: Iterable[str | Path],
    store: Store,
    agency: Agency | str | Path | None = None,
    mapping: Mapping | str | Path | None = None,
) -> tuple[list[Path], Mapping | None, Agency, Area, IngestSummary]:
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


def ingest_files(
    fmt: str,
    files: Iterable[str | Path],
    store: Store,
    agency: Agency | str | Path | None = None,
    mapping: Mapping | str | Path | None = None,
    progress: bool = False,
    time_floor: str | None = None,
) -> IngestSummary:
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

    def done(fs: FileSummary) -> None:
        summary.files.append(fs)
        if bar is not None:
            bar.set_postfix_str(f"{fs.file}: {fs.loaded:,} loaded, {fs.quarantined:,} quarantined")
            bar.update(1)
        if rows is not None:
            rows.update(fs.read)

    t0 = time.perf_counter()
    try:
        # One writer thread: batch i is written (Arrow sort, Parquet encoding, zstd: mostly
        # outside the GIL) while batch i + 1 is read and validated. Writes stay one at a
        # time and in file order, and at most two batches are in memory: the next is
        # parsed only once the one before the last has been written.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-write") as writer:
            pending: Future | None = None
            finishing: list[Future] = []  # each file's summary, queued after its last write

            def drain(wait: bool = False) -> None:
                while finishing and (wait or finishing[0].done()):
                    done(finishing.pop(0).result())

            for path in paths:
                if bar is not None:
                    bar.set_postfix_str(path.name)
                tally = FileTally(path.name)
                for parsed in parse_batches(fmt, path, ag, area, source, mapping, time_floor):
                    if pending is not None:
                        pending.result()
                    drain()
                    pending = writer.submit(store_batch, parsed, store, tally)
                finishing.append(writer.submit(tally.summary))
            drain(wait=True)
    finally:
        for b in (bar, rows):
            if b is not None:
                b.close()
    summary.wall = time.perf_counter() - t0
    return summary


class _Clock:
    """Wall and CPU seconds of consecutive steps. CPU is the calling thread's own
    (the parse and the write of two files overlap, so the process's CPU time
    would count both); Arrow's worker threads (the CSV reader's) are not in it."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.c = time.thread_time()
        self.elapsed = 0.0
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def resume(self) -> None:
        """Start the next step now (time since the last lap was spent waiting, not working)."""
        self.t, self.c = time.perf_counter(), time.thread_time()

    def lap(self, name: str) -> None:
        t, c = time.perf_counter(), time.thread_time()
        self.wall[name], self.cpu[name] = t - self.t, c - self.c
        self.elapsed += t - self.t
        self.t, self.c = t, c

    @property
    def total(self) -> float:
        return self.elapsed


@dataclass
class Parsed:
    """One batch of a file read and validated, not yet stored (what :func:`store_batch` writes)."""

    path: Path
    batch: Batch
    incidents: pd.DataFrame
    quarantine: pd.DataFrame
    clock: _Clock
    phases: dict[str, float]


class FileTally:
    """One file's counts, added up over its batches as they are stored; :meth:`summary`
    (after the last) gives its :class:`FileSummary`. Keeps the loaded incidents per day
    for :func:`rtcc_geo.scope.far_dates`, which needs the whole file's."""

    def __init__(self, file: str) -> None:
        from ..scope import DayTally

        self.fs = FileSummary(file=file)
        self.days = DayTally()

    def add(self, p: Parsed, duplicates: int) -> None:
        fs, batch, quarantine = self.fs, p.batch, p.quarantine
        fs.read += len(batch)
        fs.loaded += len(p.incidents)
        fs.quarantined += len(quarantine)
        fs.duplicates += duplicates
        for r, n in quarantine["reason"].value_counts().items():
            fs.by_reason[str(r)] = fs.by_reason.get(str(r), 0) + int(n)
        for k, n in batch.unmapped.items():
            fs.unmapped_offenses[k] = fs.unmapped_offenses.get(k, 0) + int(n)
        self.days.add(p.incidents["occurred_from"])
        # validate() times its H3 and block-normalisation steps itself (wall clock).
        wall = dict(p.clock.wall)
        wall["validate"] -= p.phases.get("h3", 0.0) + p.phases.get("normalise", 0.0)
        wall["h3"], wall["normalise"] = p.phases.get("h3", 0.0), p.phases.get("normalise", 0.0)
        for k, v in wall.items():
            fs.phases[k] = fs.phases.get(k, 0.0) + v
        for k, v in p.clock.cpu.items():
            fs.cpu[k] = fs.cpu.get(k, 0.0) + v
        fs.seconds += p.clock.total

    def summary(self) -> FileSummary:
        from ..scope import far_dates

        fs = self.fs
        clock = _Clock()
        fs.by_reason = {r: fs.by_reason[r] for r in QUARANTINE_REASONS if r in fs.by_reason}
        fs.far_dated = far_dates(self.days)
        clock.lap("summary")
        fs.seconds += clock.total
        fs.phases["summary"] = fs.phases.get("summary", 0.0) + clock.wall["summary"]
        fs.cpu["summary"] = fs.cpu.get("summary", 0.0) + clock.cpu["summary"]
        return fs


def ingest_one(
    fmt, path: Path, store: Store, ag: Agency, area, source: str, mapping, time_floor: str | None = None
) -> FileSummary:
    """One file = one partition: read, validate, write, batch by batch; returns its
    counts (and, in ``phases``, the seconds each step took)."""
    tally = FileTally(path.name)
    for parsed in parse_batches(fmt, path, ag, area, source, mapping, time_floor):
        store_batch(parsed, store, tally)
    return tally.summary()


def parse_batches(
    fmt, path: Path, ag: Agency, area, source: str, mapping, time_floor: str | None = None
) -> Iterator[Parsed]:
    """The first half of :func:`ingest_one`: read and validate one file in batches of
    rows (``RTCC_BATCH_ROWS``, see :func:`rtcc_geo.ingest.iter_raw`); no store involved.
    What a row's result depends on beyond its batch (repeated keys, the numbering of
    repeated rows' ids) is carried from batch to batch, so the batches give what the
    whole file would."""
    state: dict = {}
    seen = SeenIds()
    raws = iter(iter_raw(fmt, path, mapping))
    while True:
        clock = _Clock()
        raw = next(raws, None)
        if raw is None:
            return
        phases: dict[str, float] = {}
        batch = read_batch(fmt, path, timezone=ag.timezone, mapping=mapping, source=source, raw=raw, state=state)
        malformed = batch.raw.attrs.get("malformed_rows") or {}
        if malformed:  # one bad CSV row is quarantined, not the whole file
            mask = np.zeros(len(batch), dtype=bool)
            mask[list(malformed)] = True
            detail = pd.Series(malformed, dtype="object").reindex(range(len(batch))).set_axis(batch.raw.index)
            batch.flag("invalid_field", mask, detail.fillna(""))
        clock.lap("read")
        incidents, quarantine = validate(
            batch, area, tuple(ag.resolutions), time_floor=time_floor, phases=phases, seen=seen
        )
        if len(incidents) + len(quarantine) != len(batch):  # a bug, never bad input
            raise RuntimeError(
                f"{path.name}: validation lost rows ({len(batch)} read, {len(incidents)} + {len(quarantine)} out)"
            )
        clock.lap("validate")
        yield Parsed(path, batch, incidents, quarantine, clock, phases)


def store_batch(p: Parsed, store: Store, tally: FileTally) -> None:
    """The second half of :func:`ingest_one`: write a parsed batch and count it into
    ``tally``. Its ``store`` step is timed from when the write starts (it may wait for
    the parse of the next batch to let go of the interpreter; the wait is not the store's)."""
    p.clock.resume()
    w = store.write_incidents(p.incidents)
    store.write_quarantine(p.quarantine)
    p.clock.lap("store")
    tally.add(p, int(w.received - w.inserted))
