"""``rtcc-geo staff``: RTCC staffing plans from the workload curve (Erlang C + shift MILP)."""

from __future__ import annotations

import argparse
import sys

from .common import UserError, add_json_arg, add_store_args, emit_json, store_from_args

DESCRIPTION = """\
Plan RTCC operator staffing from the incidents in the store.

1. Workload: expected RTCC-eligible events per local hour of the week, from
   incidents weighted by category (--weights; default: violent, robbery and
   burglary weigh 1, cold reports 0), over complete weeks of --from/--to,
   seasonally adjusted (--month), with a week-to-week uncertainty band.
2. Operators needed per hour: Erlang C with --handle-minutes per event and a
   service level (--service-level of events picked up within --target-seconds),
   or the simpler --utilisation rule.
3. Shifts: an integer program (HiGHS) picks shift starts, lengths
   (--shift-lengths, --part-time adds 4 h) and head counts. Two options are
   always shown: 24/7 and the best part-time plan.
   Without --operators: the fewest staff-hours meeting the service level
   (24/7: every hour; part-time: --min-coverage of the workload).
   With --operators N: the most workload covered by N operators of
   --hours-per-operator hours a week.
4. Downtime: idle operator-hours per shift and hour, and the ranked tasks that
   fill them (--tasks).
5. Optional large event (--event-point LON,LAT --event-radius M or
   --event-polygon FILE, --event-start, --event-end, --event-comparable):
   expected incidents around it and the extra operators it needs.
"""

