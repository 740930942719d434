"""One Scope: what an analysis runs on, resolved once.

A :class:`Scope` is a store, a query and the agency of the query's source:
its time zone, its study area (the stored boundary, or the selected
districts' polygons) and the study cells per resolution. Every store-level
entry point accepts one (``hotspots(scope, ...)``, ``emerging_hotspots(scope,
...)``, ...), and the CLI and the app only build a Scope and render, so they
cannot pick different study areas, sources or district names.

>>> from rtcc_geo.scope import resolve_scope            # doctest: +SKIP
>>> sc = resolve_scope(store, Query(start="2024-01-01", end="2025-01-01", districts=("Downtown",)))
>>> sc.source, sc.timezone, sc.boundary().area, len(sc.study_cells(9))

Rules (no silent fallback):

* the source is ``query.source`` or the store's only source; several and none
  chosen, or an unknown one, is an error;
* the agency is the one stored for the source (``rtcc-geo agency add``), else
  its preset; with neither, an analysis that needs a study area fails and says
  what to run, unless ``study_area="incidents"`` was asked for explicitly (then
  :meth:`Scope.describe` says so);
* districts are compared after :func:`~rtcc_geo.config.norm_district` and
  through the agency's alias table (data name -> polygon name); a requested
  district with no polygon, or no such district at all, is an error. The
  query then holds the data's own spellings of the selected districts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .config import Agency, load_agency, norm_district
from .store.base import Query, Store

#: ``study_area`` values: the agency's boundary (or selected districts), or only
#: the cells holding incidents (biased for Gi*; must be asked for).
STUDY_AREAS = ("agency", "incidents")


class ScopeError(ValueError):
    """The question cannot be answered as asked; the message says what to run or change."""


@dataclass(frozen=True)
class Scope:
    store: Store
    query: Query
    agency: Agency | None
    study_area: str = "agency"
    #: Selected districts as the polygons name them (``None`` = the whole agency).
    districts: tuple[str, ...] | None = None
    _cells: dict = field(default_factory=dict, compare=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, compare=False, repr=False)

    @property
    def source(self) -> str:
        assert self.query.source is not None  # resolve_scope always sets it
        return self.query.source

    @property
    def timezone(self) -> str:
        return self.store.sources()[self.source]

    def with_query(self, **kw) -> Scope:
        """The same agency and study area, another window / categories / hours
        (``districts`` re-resolved when given)."""
        if "districts" in kw or "source" in kw:
            return resolve_scope(self.store, self.query.with_(**kw), study_area=self.study_area)
        return replace(self, query=self.query.with_(**kw), _cells={}, _lock=threading.Lock())

    def boundary(self):
        """The study-area polygon (EPSG:4326): the selected districts' union or the
        agency boundary; ``None`` only for ``study_area="incidents"``."""
        if self.study_area == "incidents":
            return None
        if self.districts:
            d = self.agency.districts()
            return d[d["district"].isin(self.districts)].geometry.union_all()
        return self.agency.boundary()

    def study_cells(self, res: int) -> np.ndarray:
        """Every cell of the study area at ``res`` plus every cell with an incident
        of the query (sorted int64; cached per resolution)."""
        with self._lock:
            if res not in self._cells:
                from .hotspots.api import cell_counts
                from .hotspots.weights import study_area

                counts = cell_counts(self.store, res, self.query)
                self._cells[res] = study_area(self.boundary(), res, counts.index.to_numpy())
            return self._cells[res]

    def describe(self) -> dict:
        """What ``--json`` reports about the scope."""
        q = self.query
        return {
            "source": self.source,
            "timezone": self.timezone,
            "study_area": self.study_area_label(),
            "agency": None if self.agency is None else self.agency.origin,
            "districts": list(self.districts) if self.districts else None,
            "from": None if q.start is None else str(q.start),
            "to": None if q.end is None else str(q.end),
            "categories": list(q.categories) if q.categories else None,
        }

    def study_area_label(self) -> str:
        if self.study_area == "incidents":
            return "incidents only (cells with incidents; biased for Gi*, asked for with --study-area incidents)"
        if self.districts:
            return f"districts {', '.join(self.districts)} of the stored agency"
        assert self.agency is not None  # without an agency the study area is "incidents"
        return f"{self.agency.origin} agency boundary" if self.agency.origin != "store" else "stored agency boundary"


def pick_source(store: Store, source: str | None) -> str:
    """``source`` checked against the store, or the store's only source."""
    srcs = store.sources()
    if source:
        if source not in srcs:
            raise ScopeError(f"the store has no source {source!r}; it has {sorted(srcs) or 'none (ingest first)'}")
        return source
    if len(srcs) == 1:
        return next(iter(srcs))
    if not srcs:
        raise ScopeError("the store holds no incidents yet: run `rtcc-geo ingest` first")
    raise ScopeError(f"the store holds several sources {sorted(srcs)}: choose one with --source / Query(source=...)")


