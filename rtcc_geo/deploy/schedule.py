"""Koper-curve dosage schedule: short, unpredictable visits about every two hours.

Koper (1995) found that the deterrent effect of a police stop at a hot spot
grows with its length up to ~ 14–15 minutes and then fades ("Koper curve");
the Sacramento hot-spot experiment (Telep et al. 2014) operationalised it as
randomised 12–16 minute visits about every 2 hours. We generate, per unit:

* each visit lasts ``U(visit_min)`` minutes (default 12..16, whole minutes);
* each area's next visit is due ``U(revisit_min)`` minutes after the start of
  its previous one (default 95..135, mean ~2 h); the first is due within the
  first ``first_within`` minutes (default 60);
* a unit serves its most overdue area next; visits never overlap; visits that
  would run past the end of the shift are dropped.

All draws come from one seeded :class:`numpy.random.Generator`, so a plan is
reproducible from its seed but shows no fixed pattern (times, order and
durations vary). :func:`validate_schedule` checks every rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

VISIT_MINUTES = (12, 16)
REVISIT_MINUTES = (95, 135)
#: Bounds :func:`validate_schedule` enforces on the gap between the starts of
#: consecutive visits to the same area (a unit serving several areas can be
#: late by the other areas' visits).
GAP_BOUNDS = (60, 180)


def dosage_schedule(
    units: dict[int, list[int]],
    start,
    end,
    seed: int = 0,
    visit_min: tuple[int, int] = VISIT_MINUTES,
    revisit_min: tuple[int, int] = REVISIT_MINUTES,
    first_within: int = 60,
) -> pd.DataFrame:
    """Visits for each unit's areas in ``[start, end)``.

    ``units``: ``{unit: [area centre cell, ...]}``. Returns one row per visit:
    ``unit, area, start, end, minutes`` sorted by unit then start.
    """
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t1 <= t0:
        raise ValueError("shift end must be after its start")
    rng = np.random.default_rng(seed)
    rows = []
    for unit in sorted(units):
        areas = list(units[unit])
        due = {a: float(rng.integers(0, first_within + 1)) for a in areas}
        now = 0.0
        horizon = (t1 - t0) / pd.Timedelta(minutes=1)
        while due:
            # Most overdue first; ties broken randomly (no fixed order).
            keys = list(due)
            d = np.array([due[a] for a in keys])
            cand = np.flatnonzero(d == d.min())
            a = keys[int(rng.choice(cand))]
            s = max(now, due[a])
            dur = int(rng.integers(visit_min[0], visit_min[1] + 1))
            if s + dur > horizon:
                del due[a]
                continue
            rows.append(
                {
                    "unit": unit,
                    "area": a,
                    "start": t0 + pd.Timedelta(minutes=s),
                    "end": t0 + pd.Timedelta(minutes=s + dur),
                    "minutes": dur,
                }
            )
            now = s + dur
            due[a] = s + float(rng.integers(revisit_min[0], revisit_min[1] + 1))
    out = pd.DataFrame(rows, columns=["unit", "area", "start", "end", "minutes"])
    return out.sort_values(["unit", "start"], kind="mergesort").reset_index(drop=True)


def validate_schedule(
    sched: pd.DataFrame,
    units: dict[int, list[int]],
    start,
    end,
    visit_min: tuple[int, int] = VISIT_MINUTES,
    gap_bounds: tuple[int, int] = GAP_BOUNDS,
) -> list[str]:
    """Every violated rule as a message (empty list = valid).

    Rules: visits inside the shift; durations within ``visit_min``; a unit's
    visits never overlap; each visit is to one of the unit's own areas; every
    area is visited; consecutive visits to an area start ``gap_bounds``
    minutes apart; the last visit to an area is no more than
    ``gap_bounds[1]`` minutes before the end of the shift.
    """
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    errs = []
    if ((sched["start"] < t0) | (sched["end"] > t1)).any():
        errs.append("visit outside the shift")
    if ((sched["minutes"] < visit_min[0]) | (sched["minutes"] > visit_min[1])).any():
        errs.append(f"visit length outside {visit_min[0]}-{visit_min[1]} min")
    if ((sched["end"] - sched["start"]) / pd.Timedelta(minutes=1) != sched["minutes"]).any():
        errs.append("minutes do not match start/end")
    for u, g in sched.groupby("unit"):
        g = g.sort_values("start")
        if (g["start"].to_numpy()[1:] < g["end"].to_numpy()[:-1]).any():
            errs.append(f"unit {u}: overlapping visits")
        if not set(g["area"]).issubset(set(units.get(u, []))):
            errs.append(f"unit {u}: visit to an area of another unit")
    shift_min = (t1 - t0) / pd.Timedelta(minutes=1)
    for u, areas in units.items():
        for a in areas:
            g = sched[(sched["unit"] == u) & (sched["area"] == a)].sort_values("start")
            if g.empty:
                if shift_min >= visit_min[1] + gap_bounds[0]:
                    errs.append(f"unit {u}: area {a} never visited")
                continue
            gaps = np.diff(g["start"].to_numpy()) / np.timedelta64(1, "m")
            if len(gaps) and ((gaps < gap_bounds[0]) | (gaps > gap_bounds[1])).any():
                errs.append(f"unit {u}: area {a} revisit gap outside {gap_bounds} min: {sorted(set(gaps.astype(int)))}")
            if (g["start"].iloc[0] - t0) / pd.Timedelta(minutes=1) > gap_bounds[1]:
                errs.append(f"unit {u}: area {a} first visit too late")
            if (t1 - g["start"].iloc[-1]) / pd.Timedelta(minutes=1) > gap_bounds[1] + visit_min[1]:
                errs.append(f"unit {u}: area {a} left unvisited at the end of the shift")
    return errs
