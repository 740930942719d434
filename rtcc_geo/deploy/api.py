"""From a store to plans: forecast, recent counts, hot-spot status, explanations, plan(s).

>>> from rtcc_geo.deploy import plan_from_store
>>> plan = plan_from_store(store, "philadelphia", "2024-12-07 16:00", units=8)
>>> plan.cells, plan.schedule, plan.summary
>>> week = plan_week(store, "philadelphia", "2024-12-02", units=8)   # 7 evening shifts
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import defaults as D
from .areas import hotspot_bins
from .plan import Plan, plan_shift

#: The default forecast model of a plan (additive in its terms, so every reason quotes them):
#: :data:`rtcc_geo.defaults.DEPLOY_MODEL`, shared with the map.
DEFAULT_MODEL = D.DEPLOY_MODEL


def _check(category: str, units: int, shift_hours: float) -> None:
    from ..forecast.data import TARGETS

    if category not in TARGETS:
        raise ValueError(f"unknown category {category!r}; use one of {', '.join(TARGETS)}")
    if units < 1 or shift_hours <= 0:
        raise ValueError("units and shift_hours must be positive")


def _fit(store, source, category, model, res, t0, end, horizon_days, train_from=None):
    from ..forecast.backtest import default_models
    from ..forecast.io import counts_from_store

    c = counts_from_store(store, source, category, start=train_from, end=end, res=res)
    if c.n_events == 0:
        raise ValueError(f"no {category} incidents for {source} before {t0}: ingest data first")
    models = default_models(f"{horizon_days}d")
    if model not in models:
        raise ValueError(f"unknown model {model!r}; use one of {', '.join(models)}")
    return c, models[model].fit(c, until=t0)


def _plan(c, m, t0, t1, units, *, tracts=None, max_dose_multiple=None, dosed=None, **plan_kw) -> Plan:
    """One shift from a fitted model; with ``max_dose_multiple``, re-plan without the cells of
    tracts whose dosage per resident (this plan plus ``dosed``) exceeds the cap."""
    from ..fairness import over_limit_cells, plan_minutes

    fc = m.predict(None, t0, t1)
    r7 = pd.Series(c.window_counts(t0 - pd.Timedelta(days=7), t0), index=c.cells)
    r28 = pd.Series(c.window_counts(t0 - pd.Timedelta(days=28), t0), index=c.cells)
    bins = hotspot_bins(c.cells, r28.to_numpy())
    excluded = {int(x) for x in plan_kw.pop("excluded", ()) or ()}
    capped: set[int] = set()
    for _ in range(6 if max_dose_multiple else 1):
        plan = plan_shift(
            fc, units, t0, t1, recent_7d=r7, recent_28d=r28, hotspot_bins=bins, excluded=excluded | capped, **plan_kw
        )
        if not max_dose_multiple:
            break
        mins = plan_minutes(plan.cells, plan.schedule).assign(plan="this")
        allm = mins if dosed is None or dosed.empty else pd.concat([dosed, mins], ignore_index=True)
        bad = over_limit_cells(allm, tracts, multiple=max_dose_multiple) & set(mins["cell"].tolist())
        if not bad:
            break
        capped |= bad
    plan.params["dose_capped_cells"] = len(capped)
    plan.forecast = fc
    _quote_explanations(plan, m, t0, t1)
    return plan


def _quote_explanations(plan: Plan, m, t0, t1) -> None:
    """Add the model's per-term contributions and its 'why' to every cell's reason (additive model)."""
    from ..forecast.terms import AdditiveTerms

    if not isinstance(m, AdditiveTerms):
        return
    from ..forecast.explain import explain

    ex = explain(m, t0, t1, cells=plan.cells["cell"].to_numpy(np.int64)).set_index("cell")
    cols = [k for k in ex.columns if k.startswith("contrib_")]
    for k in cols:
        plan.cells[k] = plan.cells["cell"].map(ex[k]).to_numpy(float)
    plan.cells["why"] = plan.cells["cell"].map(ex["why"]).to_numpy(object)
    plan.cells["reason"] = plan.cells["reason"] + "; why: " + plan.cells["why"].astype(str)


def _source(store, source: str | None) -> str | None:
    from ..scope import Scope

    return (source or store.source) if isinstance(store, Scope) else source


def plan_from_store(
    store,
    source: str | None,
    shift_start,
    shift_hours: float = D.DEPLOY_SHIFT_HOURS,
    units: int = D.DEPLOY_UNITS,
    *,
    category: str = D.DEPLOY_TARGET,
    model: str = D.DEPLOY_MODEL,
    res: int = D.DEPLOY_RES,
    max_dose_multiple: float | None = None,
    tracts=None,
    train_from=None,
    **plan_kw,
) -> Plan:
    """Forecast the shift with ``model`` on ``category`` (default: everything but the
    enforcement-driven categories) from the incidents before it, and plan ``units``
    patrols with :func:`~rtcc_geo.deploy.plan.plan_shift`.

    Each chosen cell is explained with its forecast, its incidents in the last 7
    and 28 days, its Gi* bin over those 28 days and, for the additive model, the
    incidents each term adds and the model's 'why'. ``max_dose_multiple``: cap the
    patrol minutes per resident of any census tract at that multiple of the median
    of dosed tracts (:func:`rtcc_geo.fairness.audit`; ``tracts`` default: the
    agency's). ``plan_kw`` goes to :func:`plan_shift` (``areas_per_unit``,
    ``radius``, ``spacing_cells`` / ``spacing_m``, ``eligible``, ``excluded``,
    ``history``, ``max_consecutive_days``, ``seed``). ``store`` may be a
    :class:`~rtcc_geo.scope.Scope` (``source`` None = the scope's); ``train_from`` bounds
    the history the model sees.
    """
    source = _source(store, source)
    _check(category, units, shift_hours)
    t0 = pd.Timestamp(shift_start)
    t1 = t0 + pd.Timedelta(hours=shift_hours)
    c, m = _fit(store, source, category, model, res, t0, t1, max(1, round(shift_hours / 24)), train_from)
    if max_dose_multiple and tracts is None:
        from ..fairness import load_tracts

        tracts = load_tracts(source)
    return _plan(c, m, t0, t1, units, tracts=tracts, max_dose_multiple=max_dose_multiple, **plan_kw)


def plan_week(
    store,
    source: str | None,
    week_start,
    units: int = D.DEPLOY_UNITS,
    *,
    days: int = 7,
    shift_start_hour: float = 16.0,
    shift_hours: float = D.DEPLOY_SHIFT_HOURS,
    category: str = D.DEPLOY_TARGET,
    model: str = D.DEPLOY_MODEL,
    res: int = D.DEPLOY_RES,
    max_dose_multiple: float | None = None,
    tracts=None,
    train_from=None,
    **plan_kw,
) -> list[Plan]:
    """One shift a day for ``days`` days from ``week_start`` (local date), all forecast from
    incidents before ``week_start`` (a weekly plan made on its first morning). Each day's
    plan rests the cells dosed the days before (``max_consecutive_days``, default 3) and,
    with ``max_dose_multiple``, caps the week's cumulative dosage per resident by tract."""
    from ..fairness import load_tracts, plan_minutes

    source = _source(store, source)
    _check(category, units, shift_hours)
    d0 = pd.Timestamp(week_start).normalize()
    end = d0 + pd.Timedelta(days=days + 1)
    c, m = _fit(store, source, category, model, res, d0, end, 7, train_from)
    if max_dose_multiple and tracts is None:
        tracts = load_tracts(source)
    plans: list[Plan] = []
    history = pd.DataFrame(columns=["date", "cell"])
    dosed = pd.DataFrame(columns=["plan", "cell", "minutes"])
    for i in range(days):
        t0 = d0 + pd.Timedelta(days=i, hours=shift_start_hour)
        t1 = t0 + pd.Timedelta(hours=shift_hours)
        p = _plan(
            c,
            m,
            t0,
            t1,
            units,
            tracts=tracts,
            max_dose_multiple=max_dose_multiple,
            dosed=dosed,
            history=history,
            **plan_kw,
        )
        plans.append(p)
        history = pd.concat(
            [history, pd.DataFrame({"date": t0.normalize(), "cell": p.cells["cell"]})], ignore_index=True
        )
        dosed = pd.concat([dosed, plan_minutes(p.cells, p.schedule).assign(plan=f"{t0:%Y-%m-%d}")], ignore_index=True)
    return plans
