"""CompStat tables from a store: counts per category x district for the week,
the last 28 days and year to date, against a year earlier and the period before.

>>> from rtcc_geo.store import open_store
>>> from rtcc_geo.compstat import compstat
>>> cs = compstat(open_store(), Query(source="philadelphia"), end="2024-12-31")
>>> cs.rows.query("district == 'all' and category == 'all'")

One :meth:`Store.counts` call by local day x category x district covers every
span (from 1 January three years before the end date's year); the spans are
then sums over days (cumulative sums), so both stores give the same table and
incidents that are not geolocated count (CompStat counts crimes, not points).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..schema import CATEGORIES
from ..store.base import Query, Store
from .periods import PERIODS, Period, Span, describe, parse_end, periods
from .stats import ALPHA, TEST_NAME, poisson_change_p_many

ALL = "all"
#: District label of incidents published without one.
NO_DISTRICT = "(none)"


@dataclasses.dataclass
class CompStat:
    """A CompStat table: one row per district x category x period (see :data:`ROW_FIELDS`)."""

    end: dt.date
    source: str
    timezone: str
    alpha: float
    periods: dict[str, Period]
    rows: pd.DataFrame

    def spans(self) -> dict:
        """Every span's dates and exact local boundaries, per period."""
        return {
            name: {
                "current": describe(p.current, self.timezone),
                "prior_year": describe(p.prior_year, self.timezone),
                "previous_period": describe(p.previous, self.timezone),
                "three_years": [describe(s, self.timezone) for s in p.years_back],
            }
            for name, p in self.periods.items()
        }

    def to_json(self) -> dict:
        rows = self.rows.astype(object).where(self.rows.notna(), None).to_dict(orient="records")
        return {
            "end": self.end.isoformat(),
            "rows": rows,
            "source": self.source,
            "timezone": self.timezone,
            "alpha": self.alpha,
            "test": TEST_NAME,
            "periods": self.spans(),
            "definitions": PERIOD_DEFINITIONS,
        }

    def export(self, path: str | Path) -> Path:
        """Write ``.csv``, ``.json`` or ``.html`` (by the suffix)."""
        p = Path(path)
        suf = p.suffix.lower()
        if suf == ".csv":
            self.rows.to_csv(p, index=False)
        elif suf == ".json":
            p.write_text(json.dumps(self.to_json(), indent=1, default=str))
        elif suf in (".html", ".htm"):
            p.write_text(self.to_html())
        else:
            raise ValueError(f"{path}: use a .csv, .json or .html file name")
        return p

    def to_html(self, district: str = ALL) -> str:
        """A standalone HTML page: one table per period for ``district``."""
        style = (
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ccc}"
            "td.n{text-align:right}</style>"
        )
        parts = [
            f"<!doctype html><meta charset='utf-8'><title>CompStat {self.source} {self.end}</title>",
            style,
            (
                f"<h1>CompStat: {html.escape(self.source)}, district {html.escape(district)}, "
                f"through {self.end.isoformat()}</h1>"
            ),
            (
                f"<p>Local days in {html.escape(self.timezone)}. Flag: {html.escape(TEST_NAME)}, "
                f"alpha {self.alpha:g}.</p>"
            ),
        ]
        for name in PERIODS:
            d = self.spans()[name]["current"]
            parts.append(
                f"<h2>{PERIOD_LABELS[name]}: {d['start']} to {d['end']} "
                f"({d['from_local']} until {d['until_local']})</h2>"
            )
            parts.append(table_html(self.rows, district, name))
        return "\n".join(parts)


#: Plain-words period names.
PERIOD_LABELS = {"week": "Week", "28d": "Last 28 days", "ytd": "Year to date"}
PERIOD_DEFINITIONS = {
    "week": "the 7 local days ending on the end date",
    "28d": "the 28 local days ending on the end date",
    "ytd": "1 January of the end date's year through the end date",
    "prior_year": "the same dates one year earlier (29 February -> 28 February)",
    "previous_period": "the same number of days immediately before the period",
    "avg_3y": (
        "mean count over the same dates 1, 2 and 3 years earlier, over the years the data covers "
        "(avg_3y_years of them; null when none)"
    ),
    "change_pct": "100 x (count - prior_year) / prior_year; null when prior_year is 0",
    "significant": "the change against the prior year is beyond chance at alpha (exact test)",
}

#: Columns of :attr:`CompStat.rows`; the first ten are the ``--json`` contract.
ROW_FIELDS: tuple[str, ...] = (
    "district",
    "category",
    "period",
    "start",
    "end",
    "count",
    "prior_year",
    "previous_period",
    "change_pct",
    "significant",
    "change",
    "p_value",
    "change_previous",
    "change_pct_previous",
    "p_value_previous",
    "significant_previous",
    "avg_3y",
    "avg_3y_years",
    "prior_year_start",
    "prior_year_end",
    "previous_start",
    "previous_end",
    "days",
)


