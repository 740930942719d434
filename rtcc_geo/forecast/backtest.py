"""Rolling-origin backtest: refit at every origin, score the next window.

For origins ``t_0, t_0 + step, ...`` (``< end``) every model is fitted on the
incidents before ``t_i`` and predicts ``[t_i, t_i + horizon)``; the forecast
is scored against what happened with :func:`~rtcc_geo.forecast.metrics.evaluate`
(hit rate, PAI, PEI* at the area fractions and fixed area asked), and
accumulated into a hit-rate-vs-area curve and a calibration table.

Horizons: ``"shift"`` (8 h), ``"day"``, ``"week"`` or ``"<n>h"``, ``"<n>d"``, ``"<n>w"``.
Each origin is independent, so the loop is a map over origins (a partition
by time) — one :class:`~rtcc_geo.forecast.data.Counts` is shared read-only.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from collections.abc import Mapping, Sequence

import pandas as pd

from ..grid import cell_area_km2
from . import metrics
from .base import ForecastModel
from .data import Counts

_NAMED = {"shift": pd.Timedelta(hours=8), "day": pd.Timedelta(days=1), "week": pd.Timedelta(days=7)}


def parse_horizon(h: str | pd.Timedelta) -> pd.Timedelta:
    """``"7d"`` -> 7 days; also ``"8h"``, ``"2w"``, ``"shift"``, ``"day"``, ``"week"``."""
    if isinstance(h, pd.Timedelta):
        return h
    s = str(h).strip().lower()
    if s in _NAMED:
        return _NAMED[s]
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([hdw])", s)
    if not m:
        raise ValueError(f"bad horizon {h!r}: use e.g. 8h, 1d, 7d, 2w, shift, day or week")
    n, u = float(m.group(1)), m.group(2)
    return pd.Timedelta(hours=n) if u == "h" else pd.Timedelta(days=n * (7 if u == "w" else 1))


@dataclass
class BacktestResult:
    """Per-origin scores (``scores``), curves, calibration and fit/predict times."""

    scores: pd.DataFrame
    curves: pd.DataFrame
    calibration: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean of every score per model over the origins (plus ``origins`` and ``seconds``)."""
        num = self.scores.drop(columns=["origin"]).groupby("model", sort=False).mean(numeric_only=True)
        num.insert(0, "origins", self.scores.groupby("model", sort=False).size())
        num["seconds"] = pd.Series(self.seconds)
        return num


def backtest(
    data: Counts,
    models: Mapping[str, ForecastModel],
    start,
    end,
    horizon: str | pd.Timedelta = "7d",
    step: str | pd.Timedelta | None = None,
    fractions: Sequence[float] = (0.01, 0.05),
    area_km2: float | None = 0.5,
    ties: str = "fractional",
    curve_fractions: Sequence[float] | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Rolling-origin backtest of ``models`` on ``data`` (see module doc).

    ``start``/``end`` are local times (naive) or tz-aware; origins are
    ``start + i * step < end`` (``step`` defaults to the horizon).
    """
    h = parse_horizon(horizon)
    st = parse_horizon(step) if step is not None else h
    t0 = pd.Timestamp(start)
    t1 = pd.Timestamp(end)
    if t0.tzinfo is not None:
        t0 = t0.tz_convert(data.tz).tz_localize(None)
    if t1.tzinfo is not None:
        t1 = t1.tz_convert(data.tz).tz_localize(None)
    origins = []
    t = t0
    while t < t1:
        origins.append(t)
        t = t + st
    if not origins:
        raise ValueError(f"no origin between {start} and {end}: --from must be before --to")
    last_end_h = data.to_hours(origins[-1] + h)
    if last_end_h > data.n_days * 24 + 1e-9:
        raise ValueError(
            f"data end at {data.day_start(data.n_days)} but the last window ends {origins[-1] + h}; "
            "load incidents up to --to plus the horizon"
        )
    cell_km2 = cell_area_km2(data.res)
    rows, curves, cals = [], [], []
    seconds = {name: 0.0 for name in models}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(origins) * len(models), file=sys.stderr, desc="backtest")
    for o in origins:
        obs = data.window_counts(o, o + h)
        for name, model in models.items():
            tic = time.perf_counter()
            model.fit(data, until=o)
            fc = model.predict(None, o, o + h).to_numpy()
            seconds[name] += time.perf_counter() - tic
            sc = metrics.evaluate(fc, obs, fractions, area_km2, cell_km2, ties)
            rows.append({"model": name, "origin": o, **sc, "predicted": float(fc.sum())})
            cv = metrics.hit_rate_curve(fc, obs, curve_fractions, ties)
            cv.insert(0, "model", name)
            cv.insert(1, "origin", o)
            curves.append(cv)
            cal = metrics.calibration(fc, obs)
            cal.insert(0, "model", name)
            cals.append(cal)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    curves_df = (
        pd.concat(curves).groupby(["model", "area_fraction"], sort=False)[["hit_rate", "pai"]].mean().reset_index()
    )
    cal_df = (
        pd.concat(cals).groupby(["model", "bin"], sort=False)[["cells", "predicted", "observed"]].sum().reset_index()
    )
    cal_df["ratio"] = cal_df["observed"] / cal_df["predicted"].where(cal_df["predicted"] > 0)
    return BacktestResult(pd.DataFrame(rows), curves_df, cal_df, seconds)


def default_models(horizon: str | pd.Timedelta = "7d") -> dict[str, ForecastModel]:
    """One instance of every model with its documented defaults."""
    from .ensemble import Ensemble
    from .kde import STKDE
    from .learned import LearnedPoisson
    from .naive import NaiveHotspot, SeasonalNaive
    from .prospective import ProspectiveHotspot
    from .sepp import SEPP
    from .terms import AdditiveTerms

    hd = max(1, int(round(parse_horizon(horizon) / pd.Timedelta(days=1))))
    stkde, sepp, learned = STKDE(), SEPP(), LearnedPoisson(horizon_days=hd)
    # The ensemble shares its members with the stand-alone entries, so a
    # backtest fits each once per origin (Ensemble reuses fitted members).
    return {
        "naive": NaiveHotspot(),
        "naive365": NaiveHotspot(days=365),
        "seasonal": SeasonalNaive(horizon_days=hd),
        "prospective": ProspectiveHotspot(),
        "stkde": stkde,
        "sepp": sepp,
        "learned": learned,
        "ensemble": Ensemble([learned, stkde, sepp]),
        "additive": AdditiveTerms(horizon_days=hd),
    }


#: Models that are baselines: the default model must beat the strongest of them.
BASELINES: tuple[str, ...] = ("naive", "naive365", "seasonal")