def agency_of(store: Store | None, source: str) -> Agency | None:
    """The stored agency of ``source``, else its preset, else ``None``."""
    try:
        return load_agency(source, store=store)
    except FileNotFoundError:
        return None


def missing_agency_message(source: str) -> str:
    return (
        f"no study area for source {source!r}: the store holds no agency {source!r} and there is no preset. "
        f"Run `rtcc-geo agency add {source} --boundary FILE --timezone TZ` (add --districts FILE "
        "--district-field F for district filters), or pass --study-area incidents to analyse only the "
        "cells with incidents (biased for Gi*)"
    )


def district_lookup(agency: Agency) -> dict[str, str]:
    """normalised name / label / alias -> district key (the polygon's name)."""
    d = agency.districts()
    out: dict[str, str] = {}
    if d is None:
        return out
    for k, lab in zip(d["district"], d["label"]):
        out.setdefault(norm_district(lab), k)
        out[norm_district(k)] = k
    for alias, target in (agency.district_aliases or {}).items():
        key = out.get(norm_district(target))
        if key is not None:
            out[norm_district(alias)] = key
    return out


def resolve_districts(
    store: Store, source: str, agency: Agency | None, wanted, study_area: str = "agency"
) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """(polygon keys, the data's spellings) of the requested districts; see the module doc."""
    if not wanted:
        return None, ()
    data_names = _data_districts(store, source)
    if agency is None or agency.districts() is None:
        if study_area == "incidents":
            hit = tuple(n for n in data_names if norm_district(n) in {norm_district(w) for w in wanted})
            miss = sorted(w for w in wanted if norm_district(w) not in {norm_district(n) for n in data_names})
            if miss:
                raise ScopeError(
                    f"no incidents of {source} in district(s) {miss}; the data's districts: {sorted(data_names)}"
                )
            return None, hit
        raise ScopeError(
            f"district filter {list(wanted)} cannot be honoured: agency {source!r} has no district "
            f"polygons; add them with `rtcc-geo agency add {source} --boundary FILE --timezone TZ "
            "--districts FILE --district-field F`"
        )
    look = district_lookup(agency)
    found: list[str] = []
    bad: list[str] = []
    for w in wanted:
        k = look.get(norm_district(w))
        (found if k is not None else bad).append(k if k is not None else w)
    if bad:
        labels = sorted(agency.districts()["label"])
        orphan = sorted(n for n in data_names if norm_district(n) not in look)
        hint = (
            (
                f" The data names {', '.join(orphan)} with no outline: if one is another district's name, add an "
                "alias (rtcc-geo agency add ... --alias 'Data name=Outline name'); else leave it out of the "
                "district filter."
            )
            if orphan
            else ""
        )
        raise ScopeError(
            f"no district {', '.join(sorted(bad))} among {source}'s {len(labels)} district outlines "
            f"({', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''}).{hint}"
        )
    keys = tuple(dict.fromkeys(found))
    spelled = tuple(n for n in data_names if look.get(norm_district(n)) in keys)
    # A district with no incident yet is still a valid (empty) filter: keep the name asked for.
    have = {look.get(norm_district(n)) for n in spelled}
    spelled = tuple(dict.fromkeys(spelled + tuple(w for w in wanted if look[norm_district(w)] not in have)))
    return keys, spelled


def _data_districts(store: Store, source: str) -> tuple[str, ...]:
    c = store.counts(9, ("district",), Query(source=source))
    return tuple(str(x) for x in c["district"].dropna())