def compstat(
    store: Store,
    query: Query | None = None,
    end: str | dt.date | None = None,
    alpha: float = ALPHA,
    daily: pd.DataFrame | None = None,
) -> CompStat:
    """CompStat for one agency through local day ``end`` (default: yesterday there).

    ``query`` may restrict categories and districts (its own start/end are
    ignored: the periods set them). ``daily``: the source's
    ``store.counts(res, ("day", "category", "district"), Query(source=...))``
    computed once before (the app keeps it, so changing the end date costs no
    store read); by default the counts are read for the spans needed. Raises
    ``ValueError`` when no incident of the source falls in any of the spans (an
    empty table is an error).
    """
    query, source, tz, end_d = resolve(store, query, end, alpha)
    per = periods(end_d)
    first = min(s.start for p in per.values() for s in (p.current, p.prior_year, p.previous, *p.years_back))
    q = query.with_(
        source=source, start=pd.Timestamp(first), end=pd.Timestamp(end_d + dt.timedelta(days=1)), geolocated=None
    )
    if daily is None:
        c = store.counts(7, ("day", "category", "district"), q)
    else:
        c = daily_slice(daily, q, first, end_d)
    if not len(c):
        raise ValueError(f"no {source} incidents between {first} and {end_d}: nothing to compare")
    rows = _table(c, per, first, end_d, alpha, query)
    return CompStat(end_d, source, tz, alpha, per, rows)


def daily_counts(store: Store, source: str) -> pd.DataFrame:
    """Every day's counts by category and district of ``source`` (for ``compstat(daily=...)``)."""
    return store.counts(7, ("day", "category", "district"), Query(source=source))


def daily_slice(daily: pd.DataFrame, q: Query, first: dt.date, last: dt.date) -> pd.DataFrame:
    """The rows of a :func:`daily_counts` frame that ``q`` (categories, districts) and the days keep."""
    days = daily["day"]
    keep = ((days >= pd.Timestamp(first)) & (days <= pd.Timestamp(last))).to_numpy(dtype=bool, copy=True)
    if q.categories is not None:
        keep &= daily["category"].isin(list(q.categories)).fillna(False).to_numpy(dtype=bool)
    if q.districts is not None:
        keep &= daily["district"].isin([str(d) for d in q.districts]).fillna(False).to_numpy(dtype=bool)
    return daily.loc[keep]


