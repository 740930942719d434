"""Space-time cube: H3 cells × regular time steps (day, week or month) of counts.

A cube is the dense ``(n_cells, n_steps)`` matrix of incident counts, zero
where a cell had no incident in a step (the zeros are data: a quiet bin is
evidence of a cold spot). It is built from the store's own aggregation,

    ``store.counts(res, ("cell", step), q)``

so the local-time step boundaries (local Monday for weeks, local first of the
month, local midnight for days, all DST-correct) are the store's, and the
same cube comes out of PostGIS and the embedded store. A cube is persisted
with ``store.put_table`` as a long table ``(cell, t, step_start, n)`` of its
non-zero bins plus a per-cell header table (:func:`save_cube`), so it lives
in either engine.

Which cells? By default those with at least one incident in the whole cube
period ("locations with data", as ArcGIS's *Create Space Time Cube By
Aggregating Points* does). Pass ``cells=grid.cover(boundary, res)`` to
analyse the whole study area, zero cells included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..store.base import Query, Store, check_table_name

STEPS: tuple[str, ...] = ("day", "week", "month")
_FREQ = {"day": "D", "week": "W-MON", "month": "MS"}


@dataclass
class SpaceTimeCube:
    """Counts per (cell, time step).

    Attributes
    ----------
    cells : int64 array (n_cells,)      sorted H3 ids
    steps : DatetimeIndex (n_steps,)    local step starts (naive), regular
    values : float64 array (n_cells, n_steps)
    res : int                           H3 resolution
    step : str                          "day" | "week" | "month"
    """

    cells: np.ndarray
    steps: pd.DatetimeIndex
    values: np.ndarray
    res: int
    step: str
    #: How the asked window was snapped to whole steps (see :func:`snap_window`), or None.
    window: dict | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    def to_long(self, nonzero: bool = True) -> pd.DataFrame:
        """Long form ``(cell, step_start, n)``; only non-zero bins by default."""
        ci, ti = np.nonzero(self.values) if nonzero else np.indices(self.values.shape).reshape(2, -1)
        return pd.DataFrame(
            {
                "cell": self.cells[ci].astype(np.int64),
                "step_start": self.steps[ti].values,
                "n": self.values[ci, ti].astype(np.float64),
            }
        )


def step_index(start, end, step: str) -> pd.DatetimeIndex:
    """Regular local step starts covering ``[start, end)``: ``start`` is floored
    to its step (Monday / first of month / midnight)."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; use one of {STEPS}")
    s = pd.Timestamp(start).tz_localize(None) if pd.Timestamp(start).tzinfo else pd.Timestamp(start)
    e = pd.Timestamp(end).tz_localize(None) if pd.Timestamp(end).tzinfo else pd.Timestamp(end)
    s = _floor(s, step)
    idx = pd.date_range(s, e, freq=_FREQ[step] if step != "week" else "7D", inclusive="left")
    return pd.DatetimeIndex(idx)


