"""Getting a forecast's inputs: incidents of a target from a store, the study cells.

The study area is every H3 cell whose centre lies inside the agency boundary
(:func:`rtcc_geo.grid.cover`), plus any cell that has an incident (block
geocodes on the city line), so a map's "1 % of the area" is 1 % of the city,
not 1 % of the cells that happen to have crime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import Agency, load_agency
from ..grid import cover
from ..schema import CATEGORIES, h3_column
from ..store.base import Query, Store
from ..store.base import naive_local
from .data import Counts, LazyCounts, daily_from_counts, select_target

FORECAST_COLUMNS = ("id", "occurred_from", "time_known", "offense_raw", "offense_code", "category", "district", "block")


def boundary_cells(agency: Agency | str, res: int, store: Store | None = None) -> np.ndarray | None:
    """Cells covering the agency boundary (the agency stored in ``store`` first),
    or None when it has no boundary."""
    a = load_agency(agency, store=store) if isinstance(agency, str) else agency
    b = a.boundary()
    return None if b is None else cover(b, res)


def check_span(times: pd.Series, start=None) -> None:
    """Refuse to build day arrays from a few stray dates decades before the bulk
    (an export with some 1966 dates made a backtest allocate 13 GB): with no
    ``start`` given, incidents far from the bulk are an error naming ``--train-from``."""
    if start is not None or len(times) == 0:
        return
    from ..scope import far_dates

    far = far_dates(times)
    if far["before"]:
        raise ValueError(
            f"{far['before']:,} incidents are dated long before the bulk of the data (earliest "
            f"{far['earliest']}, bulk from {far['bulk_from']}): pass --train-from DATE "
            "(start=... in the API) so the model does not span empty years"
        )


def load_target(store: Store, source: str, target: str, start=None, end=None, res: int = 10) -> pd.DataFrame:
    """Incidents of ``source`` in ``[start, end)`` that belong to forecast ``target``."""
    cols = list(FORECAST_COLUMNS) + [h3_column(res), "lon", "lat"]
    # Forecasts are per cell: incidents that are not geolocated cannot take part.
    df = store.incidents(Query(source=source, start=start, end=end, geolocated=True), columns=cols)
    return select_target(df, target)


def counts_from_store(
    store, source: str | None, target: str, start=None, end=None, res: int = 10, agency: Agency | str | None = None
) -> Counts:
    """A :class:`Counts` for ``target`` on the agency's study cells, local days in its time zone.

    ``store`` may be a :class:`~rtcc_geo.scope.Scope` (its source, agency and study
    cells; ``source`` may then be None). ``start`` is the first day trained on
    (``--train-from``): counts start there, never at a stray decades-old date. With
    no agency stored for ``source`` this is an error, not a silent incident-cell area.
    """
    from ..scope import Scope, ScopeError, agency_of, missing_agency_message

    scope = store if isinstance(store, Scope) else None
    if scope is not None:
        store, source, agency = scope.store, source or scope.source, agency or scope.agency
    if agency is None and source is not None:
        agency = agency_of(store, source)
        if agency is None:
            raise ScopeError(missing_agency_message(source))
    tz = store.sources().get(source)
    if tz is None or source is None:
        raise ValueError(f"source {source!r} is not in the store; known: {sorted(store.sources())}. Ingest it first.")
    if start is not None and (target == "all" or target in CATEGORIES):
        c: Counts = _lazy_counts(
            store,
            source,
            target,
            start,
            end,
            res,
            tz,
            None if scope is not None and scope.study_area == "incidents" else agency,
        )
    else:
        far: list[np.ndarray] | None = [] if start is None else None  # check_span needs every time, only then
        batches = _target_batches(store, source, target, start, end, res, far)
        if scope is not None and scope.study_area == "incidents":
            c = Counts.from_batches(batches, cells=None, res=res, tz=tz, origin=start, end=end)
        else:
            assert agency is not None  # looked up above (a missing agency is a ScopeError)
            cells = boundary_cells(agency, res, store)
            c = Counts.from_batches(batches, cells=cells, res=res, tz=tz, origin=start, end=end, add_event_cells=True)
        if target == "all" or target in CATEGORIES:
            # The target is a query: the cells x days matrix comes from the store's counts
            # (size: non-zero cell-days), not from an events-long COO build.
            c.use_daily(
                daily_from_counts(
                    store.counts(res, ("cell", "day"), _target_query(source, target, start, end)),
                    c.cells,
                    c.origin,
                    c.n_days,
                )
            )
        if far is not None:
            check_span(pd.Series(np.concatenate(far) if far else np.zeros(0, np.int64), dtype="datetime64[ns]"), start)
    c._cache["agency"] = agency if isinstance(agency, str) else getattr(agency, "name", None) or source
    return c


def _target_query(source: str, target: str, start, end) -> Query:
    """The store query of a target that is a query (``all`` or a category): geolocated rows only."""
    return Query(
        source=source, start=start, end=end, geolocated=True, categories=None if target == "all" else (target,)
    )


def _lazy_counts(
    store: Store, source: str, target: str, start, end, res: int, tz: str, agency: Agency | str | None
) -> LazyCounts:
    """A :class:`LazyCounts` of a query target from ``start`` (given: no stray-date check
    needs every time): from one ``store.counts`` by cell and day, the event cells, the days
    from ``start`` to ``end`` (or the last day with data) and the ``cells x days`` matrix;
    the per-event arrays are read by :func:`_target_batches` only if asked for.
    The same cells, days and counts as :meth:`Counts.from_batches` of those rows."""
    q = _target_query(source, target, start, end)
    origin = naive_local(start, tz).normalize()
    if end is None:
        by_day = store.counts(res, ("cell", "day"), q)  # one scan: the last day is not known before it
        cells = np.unique(by_day["cell"].to_numpy(np.int64))
        last = pd.Timestamp(by_day["day"].max()) if len(by_day) else None
        end_l = last + pd.Timedelta(days=1) if last is not None else origin + pd.Timedelta(days=1)
    else:
        cells = store.counts(res, ("cell",), q)["cell"].to_numpy(np.int64)
        end_l = naive_local(end, tz)
    if agency is not None:
        cells = np.union1d(np.asarray(boundary_cells(agency, res, store), np.int64), cells)
    n_days = int(np.ceil((end_l - origin) / pd.Timedelta(days=1)))
    if end is None:
        daily = daily_from_counts(by_day, cells, origin, n_days)
        del by_day
    else:
        daily = _daily_in_spans(store, res, q, cells, origin, n_days)

    def loader() -> Counts:
        return Counts.from_batches(
            _target_batches(store, source, target, start, end, res, None),
            cells=cells,
            res=res,
            tz=tz,
            origin=origin,
            end=origin + pd.Timedelta(days=n_days),
            add_event_cells=True,
        )

    return LazyCounts.lazy(cells, origin, tz, n_days, res, daily, loader)


#: Days of counts by cell and day asked of the store at once (:func:`_daily_in_spans`).
SPAN_DAYS = 365


def _daily_in_spans(store: Store, res: int, q: Query, cells: np.ndarray, origin: pd.Timestamp, n_days: int):
    """``cells x n_days`` CSC counts of ``q`` from ``origin`` (local days), from one
    ``store.counts`` by cell and day per :data:`SPAN_DAYS` days: each span's columns are
    its own (a cell-day lies in one span), so the matrix is the spans' blocks side by side,
    the same counts as one scan, while the store's aggregation holds one span's groups, not
    every non-empty cell-day of the years (one scan of 10 M incidents over 10 years peaked
    at 1.5 GB for its 7.7 M groups; by years 0.44 GB, and faster)."""
    blocks = []
    for d0 in range(0, n_days, SPAN_DAYS):
        d1 = min(d0 + SPAN_DAYS, n_days)
        a, b = origin + pd.Timedelta(days=d0), origin + pd.Timedelta(days=d1)
        # inner bounds are local midnights (naive: the source's time zone); the outer ones the query's
        span = q.with_(start=q.start if d0 == 0 else a, end=q.end if d1 == n_days else b)
        blocks.append(daily_from_counts(store.counts(res, ("cell", "day"), span), cells, a, d1 - d0).tocsc())
    if not blocks:
        return sp.csc_matrix((len(cells), n_days))
    return sp.hstack(blocks, format="csc")


def target_columns(target: str, res: int) -> list[str]:
    """The columns a :class:`Counts` of ``target`` needs: time, cell, the labels
    explanations use, and the text :func:`select_target` filters on."""
    cols = ["occurred_from", "time_known", "category", "block", h3_column(res)]
    if target == "violent_ucr":
        cols.append("offense_code")
    if target in ("theft_from_vehicle", "all_but_enforcement"):
        cols.append("offense_raw")
    return cols


def _target_batches(store: Store, source: str, target: str, start, end, res: int, far: list | None):
    """The rows of ``target`` in time batches (:func:`~rtcc_geo.temporal.stream.iter_incidents`):
    forecasts need per-event times, so rows, but only :func:`target_columns` and one
    batch at a time. A category target is pushed into the query."""
    from ..schema import empty_incidents
    from ..temporal.stream import iter_incidents

    cols = target_columns(target, res)
    # Forecasts are per cell: incidents that are not geolocated cannot take part.
    q = Query(source=source, start=start, end=end, geolocated=True)
    if target in CATEGORIES:
        q = q.with_(categories=(target,))
    n = 0
    for df in iter_incidents(store, q, cols):
        df = select_target(df, target)
        if far is not None:
            far.append(
                df["occurred_from"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view(np.int64)
            )
        n += len(df)
        yield df
    if n == 0:
        yield empty_incidents().loc[:, cols]
