"""The one store API that both engines (embedded GeoParquet, PostGIS) implement.

Everything above the store (hot spots, time, forecasts, staffing, the app)
talks to this interface only; the engines differ in the query layer alone.
"""

from __future__ import annotations

import abc
import threading
from contextlib import AbstractContextManager
from dataclasses import InitVar, dataclass, replace
from collections.abc import Callable, Iterable, Sequence

import pandas as pd

#: Aggregation keys :meth:`Store.counts` understands. Local-time keys use the
#: source's IANA time zone.
#:   cell          H3 cell at the requested resolution (int64)
#:   category      normalised category
#:   district      district as published
#:   hour          local hour of day, 0..23
#:   dow           local ISO day of week minus one, 0 = Monday .. 6 = Sunday
#:   hour_of_week  dow * 24 + hour, 0..167
#:   day           local calendar date (datetime64, midnight, tz-naive)
#:   week          local Monday of the ISO week (datetime64, tz-naive)
#:   month         local first day of the month (datetime64, tz-naive)
COUNT_KEYS: tuple[str, ...] = (
    "cell",
    "category",
    "district",
    "hour",
    "dow",
    "hour_of_week",
    "day",
    "week",
    "month",
)
#: Keys that need a known time of day: rows with ``time_known = False`` are
#: left out of counts by these keys unless ``Query.include_unknown_time``.
HOUR_LEVEL_KEYS = frozenset({"hour", "hour_of_week"})


@dataclass(frozen=True)
class Query:
    """A filter on incidents. ``None`` means no restriction.

    ``start``/``end`` bound ``occurred_from`` as a half-open interval
    ``[start, end)``; naive datetimes are read in the source's local time zone.
    """

    source: str | None = None
    start: pd.Timestamp | str | None = None
    end: pd.Timestamp | str | None = None
    categories: tuple[str, ...] | None = None
    districts: tuple[str, ...] | None = None
    hours: tuple[int, ...] | None = None  # local hours of day kept
    dows: tuple[int, ...] | None = None  # local days of week kept (0 = Monday)
    include_unknown_time: bool = False  # only matters for hour-level keys/filters
    cells: tuple[int, ...] | None = None  # restrict to these cells ...
    cells_res: int | None = None  # ... given at this resolution
    #: True: only geolocated incidents (what every spatial analysis asks for);
    #: False: only the not-geolocated ones; None: both. Counts by ``cell`` and
    #: ``cells`` filters always leave not-geolocated incidents out.
    geolocated: bool | None = None

    def with_(self, **kw) -> Query:
        return replace(self, **kw)


@dataclass
class WriteResult:
    received: int
    inserted: int
    #: The inserted keys as given: a set, or a function building it on first use
    #: (a bulk ingest never asks, and a set of every row's key costs as much as the write).
    keys: InitVar[set[tuple[str, str]] | Callable[[], set[tuple[str, str]]] | None] = None

    def __post_init__(self, keys) -> None:
        self._keys = keys

    @property
    def inserted_keys(self) -> set[tuple[str, str]] | None:
        """``(source, id)`` keys actually inserted by this write (incident writes only)."""
        if callable(self._keys):
            self._keys = self._keys()
        return self._keys

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


