"""Temporal signatures in the agency's local time: hour of day, day of week,
the 168-bin hour of week, month, season and trend — overall or per category,
district or H3 cell.

Rules (the same everywhere in the package)
------------------------------------------
* Local time is the source's IANA zone (``Agency.timezone`` /
  ``store.sources()``); times are stored in UTC and converted per incident,
  so the DST changes are exact (the spring-forward day has no 02:00 hour,
  the fall-back day has two real hours labelled 01:00).
* **Hour-level figures** (``hour``, ``hour_of_week``) are *aoristic*
  (:mod:`rtcc_geo.temporal.aoristic`): an instant counts 1 in its hour, a
  from/to window is spread over the hours it covers (weights sum to 1).
  Time-unknown rows (``time_known = False``) are **excluded** by default
  (``unknown_time="spread"`` spreads them over their local day instead); the
  number left out is reported as :attr:`TemporalSignature.n_time_unknown`.
* **Day-level figures** count every incident, time-unknown ones included:
  ``dow`` is aoristic with time-unknown rows spread over their own local day
  (so they land on their day of week), ``month`` / ``season`` count by the
  local date of ``occurred_from``.
* ``season`` is meteorological (northern hemisphere): DJF winter, MAM spring,
  JJA summer, SON autumn.
* ``trend`` is the Mann–Kendall test (ties corrected) and Sen's slope
  (incidents per month) on the monthly counts between the first and last
  month present, per group.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..store.base import Query, Store
from .aoristic import aoristic_counts
from .mannkendall import mann_kendall, sen_slope
from .stream import iter_incidents

GROUP_BY: tuple[str, ...] = ("category", "district", "cell")
SEASONS: tuple[str, ...] = ("winter", "spring", "summer", "autumn")
DOW_NAMES: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_SEASON_OF_MONTH = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 0])  # Jan..Dec


@dataclass
class TemporalSignature:
    """Counts per group (rows) and local time bin (columns).

    ``hour`` (24 cols), ``dow`` (7, 0 = Monday), ``hour_of_week`` (168,
    ``dow * 24 + hour``), ``month`` (local month starts), ``season`` (4),
    ``trend`` (one row per group: ``mk_z``, ``mk_p``, ``mk_tau``,
    ``sen_slope`` per month, ``direction`` +1/0/-1 at 5 %).
    Rows are indexed by the group label (``"all"`` when ungrouped).
    """

    by: str | None
    tz: str
    hour: pd.DataFrame
    dow: pd.DataFrame
    hour_of_week: pd.DataFrame
    month: pd.DataFrame
    season: pd.DataFrame
    trend: pd.DataFrame
    n_incidents: int
    n_time_unknown: int

    def hour_of_week_matrix(self, group=None) -> pd.DataFrame:
        """7 × 24 (day of week × hour) view of one group's hour-of-week counts."""
        g = self.hour_of_week.index[0] if group is None else group
        v = self.hour_of_week.loc[g].to_numpy().reshape(7, 24)
        return pd.DataFrame(v, index=list(DOW_NAMES), columns=range(24))


def _group_codes(df: pd.DataFrame, by: str | None, res: int | None) -> tuple[np.ndarray, pd.Index]:
    if by is None:
        return np.zeros(len(df), dtype=np.int64), pd.Index(["all"], name="group")
    if by not in GROUP_BY:
        raise ValueError(f"unknown group {by!r}; use one of {GROUP_BY} or None")
    if by == "cell":
        if res is None:
            raise ValueError("by='cell' needs res (the H3 resolution)")
        from .cube import _finest_cell_column
        from ..grid import parent

        keys = pd.Series(parent(df[_finest_cell_column(df, res)].to_numpy(np.int64), res))
    else:
        keys = df[by].astype("string").fillna("(none)")
    codes, uniq = pd.factorize(keys, sort=True)
    return codes.astype(np.int64), pd.Index(uniq, name=by)


