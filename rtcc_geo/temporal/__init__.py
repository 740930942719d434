"""Time: temporal signatures, aoristic apportioning, per-hot-spot profiles,
space-time cubes, Mann–Kendall, Emerging Hot Spot Analysis and near-repeat.

See ``docs/temporal.md`` for the rules (local time, DST, time-unknown rows)
and the Philadelphia results.
"""

from .aoristic import aoristic_counts
from .cube import SpaceTimeCube, build_cube, from_counts, from_incidents, load_cube, save_cube
from .emerging import CATEGORIES as EHSA_CATEGORIES
from .emerging import EmergingResult, emerging_hotspots, space_time_gistar
from .mannkendall import MannKendallResult, mann_kendall, sen_slope
from .nearrepeat import KnoxResult, knox, near_repeat
from .profile import HotSpotProfiles, hotspot_profiles
from .signatures import TemporalSignature, signature_from_store, temporal_signature

__all__ = [
    "aoristic_counts",
    "SpaceTimeCube",
    "build_cube",
    "from_counts",
    "from_incidents",
    "load_cube",
    "save_cube",
    "EHSA_CATEGORIES",
    "EmergingResult",
    "emerging_hotspots",
    "space_time_gistar",
    "MannKendallResult",
    "mann_kendall",
    "sen_slope",
    "KnoxResult",
    "knox",
    "near_repeat",
    "HotSpotProfiles",
    "hotspot_profiles",
    "TemporalSignature",
    "signature_from_store",
    "temporal_signature",
]
