"""Workload curve: expected RTCC-eligible events per hour of the week.

From incident counts per (local hour of week, week, category) - the Store API's
``counts(res, ("hour_of_week", "week", "category"), q)`` - the curve is built
in four steps:

1. **Weighting.** Each category has a weight (``data/staffing/weights_default.toml``
   or the agency's own): the expected RTCC events one incident makes
   (in-progress violent / robbery / burglary = 1, cold reports = 0). Per week
   ``w`` and hour of week ``h``: :math:`x_{wh} = \\sum_k \\omega_k n_{whk}`.
2. **Complete weeks only.** Weeks (local Monday 00:00 to Monday 00:00) that
   lie wholly inside the query window; weeks with no event count as zero.
3. **Seasonal adjustment.** A monthly index
   :math:`I_m = \\bar X_{m} / \\bar X` (mean weekly total of the weeks whose
   Thursday falls in month ``m`` over the mean of all weeks; 1 for a month
   without data) divides each week, :math:`\\tilde x_{wh} = x_{wh} / I_{m(w)}`,
   so the curve is not biased towards the months that happen to be in the
   window; the expected curve for a target month is
   :math:`\\hat\\lambda_h = I_{m^*} \\cdot \\operatorname{mean}_w \\tilde x_{wh}`
   (:math:`I = 1`, the annual average, without a target month).
4. **Uncertainty band** from week-to-week variation:
   :math:`s_h = I_{m^*}\\,\\operatorname{sd}_w(\\tilde x_{wh})` and the band
   :math:`[\\max(0, \\hat\\lambda_h - z s_h),\\ \\hat\\lambda_h + z s_h]` with
   ``z`` the normal quantile of the band level (0.8 -> 1.2816): the range one
   ordinary week's count in that hour falls in. ``se`` is the standard error
   of the mean itself, :math:`s_h / \\sqrt{W}`.

Local time is the source's IANA zone (the store applies it). In the week a
DST change happens one hour bin has no or two instances; over a year that is
noise below the week-to-week variation.

Calls for service, when an agency has loaded them as their own source, add to
the incidents through a second query (``calls_q``) with their own weights; do
not weigh the same event twice (an incident that started as a call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..config import DATA_DIR, read_toml
from ..schema import CATEGORIES

__all__ = [
    "DEFAULT_WEIGHTS_FILE",
    "HOURS_OF_WEEK",
    "WorkloadCurve",
    "complete_weeks",
    "load_offense_weights",
    "load_weights",
    "weighted_counts_from_incidents",
    "workload_curve",
    "workload_from_counts",
]

DEFAULT_WEIGHTS_FILE = DATA_DIR / "staffing" / "weights_default.toml"
HOURS_OF_WEEK = 168
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _read_weights(weights) -> dict:
    if weights is None:
        weights = DEFAULT_WEIGHTS_FILE
    if isinstance(weights, (str, Path)):
        raw = read_toml(weights, "weights", DEFAULT_WEIGHTS_FILE)
        out = dict(raw.get("weights", {}))
        if "offense" in raw:
            out["offense"] = dict(raw["offense"])
        return out
    return dict(weights)


def _check_weight(k, v) -> float:
    v = float(v)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"weight of {k!r} must be a number >= 0 (got {v})")
    return v


def load_weights(weights: Mapping[str, float] | str | Path | None = None) -> dict[str, float]:
    """Category weights from a mapping, a TOML file (``[weights]`` table) or the default file.

    Unknown categories are an error (a typo would silently weigh 0). The
    offense-level overrides (``[offense]`` table / ``"offense"`` key) are read
    by :func:`load_offense_weights`.
    """
    raw = _read_weights(weights)
    raw.pop("offense", None)
    out: dict[str, float] = {}
    for k, v in raw.items():
        if k not in CATEGORIES:
            raise ValueError(f"unknown category {k!r} in weights; categories are {list(CATEGORIES)}")
        out[k] = _check_weight(k, v)
    if not any(v > 0 for v in out.values()) and not any(v > 0 for v in load_offense_weights(weights).values()):
        raise ValueError("every category weighs 0: no RTCC workload would remain; give at least one a weight > 0")
    return out


def load_offense_weights(weights: Mapping[str, float] | str | Path | None = None) -> dict[str, float]:
    """Offense-level overrides ``{offense text (case-folded): weight}``.

    They refine a category: e.g. the source's "Other Assaults" (simple
    assault, mostly reported after the fact) in the ``violent`` category.
    Matching is on the source's own ``offense_raw`` text, case-insensitive.
    """
    raw = _read_weights(weights).get("offense") or {}
    return {str(k).casefold(): _check_weight(k, v) for k, v in dict(raw).items()}


@dataclass
class WorkloadCurve:
    """Expected RTCC events per local hour of the week (index 0 = Monday 00:00).

    Attributes
    ----------
    expected, lower, upper, sd, se : (168,) arrays (events per hour).
    mean_raw : (168,) mean weighted count per week before seasonal adjustment.
    weekly : (W, 168) weighted counts of each complete week (not adjusted).
    weeks : the Mondays of the complete weeks used.
    monthly_index : seasonal index per month 1..12.
    month : target month (``None`` = annual average); ``season_factor`` = its index.
    weights, band : as used.
    """

    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    sd: np.ndarray
    se: np.ndarray
    mean_raw: np.ndarray
    weekly: np.ndarray
    weeks: pd.DatetimeIndex
    monthly_index: pd.Series
    month: int | None
    season_factor: float
    weights: dict[str, float]
    band: float
    extra: dict = field(default_factory=dict)

    @property
    def n_weeks(self) -> int:
        return len(self.weeks)

    @property
    def weekly_total(self) -> float:
        """Expected RTCC events per week."""
        return float(self.expected.sum())

    def frame(self) -> pd.DataFrame:
        h = np.arange(HOURS_OF_WEEK)
        return pd.DataFrame(
            {
                "hour_of_week": h,
                "day": [_DAYS[i // 24] for i in h],
                "hour": h % 24,
                "expected": self.expected,
                "lower": self.lower,
                "upper": self.upper,
                "sd": self.sd,
                "se": self.se,
            }
        )


def complete_weeks(start=None, end=None, observed: pd.DatetimeIndex | None = None) -> pd.DatetimeIndex:
    """Mondays of the local weeks wholly inside ``[start, end)`` (naive local times).

    Without bounds, every week between the first and last observed week,
    less those two (they are likely cut by the extract's edges).
    """

    def naive(t):
        t = pd.Timestamp(t)
        return t.tz_localize(None) if t.tzinfo is not None else t

    obs = None
    if start is None or end is None:
        if observed is None or len(observed) == 0:
            raise ValueError("no weeks: give start and end, or data with at least three weeks")
        obs = pd.DatetimeIndex(observed).normalize()
    if start is None:
        assert obs is not None
        lo = obs.min() + pd.Timedelta(days=7)
    else:
        s = naive(start)
        d = s.normalize()
        lo = d + pd.Timedelta(days=((7 - d.day_of_week) % 7) if s == d else (7 - d.day_of_week))
    if end is None:
        assert obs is not None
        last = obs.max() - pd.Timedelta(days=7)
    else:
        m = naive(end) - pd.Timedelta(days=7)  # the last week's Monday is at most end - 7 days
        last = m.normalize() - pd.Timedelta(days=m.day_of_week)
    weeks = pd.date_range(lo, last, freq="7D") if last >= lo else pd.DatetimeIndex([])
    if len(weeks) == 0:
        raise ValueError(
            f"no complete week (Monday to Monday) between {start} and {end}: widen the period to at least 7 days from a Monday"
        )
    return pd.DatetimeIndex(weeks)


def _weekly_matrix(counts: pd.DataFrame, weights: Mapping[str, float], weeks: pd.DatetimeIndex) -> np.ndarray:
    need = {"hour_of_week", "week", "category", "n"}
    if not (need.issubset(counts.columns) or {"hour_of_week", "week", "w"}.issubset(counts.columns)):
        raise ValueError(
            f"counts need columns {sorted(need)} (store.counts(res, ('hour_of_week', 'week', 'category'), q))"
        )
    c = counts.copy()
    if "w" not in c.columns:  # already weighted when built from incidents with offense overrides
        c["w"] = c["category"].astype(str).map(weights).fillna(0.0).astype(float) * c["n"].astype(float)
    wk = pd.to_datetime(c["week"])
    if getattr(wk.dt, "tz", None) is not None:
        wk = wk.dt.tz_localize(None)
    pos = weeks.get_indexer(wk.dt.normalize())
    keep = pos >= 0
    X = np.zeros((len(weeks), HOURS_OF_WEEK))
    np.add.at(X, (pos[keep], c["hour_of_week"].to_numpy()[keep].astype(int)), c["w"].to_numpy()[keep])
    return X


def workload_from_counts(
    counts: pd.DataFrame,
    weights: Mapping[str, float] | str | Path | None = None,
    *,
    start=None,
    end=None,
    month: int | None = None,
    band: float = 0.8,
    seasonal: bool = True,
    extra_counts: pd.DataFrame | None = None,
    extra_weights: Mapping[str, float] | str | Path | None = None,
) -> WorkloadCurve:
    """The workload curve from a counts frame (see the module docstring).

    ``counts`` has columns ``hour_of_week, week, category, n`` (the Store API's
    output); ``start``/``end`` are the query window in naive local time.
    ``extra_counts`` (calls for service) add with ``extra_weights``.
    """
    if not 0.0 < band < 1.0:
        raise ValueError(f"band is a coverage level in (0, 1), e.g. 0.8 (got {band})")
    if month is not None and not 1 <= int(month) <= 12:
        raise ValueError(f"month must be 1..12 (got {month})")
    w = load_weights(weights)
    if len(counts) == 0:
        counts = pd.DataFrame(
            {
                "hour_of_week": pd.Series(dtype=int),
                "week": pd.Series(dtype="datetime64[ns]"),
                "category": pd.Series(dtype=str),
                "n": pd.Series(dtype=float),
            }
        )
    observed = pd.DatetimeIndex(pd.to_datetime(counts["week"]).unique()) if len(counts) else pd.DatetimeIndex([])
    weeks = complete_weeks(start, end, observed)
    X = _weekly_matrix(counts, w, weeks)
    if extra_counts is not None and len(extra_counts):
        X = X + _weekly_matrix(extra_counts, load_weights(extra_weights) if extra_weights is not None else w, weeks)
    totals = X.sum(1)
    thursday_month = (weeks + pd.Timedelta(days=3)).month
    idx = pd.Series(1.0, index=pd.RangeIndex(1, 13, name="month"))
    if seasonal and totals.mean() > 0:
        by_m = pd.Series(totals).groupby(np.asarray(thursday_month)).mean()
        idx.loc[by_m.index] = by_m.to_numpy() / totals.mean()
        idx[idx <= 0] = 1.0  # a month with no event at all: no information, no adjustment
    f_w = idx.loc[np.asarray(thursday_month)].to_numpy()
    Xd = X / f_w[:, None]
    factor = float(idx.loc[int(month)]) if month is not None else 1.0
    mean = Xd.mean(0) * factor
    sd = (Xd.std(0, ddof=1) if len(weeks) > 1 else np.zeros(HOURS_OF_WEEK)) * factor
    z = float(norm.ppf(0.5 + band / 2))
    return WorkloadCurve(
        expected=mean,
        lower=np.maximum(mean - z * sd, 0.0),
        upper=mean + z * sd,
        sd=sd,
        se=sd / np.sqrt(max(len(weeks), 1)),
        mean_raw=X.mean(0),
        weekly=X,
        weeks=weeks,
        monthly_index=idx,
        month=None if month is None else int(month),
        season_factor=factor,
        weights=w,
        band=band,
    )


def weighted_counts_from_incidents(df: pd.DataFrame, tz: str, weights=None) -> pd.DataFrame:
    """Weighted events per (local hour of week, local week) from canonical incidents.

    Each incident weighs its offense override if it has one, else its
    category weight. Hours of week come from the temporal module's aoristic
    apportioning (:func:`rtcc_geo.temporal.aoristic.aoristic_counts`: DST-exact,
    from/to windows spread over their hours, time-unknown rows left out); the
    week is the local Monday of ``occurred_from``.
    """
    from ..temporal.aoristic import aoristic_counts

    cw = load_weights(weights)
    ow = load_offense_weights(weights)
    cols = ["hour_of_week", "week", "w"]
    if len(df) == 0:
        return pd.DataFrame(columns=cols)
    wt = df["category"].astype(str).map(cw).fillna(0.0).to_numpy(float)
    if ow:
        o = df["offense_raw"].astype("string").str.casefold().map(ow)
        wt = np.where(o.notna().to_numpy(), o.fillna(0.0).to_numpy(float), wt)
    keep = wt > 0
    df, wt = df.loc[keep].reset_index(drop=True), wt[keep]
    if len(df) == 0:
        return pd.DataFrame(columns=cols)
    local = pd.DatetimeIndex(pd.to_datetime(df["occurred_from"], utc=True)).tz_convert(tz).tz_localize(None)
    monday = local.normalize() - pd.to_timedelta(local.day_of_week, unit="D")
    wk_codes, wk_uniq = pd.factorize(monday, sort=True)
    cls_codes, cls_uniq = pd.factorize(wt, sort=True)
    k = len(cls_uniq)
    m = aoristic_counts(df, tz, "hour_of_week", groups=wk_codes * k + cls_codes)
    m = np.pad(m, ((0, len(wk_uniq) * k - m.shape[0]), (0, 0)))
    m = (m.reshape(len(wk_uniq), k, 168) * np.asarray(cls_uniq, float)[None, :, None]).sum(1)
    wi, hi = np.nonzero(m)
    return pd.DataFrame({"hour_of_week": hi, "week": pd.DatetimeIndex(wk_uniq)[wi], "w": m[wi, hi]})


def _local_bounds(store, q):
    """Query bounds as naive local times of the query's source."""
    tzs = store.sources()
    tz = None
    if q.source is not None:
        tz = tzs.get(q.source)
    elif len(tzs) == 1:
        tz = next(iter(tzs.values()))
    elif len(set(tzs.values())) > 1:
        raise ValueError(
            f"the store holds sources in several time zones ({sorted(tzs)}): choose one with --source / Query(source=...)"
        )
    elif tzs:
        tz = next(iter(tzs.values()))

    def conv(t):
        if t is None:
            return None
        t = pd.Timestamp(t)
        if t.tzinfo is not None and tz:
            t = t.tz_convert(tz).tz_localize(None)
        return t

    return conv(q.start), conv(q.end), tz


def workload_curve(
    store,
    q=None,
    weights: Mapping[str, float] | str | Path | None = None,
    *,
    month: int | None = None,
    band: float = 0.8,
    seasonal: bool = True,
    calls_q=None,
    calls_weights: Mapping[str, float] | str | Path | None = None,
    res: int = 9,
    incidents: pd.DataFrame | None = None,
) -> WorkloadCurve:
    """The workload curve of the incidents matching ``q`` in ``store``.

    ``incidents``: the query's incidents already read (columns ``occurred_from``,
    ``occurred_to``, ``time_known``, ``category``, ``offense_raw``; every
    category), e.g. kept by the planner page so that a change of weights does not
    read the store again; they are weighted here (the incident path below).

    Uses ``store.counts(res, ("hour_of_week", "week", "category"), q)``, i.e.
    the store's own DST-correct local-time aggregation (time-unknown rows are
    left out: they cannot be placed in an hour).
    """
    from ..store.base import Query

    q = q or Query()
    w = load_weights(weights)
    ow = load_offense_weights(weights)
    start, end, tz = _local_bounds(store, q)
    if incidents is not None:
        if tz is None:
            raise ValueError("the store has no source: ingest incidents first")
        inc = incidents if q.categories is None else incidents[incidents["category"].isin(q.categories)]
        counts = weighted_counts_from_incidents(inc, tz, weights)
    elif ow:
        # offense-level overrides need the offense text: read incidents (only the categories that
        # can weigh anything, i.e. weighted categories and every category when an override is > 0)
        cats = None if any(v > 0 for v in ow.values()) else tuple(k for k, v in w.items() if v > 0)
        if q.categories is not None:
            cats = tuple(c for c in (cats or q.categories) if c in q.categories)
        if tz is None:
            raise ValueError("the store has no source: ingest incidents first")
        inc = store.incidents(
            q.with_(categories=cats, include_unknown_time=True),
            columns=["occurred_from", "occurred_to", "time_known", "category", "offense_raw"],
        )
        counts = weighted_counts_from_incidents(inc, tz, weights)
    else:
        cats = tuple(k for k, v in w.items() if v > 0)
        if q.categories is not None:
            cats = tuple(c for c in cats if c in q.categories)
            if not cats:
                raise ValueError(
                    f"none of the query's categories {q.categories} has a weight > 0 in the workload weights"
                )
        counts = store.counts(res, ("hour_of_week", "week", "category"), q.with_(categories=cats))
    extra = None
    if calls_q is not None:
        extra = store.counts(res, ("hour_of_week", "week", "category"), calls_q)
    curve = workload_from_counts(
        counts,
        w,
        start=start,
        end=end,
        month=month,
        band=band,
        seasonal=seasonal,
        extra_counts=extra,
        extra_weights=calls_weights,
    )
    curve.extra["timezone"] = tz
    curve.extra["source"] = q.source
    curve.extra["offense_weights"] = ow
    return curve
