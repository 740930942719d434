"""Spatial hot spots on H3: Gi* with FDR, Local Moran, KDE, optimized scale, concentration.

One module per statistic (``weights``, ``gistar``, ``lisa``, ``kde``,
``fdr``, ``scale``, ``concentration``, and ``permutation`` for the shared
conditional-randomisation engine); :mod:`~rtcc_geo.hotspots.api` is the
analyst API both stores share. See ``docs/hotspots.md``.
"""

from .api import (
    agency_boundary,
    cell_counts,
    concentration_report,
    export,
    hotspots,
    hotspots_from_counts,
    optimize_scale,
    study_cells,
    study_counts,
    summary,
)
from .concentration import Concentration, gini, lorenz, power_few, top_share
from .fdr import bh_adjust, confidence_bins
from .gistar import GiStar
from .kde import default_bandwidth, kde_cells
from .lisa import LocalMoran
from .scale import choose_scale, global_moran
from .weights import HexWeights, distance_band_weights, kring_weights, study_area

__all__ = [
    "hotspots",
    "hotspots_from_counts",
    "concentration_report",
    "optimize_scale",
    "export",
    "summary",
    "cell_counts",
    "study_cells",
    "study_counts",
    "agency_boundary",
    "GiStar",
    "LocalMoran",
    "kde_cells",
    "default_bandwidth",
    "bh_adjust",
    "confidence_bins",
    "global_moran",
    "choose_scale",
    "Concentration",
    "gini",
    "lorenz",
    "power_few",
    "top_share",
    "HexWeights",
    "kring_weights",
    "distance_band_weights",
    "study_area",
]
