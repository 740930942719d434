"""Crime forecasts per H3 cell, their backtest, and the metrics (see docs/forecast.md).

>>> from rtcc_geo.forecast import STKDE, backtest
>>> model = STKDE().fit(incidents, until="2024-07-01", tz="America/New_York")
>>> risk = model.predict(cells, "2024-07-01", "2024-07-08")
"""

from .backtest import BacktestResult, backtest, default_models, parse_horizon
from .base import ForecastModel
from .data import ENFORCEMENT_CATEGORIES, TARGETS, Counts, select_target
from .ensemble import Ensemble
from .kde import STKDE
from .learned import LearnedPoisson
from .naive import NaiveHotspot, SeasonalNaive
from .prospective import ProspectiveHotspot
from .sepp import SEPP, simulate_grid_hawkes
from .terms import TERMS, AdditiveTerms

__all__ = [
    "ENFORCEMENT_CATEGORIES",
    "SEPP",
    "STKDE",
    "TARGETS",
    "TERMS",
    "AdditiveTerms",
    "BacktestResult",
    "Counts",
    "Ensemble",
    "ForecastModel",
    "LearnedPoisson",
    "NaiveHotspot",
    "ProspectiveHotspot",
    "SeasonalNaive",
    "backtest",
    "default_models",
    "parse_horizon",
    "select_target",
    "simulate_grid_hawkes",
]
