"""RTCC staffing planner: workload curves, Erlang C, optimal shifts, downtime, events.

See ``docs/staffing.md``. The planner page and ``rtcc-geo staff`` call :func:`plan`.
"""

from .api import StaffingPlan, plan, plan_from_curve

__all__ = ["plan", "plan_from_curve", "StaffingPlan"]
