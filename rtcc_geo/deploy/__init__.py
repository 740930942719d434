"""Patrol deployment plans from forecasts: exact area choice, Koper dosage, reasons."""

from .api import plan_from_store, plan_week
from .plan import Plan, capped_cells, plan_shift
from .schedule import dosage_schedule, validate_schedule
from .select import Selection, select_areas

__all__ = [
    "Plan",
    "Selection",
    "capped_cells",
    "dosage_schedule",
    "plan_from_store",
    "plan_shift",
    "plan_week",
    "select_areas",
    "validate_schedule",
]