EPILOG = """\
examples:
  rtcc-geo staff --source philadelphia --from 2024-01-01 --to 2025-01-01 --operators 6
  rtcc-geo staff --from 2024-01-01 --to 2025-01-01 --service-level 0.9 --target-seconds 60 --json
  rtcc-geo staff --from 2024-01-01 --to 2025-01-01 --operators 8 --part-time --shift-lengths 8,12
  rtcc-geo staff --from 2023-01-01 --to 2025-01-01 --event-point=-75.1675,39.9006 --event-radius 800 \\
      --event-start "2024-12-14 18:00" --event-end "2024-12-14 23:00" \\
      --event-comparable "2024-11-30 18:00/2024-11-30 23:00"
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "staff",
        help="RTCC staffing: workload curve, Erlang C, optimal shifts, downtime, events",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_store_args(p)
    g = p.add_argument_group("incidents (which history the workload comes from)")
    g.add_argument(
        "--source",
        default=None,
        help="source (agency) name, e.g. philadelphia (needed if the store holds several time zones)",
    )
    g.add_argument(
        "--from", dest="start", default=None, metavar="DATE", help="first local date (inclusive), e.g. 2024-01-01"
    )
    g.add_argument(
        "--to", dest="end", default=None, metavar="DATE", help="last local date (exclusive), e.g. 2025-01-01"
    )
    g.add_argument("--district", action="append", default=None, help="restrict to a district (repeatable)")
    g.add_argument(
        "--weights",
        default=None,
        metavar="FILE",
        help="TOML file of category weights (default data/staffing/weights_default.toml)",
    )
    g.add_argument(
        "--month", type=int, default=None, help="plan for this month's seasonal level, 1..12 (default: annual average)"
    )
    g.add_argument("--band", type=float, default=0.8, help="uncertainty band level (default 0.8)")
    g.add_argument(
        "--plan-on",
        choices=("expected", "upper"),
        default="expected",
        help="staff for the expected week or for the band's upper edge (default expected)",
    )
    s = p.add_argument_group("service (operators needed per hour)")
    s.add_argument(
        "--operators",
        type=float,
        default=None,
        metavar="N",
        help="fixed head count: maximise covered workload with N operators (else minimise staff-hours)",
    )
    s.add_argument(
        "--service-level",
        type=float,
        default=0.9,
        metavar="SHARE",
        help="share of events picked up within the target time (default 0.9)",
    )
    s.add_argument(
        "--target-seconds",
        "--answer-within",
        dest="target_seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="answer-time target in seconds (default 60)",
    )
    s.add_argument(
        "--handle-minutes", type=float, default=20.0, help="mean operator minutes per RTCC event (default 20)"
    )
    s.add_argument(
        "--utilisation",
        type=float,
        default=None,
        metavar="U",
        help="use the rule ceil(load / U) instead of Erlang C (e.g. 0.8)",
    )
    s.add_argument("--max-occupancy", type=float, default=None, help="Erlang C: also keep occupancy at or below this")
    h = p.add_argument_group("shifts")
    h.add_argument(
        "--shift-lengths", default="8,10,12", help="comma-separated shift lengths in hours (default 8,10,12)"
    )
    h.add_argument("--part-time", action="store_true", help="also allow 4-hour part-time shifts")
    h.add_argument("--starts", default=None, help="allowed start hours of day, comma-separated (default: any hour)")
    h.add_argument(
        "--same-every-day",
        action="store_true",
        help="one daily pattern: the same shift starts and head counts every day (easier to roster)",
    )
    h.add_argument(
        "--hours-per-operator",
        type=float,
        default=42.0,
        help="weekly hours per operator for --operators (default 42: a 12 h 4-on/4-off rota)",
    )
    h.add_argument(
        "--min-coverage",
        type=float,
        default=0.9,
        help="without --operators: workload share the part-time option must cover (default 0.9)",
    )
    h.add_argument(
        "--coverage-rule",
        choices=("erlang", "pro_rata"),
        default="erlang",
        help="covered workload = events picked up within the target (erlang, default) or "
        "workload x min(1, on duty / needed) (pro_rata)",
    )
    h.add_argument(
        "--tasks", default=None, metavar="FILE", help="downtime tasks TOML (default data/staffing/downtime_tasks.toml)"
    )
    h.add_argument(
        "--fast",
        action="store_true",
        help="fast mode (the planner page's): a heuristic plan polished by a short HiGHS run, "
        "its gap to the proven bound reported; default: the exact optimum",
    )
    h.add_argument(
        "--rules", default=None, metavar="FILE", help="roster rules TOML (default data/staffing/roster_rules.toml)"
    )
    h.add_argument(
        "--time-limit",
        type=float,
        default=30.0,
        help="solver time limit per problem, seconds (default 30); the best plan found is shown, flagged",
    )
    e = p.add_argument_group("large event (optional)")
    e.add_argument(
        "--event-point",
        default=None,
        metavar="LON,LAT",
        help="event centre (WGS84); write --event-point=-75.17,39.90 when the longitude is negative",
    )
    e.add_argument("--event-radius", type=float, default=None, metavar="M", help="event radius in metres")
    e.add_argument("--event-polygon", default=None, metavar="FILE", help="event area as a GeoJSON file")
    e.add_argument("--event-start", default=None, metavar="TIME", help="local start, e.g. '2024-12-14 18:00'")
    e.add_argument("--event-end", default=None, metavar="TIME", help="local end")
    e.add_argument(
        "--event-comparable",
        action="append",
        default=[],
        metavar="START/END",
        help="a comparable past event window at the same place (repeatable)",
    )
    e.add_argument("--event-weeks", type=int, default=8, help="ordinary weeks in the event baseline (default 8)")
    e.add_argument(
        "--event-uplift",
        type=float,
        default=None,
        metavar="F",
        help="assumed load multiplier when no comparable is given (e.g. 1.5)",
    )
    add_json_arg(p)
    p.set_defaults(func=run)


def _ints(text: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated whole numbers (got {text!r})") from None
    if not out:
        raise UserError(f"{what} is empty")
    return out


def _event(args) -> dict | None:
    given = [args.event_point, args.event_polygon, args.event_start, args.event_end]
    if not any(given):
        return None
    if not (args.event_start and args.event_end):
        raise UserError("an event needs --event-start and --event-end (local times)")
    if args.event_polygon:
        area = args.event_polygon
    elif args.event_point and args.event_radius:
        try:
            lon, lat = (float(x) for x in args.event_point.split(","))
        except ValueError:
            raise UserError(f"--event-point is LON,LAT in degrees (got {args.event_point!r})") from None
        area = {"lon": lon, "lat": lat, "radius_m": args.event_radius}
    else:
        raise UserError("give the event area: --event-polygon FILE, or --event-point LON,LAT with --event-radius M")
    comps = []
    for c in args.event_comparable:
        if "/" not in c:
            raise UserError(f"--event-comparable is START/END (got {c!r})")
        a, b = c.split("/", 1)
        comps.append((a.strip(), b.strip()))
    return {
        "area": area,
        "start": args.event_start,
        "end": args.event_end,
        "comparables": comps,
        "weeks": args.event_weeks,
        "uplift_factor": args.event_uplift,
    }


def run(args: argparse.Namespace) -> int:
    from ..staffing import plan
    from ..store.base import Query

    if not 0 < args.service_level < 1:
        raise UserError(f"--service-level is a share in (0, 1), e.g. 0.9 (got {args.service_level})")
    if args.operators is not None and args.operators <= 0:
        raise UserError("--operators must be a positive number of operators")
    lengths = _ints(args.shift_lengths, "--shift-lengths")
    starts = _ints(args.starts, "--starts") if args.starts else None
    q = Query(
        source=args.source, start=args.start, end=args.end, districts=tuple(args.district) if args.district else None
    )
    store = store_from_args(args)
    if not store.sources():
        raise UserError(f"the store {store!r} holds no incidents: run 'rtcc-geo ingest' (or 'rtcc-geo demo') first")
    try:
        p = plan(
            store,
            q,
            args.operators,
            service_level=args.service_level,
            target_seconds=args.target_seconds,
            handle_minutes=args.handle_minutes,
            shift_lengths=lengths,
            part_time=args.part_time,
            hours_per_operator=args.hours_per_operator,
            min_coverage=args.min_coverage,
            weights=args.weights,
            month=args.month,
            band=args.band,
            plan_on=args.plan_on,
            utilisation=args.utilisation,
            max_occupancy=args.max_occupancy,
            starts=starts,
            coverage_rule=args.coverage_rule,
            same_every_day=args.same_every_day,
            tasks=args.tasks,
            event=_event(args),
            time_limit=args.time_limit,
            fast=args.fast,
            rules=args.rules,
        )
    except (ValueError, LookupError) as e:
        raise UserError(str(e)) from None
    if args.json:
        emit_json(p.to_dict())
        return 0
    _print(p, sys.stdout)
    return 0


def _print(p, out) -> None:
    c = p.curve
    pr = p.params
    w = ", ".join(f"{k} {v:g}" for k, v in pr["weights"].items() if v > 0)
    print(
        f"Workload: {c.weekly_total:.1f} RTCC events a week ({w}) from {c.n_weeks} complete weeks "
        f"{c.weeks[0].date()} .. {c.weeks[-1].date()}"
        + (f", month {c.month} (seasonal x{c.season_factor:.2f})" if c.month else ""),
        file=out,
    )
    pk = int(c.expected.argmax())
    print(
        f"  busiest hour {['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][pk // 24]} {pk % 24:02d}:00 "
        f"{c.expected[pk]:.2f}/h (band {c.lower[pk]:.2f}-{c.upper[pk]:.2f}); quietest {c.expected.min():.2f}/h",
        file=out,
    )
    how = (
        f"utilisation rule {pr['utilisation']:g}"
        if pr["utilisation"]
        else f"Erlang C, {pr['service_level']:.0%} within {pr['target_seconds']:g} s"
    )
    print(
        f"Operators needed per hour ({how}, {pr['handle_minutes']:g} min per event): "
        f"{int(p.required.min())}..{int(p.required.max())}, {int(p.required.sum())} operator-hours a week",
        file=out,
    )
    if pr["budget_hours"]:
        print(
            f"Head count {pr['operators']:g} x {pr['hours_per_operator']:g} h = {pr['budget_hours']:g} staff-hours a week",
            file=out,
        )
    print(file=out)
    print(p.summary().drop(columns=["status"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), file=out)
    for k, o in p.options.items():
        note = "" if o.optimal else f" - NOT proven optimal, gap {o.mip_gap:.2%}; raise --time-limit"
        print(f"\n{k} shifts ({o.status}{note}):", file=out)
        if len(o.shifts):
            print(o.shifts.to_string(index=False), file=out)
        else:
            print("  (none: infeasible with these inputs)", file=out)
    for k, r in p.rosters.items():
        print(f"\n{k} roster ({r.operators} operators): {r.summary}", file=out)
        print(r.lines.drop(columns=["pattern"]).to_string(index=False), file=out)
        if len(r.unassigned):
            print(f"  {len(r.unassigned)} shift(s) no operator may work: {r.unassigned['reason'].iloc[0]}", file=out)
    best = "part-time" if "part-time" in p.downtime else next(iter(p.downtime))
    t = p.downtime[best].tasks
    if len(t):
        print(f"\nDowntime tasks ({best}, {p.downtime[best].idle_hours:.0f} idle operator-hours a week):", file=out)
        print(
            t[["rank", "task", "hours_per_week", "best_hours"]].to_string(
                index=False, float_format=lambda v: f"{v:.1f}"
            ),
            file=out,
        )
    if p.event is not None:
        ev = p.event
        print(
            f"\nEvent {ev.start} .. {ev.end}: expected {ev.expected_total:.1f} weighted incidents in the area "
            f"(ordinary {ev.baseline.sum():.1f} from {ev.n_weeks} weeks, uplift {ev.uplift_total:+.1f} from "
            f"{len(ev.comparables)} comparable events); extra operators per hour: "
            f"{[int(v) for v in ev.extra_operators]}",
            file=out,
        )
