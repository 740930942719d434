"""One call from a store to a shift plan: forecast, recent counts, hot-spot status, plan.

>>> from rtcc_geo.deploy import plan_from_store
>>> plan = plan_from_store(store, "philadelphia", "2024-12-07 16:00", units=8)
>>> plan.cells, plan.schedule, plan.summary
"""

from __future__ import annotations

import pandas as pd

from .. import defaults as D
from .areas import hotspot_bins
from .plan import Plan, plan_shift


def plan_from_store(store, source: str | None, shift_start, shift_hours: float = D.DEPLOY_SHIFT_HOURS,
                    units: int = D.DEPLOY_UNITS, *, category: str = D.DEPLOY_TARGET, model: str = D.DEPLOY_MODEL,
                    res: int = D.DEPLOY_RES,
                    train_from=None, **plan_kw) -> Plan:
    """Forecast the shift with ``model`` on ``category`` (default: everything but the
    enforcement-driven categories) from the incidents before it, and plan ``units``
    patrols with :func:`~rtcc_geo.deploy.plan.plan_shift`.

    Each chosen cell is explained with its forecast, its incidents in the last 7
    and 28 days, and its Gi* bin over those 28 days. ``plan_kw`` goes to
    :func:`plan_shift` (``areas_per_unit``, ``radius``, ``spacing_cells`` /
    ``spacing_m``, ``eligible``, ``excluded``, ``history``,
    ``max_consecutive_days``, ``seed``). ``store`` may be a
    :class:`~rtcc_geo.scope.Scope` (``source`` None = the scope's).
    """
    from ..scope import Scope

    if isinstance(store, Scope):
        source = source or store.source
    from ..forecast.backtest import default_models
    from ..forecast.data import TARGETS
    from ..forecast.io import counts_from_store

    if category not in TARGETS:
        raise ValueError(f"unknown category {category!r}; use one of {', '.join(TARGETS)}")
    if units < 1 or shift_hours <= 0:
        raise ValueError("units and shift_hours must be positive")
    t0 = pd.Timestamp(shift_start)
    t1 = t0 + pd.Timedelta(hours=shift_hours)
    c = counts_from_store(store, source, category, start=train_from, end=t1, res=res)
    if len(c.hours) == 0:
        raise ValueError(f"no {category} incidents for {source} before {t0}: ingest data first")
    models = default_models(f"{max(1, int(round(shift_hours / 24)))}d")
    if model not in models:
        raise ValueError(f"unknown model {model!r}; use one of {', '.join(models)}")
    fc = models[model].fit(c, until=t0).predict(None, t0, t1)
    r7 = pd.Series(c.window_counts(t0 - pd.Timedelta(days=7), t0), index=c.cells)
    r28 = pd.Series(c.window_counts(t0 - pd.Timedelta(days=28), t0), index=c.cells)
    plan = plan_shift(fc, units, t0, t1, recent_7d=r7, recent_28d=r28,
                      hotspot_bins=hotspot_bins(c.cells, r28.to_numpy()), **plan_kw)
    plan.forecast = fc
    return plan