def resolve_scope(
    store: Store,
    q: Query | None = None,
    *,
    source: str | None = None,
    study_area: str = "agency",
    need_area: bool = True,
) -> Scope:
    """Resolve ``q`` on ``store`` into a :class:`Scope` (see the module doc for the rules).

    ``need_area=False`` is for analyses with no study area (temporal profiles,
    staffing): a missing agency is then not an error.
    """
    if study_area not in STUDY_AREAS:
        raise ScopeError(f"study_area {study_area!r}: use one of {STUDY_AREAS}")
    q = q or Query()
    src = pick_source(store, source or q.source)
    agency = agency_of(store, src)
    if agency is not None and agency.boundary() is None and study_area == "agency":
        agency = None  # a preset whose boundary file is not found is no study area
    if agency is None and study_area == "agency" and need_area:
        raise ScopeError(missing_agency_message(src))
    sa = study_area if agency is not None or study_area == "incidents" else "incidents"
    keys, spelled = resolve_districts(store, src, agency, q.districts, sa)
    q2 = q.with_(source=src, districts=spelled or None) if q.districts else q.with_(source=src)
    return Scope(store=store, query=q2, agency=agency, study_area=sa, districts=keys)


def as_scope(store_or_scope, q: Query | None = None, boundary: Any = None) -> Scope | None:
    """The Scope of an entry point's ``(store, q, boundary)`` arguments: ``store``
    itself when it is one, else resolved from ``q`` when ``boundary`` is
    ``None``/``"auto"``/``"incidents"``; ``None`` for an explicit boundary."""
    if isinstance(store_or_scope, Scope):
        return store_or_scope
    if boundary is None or (isinstance(boundary, str) and boundary in ("auto", "incidents")):
        return resolve_scope(store_or_scope, q, study_area="incidents" if boundary == "incidents" else "agency")
    return None


class DayTally:
    """Incidents per calendar day, added up batch by batch (:meth:`add`): what
    :func:`far_dates` needs of a file read in batches, in memory bounded by the
    span of days, not by the rows (8 bytes a row when the times were kept)."""

    def __init__(self) -> None:
        self.days = np.empty(0, dtype=np.int64)  # days since 1970-01-01, sorted, distinct
        self.counts = np.empty(0, dtype=np.int64)

    def add(self, times) -> None:
        """Count ``times`` (naive or aware datetimes; aware ones by their UTC day; NaT ignored)."""
        import pandas as pd

        t = pd.DatetimeIndex(pd.to_datetime(pd.Series(times)).dropna())
        if t.tz is not None:
            t = t.tz_convert("UTC").tz_localize(None)
        if not len(t):
            return
        d, c = np.unique(t.to_numpy().astype("datetime64[D]").astype(np.int64), return_counts=True)
        self.days, inv = np.unique(np.concatenate([self.days, d]), return_inverse=True)
        self.counts = np.bincount(inv, weights=np.concatenate([self.counts, c]), minlength=len(self.days)).astype(
            np.int64
        )

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the days, interpolated linearly between order statistics
        (pandas' and numpy's default), in days since 1970-01-01."""
        n = int(self.counts.sum())
        pos = q * (n - 1)
        ends = np.cumsum(self.counts)  # the k-th smallest (0-based) lies on the first day with ends > k
        lo, hi = int(np.floor(pos)), int(np.ceil(pos))
        a, b = self.days[np.searchsorted(ends, [lo, hi], side="right")]
        return float(a + (pos - lo) * (b - a))


def far_dates(times, years: float = 5.0) -> dict:
    """Incidents dated far from the bulk of ``times`` (datetimes, or a :class:`DayTally`
    of them): on days more than ``years`` before the 1st percentile or after the 99th,
    to the day. ``{"before", "after", "earliest", "latest", "bulk_from", "bulk_to"}``
    (counts and ISO dates)."""
    if isinstance(times, DayTally):
        tally = times
    else:
        tally = DayTally()
        tally.add(times)
    if not len(tally.days):
        return {"before": 0, "after": 0, "earliest": None, "latest": None, "bulk_from": None, "bulk_to": None}
    lo, hi = tally.quantile(0.01), tally.quantile(0.99)
    gap = 365.25 * years

    def iso(day: float) -> str:
        return str(np.datetime64(int(np.floor(day)), "D"))

    return {
        "before": int(tally.counts[tally.days < lo - gap].sum()),
        "after": int(tally.counts[tally.days > hi + gap].sum()),
        "earliest": iso(tally.days[0]),
        "latest": iso(tally.days[-1]),
        "bulk_from": iso(lo),
        "bulk_to": iso(hi),
    }
