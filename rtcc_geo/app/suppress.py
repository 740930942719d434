"""Small-count suppression for the aggregate-only roles (viewer, planner).

A count of 1 to k - 1 incidents in a cell, an hour, a week or a whole view
can point at one incident (and at the people in it), so those roles never
receive one: the server replaces it by "fewer than k" in text, by no value
(``null``) in figures and map colours, and leaves the cell out of exports.
Zero is suppressed the same way: were zeros shown, the one blank hour among
zeros would mark where the incident happened. Commanders and analysts, who
may see incident rows anyway, get every number.

k is, first to last: ``rtcc-geo serve --suppress-k`` / ``$RTCC_SUPPRESS_K``,
the agency's ``suppress_k`` (``data/agencies/<source>.toml``), 5.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd

from rtcc_geo.auth import INCIDENT_ROLES

from . import auth
from .layers import compute as _compute

DEFAULT_K = 5
#: Layer units whose values count real events per cell (suppressed): incidents, and open
#: alerts (each raised by a few incidents); model outputs (densities, expected counts,
#: classes) are not counts of real incidents.
COUNT_UNITS = frozenset({"incidents", "open alerts"})


@functools.lru_cache(maxsize=32)
def _agency_k(source: str | None) -> int | None:
    if not source:
        return None
    try:
        from rtcc_geo.config import load_agency

        v = getattr(load_agency(source), "suppress_k", None)
    except Exception:  # noqa: BLE001 - no agency file: the default applies
        return None
    return int(v) if v else None


def k_for(source: str | None = None) -> int:
    """The threshold k for ``source`` (see the module docstring)."""
    env = os.environ.get("RTCC_SUPPRESS_K", "").strip()
    k = int(env) if env else (_agency_k(source) or DEFAULT_K)
    if k < 1:
        raise ValueError(f"suppression threshold k must be 1 or more, got {k}")
    return k


def active(role: str | None = None) -> bool:
    """Whether ``role`` (default: this request's) gets suppressed counts."""
    role = role if role is not None else auth.current_role()
    return role not in INCIDENT_ROLES


def mask(values, k: int) -> np.ndarray:
    """Counts as float with every value below ``k`` (zero included) set to NaN."""
    v = np.asarray(values, dtype="float64").copy()
    v[v < k] = np.nan
    return v


def view_total(ctx, f) -> int:
    """Incidents in the view (cached; the summary line shares the key)."""
    q = f.query(ctx.source, ctx.categories)
    return ctx.cache.get(("total", q), lambda: int(ctx.store.count(q)))


def compute(ctx, layer, f, role: str | None = None) -> pd.DataFrame:
    """:func:`rtcc_geo.app.layers.compute`, with counts below k removed for the
    aggregate-only roles (the cached values are never changed). A view of fewer
    than k incidents shows no layer at all to them: a density or hot-spot map of
    one incident is a map of where it happened."""
    if not active(role):
        return _compute(ctx, layer, f)
    k = k_for(ctx.source)
    if layer.unit in COUNT_UNITS:
        out = _compute(ctx, layer, f)
        return out.assign(value=mask(out["value"].to_numpy(), k))
    if view_total(ctx, f) < k:  # not even computed
        return pd.DataFrame({"cell": ctx.universe(f.res), "value": np.nan})
    return _compute(ctx, layer, f)


def count_text(n: float, what: str = "incidents", source: str | None = None, role: str | None = None) -> str:
    """``"1,234 incidents"``, or ``"fewer than 5 incidents"`` when suppressed."""
    k = k_for(source)
    if active(role) and n < k:
        return f"fewer than {k} {what}"
    return f"{round(float(n)):,} {what}"
