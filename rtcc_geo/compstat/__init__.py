"""CompStat: week / 28-day / year-to-date counts per category x district, against
a year earlier and the period before, with an exact test of each change
(:mod:`.periods` defines the spans, :mod:`.stats` the test, :mod:`.api` the table;
:mod:`.changes` ranks what rose beyond chance)."""

from .api import ALL, ROW_FIELDS, CompStat, compstat
from .periods import PERIODS, Span, local_bounds, parse_end, periods
from .stats import ALPHA, TEST_NAME, poisson_change_p

__all__ = [
    "ALL",
    "ALPHA",
    "PERIODS",
    "ROW_FIELDS",
    "TEST_NAME",
    "CompStat",
    "Span",
    "compstat",
    "local_bounds",
    "parse_end",
    "periods",
    "poisson_change_p",
]
