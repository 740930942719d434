"""CompStat periods: which local days each figure covers.

Conventions (those of NYPD-style CompStat reports; see docs/compstat.md)
------------------------------------------------------------------------
For an end date ``E`` (a local calendar day, included):

``week``  the 7 days ``E-6 .. E`` (the week *ending* on the end date);
``28d``   the 28 days ``E-27 .. E`` (a 4-week block, so every weekday counts 4 times);
``ytd``   1 January of ``E``'s year .. ``E``.

Each is compared with

* ``prior_year``: the same calendar dates one year earlier (``E`` - 1 year;
  29 February falls back to 28 February), YTD against YTD through the same date;
* ``previous_period``: the block of the same number of days just before it
  (the week before, the 28 days before; for YTD the equally long run of days
  ending on the day before 1 January, so its rate is comparable);
* ``avg_3y``: the mean of the same dates 1, 2 and 3 years earlier.

Days are local days of the agency's IANA time zone: a day runs from local
midnight to the next local midnight, so a week across a DST change is 167 or
169 hours long. :func:`local_bounds` states the exact instants.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

PERIODS: tuple[str, ...] = ("week", "28d", "ytd")


@dataclass(frozen=True)
class Span:
    """Local days ``start .. end`` (both included)."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def shift_years(self, years: int) -> Span:
        return Span(_minus_years(self.start, years), _minus_years(self.end, years))


@dataclass(frozen=True)
class Period:
    name: str
    current: Span
    prior_year: Span
    previous: Span
    #: Same dates 1, 2, 3 years earlier (the 3-year average's spans).
    years_back: tuple[Span, ...]


def _minus_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February -> 28 February
        return d.replace(year=d.year - years, day=28)


def parse_end(end: str | dt.date | None, timezone: str) -> dt.date:
    """The end date: given, or yesterday in ``timezone`` (the last complete local day)."""
    if end is None:
        return (pd.Timestamp.now(tz=timezone) - pd.Timedelta(days=1)).date()
    if isinstance(end, dt.datetime):
        return end.date()
    if isinstance(end, dt.date):
        return end
    try:
        return dt.date.fromisoformat(str(end).strip())
    except ValueError:
        raise ValueError(f"end date {end!r}: use YYYY-MM-DD") from None


def periods(end: dt.date) -> dict[str, Period]:
    """The three CompStat periods ending on ``end`` (see the module doc)."""
    out = {}
    for name in PERIODS:
        if name == "week":
            cur = Span(end - dt.timedelta(days=6), end)
        elif name == "28d":
            cur = Span(end - dt.timedelta(days=27), end)
        else:
            cur = Span(dt.date(end.year, 1, 1), end)
        prev = Span(cur.start - dt.timedelta(days=cur.days), cur.start - dt.timedelta(days=1))
        if name == "ytd":
            py = Span(dt.date(end.year - 1, 1, 1), _minus_years(end, 1))
            back = tuple(Span(dt.date(end.year - k, 1, 1), _minus_years(end, k)) for k in (1, 2, 3))
        else:
            py = cur.shift_years(1)
            back = tuple(cur.shift_years(k) for k in (1, 2, 3))
        out[name] = Period(name, cur, py, prev, back)
    return out


def local_bounds(span: Span, timezone: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``[first local midnight, local midnight after the last day)`` as tz-aware instants."""
    lo = pd.Timestamp(span.start).tz_localize(timezone, nonexistent="shift_forward", ambiguous=False)
    hi = pd.Timestamp(span.end + dt.timedelta(days=1)).tz_localize(
        timezone, nonexistent="shift_forward", ambiguous=False
    )
    return lo, hi


def describe(span: Span, timezone: str) -> dict:
    """Plain facts about a span: dates, local boundaries (with UTC offsets), hours."""
    lo, hi = local_bounds(span, timezone)
    return {
        "start": span.start.isoformat(),
        "end": span.end.isoformat(),
        "days": span.days,
        "from_local": lo.isoformat(),
        "until_local": hi.isoformat(),
        "hours": round((hi - lo) / pd.Timedelta(hours=1), 3),
    }