def snap_window(start, end, step: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None, dict]:
    """``[start, end)`` shrunk to whole steps: a partial first or last week (month,
    day) would be a step with fewer days, which reads as a drop or a rise in every
    cell (emerging hot spots: Vancouver's persistent hot spots went 9 -> 20).
    Returns ``(start, end, info)``; ``info["snapped"]`` says whether it changed."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; use one of {STEPS}")
    s0 = (
        None
        if start is None
        else pd.Timestamp(start).tz_localize(None)
        if pd.Timestamp(start).tzinfo
        else pd.Timestamp(start)
    )
    e0 = None if end is None else pd.Timestamp(end).tz_localize(None) if pd.Timestamp(end).tzinfo else pd.Timestamp(end)
    s, e = s0, e0
    if s is not None and _floor(s, step) != s:
        s = _next(_floor(s, step), step)
    if e is not None and _floor(e, step) != e:
        e = _floor(e, step)
    info = {
        "asked_from": None if s0 is None else str(s0),
        "asked_to": None if e0 is None else str(e0),
        "from": None if s is None else str(s),
        "to": None if e is None else str(e),
        "snapped": (s != s0) or (e != e0),
        "step": step,
    }
    if s is not None and e is not None and s >= e:
        raise ValueError(f"the window {s0} .. {e0} holds no whole {step}: widen it")
    return s, e, info


def _next(t: pd.Timestamp, step: str) -> pd.Timestamp:
    if step == "week":
        return t + pd.Timedelta(days=7)
    if step == "month":
        return t + pd.DateOffset(months=1)
    return t + pd.Timedelta(days=1)


def _floor(t: pd.Timestamp, step: str) -> pd.Timestamp:
    t = t.normalize()
    if step == "week":
        return t - pd.Timedelta(days=t.day_of_week)
    if step == "month":
        return t.replace(day=1)
    return t


def from_counts(
    counts: pd.DataFrame,
    res: int,
    step: str,
    steps: pd.DatetimeIndex | None = None,
    cells: np.ndarray | None = None,
) -> SpaceTimeCube:
    """Densify a ``(cell, <step>, n)`` count table into a cube.

    ``steps`` defaults to the regular range from the first to the last step
    present; ``cells`` to the cells present. Counts outside ``cells`` /
    ``steps`` are dropped (a study-area mask).
    """
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; use one of {STEPS}")
    if not {"cell", step, "n"}.issubset(counts.columns):
        raise ValueError(f"counts need columns cell, {step}, n; got {list(counts.columns)}")
    t = pd.to_datetime(counts[step]).values
    if steps is None:
        if len(counts) == 0:
            raise ValueError("no incidents match the query, so there is no cube to build; widen the dates or filters")
        steps = step_index(pd.Timestamp(t.min()), pd.Timestamp(t.max()) + pd.Timedelta(days=1), step)
    steps = pd.DatetimeIndex(steps)
    c = counts["cell"].to_numpy(np.int64)
    cells = np.unique(c) if cells is None else np.unique(np.asarray(cells, dtype=np.int64))
    ci = np.searchsorted(cells, c)
    ci_ok = (ci < len(cells)) & (cells[np.minimum(ci, len(cells) - 1)] == c)
    ti = steps.get_indexer(pd.DatetimeIndex(t))
    ok = ci_ok & (ti >= 0)
    values = np.zeros((len(cells), len(steps)), dtype=np.float64)
    np.add.at(values, (ci[ok], ti[ok]), counts["n"].to_numpy(np.float64)[ok])
    return SpaceTimeCube(cells=cells, steps=steps, values=values, res=int(res), step=step)


def build_cube(
    store,
    res: int = 9,
    step: str = "week",
    q: Query = Query(),
    cells: np.ndarray | None = None,
    study_area: str = "boundary",
    snap: bool = True,
) -> SpaceTimeCube:
    """Cube of ``q``'s incidents at H3 ``res`` by ``step`` from ``store.counts``.

    With ``q.start``/``q.end`` given, the steps cover exactly ``[start, end)``
    (floored to the step), so leading/trailing empty steps are kept. The cells
    are ``cells`` when given, else the study area: ``"boundary"`` (default:
    every cell of the agency boundary plus any with incidents, see
    :func:`rtcc_geo.hotspots.api.study_cells`; zero cells matter to Gi*) or
    ``"data"`` (only cells with incidents). ``store`` may be a
    :class:`~rtcc_geo.scope.Scope`: its query and study cells are used. With no
    stored agency the ``"boundary"`` study area is an error (no silent fallback).
    ``snap`` (default) shrinks ``[start, end)`` to whole steps (:func:`snap_window`);
    ``snap=False`` keeps partial edge steps and flags them in ``cube.window``.
    """
    from ..scope import Scope, resolve_scope

    if study_area not in ("boundary", "data"):
        raise ValueError("study_area is 'boundary' (agency boundary + incident cells) or 'data'")
    if not isinstance(store, Scope) and cells is None and study_area == "boundary":
        store = resolve_scope(store, q)
    if isinstance(store, Scope):
        scope, store, q = store, store.store, store.query
        if cells is None and study_area == "boundary":
            cells = scope.study_cells(res)
    window = None
    if q.start is not None or q.end is not None:
        s, e, window = snap_window(q.start, q.end, step)
        if snap:
            q = q.with_(start=s, end=e)
        else:
            window = {
                **window,
                "snapped": False,
                "partial_steps": window["snapped"],
                "from": window["asked_from"],
                "to": window["asked_to"],
            }
    counts = store.counts(res, ("cell", step), q)
    steps = None
    if q.start is not None and q.end is not None:
        steps = step_index(q.start, q.end, step)
    cube = from_counts(counts, res, step, steps=steps, cells=cells)
    cube.window = window
    return cube


def from_incidents(
    df: pd.DataFrame,
    tz: str,
    res: int,
    step: str = "week",
    steps: pd.DatetimeIndex | None = None,
    cells: np.ndarray | None = None,
) -> SpaceTimeCube:
    """Cube straight from a canonical incident frame (no store), for notebooks
    and tests. Local step starts as in :data:`rtcc_geo.store.base.COUNT_KEYS`."""
    from ..grid import parent

    col = _finest_cell_column(df, res)
    df = df[df[col].to_numpy(np.int64) != 0]  # not geolocated (schema.NO_CELL): no cell
    cell = parent(df[col].to_numpy(np.int64), res)
    local = pd.DatetimeIndex(df["occurred_from"]).tz_convert(tz).tz_localize(None)
    start = _floor_index(local, step)
    counts = pd.DataFrame({"cell": cell, step: start}).groupby(["cell", step]).size().rename("n").reset_index()
    return from_counts(counts, res, step, steps=steps, cells=cells)


def _floor_index(local: pd.DatetimeIndex, step: str) -> pd.DatetimeIndex:
    d = local.normalize()
    if step == "week":
        return d - pd.to_timedelta(d.day_of_week, unit="D")
    if step == "month":
        return d.to_period("M").to_timestamp()
    return d


def _finest_cell_column(df: pd.DataFrame, res: int) -> str:
    from ..schema import h3_column

    have = sorted(int(c[4:]) for c in df.columns if c.startswith("h3_r"))
    fine = [r for r in have if r >= res]
    if not fine:
        raise ValueError(f"incidents have no H3 column at res >= {res} (have {have})")
    return h3_column(fine[0])


# --- persistence ------------------------------------------------------------
# Stored with plain int64 / float64 / text columns only (step starts as ISO
# dates, ``'2024-01-01'``, castable with ``::date`` in SQL), so a cube round-trips
# identically through every engine's put_table.


def save_cube(store: Store, name: str, cube: SpaceTimeCube) -> None:
    """Persist ``cube`` as tables ``<name>`` (non-zero bins: ``cell``, ``t`` = step
    number, ``step_start`` = local ISO date, ``n``) and ``<name>_meta`` (one row per
    cell: ``cell``, ``res``, ``step``, ``first_step``, ``n_steps``)."""
    check_table_name(name)
    check_table_name(name + "_meta")
    ci, ti = np.nonzero(cube.values)
    iso = np.asarray(cube.steps.strftime("%Y-%m-%d"), dtype=object)
    store.put_table(
        name,
        pd.DataFrame(
            {
                "cell": cube.cells[ci].astype(np.int64),
                "t": ti.astype(np.int64),
                "step_start": pd.Series(iso[ti], dtype="string"),
                "n": cube.values[ci, ti].astype(np.float64),
            }
        ),
    )
    m = len(cube.cells)
    store.put_table(
        name + "_meta",
        pd.DataFrame(
            {
                "cell": cube.cells.astype(np.int64),
                "res": np.full(m, cube.res, dtype=np.int64),
                "step": pd.Series([cube.step] * m, dtype="string"),
                "first_step": pd.Series([iso[0]] * m, dtype="string"),
                "n_steps": np.full(m, len(cube.steps), dtype=np.int64),
            }
        ),
    )


def load_cube(store: Store, name: str) -> SpaceTimeCube:
    """Load a cube saved by :func:`save_cube`."""
    meta = store.get_table(name + "_meta")
    long = store.get_table(name)
    if meta is None or long is None or len(meta) == 0:
        raise LookupError(
            f"no space-time cube {name!r} in {store!r}; build one with "
            "'rtcc-geo emerging --save-cube NAME' or temporal.cube.save_cube"
        )
    need_long, need_meta = {"cell", "t", "n"}, {"cell", "res", "step", "first_step", "n_steps"}
    if not need_long.issubset(long.columns) or not need_meta.issubset(meta.columns):
        raise LookupError(
            f"table {name!r} is not a space-time cube in the current format "
            f"(columns {list(long.columns)}); rebuild it with 'rtcc-geo emerging --save-cube {name}'"
        )
    step = str(meta["step"].iloc[0])
    first = pd.Timestamp(str(meta["first_step"].iloc[0]))
    n_steps = int(meta["n_steps"].iloc[0])
    freq = {"month": "MS", "week": "7D", "day": "D"}[step]
    steps = pd.DatetimeIndex(pd.date_range(first, periods=n_steps, freq=freq))
    cells = np.sort(meta["cell"].to_numpy(np.int64))
    values = np.zeros((len(cells), n_steps), dtype=np.float64)
    ci = np.searchsorted(cells, long["cell"].to_numpy(np.int64))
    values[ci, long["t"].to_numpy(np.int64)] = long["n"].to_numpy(np.float64)
    return SpaceTimeCube(cells=cells, steps=steps, values=values, res=int(meta["res"].iloc[0]), step=step)
