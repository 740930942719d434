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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..store.base import Query, Store
from .aoristic import aoristic_counts
from .mannkendall import mann_kendall, sen_slope

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
    if len(df) == 0:
        raise ValueError("no incidents to summarise; widen the query (dates, categories, source)")
    codes, groups = _group_codes(df, by, res)
    ng = len(groups)
    how = aoristic_counts(df, tz, "hour_of_week", groups=codes, unknown_time=unknown_time)
    hour = how.reshape(ng, 7, 24).sum(axis=1)
    dow = aoristic_counts(df, tz, "dow", groups=codes, unknown_time="spread")
    local = pd.DatetimeIndex(pd.to_datetime(df["occurred_from"], utc=True)).tz_convert(tz).tz_localize(None)
    mstart = local.to_period("M")
    months = pd.period_range(mstart.min(), mstart.max(), freq="M")
    mi = ((local.year.to_numpy(np.int64) - months[0].year) * 12
          + local.month.to_numpy(np.int64) - months[0].month)
    month = np.bincount(codes * len(months) + mi, minlength=ng * len(months)).reshape(ng, len(months))
    season = np.zeros((ng, 4))
    np.add.at(season, (codes, _SEASON_OF_MONTH[local.month.to_numpy() - 1]), 1.0)
    known = df["time_known"].to_numpy(dtype=bool, na_value=True) if "time_known" in df.columns else np.ones(len(df), bool)
    trend = _trend(month.astype(np.float64), groups)
    mk_idx = months.to_timestamp()
    return TemporalSignature(
        by=by, tz=tz,
        hour=pd.DataFrame(hour, index=groups, columns=pd.RangeIndex(24, name="hour")),
        dow=pd.DataFrame(dow, index=groups, columns=pd.RangeIndex(7, name="dow")),
        hour_of_week=pd.DataFrame(how, index=groups, columns=pd.RangeIndex(168, name="hour_of_week")),
        month=pd.DataFrame(month, index=groups, columns=pd.DatetimeIndex(mk_idx, name="month")),
        season=pd.DataFrame(season, index=groups, columns=pd.Index(list(SEASONS), name="season")),
        trend=trend,
        n_incidents=int(len(df)),
        n_time_unknown=int((~known).sum()) if unknown_time == "exclude" else 0,
    )


def _trend(month: np.ndarray, groups: pd.Index) -> pd.DataFrame:
    cols = ["mk_z", "mk_p", "mk_tau", "sen_slope", "direction"]
    if month.shape[1] < 3:
        return pd.DataFrame(np.nan, index=groups, columns=cols)
    mk = mann_kendall(month)
    return pd.DataFrame({
        "mk_z": mk.z, "mk_p": mk.p, "mk_tau": mk.tau,
        "sen_slope": sen_slope(month), "direction": mk.trend(0.05),
    }, index=groups)


_COLUMNS = ["occurred_from", "occurred_to", "time_known", "category", "district"]


def signature_from_store(
    store: Store,
    q: Query = Query(),
    by: str | None = None,
    res: int | None = None,
    tz: str | None = None,
    unknown_time: str = "exclude",
) -> TemporalSignature:
    """:func:`temporal_signature` of the incidents ``q`` selects from ``store``.

    The store keeps time-unknown rows for day-level figures; the hour filter
    of ``q`` is not applied here (hour-level figures are the output).
    """
    tz = tz or source_tz(store, q.source)
    cols = list(_COLUMNS)
    if by == "cell":
        from ..schema import h3_column

        if res is None:
            raise ValueError("by='cell' needs res (the H3 resolution)")
        cols.append(h3_column(min(max(res, 7), 10)))
    geo = True if by == "cell" else q.geolocated  # a cell signature needs a cell
    df = store.incidents(q.with_(include_unknown_time=True, geolocated=geo), columns=cols)
    return temporal_signature(df, tz, by=by, res=res, unknown_time=unknown_time)


def source_tz(store: Store, source: str | None) -> str:
    """The IANA zone of ``source`` (or of the store's only zone)."""
    srcs = store.sources()
    if source is not None:
        if source not in srcs:
            raise LookupError(f"source {source!r} is not in the store (have {sorted(srcs)}); ingest it first")
        return srcs[source]
    zones = set(srcs.values())
    if len(zones) != 1:
        raise ValueError(f"the store holds sources in {len(zones)} time zones {sorted(zones)}; "
                         "pick one with --source / Query(source=...)")
    return zones.pop()
