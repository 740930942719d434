"""Reading incident rows in bounded batches, for the few statistics that need rows.

Most analyses run on :meth:`Store.counts` (a grid-sized table, whatever the
number of incidents). A few genuinely need rows: aoristic spreading of
``[occurred_from, occurred_to)`` windows over hours (the window is not a count
key), per-event forecast arrays, address concentration. Those read the store
through :func:`iter_incidents`: the query's time span is cut at local
midnights into windows holding at most ``max_rows`` incidents each (planned
from ``store.counts(.., ("day",), q)``, itself a count), and each window is read
with only the columns asked for. Peak memory is one batch, not the store.

The windows tile ``[q.start, q.end)`` exactly (the first starts at
``q.start``, the last ends at ``q.end``, open when those are None, every cut
is shared by two neighbours), so every row is read exactly once, in the
store's order (``occurred_from`` within a source).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from ..store.base import Query, Store

#: Rows per batch: a few hundred MB at most for the columns any reader asks for.
#: ``RTCC_BATCH_ROWS`` in the environment overrides it (smaller on a small machine).
BATCH_ROWS = 1_000_000
#: Rows per batch of a CSV being ingested: a batch being validated and written costs about
#: 1.2 kB a row and two are in flight (measured on a 5 M-row file: peak RSS 2.9 GB in
#: batches of 1 M, 1.45 GB in batches of 250,000, at the same speed within noise).
INGEST_BATCH_ROWS = 250_000


def batch_rows(default: int = BATCH_ROWS) -> int:
    """The batch size in rows: ``RTCC_BATCH_ROWS`` if set, else ``default``
    (:data:`BATCH_ROWS`; ingest passes :data:`INGEST_BATCH_ROWS`)."""
    v = os.environ.get("RTCC_BATCH_ROWS")
    if v is None:
        return default
    if not v.strip().isdigit() or int(v) < 1:
        raise ValueError(f"RTCC_BATCH_ROWS={v!r}: give a positive number of rows")
    return int(v)


def batch_windows(store: Store, q: Query = Query(), max_rows: int | None = None) -> list[Query]:
    """``q`` cut into consecutive time windows of at most ``max_rows`` incidents
    (a single day holding more is one window on its own); [] when nothing matches.

    Cuts fall at local midnights (naive bounds, read in each source's zone), the
    same days as the ``day`` count key the plan comes from.
    """
    max_rows = batch_rows() if max_rows is None else max_rows
    if max_rows < 1:
        raise ValueError("max_rows must be 1 or more")
    days = store.counts(7, ("day",), q)
    if not len(days):
        return []
    n = days["n"].to_numpy(np.int64)
    starts, acc = [0], 0
    for i, k in enumerate(n):  # one entry per day with data: grid-sized, not row-sized
        if acc and acc + k > max_rows:
            starts.append(i)
            acc = 0
        acc += int(k)
    cuts = [pd.Timestamp(days["day"].iloc[i]) for i in starts[1:]]
    bounds = [q.start, *cuts, q.end]
    return [q.with_(start=a, end=b) for a, b in zip(bounds[:-1], bounds[1:])]


def iter_incidents(
    store: Store, q: Query, columns: Sequence[str], max_rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """``store.incidents(q, columns)`` as consecutive batches of at most about
    ``max_rows`` rows (default :func:`batch_rows`; see :func:`batch_windows`);
    empty batches are skipped."""
    for w in batch_windows(store, q, max_rows):
        df = store.incidents(w, columns=list(columns))
        if len(df):
            yield df
