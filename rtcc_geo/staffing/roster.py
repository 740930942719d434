"""Rosters: the optimiser's weekly shifts as lines that named operators can work.

The shift plan says how many operators start which shift on which day
(``ShiftPlan.shifts``). A roster gives every shift instance an operator so
that each operator's week respects the agency's rules
(``data/staffing/roster_rules.toml``):

* no shift longer than ``max_shift_hours``;
* at least ``min_rest_hours`` from the end of one shift to the start of the
  next (the week repeats, so Sunday night's shift is followed by the next
  Monday's);
* at most ``max_consecutive_days`` days in a row with a shift (cyclic), at
  most ``max_days_per_week`` shifts a week (``part_time_max_days`` for a
  part-timer);
* weekly hours at most ``full_time_hours`` (``part_time_max_hours`` for a
  part-timer); shifts of ``part_time_shift_max_hours`` or less are part-time
  shifts, worked only by part-timers (none when ``part_time`` is off), and the
  optimiser keeps them within ``part_time_max_share`` of the staff-hours.

Construction is greedy, per pattern (start hour and length) and day:
each instance goes to the operator of its kind who already works that
pattern and can take it without breaking a rule (else the fullest operator
who can), else to a new operator. Every check is on the operator's whole
cyclic week, so each line respects the rules by construction; a shift no
operator could ever work (longer than the limits) is listed as
``unassigned`` with the reason, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import DATA_DIR, read_toml

__all__ = [
    "DEFAULT_RULES_FILE",
    "Roster",
    "RosterRules",
    "build_roster",
    "line_violations",
    "load_rules",
    "pattern_name",
]

DEFAULT_RULES_FILE = DATA_DIR / "staffing" / "roster_rules.toml"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEK = 168


@dataclass(frozen=True)
class RosterRules:
    max_shift_hours: int = 12
    min_rest_hours: float = 11.0
    max_consecutive_days: int = 5
    max_days_per_week: int = 5
    full_time_hours: float = 42.0
    part_time: bool = True
    part_time_shift_max_hours: int = 4
    part_time_max_hours: float = 20.0
    part_time_max_days: int = 4
    part_time_max_share: float = 0.3
    after_hours: str = "police dispatch and patrol, without RTCC support"

    def __post_init__(self):
        chk = [
            (1 <= self.max_shift_hours <= 24, "max_shift_hours is 1..24"),
            (0 <= self.min_rest_hours <= WEEK - self.max_shift_hours, "min_rest_hours is 0..(168 - max_shift_hours)"),
            (1 <= self.max_consecutive_days <= 7, "max_consecutive_days is 1..7"),
            (1 <= self.max_days_per_week <= 7, "max_days_per_week is 1..7"),
            (0 < self.full_time_hours <= WEEK, "full_time_hours is in (0, 168]"),
            (0 <= self.part_time_shift_max_hours < 24, "part_time_shift_max_hours is 0..23"),
            (0 < self.part_time_max_hours <= WEEK, "part_time_max_hours is in (0, 168]"),
            (1 <= self.part_time_max_days <= 7, "part_time_max_days is 1..7"),
            (0 <= self.part_time_max_share <= 1, "part_time_max_share is a share in [0, 1]"),
        ]
        for ok, msg in chk:
            if not ok:
                raise ValueError(f"roster rules: {msg} (got {self})")

    def to_dict(self) -> dict:
        return asdict(self)


def load_rules(rules: str | Path | Mapping | RosterRules | None = None) -> RosterRules:
    """Rules from a TOML file (``[roster]`` table), a mapping, or the default file."""
    if isinstance(rules, RosterRules):
        return rules
    if rules is None:
        rules = DEFAULT_RULES_FILE
    table: Mapping = (
        read_toml(rules, "roster rules", DEFAULT_RULES_FILE).get("roster", {})
        if isinstance(rules, (str, Path))
        else rules
    )
    known = set(RosterRules.__dataclass_fields__)
    bad = set(table) - known
    if bad:
        raise ValueError(f"unknown roster rule(s) {sorted(bad)}; rules are {sorted(known)}")
    return RosterRules(**dict(table))


def pattern_name(start_hour: int, length: int) -> str:
    """'Day 07-15', 'Evening 15-23', 'Night 23-07' (by start hour)."""
    s = int(start_hour) % 24
    kind = "Day" if 5 <= s < 13 else "Evening" if 13 <= s < 20 else "Night"
    return f"{kind} {s:02d}-{(s + int(length)) % 24:02d}"


def _kind(length: int, r: RosterRules) -> str:
    return "part-time" if r.part_time and length <= r.part_time_shift_max_hours else "full-time"


def line_violations(shifts: list[tuple[int, int]], kind: str, r: RosterRules) -> list[str]:
    """Rules one operator's cyclic week breaks; ``shifts`` are (start hour of week, length)."""
    out: list[str] = []
    if not shifts:
        return out
    sh = sorted((s % WEEK, L) for s, L in shifts)
    cap_h = r.part_time_max_hours if kind == "part-time" else r.full_time_hours
    cap_d = r.part_time_max_days if kind == "part-time" else r.max_days_per_week
    if any(L > r.max_shift_hours for _, L in sh):
        out.append(f"shift longer than {r.max_shift_hours} h")
    if sum(L for _, L in sh) > cap_h + 1e-9:
        out.append(f"more than {cap_h:g} h a week")
    days = {s // 24 for s, _ in sh}
    if len(sh) > cap_d or len(days) < len(sh):
        out.append(f"more than {cap_d} shifts a week or two shifts starting on one day")
    for i, (s, L) in enumerate(sh):
        nxt = sh[(i + 1) % len(sh)][0] + (WEEK if i + 1 == len(sh) else 0)
        if nxt - (s + L) < r.min_rest_hours - 1e-9:
            out.append(
                f"less than {r.min_rest_hours:g} h rest after the shift starting {DAYS[s // 24]} {s % 24:02d}:00"
            )
    if len(days) == 7:
        run = 7
    else:
        run, cur = 0, 0
        for d in range(14):  # two laps of the cycle catch runs over Sunday-Monday
            cur = cur + 1 if d % 7 in days else 0
            run = max(run, cur)
    if run > r.max_consecutive_days:
        out.append(f"{run} days in a row (at most {r.max_consecutive_days})")
    return out


@dataclass
class Roster:
    """Operators' weekly lines.

    Attributes
    ----------
    lines : one row per operator: ``operator``, ``kind``, ``hours``, ``shifts``
        (count), ``days_off``, ``Mon``..``Sun`` (the shift that day, e.g.
        ``"Day 07-15"``, or ``"off"``), ``pattern`` (its main shift).
    patterns : one row per named shift pattern: ``pattern``, ``start_hour``,
        ``length``, ``Mon``..``Sun`` (operators starting it that day), ``label``
        (e.g. ``"Day 07-15 x2"``).
    unassigned : shift instances no operator may work, with the reason.
    rules : the rules used.
    by_operator : ``{operator: [(start hour of week, length), ...]}``.
    """

    lines: pd.DataFrame
    patterns: pd.DataFrame
    unassigned: pd.DataFrame
    rules: RosterRules
    by_operator: dict = field(default_factory=dict)

    @property
    def operators(self) -> int:
        return len(self.lines)

    @property
    def summary(self) -> str:
        """'Day 07-15 x2, Evening 15-23 x3, Night 23-07 x1' (operators a day; a range when days differ)."""
        return ", ".join(self.patterns["label"]) if len(self.patterns) else "no shifts"

    def operator_shifts(self) -> dict[str, list[tuple[int, int]]]:
        """{operator: [(start hour of week, length), ...]} (what the rules are checked on)."""
        return self.by_operator

    def to_csv(self) -> str:
        """One row per operator (and ``downtime_hours`` when the plan has filled it in)."""
        cols = ["operator", "kind", "pattern", *DAYS, "hours", "shifts", "days_off"]
        cols += [c for c in ("downtime_hours",) if c in self.lines.columns]
        return self.lines[cols].to_csv(index=False)

    def to_dict(self) -> dict:
        return {
            "operators": self.operators,
            "full_time": int((self.lines["kind"] == "full-time").sum()) if len(self.lines) else 0,
            "part_time": int((self.lines["kind"] == "part-time").sum()) if len(self.lines) else 0,
            "summary": self.summary,
            "patterns": self.patterns.to_dict(orient="records"),
            "lines": self.lines.to_dict(orient="records"),
            "unassigned": self.unassigned.to_dict(orient="records"),
            "rules": self.rules.to_dict(),
        }


def build_roster(shifts: pd.DataFrame, rules: str | Path | Mapping | RosterRules | None = None) -> Roster:
    """Assign every shift instance of a weekly plan (columns ``start`` = hour of week,
    ``length``, ``count``) to operators; see the module docstring."""
    r = load_rules(rules)
    inst = []
    for s in shifts.itertuples(index=False):
        every = getattr(s, "day", None) == "every day"  # a daily pattern: worked on each day
        for d in range(7) if every else (0,):
            for _ in range(int(s.count)):
                inst.append(((int(s.start) + 24 * d) % WEEK, int(s.length)))
    # by pattern (start hour of day, length), busiest pattern first, then by day: regular lines
    pat_n: dict = {}
    for s, L in inst:
        pat_n[(s % 24, L)] = pat_n.get((s % 24, L), 0) + 1
    inst.sort(key=lambda t: (-pat_n[(t[0] % 24, t[1])], t[0] % 24, t[1], t[0] // 24))
    ops: list[dict] = []
    unassigned = []
    for s, L in inst:
        kind = _kind(L, r)
        alone = line_violations([(s, L)], kind, r)
        if alone:
            unassigned.append({"day": DAYS[s // 24], "start_hour": s % 24, "length": L, "reason": "; ".join(alone)})
            continue
        best: tuple[Any, dict] | None = None  # (sort key or None for a new operator, operator)
        for o in ops:
            if o["kind"] != kind or line_violations(o["shifts"] + [(s, L)], kind, r):
                continue
            same = any(ss % 24 == s % 24 and LL == L for ss, LL in o["shifts"])
            key = (same, sum(LL for _, LL in o["shifts"]))
            if best is None or key > best[0]:
                best = (key, o)
        if best is None:
            best = (None, {"kind": kind, "shifts": []})
            ops.append(best[1])
        best[1]["shifts"].append((s, L))
    rows, by_op = [], {}
    ops.sort(key=lambda o: (o["kind"] != "full-time", min(o["shifts"])[0] % 24, min(o["shifts"])))
    for i, o in enumerate(ops, 1):
        name = f"{'FT' if o['kind'] == 'full-time' else 'PT'}-{i:02d}"
        by_op[name] = sorted(o["shifts"])
        day = {d: "off" for d in DAYS}
        for s, L in o["shifts"]:
            day[DAYS[s // 24]] = pattern_name(s % 24, L)
        names = [v for v in day.values() if v != "off"]
        rows.append(
            {
                "operator": name,
                "kind": o["kind"],
                "pattern": max(set(names), key=names.count),
                **day,
                "hours": sum(L for _, L in o["shifts"]),
                "shifts": len(o["shifts"]),
                "days_off": 7 - len({s // 24 for s, _ in o["shifts"]}),
            }
        )
    lines = pd.DataFrame(rows, columns=["operator", "kind", "pattern", *DAYS, "hours", "shifts", "days_off"])
    prow: dict[tuple[int, int], list[int]] = {}
    for s, L in inst:
        prow.setdefault((s % 24, L), [0] * 7)[s // 24] += 1
    pats = []
    for (h, L), cnt in sorted(prow.items(), key=lambda kv: ((kv[0][0] - 5) % 24, kv[0][1])):
        lo, hi = min(cnt), max(cnt)
        name = pattern_name(h, L) + (" (part-time)" if _kind(L, r) == "part-time" else "")
        label = f"{name} ×{hi}" if lo == hi else f"{name} ×{lo}-{hi}"
        pats.append({"pattern": name, "start_hour": h, "length": L, **dict(zip(DAYS, cnt)), "label": label})
    patterns = pd.DataFrame(pats, columns=["pattern", "start_hour", "length", *DAYS, "label"])
    return Roster(
        lines=lines,
        patterns=patterns,
        unassigned=pd.DataFrame(unassigned, columns=["day", "start_hour", "length", "reason"]),
        rules=r,
        by_operator=by_op,
    )