def temporal_signature(
    df: pd.DataFrame,
    tz: str,
    by: str | None = None,
    res: int | None = None,
    unknown_time: str = "exclude",
) -> TemporalSignature:
    """Temporal signature of a canonical incident frame (see module rules).

    ``df`` needs ``occurred_from`` (UTC); ``occurred_to`` and ``time_known``
    are used when present; ``by="cell"`` needs an ``h3_r*`` column at or finer
    than ``res``.
    """
    return signature_from_batches([df], tz, by=by, res=res, unknown_time=unknown_time)


def signature_from_batches(
    batches: Iterable[pd.DataFrame],
    tz: str,
    by: str | None = None,
    res: int | None = None,
    unknown_time: str = "exclude",
) -> TemporalSignature:
    """:func:`temporal_signature` of the concatenation of ``batches``, one batch in
    memory at a time (the sums are additive over incidents; only the per-group
    bins are kept between batches, so memory is groups x bins, not rows)."""
    acc = _Sums(tz, by, res, unknown_time)
    for df in batches:
        acc.add(df)
    return acc.signature()


class _Sums:
    """Per-group running sums of a signature's bins over batches of rows."""

    def __init__(self, tz: str, by: str | None, res: int | None, unknown_time: str):
        if by is not None and by not in GROUP_BY:
            raise ValueError(f"unknown group {by!r}; use one of {GROUP_BY} or None")
        if by == "cell" and res is None:
            raise ValueError("by='cell' needs res (the H3 resolution)")
        self.tz, self.by, self.res, self.unknown_time = tz, by, res, unknown_time
        self.how: pd.DataFrame | None = None  # group x 168
        self.dow: pd.DataFrame | None = None  # group x 7
        self.month: list[pd.Series] = []  # per batch: (group, year * 12 + month - 1) -> n
        self.n = 0
        self.n_unknown = 0

    def add(self, df: pd.DataFrame) -> None:
        if len(df) == 0:
            return
        codes, groups = _group_codes(df, self.by, self.res)
        how = pd.DataFrame(
            aoristic_counts(df, self.tz, "hour_of_week", groups=codes, unknown_time=self.unknown_time), index=groups
        )
        dow = pd.DataFrame(aoristic_counts(df, self.tz, "dow", groups=codes, unknown_time="spread"), index=groups)
        local = pd.DatetimeIndex(pd.to_datetime(df["occurred_from"], utc=True)).tz_convert(self.tz)
        mnum = local.year.to_numpy(np.int64) * 12 + local.month.to_numpy(np.int64) - 1
        month = pd.Series(np.ones(len(df), np.int64)).groupby([groups[codes], mnum]).sum()
        self.how = how if self.how is None else self.how.add(how, fill_value=0.0)
        self.dow = dow if self.dow is None else self.dow.add(dow, fill_value=0.0)
        self.month.append(month)  # a batch spans few months: groups x months in all, summed once at the end
        known = df["time_known"].to_numpy(dtype=bool, na_value=True) if "time_known" in df.columns else None
        self.n += len(df)
        self.n_unknown += 0 if known is None else int((~known).sum())

    def signature(self) -> TemporalSignature:
        if self.n == 0 or self.how is None or self.dow is None or not self.month:
            raise ValueError("no incidents to summarise; widen the query (dates, categories, source)")
        groups = pd.Index(self.how.index.sort_values(), name=self.by or "group")
        if self.by is None:
            groups = pd.Index(["all"], name="group")
        how = self.how.reindex(groups).to_numpy(np.float64)
        dow = self.dow.reindex(groups).to_numpy(np.float64)
        hour = how.reshape(len(groups), 7, 24).sum(axis=1)
        m = pd.concat(self.month).groupby(level=[0, 1]).sum().unstack(fill_value=0)
        mnums = np.arange(int(m.columns.min()), int(m.columns.max()) + 1)
        month = m.reindex(index=groups, columns=mnums, fill_value=0).to_numpy(np.int64)
        season = np.zeros((len(groups), 4))
        np.add.at(season.T, _SEASON_OF_MONTH[mnums % 12], month.T.astype(np.float64))
        first = pd.Period(year=int(mnums[0] // 12), month=int(mnums[0] % 12) + 1, freq="M")
        mk_idx = pd.period_range(first, periods=len(mnums), freq="M").to_timestamp()
        return TemporalSignature(
            by=self.by,
            tz=self.tz,
            hour=pd.DataFrame(hour, index=groups, columns=pd.RangeIndex(24, name="hour")),
            dow=pd.DataFrame(dow, index=groups, columns=pd.RangeIndex(7, name="dow")),
            hour_of_week=pd.DataFrame(how, index=groups, columns=pd.RangeIndex(168, name="hour_of_week")),
            month=pd.DataFrame(month, index=groups, columns=pd.DatetimeIndex(mk_idx, name="month")),
            season=pd.DataFrame(season, index=groups, columns=pd.Index(list(SEASONS), name="season")),
            trend=_trend(month.astype(np.float64), groups),
            n_incidents=int(self.n),
            n_time_unknown=int(self.n_unknown) if self.unknown_time == "exclude" else 0,
        )


def _trend(month: np.ndarray, groups: pd.Index) -> pd.DataFrame:
    cols = ["mk_z", "mk_p", "mk_tau", "sen_slope", "direction"]
    if month.shape[1] < 3:
        return pd.DataFrame(np.nan, index=groups, columns=cols)
    mk = mann_kendall(month)
    return pd.DataFrame(
        {
            "mk_z": mk.z,
            "mk_p": mk.p,
            "mk_tau": mk.tau,
            "sen_slope": sen_slope(month),
            "direction": mk.trend(0.05),
        },
        index=groups,
    )


_COLUMNS = ["occurred_from", "occurred_to", "time_known"]


def signature_from_store(
    store: Store,
    q: Query = Query(),
    by: str | None = None,
    res: int | None = None,
    tz: str | None = None,
    unknown_time: str = "exclude",
    max_rows: int | None = None,
) -> TemporalSignature:
    """:func:`temporal_signature` of the incidents ``q`` selects from ``store``.

    The store keeps time-unknown rows for day-level figures; the hour filter
    of ``q`` is not applied here (hour-level figures are the output).

    Why rows, not :meth:`Store.counts`: an incident known only within a
    ``[occurred_from, occurred_to)`` window is spread over the hours it covers,
    and the window is no count key. So the rows are read in time batches of at
    most ``max_rows`` (default ``RTCC_BATCH_ROWS`` or 1 M;
    :func:`~rtcc_geo.temporal.stream.iter_incidents`), with
    only the columns the signature needs; memory is one batch plus groups x bins.
    """
    tz = tz or source_tz(store, q.source)
    return signature_from_batches(
        iter_incidents(store, signature_query(q, by), signature_columns(by, res), max_rows),
        tz,
        by=by,
        res=res,
        unknown_time=unknown_time,
    )


def signature_query(q: Query, by: str | None) -> Query:
    """The rows a signature reads: time-unknown ones too (day-level figures count them);
    only geolocated ones for a per-cell signature."""
    return q.with_(include_unknown_time=True, geolocated=True if by == "cell" else q.geolocated)


def signature_columns(by: str | None, res: int | None) -> list[str]:
    """The columns :func:`temporal_signature` reads for grouping ``by`` at ``res``."""
    cols = list(_COLUMNS) + ([by] if by in ("category", "district") else [])
    if by == "cell":
        from ..schema import h3_column

        if res is None:
            raise ValueError("by='cell' needs res (the H3 resolution)")
        cols.append(h3_column(min(max(res, 7), 10)))
    return cols


def source_tz(store: Store, source: str | None) -> str:
    """The IANA zone of ``source`` (or of the store's only zone)."""
    srcs = store.sources()
    if source is not None:
        if source not in srcs:
            raise LookupError(f"source {source!r} is not in the store (have {sorted(srcs)}); ingest it first")
        return srcs[source]
    zones = set(srcs.values())
    if len(zones) != 1:
        raise ValueError(
            f"the store holds sources in {len(zones)} time zones {sorted(zones)}; "
            "pick one with --source / Query(source=...)"
        )
    return zones.pop()