class Store(abc.ABC):
    """Abstract store. See :class:`~rtcc_geo.store.embedded.EmbeddedStore` and
    :class:`~rtcc_geo.store.postgis.PostGISStore`."""

    kind: str = "abstract"

    # --- sources ---------------------------------------------------------
    @abc.abstractmethod
    def register_source(self, name: str, timezone: str) -> None:
        """Record a source and its IANA time zone (idempotent; updates the tz)."""

    @abc.abstractmethod
    def sources(self) -> dict[str, str]:
        """``{source name: IANA time zone}``."""

    # --- writes ----------------------------------------------------------
    @abc.abstractmethod
    def write_incidents(self, df: pd.DataFrame) -> WriteResult:
        """Insert canonical incidents; rows whose ``(source, id)`` already exist
        are left untouched (so re-ingest adds nothing)."""

    @abc.abstractmethod
    def write_quarantine(self, df: pd.DataFrame) -> WriteResult:
        """Insert quarantined rows, idempotent on ``(source, file, row_number)``."""

    # --- reads -----------------------------------------------------------
    @abc.abstractmethod
    def incidents(self, q: Query = Query(), columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Canonical incidents matching ``q``, ordered by ``(source, occurred_from, id)``."""

    @abc.abstractmethod
    def count(self, q: Query = Query()) -> int:
        """Number of incidents matching ``q``."""

    @abc.abstractmethod
    def quarantine(self, source: str | None = None) -> pd.DataFrame:
        """Quarantined rows (``schema.QUARANTINE_COLUMNS``)."""

    @abc.abstractmethod
    def counts(self, res: int, by: Sequence[str] = ("cell",), q: Query = Query()) -> pd.DataFrame:
        """Incident counts grouped by ``by`` (see :data:`COUNT_KEYS`), column ``n``.

        Sorted by ``by``; groups with no incident are absent. ``res`` is the H3
        resolution of the ``cell`` key (any of the indexed resolutions, or a
        coarser one, rolled up).
        """

    # --- derived tables (results, cubes, users, alerts) ------------------
    @abc.abstractmethod
    def put_table(self, name: str, df: pd.DataFrame) -> None:
        """Store a derived table under ``name`` (replacing any previous one).

        For results that are computed from incidents and must be kept or
        shared (space-time cubes, hot-spot tables, forecasts, plans, users).
        Column types are kept: int64, float64, bool, string, UTC timestamps,
        naive datetimes. ``name`` is ``[a-z][a-z0-9_]*``.
        """

    @abc.abstractmethod
    def get_table(self, name: str) -> pd.DataFrame | None:
        """The table stored under ``name``, or ``None`` if there is none."""

    def append_table(self, name: str, df: pd.DataFrame) -> None:
        """Append rows to the derived table ``name`` (created when missing).

        For logs that grow (alerts): engines override this to avoid rewriting
        the whole table. Columns and dtypes must match the stored table.
        """
        old = self.get_table(name)
        if old is not None and list(old.columns) != list(df.columns):
            raise ValueError(
                f"append_table({name!r}): columns {list(df.columns)} differ from the stored {list(old.columns)}"
            )
        self.put_table(name, df if old is None or not len(old) else pd.concat([old, df], ignore_index=True))

    def table_lock(self, name: str) -> AbstractContextManager:
        """Hold the derived table ``name`` for a read-modify-write (``get_table``
        then ``put_table`` / ``append_table``), exclusive against every other
        writer of the store: threads here and, for stores that several processes
        share (embedded, PostGIS: ``serve --workers N``), other processes.

        Without it two workers that both read a log and then write it back
        lose each other's rows (an alert raised while another is acknowledged)
        or store the same row twice. Re-entrant. This default only excludes
        threads of this process; engines shared by processes override it.
        """
        return _THREAD_TABLE_LOCK

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op unless the store holds resources  # pragma: no cover
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_THREAD_TABLE_LOCK = threading.RLock()


def prepare_incidents(store: Store, df: pd.DataFrame) -> pd.DataFrame:
    """What every engine does before writing incidents: conform to the schema,
    refuse unregistered sources, and keep the first copy of a key repeated
    within the batch (as ``ON CONFLICT DO NOTHING`` would)."""
    from ..schema import conform

    df = conform(df)
    unknown = set(df["source"].unique()) - set(store.sources())
    if unknown:
        raise ValueError(f"unknown source(s) {sorted(unknown)}: register_source() first")
    return df.drop_duplicates(["source", "id"], keep="first")


def check_table_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
        raise ValueError(f"bad table name {name!r}: use lower-case letters, digits and _")
    return name


def check_keys(by: Iterable[str]) -> tuple[str, ...]:
    by = tuple(by)
    bad = [k for k in by if k not in COUNT_KEYS]
    if bad:
        raise ValueError(f"unknown count key(s) {bad}; use any of {COUNT_KEYS}")
    return by


def needs_known_time(by: Iterable[str], q: Query) -> bool:
    """Whether time-unknown rows must be dropped for this aggregation/filter."""
    if q.include_unknown_time:
        return False
    return bool(HOUR_LEVEL_KEYS.intersection(by)) or q.hours is not None


def geolocated_filter(by: Iterable[str], q: Query) -> bool | None:
    """The geolocation filter an aggregation/filter needs: True (only geolocated)
    whenever cells are involved, else ``q.geolocated``."""
    if "cell" in tuple(by) or q.cells is not None:
        if q.geolocated is False:
            return False  # asks for cells of not-geolocated rows: nothing can match
        return True
    return q.geolocated


def naive_local(ts, tz: str) -> pd.Timestamp:
    """A time as local wall-clock time in ``tz`` (tz-naive); naive input is taken as local already."""
    t = pd.Timestamp(ts)
    if t.tzinfo is not None:
        t = t.tz_convert(tz).tz_localize(None)
    return t


def local_bound(ts, tz: str) -> pd.Timestamp | None:
    """A query bound as a UTC timestamp; naive values are local to ``tz``."""
    if ts is None:
        return None
    t = pd.Timestamp(ts)
    if t.tzinfo is None:
        t = t.tz_localize(tz, ambiguous=False, nonexistent="shift_forward")
    return t.tz_convert("UTC")
