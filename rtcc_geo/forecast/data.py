"""Event arrays and per-cell daily count matrices every forecast model works on.

A :class:`Counts` holds the incidents of one forecast target as two parallel
arrays (cell index, local time in hours since ``origin``) over a fixed set of
study cells, and derives from them, cached:

* ``daily`` — a ``cells x days`` matrix of counts per local calendar day
  (CSR sparse: most cells are empty most days);
* ``how`` — a ``cells x 168`` hour-of-week histogram of the rows whose time
  of day is known (for sub-day windows such as a shift).

Models and the backtest share one ``Counts`` and look only at the days before
their ``until``, so a 26-origin backtest builds the matrix once.

Forecast targets
----------------
:func:`select_target` turns a target name into a row filter on canonical
incidents:

``all``
    every incident;
``all_but_enforcement``
    every incident except categories driven by police activity rather than by
    victimisation: :data:`ENFORCEMENT_CATEGORIES` (``drugs``, ``disorder``) and
    offences whose text mentions a warrant (see :data:`ENFORCEMENT_TEXT`). This
    is the default target of a deployment plan (patrolling where police made
    arrests last week only chases enforcement);
``violent_ucr``
    UCR Part I violent codes 100–499 (homicide, rape, robbery, aggravated assault);
``theft_from_vehicle``
    offence text "theft from vehicle" (any case);
``burglary`` / any other :data:`~rtcc_geo.schema.CATEGORIES` name
    that normalised category.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..schema import CATEGORIES, NO_CELL, h3_column
from ..store.base import naive_local

#: Categories left out of the deployment target by default (enforcement-driven).
ENFORCEMENT_CATEGORIES: tuple[str, ...] = ("drugs", "disorder")
#: Offence-text pattern (case-insensitive) also treated as enforcement-driven.
ENFORCEMENT_TEXT = r"warrant"

TARGETS: tuple[str, ...] = ("all", "all_but_enforcement", "violent_ucr", "theft_from_vehicle") + CATEGORIES

HOURS_PER_DAY = 24.0


def select_target(incidents: pd.DataFrame, target: str = "all") -> pd.DataFrame:
    """Rows of canonical ``incidents`` that belong to forecast ``target`` (see module doc)."""
    if target not in TARGETS:
        raise ValueError(f"unknown forecast target {target!r}; use one of {', '.join(TARGETS)}")
    if target == "all" or incidents.empty:
        return incidents
    if target == "all_but_enforcement":
        return incidents[~enforcement_mask(incidents)]
    if target == "violent_ucr":
        code = pd.to_numeric(incidents["offense_code"].astype("string").str.extract(r"^\s*(\d+)")[0], errors="coerce")
        return incidents[(code >= 100) & (code < 500)]
    if target == "theft_from_vehicle":
        return incidents[
            incidents["offense_raw"].astype("string").str.contains("theft from vehicle", case=False, na=False)
        ]
    return incidents[incidents["category"].astype("string") == target]


def enforcement_mask(incidents: pd.DataFrame, categories=ENFORCEMENT_CATEGORIES, text=ENFORCEMENT_TEXT) -> np.ndarray:
    """True for rows whose category or offence text is enforcement-driven."""
    m = np.array(incidents["category"].astype("string").isin(list(categories)).fillna(False), dtype=bool)
    if text:
        m |= incidents["offense_raw"].astype("string").str.contains(text, flags=re.I, na=False).to_numpy(bool)
    return m


def _global_codes(values: pd.Series, index: dict) -> np.ndarray:
    """Codes of ``values`` in ``index`` (label -> code, extended in order of first
    appearance, -1 for missing): what one ``pd.factorize`` over every batch gives."""
    codes, uniq = pd.factorize(values.astype("string"), use_na_sentinel=True)
    remap = np.array([index.setdefault(u, len(index)) for u in uniq] + [-1], dtype=np.int64)
    return remap[np.asarray(codes, np.int64)]


def daily_from_counts(counts: pd.DataFrame, cells: np.ndarray, origin, n_days: int) -> sp.csr_matrix:
    """``cells x n_days`` CSR matrix of a ``store.counts(res, ("cell", "day"), q)``
    table (local days since ``origin``); counts outside ``cells`` or the days are
    left out, as :attr:`Counts.daily` leaves out events there. Its size is the
    non-zero (cell, day) pairs, never the number of incidents."""
    cells = np.asarray(cells, dtype=np.int64)
    c = counts["cell"].to_numpy(np.int64)
    d = ((pd.to_datetime(counts["day"]) - pd.Timestamp(origin)) // pd.Timedelta(days=1)).to_numpy(np.int64)
    pos = np.clip(np.searchsorted(cells, c), 0, max(len(cells) - 1, 0))
    ok = (len(cells) > 0) & (cells[pos] == c) & (d >= 0) & (d < n_days)
    m = sp.csr_matrix((counts["n"].to_numpy(np.float64)[ok], (pos[ok], d[ok])), shape=(len(cells), n_days))
    m.sum_duplicates()
    return m


@dataclass
class Counts:
    """Incidents of one target on fixed study cells, as local-time event arrays.

    Parameters
    ----------
    cells : int64 array, sorted, unique — the study cells (H3, one resolution).
    cell_idx : int array — each event's position in ``cells``.
    hours : float array — each event's local time in hours since ``origin``.
    time_known : bool array — False where only the date is known.
    origin : naive local midnight of day 0.
    tz : IANA time zone the local times are in.
    n_days : number of days covered (day ``d`` is ``[origin + d, origin + d + 1)``).
    """

    cells: np.ndarray
    cell_idx: np.ndarray
    hours: np.ndarray
    time_known: np.ndarray
    origin: pd.Timestamp
    tz: str
    n_days: int
    res: int = 10
    #: Optional per-event labels for explanations and place features: codes into
    #: ``block_names`` / ``category_names`` (-1 = unknown), parallel to ``hours``.
    block: np.ndarray | None = None
    block_names: np.ndarray | None = None
    category: np.ndarray | None = None
    category_names: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    # ---- construction ---------------------------------------------------
    @classmethod
    def from_incidents(
        cls,
        incidents: pd.DataFrame,
        cells: np.ndarray | None = None,
        res: int = 10,
        tz: str = "UTC",
        origin=None,
        end=None,
    ) -> Counts:
        """Build from canonical incidents (``occurred_from`` UTC, ``h3_r<res>``).

        ``cells`` defaults to the cells that have any incident; events in other
        cells are dropped (they are outside the study area). ``origin``/``end``
        default to the local midnights around the data.
        """
        return cls.from_batches([incidents], cells=cells, res=res, tz=tz, origin=origin, end=end)

    @classmethod
    def from_batches(
        cls,
        batches: Iterable[pd.DataFrame],
        cells: np.ndarray | None = None,
        res: int = 10,
        tz: str = "UTC",
        origin=None,
        end=None,
        add_event_cells: bool = False,
    ) -> Counts:
        """:meth:`from_incidents` of the concatenation of ``batches``, one batch in
        memory at a time: each batch is reduced to the compact per-event arrays
        (cell, local time, time known, label codes; about 33 bytes an event) before
        the next is read, so the text columns never pile up. ``add_event_cells``:
        the study cells are ``cells`` plus every cell holding an event.
        """
        col = h3_column(res)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        labels: dict[str, tuple[list[np.ndarray], dict]] = {}
        for df in batches:
            if col not in df.columns:
                raise ValueError(f"incidents have no {col} column; ingest with resolution {res} or pick another --res")
            # Not-geolocated incidents (H3 = NO_CELL, see rtcc_geo.schema) have no cell to forecast.
            df = df[df[col].to_numpy(np.int64) != NO_CELL]
            t = pd.to_datetime(df["occurred_from"], utc=True).dt.tz_convert(tz).dt.tz_localize(None)
            tk = df["time_known"].fillna(True).to_numpy(bool) if "time_known" in df.columns else np.ones(len(df), bool)
            parts.append((t.to_numpy("datetime64[ns]").view(np.int64), df[col].to_numpy(np.int64), tk))
            for c in ("block", "category"):
                if c in df.columns:
                    codes, index = labels.setdefault(c, ([], {}))
                    codes.append(_global_codes(df[c], index))
        t_ns = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        h3c = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        tk = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, bool)
        del parts
        t = pd.DatetimeIndex(t_ns.view("datetime64[ns]"))
        if cells is None:
            cells = np.unique(h3c)
        elif add_event_cells and len(h3c):
            cells = np.union1d(np.asarray(cells, dtype=np.int64), h3c)
        cells = np.unique(np.asarray(cells, dtype=np.int64))
        if origin is None:
            origin = t.min().normalize() if len(t) else pd.Timestamp("2000-01-01")
        origin = naive_local(origin, tz).normalize()
        if end is None:
            end = (t.max().normalize() + pd.Timedelta(days=1)) if len(t) else origin + pd.Timedelta(days=1)
        end = naive_local(end, tz)
        n_days = int(np.ceil((end - origin) / pd.Timedelta(days=1)))
        hours = ((t - origin) / pd.Timedelta(hours=1)).to_numpy(np.float64)
        pos = np.searchsorted(cells, h3c)
        pos_c = np.clip(pos, 0, max(len(cells) - 1, 0))
        keep = (len(cells) > 0) & (cells[pos_c] == h3c) & (hours >= 0) & (hours < n_days * HOURS_PER_DAY)
        order = np.argsort(hours[keep], kind="stable")
        out: dict[str, np.ndarray] = {}
        for c, (codes, index) in labels.items():
            out[c] = np.concatenate(codes)[keep][order]
            out[f"{c}_names"] = np.asarray(list(index), dtype=object)
        return cls(
            cells=cells,
            cell_idx=pos_c[keep][order].astype(np.int64),
            hours=hours[keep][order],
            time_known=tk[keep][order],
            origin=origin,
            tz=tz,
            n_days=n_days,
            res=res,
            block=out.get("block"),
            block_names=out.get("block_names"),
            category=out.get("category"),
            category_names=out.get("category_names"),
        )

    @classmethod
    def from_daily(cls, cells: np.ndarray, X, origin="2000-01-03", tz: str = "UTC", res: int = 10) -> Counts:
        """Build from a ``cells x days`` count matrix (events placed at noon);
        for synthetic data and tests."""
        X = sp.csr_matrix(X)
        coo = X.tocoo()
        reps = coo.data.astype(np.int64)
        ci = np.repeat(coo.row, reps)
        hrs = np.repeat(coo.col * HOURS_PER_DAY + 12.0, reps)
        order = np.argsort(hrs, kind="stable")
        return cls(
            cells=np.asarray(cells, np.int64),
            cell_idx=ci[order].astype(np.int64),
            hours=hrs[order],
            time_known=np.ones(len(hrs), bool),
            origin=pd.Timestamp(origin).normalize(),
            tz=tz,
            n_days=X.shape[1],
            res=res,
        )

    # ---- time helpers ---------------------------------------------------
    def to_hours(self, ts) -> float:
        """Local hours since ``origin`` of a timestamp (naive = local)."""
        return float((naive_local(ts, self.tz) - self.origin) / pd.Timedelta(hours=1))

    def day_of(self, ts) -> int:
        """Index of the local day containing ``ts`` (may be out of range)."""
        return int(np.floor(self.to_hours(ts) / HOURS_PER_DAY))

    def day_start(self, d: int) -> pd.Timestamp:
        return self.origin + pd.Timedelta(days=int(d))

    # ---- derived matrices ----------------------------------------------
    @cached_property
    def daily(self) -> sp.csr_matrix:
        """``cells x n_days`` counts per local day (CSR, float64)."""
        d = np.floor(self.hours / HOURS_PER_DAY).astype(np.int64)
        m = sp.coo_matrix((np.ones(len(d)), (self.cell_idx, d)), shape=(len(self.cells), self.n_days)).tocsr()
        m.sum_duplicates()
        return m

    def use_daily(self, matrix: sp.spmatrix) -> None:
        """Set :attr:`daily` from elsewhere (e.g. :func:`daily_from_counts`, the
        store's own aggregation) instead of building it from the event arrays."""
        m = sp.csr_matrix(matrix, dtype=np.float64)
        if m.shape != (len(self.cells), self.n_days):
            raise ValueError(f"daily matrix is {m.shape}, expected {(len(self.cells), self.n_days)} (cells x days)")
        self.__dict__["daily"] = m
        self.__dict__.pop("daily_csc", None)

    @cached_property
    def daily_csc(self) -> sp.csc_matrix:
        return self.daily.tocsc()

    @property
    def n_events(self) -> int:
        """Number of events (in the study cells and days)."""
        return len(self.hours)

    def window_counts(self, start, end) -> np.ndarray:
        """Observed events per cell in ``[start, end)`` (local times), exact to the event.

        A window from one local midnight to another inside the data is a sum of
        :attr:`daily` columns (the same integer counts, without the event arrays)."""
        a, b = self.to_hours(start), self.to_hours(end)
        d0, d1 = a / HOURS_PER_DAY, b / HOURS_PER_DAY
        if d0 == int(d0) and d1 == int(d1) and 0 <= d0 <= d1 <= self.n_days:
            return np.asarray(self.daily_csc[:, int(d0) : int(d1)].sum(axis=1), dtype=np.float64).ravel()
        i0, i1 = np.searchsorted(self.hours, [a, b])
        return np.bincount(self.cell_idx[i0:i1], minlength=len(self.cells)).astype(np.float64)

    def days_before(self, d: int) -> sp.csc_matrix:
        """Daily counts of days ``[0, d)`` (CSC slice)."""
        return self.daily_csc[:, : max(0, min(d, self.n_days))]

    def how_hist(self, until_hours: float) -> sp.csr_matrix:
        """``cells x 168`` hour-of-week histogram of known-time events before ``until_hours``."""
        i1 = np.searchsorted(self.hours, until_hours)
        m = self.time_known[:i1]
        h = self.hours[:i1][m]
        # local hour of week: Monday 00:00 = 0
        dow0 = self.origin.day_of_week
        how = (np.floor(h).astype(np.int64) + dow0 * 24) % 168
        return sp.coo_matrix((np.ones(len(how)), (self.cell_idx[:i1][m], how)), shape=(len(self.cells), 168)).tocsr()

    def hour_of_week_slots(self, start, end) -> np.ndarray:
        """Weight (0..n) of each of the 168 hour-of-week slots in ``[start, end)``."""
        a, b = self.to_hours(start), self.to_hours(end)
        w = np.zeros(168)
        if b <= a:
            return w
        dow0 = self.origin.day_of_week * 24
        h = np.floor(a)
        while h < b:  # at most 168 * weeks iterations; windows are short
            lo, hi = max(a, h), min(b, h + 1)
            w[int(h + dow0) % 168] += hi - lo
            h += 1
            if h - np.floor(a) > 24 * 7 * 8:  # long windows: whole weeks are uniform
                w += (b - h) / 168.0
                break
        return w


#: The per-event fields of a :class:`Counts` (see :class:`LazyCounts`).
EVENT_FIELDS: tuple[str, ...] = (
    "cell_idx",
    "hours",
    "time_known",
    "block",
    "block_names",
    "category",
    "category_names",
)


class _EventField:
    """A per-event field of a :class:`LazyCounts`: read from the source on first use."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        if not obj.__dict__.get("_events_loaded"):
            obj.load_events()
        return obj.__dict__[self.name]

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.name] = value


class LazyCounts(Counts):
    """A :class:`Counts` built from aggregates: study cells and the ``cells x days`` matrix
    come from the store's counts, and the per-event arrays (``hours``, ``cell_idx``, labels)
    are read, in batches, only when something asks for them (sub-day windows, the
    hour-of-week profile, block and category facts).

    Whole-day windows, day-based features and every model that works on
    :attr:`~Counts.daily` (naive, seasonal, prospective, STKDE, SEPP, learned) never read
    them, so a backtest of those holds a matrix of the non-zero cell-days, not the
    incidents. ``loader()`` returns an eager :class:`Counts` of the same cells and days.
    """

    cell_idx = _EventField()  # type: ignore[assignment]
    hours = _EventField()  # type: ignore[assignment]
    time_known = _EventField()  # type: ignore[assignment]
    block = _EventField()  # type: ignore[assignment]
    block_names = _EventField()  # type: ignore[assignment]
    category = _EventField()  # type: ignore[assignment]
    category_names = _EventField()  # type: ignore[assignment]

    @classmethod
    def lazy(
        cls, cells: np.ndarray, origin: pd.Timestamp, tz: str, n_days: int, res: int, daily: sp.spmatrix, loader
    ) -> LazyCounts:
        # The event arrays are loaded on first use (the _EventField descriptors), not passed.
        none: Any = None
        c = cls(
            cells=np.asarray(cells, np.int64),
            cell_idx=none,
            hours=none,
            time_known=none,
            origin=origin,
            tz=tz,
            n_days=n_days,
            res=res,
        )
        c.__dict__["_events_loaded"] = False
        c.__dict__["_loader"] = loader
        c.use_daily(daily)
        return c

    def load_events(self) -> None:
        """Read the per-event arrays (once) from the loader."""
        e = self.__dict__["_loader"]()
        if not (np.array_equal(e.cells, self.cells) and e.origin == self.origin and e.n_days == self.n_days):
            raise RuntimeError("the incidents changed while the forecast read them (cells or days differ): run again")
        for k in EVENT_FIELDS:
            self.__dict__[k] = getattr(e, k)
        self.__dict__["_events_loaded"] = True

    @property
    def n_events(self) -> int:
        if self.__dict__.get("_events_loaded"):
            return len(self.hours)
        return int(round(float(self.daily.sum())))

    def __repr__(self) -> str:
        return f"LazyCounts({len(self.cells)} cells, {self.n_days} days from {self.origin}, res {self.res})"
