"""Downtime: idle operator-hours and the work that fills them.

Busy and idle time
    In hour ``h`` with :math:`n_h` operators on duty and offered load
    :math:`A_h = \\lambda_h \\cdot` handle hours, a stable queue
    (:math:`n_h > A_h`) eventually handles every event, so the operators are
    busy :math:`\\text{busy}_h = \\min(A_h, n_h)` operator-hours (an
    overloaded hour keeps everyone busy; a closed hour, :math:`n_h = 0`,
    carries nothing: those events go to patrol without RTCC support) and idle
    :math:`\\text{idle}_h = n_h - \\text{busy}_h`. The per-operator idle share
    of the hour is :math:`f_h = \\text{idle}_h / n_h` (the occupancy's complement).

Per shift
    One operator on a shift covering hours :math:`H` expects
    :math:`\\sum_{h \\in H} f_h` idle hours.

Tasks
    A ranked list from ``data/staffing/downtime_tasks.toml`` (or the agency's
    own): highest ``value`` first, each given idle hours greedily, up to its
    weekly demand, only in its allowed hours of day. A task that cannot be
    interrupted needs whole quiet stretches: it only uses hours where an
    operator is idle at least ``quiet_share`` of the time, inside runs of such
    hours at least ``min_block_hours`` long.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DATA_DIR, read_toml

__all__ = ["DEFAULT_TASKS_FILE", "load_tasks", "Downtime", "downtime"]

DEFAULT_TASKS_FILE = DATA_DIR / "staffing" / "downtime_tasks.toml"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def load_tasks(tasks: str | Path | list[dict] | None = None) -> list[dict]:
    """Downtime tasks from a TOML file (``[[task]]`` tables) or a list of dicts."""
    if tasks is None:
        tasks = DEFAULT_TASKS_FILE
    items: list[dict] = (
        read_toml(tasks, "downtime tasks", DEFAULT_TASKS_FILE).get("task", [])
        if isinstance(tasks, (str, Path))
        else tasks
    )
    out = []
    for t in items:
        if "name" not in t or "value" not in t:
            raise ValueError(f"every downtime task needs a name and a value (got {t})")
        hours = t.get("hours", "any")
        allowed = np.zeros(24, bool)
        if hours == "any":
            allowed[:] = True
        else:
            for a, b in hours:
                if not (0 <= a < 24 and 0 < b <= 24):
                    raise ValueError(f"task {t['name']!r}: hours are [start, end) pairs within 0..24 (got {[a, b]})")
                rng = np.arange(a, b) if a < b else np.r_[np.arange(a, 24), np.arange(0, b)]
                allowed[rng] = True
        out.append(
            {
                "name": str(t["name"]),
                "description": str(t.get("description", "")),
                "value": float(t["value"]),
                "min_block_hours": float(t.get("min_block_hours", 0.0)),
                "interruptible": bool(t.get("interruptible", True)),
                "weekly_hours": float(t.get("weekly_hours", 0.0)),
                "allowed": allowed,
            }
        )
    return sorted(out, key=lambda t: -t["value"])


@dataclass
class Downtime:
    """Idle time of one staffing option.

    Attributes
    ----------
    idle, busy : (168,) operator-hours per local hour of week.
    idle_hours, staff_hours : weekly totals; ``idle_share`` = idle / staff hours.
    by_shift : one row per shift (``start``, ``length``, ``count``, ``idle_hours``
        per operator, ``idle_share``).
    tasks : ranked task table (``rank``, ``task``, ``value``, ``hours_per_week``,
        ``share_of_idle``, ``best_hours``, ``interruptible``, ``description``).
    unassigned_hours : idle hours no task took.
    """

    idle: np.ndarray
    busy: np.ndarray
    idle_hours: float
    staff_hours: float
    idle_share: float
    by_shift: pd.DataFrame
    tasks: pd.DataFrame
    unassigned_hours: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "idle_hours": round(self.idle_hours, 3),
            "staff_hours": round(self.staff_hours, 3),
            "idle_share": round(self.idle_share, 6),
            "unassigned_hours": round(self.unassigned_hours, 3),
            "by_shift": self.by_shift.round(4).to_dict(orient="records"),
            "tasks": self.tasks.round(4).to_dict(orient="records"),
            "idle_by_hour": [round(float(v), 4) for v in self.idle],
        }


def _runs_at_least(mask: np.ndarray, length: float) -> np.ndarray:
    """Hours belonging to a cyclic run of True at least ``length`` hours long."""
    mask = np.asarray(mask, bool)
    if mask.all() or length <= 1:
        return mask.copy()
    P = len(mask)
    out = np.zeros(P, bool)
    first_false = int(np.argmin(mask))  # runs cannot wrap past a False hour
    run: list[int] = []
    for h in [(first_false + i) % P for i in range(1, P + 1)]:  # ends on first_false, closing the last run
        if mask[h]:
            run.append(h)
        else:
            if len(run) >= length:
                out[run] = True
            run = []
    return out


def _describe_hours(hours: np.ndarray, top: int = 3) -> str:
    """'Mon 02-06, Tue 03-05' for the hours of week given (grouped into runs)."""
    if len(hours) == 0:
        return ""
    hs = np.sort(hours)
    runs, s, prev = [], hs[0], hs[0]
    for h in hs[1:]:
        if h == prev + 1 and h // 24 == prev // 24:
            prev = h
            continue
        runs.append((s, prev))
        s = prev = h
    runs.append((s, prev))
    runs.sort(key=lambda r: -(r[1] - r[0]))
    return ", ".join(f"{_DAYS[a // 24]} {a % 24:02d}-{b % 24 + 1:02d}" for a, b in runs[:top])


def downtime(
    on_duty: np.ndarray,
    workload: np.ndarray,
    required: np.ndarray | None,
    handle_minutes: float,
    shifts: pd.DataFrame | None = None,
    tasks: str | Path | list[dict] | None = None,
    quiet_share: float = 0.5,
) -> Downtime:
    """Idle operator-hours per hour of week and per shift, and the task list that fills them.

    ``required`` is not used by the busy/idle arithmetic (kept for callers that
    pass the requirement alongside; it may be ``None``).
    """
    n = np.asarray(on_duty, float)
    lam = np.asarray(workload, float)
    P = len(n)
    a = lam * handle_minutes / 60.0
    busy = np.minimum(a, n)
    idle = np.maximum(n - busy, 0.0)
    f = np.where(n > 0, idle / np.maximum(n, 1e-12), 0.0)
    staff = float(n.sum())
    by_shift = pd.DataFrame(columns=["start", "length", "count", "idle_hours", "idle_share"])
    if shifts is not None and len(shifts):
        rows = []
        for s in shifts.itertuples(index=False):
            hrs = (int(s.start) + np.arange(int(s.length))) % P
            ih = float(f[hrs].sum())
            d = {k: getattr(s, k) for k in shifts.columns}
            d.update(idle_hours=ih, idle_share=ih / int(s.length))
            rows.append(d)
        by_shift = pd.DataFrame(rows)
    # task allocation over the pool of idle hours
    pool = idle.copy()
    quiet = f >= quiet_share
    rows = []
    hod = np.arange(P) % 24
    for t in load_tasks(tasks):
        ok = t["allowed"][hod] & (pool > 1e-12)
        if not t["interruptible"]:
            ok &= _runs_at_least(quiet, t["min_block_hours"])
        want = t["weekly_hours"] if t["weekly_hours"] > 0 else np.inf
        got = np.zeros(P)
        # fill the idlest hours first (where the task is least likely to be interrupted)
        for h in np.argsort(-f * ok, kind="stable"):
            if not ok[h] or want <= 1e-12:
                continue
            take = min(pool[h], want)
            got[h] += take
            pool[h] -= take
            want -= take
        hours = float(got.sum())
        rows.append(
            {
                "task": t["name"],
                "value": t["value"],
                "hours_per_week": hours,
                "share_of_idle": hours / idle.sum() if idle.sum() > 0 else 0.0,
                "best_hours": _describe_hours(np.flatnonzero(got > 0.05)),
                "interruptible": t["interruptible"],
                "min_block_hours": t["min_block_hours"],
                "description": t["description"],
            }
        )
    tab = pd.DataFrame(rows)
    if len(tab):
        tab.insert(0, "rank", np.arange(1, len(tab) + 1))
    return Downtime(
        idle=idle,
        busy=busy,
        idle_hours=float(idle.sum()),
        staff_hours=staff,
        idle_share=float(idle.sum() / staff) if staff > 0 else 0.0,
        by_shift=by_shift,
        tasks=tab,
        unassigned_hours=float(pool.sum()),
        extra={"quiet_share": quiet_share},
    )