def resolve(store: Store, query: Query | None, end, alpha: float) -> tuple[Query, str, str, dt.date]:
    """Checked inputs shared by the CompStat analyses: (query, source, time zone, end date)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    query = query if query is not None else Query()
    source = _source(store, query)
    tz = store.sources()[source]
    return query, source, tz, parse_end(end, tz)


def _source(store: Store, q: Query) -> str:
    srcs = store.sources()
    if q.source:
        if q.source not in srcs:
            raise ValueError(f"unknown source {q.source!r}; the store holds {sorted(srcs)}")
        return q.source
    if len(srcs) != 1:
        raise ValueError(f"the store holds {len(srcs)} sources {sorted(srcs)}: choose one (--source)")
    return next(iter(srcs))


def _table(
    c: pd.DataFrame, per: dict[str, Period], first: dt.date, end: dt.date, alpha: float, query: Query
) -> pd.DataFrame:
    c = c.copy()
    c["district"] = c["district"].fillna(NO_DISTRICT).astype(str)
    c["category"] = c["category"].fillna("other").astype(str)
    days = pd.date_range(pd.Timestamp(first), pd.Timestamp(end), freq="D")
    day_ix = pd.Index(days).get_indexer(c["day"])
    districts = (
        sorted(c["district"].unique())
        if query.districts is None
        else sorted(set(c["district"].unique()) | {str(d) for d in query.districts})
    )
    present = set(c["category"].unique())
    cats = [k for k in CATEGORIES if k in present or (query.categories is not None and k in query.categories)]
    cats += sorted(present - set(cats))
    d_keys = [ALL, *districts]
    k_keys = [ALL, *cats]
    # Daily counts cube [district, category, day] with the "all" margins, then
    # cumulative sums over days: any span's count is one subtraction.
    cube = np.zeros((len(d_keys), len(k_keys), len(days) + 1), dtype=np.int64)
    di = pd.Index(d_keys).get_indexer(c["district"])
    ki = pd.Index(k_keys).get_indexer(c["category"])
    n = c["n"].to_numpy(dtype=np.int64)
    np.add.at(cube, (di, ki, day_ix + 1), n)
    cube[0] = cube[1:].sum(axis=0)
    cube[:, 0] = cube[:, 1:].sum(axis=1)
    cum = cube.cumsum(axis=2)
    data_start = pd.Timestamp(c["day"].min())

    def span_count(s: Span) -> np.ndarray:
        lo = (pd.Timestamp(s.start) - days[0]).days
        hi = (pd.Timestamp(s.end) - days[0]).days + 1
        return cum[:, :, hi] - cum[:, :, lo]

    frames = []
    dd, kk = np.meshgrid(np.arange(len(d_keys)), np.arange(len(k_keys)), indexing="ij")
    for name in PERIODS:
        p = per[name]
        cur, py, prev = span_count(p.current), span_count(p.prior_year), span_count(p.previous)
        # Only years the data covers (a year before the first incident would read as 0).
        covered = [s for s in p.years_back if pd.Timestamp(s.start) >= data_start]
        avg3 = np.mean([span_count(s) for s in covered], axis=0) if covered else np.full(cur.shape, np.nan)
        f = pd.DataFrame(
            {
                "district": np.array(d_keys, dtype=object)[dd.ravel()],
                "category": np.array(k_keys, dtype=object)[kk.ravel()],
                "period": name,
                "start": p.current.start.isoformat(),
                "end": p.current.end.isoformat(),
                "count": cur.ravel(),
                "prior_year": py.ravel(),
                "previous_period": prev.ravel(),
            }
        )
        f["change_pct"] = _pct(f["count"], f["prior_year"])
        f["p_value"] = poisson_change_p_many(f["count"], f["prior_year"], p.current.days, p.prior_year.days)
        f["significant"] = f["p_value"] < alpha
        f["change"] = f["count"] - f["prior_year"]
        f["change_previous"] = f["count"] - f["previous_period"]
        f["change_pct_previous"] = _pct(f["count"], f["previous_period"])
        f["p_value_previous"] = poisson_change_p_many(f["count"], f["previous_period"], p.current.days, p.previous.days)
        f["significant_previous"] = f["p_value_previous"] < alpha
        # A comparison period that starts before the first incident is not "0 incidents" but no
        # data: its count, change and test are left empty (never flagged as a change).
        for col, span, keys in (
            ("prior_year", p.prior_year, ("change_pct", "p_value", "change")),
            ("previous_period", p.previous, ("change_pct_previous", "p_value_previous", "change_previous")),
        ):
            if pd.Timestamp(span.start) < data_start:
                f[col] = pd.array([pd.NA] * len(f), dtype="Int64")
                for k in keys:
                    f[k] = np.nan
        f["significant"] = f["p_value"].lt(alpha).fillna(False).astype(bool)
        f["significant_previous"] = f["p_value_previous"].lt(alpha).fillna(False).astype(bool)
        f["avg_3y"] = np.round(avg3.ravel(), 2)
        f["avg_3y_years"] = len(covered)
        f["prior_year_start"], f["prior_year_end"] = p.prior_year.start.isoformat(), p.prior_year.end.isoformat()
        f["previous_start"], f["previous_end"] = p.previous.start.isoformat(), p.previous.end.isoformat()
        f["days"] = p.current.days
        frames.append(f)
    out = pd.concat(frames, ignore_index=True).loc[:, list(ROW_FIELDS)]
    for col in ("count", "days", "avg_3y_years"):
        out[col] = out[col].astype("int64")
    for col in ("prior_year", "previous_period", "change", "change_previous"):  # empty: no data then
        out[col] = out[col].astype("Int64")
    return out


def count_text(v) -> str:
    """A count for a table: ``1,234``, or ``no data`` where the period precedes the data."""
    return "no data" if pd.isna(v) else f"{int(v):,}"


def _pct(a: pd.Series, b: pd.Series) -> pd.Series:
    b = b.astype("float64")
    return (100.0 * (a - b) / b.where(b > 0)).round(1)


def table_html(rows: pd.DataFrame, district: str, period: str) -> str:
    """One period's rows of one district as an HTML table (plain words, flags in words)."""
    sub = rows[(rows["district"] == district) & (rows["period"] == period)]
    head = (
        "<table><tr><th>Category</th><th>Count</th><th>Year before</th><th>Change</th>"
        "<th>Period before</th><th>3-year avg</th><th>Beyond chance?</th></tr>"
    )
    body = []
    for r in sub.itertuples(index=False):
        pct = "n/a" if pd.isna(r.change_pct) else f"{r.change_pct:+.1f} %"
        flag = ("yes, up" if r.change > 0 else "yes, down") if r.significant else "no"
        body.append(
            f"<tr><td>{html.escape(str(r.category))}</td><td class=n>{r.count:,}</td>"
            f"<td class=n>{count_text(r.prior_year)}</td><td class=n>"
            f"{'n/a' if pd.isna(r.change) else f'{r.change:+,}'} ({pct})</td>"
            f"<td class=n>{count_text(r.previous_period)}</td><td class=n>{r.avg_3y:,.1f}</td><td>{flag}</td></tr>"
        )
    return head + "".join(body) + "</table>"
